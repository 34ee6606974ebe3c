package takeover

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// testConn is a caller's type, as the server's: it embeds a Conn, so that
// the handler of the next requests finds it as its ResponseWriter, and is
// the Held the listener's Close interrupts.
type testConn struct {
	Conn
	woken chan struct{}
}

func (tc *testConn) Interrupt() { tc.Wake() }

// TestConnTakeWaitWakeFlushServeNext runs the whole API once, as a server
// does: a GET is taken over, waits, is woken from another goroutine,
// answers as net/http would, then the connection's next GET is served by
// the handler with the caller's type as its ResponseWriter, and a POST
// goes back to net/http.
func TestConnTakeWaitWakeFlushServeNext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}
	hl := NewListener(srv, l)
	var (
		mu     sync.Mutex
		events []Event
		served []string
	)
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served = append(served, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if tc, ok := w.(*testConn); ok { // a next request, served after the takeover
			body, _ := io.ReadAll(r.Body)
			_, _ = io.WriteString(tc, "next"+string(body))
			return
		}
		if r.Method != http.MethodGet {
			_, _ = io.WriteString(w, "net/http")
			return
		}
		tc := &testConn{woken: make(chan struct{}, 1)}
		if !tc.Take(Info(r.Context()), w.(http.Hijacker), w.Header(), r, tc, time.Second) {
			t.Error("Take refused a plain HTTP/1.1 GET")
			return
		}
		go func() {
			defer tc.Done()
			woken := false
			for !woken {
				ev := tc.Wait(time.Now().Add(5*time.Second), func() bool {
					select {
					case <-tc.woken:
						return true
					default:
						return false
					}
				})
				mu.Lock()
				events = append(events, ev)
				mu.Unlock()
				woken = ev == EventWoken
			}
			tc.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(tc, "woken")
			if keep, _, err := tc.Flush(true); err != nil || !keep {
				t.Errorf("Flush: keep-alive %v, %v", keep, err)
				tc.Close()
				return
			}
			tc.ServeNext(tc, func() bool { return true })
		}()
		go func() {
			time.Sleep(50 * time.Millisecond)
			tc.woken <- struct{}{}
			tc.Wake() // ends the Wait in progress: EventDeadline, then the look sees it
		}()
	})
	go func() { _ = srv.Serve(hl) }()
	t.Cleanup(func() { _ = srv.Close() })

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	read := func(method string) string {
		t.Helper()
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Date") == "" || resp.ContentLength != int64(len(b)) {
			t.Errorf("answer %d, header %v, %d bytes", resp.StatusCode, resp.Header, len(b))
		}
		return string(b)
	}
	_, _ = io.WriteString(c, "GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
	if got := read("GET"); got != "woken" {
		t.Fatalf("first answer %q, want woken", got)
	}
	_, _ = io.WriteString(c, "GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
	if got := read("GET"); got != "next" {
		t.Fatalf("next request's answer %q, want next (served after the takeover)", got)
	}
	// A POST with a small body (a Bayeux connect) is served here once its
	// body has all come, in two pieces here; its body is not the next
	// request.
	_, _ = io.WriteString(c, "POST /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n[1,")
	time.Sleep(20 * time.Millisecond)
	_, _ = io.WriteString(c, "2,3]")
	if got := read("POST"); got != "next[1,2,3]" {
		t.Fatalf("a POST's answer %q, want next[1,2,3] (served after the takeover, with its body)", got)
	}
	_, _ = io.WriteString(c, "PUT /poll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	if got := read("PUT"); got != "net/http" {
		t.Fatalf("a PUT's answer %q, want net/http's (given back)", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) < 1 || events[len(events)-1] != EventWoken {
		t.Errorf("Wait saw %v, want it to end woken", events)
	}
	if strings.Join(served, ",") != "GET /poll,GET /poll,POST /poll,PUT /poll" {
		t.Errorf("served %v", served)
	}
}

// A Socket writes a frame built here, and the rest of one the socket did
// not take at once, under its lock.
func TestSocketWritesFrames(t *testing.T) {
	srv, client := pair(t)
	var s Socket
	s.Open(srv, time.Second)
	f := NewTextFrame(5)
	f = SealTextFrame(append(f, "hello"...))
	if string(FramePayload(f)) != "hello" || f[0] != 0x81 || f[1] != 5 {
		t.Fatalf("frame % x", f)
	}
	s.Lock()
	rest, err := s.WriteNowLocked(f)
	if err == nil && len(rest) > 0 {
		err = s.WriteRestLocked(rest)
	}
	s.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(f); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 2*len(f))
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != string(f)+string(f) {
		t.Fatalf("read % x, %v", got, err)
	}
}
