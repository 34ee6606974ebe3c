//go:build unix

package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/redistest"
)

// TestRedisRolledBack: Redis is SIGKILLed and comes back from a snapshot
// older than its last messages (its epoch key included, so that it does
// not look empty). The stardust process notices (Redis's run id changed
// and the message numbers went back): a held stream gets the notice that
// its queue was lost, as when Redis comes back empty, and it registers
// anew under the same id and gets what is published next.
func TestRedisRolledBack(t *testing.T) {
	srv := redistest.Start(t)
	p, c := startOnRedis(t, srv, "3s")
	c.publish(t, "rb", `{"n":0}`)
	if _, err := pollNumbers(t, c, "rb", "5.5"); err != nil { // registers the stream id (waits one hold)
		t.Fatal(err)
	}
	poll := c.startPoll("rb", "5.5", 30*time.Second)
	waitHeldPolls(t, c, 1)
	srv.Do(t, "SAVE")
	c.publish(t, "secret", `{"n":1}`) // lost with what follows the snapshot
	c.publish(t, "secret", `{"n":2}`)
	srv.Restart(200 * time.Millisecond) // SIGKILL: it comes back from the SAVE
	select {
	case r := <-poll:
		if r.err != nil || !strings.Contains(string(r.body), `"stardust.reset"`) {
			t.Fatalf("held poll when Redis came back from an older snapshot: %v %s; want the reset notice", r.err, r.body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the held poll was not told that Redis lost its queue")
	}
	if _, err := pollNumbers(t, c, "rb", "5.5"); err != nil { // registers anew (waits one hold)
		t.Fatal(err)
	}
	next := c.startPoll("rb", "5.5", 30*time.Second)
	waitHeldPolls(t, c, 1)
	c.publish(t, "rb", `{"n":3}`)
	r := <-next
	if r.err != nil || !strings.Contains(string(r.body), `"n":3`) || strings.Contains(string(r.body), `"n":1`) || strings.Contains(string(r.body), `"n":2`) {
		t.Fatalf("the stream after the rollback: %v %s after %v; want {\"n\":3} only", r.err, r.body, r.elapsed)
	}
	if !strings.Contains(p.out.String(), "Redis lost data") {
		t.Errorf("no log line about the lost data:\n%s", p.out.String())
	}
}

// startOnRedis starts stardust with conf/stardust-redis.toml on srv, polls
// held for hold, and returns it with a client of its Stardust API.
func startOnRedis(t *testing.T, srv *redistest.Server, hold string) (*process, *cometClient) {
	t.Helper()
	dir := t.TempDir()
	cfg := rewritePlaceholders(t, "conf/stardust-redis.toml",
		readFile(t, filepath.Join(repoRoot(t), "conf", "stardust-redis.toml")), "redis://127.0.0.1:6379/0", srv.URL)
	writeFile(t, filepath.Join(dir, "redis.toml"), cfg)
	addr := freeAddr(t)
	p := startProcess(t, "stardust", dir, stardustBinary(t), "--config", filepath.Join(dir, "redis.toml"), "--listen", addr, "--timeout", hold)
	p.waitListening(t, addr)
	return p, newCometClient(t, "http://"+addr)
}
