// Package takeover holds what Stardust does on a connection after it has
// taken it from net/http: waiting on the raw descriptor without a read
// system call, reading and writing without blocking, and counting the times
// that path was not there and the portable one was taken instead.
//
// The raw-descriptor path exists where the runtime's poller hands out a
// Unix descriptor (desc_unix.go); elsewhere (desc_other.go) Open always
// reports ReasonUnsupported and the caller serves the connection the
// standard way. See README.md for how this differs from net/http, and why.
package takeover

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Reason says why a connection is served the portable way rather than on
// its raw descriptor.
type Reason uint8

const (
	// ReasonNone: the raw-descriptor path is there.
	ReasonNone Reason = iota
	// ReasonUnsupported: this system has no raw-descriptor path here.
	ReasonUnsupported
	// ReasonNoSyscallConn: the connection hides its descriptor (a
	// listener wrapper whose connections have no SyscallConn method, or
	// one that fails).
	ReasonNoSyscallConn
	numReasons
)

// String is the reason as a metric label.
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonUnsupported:
		return "unsupported"
	case ReasonNoSyscallConn:
		return "no_syscall_conn"
	}
	return "unknown"
}

// Use is what a fallback was taken for: a metric label.
type Use uint8

const (
	// UsePoll: a long poll held in net/http instead of on its connection.
	UsePoll Use = iota
	// UseWebSocket: a WebSocket pushed to with blocking writes, each in a
	// goroutine, instead of writes that never block.
	UseWebSocket
	// UseSSE: an SSE stream served by net/http's loop instead of pushed
	// to on its connection taken over.
	UseSSE
	numUses
)

// String is the use as a metric label.
func (u Use) String() string {
	switch u {
	case UseWebSocket:
		return "websocket"
	case UseSSE:
		return "sse"
	}
	return "poll"
}

// Fallbacks counts the fallbacks taken, by use and reason. The zero value
// is ready; safe for concurrent use.
type Fallbacks struct {
	n [numUses][numReasons]atomic.Uint64
}

// Add counts one fallback for u because of r; ReasonNone counts nothing.
func (f *Fallbacks) Add(u Use, r Reason) {
	if r != ReasonNone && u < numUses && r < numReasons {
		f.n[u][r].Add(1)
	}
}

// Each calls fn for every use and reason a fallback can have (those never
// taken with 0), in a fixed order, so that the series exist from the start.
func (f *Fallbacks) Each(fn func(use, reason string, n uint64)) {
	for u := range numUses {
		for r := ReasonUnsupported; r < numReasons; r++ {
			fn(u.String(), r.String(), f.n[u][r].Load())
		}
	}
}

// errWouldBlock: the socket cannot take a write without blocking (or the
// connection has no raw descriptor to write to without blocking).
var errWouldBlock = errors.New("write would block")

// writeAll writes b to c: what the socket takes at once without blocking
// (d.WriteNow; nothing when d has no descriptor), then the rest blocking
// for at most timeout; left, if not nil, is called in between (Pace.Answered:
// what is left waits for the client, not for the server).
func writeAll(c net.Conn, d *descriptor, b []byte, timeout time.Duration, left func()) error {
	rest, err := d.WriteNow(b)
	if errors.Is(err, errWouldBlock) {
		err = nil
	}
	if left != nil {
		left()
	}
	if err == nil && len(rest) > 0 {
		err = writeWithin(c, rest, timeout)
	}
	return err
}

// writeWithin writes b to c, blocking for at most timeout.
func writeWithin(c net.Conn, b []byte, timeout time.Duration) error {
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.Write(b)
	_ = c.SetWriteDeadline(time.Time{})
	return err
}

// bufs holds the buffers that answers are put together in and request
// headers read into: taken for that, not while a connection waits.
var bufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 1024)
	return &b
}}

// GetBuf takes a buffer (empty, at least 1 KiB of room) from the pool.
func GetBuf() *[]byte { return bufs.Get().(*[]byte) }

// PutBuf gives bp back with b, what it grew into, unless b grew large
// (a large answer or header): the pool does not keep that.
func PutBuf(bp *[]byte, b []byte) {
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		bufs.Put(bp)
	}
}
