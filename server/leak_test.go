package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/internal/leakcheck"
)

// Issue 10: 10,000 clients that connect and go away without a word leave
// nothing behind: sessions, per-address counts, goroutines and heap come
// back to where they were.
func TestAbandonedClientsLeaveNothing(t *testing.T) {
	s := New(Options{PollTimeout: 5 * time.Millisecond, ClientTimeout: 300 * time.Millisecond,
		Bayeux: &BayeuxOptions{ConnectTimeout: 300 * time.Millisecond},
		Hub: HubOptions{SweepInterval: 50 * time.Millisecond, HistorySize: 5,
			AddressMaxSessions: 20000, AddressSessionRate: 1e6, AddressSessionBurst: 20000}}, discardLog())
	defer s.Close()
	serve := func(req *http.Request) *httptest.ResponseRecorder {
		req.RemoteAddr = "192.0.2.1:1234"
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// Warm up once, so that lazily built state counts in the baseline.
	serve(httptest.NewRequest("GET", "/comet/channel/warm/stream/w.1", nil))
	waitGone(t, s)
	goroutines, before := runtime.NumGoroutine(), heap()

	const clients = 10000
	var made atomic.Int64
	var wg sync.WaitGroup
	work := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if i%2 == 0 { // a Stardust long-poll client, once
					rec := serve(httptest.NewRequest("GET", fmt.Sprintf("/comet/channel/leak%d/stream/s.%d", i%50, i), nil))
					if rec.Code != 200 {
						t.Errorf("poll: %d %s", rec.Code, rec.Body)
					} else {
						made.Add(1)
					}
					continue
				}
				// A Bayeux client: handshake, subscribe, one immediate connect.
				rec := serve(bayeuxRequest(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`, ""))
				var hs []map[string]any
				if json.Unmarshal(rec.Body.Bytes(), &hs) != nil || hs[0]["successful"] != true {
					t.Errorf("handshake: %s", rec.Body)
					continue
				}
				made.Add(1)
				cookie := rec.Header().Get("Set-Cookie")
				id := hs[0]["clientId"].(string)
				serve(bayeuxRequest(fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/leak/%d"},
					{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling","advice":{"timeout":0}}]`, id, i%50, id), cookie))
			}
		}()
	}
	for i := range clients {
		work <- i
	}
	close(work)
	wg.Wait()
	if n := made.Load(); n != clients {
		t.Fatalf("%d sessions made, want %d", n, clients)
	}
	waitGone(t, s)
	s.hub.limits.prune(time.Now().Add(time.Hour))
	if n, m := len(s.hub.limits.addrs), len(s.hub.limits.owner); n != 0 || m != 0 {
		t.Errorf("address limits still track %d addresses, %d sessions", n, m)
	}
	if st := stats(t, s.hub); st.Subscriptions != 0 || st.Polling != 0 {
		t.Errorf("left behind: %+v", st)
	}
	leakcheck.Goroutines(t, goroutines)
	// Channels keep their history until channel_timeout: allow for 100
	// channels' worth, and nothing per client.
	after := heap()
	t.Logf("heap %d KiB before, %d KiB after %d abandoned clients", before>>10, after>>10, clients)
	if after > before+4<<20 {
		t.Errorf("heap %d KiB after, %d KiB before", after>>10, before>>10)
	}
}

func bayeuxRequest(body, cookie string) *http.Request {
	req := httptest.NewRequest("POST", "/comet/bayeux", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", strings.SplitN(cookie, ";", 2)[0])
	}
	return req
}

// waitGone waits until every session has expired.
func waitGone(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for stats(t, s.hub).Clients > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions never expired", stats(t, s.hub).Clients)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// discardLog logs at info level to nowhere, keeping nothing.
func discardLog() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}
