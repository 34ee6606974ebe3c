package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goModBlock is docs/go-api.md's go.mod of a module that uses this one.
var goModBlock = regexp.MustCompile("(?s)```go\\.mod\n(.*?)```")

// TestGoAPIFromAnotherModule: the go.mod that docs/go-api.md gives, with
// the checkout beside it as the page says, builds examples/embedded in a
// module of its own: the page's way of using the Go API before the module
// is published works as written. Offline: the module cache holds what this
// module needs once go mod download all has run in the checkout (tidy also
// wants the modules our dependencies' tests import, which a plain go mod
// download leaves out), and there is no checksum database to ask here (a
// user's go mod tidy asks it).
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
			hint := ""
			if strings.Contains(string(out), "GOPROXY=off") {
				hint = " (the module cache lacks modules that go mod tidy wants, our dependencies' test imports among them: run go mod download all in the checkout, as .ci/run does)"
			}
			t.Fatalf("go %v in a module of its own: %v%s\n%s", args, err, hint, out)
		}
	}
}
