//go:build unix

package takeover

import (
	"io"
	"net"
	"syscall"
)

// supported reports whether this system has the raw-descriptor path.
const supported = true

// descriptor is a connection's raw descriptor, to wait or write on without
// blocking a goroutine in a system call. The zero value has none (Ok is
// false) and its methods then do what the portable path does. One
// goroutine at a time uses a descriptor.
type descriptor struct {
	raw syscall.RawConn
	// The operation in progress (its buffer and outcome) and the functions
	// that RawConn.Read and Write run, each made once for the descriptor
	// (ops): a closure per call, holding its outcome, cost three
	// allocations per read or write, so per WebSocket frame and per answer
	// (BenchmarkDescriptorWrite).
	buf []byte
	bp  *[]byte
	n   int
	err error
	fns *descOps
}

// descOps are a descriptor's operations as the functions RawConn runs.
type descOps struct{ read, readFirst, write func(fd uintptr) bool }

// ops makes d's functions, the first time.
func (d *descriptor) ops() *descOps {
	if d.fns == nil {
		d.fns = &descOps{read: d.readFD, readFirst: d.readFirstFD, write: d.writeFD}
	}
	return d.fns
}

// Open sets d to c's descriptor and reports ReasonNone, or leaves d without
// one and reports why.
func (d *descriptor) Open(c net.Conn) Reason {
	*d = descriptor{}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return ReasonNoSyscallConn
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return ReasonNoSyscallConn
	}
	d.raw = raw
	return ReasonNone
}

// checkDesc reports whether c has a descriptor Open would take (ReasonNone),
// else why not, without keeping anything.
func checkDesc(c net.Conn) Reason {
	var d descriptor
	return d.Open(c)
}

// Ok reports whether d has a descriptor.
func (d *descriptor) Ok() bool { return d != nil && d.raw != nil }

// Read reads into buf what the connection has: bytes (n > 0), its end
// (io.EOF), an error, or, when nothing comes before the read deadline (or
// a wake-up moved it to the past), os.ErrDeadlineExceeded. While it waits
// no goroutine is blocked in a read system call: the runtime's poller
// waits on the descriptor. Its read is tried before it waits, because the
// poller forgets a readiness that came before the call: the end of a
// client that left while the request was still net/http's (whose
// background read saw it), or between two waits, would otherwise be missed
// until the deadline.
func (d *descriptor) Read(buf []byte) (int, error) {
	d.buf, d.n, d.err = buf, 0, nil
	err := d.raw.Read(d.ops().read)
	if err == nil {
		err = d.err
	}
	n := d.n
	d.buf, d.err = nil, nil
	return n, err
}

// readFD is Read's read: false (wait) when nothing has come yet.
func (d *descriptor) readFD(fd uintptr) bool {
	for {
		k, e := syscall.Read(int(fd), d.buf)
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return false // nothing yet: wait
		case e != nil:
			d.err = e
		case k == 0:
			d.err = io.EOF
		default:
			d.n = k
		}
		return true
	}
}

// ReadFirst waits, up to the connection's read deadline, for bytes to
// read, and reads them into a buffer of the pool (GetBuf) taken only once
// they have come: a connection that waits holds none. Its read is tried
// before it waits, so that what came before the wait began counts. It
// returns nil when the client went away, on an error, or when the wait
// ended first. d must have a descriptor.
func (d *descriptor) ReadFirst() (bp *[]byte, b []byte) {
	d.bp, d.n = nil, 0
	err := d.raw.Read(d.ops().readFirst)
	bp, n := d.bp, d.n
	d.bp = nil
	if err != nil || bp == nil || n <= 0 {
		if bp != nil {
			PutBuf(bp, *bp)
		}
		return nil, nil
	}
	return bp, (*bp)[:n]
}

// readFirstFD is ReadFirst's read: false (wait) when nothing has come
// yet, holding no buffer.
func (d *descriptor) readFirstFD(fd uintptr) bool {
	bp := GetBuf()
	var n int
	var e error
	for {
		if n, e = syscall.Read(int(fd), (*bp)[:cap(*bp)]); e != syscall.EINTR {
			break
		}
	}
	if e == syscall.EAGAIN {
		PutBuf(bp, *bp)
		return false // nothing yet: wait
	}
	if e != nil {
		n = 0
	}
	d.bp, d.n = bp, n
	return true
}

// WriteNow writes as much of b to the socket as it takes without blocking,
// and returns the rest (empty when all of it went); without a descriptor,
// nothing (errWouldBlock).
func (d *descriptor) WriteNow(b []byte) (rest []byte, err error) {
	if !d.Ok() {
		return b, errWouldBlock
	}
	d.buf, d.n, d.err = b, 0, nil
	err = d.raw.Write(d.ops().write)
	if err == nil {
		err = d.err
	}
	n := d.n
	d.buf, d.err = nil, nil
	return b[n:], err
}

// writeFD is WriteNow's write: what the socket takes of d.buf from d.n.
func (d *descriptor) writeFD(fd uintptr) bool {
	for d.n < len(d.buf) {
		k, e := syscall.Write(int(fd), d.buf[d.n:])
		switch {
		case e == syscall.EINTR:
			continue
		case e == syscall.EAGAIN:
			return true // full: the rest is for a blocking write
		case e != nil:
			d.err = e
			return true
		}
		d.n += k
	}
	return true
}
