package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
)

// holdBack is how late the tool's reader is made to read in these tests,
// as the tool is when it reads 5,000 answers on one CPU; an arrival stamp
// must not include it. The bounds asserted are far from both (a shared,
// busy test machine).
const (
	holdBack   = 300 * time.Millisecond
	arrivalMax = 150 * time.Millisecond
)

// dialStamped dials addr as the tool does (loopback, stampingDial).
func dialStamped(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := stampingDial(loopbackDialer.DialContext)(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, ok := c.(arrivalConn); !ok {
		t.Fatalf("dialled connection %T records no arrivals", c)
	}
	return c
}

// TestStampConnReadLate: a peer writes at T, the wrapper reads 300 ms
// later; the stamp is T (within bounds), the data is intact, the read
// deadline still works, the peer's close reads as io.EOF, and a read
// allocates nothing.
func TestStampConnReadLate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := dialStamped(t, ln.Addr().String())
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	if _, ok := c.(arrivalConn).lastArrival(); ok {
		t.Fatal("an arrival before anything was read")
	}
	sent := time.Now()
	if _, err := peer.Write([]byte("answer")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(holdBack)
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	read := time.Now()
	if err != nil || string(buf[:n]) != "answer" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	at := arrivalOf(c)
	if !at.kernel {
		t.Fatal("no kernel stamp")
	}
	if d := at.at.Sub(sent); d < -time.Millisecond || d > arrivalMax {
		t.Errorf("stamp %v after the write (read %v after it): want the arrival, not the read", d, read.Sub(sent))
	}

	// The read deadline is honoured, as a timeout.
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(buf); !isTimeout(err) {
		t.Errorf("read past the deadline: %v, want a timeout", err)
	}
	_ = c.SetReadDeadline(time.Time{})

	// No allocation per read.
	if _, err := peer.Write(make([]byte, 200)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if a := testing.AllocsPerRun(100, func() {
		if _, err := c.Read(buf[:1]); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("%v allocations per read, want 0", a)
	}

	_ = peer.Close()
	for {
		if _, err = c.Read(buf); err != nil {
			break
		}
	}
	if err != io.EOF {
		t.Errorf("read after the peer closed: %v, want io.EOF", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// lateConn holds back every read by holdBack before it reads: the tool
// busy with other answers.
type lateConn struct{ net.Conn }

func (l lateConn) Read(p []byte) (int, error) {
	time.Sleep(holdBack)
	return l.Conn.Read(p)
}

func (l lateConn) lastArrival() (time.Time, bool) { return l.Conn.(arrivalConn).lastArrival() }

func lateDial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := stampingDial(loopbackDialer.DialContext)(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return lateConn{c}, nil
}

// lateRunner is a runner of one client on one channel against srv, whose
// connections are read late.
func lateRunner(t *testing.T, mode, srv string) *runner {
	t.Helper()
	cfg := testConfig(t, "--url", srv, "--mode", mode, "--clients", "1", "--channels", "1", "--publishers", "1")
	r := newRunner(cfg)
	r.http.Transport.(*http.Transport).DialContext = lateDial
	r.ws.NetDialContext = lateDial
	t.Cleanup(r.http.CloseIdleConnections)
	return r
}

// message is one load message of run r published at t.
func message(r *runner, t time.Time) string {
	return fmt.Sprintf(`{"load":%q,"t":%d,"p":0,"n":0}`, r.run, t.UnixNano())
}

// checkArrivalLatency checks that r received one message, stamped by the
// kernel, with a latency that leaves out the hold-back.
func checkArrivalLatency(t *testing.T, r *runner) {
	t.Helper()
	if n := r.received.Load(); n != 1 {
		t.Fatalf("received %d, want 1", n)
	}
	if got := r.clocks.name(); got != clockKernel {
		t.Errorf("clock %q, want %q", got, clockKernel)
	}
	if p := r.latency.percentiles(); p.Max > float64(arrivalMax/time.Millisecond) {
		t.Errorf("latency %.1f ms with reads held back %v: the tool's own read time is counted", p.Max, holdBack)
	}
}

// TestHTTPLatencyIsArrival: the server answers a long poll (Stardust API,
// Bayeux) or sends an event at T, the tool reads it 300 ms later; the
// latency recorded is T's, not the read's (it was the read's, ≥ 300 ms,
// before the kernel stamps).
func TestHTTPLatencyIsArrival(t *testing.T) {
	for _, tc := range []struct {
		mode, contentType string
		body              func(r *runner) string
		client            func(c *client, u string) error
	}{
		{"poll", "application/json", func(r *runner) string { return "[" + message(r, time.Now()) + "]" },
			func(c *client, u string) error {
				msgs, at, err := c.pollOnce(context.Background(), u)
				c.got(msgs, at)
				return err
			}},
		{"bayeux", "application/json",
			func(r *runner) string {
				return `[{"channel":"` + r.bayeuxChannel(0) + `","data":` + message(r, time.Now()) + "}]"
			},
			func(c *client, _ string) error {
				msgs, at, err := c.r.bayeuxPost(context.Background(), nil, 10*time.Second, map[string]any{"channel": "/meta/connect"})
				c.gotBayeux(msgs, at)
				return err
			}},
		{"sse", "text/event-stream", func(r *runner) string { return "data: " + message(r, time.Now()) + "\n\n" },
			func(c *client, u string) error {
				var lastID string
				return c.sseOnce(context.Background(), u, &lastID)
			}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			var r *runner
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tc.contentType)
				_, _ = io.WriteString(w, tc.body(r))
			}))
			defer srv.Close()
			r = lateRunner(t, tc.mode, srv.URL)
			if err := tc.client(r.newClient(0), srv.URL+"/channel/x/stream"); err != nil {
				t.Fatal(err)
			}
			checkArrivalLatency(t, r)
		})
	}
}

// TestWebSocketLatencyIsArrival: the same for a frame of a Centrifugo
// unidirectional WebSocket.
func TestWebSocketLatencyIsArrival(t *testing.T) {
	var r *runner
	var served atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, req, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		if _, _, err := conn.ReadMessage(); err != nil { // the connect request
			return
		}
		ch := r.names[0]
		_ = conn.WriteMessage(websocket.TextMessage, []byte(`{"connect":{"client":"c1","subs":{"`+ch+`":{}}}}`))
		_ = conn.WriteMessage(websocket.TextMessage, []byte(`{"channel":"`+ch+`","pub":{"data":`+message(r, time.Now())+`}}`))
		served.Store(true)
		_, _, _ = conn.ReadMessage() // until the client goes
	}))
	defer srv.Close()
	r = lateRunner(t, "uni_websocket", srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := r.newClient(0)
	done := make(chan error, 1)
	go func() { done <- c.uniWebSocketOnce(ctx) }()
	for r.received.Load() == 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if !served.Load() {
		t.Fatal("the server did not send the message")
	}
	checkArrivalLatency(t, r)
}

