package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stardust-go/stardust/internal/takeover"
)

// Long polls, and their takeover: waiting off net/http's goroutine.
//
// A long poll that finds nothing queued waits for up to its timeout.
// Served plainly, it would keep net/http's connection goroutine, with the
// handler's stack and its 4 KiB read and write buffers, for all that time.
// When the server was started through TakeoverListener (the stardust
// command does so in HTTP mode, server.hold_on_connection), such a poll
// instead takes its connection over (takeover.Conn.Take), lets net/http's
// goroutine go, and waits in one small goroutine of its own on the
// connection (takeover.Conn.Wait): a wake-up (messages, the poll's end)
// ends the wait (takeover.Conn.Wake); the end of the timeout is the wait's
// deadline; a client that goes away is seen by the wait (or, when it shut
// its side, answered at once, as net/http answers it). A poll's body, if
// any, is read to its end first (bodyRead), else the connection is left to
// net/http: the bytes that follow a request taken over are the client's
// next request, never a body read as one. Then that goroutine writes the
// whole answer as net/http would (takeover.Conn.Flush) and serves the
// connection's next requests itself while they are polls of the same path
// (takeover.Conn.ServeNext: GETs, and POSTs whose small body it reads whole
// first, so Bayeux long-polling connects too): a client polling steadily
// is not set up anew by net/http for each poll. Any other request is handed back to the
// http.Server through the listener, to be served as any other. FastCGI,
// HTTP/2, HEAD and servers not started through TakeoverListener (httptest)
// wait in the handler; so do connections without a raw descriptor (off
// Unix, or behind a listener wrapper that hides it), counted in
// stardust_takeover_fallback_total.
//
// Every system call, read, wire decision and the listener are
// internal/takeover's (its README.md lists where they differ from
// net/http, and why); this file says what they mean for a poll.

// TakeoverListener wraps l, the listener srv is to Serve, so that long polls
// with nothing queued wait on their connection taken over, without
// net/http's connection goroutine and buffers (about half the memory per
// waiting client), and their keep-alive connections come back to srv
// through the returned listener. It sets srv.ConnContext and srv.ConnState
// (keeping any set before). Closing the listener, as srv.Shutdown and
// srv.Close do, answers those polls at once and waits up to 5 s for the
// answers to be written. Serve srv on the returned listener only; plain
// HTTP/1.x only (no TLS in between). Where a connection's descriptor is not
// there (internal/takeover), its polls wait in net/http, and are counted.
func TakeoverListener(srv *http.Server, l net.Listener) net.Listener {
	return takeover.NewListener(srv, l)
}

// takeoverConn is a connection taken over (internal/takeover) by a long
// poll that waits on it: the takeover's Conn (the handler's ResponseWriter
// until the answer is written), the poll waiting on it, and the
// middleware's hooks for the first answer (StatusWriter.takeover). After that
// answer the Conn serves the connection's next polls, each with the
// takeoverConn as its ResponseWriter, so that longPoll finds it
// (servedHere).
type takeoverConn struct {
	takeover.Conn
	detachedWriters      // the middleware's, for the first answer
	hub             *Hub // the first poll's: no keep-alive once it is closed

	mu sync.Mutex // guards p
	p  *pollState // the poll waiting on the connection, if any
	// woken: a wake-up cut the poll's wait short and its answer has not
	// left yet: counted in the hub's answerPass (Answered, Next).
	woken atomic.Bool
}

// detachedWriters are the middleware's StatusWriters of a request answered
// after its handler returned, on its connection taken over (a long poll's,
// an SSE stream's): their hooks (StatusWriter.takeover: the request and
// access logs, metrics, incidents) wait for that answer (report).
type detachedWriters struct {
	sws   []*StatusWriter // outermost first
	hooks answerHooks
	// Room for the usual middleware: no allocations as they register.
	swBuf [4]*StatusWriter
}

// take takes the connection of r over into c (takeover.Conn.Take, with
// held and writeTimeout) through the writer at the bottom of w's
// middleware, whose StatusWriters then wait for the answer: false when it
// cannot, and r stays net/http's.
func (d *detachedWriters) take(c *takeover.Conn, ci *takeover.ConnInfo, w http.ResponseWriter, r *http.Request, held takeover.Held, writeTimeout time.Duration) bool {
	base, sws := unwrapWriter(w, d.swBuf[:0])
	hj, ok := base.(http.Hijacker)
	if !ok || !c.Take(ci, hj, w.Header(), r, held, writeTimeout) {
		return false
	}
	d.sws = sws
	d.hooks.r, d.hooks.after = r, d.hooks.buf[:0]
	for _, sw := range sws {
		sw.takeover = &d.hooks
		sw.ResponseWriter = nil // net/http's, done with: its buffers go
	}
	return true
}

// report gives the middleware the answer's status (0: as it was) and size
// (added to what net/http wrote of it) and how long a write blocked, as
// net/http would have, then runs its hooks.
func (d *detachedWriters) report(status int, bytes int64, stalled time.Duration) {
	for _, sw := range d.sws {
		if status != 0 {
			sw.Code = status
		}
		sw.Bytes += bytes
		sw.Stalled = max(sw.Stalled, stalled)
	}
	d.hooks.answered()
}

