package server

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// handleEvents serves /channel/A+B/events as Server-Sent Events: each message
// an event whose id is its sequence number, so that a browser's EventSource
// resumes after a reconnect with Last-Event-ID and loses nothing kept in the
// channel history. Comment lines keep proxies from timing the stream out, and
// the response ends after SSEMaxDuration (the browser reconnects), so that a
// stream cannot outlive its client under FastCGI, where the request context is
// never cancelled. Served through TakeoverListener, the stream leaves
// net/http after its header and replay: the push path writes it
// (sse_push.go); elsewhere net/http's loop does (eventsLoop).
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	_, full, err := s.channelVars(r)
	if err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	id := q.Get("id")
	anonymous := id == ""
	if anonymous {
		id = "sse-" + NewID()
	} else if err := checkStreamID(id); err != nil {
		writeError(w, err)
		return
	}
	lastID, err := lastEventID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	since, err := parseSince(q.Get("since"))
	if err != nil {
		writeError(w, err)
		return
	}
	var session *Client
	if !anonymous {
		session = s.sessionOf(r, id)
	}
	ident, known, err := s.mayRead(r, full, "sse", session)
	if err != nil {
		writeError(w, err)
		return
	}
	c, _, err := s.streamClient(r, id, KindSSE, full, identityIf(ident, known), s.streamBrowser(w.Header(), r))
	if err != nil {
		writeError(w, err)
		return
	}
	pushed := false
	if anonymous {
		// The stream is the client: when it ends, the session ends with it
		// (sse_push.go's end, for a stream served off net/http).
		defer func() {
			if !pushed {
				_ = s.hub.Remove(c)
			}
		}()
	}
	// A named client (?id=) outlives its stream like a long-poll client: it
	// keeps its queue until it reconnects or client_timeout passes, and a
	// second stream with its id takes over from the first.

	// Served off net/http after the header and the replay (sse_push.go),
	// when the server allows it; else by net/http's loop below. Decided
	// before anything is written: a body left unread keeps the stream in
	// net/http.
	pushable := s.mayPushEvents(w, r)

	s.rules.longRequest(w, s.opts.SSEMaxDuration)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// A resumed stream skips what the browser has already had: a message
	// sent just before it reconnected may still be queued.
	same := sameSpace(s.hub.engine) // engine.go
	out := &sseWriter{sseEncoder: sseEncoder{prefix: s.opts.Prefix, lastSeq: lastID, same: same}, w: w, flush: flusher(w)}
	out.buf = appendSSEComment(out.buf, "stream "+id)
	out.buf = appendSSERetry(out.buf, 2000)

	var replay []*Message
	if lastID > 0 || !since.IsZero() {
		// What the browser has not had: after its Last-Event-ID (a number
		// of the same sequence), else after since.
		after := func(seq uint64, _ time.Time) bool { return seq > lastID && same(seq, lastID) }
		if lastID == 0 {
			after = func(_ uint64, at time.Time) bool { return at.After(since) }
		}
		replay, err = s.replay(full, func(m *Message) bool { return after(m.Seq, m.Time) })
		if err != nil {
			return // the browser reconnects, with Last-Event-ID
		}
		gap, err := s.sseGap(full, lastID, since, after) // gap.go
		if err != nil {
			return
		}
		if gap != nil {
			out.buf = appendSSEEvent(out.buf, "gap", gap)
		}
	}
	out.buf = out.appendMessages(out.buf, replay, 0)
	if err := out.send(); err != nil {
		return
	}

	life := sseLife{until: time.Now().Add(s.opts.SSEMaxDuration)}
	if known && !ident.ExpireAt.IsZero() {
		life.expires = ident.ExpireAt
	}
	if pushable && s.pushEvents(w, r, c, out.sseEncoder, life, anonymous) {
		pushed = true // the stream is the dispatcher's now, and ends the session
		return
	}
	s.eventsLoop(r, c, out, life)
}

// eventsLoop serves a stream in net/http's goroutine: each turn waits for
// messages up to the heartbeat, writes them (or the heartbeat) and commits
// them, until the stream's life or its client's ends.
func (s *Server) eventsLoop(r *http.Request, c *Client, out *sseWriter, life sseLife) {
	for {
		timeout, end := life.next(s, s.opts.SSEHeartbeat)
		switch end {
		case sseExpired:
			// The identity has expired: say so and end; the browser's
			// reconnect gets a 401 unless it brings a fresh token.
			out.buf = appendSSEExpired(out.buf)
			_ = out.send()
			return
		case sseLifeOver:
			return
		}
		b, why := c.Poll(r.Context(), timeout)
		more := false
		c.deliver(b, why, func(b Batch, why PollEnd) (sent bool) {
			sent, more = s.sseAnswer(out, c, b, why)
			return sent
		})
		if !more {
			return
		}
	}
}

// sseAnswer frames the end of one of an SSE stream's polls as events and
// sends them: sent when they reached the browser (the batch is then
// committed), more when the stream goes on.
func (s *Server) sseAnswer(out *sseWriter, c *Client, b Batch, why PollEnd) (sent, more bool) {
	switch why {
	case PollReady:
		out.buf = out.appendMessages(out.buf, b.Messages, b.Dropped)
	case PollTimeout:
		out.buf = appendSSEComment(out.buf, "ping")
	default:
		if end := s.appendSSEEnd(out.buf, c, why); len(end) > len(out.buf) {
			out.buf = end
			_ = out.send()
		}
		return false, false
	}
	if err := out.send(); err != nil {
		return false, false
	}
	return true, true
}

