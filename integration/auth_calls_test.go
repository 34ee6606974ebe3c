//go:build unix

package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAuthCallbacksOfPollers: long-polling Stardust clients identified by
// the app's connect_url and authorized by its subscribe_url (each answer
// cached per browser session for cache_ttl) do not call the app on every
// poll. By default 100 clients poll for 8 s; STARDUST_AUTH_CLIENTS=500
// STARDUST_AUTH_SECONDS=60 is the BENCHMARKS.md run. Each client is a
// browser with its own login cookie: its first poll has no BAYEUX_BROWSER
// cookie yet and its second has, so its forwarded Cookie header changes once
// and it is asked about twice, and never again within cache_ttl.
func TestAuthCallbacksOfPollers(t *testing.T) {
	t.Parallel()
	clients, seconds := envInt("STARDUST_AUTH_CLIENTS", 100), envInt("STARDUST_AUTH_SECONDS", 8)
	var connects, subscribes atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c, err := r.Cookie("login")
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/connect":
			connects.Add(1)
			fmt.Fprintf(w, `{"user":%q}`, c.Value)
		case "/subscribe":
			subscribes.Add(1)
			var q struct{ User, Channel string }
			if json.Unmarshal(body, &q) != nil || q.Channel != "/stardust/inbox_"+q.User {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			w.Write([]byte(`{}`))
		}
	}))
	defer app.Close()
	cfg := filepath.Join(t.TempDir(), "calls.toml")
	writeFile(t, cfg, fmt.Sprintf(`[comet]
poll_timeout = "3s"
address_max_sessions = -1
address_session_rate = -1.0

[auth]
connect_url = "%s/connect"
subscribe_url = "%s/subscribe"
`, app.URL, app.URL))
	base := startStardust(t, "--config", cfg)

	transport := &http.Transport{MaxIdleConnsPerHost: clients + 10}
	defer transport.CloseIdleConnections()
	stop := time.Now().Add(time.Duration(seconds) * time.Second)
	var polls, failures atomic.Int64
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jar, _ := cookiejar.New(nil)
			hc := &http.Client{Jar: jar, Transport: transport, Timeout: 20 * time.Second}
			user := "u" + strconv.Itoa(i)
			for time.Now().Before(stop) {
				req, _ := http.NewRequest(http.MethodGet, base+"/channel/inbox_"+user+"/stream/"+user, nil)
				req.AddCookie(&http.Cookie{Name: "login", Value: user})
				resp, err := hc.Do(req)
				if err != nil {
					failures.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failures.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				polls.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d clients, %d s: %d polls, %d failed; the app was called %d times (connect) and %d times (subscribe)",
		clients, seconds, polls.Load(), failures.Load(), connects.Load(), subscribes.Load())
	if failures.Load() > 0 {
		t.Errorf("%d polls failed", failures.Load())
	}
	if polls.Load() < int64(clients)*2 {
		t.Errorf("only %d polls", polls.Load())
	}
	if c, s := connects.Load(), subscribes.Load(); c > int64(2*clients) || s > int64(2*clients) {
		t.Errorf("the app was called %d (connect) and %d (subscribe) times for %d clients: want at most %d each", c, s, clients, 2*clients)
	}
}

// envInt reads a positive integer from the environment, else def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(os.Getenv(name))); err == nil && n > 0 {
		return n
	}
	return def
}
