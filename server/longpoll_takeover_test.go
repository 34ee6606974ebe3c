package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/stardust-go/stardust/internal/connlimit"
	"github.com/stardust-go/stardust/internal/takeover"
)

// takeoverSuite names the test whose subtests' servers serve through
// TakeoverListener (testServer): chosen per server by the test's name, not
// by a switch of the package, so that those tests may run in parallel with
// any other.
const takeoverSuite = "TestHeldPathSuite/"

// takeoverInTest reports whether testServer serves t's server through
// TakeoverListener.
func takeoverInTest(t testing.TB) bool { return strings.HasPrefix(t.Name(), takeoverSuite) }

// TestHeldPathSuite runs tests of long polls with their polls waiting on
// their connection taken over (longpoll.go) instead of in the handler.
func TestHeldPathSuite(t *testing.T) {
	for name, test := range map[string]func(*testing.T){
		"Stream": TestStream, "QueueOverflow": TestQueueOverflow, "ClientExpiry": TestClientExpiry,
		"CloseReleasesPollsAndGoroutines": TestCloseReleasesPollsAndGoroutines, "MetricsAndHealth": TestMetricsAndHealth,
		"PollRacingExpiryRegistersAnew": TestPollRacingExpiryRegistersAnew,
		"BayeuxConnectAndDelivery":      TestBayeuxConnectAndDelivery, "BayeuxCallbackPolling": TestBayeuxCallbackPolling,
		"BayeuxDisconnect": TestBayeuxDisconnect, "BayeuxConnectTimeout": TestBayeuxConnectTimeout,
		"BayeuxQueueBetweenConnects": TestBayeuxQueueBetweenConnects, "BridgeBothWays": TestBridgeBothWays,
		"BayeuxShutdownAnswersHeldConnect": TestBayeuxShutdownAnswersHeldConnect, "MultipleClientsAdvice": TestMultipleClientsAdvice,
		"BayeuxSessionBoundToBrowser": TestBayeuxSessionBoundToBrowser, "StardustStreamBoundToBrowser": TestStardustStreamBoundToBrowser,
		"EverythingIsSweptBack": TestEverythingIsSweptBack,
		// SSE streams, pushed to on their connection taken over (sse_push.go).
		"SSE": TestSSE, "SSENamedClientKeepsQueueAndTakesOver": TestSSENamedClientKeepsQueueAndTakesOver,
		"IdentitySSE": TestIdentitySSE, "GapNoticeSSE": TestGapNoticeSSE, "SSESteadyStreamNotHeld": TestSSESteadyStreamNotHeld,
		"APIDisconnect": TestAPIDisconnect, "HeldRequestsOutliveTimeouts": TestHeldRequestsOutliveTimeouts,
	} {
		t.Run(name, test)
	}
}

// takeoverServer serves s's handler (through the access log when a is not
// nil) on a loopback listener wrapped by TakeoverListener, as the stardust
// command does; under wraps the real listener first (connlimit).
func takeoverServer(t *testing.T, opts Options, a *AccessLog, under func(net.Listener) net.Listener, tweak ...func(*http.Server)) (*Server, *http.Server, string) {
	t.Helper()
	return serveForTest(t, true, opts, a, under, tweak...)
}

// plainServer is takeoverServer without TakeoverListener: every poll is held by
// net/http (hold_on_connection = false), the reference the held path is
// compared with.
func plainServer(t *testing.T, opts Options, tweak ...func(*http.Server)) (*Server, *http.Server, string) {
	t.Helper()
	return serveForTest(t, false, opts, nil, nil, tweak...)
}

