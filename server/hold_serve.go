package server

import (
	"bytes"
	"fmt"
	"log"
	"net/http"
	"runtime"
	"slices"

	"github.com/stardust-go/stardust/internal/takeover"
)

// The requests of a connection taken over by a held poll (hold.go), served
// off net/http.
//
// A client that polls steadily sends its next poll as soon as it has its
// answer. Handed back to net/http, the connection would be set up again as
// a new one each time (a goroutine, a context, two 4 KiB buffers, its
// state tracked), and taken over again by that poll. Instead the goroutine
// that answered waits for the next request itself, reads its header and,
// when it is a poll of the same path as the first (the same client's next
// poll), serves it through the server's handler, with the connection as its
// ResponseWriter: the poll then waits on the connection in this goroutine
// (holdPoll). Anything else is handed back to net/http with the bytes read
// so far, and served there as any other request: another path or method,
// a body, an upgrade, a header net/http would refuse or that is too large.
// The waits are net/http's: IdleTimeout (else ReadTimeout) for the next
// request to begin, ReadHeaderTimeout (else ReadTimeout) for its header.

// keep serves the connection's next requests while each is a poll of the
// path of the first, and hands the connection back to net/http at the
// first other one.
func (hc *heldConn) keep() {
	h := hc.hl.Server().Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	hc.sws, hc.after = nil, nil
	for {
		r, back := hc.next()
		if r == nil {
			if back {
				hc.giveBack()
			} else {
				_ = hc.conn.Close()
			}
			return
		}
		hc.r, hc.status, hc.gone = r, 0, false
		clear(hc.header)
		if cap(hc.body) > 4<<10 {
			hc.body = nil // an answer that was large: not kept while idle
		}
		hc.body = hc.body[:0]
		if !hc.handle(h, r) || hc.gone {
			_ = hc.conn.Close()
			return
		}
		if keepAlive, err := hc.flush(); err != nil || !keepAlive {
			_ = hc.conn.Close()
			return
		}
	}
}

// giveBack hands the connection, with what was read of it, back to
// net/http.
func (hc *heldConn) giveBack() {
	hc.hl.GiveBack(hc.conn, hc.pending)
}

// handle runs the handler for r, with hc as its ResponseWriter. A panic is
// treated as net/http treats it: logged (unless http.ErrAbortHandler), and
// the connection closed (ok false).
func (hc *heldConn) handle(h http.Handler, r *http.Request) (ok bool) {
	defer func() {
		if e := recover(); e != nil {
			ok = false
			if e == http.ErrAbortHandler {
				return
			}
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			msg := fmt.Sprintf("http: panic serving %v: %v\n%s", hc.remote, e, buf)
			if l := hc.hl.Server().ErrorLog; l != nil {
				l.Print(msg)
			} else {
				log.Print(msg)
			}
		}
	}()
	h.ServeHTTP(hc, r)
	return true
}

// next reads the connection's next request. It returns nil when there is
// none to serve here: back, to hand the connection back to net/http (with
// what was read in hc.pending); else to close it (it went away, was idle
// too long, its header did not come in time, or the server is closing).
func (hc *heldConn) next() (r *http.Request, back bool) {
	srv := hc.hl.Server()
	var bp *[]byte
	var b []byte
	if len(hc.pending) > 0 {
		bp = takeover.GetBuf()
		b = append((*bp)[:0], hc.pending...)
		hc.pending = nil
	} else {
		_ = hc.conn.SetReadDeadline(takeover.DeadlineIn(takeover.IdleWait(srv)))
		if hc.hl.Closed() {
			return nil, false
		}
		if bp, b = hc.readFirst(); bp == nil {
			return nil, false
		}
	}
	defer func() { takeover.PutBuf(bp, b) }()
	limit := srv.MaxHeaderBytes
	if limit <= 0 {
		limit = http.DefaultMaxHeaderBytes
	}
	limit += 4096 // as net/http allows
	if !takeover.MayBeGET(b) {
		hc.pending = bytes.Clone(b) // not a poll (a Bayeux POST): net/http's
		return nil, true
	}
	end := takeover.HeaderEnd(b, 0)
	if end < 0 { // the rest of the header, in its time
		_ = hc.conn.SetReadDeadline(takeover.DeadlineIn(takeover.HeaderWait(srv)))
	}
	for end < 0 {
		if len(b) >= limit { // net/http answers 431
			hc.pending = bytes.Clone(b)
			return nil, true
		}
		if len(b) == cap(b) {
			b = slices.Grow(b, len(b))
		}
		from := len(b)
		n, err := hc.conn.Read(b[from:cap(b)])
		b = b[:from+n]
		if err != nil { // as net/http: a read that fails gets no answer
			return nil, false
		}
		end = takeover.HeaderEnd(b, max(0, from-3))
	}
	if r = takeover.NextRequest(b[:end], hc.path, hc.host); r == nil {
		hc.pending = bytes.Clone(b)
		return nil, true
	}
	if end < len(b) { // pipelined
		hc.pending = bytes.Clone(b[end:])
	}
	r.RemoteAddr = hc.remote
	return r.WithContext(hc.ctx), false
}

// readFirst waits, up to the connection's read deadline, for the first
// bytes of its next request, and reads them into a buffer of bufs taken
// only once they have come: an idle connection holds none. Its read is
// tried before it waits, so that what came before the wait began counts
// (the client sends its next poll as soon as it has the answer). nil when
// the client went away, or the wait ended first.
func (hc *heldConn) readFirst() (bp *[]byte, b []byte) {
	if hc.desc.Ok() {
		return hc.desc.ReadFirst()
	}
	bp = takeover.GetBuf()
	n, _ := hc.conn.Read((*bp)[:cap(*bp)])
	if n <= 0 {
		takeover.PutBuf(bp, *bp)
		return nil, nil
	}
	return bp, (*bp)[:n]
}
