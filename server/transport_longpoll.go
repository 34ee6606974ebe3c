package server

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"

	"github.com/gorilla/websocket"

	"github.com/stardust-go/stardust/internal/takeover"
)

// ServeHTTP routes a Bayeux request to its transport: a WebSocket upgrade,
// callback-polling (GET with message= and jsonp=) or long-polling (POST).
func (b *Bayeux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case websocket.IsWebSocketUpgrade(r):
		if !b.opts.WebSocket {
			writeError(w, fmt.Errorf("%w: the websocket transport is disabled", ErrBadMessage))
			return
		}
		b.serveWebSocket(w, r)
	case r.Method == http.MethodPost:
		b.serveLongPolling(w, r)
	case r.Method == http.MethodGet:
		b.serveCallbackPolling(w, r)
	default:
		writeError(w, fmt.Errorf("%w: %s (Bayeux takes POST, GET with jsonp, or a WebSocket upgrade)", ErrMethod, r.Method))
	}
}

// longPollingBatch reads the messages of a long-polling POST: a JSON body
// (application/json or text/json), or form fields message= (each one message
// or a batch).
func longPollingBatch(contentType string, body []byte) ([]*BayeuxMessage, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/json", "text/json", "":
		if mt == "" && !looksJSON(body) {
			break
		}
		return DecodeBayeux(body)
	case "application/x-www-form-urlencoded":
	default:
		return nil, fmt.Errorf("%w: unsupported Content-Type %q (want application/json or form data with message=)", ErrBadMessage, mt)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("%w: form body: %v", ErrBadMessage, err)
	}
	return formBatch(form["message"])
}

// formBatch decodes message= fields, each a message or a batch, in order.
func formBatch(fields []string) ([]*BayeuxMessage, error) {
	if len(fields) == 0 {
		return nil, fmt.Errorf("%w: missing parameter message", ErrBadMessage)
	}
	var batch []*BayeuxMessage
	for _, f := range fields {
		msgs, err := DecodeBayeux([]byte(f))
		if err != nil {
			return nil, err
		}
		batch = append(batch, msgs...)
	}
	if len(batch) > maxBatch {
		return nil, fmt.Errorf("%w: more than %d messages in one batch", ErrBadMessage, maxBatch)
	}
	return batch, nil
}

func (b *Bayeux) serveLongPolling(w http.ResponseWriter, r *http.Request) {
	body, err := b.rules.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	batch, err := longPollingBatch(r.Header.Get("Content-Type"), body)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := b.exchange(w, r, batch, TransportLongPolling, writeLongPolling); err != nil {
		writeError(w, err)
	}
}

// writeLongPolling writes a long-polling answer.
func writeLongPolling(w http.ResponseWriter, out []byte) error {
	setJSONHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_, err := w.Write(out)
	return err
}

// jsonpName is a safe callback name: one plain JavaScript identifier (as
// CometD's _cometd_jsonp_N and Faye's __jsonpN__), nothing that could call a
// property path or inject code.
var jsonpName = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]{0,127}$`)

func (b *Bayeux) serveCallbackPolling(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	callback := q.Get("jsonp")
	if callback == "" {
		callback = "jsonpcallback"
	}
	if !jsonpName.MatchString(callback) {
		writeError(w, fmt.Errorf("%w: jsonp=%s is not a plain identifier (up to 128 letters, digits, _ and $)", ErrBadMessage, quoteCut(callback, 32)))
		return
	}
	batch, err := formBatch(q["message"])
	if err != nil {
		writeError(w, err)
		return
	}
	err = b.exchange(w, r, batch, TransportCallbackPolling, func(w http.ResponseWriter, out []byte) error {
		h := w.Header()
		h.Set("Content-Type", "text/javascript;charset=UTF-8")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Accel-Buffering", "no")
		// The leading comment keeps a callback name from being read as the start
		// of a file type signature (the Rosetta Flash attack).
		_, err := fmt.Fprintf(w, "/**/%s(%s);", callback, escapeLineSeparators(out))
		return err
	})
	if err != nil {
		writeError(w, err)
	}
}

// exchange processes an HTTP batch and, when it holds a connect, waits for
// messages or the hold time (longPoll); write writes the JSON array to send
// back, and the connect's messages are committed once it is written. An
// error is returned only before anything is written.
func (b *Bayeux) exchange(w http.ResponseWriter, r *http.Request, batch []*BayeuxMessage, transport string,
	write func(w http.ResponseWriter, out []byte) error) error {
	ip := b.rules.clientIP(r)
	who := caller{remote: ip, transport: transport, req: r, ctx: r.Context()}
	var err error
	if who.browser, who.presented, err = b.rules.ensureBrowser(w.Header(), r, b.limits.base); err != nil {
		return err
	}
	replies, pending := b.process(batch, who)
	if pending == nil {
		_ = write(w, jsonArray(replies))
		return nil
	}
	var counted string // the browser key of the connection taken, to give back
	// Held connects are counted per browser; a request without a cookie
	// (a bearer session, a first visit) has a value no other tab shares.
	if pending.timeout > 0 && who.presented {
		key := browserKey(who.browser)
		limit := b.opts.ClientMaxConnections
		if pending.client.Polling() {
			limit++ // this connect replaces the client's pending one, which gives its slot back
		}
		ok, err := b.hub.TakeConnection(key, limit)
		if err != nil {
			return err
		}
		if ok {
			counted = key
		} else {
			// Another tab holds this browser's connects: answer this one
			// at once, with what is queued for it, and tell it to poll.
			pending.timeout, pending.multiple = 0, true
		}
	}
	b.noteTransport(pending.client, transport)
	longPoll(w, r, b.rules, pending.client, pending.timeout, func(w http.ResponseWriter, batch Batch, why PollEnd) bool {
		if counted != "" {
			b.hub.ReleaseConnection(counted)
		}
		bp := takeover.GetBuf()
		out := b.appendAnswer(*bp, replies, batch, pending, why)
		// write copies out (into the answer kept, or net/http's buffer).
		ok := write(w, out) == nil
		takeover.PutBuf(bp, out)
		// An ack client commits with its next connect.
		return ok && why == PollReady && !pending.ack
	})
	return nil
}

// appendAnswer appends the JSON array that answers a held connect to dst:
// the replies to the batch's other messages, the batch's messages (each
// encoded once for every client it goes to: bayeuxJSON) and the connect's
// reply, with no array of their own (bayeuxMessages, jsonArray) on the way.
func (b *Bayeux) appendAnswer(dst []byte, replies [][]byte, batch Batch, pending *pendingConnect, why PollEnd) []byte {
	dst = append(dst, '[')
	for _, r := range replies {
		dst = append(append(dst, r...), ',')
	}
	for _, m := range batch.Messages {
		dst = append(append(dst, bayeuxJSON(m)...), ',')
	}
	return append(b.appendConnectReply(dst, pending, why, batch.Cursor), ']')
}