func serveForTest(t *testing.T, hold bool, opts Options, a *AccessLog, under func(net.Listener) net.Listener, tweak ...func(*http.Server)) (*Server, *http.Server, string) {
	t.Helper()
	log, _ := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	s := New(opts, logrus.NewEntry(log))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if under != nil {
		l = under(l)
	}
	var h http.Handler = s
	if a != nil {
		h = s.WithAccessLog(a)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	for _, f := range tweak {
		f(srv)
	}
	served := l
	if hold {
		served = TakeoverListener(srv, l)
	}
	go func() { _ = srv.Serve(served) }()
	t.Cleanup(func() {
		s.Close()
		_ = srv.Close()
	})
	return s, srv, l.Addr().String()
}

// rawConn is a client connection that writes requests by hand.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(req string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, req); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one response and its body.
func (rc *rawConn) read() (*http.Response, string) {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		rc.t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatal(err)
	}
	return resp, string(body)
}

// closed reports whether the server closed the connection.
func (rc *rawConn) closed() bool {
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := rc.r.ReadByte()
	return err == io.EOF
}

func pollGet(id, proto, extra string) string {
	return "GET /comet/channel/a/stream/" + id + " " + proto + "\r\nHost: x\r\n" + extra + "\r\n"
}

func publishA(t *testing.T, s *Server, data string) {
	t.Helper()
	if _, err := s.Hub().Publish(&Message{Channel: "/stardust/a", Data: []byte(data)}); err != nil {
		t.Fatal(err)
	}
}

// waitTakenOver waits until n polls are held and none by a handler
// (longpoll.go): every one waits on its connection.
func waitTakenOver(t *testing.T, s *Server, srv *http.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st := stats(t, s.Hub()); st.Polling == n && takeoverCount(srv) == n {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("want %d polls held off net/http: %d polls, %d on their connection", n, stats(t, s.Hub()).Polling, takeoverCount(srv))
}

// takeoverCount is the number of polls held on their connection.
func takeoverCount(srv *http.Server) int {
	return takeoverListenerOf(srv).Count(func(h takeover.Held) bool {
		hc, ok := h.(*takeoverConn)
		if !ok {
			return false // an SSE stream (sse_push.go)
		}
		hc.mu.Lock()
		defer hc.mu.Unlock()
		return hc.p != nil
	})
}

// servedCount is the number of connections served off net/http, holding a
// poll or not.
func servedCount(srv *http.Server) int {
	return takeoverListenerOf(srv).Count(func(takeover.Held) bool { return true })
}

func takeoverListenerOf(srv *http.Server) *takeover.Listener {
	return takeover.Info(srv.ConnContext(context.Background(), nil)).Listener
}

func TestHeldPollKeepAliveAndPipelining(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second}, nil, nil)
	rc := dialRaw(t, addr)
	// A held poll, then a pipelined request behind it.
	rc.send(pollGet("k1", "HTTP/1.1", "") + "GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n")
	waitTakenOver(t, s, srv, 1)
	publishA(t, s, `{"n":1}`)
	resp, body := rc.read()
	if resp.StatusCode != 200 || !strings.Contains(body, `"n":1`) || resp.Close {
		t.Fatalf("held answer: %d close=%v %q", resp.StatusCode, resp.Close, body)
	}
	wantJSONHeaders(t, resp)
	if resp.Header.Get("Date") == "" || resp.ContentLength != int64(len(body)) {
		t.Errorf("headers %v, length %d for %d bytes", resp.Header, resp.ContentLength, len(body))
	}
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "BAYEUX_BROWSER") {
		t.Errorf("the handler's cookie is missing: %v", resp.Header)
	}
	// The pipelined request is served next on the same connection.
	resp, body = rc.read()
	if resp.StatusCode != 200 || !strings.Contains(body, "Stardust COMET Server") {
		t.Fatalf("pipelined request: %d %q", resp.StatusCode, body)
	}
	// And the connection serves polls again: held, then a message.
	rc.send(pollGet("k1", "HTTP/1.1", ""))
	waitTakenOver(t, s, srv, 1)
	publishA(t, s, `{"n":2}`)
	if _, body = rc.read(); !strings.Contains(body, `"n":2`) || strings.Contains(body, `"n":1`) {
		t.Fatalf("second poll on the connection: %q", body)
	}
}

