package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// goModBlock is docs/go-api.md's go.mod of a module that uses this one.
var goModBlock = regexp.MustCompile("(?s)```go\\.mod\n(.*?)```")

// TestGoAPIFromAnotherModule: the go.mod that docs/go-api.md gives, with
// the checkout beside it as the page says, builds examples/embedded in a
// module of its own: the page's way of using the Go API before the module
// is published works as written. Offline: the module cache holds what this
// module needs, and there is no checksum database to ask here (a user's go
// mod tidy asks it).
func TestGoAPIFromAnotherModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module")
	}
	page, err := os.ReadFile(filepath.Join("..", "docs", "go-api.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := goModBlock.FindSubmatch(page)
	if m == nil {
		t.Fatal("docs/go-api.md has no go.mod block")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(root, filepath.Join(dir, "stardust")); err != nil {
		t.Fatal(err)
	}
	site := filepath.Join(dir, "mysite")
	main, err := os.ReadFile(filepath.Join("embedded", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"go.mod": m[1], "main.go": main} {
		if err := os.WriteFile(filepath.Join(site, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", os.DevNull, "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = site
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOSUMDB=off", "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v in a module of its own: %v\n%s", args, err, out)
		}
	}
}
