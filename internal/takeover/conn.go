package takeover

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"time"
)

// Waiting and reading on a connection taken over: the two reads a server
// makes on it, one while it holds a request (waitRead), one for the next
// request (readNext).

// maxPending bounds what a client may send while its request is held (a
// pipelined request): beyond it the connection is to be closed.
const maxPending = 16 << 10

// aLongTimeAgo is a read deadline that ends a Read at once.
var aLongTimeAgo = time.Unix(1, 0)

// cutWait ends a waitRead (or any Read) of c in progress at once, as
// net/http ends its background read: by moving the read deadline to the
// past. It never blocks; any goroutine may call it.
func cutWait(c net.Conn) { _ = c.SetReadDeadline(aLongTimeAgo) }

// Event is what a wait on a connection saw (Conn.Wait).
type Event uint8

const (
	// EventData: bytes came (kept in pending), or nothing yet: wait again.
	EventData Event = iota
	// EventDeadline: the read deadline passed (its own, or cutWait's).
	EventDeadline
	// EventEnd: the client shut its side (EOF); it may still read.
	EventEnd
	// EventGone: the read failed: the client went away.
	EventGone
	// EventOverflow: the client sent more than maxPending meanwhile.
	EventOverflow
	// EventWoken: Conn.Wait's woken function reported true: no wait.
	EventWoken
)

// waitRead waits until c has bytes to read, its end, or its read deadline
// passes, through d without a read system call while it waits when d has
// a descriptor (descriptor.Read, which looks before it waits); then reads
// into buf and appends what came to pending (returned), up to maxPending
// in all.
func waitRead(c net.Conn, d *descriptor, buf, pending []byte) ([]byte, Event) {
	var n int
	var err error
	if d.Ok() {
		n, err = d.Read(buf)
	} else {
		n, err = c.Read(buf)
	}
	if n > 0 {
		if len(pending)+n > maxPending {
			return pending, EventOverflow
		}
		pending = append(pending, buf[:n]...)
	}
	switch {
	case err == nil:
		return pending, EventData
	case errors.Is(err, os.ErrDeadlineExceeded):
		return pending, EventDeadline
	case errors.Is(err, io.EOF):
		return pending, EventEnd
	}
	return pending, EventGone
}

// readNext reads the next request of c, a connection taken over whose
// first request was one of path on host, as net/http would wait for it:
// pending (what was read and not served) first, else up to idleWait for
// its first byte (through d, holding no buffer while it waits), then up to
// headerWait for the rest of its header, at most MaxHeaderBytes+4096, and
// the body of a POST (nextRequest) up to headerWait more.
// It returns the request when nextRequest serves it, with rest, what
// follows its header (pipelined). Else r is nil and back says whether to
// hand c back to net/http (giveBack with rest: a request it serves,
// refuses or answers 431) or to close it (the client went away, was idle
// too long, its header did not come in time, or hl is closing).
func (hl *Listener) readNext(c net.Conn, d *descriptor, pending []byte, path, host string) (r *http.Request, rest []byte, back bool) {
	srv := hl.srv
	var bp *[]byte
	var b []byte
	if len(pending) > 0 {
		bp = GetBuf()
		b = append((*bp)[:0], pending...)
	} else {
		_ = c.SetReadDeadline(deadlineIn(idleWait(srv)))
		if hl.Closed() {
			return nil, nil, false
		}
		if bp, b = readFirst(c, d); bp == nil {
			return nil, nil, false
		}
	}
	defer func() { PutBuf(bp, b) }()
	limit := srv.MaxHeaderBytes
	if limit <= 0 {
		limit = http.DefaultMaxHeaderBytes
	}
	limit += 4096 // as net/http allows
	if !mayBeServed(b) {
		return nil, bytes.Clone(b), true // neither a GET nor a POST: net/http's
	}
	end := headerEnd(b, 0)
	if end < 0 { // the rest of the header, in its time
		_ = c.SetReadDeadline(deadlineIn(headerWait(srv)))
	}
	for end < 0 {
		if len(b) >= limit { // net/http answers 431
			return nil, bytes.Clone(b), true
		}
		if len(b) == cap(b) {
			b = slices.Grow(b, len(b))
		}
		from := len(b)
		n, err := c.Read(b[from:cap(b)])
		b = b[:from+n]
		if err != nil { // as net/http: a read that fails gets no answer
			return nil, nil, false
		}
		end = headerEnd(b, max(0, from-3))
	}
	if r = nextRequest(b[:end], path, host); r == nil {
		return nil, bytes.Clone(b), true
	}
	// A POST's body is read whole before it is served (at most
	// maxNextBody), in the time left for the header: a body that does not
	// come in that time goes back to net/http with what came of it, never
	// served in part, and its bytes are never read as the next request.
	for waited := false; ; waited = true {
		tail, need, ok := withBody(r, b, end)
		if ok {
			if len(tail) > 0 { // pipelined
				rest = bytes.Clone(tail)
			}
			return r, rest, false
		}
		if cap(b) < need {
			b = slices.Grow(b, need-len(b))
		}
		if !waited {
			_ = c.SetReadDeadline(deadlineIn(headerWait(srv))) // once for the whole body
		}
		from := len(b)
		n, err := c.Read(b[from:cap(b)])
		b = b[:from+n]
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, bytes.Clone(b), true
		}
		if err != nil {
			return nil, nil, false
		}
	}
}

// readFirst waits, up to c's read deadline, for the first bytes of its
// next request, and reads them into a buffer of the pool taken only once
// they have come when d has a descriptor (descriptor.ReadFirst); else in a
// blocking Read. nil when the client went away, or the wait ended first.
func readFirst(c net.Conn, d *descriptor) (bp *[]byte, b []byte) {
	if d.Ok() {
		return d.ReadFirst()
	}
	bp = GetBuf()
	n, _ := c.Read((*bp)[:cap(*bp)])
	if n <= 0 {
		PutBuf(bp, *bp)
		return nil, nil
	}
	return bp, (*bp)[:n]
}

// hijack takes the connection of a request from net/http through hj (the
// ResponseWriter at the bottom of the middleware's): the connection (the
// bare one when it was given back with nothing left to replay), what the
// client sent after the request that net/http had read (a pipelined
// request), with no deadline left on it. The request's body must have been
// read first: its reader was net/http's.
func hijack(hj http.Hijacker) (c net.Conn, pending []byte, err error) {
	c, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	c = bare(c)
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		pending = bytes.Clone(b)
	}
	_ = c.SetDeadline(time.Time{})
	return c, pending, nil
}

// serveRequest runs h for r, a request read by readNext, with w as its
// ResponseWriter, and reports whether the connection may go on. A panic is
// treated as net/http treats it: logged through the server's ErrorLog (else
// the log package) unless it is http.ErrAbortHandler, and ok false (the
// connection is to be closed).
func (hl *Listener) serveRequest(h http.Handler, w http.ResponseWriter, r *http.Request) (ok bool) {
	defer func() {
		if e := recover(); e != nil {
			ok = false
			if e == http.ErrAbortHandler {
				return
			}
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			msg := fmt.Sprintf("http: panic serving %v: %v\n%s", r.RemoteAddr, e, buf)
			if l := hl.srv.ErrorLog; l != nil {
				l.Print(msg)
			} else {
				log.Print(msg)
			}
		}
	}()
	h.ServeHTTP(w, r)
	return true
}
