package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// takeOver has rc's connection taken over: a poll of a new client, with
// nothing queued, held off net/http, then answered; the connection is then
// served by the goroutine that answered (takeover.Conn.ServeNext).
func takeOver(t *testing.T, s *Server, srv *http.Server, rc *rawConn, id string) {
	t.Helper()
	rc.send(pollGet(id, "HTTP/1.1", ""))
	waitTakenOver(t, s, srv, 1)
	publishA(t, s, `{"n":0}`)
	if resp, _ := rc.read(); resp.StatusCode != 200 {
		t.Fatalf("first poll: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for servedCount(srv) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the connection was not kept off net/http")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// countNew counts the connections net/http sets up (http.StateNew).
func countNew(n *atomic.Int32) func(*http.Server) {
	return func(srv *http.Server) {
		srv.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				n.Add(1)
			}
		}
	}
}

func TestServedHereNextPolls(t *testing.T) {
	var setUp atomic.Int32
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second}, nil, nil, countNew(&setUp))
	rc := dialRaw(t, addr)
	for i := range 5 {
		rc.send(pollGet("n1", "HTTP/1.1", ""))
		waitTakenOver(t, s, srv, 1)
		publishA(t, s, `{"n":`+string(rune('0'+i))+`}`)
		resp, body := rc.read()
		if resp.StatusCode != 200 || !strings.Contains(body, `"n":`+string(rune('0'+i))) || resp.Close {
			t.Fatalf("poll %d: %d close=%v %q", i, resp.StatusCode, resp.Close, body)
		}
		wantJSONHeaders(t, resp)
		if resp.Header.Get("Date") == "" || resp.ContentLength != int64(len(body)) {
			t.Errorf("poll %d: headers %v, length %d for %d bytes", i, resp.Header, resp.ContentLength, len(body))
		}
	}
	// One connection set up by net/http, five polls served on it, four of
	// them by the goroutine that answered the first.
	if n := setUp.Load(); n != 1 {
		t.Errorf("net/http set the connection up %d times, want once", n)
	}
	if n := servedCount(srv); n != 1 {
		t.Errorf("%d connections served off net/http, want 1", n)
	}
	// A poll answered at once (a message queued) is served here too.
	publishA(t, s, `{"n":"queued"}`)
	rc.send(pollGet("n1", "HTTP/1.1", ""))
	if _, body := rc.read(); !strings.Contains(body, "queued") {
		t.Fatalf("queued message: %q", body)
	}
	// Pipelined: a poll, and a request for net/http behind it.
	rc.send(pollGet("n1", "HTTP/1.1", "") + "GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n")
	waitTakenOver(t, s, srv, 1)
	publishA(t, s, `{"n":"piped"}`)
	if _, body := rc.read(); !strings.Contains(body, "piped") {
		t.Fatalf("pipelined poll: %q", body)
	}
	if resp, body := rc.read(); resp.StatusCode != 200 || !strings.Contains(body, "Stardust COMET Server") {
		t.Fatalf("request behind it: %d %q", resp.StatusCode, body)
	}
	if n := setUp.Load(); n != 2 {
		t.Errorf("net/http set the connection up %d times, want twice (once given back)", n)
	}
}

