package server

import (
	"bufio"
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
// never cancelled.
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
	c, _, err := s.streamClient(r, id, KindSSE, full, identityIf(ident, known))
	if err != nil {
		writeError(w, err)
		return
	}
	if anonymous {
		// The stream is the client: when it ends, the session ends with it.
		defer func() { _ = s.hub.Remove(c) }()
	}
	// A named client (?id=) outlives its stream like a long-poll client: it
	// keeps its queue until it reconnects or client_timeout passes, and a
	// second stream with its id takes over from the first.

	s.rules.longRequest(w, s.opts.SSEMaxDuration)
	h := w.Header()
	s.rules.ensureBrowser(h, r, s.opts.Base) // so that the browser's next ids are bound
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// A resumed stream skips what the browser has already had: a message
	// sent just before it reconnected may still be queued.
	out := &sseWriter{w: bufio.NewWriter(w), flush: flusher(w), prefix: s.opts.Prefix, lastSeq: lastID}
	out.comment("stream " + id)
	out.retry(2000)

	var replay []*Message
	switch {
	case lastID > 0:
		replay, err = s.replay(full, func(m *Message) bool { return m.Seq > lastID })
	case !since.IsZero():
		replay, err = s.replay(full, func(m *Message) bool { return m.Time.After(since) })
	}
	if err != nil {
		return // the browser reconnects, with Last-Event-ID
	}
	if lastID > 0 || !since.IsZero() {
		gap, err := s.sseGap(full, lastID, since) // gap.go
		if err != nil {
			return
		}
		if gap != nil {
			fmt.Fprintf(out.w, "event: gap\ndata: %s\n\n", gap)
		}
	}
	out.messages(replay, 0)
	if err := out.send(); err != nil {
		return
	}

	deadline := time.Now().Add(s.opts.SSEMaxDuration)
	expires := known && !ident.ExpireAt.IsZero()
	for {
		timeout := min(s.opts.SSEHeartbeat, time.Until(deadline))
		if expires {
			timeout = min(timeout, ident.ExpireAt.Sub(s.idh.clock()))
		}
		if expires && timeout <= 0 {
			// The identity has expired: say so and end; the browser's
			// reconnect gets a 401 unless it brings a fresh token.
			fmt.Fprintf(out.w, "event: expired\ndata: {\"error\":\"identity expired\",\"status\":401}\n\n")
			_ = out.send()
			return
		}
		if timeout <= 0 {
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
		out.messages(b.Messages, b.Dropped)
	case PollTimeout:
		out.comment("ping")
	case PollExpired:
		fmt.Fprintf(out.w, "event: reset\ndata: %s\n\n", resetJSON(time.Now()))
		_ = out.send()
		return false, false // the browser reconnects and registers the client anew
	default:
		if why == PollClosed && s.hub.wasKicked(c.ID()) { // the server API disconnected it
			fmt.Fprintf(out.w, "event: disconnect\ndata: %s\n\n", disconnectJSON)
			_ = out.send()
		}
		return false, false
	}
	if err := out.send(); err != nil {
		return false, false
	}
	return true, true
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

// sseWriter frames events; send writes and flushes what is framed so far.
type sseWriter struct {
	w       *bufio.Writer
	flush   func()
	prefix  string
	lastSeq uint64
}

func (o *sseWriter) comment(text string) { fmt.Fprintf(o.w, ": %s\n\n", text) }

func (o *sseWriter) retry(ms int) { fmt.Fprintf(o.w, "retry: %d\n\n", ms) }

// messages frames msgs as events, skipping any already sent (a message both
// replayed from history and queued live), led by a drop notice if any.
func (o *sseWriter) messages(msgs []*Message, dropped int) {
	if dropped > 0 {
		fmt.Fprintf(o.w, "event: overflow\ndata: %s\n\n", overflowJSON(dropped, time.Now()))
	}
	for _, m := range msgs {
		if m.Seq <= o.lastSeq {
			continue
		}
		o.lastSeq = m.Seq
		fmt.Fprintf(o.w, "id: %d\ndata: %s\n\n", m.Seq, stardustJSON(m, o.prefix))
	}
}

func (o *sseWriter) send() error {
	if err := o.w.Flush(); err != nil {
		return err
	}
	o.flush()
	return nil
}
