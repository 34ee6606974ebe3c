package takeover

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func TestFallbacksCounted(t *testing.T) {
	var f Fallbacks
	f.Add(UsePoll, ReasonNoSyscallConn)
	f.Add(UsePoll, ReasonNoSyscallConn)
	f.Add(UseWebSocket, ReasonUnsupported)
	f.Add(UseSSE, ReasonNoSyscallConn)
	f.Add(UsePoll, ReasonNone) // not a fallback
	got := map[string]uint64{}
	f.Each(func(use, reason string, n uint64) { got[use+"/"+reason] = n })
	want := map[string]uint64{"poll/unsupported": 0, "poll/no_syscall_conn": 2,
		"websocket/unsupported": 1, "websocket/no_syscall_conn": 0, "sse/unsupported": 0, "sse/no_syscall_conn": 1}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d, want %d", k, got[k], n)
		}
	}
}

// pair is a connected loopback TCP pair.
func pair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// A connection that hides its descriptor (a wrapper without SyscallConn)
// is reported, and written to the portable way.
func TestOpenReportsHiddenDescriptor(t *testing.T) {
	srv, client := pair(t)
	var d descriptor
	want := ReasonNoSyscallConn
	if !supported {
		want = ReasonUnsupported
	}
	if got := d.Open(struct{ net.Conn }{srv}); got != want || d.Ok() {
		t.Fatalf("wrapped: %v (ok %v), want %v", got, d.Ok(), want)
	}
	if err := writeAll(srv, &d, []byte("hello"), time.Second, nil); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// On a system with the raw path, a TCP connection's descriptor is taken,
// written to without blocking, and waited on until readable.
func TestDescWriteAndWait(t *testing.T) {
	if !supported {
		t.Skip("no raw-descriptor path on this system")
	}
	srv, client := pair(t)
	var d descriptor
	if r := d.Open(srv); r != ReasonNone || !d.Ok() {
		t.Fatalf("Open: %v", r)
	}
	if rest, err := d.WriteNow([]byte("now")); err != nil || len(rest) != 0 {
		t.Fatalf("WriteNow: rest %q, %v", rest, err)
	}
	buf := make([]byte, 3)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "now" {
		t.Fatalf("read %q, %v", buf, err)
	}
	// Nothing to read: the wait ends with the deadline.
	_ = srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := d.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read without data before the deadline: %v", err)
	}
	// Bytes that come during the wait end it.
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, _ = client.Write([]byte("now"))
	}()
	if n, err := d.Read(buf); err != nil || string(buf[:n]) != "now" {
		t.Fatalf("Read with data: %q, %v", buf[:n], err)
	}
	_, _ = client.Write([]byte("next"))
	bp, b := d.ReadFirst()
	if bp == nil || string(b) != "next" {
		t.Fatalf("ReadFirst: %q", b)
	}
	PutBuf(bp, b)
}

// The end of a client that came before a wait counts, though another read
// saw it first (net/http's background read, before the takeover): the
// runtime's poller forgets that readiness, and a wait that did not look
// first waited for its deadline (a poll held until its timeout for a
// client long gone).
func TestDescReadSeesEarlierEnd(t *testing.T) {
	if !supported {
		t.Skip("no raw-descriptor path on this system")
	}
	srv, client := pair(t)
	var d descriptor
	if r := d.Open(srv); r != ReasonNone {
		t.Fatalf("Open: %v", r)
	}
	_ = client.Close()
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := srv.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the first read of the end: %v", err)
	}
	if _, err := d.Read(make([]byte, 8)); err != io.EOF {
		t.Fatalf("a wait after the end was read: %v, want io.EOF at once", err)
	}
}

// A descriptor's write and read allocate nothing (the functions RawConn
// runs are made once for the descriptor): one WebSocket frame or answer
// written, one wait read, with no garbage per call.
func TestDescWriteAndReadAllocateNothing(t *testing.T) {
	if !supported {
		t.Skip("no raw-descriptor path on this system")
	}
	srv, client := pair(t)
	var d descriptor
	if d.Open(srv) != ReasonNone {
		t.Fatal("no descriptor")
	}
	msg, buf, back := []byte("hello"), make([]byte, 64), make([]byte, 5)
	allocs := testing.AllocsPerRun(100, func() {
		if rest, err := d.WriteNow(msg); err != nil || len(rest) > 0 {
			t.Fatalf("WriteNow: %d left, %v", len(rest), err)
		}
		if _, err := io.ReadFull(client, back); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		if n, err := d.Read(buf); err != nil || n == 0 {
			t.Fatalf("Read: %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per write and read, want 0", allocs)
	}
}

// BenchmarkDescriptorWrite: one small write through the descriptor (a
// WebSocket frame to one subscriber), read back by the peer outside the
// timing's concern (it is in the loop: the socket must not fill).
func BenchmarkDescriptorWrite(b *testing.B) {
	if !supported {
		b.Skip("no raw-descriptor path on this system")
	}
	srv, client := pair(&testing.T{})
	var d descriptor
	d.Open(srv)
	frame, back := make([]byte, 100), make([]byte, 100)
	b.ReportAllocs()
	for range b.N {
		if _, err := d.WriteNow(frame); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, back); err != nil {
			b.Fatal(err)
		}
	}
}