// Every request that is not the same client's next poll is handed back to
// net/http, which answers it as it would on a connection of its own.
func TestServedHereHandsBackWhatItDoesNotServe(t *testing.T) {
	tweak := func(srv *http.Server) { srv.MaxHeaderBytes = 1024 }
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 300 * time.Millisecond}, nil, nil, tweak)
	big := strings.Repeat("b", 8000)
	for i, tc := range []struct{ name, req string }{
		{"another path", "GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"HEAD", "HEAD /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"POST", "POST /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"},
		{"a body", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"},
		{"chunked", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"Content-Length 0", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"},
		{"Content-Length and chunked", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"two Content-Lengths", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
		{"HTTP/1.0 with a body", "GET /comet/channel/a/stream/ID HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc"},
		{"no Host", "GET /comet/channel/a/stream/ID HTTP/1.1\r\n\r\n"},
		{"two Hosts", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
		{"another Host", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: y\r\n\r\n"},
		{"a bad Host", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x y\r\n\r\n"},
		{"absolute form", "GET http://x/comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"a bad header name", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nBad(Name): v\r\n\r\n"},
		{"a bad header value", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n"},
		{"a header too large", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n"},
		{"a bad request line", "GET /comet/channel/a/stream/ID\r\nHost: x\r\n\r\n"},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{"an upgrade", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{"Expect", "GET /comet/channel/a/stream/ID HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n"},
		{"bare newlines", "GET /comet/channel/a/stream/ID HTTP/1.1\nHost: x\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh := dialRaw(t, addr)
			fresh.send(tc.req)
			want := statusOrClosed(fresh, tc.req)
			rc := dialRaw(t, addr)
			takeOver(t, s, srv, rc, fmt.Sprintf("h%d", i))
			rc.send(tc.req)
			if got := statusOrClosed(rc, tc.req); got != want {
				t.Errorf("on a connection served off net/http: %s, on a new one: %s", got, want)
			}
		})
	}
}

// statusOrClosed is the status line of the answer to req on rc, or
// "closed".
func statusOrClosed(rc *rawConn, req string) string {
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	method, _, _ := strings.Cut(req, " ")
	resp, err := http.ReadResponse(rc.r, &http.Request{Method: method})
	if err != nil {
		return "closed"
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Status
}

func TestServedHereIdleAndShutdown(t *testing.T) {
	t.Run("idle timeout", func(t *testing.T) {
		s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second}, nil, nil, func(srv *http.Server) {
			srv.IdleTimeout = 500 * time.Millisecond
		})
		rc := dialRaw(t, addr)
		takeOver(t, s, srv, rc, "it1")
		start := time.Now()
		if !rc.closed() || time.Since(start) < 300*time.Millisecond || time.Since(start) > 4*time.Second {
			t.Fatalf("idle connection closed after %s, want IdleTimeout (500ms)", time.Since(start))
		}
		deadline := time.Now().Add(5 * time.Second)
		for servedCount(srv) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("the closed connection is still tracked")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		s, srv, addr := takeoverServer(t, Options{PollTimeout: time.Minute}, nil, nil)
		idle, holding := dialRaw(t, addr), dialRaw(t, addr)
		takeOver(t, s, srv, idle, "sd1")
		takeOver(t, s, srv, holding, "sd2")
		holding.send(pollGet("sd2", "HTTP/1.1", ""))
		deadline := time.Now().Add(5 * time.Second)
		for takeoverCount(srv) != 1 {
			if time.Now().After(deadline) {
				t.Fatal("the poll is not held")
			}
			time.Sleep(2 * time.Millisecond)
		}
		shutdownQuickly(t, srv)
		if resp, _ := holding.read(); !resp.Close {
			t.Error("the poll held at shutdown was answered without Connection: close")
		}
		for _, rc := range []*rawConn{idle, holding} {
			if !rc.closed() {
				t.Error("connection left open")
			}
		}
	})
}

// A request served off net/http has what net/http would give it: the
// connection's context (ConnContext's values), the client's address; a
// panic in the handler is logged and closes the connection, as in
// net/http, and the server goes on.
func TestServedHereRequestAndPanic(t *testing.T) {
	type ctxKey struct{}
	var mu sync.Mutex
	var seen []string
	var logged bytes.Buffer
	var logMu sync.Mutex
	tweak := func(srv *http.Server) {
		srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, ctxKey{}, "conn-value")
		}
		next := srv.Handler
		srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			v, _ := r.Context().Value(ctxKey{}).(string)
			mu.Lock()
			seen = append(seen, v+" "+r.RemoteAddr+" "+r.Host)
			mu.Unlock()
			if r.URL.RawQuery == "panic" {
				panic("boom")
			}
			next.ServeHTTP(w, r)
		})
		srv.ErrorLog = log.New(writerFunc(func(p []byte) (int, error) {
			logMu.Lock()
			defer logMu.Unlock()
			return logged.Write(p)
		}), "", 0)
	}
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 200 * time.Millisecond}, nil, nil, tweak)
	rc := dialRaw(t, addr)
	takeOver(t, s, srv, rc, "p1")
	rc.send(pollGet("p1", "HTTP/1.1", ""))
	rc.read()
	mu.Lock()
	want := "conn-value " + rc.c.LocalAddr().String() + " x"
	if len(seen) != 2 || seen[0] != want || seen[1] != want {
		t.Errorf("requests seen %q, want twice %q", seen, want)
	}
	mu.Unlock()
	rc.send("GET /comet/channel/a/stream/p1?panic HTTP/1.1\r\nHost: x\r\n\r\n")
	if !rc.closed() {
		t.Fatal("the connection of a panicking handler was left open")
	}
	logMu.Lock()
	if !strings.Contains(logged.String(), "panic serving") || !strings.Contains(logged.String(), "boom") {
		t.Errorf("panic not logged: %q", logged.String())
	}
	logMu.Unlock()
	rc2 := dialRaw(t, addr)
	rc2.send("GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := rc2.read(); resp.StatusCode != 200 {
		t.Fatalf("after the panic: %d", resp.StatusCode)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
