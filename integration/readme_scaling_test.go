//go:build unix

package integration

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stardust-go/stardust/conf"
)

// TestReadmeScalingOut keeps the README's "Scaling out" snippets true: its
// TOML is the engine section of conf/stardust-redis.toml (which TestCluster
// and TestRedisOutage run) and is a valid configuration as written; its
// commands are the ones in conf/nginx/cluster.conf's header (which
// TestCluster runs).
func TestReadmeScalingOut(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	readme := readDocs(t)
	_, section, ok := strings.Cut(readme, "\n# Scaling out\n")
	if !ok {
		t.Fatal("README.md has no Scaling out section")
	}
	section, _, _ = strings.Cut(section, "\n# ")
	blocks := func(lang string) []string {
		var out []string
		for _, part := range strings.Split(section, "\n```"+lang+"\n")[1:] {
			if block, _, ok := strings.Cut(part, "\n```\n"); ok {
				out = append(out, block+"\n")
			}
		}
		return out
	}
	tomls, shells := blocks("toml"), blocks("sh")
	if len(tomls) != 1 || len(shells) != 1 {
		t.Fatalf("want one toml and one sh block, found %d and %d", len(tomls), len(shells))
	}
	cfg := conf.Default()
	if err := conf.Decode(&cfg, tomls[0], "README.md"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the README's engine section does not validate: %v", err)
	}
	if cfg.Engine.Type != "redis" {
		t.Fatalf("engine.type = %q", cfg.Engine.Type)
	}
	file := readFile(t, filepath.Join(root, "conf", "stardust-redis.toml"))
	if _, engine, _ := strings.Cut(file, "[engine]\n"); !strings.Contains(stripComments(engine), stripComments(strings.TrimPrefix(tomls[0], "[engine]\n"))) {
		t.Errorf("the README's [engine] differs from conf/stardust-redis.toml's:\n%s", tomls[0])
	}
	var header []string
	for _, c := range headerCommands(readFile(t, filepath.Join(root, "conf", "nginx", "cluster.conf")), "stardust") {
		header = append(header, strings.Join(c, " "))
	}
	for _, line := range strings.Split(strings.TrimSpace(shells[0]), "\n") {
		if !slices.Contains(header, strings.Join(strings.Fields(line), " ")) {
			t.Errorf("README command %q is not in cluster.conf's header %q", line, header)
		}
	}
}

// stripComments drops comment and blank lines of TOML text.
func stripComments(text string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
