package fcgi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/internal/fcgitest"
)

// gate is a handler that holds each request until its path is released,
// and tells of every request it starts.
type gate struct {
	mu      sync.Mutex
	release map[string]chan struct{}
	entered chan string
	all     bool // every request released
}

func newGate() *gate {
	return &gate{release: map[string]chan struct{}{}, entered: make(chan string, 100)}
}

func (g *gate) ch(path string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.release[path] == nil {
		g.release[path] = make(chan struct{})
		if g.all {
			close(g.release[path])
		}
	}
	return g.release[path]
}

// open lets the requests for path go.
func (g *gate) open(path string) { close(g.ch(path)) }

// releaseAll lets every request go, those to come included.
func (g *gate) releaseAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, ch := range g.release {
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
	g.all = true
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.entered <- r.URL.Path
	<-g.ch(r.URL.Path)
	io.WriteString(w, "released "+r.URL.Path)
}

func (g *gate) waitEntered(t *testing.T, path string) {
	t.Helper()
	select {
	case p := <-g.entered:
		if p != path {
			t.Fatalf("handler entered for %s, want %s", p, path)
		}
	case <-time.After(waitLong):
		t.Fatalf("handler not called for %s", path)
	}
}

// wantOverloaded reads request id's answer: a 503 with Retry-After, ended
// by FCGI_END_REQUEST with FCGI_OVERLOADED.
func wantOverloaded(t *testing.T, c *fcgitest.Conn, id uint16) {
	t.Helper()
	stop := time.AfterFunc(waitLong, func() { c.Close() }) // no answer: fail, not hang
	defer stop.Stop()
	resp, err := c.ReadResponse(id)
	if err != nil {
		t.Fatalf("request %d over the limit: %v", id, err)
	}
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!errors.Is(err, fcgitest.ErrProtocolStatus) || !strings.Contains(err.Error(), "protocol status 2") {
		t.Fatalf("request %d over the limit: %s, Retry-After %q, %q, end %v; want 503 and FCGI_OVERLOADED",
			id, resp.Status, resp.Header.Get("Retry-After"), body, err)
	}
}

// Issue 17, point 7: a FastCGI connection carries at most PerConn requests
// at once and the front at most Total; beyond, a request is answered 503
// and FCGI_OVERLOADED at once, its records are dropped, and the connection
// serves on. 5,000 requests on one connection once added 86 MiB.
func TestRequestsInFlightBounded(t *testing.T) {
	g := newGate()
	logger, _ := newTestLogger()
	logger.SetLevel(logrus.InfoLevel)
	f := NewLimited(g, logrus.NewEntry(logger), Limits{PerConn: 3, Total: 4})
	// A socket, not a pipe: a refusal is written while the web server
	// still sends the refused request's body.
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = f.Serve(l) }()
	t.Cleanup(func() {
		g.releaseAll()
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	dial := func() *fcgitest.Conn {
		t.Helper()
		c, err := fcgitest.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a := dial()
	send := func(c *fcgitest.Conn, id uint16, body string) {
		t.Helper()
		if err := c.Send(id, true, fcgitest.NginxParams("POST", "/r"+string(rune('0'+id))), strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	for id := uint16(1); id <= 3; id++ {
		send(a, id, "")
		g.waitEntered(t, "/r"+string(rune('0'+id)))
	}
	send(a, 4, strings.Repeat("x", 20000)) // its body is dropped
	wantOverloaded(t, a, 4)
	// The front's total: one more on another connection, then no more.
	b := dial()
	send(b, 5, "")
	g.waitEntered(t, "/r5")
	send(b, 6, "")
	wantOverloaded(t, b, 6)
	// Answered requests make room; the connection that refused serves on.
	g.open("/r1")
	if body := readBody(t, a, 1); body != "released /r1" {
		t.Fatalf("request 1: %q", body)
	}
	send(a, 4, "again")
	g.waitEntered(t, "/r4")
	g.open("/r4")
	if body := readBody(t, a, 4); body != "released /r4" {
		t.Fatalf("request 4 sent again: %q", body)
	}
}

func readBody(t *testing.T, c *fcgitest.Conn, id uint16) string {
	t.Helper()
	resp, err := c.ReadResponse(id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("request %d: %v", id, err)
	}
	return string(b)
}
