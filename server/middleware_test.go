package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fastRoutes must answer every request as the router does: the same status
// and, for anything but a poll's answer (which carries times), the same body
// and Location.
func checkFastRoutes(t *testing.T, s *Server, slow http.Handler, method, target string) {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return
	}
	do := func(h http.Handler) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Method, r.URL, r.RequestURI = method, u, target
		r.Header.Set("Cookie", BrowserCookie+"="+benchBrowser)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	fast, want := do(s), do(slow)
	if fast.Code != want.Code || fast.Header().Get("Location") != want.Header().Get("Location") ||
		(fast.Code != http.StatusOK && fast.Body.String() != want.Body.String()) {
		t.Fatalf("%s %q: fast path %d %q %s, router %d %q %s", method, target,
			fast.Code, fast.Header().Get("Location"), fast.Body, want.Code, want.Header().Get("Location"), want.Body)
	}
}

func fastRoutesServer(t testing.TB, metrics bool) (*Server, http.Handler) {
	o := Options{PollTimeout: time.Millisecond, Bayeux: &BayeuxOptions{}}
	if metrics {
		o.Metrics = &MetricsOptions{Path: "/metrics", HealthPath: "/health"}
	}
	s := New(o, benchLog())
	t.Cleanup(s.Close)
	return s, s.guard(s.cors(s.router))
}

var fastRouteSamples = []string{
	"/comet/channel/x/stream/1", "/comet/channel/a+b/stream/c.d-e_f", "/comet/channel/x/stream/",
	"/comet/channel//stream/1", "/comet/channel/x/stream/1/", "/comet/channel/x/stream/1/2",
	"/comet/channel/./stream/1", "/comet/channel/../stream/1", "/comet/channel/x/stream/..",
	"/comet/channel/x/stream/.", "/comet/channel/x%2Fy/stream/1", "/comet/channel/x/stream/a%2Fb",
	"/comet/channel/x/stream/%2E%2E", "/comet/channel/b%C3%A9/stream/1", "/comet/channel/x/streams/1",
	"/comet/channel/stream/stream/stream", "/comet/channel/x/1.5", "/comet/channel/x//stream/1",
	"/comet//channel/x/stream/1", "/comet/channel/x/stream/1?since=1", "/comet/channel/x/stream/1?since=bad",
	"/comet/channel/x/stream/" + strings.Repeat("a", 129), "/comet/channel/-/stream/1",
	"/comet/bayeux", "/comet/bayeux/", "/comet/bayeux/connect", "/comet/cometd", "/comet/cometd/handshake",
	"/comet/bayeux?jsonp=x", "/comet/bayeux?message=%5B%5D", "/comet/./bayeux", "/comet", "/comet/", "/other",
}

func TestFastRoutesAnswerAsTheRouter(t *testing.T) {
	for _, metrics := range []bool{false, true} {
		s, slow := fastRoutesServer(t, metrics)
		for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodOptions} {
			for _, p := range fastRouteSamples {
				checkFastRoutes(t, s, slow, method, p)
			}
		}
	}
}

// With metrics on, requests served by fastRoutes are counted under the
// route templates the router gives them.
func TestFastRoutesMetrics(t *testing.T) {
	s, _ := fastRoutesServer(t, true)
	for _, p := range []string{"/comet/channel/x/stream/1", "/comet/channel/x/stream/1", "/comet/bayeux", "/comet/cometd"} {
		method := http.MethodGet
		if !strings.Contains(p, "stream") {
			method = http.MethodPost
		}
		r := httptest.NewRequest(method, p, strings.NewReader("[]"))
		s.ServeHTTP(httptest.NewRecorder(), r)
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/comet/metrics", nil)
	r.RemoteAddr = "127.0.0.1:1234" // metrics.allow_from: loopback by default
	s.ServeHTTP(w, r)
	for _, want := range []string{
		`stardust_http_request_duration_seconds_count{code="200",method="GET",route="/comet/channel/{chans}/stream/{id}"} 2`,
		`stardust_http_request_duration_seconds_count{code="400",method="POST",route="/comet/bayeux"} 1`,
		`stardust_http_request_duration_seconds_count{code="400",method="POST",route="/comet/cometd"} 1`,
	} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("metrics lack %s:\n%s", want, w.Body)
		}
	}
}

// FuzzFastRoutes holds fastRoutes to the router's answers.
func FuzzFastRoutes(f *testing.F) {
	for _, p := range fastRouteSamples {
		f.Add(http.MethodGet, p)
	}
	f.Add(http.MethodPost, "/comet/bayeux")
	s, slow := fastRoutesServer(f, false)
	f.Fuzz(func(t *testing.T, method, target string) {
		if method == "" || strings.ContainsAny(method, " \t\r\n") {
			return
		}
		checkFastRoutes(t, s, slow, method, target)
	})
}

func TestPeerAddrCanonical(t *testing.T) {
	for remote, want := range map[string]string{
		"1.2.3.4:5": "1.2.3.4", "127.0.0.1:40000": "127.0.0.1", "[::ffff:1.2.3.4]:5": "1.2.3.4",
		"[::1]:5": "::1", "[2001:DB8::1]:80": "2001:db8::1", "1.2.3.4": "1.2.3.4", "01.2.3.4:5": "01.2.3.4:5",
	} {
		if got := peerAddr(&http.Request{RemoteAddr: remote}); got != want {
			t.Errorf("peerAddr(%q) = %q, want %q", remote, got, want)
		}
	}
}
