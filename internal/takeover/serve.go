package takeover

import (
	"context"
	"net"
	"net/http"
	"slices"
	"time"
)

// Serving a request on its connection after the takeover, and the
// connection's next requests: the one mechanism a caller uses (Conn), in
// four steps: Take the connection over, Wait for readiness or a Wake,
// Flush the answer within a deadline, then ServeNext (or Close).

// Conn is a connection taken over from net/http for a request that waits on
// it (a long poll): the connection, its descriptor, what the client sent
// meanwhile, and the request's answer as the handler writes it (Conn is its
// http.ResponseWriter until Flush). A caller embeds a Conn in its own type
// (no allocation of its own) and sets it up with Take. One goroutine at a
// time uses a Conn, except Wake, which any goroutine may call.
type Conn struct {
	hl      *Listener
	conn    net.Conn
	desc    descriptor // conn's descriptor, to wait until readable; none for a replayConn with pending bytes
	pending []byte     // what the client sent meanwhile: read first by the next request
	gone    bool       // the client went away or misbehaved: close, write nothing
	tracked bool       // tracked by hl (trackHeld): untracked by Done
	held    Held       // what hl's Close interrupts
	pace    Pace       // told of answers, asked before each next request (SetPace); nil: none

	r      *http.Request // without its body
	header http.Header
	status int
	body   []byte

	// For the requests served here after the first (ServeNext).
	path, host   string          // of the first: later ones must match
	remote       string          // the client's address, as net/http gives it
	ctx          context.Context // the connection's, as net/http's ConnContext made it
	writeTimeout time.Duration   // for each answer

	buf [64]byte // what a Wait reads into
}

// Take takes the connection of r over from net/http through hj, the
// ResponseWriter at the bottom of the middleware's, into c; header is the
// answer's header as the handler has set it so far. held is what the
// listener's Close interrupts (Held); writeTimeout bounds the writing of
// each answer that the socket does not take at once. r's body must have been
// read to its end first (its reader was net/http's); it is replaced by
// http.NoBody. It reports false, leaving r to net/http, when the listener
// is closing or the hijack fails.
func (c *Conn) Take(ci *ConnInfo, hj http.Hijacker, header http.Header, r *http.Request, held Held, writeTimeout time.Duration) bool {
	hl := ci.Listener
	if hl.Closed() {
		return false
	}
	conn, pending, err := hijack(hj)
	if err != nil {
		return false
	}
	r.Body, r.GetBody = http.NoBody, nil // its reader was net/http's, which goes
	*c = Conn{hl: hl, conn: conn, pending: pending, held: held, r: r, header: header,
		path: r.URL.Path, host: r.Host, remote: r.RemoteAddr, ctx: ci.Ctx, writeTimeout: writeTimeout}
	c.desc.Open(conn)              // none for a replayConn (pending bytes are read first)
	c.tracked = hl.trackHeld(held) // else Closing reports true: answer at once
	return true
}

// Pace orders the work on many connections taken over at once: a server
// that wakes many held requests together (one message fanned out to every
// held poll) has all their answers written before it reads and serves any
// request that follows one of them, as a socket's write queue would on one
// CPU. Reading, parsing and serving a client's next request while others
// still wait for their answer only makes those answers later.
type Pace interface {
	// Answered is called once an answer has been given to the socket:
	// written whole, failed, not written (the client left), or with a rest
	// that is to wait for the client (that wait is the client's, not the
	// server's).
	Answered()
	// Next is called before each wait for the connection's next request
	// (ServeNext); it may block, briefly.
	Next()
}

// SetPace has c tell p of its answers and ask it before each next request
// (Pace); after Take, which clears it.
func (c *Conn) SetPace(p Pace) { c.pace = p }

// answered tells c's Pace that the answer has left.
func (c *Conn) answered() {
	if c.pace != nil {
		c.pace.Answered()
	}
}

// Closing reports whether the listener is closing: a request held on the
// connection is to be answered now.
func (c *Conn) Closing() bool { return c.hl.Closed() }

// Gone reports whether the client went away or misbehaved while its request
// waited: nothing is written to it, and its answer is not to be committed.
func (c *Conn) Gone() bool { return c.gone }

// Done says that the caller is done with the connection (after Close or
// ServeNext): the listener's Close no longer waits for it.
func (c *Conn) Done() {
	if c.tracked {
		c.tracked = false
		c.hl.untrackHeld(c.held)
	}
}

// Header, WriteHeader and Write make c the handler's ResponseWriter: the
// answer is kept and written out in one piece by Flush.
func (c *Conn) Header() http.Header { return c.header }

// WriteHeader keeps the first status set.
func (c *Conn) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

// Write appends p to the answer's body.
func (c *Conn) Write(p []byte) (int, error) {
	c.body = append(c.body, p...)
	return len(p), nil
}

