package examples

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// listenOnDemoPort finds a Go program listening on 5742, the port `make run`
// holds: run beside it, it would fail with "address already in use".
var listenOnDemoPort = regexp.MustCompile(`Listen[A-Za-z]*\([^)]*:5742`)

// TestExamplesDoNotListenOnTheDemoPort: no example program serves on the
// port of `make run` (examples/embedded once did). Clients may default to
// it: they are meant to talk to that server.
func TestExamplesDoNotListenOnTheDemoPort(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
			return err
		}
		n++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if m := listenOnDemoPort.Find(b); m != nil {
			t.Errorf("examples/%s listens on make run's port: %s", path, m)
		}
		return nil
	})
	if err != nil || n < 3 {
		t.Fatalf("walked %d Go files: %v", n, err)
	}
}

// configListen is a configuration's listen line.
var configListen = regexp.MustCompile(`(?m)^listen = "([^"]*)"`)

// TestConfigExamplesDoNotListenOnTheDemoPort: every examples/config file
// names a listen address, and not make run's (they all did, or took it as
// the default).
func TestConfigExamplesDoNotListenOnTheDemoPort(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("config", "*.toml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("examples/config: %d files, %v", len(files), err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := configListen.FindSubmatch(b)
		switch {
		case m == nil:
			t.Errorf("examples/%s names no listen address: it takes make run's, 127.0.0.1:5742", f)
		case strings.HasSuffix(string(m[1]), ":5742"):
			t.Errorf("examples/%s listens on make run's port: %s", f, m[1])
		}
	}
}
