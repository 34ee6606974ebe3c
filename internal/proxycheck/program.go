package proxycheck

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// LookProgram finds a program on PATH or in /usr/sbin and /sbin, where
// Debian installs nginx, apache2 and apache2ctl, which a normal user's PATH
// lacks.
func LookProgram(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		path := filepath.Join(dir, name)
		if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH, in /usr/sbin or /sbin", name)
}