// pollAnswer writes the answer to a poll into w and says whether the
// batch is to be committed once that answer has left.
type pollAnswer func(w http.ResponseWriter, b Batch, why PollEnd) bool

// longPoll polls c for up to timeout and has answer write the answer,
// then commits the batch if answer says so (Client.deliver). A poll with
// nothing queued at once waits on its connection taken over when the
// server allows it (see TakeoverListener); else in this goroutine.
func longPoll(w http.ResponseWriter, r *http.Request, rules requestRules, c *Client, timeout time.Duration, answer pollAnswer) {
	if tc := servedHere(w); tc != nil && timeout > 0 {
		// A request served on a connection taken over before: its poll
		// waits on the connection in this goroutine.
		p := c.beginPoll(r.Context(), timeout)
		tc.attach(p)
		b, why := p.run(r.Context())
		tc.release(p)
		p.finish()
		c.deliver(b, why, func(b Batch, why PollEnd) bool { return answer(w, b, why) && !tc.Gone() })
		return
	}
	// What is left of a body is read first, as net/http reads it before it
	// answers: a connection taken over must begin its next request where
	// this one ends, and a body still unread when longRequest lifts the
	// read deadline would keep net/http waiting for it after the wait.
	if timeout > 0 && !bodyRead(w, r) {
		b, why := c.Poll(r.Context(), 0) // no wait: answered at once (bodyRead)
		answerNow(w, c, b, why, answer)
		return
	}
	ch := takeover.Info(r.Context())
	if ch == nil || timeout <= 0 || r.ProtoMajor != 1 || r.Method == http.MethodHead {
		rules.longRequest(w, timeout)
		b, why := c.Poll(r.Context(), timeout)
		answerNow(w, c, b, why, answer)
		return
	}
	p := c.beginPoll(r.Context(), timeout)
	// A busy client's poll, which waits at most BatchDelay before it
	// answers, stays here: taking its connection over would cost more than
	// the memory it saves for so short a time.
	if !p.gathering() {
		if b, why, done := p.fetch(r.Context()); done {
			p.finish()
			answerNow(w, c, b, why, answer)
			return
		}
		if ch.Fallback != takeover.ReasonNone {
			c.hub.fallbacks.Add(takeover.UsePoll, ch.Fallback)
		} else if tc := detach(ch, w, r, p, rules.RequestTimeout); tc != nil {
			go tc.serve(c, answer)
			return
		}
	}
	// Gathering, or the connection could not be taken over: wait here.
	rules.longRequest(w, timeout)
	b, why := p.run(r.Context())
	p.finish()
	answerNow(w, c, b, why, answer)
}

// maxDrain is how much of a body net/http reads and discards after its
// handler (its maxPostHandlerReadBytes): beyond it, it closes the
// connection after the answer instead.
const maxDrain = 256 << 10

// bodyRead reports whether r's body has been read to its end, reading and
// discarding what is left of it, up to maxDrain, within the read deadline
// the middleware set for bodies (BodyTimeout). A request that expects
// 100-continue and whose body is unread is sent the 100 by that read: it
// asked to send its body. A body that cannot be read so (larger than
// maxDrain, one that fails or does not come in time) is left to net/http,
// and the poll answers at once: net/http then does what it does for any
// handler that leaves a body unread (reads up to maxDrain more within that
// deadline, else closes the connection after the answer), and the poll
// must not be held, which would lift the deadline.
func bodyRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	bp := takeover.GetBuf()
	b := (*bp)[:cap(*bp)]
	defer takeover.PutBuf(bp, b)
	for n := 0; n <= maxDrain; {
		m, err := r.Body.Read(b)
		n += m
		switch {
		case err == io.EOF && n <= maxDrain:
			return true
		case err != nil:
			n = maxDrain + 1
		}
	}
	return false
}

// answerNow answers through net/http and commits if the answer says so.
func answerNow(w http.ResponseWriter, c *Client, b Batch, why PollEnd, answer pollAnswer) {
	c.deliver(b, why, func(b Batch, why PollEnd) bool { return answer(w, b, why) })
}

// unwrapWriter follows w's Unwrap methods to the writer at the bottom,
// noting the StatusWriters on the way (into sws, outermost first).
func unwrapWriter(w http.ResponseWriter, sws []*StatusWriter) (http.ResponseWriter, []*StatusWriter) {
	for {
		if sw, ok := w.(*StatusWriter); ok {
			sws = append(sws, sw)
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w, sws
		}
		w = u.Unwrap()
	}
}

// servedHere is the connection a request is served on when it is served
// after a takeover (takeover.Conn.ServeNext); nil for one served by
// net/http.
func servedHere(w http.ResponseWriter) *takeoverConn {
	var sws [4]*StatusWriter // on the stack: every poll asks
	base, _ := unwrapWriter(w, sws[:0])
	tc, _ := base.(*takeoverConn) // it has no Unwrap: it is at the bottom
	return tc
}

