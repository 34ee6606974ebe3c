package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// TestRequestLog: requests that go well write no log line; a rejected one
// is logged at info with the client address from X-Forwarded-For of a
// trusted proxy; the opt-in access log has a line for every request.
func TestRequestLog(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.InfoLevel)
	s := New(Options{PollTimeout: 100 * time.Millisecond, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		AllowFrom: Anywhere}, logrus.NewEntry(log))
	var access syncBuffer
	al := NewAccessLog(&access, time.Hour)
	ts := httptest.NewServer(s.WithAccessLog(al))
	defer ts.Close()
	defer s.Close()
	res := poll(t, ts.URL+"/comet/channel/l/stream/1")
	waitPolling(t, s, "1")
	post := func(body string) int {
		req, _ := http.NewRequest("POST", ts.URL+"/comet/channel/l?secret=1", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", "198.51.100.7")
		req.Header.Set("User-Agent", "load \"tool\" é")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("m={}&m={}"); code != 200 {
		t.Fatalf("publish: %d", code)
	}
	recv(t, res, 2*time.Second)
	if code := post("m=not-json"); code != 400 {
		t.Fatalf("bad publish: %d, want 400", code)
	}
	time.Sleep(50 * time.Millisecond)
	entries := hook.AllEntries()
	if len(entries) != 1 {
		for _, e := range entries {
			t.Log(e.Message, e.Data)
		}
		t.Fatalf("%d log lines for 2 good requests and a rejected one, want exactly 1", len(entries))
	}
	e := entries[0]
	if e.Message != "request" || e.Level != logrus.InfoLevel || e.Data["problem"] != "rejected" || e.Data["remote"] != "198.51.100.7" ||
		e.Data["status"] != 400 || e.Data["path"] != "/comet/channel/l" || e.Data["method"] != "POST" {
		t.Errorf("rejected request logged as %s %q %+v", e.Level, e.Message, e.Data)
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(access.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("access log has %d lines for 3 requests:\n%s", len(lines), access.String())
	}
	// Each line: address, time, request without the query, status, bytes,
	// referer, user agent (escaped) and seconds.
	line := regexp.MustCompile(`^(\S+) - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [-+]\d{4}\] "(GET|POST) (/comet/channel/l\S*) HTTP/1\.1" (\d{3}) (\d+) "-" "([^"]*)" (\d+\.\d{3})$`)
	var statuses []string
	for _, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("access log line not in the combined format: %q", l)
			continue
		}
		statuses = append(statuses, m[2]+" "+m[4])
		if m[2] == "POST" && (m[1] != "198.51.100.7" || m[3] != "/comet/channel/l" || m[6] != `load \x22tool\x22 \xC3\xA9`) {
			t.Errorf("POST line %q: want the forwarded address, no query string and the user agent escaped", l)
		}
	}
	slices.Sort(statuses)
	if got := strings.Join(statuses, ","); got != "GET 200,POST 200,POST 400" {
		t.Errorf("access log statuses %s", got)
	}
	// After Close, nothing more is written.
	al.log("127.0.0.1", httptest.NewRequest("GET", "/x", nil), &StatusWriter{}, 0)
	if n := strings.Count(access.String(), "\n"); n != 3 {
		t.Errorf("%d lines after a line logged past Close", n)
	}
}

// syncBuffer is a bytes.Buffer safe for the access log's flusher and a test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRequestLogProblems: 5xx answers and responses whose writing stalls are
// logged at warn, with the reason.
func TestRequestLogProblems(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.InfoLevel)
	s := New(Options{}, logrus.NewEntry(log))
	defer s.Close()
	failing := s.LogRequests(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	failing.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/comet/x", nil))
	stalling := s.LogRequests(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("a"))
	}))
	stalling.ServeHTTP(slowWriter{httptest.NewRecorder(), SlowWrite + 10*time.Millisecond}, httptest.NewRequest("GET", "/comet/y", nil))
	quick := s.LogRequests(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(20 * time.Millisecond) // a held poll: long, but not slow
		_, _ = w.Write([]byte("[]"))
	}))
	quick.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/comet/z", nil))
	entries := hook.AllEntries()
	if len(entries) != 2 {
		t.Fatalf("%d log lines, want 2 (failed, slow)", len(entries))
	}
	for i, want := range []struct{ problem, path string }{{"failed", "/comet/x"}, {"slow", "/comet/y"}} {
		e := entries[i]
		if e.Level != logrus.WarnLevel || e.Data["problem"] != want.problem || e.Data["path"] != want.path {
			t.Errorf("line %d: %s %+v, want warn problem=%s path=%s", i, e.Level, e.Data, want.problem, want.path)
		}
	}
}

// slowWriter is a response writer whose writes block for d.
type slowWriter struct {
	*httptest.ResponseRecorder
	d time.Duration
}

func (w slowWriter) Write(p []byte) (int, error) {
	time.Sleep(w.d)
	return w.ResponseRecorder.Write(p)
}
