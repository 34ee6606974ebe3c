package server

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stardust-go/stardust/internal/takeover"
)

// SSE streams on the push path. Once its header and replay are sent
// through net/http (handleEvents), a stream whose server allows it
// (TakeoverListener, HTTP/1.x, a descriptor, the body read) takes its
// connection over (takeover.Conn.Take) and is written from then on as a
// WebSocket is: its client is pushed to by the dispatchers of the delivery
// seam (delivery_push.go), the stream being its pushWriter, with writes
// that never block (takeover.Socket); net/http's goroutine and buffers go.
// One small goroutine per stream (serve) waits on the connection without a
// buffer (takeover.Conn.Wait) for the client to go away, for the next
// heartbeat and for the end of the stream's life, and writes those.
// Elsewhere (FastCGI, hold_on_connection = false, HTTP/2, a listener that
// hides the descriptor, counted in stardust_takeover_fallback_total)
// net/http's loop in handleEvents serves the stream. Both write the same
// events (sseEncoder); this one frames them as net/http did: in chunks for
// HTTP/1.1, as they are for HTTP/1.0, whose end is the connection's.
//
// Unlike net/http, the connection is closed when the stream ends (after
// its last chunk): the browser's reconnect opens a new one.

// mayPushEvents reports whether an SSE stream of r may be pushed to on its
// connection taken over: not under FastCGI or HTTP/2, nor on a server not
// started through TakeoverListener (no ConnInfo), nor where the
// connection hides its descriptor (counted), nor with a body left unread.
func (s *Server) mayPushEvents(w http.ResponseWriter, r *http.Request) bool {
	ci := takeover.Info(r.Context())
	if ci == nil || r.ProtoMajor != 1 {
		return false
	}
	if ci.Fallback != takeover.ReasonNone {
		s.hub.fallbacks.Add(takeover.UseSSE, ci.Fallback)
		return false
	}
	return bodyRead(w, r)
}

// pushEvents takes the connection of r, whose header and first events
// net/http has sent, over for c's stream, framed by enc from then on, and
// returns true: the stream is served off net/http until life ends, and
// ends c's session then if anonymous. False when the connection cannot be
// taken over (the listener closing, no hijack): net/http goes on.
func (s *Server) pushEvents(w http.ResponseWriter, r *http.Request, c *Client, enc sseEncoder, life sseLife, anonymous bool) bool {
	ci := takeover.Info(r.Context())
	st := &sseStream{s: s, c: c, enc: enc, life: life, anonymous: anonymous, chunked: r.ProtoAtLeast(1, 1)}
	if !st.take(&st.Conn, ci, w, r, st, s.rules.RequestTimeout) {
		return false
	}
	// Without a descriptor (a connection given back with bytes to replay
	// has none) the writes block, each in a goroutine of its flush.
	st.OpenSocket(&st.sock)
	st.ctx, st.cancel = context.WithCancel(ci.Ctx)
	st.lastWrite.Store(time.Now().UnixNano())
	if !st.Closing() && s.sseStreams.add(s.hub, st) {
		p := c.startPush(st)
		st.mu.Lock()
		st.push = p
		st.mu.Unlock()
		p.kick() // messages queued before the watch began
	} else {
		st.end(PollClosed) // the listener or the hub is closing
	}
	go st.serve()
	return true
}

// sseStream is an SSE stream served off net/http: its connection, the
// push of its client's messages, and what it has written.
type sseStream struct {
	takeover.Conn   // waited on by serve; its answer is never kept (the stream writes through sock)
	detachedWriters // the middleware's, told when the stream ends
	pushSocket      // every write, one writer at a time

	s         *Server
	c         *Client
	life      sseLife
	anonymous bool // the stream is the client: its end ends the session
	chunked   bool // HTTP/1.1: each write is a chunk, and the stream ends with the last
	ctx       context.Context
	cancel    context.CancelFunc

	// Under sock's lock: the encoding, whether the stream has ended
	// (nothing more is written), and the events' bytes of a write whose
	// rest is being written (writeRest).
	enc      sseEncoder
	closed   bool
	restSize int

	lastWrite atomic.Int64 // UnixNano of the last write, for heartbeats
	// written counts the events' bytes written since the takeover, for the
	// access log: as net/http counts what a handler writes, without the
	// chunks' framing.
	written atomic.Int64

	mu     sync.Mutex // guards the rest
	push   *pusher
	over   bool    // the stream is to end
	overBy PollEnd // why: from the push's end, the hub's close, the listener's
}

// end has the stream end (serve) for why, once; it never blocks.
func (st *sseStream) end(why PollEnd) {
	st.mu.Lock()
	if !st.over {
		st.over, st.overBy = true, why
	}
	st.mu.Unlock()
	st.Wake()
}

// ending reports whether the stream is to end, and why.
func (st *sseStream) ending() (PollEnd, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.overBy, st.over
}

func (st *sseStream) woken() bool {
	_, over := st.ending()
	return over
}

// Interrupt is the listener's Close for the stream's connection
// (takeover.Held): the stream ends now.
func (st *sseStream) Interrupt() { st.end(PollClosed) }

// shutdown ends the stream when the hub closes (openSet).
func (st *sseStream) shutdown() { st.end(PollClosed) }

// serve waits on the connection until the stream ends, writing its
// heartbeats, then ends it.
func (st *sseStream) serve() {
	tail, write := st.wait()
	st.finish(tail, write)
}

