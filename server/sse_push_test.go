package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/takeover"
)

// sseStreamCount is the number of SSE streams served off net/http, on
// their connection taken over (sse_push.go).
func sseStreamCount(srv *http.Server) int {
	return takeoverListenerOf(srv).Count(func(h takeover.Held) bool {
		_, ok := h.(*sseStream)
		return ok
	})
}

// waitSSEStreams waits until n SSE streams are served off net/http.
func waitSSEStreams(t *testing.T, srv *http.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for sseStreamCount(srv) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d SSE streams off net/http, want %d", sseStreamCount(srv), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// openEvents opens an SSE stream of u.
func openEvents(t *testing.T, u string) (*http.Response, *bufio.Reader) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, bufio.NewReader(resp.Body)
}

// readUntil reads r's lines until one holds want (within 5 s), and
// returns them.
func readUntil(t *testing.T, r *bufio.Reader, want string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var b strings.Builder
		for {
			line, err := r.ReadString('\n')
			b.WriteString(line)
			if err != nil || strings.Contains(line, want) {
				got <- b.String()
				return
			}
		}
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, want) {
			t.Fatalf("stream ended without %q: %q", want, s)
		}
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("no %q within 5 s", want)
	}
	return ""
}

// TestSSEServedOffNetHTTP: through TakeoverListener, an SSE stream is
// written after its header by the push path, from its connection taken
// over: counted by the listener, no goroutine left in its handler (in
// net/http's loop), a poll held in the stats; messages, heartbeats and the
// client's going away as before.
func TestSSEServedOffNetHTTP(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{SSEHeartbeat: 300 * time.Millisecond, Hub: HubOptions{HistorySize: 10}}, nil, nil)
	const streams = 3
	readers := make([]*bufio.Reader, streams)
	var first *http.Response
	for i := range readers {
		resp, r := openEvents(t, "http://"+addr+"/comet/channel/live/events?id=p"+strconv.Itoa(i))
		if i == 0 {
			first = resp
		}
		readers[i] = r
		readUntil(t, r, "retry: 2000")
		waitPolling(t, s, "p"+strconv.Itoa(i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for servedCount(srv) != streams && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if n := servedCount(srv); n != streams {
		t.Fatalf("%d of %d streams served off net/http", n, streams)
	}
	if got := first.TransferEncoding; len(got) != 1 || got[0] != "chunked" {
		t.Errorf("Transfer-Encoding %v, want chunked as net/http writes it", got)
	}
	buf := make([]byte, 1<<20)
	if stack := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stack, "handleEvents") {
		t.Error("a stream is still served in its handler")
	}
	if st := stats(t, s.Hub()); st.Polling != streams {
		t.Errorf("polls held %d, want %d", st.Polling, streams)
	}
	for n := 1; n <= 3; n++ {
		if _, err := s.Hub().Publish(&Message{Channel: "/stardust/live", Data: []byte(`{"n":` + strconv.Itoa(n) + `}`)}); err != nil {
			t.Fatal(err)
		}
		for _, r := range readers {
			readUntil(t, r, `"n":`+strconv.Itoa(n))
		}
	}
	readUntil(t, readers[0], ": ping") // the heartbeat
	first.Body.Close()
	deadline = time.Now().Add(5 * time.Second)
	for servedCount(srv) != streams-1 || polling(s.Hub(), "p0") {
		if time.Now().After(deadline) {
			t.Fatalf("the stream whose client left is still served (%d streams)", servedCount(srv))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestSSEPushedStreamEnds: a stream served off net/http ends as net/http's
// loop ends it: at the end of its life with the last chunk (and its
// anonymous session), with a disconnect notice when the server API removes
// its client, at once when the server shuts down; HTTP/1.0 unchunked.
func TestSSEPushedStreamEnds(t *testing.T) {
	t.Run("life", func(t *testing.T) {
		s, srv, addr := takeoverServer(t, Options{SSEMaxDuration: 500 * time.Millisecond}, nil, nil)
		_, r := openEvents(t, "http://"+addr+"/comet/channel/life/events")
		waitSSEStreams(t, srv, 1)
		start := time.Now()
		rest, err := io.ReadAll(r)
		if err != nil { // a chunked body cut short is an error
			t.Fatalf("stream end: %v after %q", err, rest)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the stream ended after %s, want its life (500ms)", d)
		}
		deadline := time.Now().Add(5 * time.Second)
		for stats(t, s.Hub()).Clients != 0 || sseStreamCount(srv) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the anonymous stream's session or connection outlived it")
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	t.Run("disconnect", func(t *testing.T) {
		s, srv, addr := takeoverServer(t, Options{APIKey: testAPIKey}, nil, nil)
		_, r := openEvents(t, "http://"+addr+"/comet/channel/news/events?id=e1")
		waitSSEStreams(t, srv, 1)
		waitPolling(t, s, "e1")
		if err := clientOf(s.hub, "e1").SetAttr(AttrUser, "u1"); err != nil {
			t.Fatal(err)
		}
		if status, out := apiCall(t, "http://"+addr, "disconnect", testAPIKey, `{"user":"u1"}`); status != 200 {
			t.Fatalf("disconnect: %d %v", status, out)
		}
		readUntil(t, r, "event: disconnect")
		if line := readUntil(t, r, "data: "); !strings.Contains(line, `{"type":"stardust.disconnect"}`) {
			t.Errorf("disconnect notice: %q", line)
		}
		if rest, err := io.ReadAll(r); err != nil {
			t.Errorf("stream end: %v after %q", err, rest)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		_, srv, addr := takeoverServer(t, Options{}, nil, nil)
		_, r := openEvents(t, "http://"+addr+"/comet/channel/down/events?id=d1")
		waitSSEStreams(t, srv, 1)
		shutdownQuickly(t, srv)
		if rest, err := io.ReadAll(r); err != nil {
			t.Errorf("stream end: %v after %q", err, rest)
		}
	})
	t.Run("hub closes", func(t *testing.T) {
		s, srv, addr := takeoverServer(t, Options{}, nil, nil)
		_, r := openEvents(t, "http://"+addr+"/comet/channel/down/events?id=d2")
		waitSSEStreams(t, srv, 1)
		s.Close()
		if rest, err := io.ReadAll(r); err != nil {
			t.Errorf("stream end: %v after %q", err, rest)
		}
		waitSSEStreams(t, srv, 0)
	})
	t.Run("HTTP/1.0", func(t *testing.T) {
		s, srv, addr := takeoverServer(t, Options{SSEMaxDuration: time.Second}, nil, nil)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /comet/channel/old/events?id=h1 HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		head := readUntil(t, r, "retry: 2000")
		if !strings.HasPrefix(head, "HTTP/1.0 200") || strings.Contains(head, "chunked") {
			t.Errorf("header: %q", head)
		}
		waitSSEStreams(t, srv, 1)
		waitPolling(t, s, "h1")
		if _, err := s.Hub().Publish(&Message{Channel: "/stardust/old", Data: []byte(`{"old":1}`)}); err != nil {
			t.Fatal(err)
		}
		if ev := readUntil(t, r, `"old":1`); strings.Contains(ev, "\r\n") || !strings.Contains(ev, "id: ") {
			t.Errorf("event framed for HTTP/1.0: %q", ev)
		}
		rest, err := io.ReadAll(r) // its life ends: the connection closes
		if err != nil || strings.Contains(string(rest), "0\r\n\r\n") {
			t.Errorf("end of an HTTP/1.0 stream: %v %q", err, rest)
		}
	})
}

// TestSSEFallback: a listener wrapper that hides the descriptor keeps SSE
// streams in net/http's loop, counted; hold_on_connection = false too,
// counted as nothing (as its polls).
func TestSSEFallback(t *testing.T) {
	metrics := &MetricsOptions{Path: "/metrics", HealthPath: "/health"}
	t.Run("descriptor hidden", func(t *testing.T) {
		s, srv, addr := takeoverServer(t, Options{Metrics: metrics}, nil, hideDescriptors)
		if got := fallbackCount(t, addr, "sse", "no_syscall_conn"); got != "0" {
			t.Fatalf("fallbacks before any stream: %s", got)
		}
		_, r := openEvents(t, "http://"+addr+"/comet/channel/f/events?id=f1")
		waitPolling(t, s, "f1")
		if n := sseStreamCount(srv); n != 0 {
			t.Fatalf("%d streams taken over through a wrapper that hides the descriptor", n)
		}
		if _, err := s.Hub().Publish(&Message{Channel: "/stardust/f", Data: []byte(`{"f":1}`)}); err != nil {
			t.Fatal(err)
		}
		readUntil(t, r, `"f":1`)
		buf := make([]byte, 1<<20)
		if stack := string(buf[:runtime.Stack(buf, true)]); !strings.Contains(stack, "eventsLoop") {
			t.Error("the stream is not served by net/http's loop")
		}
		if got := fallbackCount(t, addr, "sse", "no_syscall_conn"); got != "1" {
			t.Errorf("fallbacks counted: %s, want 1", got)
		}
	})
	t.Run("hold_on_connection = false", func(t *testing.T) {
		s, _, addr := plainServer(t, Options{Metrics: metrics})
		_, r := openEvents(t, "http://"+addr+"/comet/channel/f/events?id=f2")
		waitPolling(t, s, "f2")
		if _, err := s.Hub().Publish(&Message{Channel: "/stardust/f", Data: []byte(`{"f":2}`)}); err != nil {
			t.Fatal(err)
		}
		readUntil(t, r, `"f":2`)
		if got := fallbackCount(t, addr, "sse", "no_syscall_conn"); got != "0" {
			t.Errorf("fallbacks counted: %s, want 0", got)
		}
	})
}

// findStream returns the SSE stream served off net/http of client id.
func findStream(s *Server, id string) *sseStream {
	set := &s.sseStreams
	set.mu.Lock()
	defer set.mu.Unlock()
	for st := range set.open {
		if st.c.ID() == id {
			return st
		}
	}
	return nil
}

// writeBlocked reports whether a write to client id's stream stays
// blocked (writerStuck).
func writeBlocked(s *Server, id string) bool {
	return writerStuck(func() tryLocker {
		if st := findStream(s, id); st != nil {
			return &st.sock
		}
		return nil
	})
}

// tryLocker is a writer's lock, as a test looks at it.
type tryLocker interface {
	TryLock() bool
	Unlock()
}

// writerStuck reports whether the writer find returns (nil: none) stays
// the same and held for 300 ms on end: a write that is blocked, not one in
// passing (a writer descheduled on a loaded machine was once taken for a
// blocked one after 50 ms, and took the messages published next).
func writerStuck(find func() tryLocker) bool {
	first := find()
	for range 30 {
		w := find()
		if w == nil || w != first || w.TryLock() {
			if w != nil && w == first {
				w.Unlock()
			}
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// A stream whose client reads nothing blocks its own writes only (the
// other streams keep getting their messages), and ends when a write has
// not gone within request_timeout.
func TestSSESlowReaderDelaysNoOther(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{RequestTimeout: 2 * time.Second,
		Hub: HubOptions{QueueMaxBytes: 64 << 20, QueueMaxMessages: 10000}}, nil, nil)
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if tc, ok := slow.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	if _, err := io.WriteString(slow, "GET /comet/channel/s/events?id=slow HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_, fast := openEvents(t, "http://"+addr+"/comet/channel/s/events?id=fast")
	waitSSEStreams(t, srv, 2)
	big := strings.Repeat("x", 256<<10)
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; !writeBlocked(s, "slow"); n++ {
		if time.Now().After(deadline) {
			t.Fatal("writes to a stream that reads nothing never blocked")
		}
		data := `{"n":` + strconv.Itoa(n) + `,"pad":"` + big + `"}`
		if _, err := s.Hub().Publish(&Message{Channel: "/stardust/s", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
		readUntil(t, fast, `"n":`+strconv.Itoa(n)+`,`)
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	if _, err := s.Hub().Publish(&Message{Channel: "/stardust/s", Data: []byte(`{"small":1}`)}); err != nil {
		t.Fatal(err)
	}
	readUntil(t, fast, `"small":1`)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a blocked stream delayed another by %v", took)
	}
	// The slow stream's write gives up after request_timeout: it ends.
	waitSSEStreams(t, srv, 1)
	if findStream(s, "slow") != nil || clientOf(s.Hub(), "slow") == nil {
		t.Error("the slow stream outlived its write, or its named client did not outlive it")
	}
}

// A stream pushed to tells its client of the messages dropped from its
// queue while a write to it was blocked, with an overflow event, as
// net/http's loop does.
func TestSSEOverflowNoticePushed(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{RequestTimeout: 20 * time.Second,
		Hub: HubOptions{QueueMaxBytes: 64 << 20, QueueMaxMessages: 5}}, nil, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // its read buffer as it is: a small one stalls the connection once read again
	if _, err := io.WriteString(c, "GET /comet/channel/o/events?id=ov HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitSSEStreams(t, srv, 1)
	waitPolling(t, s, "ov")
	publish := func(data string) {
		t.Helper()
		if _, err := s.Hub().Publish(&Message{Channel: "/stardust/o", Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	big := strings.Repeat("x", 256<<10)
	deadline := time.Now().Add(10 * time.Second)
	for n := 0; !writeBlocked(s, "ov"); n++ {
		if time.Now().After(deadline) {
			t.Fatal("writes to a stream that reads nothing never blocked")
		}
		publish(`{"big":` + strconv.Itoa(n) + `,"pad":"` + big + `"}`)
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 20 { // the queue keeps 5
		publish(`{"small":` + strconv.Itoa(i) + `}`)
	}
	got := readUntil(t, bufio.NewReader(c), `"small":19`)
	if !strings.Contains(got, "event: overflow\ndata: {\"type\":\"stardust.overflow\",\"lost\":") {
		t.Errorf("no overflow event before the last message")
	}
	if strings.Contains(got, `"small":0}`) {
		t.Error("a dropped message was delivered")
	}
}

// A stream pushed to is logged and measured when it ends, as net/http's
// loop has it: status 200, every byte of it, its whole duration.
func TestSSEPushedLoggedAndMeasuredWhenEnded(t *testing.T) {
	var out syncBuffer
	a := NewAccessLog(&out, 10*time.Millisecond)
	defer a.Close()
	s, srv, addr := takeoverServer(t, Options{SSEMaxDuration: 600 * time.Millisecond,
		Metrics: &MetricsOptions{Path: "/metrics", HealthPath: "/health"}}, a, nil)
	_, r := openEvents(t, "http://"+addr+"/comet/channel/logged/events?id=l1")
	waitSSEStreams(t, srv, 1)
	waitPolling(t, s, "l1")
	if _, err := s.Hub().Publish(&Message{Channel: "/stardust/logged", Data: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	body := readUntil(t, r, `"n":1`)
	if got := out.String(); got != "" {
		t.Fatalf("logged before the stream ended: %q", got)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	body += string(rest)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	line := out.String()
	m := regexp.MustCompile(`"GET /comet/channel/logged/events HTTP/1.1" (\d+) (\d+) "-" "Go-http-client/1.1" ([0-9.]+)\n$`).FindStringSubmatch(line)
	if m == nil || m[1] != "200" || m[3] < "0.600" {
		t.Fatalf("access log %q: want status 200, at least 0.6 s", line)
	}
	// The bytes: the body, as net/http counts what a handler writes
	// (without the chunks' framing).
	if n, _ := strconv.Atoi(m[2]); n != len(body) {
		t.Errorf("access log counts %d bytes, the body has %d: %q", n, len(body), body)
	}
	_, metrics := get(t, "http://"+addr+"/comet/metrics")
	route := `code="200",method="GET",route="/comet/channel/{chans}/events"`
	for _, want := range []string{
		`stardust_http_request_duration_seconds_bucket{` + route + `,le="0.5"} 0`,
		`stardust_http_request_duration_seconds_bucket{` + route + `,le="1"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
