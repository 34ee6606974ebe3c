// Package connlimit caps the connections a server holds at once, below the
// process's descriptor limit, so that a flood of connections cannot take the
// descriptors that listening, logging and the engine need. Connections over
// the cap are accepted, answered at once with a short refusal and closed:
// refused fast, instead of waiting in the kernel's backlog.
package connlimit

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// HTTPRefusal is the answer for HTTP connections over the cap.
var HTTPRefusal = []byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n" +
	"Content-Length: 20\r\nConnection: close\r\n\r\ntoo many connections")

// Listener is a net.Listener that holds at most Max connections at once.
type Listener struct {
	net.Listener
	max      int
	refusal  []byte
	onRefuse func()
	open     atomic.Int64
	refused  atomic.Uint64
}

// New wraps l so that at most max connections are open at once (max <= 0:
// no cap). Connections over the cap get refusal written (nil: nothing) and
// are closed; onRefuse, if not nil, is called for each.
func New(l net.Listener, max int, refusal []byte, onRefuse func()) *Listener {
	return &Listener{Listener: l, max: max, refusal: refusal, onRefuse: onRefuse}
}

// Accept waits for the next connection within the cap.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.max <= 0 || l.open.Add(1) <= int64(l.max) {
			if l.max <= 0 {
				l.open.Add(1)
			}
			return &conn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.refused.Add(1)
		if l.refusal != nil {
			// A fresh socket's send buffer is empty: this does not block.
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = c.Write(l.refusal)
		}
		_ = c.Close()
		if l.onRefuse != nil {
			l.onRefuse()
		}
	}
}

// Open returns the connections open now.
func (l *Listener) Open() int { return int(l.open.Load()) }

// Refused returns the connections refused so far.
func (l *Listener) Refused() uint64 { return l.refused.Load() }

type conn struct {
	net.Conn
	l    *Listener
	once sync.Once
}

// SyscallConn passes on the connection's descriptor, so that a WebSocket
// can write to it without blocking (server/transport_websocket_frame.go) and a held poll can
// wait for it to become readable without reading (server/longpoll.go).
func (c *conn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

// Default is the cap below a descriptor limit: 90% of it, less 64 for the
// listener, logs and engine connections; 0 (no cap) when the limit is unknown.
func Default(limit int) int {
	if limit <= 0 {
		return 0
	}
	return max(16, limit*9/10-64)
}
