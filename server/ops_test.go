package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// Issue 17, point 8: {base}/metrics and {base}/stats answer only the
// addresses of MetricsAllowFrom (loopback by default), read as everywhere
// else: X-Forwarded-For from a trusted proxy. The health check stays open to
// load balancers.
func TestMetricsAllowFrom(t *testing.T) {
	proxy := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	metricsOn := &MetricsOptions{Path: "/metrics", HealthPath: "/health"}
	do := func(t *testing.T, url, xff string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	t.Run("default", func(t *testing.T) {
		_, ts := testServer(t, Options{Metrics: metricsOn, TrustedProxies: proxy, PollTimeout: time.Second})
		for _, path := range []string{"/comet/metrics", "/comet/stats"} {
			if code, body := do(t, ts.URL+path, ""); code != http.StatusOK {
				t.Errorf("%s from this machine: %d %s", path, code, body)
			}
			code, body := do(t, ts.URL+path, "198.51.100.7")
			var e errorBody
			if code != http.StatusForbidden || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "metrics.allow_from") {
				t.Errorf("%s from an outside client through the proxy: %d %s, want 403 JSON naming metrics.allow_from", path, code, body)
			}
			// The outside client's own X-Forwarded-For is not believed.
			if code, body := do(t, ts.URL+path, "127.0.0.1, 198.51.100.7"); code != http.StatusForbidden {
				t.Errorf("%s with a forged loopback hop: %d %s, want 403", path, code, body)
			}
		}
		if code, body := do(t, ts.URL+"/comet/health", "198.51.100.7"); code != http.StatusOK {
			t.Errorf("health from outside: %d %s, want 200 (load balancers)", code, body)
		}
	})
	t.Run("monitoring-host", func(t *testing.T) {
		_, ts := testServer(t, Options{Metrics: metricsOn, TrustedProxies: proxy, PollTimeout: time.Second,
			MetricsAllowFrom: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
		for _, path := range []string{"/comet/metrics", "/comet/stats"} {
			if code, body := do(t, ts.URL+path, "198.51.100.7"); code != http.StatusOK {
				t.Errorf("%s from the monitoring host: %d %s", path, code, body)
			}
			if code, _ := do(t, ts.URL+path, ""); code != http.StatusForbidden {
				t.Errorf("%s from loopback, not listed: %d, want 403", path, code)
			}
		}
	})
}

// awayEngine is a memory engine whose calls fail, while away is set, the way
// the Redis engine's do when its server is gone: with its address and the
// dial error; Stats blocks until its context ends while hang is set.
type awayEngine struct {
	*MemoryEngine
	away, hang atomic.Bool
}

const awayAddr = "10.9.8.7:6379"

var errAway = fmt.Errorf("%w: redis at %s: dial tcp %s: connect: connection refused", ErrEngine, awayAddr, awayAddr)

func (e *awayEngine) err() error {
	if e.away.Load() {
		return errAway
	}
	return nil
}

func (e *awayEngine) CreateSession(ctx context.Context, s Session) error {
	if err := e.err(); err != nil {
		return err
	}
	return e.MemoryEngine.CreateSession(ctx, s)
}

func (e *awayEngine) Session(ctx context.Context, id string) (Session, error) {
	if err := e.err(); err != nil {
		return Session{}, err
	}
	return e.MemoryEngine.Session(ctx, id)
}

func (e *awayEngine) Publish(ctx context.Context, m *Message) (int, error) {
	if err := e.err(); err != nil {
		return 0, err
	}
	return e.MemoryEngine.Publish(ctx, m)
}

func (e *awayEngine) History(ctx context.Context, channel string, after uint64) ([]*Message, error) {
	if err := e.err(); err != nil {
		return nil, err
	}
	return e.MemoryEngine.History(ctx, channel, after)
}

func (e *awayEngine) Stats(ctx context.Context) (EngineStats, error) {
	if e.hang.Load() {
		<-ctx.Done()
		return EngineStats{}, ctx.Err()
	}
	if err := e.err(); err != nil {
		return EngineStats{}, err
	}
	return e.MemoryEngine.Stats(ctx)
}

// Issue 17, point 7: while the engine is away, clients are told so in a few
// generic words with Retry-After, on every protocol, and never its address
// or error; the log has them, once per summary.
func TestEngineErrorsNotShown(t *testing.T) {
	var out syncBuffer
	log := logrus.New()
	log.SetOutput(&out)
	e := &awayEngine{MemoryEngine: NewMemoryEngine(Limits{})}
	s := New(Options{PollTimeout: time.Second, Bayeux: &BayeuxOptions{WebSocket: true},
		Hub: HubOptions{Engine: e, AddressMaxSessions: -1, AddressSessionRate: -1}}, logrus.NewEntry(log))
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Close()
	jar, _ := cookiejar.New(nil)
	b := &bx{t: t, s: s, ts: ts, url: ts.URL + "/comet/bayeux", hc: &http.Client{Jar: jar}}
	e.away.Store(true)

	shown := func(what, text string) {
		t.Helper()
		if strings.Contains(text, awayAddr) || strings.Contains(text, "refused") || strings.Contains(text, "redis") {
			t.Errorf("%s shows the engine's address or error: %s", what, text)
		}
		if !strings.Contains(text, "engine unavailable, retry") {
			t.Errorf("%s does not say \"engine unavailable, retry\": %s", what, text)
		}
	}
	for _, req := range []struct{ method, path string }{
		{"POST", "/comet/channel/a?m=%7B%7D"},
		{"GET", "/comet/channel/a/stream/s1"},
		{"GET", "/comet/channel/a/events"},
		{"GET", "/comet/channel/a"},
	} {
		r, _ := http.NewRequest(req.method, ts.URL+req.path, nil)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s with the engine away: %d, Retry-After %q, want 503 with it", req.method, req.path, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		shown(req.method+" "+req.path, string(body))
	}
	hs := map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling", "websocket"}, "id": "h"}
	r := b.post(hs)
	if r[0]["successful"] != false {
		t.Fatalf("handshake with the engine away: %v", r)
	}
	errText, _ := r[0]["error"].(string)
	if !strings.HasPrefix(errText, "503:") {
		t.Errorf("handshake error %q, want 503:...", errText)
	}
	shown("a Bayeux handshake", fmt.Sprint(r))
	ws := b.dialWS()
	ws.send(hs)
	shown("a Bayeux handshake over WebSocket", fmt.Sprint(ws.read()))

	s.incidents.flush(s.hub)
	logged := 0
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, awayAddr) {
			logged++
			if !strings.Contains(l, "incidents (counts)") {
				t.Errorf("the engine's error logged outside the summary: %s", l)
			}
		}
	}
	if logged != 1 {
		t.Errorf("the engine's error is in %d log lines, want 1 (the summary):\n%s", logged, out.String())
	}
}

