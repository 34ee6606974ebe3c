package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// Benchmarks of one whole request through s.ServeHTTP, middleware and
// routing included: what each answer of a held long poll costs the server
// on top of net/http's own work (see the held5000 row of make compare).
// Each iteration queues one message, then polls: the poll finds it queued
// and is answered at once, as a held poll is when the message comes. The
// message is the same one every time, encoded once, as a message fanned
// out to many clients is.

// benchWriter is a ResponseWriter that keeps nothing and accepts the
// deadlines of http.ResponseController, as net/http's own does.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header { return w.h }
func (w *benchWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}
func (w *benchWriter) Flush()                           {}
func (w *benchWriter) SetReadDeadline(time.Time) error  { return nil }
func (w *benchWriter) SetWriteDeadline(time.Time) error { return nil }

func (w *benchWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

// benchBrowser has the form of a BAYEUX_BROWSER value; a server accepts
// only the values it issued (issuedBrowser).
const benchBrowser = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// issuedBrowser is a BAYEUX_BROWSER value that s issued.
func issuedBrowser(tb testing.TB, s *Server) string {
	tb.Helper()
	v, err := s.rules.browsers.issue()
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

func benchServer(b *testing.B) *Server {
	b.Helper()
	// Bayeux and metrics on, as in the default configuration.
	s := New(Options{PollTimeout: time.Minute, Bayeux: &BayeuxOptions{ClientMaxConnections: 100},
		Metrics: &MetricsOptions{Path: "/metrics", HealthPath: "/health"}}, benchLog())
	b.Cleanup(s.Close)
	return s
}

// BenchmarkStardustPollRequest is one Stardust long poll
// (GET /comet/channel/x/stream/ID) answered with one message.
func BenchmarkStardustPollRequest(b *testing.B) {
	s := benchServer(b)
	browser := issuedBrowser(b, s)
	get := func(u string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, u, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Cookie", BrowserCookie+"="+browser)
		return r
	}
	r := get("/comet/channel/x/stream/b.1")
	w := &benchWriter{h: http.Header{}}
	data := []byte(`{"text":"hello, world"}`)
	// The client as its first poll leaves it (a first poll would be held).
	c, _, err := s.hub.Register("b.1", KindStardust, s.opts.ClientTimeout, "127.0.0.1")
	if err == nil {
		err = c.SetAttr(AttrBrowser, browser)
	}
	if err == nil {
		err = s.hub.SetSubscriptions(c, []string{"/stardust/x"})
	}
	if err != nil {
		b.Fatal(err)
	}
	m := &Message{Channel: "/stardust/x", Data: data}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.hub.Deliver(c, m); err != nil {
			b.Fatal(err)
		}
		w.reset()
		s.ServeHTTP(w, r)
		if w.status != http.StatusOK || w.n < 20 {
			b.Fatalf("poll: status %d, %d bytes", w.status, w.n)
		}
	}
}

// BenchmarkBayeuxConnectRequest is one Bayeux long-polling /meta/connect
// (POST /comet/bayeux) answered with one message.
func BenchmarkBayeuxConnectRequest(b *testing.B) {
	s := benchServer(b)
	browser := issuedBrowser(b, s)
	w := &benchWriter{h: http.Header{}}
	post := func(body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/comet/bayeux", strings.NewReader(body))
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Cookie", BrowserCookie+"="+browser)
		return r
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, post(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]`))
	var hs []struct {
		ClientID string `json:"clientId"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &hs); err != nil || len(hs) != 1 || hs[0].ClientID == "" {
		b.Fatalf("handshake: %v: %s", err, rec.Body)
	}
	id := hs[0].ClientID
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, post(`[{"channel":"/meta/subscribe","clientId":"`+id+`","subscription":"/x","id":"2"}]`))
	if !strings.Contains(rec.Body.String(), `"successful":true`) {
		b.Fatalf("subscribe: %s", rec.Body)
	}
	body := []byte(`[{"channel":"/meta/connect","clientId":"` + id + `","connectionType":"long-polling","id":"3"}]`)
	r := post(string(body))
	rd := bytes.NewReader(body)
	c, err := s.hub.Client(id)
	if err != nil {
		b.Fatal(err)
	}
	m := &Message{Channel: "/x", Data: []byte(`{"text":"hello, world"}`)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.hub.Deliver(c, m); err != nil {
			b.Fatal(err)
		}
		rd.Reset(body)
		r.Body = io.NopCloser(rd)
		w.reset()
		s.ServeHTTP(w, r)
		if w.status != http.StatusOK || w.n < 100 {
			b.Fatalf("connect: status %d, %d bytes", w.status, w.n)
		}
	}
}