func TestHeldPollClientGoneKeepsMessages(t *testing.T) {
	// A busy client (answered less than BatchDelay ago) gathers before its
	// answer: on the connection taken over by its previous poll, in the
	// goroutine that serves it (takeover.Conn.ServeNext); on a new connection, in
	// net/http's goroutine. Close the connection then, and the gathered
	// batch must stay queued.
	for _, sameConn := range []bool{true, false} {
		t.Run(fmt.Sprintf("same connection %v", sameConn), func(t *testing.T) {
			s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second, Hub: HubOptions{BatchDelay: 500 * time.Millisecond}}, nil, nil)
			rc := dialRaw(t, addr)
			rc.send(pollGet("g1", "HTTP/1.1", ""))
			waitTakenOver(t, s, srv, 1)
			publishA(t, s, `{"n":0}`)
			rc.read()
			if !sameConn {
				rc = dialRaw(t, addr)
			}
			rc.send(pollGet("g1", "HTTP/1.1", "")) // within BatchDelay: this poll gathers
			deadline := time.Now().Add(5 * time.Second)
			for !polling(s.Hub(), "g1") {
				if time.Now().After(deadline) {
					t.Fatal("the second poll is not held")
				}
				time.Sleep(5 * time.Millisecond)
			}
			want := 0
			if sameConn {
				want = 1
			}
			// Polling comes a moment before the takeover: wait for the
			// count, and give a wrong one time to show.
			for takeoverCount(srv) != want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(20 * time.Millisecond)
			if n := takeoverCount(srv); n != want {
				t.Fatalf("%d polls held on their connection, want %d", n, want)
			}
			publishA(t, s, `{"n":1}`)
			time.Sleep(50 * time.Millisecond) // woken, gathering
			rc.c.Close()
			deadline = time.Now().Add(5 * time.Second)
			for polling(s.Hub(), "g1") || takeoverCount(srv) > 0 {
				if time.Now().After(deadline) {
					t.Fatal("the poll of a closed connection was not released")
				}
				time.Sleep(5 * time.Millisecond)
			}
			rc2 := dialRaw(t, addr)
			rc2.send(pollGet("g1", "HTTP/1.1", ""))
			if _, body := rc2.read(); !strings.Contains(body, `"n":1`) {
				t.Fatalf("the message of the closed poll was lost: %q", body)
			}
		})
	}
}

// Connection: close and HTTP/1.0, for the poll that takes its connection
// over and for a next poll served there (takeover.Conn.ServeNext).
func TestHeldPollConnectionClose(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second}, nil, nil)
	for _, next := range []bool{false, true} {
		for i, tc := range []struct {
			name, proto, extra string
			keep               bool
		}{
			{"HTTP/1.0", "HTTP/1.0", "", false},
			{"HTTP/1.0 keep-alive", "HTTP/1.0", "Connection: keep-alive\r\n", true},
			{"HTTP/1.1 close", "HTTP/1.1", "Connection: close\r\n", false},
		} {
			t.Run(fmt.Sprintf("%s, next poll %v", tc.name, next), func(t *testing.T) {
				id := fmt.Sprintf("c%d%v", i, next)
				rc := dialRaw(t, addr)
				if next {
					takeOver(t, s, srv, rc, id)
				}
				rc.send(pollGet(id, tc.proto, tc.extra))
				waitTakenOver(t, s, srv, 1)
				publishA(t, s, `{"n":1}`)
				resp, body := rc.read()
				if !strings.Contains(body, `"n":1`) {
					t.Fatalf("answer %q", body)
				}
				if resp.Close == tc.keep {
					t.Errorf("Connection header %q, want keep-alive %v", resp.Header.Get("Connection"), tc.keep)
				}
				if !tc.keep {
					if !rc.closed() {
						t.Error("the server left the connection open")
					}
					return
				}
				rc.send("GET /comet/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
				if resp, _ := rc.read(); resp.StatusCode != 200 {
					t.Errorf("next request: %d", resp.StatusCode)
				}
			})
		}
	}
}

