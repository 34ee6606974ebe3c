//go:build unix

package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/redistest"
)

// TestRedisOutage stops Redis under a running stardust with the Redis
// engine, then starts it again empty: clear errors and retry advice while it
// is away, one log line for the outage, a metric, no crash, no local-only
// delivery; and when it is back, Bayeux clients are told to handshake again,
// Stardust streams get a notice, and everything works without a restart.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	bin := stardustBinary(t)
	dir := t.TempDir()
	cfg := rewritePlaceholders(t, "conf/stardust-redis.toml",
		readFile(t, filepath.Join(repoRoot(t), "conf", "stardust-redis.toml")),
		"redis://127.0.0.1:6379/0", srv.URL, `timeout = "2s"`, `timeout = "500ms"`)
	writeFile(t, filepath.Join(dir, "redis.toml"), cfg)
	addr := freeAddr(t)
	const hold = 3 * time.Second
	p := startProcess(t, "stardust", dir, bin, "--config", filepath.Join(dir, "redis.toml"), "--listen", addr,
		"--timeout", hold.String(), "--log-level", "info")
	p.waitListening(t, addr)
	c := newCometClient(t, "http://"+addr)
	b := newBayeuxHTTP(t)
	bid := b.handshake(t, addr, false)
	b.call(t, addr, map[string]any{"channel": "/meta/subscribe", "clientId": bid, "subscription": "/stardust/out"})
	if _, err := pollNumbers(t, c, "out", "3.3"); err != nil { // registers the stream id (waits one hold)
		t.Fatal(err)
	}
	held := c.startPoll("out", "3.3", hold+10*time.Second)
	waitHeldPolls(t, c, 1)

	srv.Stop()
	// A poll held when Redis went away ends at its hold, as usual.
	r := <-held
	if r.err != nil || r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" || r.elapsed < hold-time.Second {
		t.Fatalf("held poll during the outage: %d %q after %v (%v); want [] at the hold", r.status, r.body, r.elapsed, r.err)
	}
	// Publishing: a clear 503 with JSON, and nothing delivered locally.
	resp, body, err := c.request("POST", "/comet/channel/out", url.Values{"m": {`{"n":1}`}}, 10*time.Second)
	var e struct{ Error string }
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "engine unavailable") {
		t.Fatalf("publish with Redis away: %v %v %s; want 503 with a JSON error", err, resp, body)
	}
	// Clients are not shown Redis's address nor its error (issue 17, point 7).
	if strings.Contains(string(body), srv.Addr) || !strings.Contains(e.Error, "engine unavailable, retry") {
		t.Errorf("publish with Redis away answers %s: want the generic error, not Redis's address %s", body, srv.Addr)
	}
	// The health check says so, with a reason (issue 17, point 7).
	resp, body, err = c.request("GET", "/comet/health", nil, 10*time.Second)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"reason":"engine unavailable"`) ||
		strings.Contains(string(body), srv.Addr) || resp.Header.Get("Retry-After") == "" {
		t.Errorf("health with Redis away: %v %v %s; want 503 with a reason and Retry-After", err, resp, body)
	}
	// Polls and handshakes fail fast with retry advice, never "none".
	resp, body, err = c.request("GET", "/comet/channel/out/stream/3.3", nil, 10*time.Second)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("poll with Redis away: %v %v %s; want 503", err, resp, body)
	}
	hs := b.post(t, addr, map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}})
	if adv, _ := hs[0]["advice"].(map[string]any); hs[0]["successful"] != false || adv["reconnect"] != "retry" || !strings.HasPrefix(fmt.Sprint(hs[0]["error"]), "503:") {
		t.Fatalf("handshake with Redis away: %v; want unsuccessful, 503, advice retry", hs[0])
	}
	if strings.Contains(fmt.Sprint(hs[0]), srv.Addr) {
		t.Errorf("handshake with Redis away shows its address: %v", hs[0])
	}
	for range 20 { // many failing requests: still one log line for the outage
		_, _, _ = c.request("POST", "/comet/channel/out", url.Values{"m": {`{"n":1}`}}, 5*time.Second)
	}
	_, metrics, _ := c.request("GET", "/comet/metrics", nil, 5*time.Second)
	if !strings.Contains(string(metrics), "stardust_engine_failures_total") || strings.Contains(string(metrics), "stardust_engine_failures_total 0\n") {
		t.Errorf("no engine failures counted in /metrics:\n%s", metrics)
	}
	if !strings.Contains(string(metrics), "\nstardust_engine_up 0\n") { // issue 21, point 4
		t.Errorf("/metrics with Redis away: want stardust_engine_up 0:\n%s", metrics)
	}

	srv.Restart(0) // empty: it saved nothing
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, _, err := c.request("POST", "/comet/channel/other", url.Values{"m": {`{"n":0}`}}, 5*time.Second)
		if err == nil && resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing did not work again after Redis came back: %v %v", err, resp)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.waitOK(t, "/comet/health", 5*time.Second) // healthy again once Redis is back
	if _, metrics, _ := c.request("GET", "/comet/metrics", nil, 5*time.Second); !strings.Contains(string(metrics), "\nstardust_engine_up 1\n") {
		t.Errorf("/metrics with Redis back: want stardust_engine_up 1:\n%s", metrics)
	}
	// The Bayeux session is gone: told to handshake again.
	for _, m := range b.post(t, addr, map[string]any{"channel": "/meta/connect", "clientId": bid, "connectionType": "long-polling",
		"advice": map[string]any{"timeout": 0}}) {
		if m["channel"] != "/meta/connect" {
			continue
		}
		adv, _ := m["advice"].(map[string]any)
		if m["successful"] != false || !strings.HasPrefix(fmt.Sprint(m["error"]), "402:") || adv["reconnect"] != "handshake" {
			t.Fatalf("connect of a session Redis lost: %v; want 402 with advice handshake", m)
		}
	}
	// A new session works end to end.
	bid2 := b.handshake(t, addr, false)
	b.call(t, addr, map[string]any{"channel": "/meta/subscribe", "clientId": bid2, "subscription": "/stardust/out"})
	// The stream id registers anew and gets what is published.
	if _, err := pollNumbers(t, c, "out", "3.3"); err != nil {
		t.Fatal(err)
	}
	poll := c.startPoll("out", "3.3", hold+10*time.Second)
	waitHeldPolls(t, c, 1)
	c.publish(t, "out", `{"n":7}`)
	if r := <-poll; r.err != nil || !strings.Contains(string(r.body), `"n":7`) {
		t.Fatalf("stream after Redis came back: %v %s", r.err, r.body)
	}
	if data, _ := b.connect(t, addr, bid2, -1); fmt.Sprint(data) != "[map[n:7]]" {
		t.Fatalf("Bayeux after Redis came back: %v", data)
	}
	if n := strings.Count(p.out.String(), "Redis unavailable"); n != 1 {
		t.Errorf("%d log lines about the outage, want 1:\n%s", n, p.out.String())
	}
}

// TestRedisLostWhileHeld: a poll held while Redis comes back empty gets the
// notice that its queue was lost, and a held Bayeux connect is told to
// handshake again.
func TestRedisLostWhileHeld(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	_, c := startOnRedis(t, srv, "20s")
	c.publish(t, "lh", `{"n":0}`) // Redis has data (its epoch)
	poll := c.startPoll("lh", "4.4", 30*time.Second)
	waitHeldPolls(t, c, 1)
	srv.Restart(200 * time.Millisecond)
	select {
	case r := <-poll:
		if r.err != nil || !strings.Contains(string(r.body), `"stardust.reset"`) {
			t.Fatalf("held poll when Redis came back empty: %v %s; want the reset notice", r.err, r.body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the held poll was not told that Redis lost its queue")
	}
}
