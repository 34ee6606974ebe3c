package server

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
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

// Issue 17, point 5: a log line carries at most maxLogValue bytes of what a
// client chose (the path, the method, the user agent), the access log never
// writes a stream id, and rejections beyond a burst are only counted in the
// incidents summary: twenty 1 MiB paths once made 18 MB of log.
func TestLogLinesAreBounded(t *testing.T) {
	var out syncBuffer
	log := logrus.New()
	log.SetOutput(&out)
	log.SetLevel(logrus.InfoLevel)
	s := New(Options{PollTimeout: 50 * time.Millisecond}, logrus.NewEntry(log))
	var access syncBuffer
	al := NewAccessLog(&access, time.Hour)
	ts := httptest.NewServer(s.WithAccessLog(al))
	defer ts.Close()
	defer s.Close()

	long := "/comet/" + strings.Repeat("x", 256<<10)
	const requests = 200
	for range requests {
		req, _ := http.NewRequest("GET", ts.URL+long, nil)
		req.Header.Set("User-Agent", strings.Repeat("u", 4096))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("long path: %d, want 404", resp.StatusCode)
		}
	}
	get(t, ts.URL+"/comet/channel/a/stream/secret0123456789")
	s.incidents.flush(s.hub)
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if n := out.b.Len(); n > 30<<10 {
		t.Errorf("%d requests with a 256 KiB path made %d bytes of log in %d lines, want under 30 KiB", requests, n, len(lines))
	}
	// A slow run may log a summary before the last flush: add them up.
	var summaries []string
	notFound, suppressed := 0, 0
	for _, l := range lines {
		if len(l) > 2*maxLogValue+200 {
			t.Errorf("a log line of %d bytes: %.300s...", len(l), l)
		}
		if strings.Contains(l, "incidents (counts)") {
			summaries = append(summaries, l)
			notFound += summaryCount(l, "http_404")
			suppressed += summaryCount(l, IncidentLogSuppressed)
		}
	}
	if notFound != 200 || suppressed == 0 {
		t.Errorf("the summaries count %d 404s (want 200) and %d lines left out (want some): %q", notFound, suppressed, summaries)
	}
	accessLines := strings.Split(strings.TrimSpace(access.String()), "\n")
	if len(accessLines) != requests+1 {
		t.Fatalf("access log has %d lines for %d requests", len(accessLines), requests+1)
	}
	for _, l := range accessLines {
		if len(l) > 3*maxLogValue+200 {
			t.Fatalf("an access log line of %d bytes: %.300s...", len(l), l)
		}
	}
	last := accessLines[len(accessLines)-1]
	if strings.Contains(last, "secret0123456789") || !strings.Contains(last, "/comet/channel/a/stream/{id}") {
		t.Errorf("the access log writes a stream id: %s", last)
	}
}

func TestLogPath(t *testing.T) {
	long := strings.Repeat("a", 1000)
	for in, want := range map[string]string{
		"/comet/channel/a/stream/0.1":          "/comet/channel/a/stream/{id}",
		"/comet/channel/a/stream/0.1/x":        "/comet/channel/a/stream/{id}/x",
		"/comet/" + long:                       "/comet/" + long[:maxLogValue-len("/comet/")] + "...(cut from 1007 bytes)",
		"/comet/channel/" + long + "/stream/x": "/comet/channel/" + long[:maxLogValue-len("/comet/channel/")] + "...(cut from 1024 bytes)",
		"/comet/channel/a/stream/" + long:      "/comet/channel/a/stream/{id}...(cut from 1024 bytes)",
	} {
		if got := logPath(in); got != want {
			t.Errorf("logPath(%.40q...) = %q, want %q", in, got, want)
		}
	}
}

// summaryCount reads the count of kind in an incidents summary line (0 when
// absent).
func summaryCount(line, kind string) int {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, kind+"="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}