func TestHeldPollReplacedAndTimeout(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 700 * time.Millisecond}, nil, nil)
	a, b := dialRaw(t, addr), dialRaw(t, addr)
	a.send(pollGet("r1", "HTTP/1.1", ""))
	waitTakenOver(t, s, srv, 1)
	start := time.Now()
	b.send(pollGet("r1", "HTTP/1.1", ""))
	if resp, body := a.read(); resp.StatusCode != 200 || strings.TrimSpace(body) != "[]" || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("replaced poll: %d %q after %s", resp.StatusCode, body, time.Since(start))
	}
	// The newer one times out after its hold.
	if _, body := b.read(); strings.TrimSpace(body) != "[]" || time.Since(start) < 600*time.Millisecond {
		t.Fatalf("timed out poll: %q after %s", body, time.Since(start))
	}
	// Both connections are kept.
	a.send("GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n")
	b.send("GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, rc := range []*rawConn{a, b} {
		if resp, _ := rc.read(); resp.StatusCode != 200 {
			t.Errorf("next request: %d", resp.StatusCode)
		}
	}
}

func TestHeldPollShutdown(t *testing.T) {
	t.Run("server", func(t *testing.T) {
		s, srv, addr := takeoverServer(t, Options{PollTimeout: time.Minute}, nil, nil)
		rc := dialRaw(t, addr)
		rc.send(pollGet("s1", "HTTP/1.1", ""))
		waitTakenOver(t, s, srv, 1)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		resp, body := rc.read()
		if strings.TrimSpace(body) != "[]" || !resp.Close || time.Since(start) > 3*time.Second {
			t.Fatalf("held poll at shutdown: %q close=%v after %s", body, resp.Close, time.Since(start))
		}
	})
	t.Run("hub then server", func(t *testing.T) { // as the stardust command stops
		s, srv, addr := takeoverServer(t, Options{PollTimeout: time.Minute}, nil, nil)
		rcs := []*rawConn{dialRaw(t, addr), dialRaw(t, addr)}
		rcs[0].send(pollGet("s1", "HTTP/1.1", ""))
		rcs[1].send(pollGet("s2", "HTTP/1.1", ""))
		waitTakenOver(t, s, srv, 2)
		s.Close()
		shutdownQuickly(t, srv)
		for _, rc := range rcs {
			if _, body := rc.read(); strings.TrimSpace(body) != "[]" {
				t.Errorf("held poll at shutdown: %q", body)
			}
			if !rc.closed() {
				t.Error("connection left open")
			}
		}
	})
}

// shutdownQuickly shuts srv down, which must take less than 3 s.
func shutdownQuickly(t *testing.T, srv *http.Server) {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("shutdown took %s", time.Since(start))
	}
}

