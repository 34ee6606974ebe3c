package main

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// stampArrivals returns c wrapped so that its reads take the kernel's
// receive timestamp of the bytes they return (SO_TIMESTAMPNS, a software
// stamp the kernel puts on each incoming segment; recvmsg gives that of the
// latest segment a read returns). c is returned as it is when it is not a
// TCP connection or the option cannot be set: the read clock then.
func stampArrivals(c net.Conn) net.Conn {
	stampsOn()
	if s := newStampConn(c); s != nil {
		return s
	}
	return c
}

// newStampConn is stampArrivals' wrapping: nil when c is not a TCP
// connection or the option cannot be set.
func newStampConn(c net.Conn) *stampConn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil || serr != nil {
		return nil
	}
	s := &stampConn{Conn: c, raw: raw}
	s.recv = s.recvmsg // bound once: no closure allocated per read
	return s
}

// stampsOn keeps the kernel's receive timestamps on for the life of the
// process. Linux stamps incoming segments once any socket asks for it, but
// switches that on through deferred work, and off again when the last such
// socket closes: segments that come meanwhile carry no stamp, and the first
// deliveries of a run read with the read clock (TestHTTPLatencyIsArrival
// failed so in CI: "clock read" for a connection dialled after the previous
// case's had closed). It holds one loopback pair that asks for stamps, and
// returns once a byte sent on it came stamped, or after a second (the read
// clock then serves where there is no stamp).
var stampsOn = sync.OnceFunc(func() {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return
	}
	peer := <-accepted
	s := newStampConn(c)
	if s == nil || peer == nil {
		c.Close()
		if peer != nil {
			peer.Close()
		}
		return
	}
	// Both ends stay open: the process's life.
	buf := make([]byte, 1)
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		_ = s.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := peer.Write(buf); err != nil {
			return
		}
		if _, err := s.Read(buf); err != nil {
			return
		}
		if _, ok := s.lastArrival(); ok {
			return
		}
	}
})

// stampConn is a TCP connection whose reads record when their bytes
// arrived. It embeds the net.Conn interface, not *net.TCPConn, so that no
// method that reads (WriteTo) bypasses Read.
type stampConn struct {
	net.Conn
	raw  syscall.RawConn
	last atomic.Int64 // Unix ns of the latest read's kernel stamp; 0: none

	// One read's state, for recv; reads are not concurrent (net.Conn's
	// readers, bufio and the transports, read from one goroutine at a time).
	p    []byte
	n    int
	err  error
	oob  [8]uint64 // 64 bytes, aligned for the control message headers
	recv func(fd uintptr) bool
}

var _ arrivalConn = (*stampConn)(nil)

func (c *stampConn) lastArrival() (time.Time, bool) {
	ns := c.last.Load()
	return time.Unix(0, ns), ns != 0
}

// Read is recvmsg on the non-blocking socket, waiting in the runtime's
// poller while there is nothing to read (which honours the read deadline),
// as net.TCPConn.Read does.
func (c *stampConn) Read(p []byte) (int, error) {
	if len(p) == 0 { // recvmsg with control space would consume a byte
		return 0, nil
	}
	c.p = p
	err := c.raw.Read(c.recv)
	n, rerr := c.n, c.err
	c.p, c.err = nil, nil
	if err == nil {
		err = rerr
	}
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			op.Op = "read"
		} else {
			err = &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
		}
		return 0, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// recvmsg is one attempt; it returns false when the socket has nothing yet.
func (c *stampConn) recvmsg(fd uintptr) bool {
	oob := unsafe.Slice((*byte)(unsafe.Pointer(&c.oob[0])), len(c.oob)*8)
	for {
		n, oobn, _, _, err := syscall.Recvmsg(int(fd), c.p, oob, 0)
		switch err {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case nil:
			c.n = n
			if n > 0 {
				if ns := kernelStamp(oob[:oobn]); ns != 0 {
					c.last.Store(ns)
				}
			}
		default:
			c.n, c.err = 0, err
		}
		return true
	}
}

// kernelStamp finds the SCM_TIMESTAMPNS control message in oob (which must
// start 8-byte aligned) and returns its time in Unix ns, 0 when there is
// none (a segment that came before the option was set has no stamp).
func kernelStamp(oob []byte) int64 {
	hdr := syscall.CmsgLen(0)
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS &&
			l >= syscall.CmsgLen(int(unsafe.Sizeof(syscall.Timespec{}))) {
			return (*syscall.Timespec)(unsafe.Pointer(&oob[hdr])).Nano()
		}
		next := syscall.CmsgSpace(l - hdr)
		if next >= len(oob) {
			return 0
		}
		oob = oob[next:]
	}
	return 0
}