// BenchmarkRead compares a read through stampConn (recvmsg and its
// timestamp) with net.TCPConn's: a peer writes 200-byte answers, one read
// each.
func BenchmarkRead(b *testing.B) {
	for _, stamped := range []bool{false, true} {
		b.Run(fmt.Sprintf("stamped=%v", stamped), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			if stamped {
				c = stampArrivals(c)
			}
			defer c.Close()
			peer, err := ln.Accept()
			if err != nil {
				b.Fatal(err)
			}
			defer peer.Close()
			msg, buf := make([]byte, 200), make([]byte, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := peer.Write(msg); err != nil {
					b.Fatal(err)
				}
				for got := 0; got < len(msg); {
					n, err := c.Read(buf)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
		})
	}
}

// FuzzKernelStamp: whatever the control messages, kernelStamp reads only
// inside them (and finds the stamp in a well-formed SCM_TIMESTAMPNS).
func FuzzKernelStamp(f *testing.F) {
	hdr := syscall.CmsgLen(0)
	good := make([]byte, syscall.CmsgSpace(16))
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&good[0]))
	h.Level, h.Type = syscall.SOL_SOCKET, syscall.SCM_TIMESTAMPNS
	h.SetLen(syscall.CmsgLen(int(unsafe.Sizeof(syscall.Timespec{}))))
	*(*syscall.Timespec)(unsafe.Pointer(&good[hdr])) = syscall.NsecToTimespec(1_700_000_000_123_456_789)
	f.Add(good)
	f.Add(good[:hdr])
	f.Add(append(slices.Clone(good), good...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		if len(oob) > 1024 {
			return
		}
		aligned := make([]uint64, (len(oob)+7)/8)
		b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(aligned))), len(aligned)*8)[:len(oob)]
		copy(b, oob)
		ns := kernelStamp(b)
		if len(oob) >= len(good) && string(oob[:len(good)]) == string(good) && ns != 1_700_000_000_123_456_789 {
			t.Errorf("stamp %d from a well-formed control message", ns)
		}
	})
}