// wait waits until the stream is to end: the events it ends with (tail,
// in an sseRoom) and whether anything is to be written (not when the
// client went away).
func (st *sseStream) wait() (tail []byte, write bool) {
	s := st.s
	for {
		if why, over := st.ending(); over {
			return s.appendSSEEnd(sseRoom(64), st.c, why), true
		}
		now := time.Now()
		until := st.life.until
		if !now.Before(until) {
			return sseRoom(0), true // its life is over: the browser reconnects
		}
		if !st.life.expires.IsZero() {
			left := st.life.expires.Sub(s.idh.clock())
			if left <= 0 {
				// The browser's reconnect gets a 401 unless it
				// brings a fresh token.
				return appendSSEExpired(sseRoom(64)), true
			}
			until = minTime(until, now.Add(left))
		}
		beat := time.Unix(0, st.lastWrite.Load()).Add(s.opts.SSEHeartbeat)
		if !now.Before(beat) {
			if !st.writeAlone(appendSSEComment(sseRoom(8), "ping")) {
				return nil, false // the write failed: the client is gone
			}
			continue
		}
		switch st.Wait(minTime(until, beat), st.woken) {
		case takeover.EventEnd, takeover.EventGone, takeover.EventOverflow:
			// The client went away (or shut its side, which ends a stream
			// in net/http too): what it was not sent stays queued.
			return nil, false
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// finish ends the stream: the push stops, its last events and chunk are
// written unless the client went away, the connection closes, an
// anonymous stream's session ends, and the middleware hears of the answer.
func (st *sseStream) finish(tail []byte, write bool) {
	st.mu.Lock()
	p := st.push
	st.push = nil
	st.mu.Unlock()
	if p != nil {
		p.halt()
	}
	st.sock.Lock()
	if write && !st.closed {
		size := len(tail) - sseChunkRoom
		b := st.framed(tail)
		if st.chunked {
			b = append(b, "0\r\n\r\n"...) // the last chunk
		}
		if len(b) > 0 && st.sock.WriteLocked(b) == nil {
			st.written.Add(int64(size))
		}
	}
	st.closed = true
	st.sock.Unlock()
	st.Close()
	st.cancel()
	st.s.sseStreams.remove(st)
	if st.anonymous {
		_ = st.s.hub.Remove(st.c)
	}
	st.report(0, st.written.Load(), 0)
	st.Done()
}

// sseChunkRoom is room for a chunk's size line ("ffffffff\r\n"), left
// before the events of a write (sseRoom) so that they are framed in place.
const sseChunkRoom = 10

// sseRoom is a buffer to append a write's events to, with room for its
// chunk's size line (framed), for about n bytes of events.
func sseRoom(n int) []byte { return make([]byte, sseChunkRoom, sseChunkRoom+n+2) }

// framed is the events appended to b (from sseRoom) as written to the
// wire, without a copy: one chunk (HTTP/1.1), its size line put in the
// room before them, or the events as they are (HTTP/1.0); nothing for no
// events.
func (st *sseStream) framed(b []byte) []byte {
	events := b[sseChunkRoom:]
	if len(events) == 0 || !st.chunked {
		return events
	}
	var line [sseChunkRoom]byte
	n := copy(line[:], strconv.AppendInt(line[:0], int64(len(events)), 16))
	n += copy(line[n:], "\r\n")
	start := sseChunkRoom - n
	copy(b[start:], line[:n])
	return append(b[start:], "\r\n"...)
}

// writeAlone writes events (a heartbeat, appended to an sseRoom) at once,
// waiting for the writer; false when the stream has ended, or the write
// failed (the connection is then closed).
func (st *sseStream) writeAlone(events []byte) bool {
	st.sock.Lock()
	defer st.sock.Unlock()
	if st.closed {
		return false
	}
	size := len(events) - sseChunkRoom
	if err := st.sock.WriteLocked(st.framed(events)); err != nil {
		st.fail()
		return false
	}
	st.wrote(size)
	return true
}

// wrote notes a write of size bytes of events.
func (st *sseStream) wrote(size int) {
	st.written.Add(int64(size))
	st.lastWrite.Store(time.Now().UnixNano())
}

// writeNow writes b's messages as events, led by a drop notice if any,
// without blocking (pushWriter).
func (st *sseStream) writeNow(b Batch) ([]byte, error) {
	if st.closed {
		return nil, net.ErrClosed // ended meanwhile: nothing is committed
	}
	events := st.enc.appendMessages(sseRoom(64+256*len(b.Messages)), b.Messages, b.Dropped)
	size := len(events) - sseChunkRoom
	if size == 0 {
		return nil, nil // every one sent already (replayed)
	}
	rest, err := st.sock.WriteNowLocked(st.framed(events))
	if err == nil && len(rest) == 0 {
		st.wrote(size)
	}
	st.restSize = size
	return rest, err
}

// dropNotices: an SSE stream has its overflow event (pushWriter).
func (st *sseStream) dropNotices() bool { return true }

// writeRest writes what the socket did not take at once, within the
// request timeout (pushWriter).
func (st *sseStream) writeRest(rest []byte) error {
	err := st.sock.WriteRestLocked(rest)
	if err == nil {
		st.wrote(st.restSize)
	}
	return err
}

// fail ends the stream after a failed write: the connection closes, and
// serve sees the client gone (pushWriter). Under the writer.
func (st *sseStream) fail() {
	st.closed = true
	st.Close()
}

// pushEnded ends the stream when its client was removed, expired, or
// streams elsewhere (pushWriter).
func (st *sseStream) pushEnded(_ *pusher, why PollEnd) { st.end(why) }

// pushContext is the stream's: it ends with the stream (pushWriter).
func (st *sseStream) pushContext() context.Context { return st.ctx }
