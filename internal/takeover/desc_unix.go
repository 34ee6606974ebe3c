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
	n := 0
	var rerr error
	err := d.raw.Read(func(fd uintptr) bool {
		for {
			k, e := syscall.Read(int(fd), buf)
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return false // nothing yet: wait
			case e != nil:
				rerr = e
			case k == 0:
				rerr = io.EOF
			default:
				n = k
			}
			return true
		}
	})
	if err == nil {
		err = rerr
	}
	return n, err
}

// ReadFirst waits, up to the connection's read deadline, for bytes to
// read, and reads them into a buffer of the pool (GetBuf) taken only once
// they have come: a connection that waits holds none. Its read is tried
// before it waits, so that what came before the wait began counts. It
// returns nil when the client went away, on an error, or when the wait
// ended first. d must have a descriptor.
func (d *descriptor) ReadFirst() (bp *[]byte, b []byte) {
	n := 0
	err := d.raw.Read(func(fd uintptr) bool {
		bp = GetBuf()
		var e error
		for {
			if n, e = syscall.Read(int(fd), (*bp)[:cap(*bp)]); e != syscall.EINTR {
				break
			}
		}
		if e == syscall.EAGAIN {
			PutBuf(bp, *bp)
			bp = nil
			return false // nothing yet: wait
		}
		if e != nil {
			n = 0
		}
		return true
	})
	if err != nil || bp == nil || n <= 0 {
		if bp != nil {
			PutBuf(bp, *bp)
		}
		return nil, nil
	}
	return bp, (*bp)[:n]
}

// WriteNow writes as much of b to the socket as it takes without blocking,
// and returns the rest (empty when all of it went); without a descriptor,
// nothing (errWouldBlock).
func (d *descriptor) WriteNow(b []byte) (rest []byte, err error) {
	if !d.Ok() {
		return b, errWouldBlock
	}
	n := 0
	var werr error
	err = d.raw.Write(func(fd uintptr) bool {
		for n < len(b) {
			k, e := syscall.Write(int(fd), b[n:])
			switch {
			case e == syscall.EINTR:
				continue
			case e == syscall.EAGAIN:
				return true // full: the rest is for a blocking write
			case e != nil:
				werr = e
				return true
			}
			n += k
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return b[n:], err
}
