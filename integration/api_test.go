//go:build unix

package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadmeServerAPI runs the README's server API snippets as written: its
// [api] block configures a real stardust process and its curl commands call
// it, through the STARDUST and STARDUST_API_KEY variables they read.
func TestReadmeServerAPI(t *testing.T) {
	t.Parallel()
	block, key := readmeTOMLKey(t, "[api] block", "key", func(b string) bool { return strings.HasPrefix(b, "[api]") })
	cfg := filepath.Join(t.TempDir(), "stardust.toml")
	writeFile(t, cfg, block)
	base := startStardust(t, "--config", cfg)
	out := runScript(t, readmeShBlock(t, `curl -s -H "X-API-Key: $STARDUST_API_KEY"`), time.Minute,
		"STARDUST="+base, "STARDUST_API_KEY="+key)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], `{"position":`) ||
		!strings.Contains(lines[1], `"data":{"text":"hello"}`) || lines[2] != `{"clients":0}` {
		t.Errorf("the README's API calls answered:\n%s", out)
	}
	// The same call without the key is refused.
	wrong := runScript(t, `curl -s -o /dev/null -w '%{http_code}' -d '{}' "$STARDUST/api/info"`, time.Minute,
		"STARDUST="+base)
	if wrong != "401" {
		t.Errorf("without the key: %s, want 401", wrong)
	}
}

// TestReadmeGapNotice runs the README's gap snippet against a server that
// keeps 2 messages per channel and was sent 3.
func TestReadmeGapNotice(t *testing.T) {
	t.Parallel()
	cfg := filepath.Join(t.TempDir(), "stardust.toml")
	writeFile(t, cfg, "[comet]\nhistory_size = 2\n")
	base := startStardust(t, "--config", cfg)
	c := newCometClient(t, strings.TrimSuffix(base, "/comet"))
	for _, m := range []string{`{"n":0}`, `{"n":1}`, `{"n":2}`} {
		c.publish(t, "foo", m)
	}
	out := runScript(t, readmeShBlock(t, "# resume from long ago"), time.Minute, "STARDUST="+base)
	if !strings.HasPrefix(out, `[{"type":"stardust.gap","since":1,"oldest":`) || !strings.Contains(out, `"n":1`) || strings.Contains(out, `"n":0`) {
		t.Errorf("the README's gap snippet answered: %s", out)
	}
}

// TestReadmePresence runs the README's presence snippets against the
// README's [[channels]] block while one Stardust client polls the room.
func TestReadmePresence(t *testing.T) {
	t.Parallel()
	block, key := readmeTOMLKey(t, "[[channels]] presence block", "key", func(b string) bool { return strings.Contains(b, "presence = true") })
	cfg := filepath.Join(t.TempDir(), "stardust.toml")
	writeFile(t, cfg, block)
	base := startStardust(t, "--config", cfg)
	c := newCometClient(t, strings.TrimSuffix(base, "/comet"))
	done := c.startPoll("room", "p1", 10*time.Second)
	c.waitSubscriber(t, "room", "p1")
	out := runScript(t, readmeShBlock(t, "# who is in the room"), time.Minute,
		"STARDUST="+base, "STARDUST_API_KEY="+key)
	c.publish(t, "room", `{"end":1}`) // lets the poll go
	<-done
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != `{"clients":[{"client":"p1","user":"","transport":"stardust"}]}` ||
		lines[1] != `{"clients":1,"users":0}` {
		t.Errorf("the README's presence calls answered:\n%s", out)
	}
}
