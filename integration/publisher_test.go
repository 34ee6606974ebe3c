//go:build unix

package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPublisherExamples runs each examples/publisher program as its header
// says, against the real server, and checks that both of its messages, one
// through the Stardust API and one through Bayeux, are in channel news.
func TestPublisherExamples(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	dir := filepath.Join(root, "examples", "publisher")
	for _, ex := range []struct{ from, program, pkg string }{
		{"curl", "sh", "curl"},
		{"go", "go", "golang"},
		{"python", "python3", "python3"},
		{"node", "node", "nodejs"},
	} {
		t.Run(ex.from, func(t *testing.T) {
			t.Parallel()
			program := requireProgram(t, ex.program, ex.pkg)
			if ex.from == "curl" {
				requireProgram(t, "curl", "curl")
			}
			base := startStardust(t)
			args := map[string][]string{
				"curl":   {"publish.sh", base},
				"go":     {"run", "./examples/publisher", base},
				"python": {"publish.py", base},
				"node":   {"publish.mjs", base},
			}[ex.from]
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, program, args...)
			cmd.Dir = dir
			if ex.from == "go" {
				cmd.Dir = root
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", ex.program, strings.Join(args, " "), err, out)
			}
			resp, err := http.Get(base + "/channel/news")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var infos []struct{ Messages []map[string]any }
			if err := json.NewDecoder(resp.Body).Decode(&infos); err != nil || len(infos) != 1 {
				t.Fatalf("channel news: %v %v", err, infos)
			}
			var via []string
			for _, m := range infos[0].Messages {
				if m["type"] == "greeting" && m["from"] == ex.from {
					via = append(via, m["via"].(string))
				}
			}
			if strings.Join(via, ",") != "stardust,bayeux" {
				t.Errorf("channel news holds greetings from %s via %q, want stardust then bayeux; the program printed:\n%s", ex.from, via, out)
			}
		})
	}
}

// TestConfigExamples: each examples/config file passes --check, and the
// server starts with it (on a spare port) and answers.
func TestConfigExamples(t *testing.T) {
	t.Parallel()
	bin := stardustBinary(t)
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "examples", "config", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples/config/*.toml: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if text := readFile(t, file); strings.Contains(text, "/var/www/stardust") {
				// The site root of SPEC section 7, which --check wants to exist.
				site := t.TempDir()
				file = filepath.Join(t.TempDir(), filepath.Base(file))
				writeFile(t, file, rewritePlaceholders(t, file, text, "/var/www/stardust", site))
			}
			out, err := exec.Command(bin, "--config", file, "--check").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "is ok") {
				t.Fatalf("stardust --config %s --check: %v\n%s", file, err, out)
			}
			addr := freeAddr(t)
			p := startProcess(t, "stardust", t.TempDir(), bin, "--config", file, "--listen", addr, "--log-level", "warn")
			p.waitListening(t, addr)
			resp, err := http.Get("http://" + addr + "/comet/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("GET /comet/ with %s: %s", filepath.Base(file), resp.Status)
			}
			if strings.Contains(readFile(t, file), "demo = true") {
				if resp, err := http.Get("http://" + addr + "/comet/demo/chat.html"); err != nil || resp.StatusCode != http.StatusOK {
					t.Errorf("demo pages not served with %s: %v %v", filepath.Base(file), err, resp)
				} else {
					resp.Body.Close()
				}
			}
		})
	}
}
