//go:build unix

package integration

// The client examples the README quotes run, as written, against the real
// program.

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReadmeClientExamples(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	base := startStardust(t)
	readme := readDocs(t)
	for _, ex := range []struct{ file, url, want string }{
		{"faye-client.mjs", base + "/bayeux", `received {"type":"TestMessage","data":[3,2,1]}`},
		{"cometd-client.mjs", base + "/cometd", `echo {"text":"hello"}`},
	} {
		t.Run(ex.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "node", ex.file))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(readme, strings.TrimSpace(string(src))) {
				t.Errorf("README.md does not quote examples/node/%s as it is", ex.file)
			}
			// Run it beside the harness's node_modules, as a user would after npm install.
			dir := t.TempDir()
			if err := os.Symlink(filepath.Join(clientsDir(t), "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, ex.file), src, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, ex.file, ex.url)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), ex.want) {
				t.Fatalf("node %s: %v\n%s\nwant a line %q", ex.file, err, out, ex.want)
			}
		})
	}
}