// Issue 17, point 7: the health check asks the engine (bounded in time) and
// answers 503 with a reason while it cannot answer.
func TestHealthReflectsEngine(t *testing.T) {
	e := &awayEngine{MemoryEngine: NewMemoryEngine(Limits{})}
	_, ts := testServer(t, Options{Metrics: &MetricsOptions{Path: "/metrics", HealthPath: "/health"}, Hub: HubOptions{Engine: e}})
	health := func() (int, map[string]any, http.Header) {
		t.Helper()
		resp, body := get(t, ts.URL+"/comet/health")
		var v map[string]any
		_ = json.Unmarshal(body, &v)
		return resp.StatusCode, v, resp.Header
	}
	// Issue 21, point 4: the same answer as a gauge.
	engineUp := func(want string) {
		t.Helper()
		_, body := get(t, ts.URL+"/comet/metrics")
		if !strings.Contains(string(body), "\nstardust_engine_up "+want+"\n") {
			t.Errorf("/metrics: want stardust_engine_up %s, got:\n%s", want, grepLines(string(body), "stardust_engine_up"))
		}
	}
	if code, v, _ := health(); code != http.StatusOK || v["status"] != "ok" {
		t.Fatalf("health with the engine up: %d %v", code, v)
	}
	engineUp("1")
	e.away.Store(true)
	time.Sleep(healthMaxAge + 50*time.Millisecond)
	engineUp("0")
	code, v, h := health()
	if code != http.StatusServiceUnavailable || v["status"] != "unavailable" || v["reason"] != "engine unavailable" || h.Get("Retry-After") == "" {
		t.Errorf("health with the engine away: %d %v Retry-After %q, want 503 with a reason", code, v, h.Get("Retry-After"))
	}
	if strings.Contains(fmt.Sprint(v), awayAddr) {
		t.Errorf("health shows the engine's address: %v", v)
	}
	e.away.Store(false)
	e.hang.Store(true)
	time.Sleep(healthMaxAge + 50*time.Millisecond)
	start := time.Now()
	if code, v, _ := health(); code != http.StatusServiceUnavailable || v["reason"] != "engine unavailable" {
		t.Errorf("health with the engine silent: %d %v, want 503", code, v)
	}
	if took := time.Since(start); took > healthTimeout+2*time.Second {
		t.Errorf("health took %v with the engine silent, want about %v", took, healthTimeout)
	}
	e.hang.Store(false)
	time.Sleep(healthMaxAge + 50*time.Millisecond)
	if code, v, _ := health(); code != http.StatusOK {
		t.Errorf("health once the engine is back: %d %v", code, v)
	}
	engineUp("1")
}

// grepLines returns the lines of text that contain word.
func grepLines(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// An error answer names what the client sent by its first few hundred
// bytes: a 40 KB channel name was echoed whole (up to a 1 MiB request line).
func TestErrorsDoNotEchoLongValues(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	long := strings.Repeat("x!", 20000)
	for _, p := range []string{"/comet/channel/" + long, "/comet/channel/a/stream/" + long, "/comet/" + long} {
		resp, body := get(t, b.ts.URL+p)
		if resp.StatusCode/100 != 4 || len(body) > 1024 || !strings.Contains(string(body), "cut from") {
			t.Errorf("GET of a %d-byte path: %d with %d bytes: %.200s", len(p), resp.StatusCode, len(body), body)
		}
	}
	r := b.post(map[string]any{"channel": "/" + long, "clientId": "x", "id": "1"})
	if e, _ := r[0]["error"].(string); len(e) > 1024 || !strings.Contains(e, "cut from") {
		t.Errorf("Bayeux error for a %d-byte channel name: %d bytes: %.200s", len(long)+1, len(e), e)
	}
}