// appendSSEEnd appends the notice of a stream's end by why, if it has one:
// a reset when the client expired (the browser reconnects and registers
// the client anew), a disconnect when the server API removed it.
func (s *Server) appendSSEEnd(b []byte, c *Client, why PollEnd) []byte {
	switch {
	case why == PollExpired:
		return appendSSEEvent(b, "reset", resetJSON(time.Now()))
	case why == PollClosed && s.hub.wasKicked(c.ID()):
		return appendSSEEvent(b, "disconnect", disconnectJSON)
	}
	return b
}

// sseLife is how long an SSE stream lives: until SSEMaxDuration has
// passed (the browser then reconnects), and no longer than its identity.
type sseLife struct {
	until   time.Time
	expires time.Time // the identity's expiry; zero: none
}

// What ends a stream's life (sseLife.next).
const (
	sseLives    = iota
	sseLifeOver // SSEMaxDuration has passed
	sseExpired  // the identity has expired
)

// next is how long the stream may wait for messages now: at most
// heartbeat, and not past its life; or why its life is over.
func (l sseLife) next(s *Server, heartbeat time.Duration) (time.Duration, int) {
	timeout := min(heartbeat, time.Until(l.until))
	if !l.expires.IsZero() {
		timeout = min(timeout, l.expires.Sub(s.idh.clock()))
		if timeout <= 0 {
			return 0, sseExpired
		}
	}
	if timeout <= 0 {
		return 0, sseLifeOver
	}
	return timeout, sseLives
}

// lastEventID reads the resume point: the Last-Event-ID header an EventSource
// sends on reconnect, or ?lastEventId= for clients that cannot set headers.
func lastEventID(r *http.Request) (uint64, error) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("lastEventId")
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: Last-Event-ID %q (want the id of an event)", ErrBadMessage, v)
	}
	return n, nil
}

func flusher(w http.ResponseWriter) func() {
	if f, ok := w.(http.Flusher); ok {
		return f.Flush
	}
	return func() {}
}

// The encoding of an SSE stream: one, whether net/http's loop writes it
// (sseWriter) or the dispatcher does (sse_push.go). Each function appends
// to a buffer that its writer then sends.

// sseEncoder frames a stream's messages as events, each once.
type sseEncoder struct {
	prefix  string // the server's Prefix, for the Stardust JSON form
	lastSeq uint64 // the Last-Event-ID the stream resumed after: what is numbered up to it was framed before
	// last is, by channel, the number of the last event framed: numbers
	// increase per channel, not always across channels (the Redis
	// engine's shards number their channels apart), so that a message of
	// another channel numbered below one framed is not a repeat. Up to
	// sseChannelsKept channels; past them, a new channel is framed with
	// lastSeq's check only.
	last map[string]uint64
	// same says whether two numbers compare (SequenceSpaces): lastSeq
	// skips only the messages numbered with it. nil: all do.
	same func(a, b uint64) bool
}

// sseChannelsKept bounds sseEncoder.last: a repeat is a message both
// replayed from history and queued, at a stream's start.
const sseChannelsKept = 4096

// appendMessages frames msgs as events, skipping any already framed (a
// message both replayed from history and queued live), led by a drop
// notice if any.
func (e *sseEncoder) appendMessages(b []byte, msgs []*Message, dropped int) []byte {
	if dropped > 0 {
		b = appendSSEEvent(b, "overflow", overflowJSON(dropped, time.Now()))
	}
	for _, m := range msgs {
		last, seen := e.last[m.Channel]
		if m.Seq <= e.lastSeq && (e.same == nil || e.same(m.Seq, e.lastSeq)) || seen && m.Seq <= last {
			continue
		}
		if e.last == nil {
			e.last = map[string]uint64{}
		}
		if seen || len(e.last) < sseChannelsKept {
			e.last[m.Channel] = m.Seq
		}
		b = append(b, "id: "...)
		b = strconv.AppendUint(b, m.Seq, 10)
		b = append(b, "\ndata: "...)
		b = append(b, stardustJSON(m, e.prefix)...)
		b = append(b, "\n\n"...)
	}
	return b
}

// appendSSEEvent appends an event of type name with data (one line of JSON).
func appendSSEEvent(b []byte, name string, data []byte) []byte {
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// appendSSEExpired appends the notice of a stream whose identity expired.
func appendSSEExpired(b []byte) []byte {
	return appendSSEEvent(b, "expired", []byte(`{"error":"identity expired","status":401}`))
}

// appendSSEComment appends a comment line: a heartbeat, or the stream's id.
func appendSSEComment(b []byte, text string) []byte {
	b = append(b, ": "...)
	b = append(b, text...)
	return append(b, "\n\n"...)
}

// appendSSERetry appends the browser's reconnection delay.
func appendSSERetry(b []byte, ms int) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, int64(ms), 10)
	return append(b, "\n\n"...)
}

// sseWriter is a stream written by net/http: send writes and flushes what
// is framed so far (buf).
type sseWriter struct {
	sseEncoder
	buf   []byte
	w     http.ResponseWriter
	flush func()
}

func (o *sseWriter) send() error {
	if len(o.buf) > 0 {
		_, err := o.w.Write(o.buf)
		o.buf = o.buf[:0]
		if err != nil {
			return err
		}
	}
	o.flush()
	return nil
}