func TestHeldPollConnLimitCountsOnce(t *testing.T) {
	var cl *connlimit.Listener
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second}, nil, func(l net.Listener) net.Listener {
		cl = connlimit.New(l, 2, connlimit.HTTPRefusal, nil)
		return cl
	})
	rc := dialRaw(t, addr)
	for i := range 3 { // held, answered and given back three times
		rc.send(pollGet("l1", "HTTP/1.1", ""))
		waitTakenOver(t, s, srv, 1)
		publishA(t, s, `{"n":1}`)
		rc.read()
		if n := cl.Open(); n != 1 {
			t.Fatalf("round %d: %d connections counted, want 1", i, n)
		}
	}
	rc2 := dialRaw(t, addr) // the second within the cap of 2
	rc2.send("GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := rc2.read(); resp.StatusCode != 200 {
		t.Fatalf("second connection: %d", resp.StatusCode)
	}
	rc.c.Close()
	rc2.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for cl.Open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still counted after the clients left", cl.Open())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHeldPollLoggedAndMeasuredWhenAnswered(t *testing.T) {
	var out syncBuffer
	a := NewAccessLog(&out, 10*time.Millisecond)
	defer a.Close()
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second,
		Metrics: &MetricsOptions{Path: "/metrics", HealthPath: "/health"}}, a, nil)
	rc := dialRaw(t, addr)
	rc.send(pollGet("m1", "HTTP/1.1", ""))
	waitTakenOver(t, s, srv, 1)
	time.Sleep(300 * time.Millisecond)
	if got := out.String(); got != "" {
		t.Fatalf("logged before the answer: %q", got)
	}
	publishA(t, s, `{"n":1}`)
	_, body := rc.read()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	line := out.String()
	m := regexp.MustCompile(`"GET /comet/channel/a/stream/\{id\} HTTP/1.1" (\d+) (\d+) "-" "-" ([0-9.]+)\n$`).FindStringSubmatch(line)
	if m == nil || m[1] != "200" || m[2] != strconv.Itoa(len(body)) || m[3] < "0.300" {
		t.Errorf("access log %q: want status 200, %d bytes, at least 0.3 s", line, len(body))
	}
	rc.send("GET /comet/metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	_, metrics := rc.read()
	route := `code="200",method="GET",route="/comet/channel/{chans}/stream/{id}"`
	for _, want := range []string{
		`stardust_http_request_duration_seconds_bucket{` + route + `,le="0.1"} 0`,
		`stardust_http_request_duration_seconds_bucket{` + route + `,le="1"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestHeldPollClientRemoved(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second}, nil, nil)
	rc := dialRaw(t, addr)
	rc.send(pollGet("e1", "HTTP/1.1", ""))
	waitTakenOver(t, s, srv, 1)
	s.Hub().Remove(clientOf(s.Hub(), "e1"))
	resp, body := rc.read()
	if resp.StatusCode != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("removed client's poll: %d %q", resp.StatusCode, body)
	}
}

// The goroutines of held polls: one each (longpoll.go), not net/http's as
// well.
func TestHeldPollsOneGoroutineEach(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 connections")
	}
	const n = 1000
	s, srv, addr := takeoverServer(t, Options{PollTimeout: time.Minute,
		Hub: HubOptions{AddressMaxSessions: -1, AddressSessionRate: -1, AddressSessionBurst: -1}}, nil, nil)
	runtime.GC()
	before := runtime.NumGoroutine()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, pollGet(fmt.Sprintf("g%d", i), "HTTP/1.1", "")); err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	waitTakenOver(t, s, srv, n)
	time.Sleep(100 * time.Millisecond) // net/http's goroutines end after the handler
	if extra := runtime.NumGoroutine() - before; extra > n+n/10 {
		t.Errorf("%d held polls cost %d goroutines", n, extra)
	}
	s.Close()
	for _, c := range conns[:10] {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("answer at close: %v %v", resp, err)
		}
	}
}

func TestHeldPollConnectionWaitsAsKeepAlive(t *testing.T) {
	// Given back, a connection waits for the next request as long as an
	// idle keep-alive one (IdleTimeout), not a new one's header time; the
	// header, once begun, has ReadHeaderTimeout.
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second}, nil, nil, func(srv *http.Server) {
		srv.ReadHeaderTimeout, srv.IdleTimeout = 300*time.Millisecond, 5*time.Second
	})
	rc := dialRaw(t, addr)
	rc.send(pollGet("i1", "HTTP/1.1", ""))
	waitTakenOver(t, s, srv, 1)
	publishA(t, s, `{"n":1}`)
	rc.read()
	time.Sleep(time.Second)
	rc.send("GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := rc.read(); resp.StatusCode != 200 {
		t.Fatalf("request after an idle second: %d", resp.StatusCode)
	}
	// The same again, with a header that stalls: closed after its time.
	rc.send(pollGet("i1", "HTTP/1.1", ""))
	waitTakenOver(t, s, srv, 1)
	publishA(t, s, `{"n":2}`)
	rc.read()
	time.Sleep(500 * time.Millisecond)
	rc.send("GET /comet/ HTTP/1.1\r\n")
	start := time.Now()
	if !rc.closed() || time.Since(start) > 3*time.Second {
		t.Fatalf("a stalled header was not cut after ReadHeaderTimeout (%s)", time.Since(start))
	}
}