// SetReadDeadline and SetWriteDeadline make the deadlines that middleware
// sets through http.ResponseController no-ops: the connection's goroutine
// sets its own, to wait for the next request, read its header, wait for a
// wake-up, and write an answer that the socket does not take at once.
func (c *Conn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline: see SetReadDeadline.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

// Status is the answer's status (after Flush: 200 if none was set).
func (c *Conn) Status() int { return c.status }

// BodyLen is the length of the answer's body.
func (c *Conn) BodyLen() int { return len(c.body) }

// Wake ends a Wait in progress at once, as net/http ends its background
// read: by moving the read deadline to the past. It never blocks; any
// goroutine may call it.
func (c *Conn) Wake() { cutWait(c.conn) }

// Wait waits on the connection for one of: bytes from the client (kept,
// EventData: wait again), its end (EventEnd: it shut its side and may still
// read), its going away (EventGone) or sending more than maxPending
// (EventOverflow, both marking c Gone), the deadline until or a Wake
// (EventDeadline: the caller tells them apart by the time). It sets the
// read deadline first, then calls woken: when that reports true it returns
// EventWoken without waiting, and a Wake after woken returned false ends
// the wait; so no wake-up is lost between the caller's look and the wait.
// While it waits it holds no buffer and makes no read system call where the
// connection has a descriptor.
func (c *Conn) Wait(until time.Time, woken func() bool) Event {
	_ = c.conn.SetReadDeadline(until)
	if woken() {
		return EventWoken
	}
	var ev Event
	c.pending, ev = waitRead(c.conn, &c.desc, c.buf[:], c.pending)
	if ev == EventGone || ev == EventOverflow {
		c.gone = true
	}
	return ev
}

// Flush writes the answer as net/http would: the status line of the
// request's version, the header with a Content-Length and a Date, the
// body; at once if the socket takes it all (the usual case), else within
// the write timeout, which took says how long it waited. keepAlives false
// (the server is closing) closes the connection after the answer, as
// net/http's Shutdown does; keepAlive says whether it may serve another
// request. A Gone client gets nothing (net.ErrClosed).
func (c *Conn) Flush(keepAlives bool) (keepAlive bool, took time.Duration, err error) {
	if c.gone {
		c.answered()
		return false, 0, net.ErrClosed
	}
	connection, keepAlive := connectionFor(c.r, c.header, keepAlives && !c.hl.Closed())
	if c.status == 0 {
		c.status = http.StatusOK
	}
	bp := GetBuf()
	out := appendResponse(slices.Grow((*bp)[:0], 512+len(c.body)), c.r, c.status, c.header, c.body, connection)
	start := time.Now()
	err = writeAll(c.conn, &c.desc, out, c.writeTimeout, c.answered)
	PutBuf(bp, out)
	return keepAlive, time.Since(start), err
}

// Close closes the connection.
func (c *Conn) Close() { _ = c.conn.Close() }

// OpenSocket sets s up to write on c's connection (Socket.Open), with c's
// write timeout, for a request whose answer is a stream written as it
// comes (an SSE stream) rather than kept and flushed: its writes never
// block where the connection has a descriptor. It reports why they will
// block, ReasonNone when they need not. c is then waited on (Wait) and
// closed (Close) as before; every write goes through s.
func (c *Conn) OpenSocket(s *Socket) Reason { return s.Open(c.conn, c.writeTimeout) }

// ServeNext serves the connection's next requests while each is one that
// nextRequest serves here (a GET of the first request's path and host):
// through the server's handler, with w as its ResponseWriter (w is the
// caller's type that embeds c, so that the handler finds it), each answer
// written by Flush(keepAlives()). At the first other request the connection
// goes back to net/http with what was read of it (giveBack); it is closed
// when the client goes away, is idle too long, its header does not come in
// time, the handler panics, or the listener closes. The waits are
// net/http's (see readNext).
func (c *Conn) ServeNext(w http.ResponseWriter, keepAlives func() bool) {
	h := c.hl.srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	for {
		if c.pace != nil {
			c.pace.Next()
		}
		r, back := c.next()
		if r == nil {
			if back {
				c.hl.giveBack(c.conn, c.pending)
			} else {
				c.Close()
			}
			return
		}
		c.r, c.status, c.gone = r, 0, false
		clear(c.header)
		if cap(c.body) > 4<<10 {
			c.body = nil // an answer that was large: not kept while idle
		}
		c.body = c.body[:0]
		if !c.hl.serveRequest(h, w, r) || c.gone {
			c.Close()
			return
		}
		if keepAlive, _, err := c.Flush(keepAlives()); err != nil || !keepAlive {
			c.Close()
			return
		}
	}
}

// next reads the connection's next request: nil when there is none to
// serve here, back saying whether to give the connection back to net/http
// (with what was read in c.pending) or to close it.
func (c *Conn) next() (*http.Request, bool) {
	r, rest, back := c.hl.readNext(c.conn, &c.desc, c.pending, c.path, c.host)
	c.pending = rest
	if r == nil {
		return nil, back
	}
	r.RemoteAddr = c.remote
	return r.WithContext(c.ctx), false
}
