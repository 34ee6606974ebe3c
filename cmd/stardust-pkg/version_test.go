package main

import (
	"os/exec"
	"strings"
	"testing"
)

func TestDebianVersion(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"v1.2.0", "1.2.0"},
		{"1.2", "1.2"},
		{"v1.2.0-rc1", "1.2.0~rc1"},
		{"v1.2.0-3-gabc1234", "1.2.0+3.gabc1234"},
		{"v1.2.0-rc.1-3-gabc1234", "1.2.0~rc.1+3.gabc1234"},
		{"v1.2.0-dirty", "1.2.0+0.dirty"},
		{"v1.2.0-3-gabc1234-dirty", "1.2.0+3.gabc1234.dirty"},
		{"0e56a48", "0.0.0~git.0e56a48"},
		{"0e56a48-dirty", "0.0.0~git.0e56a48+dirty"},
	} {
		got, err := debianVersion(c.in)
		if err != nil || got != c.want {
			t.Errorf("debianVersion(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "dev", "v1.2.0 rc", "release-1", "v1.2.0-3-gxyz"} {
		if got, err := debianVersion(bad); err == nil {
			t.Errorf("debianVersion(%q) = %q, want an error", bad, got)
		}
	}
}

// TestDebianVersionOrder asks dpkg itself that the versions sort as the
// commits do, when dpkg is installed.
func TestDebianVersionOrder(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("dpkg not installed; TestDebianVersion checks the mapping itself")
	}
	order := []string{"abc1234", "v0.9.0-4-gabc1234", "v1.0.0-rc1", "v1.0.0-rc1-2-gabc1234", "v1.0.0", "v1.0.0-dirty", "v1.0.0-1-gabc1234", "v1.0.0-1-gabc1234-dirty", "v1.0.1"}
	for i := 1; i < len(order); i++ {
		a, errA := debianVersion(order[i-1])
		b, errB := debianVersion(order[i])
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if out, err := exec.Command(dpkg, "--compare-versions", a, "lt", b).CombinedOutput(); err != nil {
			t.Errorf("dpkg: %s (from %s) is not before %s (from %s): %v %s", a, order[i-1], b, order[i], err, strings.TrimSpace(string(out)))
		}
	}
}
