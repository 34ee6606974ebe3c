package takeover

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// The listener that a server taking connections over serves on: it passes
// on new connections, takes back the keep-alive connections whose taken-
// over requests are done (giveBack), and on Close interrupts every
// connection still served after its takeover and waits for it.

// Held is a connection served after its takeover, as a Listener tracks it:
// a comparable value (a pointer), as it is a map key.
type Held interface {
	// Interrupt is the listener's Close for this connection: whatever it
	// waits for (a poll's messages, the next request) ends now. It never
	// blocks and may be called from any goroutine.
	Interrupt()
}

// closeWait bounds how long Close waits for the connections it
// interrupted to be done.
const closeWait = 5 * time.Second

// ctxKey is the context key of a connection's ConnInfo.
type ctxKey struct{}

// ConnInfo is what a connection accepted through a Listener carries in its
// context (see Info).
type ConnInfo struct {
	// Listener is the one the connection came through.
	Listener *Listener
	// Ctx is the connection's context (from the server's ConnContext),
	// without any request's cancellation: for requests served after the
	// takeover.
	Ctx context.Context
	// Fallback is why the connection cannot be taken over: no descriptor
	// to wait on (ReasonUnsupported, ReasonNoSyscallConn); ReasonNone when
	// it can be.
	Fallback Reason
}

// Info is the ConnInfo of the connection a request came on; nil when it
// did not come through a Listener (FastCGI, httptest, HTTP/2 over TLS).
func Info(ctx context.Context) *ConnInfo {
	ci, _ := ctx.Value(ctxKey{}).(*ConnInfo)
	return ci
}

// Listener is what NewListener returns; its zero value is not usable.
type Listener struct {
	net.Listener
	srv      *http.Server
	accepted chan acceptResult // from the real listener
	back     chan net.Conn     // connections given back
	done     chan struct{}     // closed by Close
	once     sync.Once

	mu     sync.Mutex
	closed bool
	held   map[Held]struct{}     // served after their takeover (trackHeld)
	fresh  map[net.Conn]struct{} // given back, no request read yet (http.StateNew)
	wg     sync.WaitGroup
}

type acceptResult struct {
	c   net.Conn
	err error
}

// NewListener wraps l, the listener srv is to Serve, so that connections
// taken over can be given back to srv (giveBack) and are interrupted and
// waited for (up to 5 s) by Close, as srv.Shutdown and srv.Close call it.
// It sets srv.ConnContext (keeping any set before: each connection's
// context carries its ConnInfo) and srv.ConnState (keeping any set
// before). Serve srv on the returned listener only; plain HTTP/1.x only
// (no TLS in between).
func NewListener(srv *http.Server, l net.Listener) *Listener {
	hl := &Listener{Listener: l, srv: srv, accepted: make(chan acceptResult), back: make(chan net.Conn),
		done: make(chan struct{}), held: map[Held]struct{}{}, fresh: map[net.Conn]struct{}{}}
	prev := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if prev != nil {
			ctx = prev(ctx, c)
		}
		ci := &ConnInfo{Listener: hl, Fallback: checkDesc(unwrapReplay(c))}
		ci.Ctx = context.WithValue(ctx, ctxKey{}, ci)
		return ci.Ctx
	}
	prevState := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		if rc, ok := c.(*replayConn); ok {
			hl.track(rc, st)
		}
		if prevState != nil {
			prevState(c, st)
		}
	}
	go hl.pump()
	return hl
}

// pump passes on the real listener's connections.
func (hl *Listener) pump() {
	for {
		c, err := hl.Listener.Accept()
		select {
		case hl.accepted <- acceptResult{c, err}:
		case <-hl.done:
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return // else http.Server decides whether to go on
		}
	}
}

// Accept returns the next new connection or one given back.
func (hl *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-hl.back:
		return c, nil
	case a := <-hl.accepted:
		return a.c, a.err
	case <-hl.done:
		return nil, net.ErrClosed
	}
}

// Close closes the real listener, interrupts every connection tracked and
// waits (up to closeWait) until they are done (untrackHeld).
func (hl *Listener) Close() error {
	err := net.ErrClosed
	hl.once.Do(func() {
		close(hl.done)
		err = hl.Listener.Close()
		hl.mu.Lock()
		hl.closed = true
		for h := range hl.held {
			h.Interrupt()
		}
		for c := range hl.fresh {
			_ = c.Close()
		}
		hl.mu.Unlock()
		finished := make(chan struct{})
		go func() { hl.wg.Wait(); close(finished) }()
		t := time.NewTimer(closeWait)
		defer t.Stop()
		select {
		case <-finished:
		case <-t.C:
		}
	})
	return err
}