// detach takes the connection of r over for p: nil when it cannot.
func detach(ci *takeover.ConnInfo, w http.ResponseWriter, r *http.Request, p *pollState, writeTimeout time.Duration) *takeoverConn {
	tc := &takeoverConn{hub: p.c.hub}
	if !tc.take(&tc.Conn, ci, w, r, tc, writeTimeout) {
		return nil
	}
	tc.SetPace(tc)
	tc.attach(p)
	return tc
}

// attach has p wait on the connection, woken by Conn.Wake
// (waiter.interruptLocked).
func (tc *takeoverConn) attach(p *pollState) {
	p.conn = tc
	tc.setPoll(p, tc)
	if tc.Closing() { // the listener is closing: answer at once
		p.w.end(PollClosed)
	}
}

// release ends attach: no more wake-ups reach the connection.
func (tc *takeoverConn) release(p *pollState) { tc.setPoll(p, nil) }

// setPoll makes p's wake-ups cut (nil: none), and records p as the poll
// waiting on the connection (nil cut: none), for Interrupt.
func (tc *takeoverConn) setPoll(p *pollState, cut waitCutter) {
	p.w.mu.Lock()
	p.w.cut = cut
	p.w.mu.Unlock()
	tc.mu.Lock()
	if cut != nil {
		tc.p = p
	} else {
		tc.p = nil
	}
	tc.mu.Unlock()
}

// cutWait ends the wait of the poll waiting on the connection
// (waiter.interruptLocked), whose answer is then one of the pass's
// (answerPass).
func (tc *takeoverConn) cutWait() {
	if !tc.woken.Swap(true) {
		tc.hub.pass.woken()
	}
	tc.Wake()
}

// Answered is takeover.Pace's: the answer of a poll woken has left.
func (tc *takeoverConn) Answered() {
	if tc.woken.Swap(false) {
		tc.hub.pass.answered()
	}
}

// Next is takeover.Pace's: the next request waits for the answers of the
// pass in progress (answerPass).
func (tc *takeoverConn) Next() { tc.hub.pass.next() }

// Interrupt is the listener's Close for one connection served after its
// takeover (takeover.Held): the poll it holds answers now, or the wait for
// its next request ends.
func (tc *takeoverConn) Interrupt() {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.p != nil {
		tc.p.w.end(PollClosed)
		return
	}
	tc.Wake()
}

// wait is pollState.wait on a connection taken over: Conn.Wait with the
// deadline until, cut short by the waiter (waiter.interruptLocked).
func (tc *takeoverConn) wait(p *pollState, until time.Time, messages bool) PollEnd {
	w := p.w
	var why PollEnd
	look := func() bool {
		if p.c.hub.Closed() {
			w.end(PollClosed)
		}
		var now bool
		why, now = w.look(messages)
		return now
	}
	for {
		switch tc.Wait(until, look) {
		case takeover.EventWoken:
			return why
		case takeover.EventDeadline:
			if !time.Now().Before(until) {
				if why, now := w.look(messages); now {
					return why
				}
				return PollTimeout
			}
			// Cut short (Conn.Wake): look before the deadline is set again,
			// which a poll that answers now does not need (what the
			// connection reads next sets its own). One timer less per
			// answer of a fan-out (BENCHMARKS.md section 18).
			if look() {
				return why
			}
		case takeover.EventEnd:
			// The client closed its side: net/http's background read
			// cancels the request's context at that, and the poll answers
			// with what it has (without committing: the messages stay
			// queued) to a client that may still read; then the
			// connection closes (its next read sees the end). Unlike
			// net/http, this is so even after a pipelined request, whose
			// first byte ends net/http's background read: that request
			// is served after the early answer.
			w.end(PollGone)
		case takeover.EventGone, takeover.EventOverflow: // its messages stay queued
			w.end(PollGone)
		}
	}
}

// serve waits for the poll's end, answers, commits, reports to the
// middleware, then serves the connection's next requests.
func (tc *takeoverConn) serve(c *Client, answer pollAnswer) {
	defer tc.Done()
	defer tc.Answered() // closed without an answer written: it has left all the same
	p := tc.p
	b, why := p.run(context.Background())
	tc.release(p)
	p.finish()
	// Committed once the answer is ready to leave, before it does, as
	// through net/http (whose Write only buffers): the client's next poll,
	// perhaps on another connection (a proxy's), may come at once and must
	// not get the batch again. A client that left gets nothing committed.
	c.deliver(b, why, func(b Batch, why PollEnd) bool { return answer(tc, b, why) && !tc.Gone() })
	keepAlive, took, err := tc.Flush(tc.keepAlives())
	var bytes int64
	if err == nil {
		bytes = int64(tc.BodyLen())
	}
	tc.report(tc.Status(), bytes, took)
	if err != nil || !keepAlive {
		tc.Close()
		return
	}
	tc.sws = nil
	tc.ServeNext(tc, tc.keepAlives)
}

// keepAlives is false once the hub is closed: answers close their
// connection.
func (tc *takeoverConn) keepAlives() bool { return !tc.hub.Closed() }
