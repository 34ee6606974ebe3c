package server

import (
	"net/http"
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
	hc.sws = nil
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
		if !hc.hl.Serve(h, hc, r) || hc.gone {
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

// next reads the connection's next request. It returns nil when there is
// none to serve here: back, to hand the connection back to net/http (with
// what was read in hc.pending); else to close it (it went away, was idle
// too long, its header did not come in time, or the server is closing).
func (hc *heldConn) next() (*http.Request, bool) {
	r, rest, back := hc.hl.ReadNext(hc.conn, &hc.desc, hc.pending, hc.path, hc.host)
	hc.pending = rest
	if r == nil {
		return nil, back
	}
	r.RemoteAddr = hc.remote
	return r.WithContext(hc.ctx), false
}