// Closed reports whether Close has been called.
func (hl *Listener) Closed() bool {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	return hl.closed
}

// trackHeld adds h to the connections Close interrupts and waits for, and
// reports true; false once the listener is closed (h is not tracked, and
// should answer at once).
func (hl *Listener) trackHeld(h Held) bool {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if hl.closed {
		return false
	}
	hl.held[h] = struct{}{}
	hl.wg.Add(1)
	return true
}

// untrackHeld says that h, tracked, is done: its connection given back or
// closed.
func (hl *Listener) untrackHeld(h Held) {
	hl.mu.Lock()
	delete(hl.held, h)
	hl.mu.Unlock()
	hl.wg.Done()
}

// Count is the number of connections tracked for which f reports true;
// f runs under the listener's lock.
func (hl *Listener) Count(f func(Held) bool) int {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	n := 0
	for h := range hl.held {
		if f(h) {
			n++
		}
	}
	return n
}

// track follows the connections given back until their next request:
// http.Server.Shutdown waits 5 s for a new connection that has not sent
// one, where it closes an idle one at once; Close closes them.
func (hl *Listener) track(c *replayConn, st http.ConnState) {
	hl.mu.Lock()
	defer hl.mu.Unlock()
	if st != http.StateNew {
		delete(hl.fresh, c)
		return
	}
	if hl.closed {
		_ = c.Close()
		return
	}
	hl.fresh[c] = struct{}{}
}

// giveBack hands a keep-alive connection back to the server, with pending,
// what the client sent that was read but not served, to be read first; or
// closes it once the listener is closed. The connection waits for its next
// request as an idle keep-alive one (idleWait), not a new one.
func (hl *Listener) giveBack(c net.Conn, pending []byte) {
	_ = c.SetDeadline(time.Time{})
	rc := &replayConn{Conn: c, pending: pending, idle: idleWait(hl.srv)}
	select {
	case hl.back <- rc:
	case <-hl.done:
		_ = c.Close()
	}
}

// bare is the connection that c, as taken from the server (Hijack), wraps
// when it is one given back with nothing left to replay; else c.
func bare(c net.Conn) net.Conn {
	if rc, ok := c.(*replayConn); ok && len(rc.pending) == 0 {
		return rc.Conn
	}
	return c
}

// unwrapReplay is the connection a replayConn wraps, else c.
func unwrapReplay(c net.Conn) net.Conn {
	if rc, ok := c.(*replayConn); ok {
		return rc.Conn
	}
	return c
}

// replayConn is a connection given back: it gives, before what the client
// sends next, what it sent while it was served after its takeover. And it
// waits for the client's next request as for a keep-alive connection:
// http.Server gives a new connection its ReadHeaderTimeout from the start,
// a keep-alive one its IdleTimeout until the first byte, then
// ReadHeaderTimeout.
type replayConn struct {
	net.Conn
	pending []byte
	idle    time.Duration // idleWait; 0: none
	waited  bool          // the first byte came, or there was no wait
	header  time.Duration // the read deadline net/http set, from when it set it
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.waited = true
		return n, nil
	}
	if c.waited {
		return c.Conn.Read(p)
	}
	c.waited = true
	_ = c.Conn.SetReadDeadline(deadlineIn(c.idle))
	n, err := c.Conn.Read(p)
	if c.header > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.header))
	}
	return n, err
}

// SetReadDeadline notes the header's time that net/http gives the first
// request, to run it from the first byte.
func (c *replayConn) SetReadDeadline(t time.Time) error {
	if !c.waited {
		c.header = 0
		if !t.IsZero() {
			c.header = max(time.Until(t), time.Millisecond)
		}
	}
	return c.Conn.SetReadDeadline(t)
}

// idleWait is how long srv waits for a keep-alive connection's next
// request: IdleTimeout, else ReadTimeout; 0 for no limit.
func idleWait(srv *http.Server) time.Duration { return orElse(srv.IdleTimeout, srv.ReadTimeout) }

// headerWait is how long srv waits for a request's header once begun:
// ReadHeaderTimeout, else ReadTimeout; 0 for no limit.
func headerWait(srv *http.Server) time.Duration {
	return orElse(srv.ReadHeaderTimeout, srv.ReadTimeout)
}

// orElse is a if set, else b.
func orElse(a, b time.Duration) time.Duration {
	if a > 0 {
		return a
	}
	return b
}

// deadlineIn is the deadline d from now; none (zero) for d <= 0.
func deadlineIn(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}
