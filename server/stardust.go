package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
)

// The Stardust API: JSON over HTTP with long polling, compatible with the Perl
// Stardust and its jquery.ev client.

// MaxChannelsPerRequest bounds the channels of one Stardust URL (A+B+...)
// and of one Bayeux subscribe message.
const MaxChannelsPerRequest = 64

// checkStreamID checks a client id given in a URL (stream ID, SSE ?id=).
func checkStreamID(id string) error {
	if !isStreamID(id) {
		return fmt.Errorf("%w: %q (want letters, digits, dots, - and _)", ErrBadClientID, id)
	}
	return nil
}

// parseChannelList reads "A+B" (as in /channel/A+B) into distinct Stardust
// channel names, in the order given.
func parseChannelList(list string) ([]string, error) {
	if list == "" {
		return nil, fmt.Errorf("%w: empty channel list", ErrBadChannel)
	}
	if !strings.ContainsAny(list, "+ ") { // one channel, as most polls
		if err := checkChannelName(list); err != nil {
			return nil, err
		}
		return []string{list}, nil
	}
	parts := strings.FieldsFunc(list, func(r rune) bool { return r == '+' || r == ' ' })
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: empty channel list", ErrBadChannel)
	}
	if len(parts) > MaxChannelsPerRequest {
		return nil, fmt.Errorf("%w: more than %d channels in one request", ErrBadChannel, MaxChannelsPerRequest)
	}
	seen := make(map[string]bool, len(parts))
	out := parts[:0]
	for _, p := range parts {
		if err := checkChannelName(p); err != nil {
			return nil, err
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// checkChannelName checks one Stardust channel name of a channel list.
func checkChannelName(name string) error {
	if !isStardustName(name) || len(name) > 128 {
		return fmt.Errorf("%w: %q (want letters, digits and _)", ErrBadChannel, name)
	}
	return nil
}

// bayeuxName maps a Stardust channel name to its channel in the core.
func (s *Server) bayeuxName(name string) string { return s.opts.Prefix + "/" + name }

func (s *Server) channelVars(r *http.Request) (stardust, bayeux []string, err error) {
	return s.channelNames(mux.Vars(r)["chans"])
}

// channelNames reads a channel list of a URL into its Stardust names and
// their channels in the core.
func (s *Server) channelNames(list string) (stardust, bayeux []string, err error) {
	stardust, err = parseChannelList(list)
	if err != nil {
		return nil, nil, err
	}
	bayeux = make([]string, len(stardust))
	for i, n := range stardust {
		bayeux[i] = s.bayeuxName(n)
	}
	return stardust, bayeux, nil
}

type infoBody struct {
	Name       string   `json:"name"`
	Language   string   `json:"language"`
	Version    string   `json:"version"`
	Base       string   `json:"base"`
	Transports []string `json:"transports"`
	Bayeux     string   `json:"bayeux,omitempty"`
	Uptime     float64  `json:"uptime"`
	Channels   int      `json:"channels"`
	Clients    int      `json:"clients"`
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	st, err := s.hub.Stats()
	if err != nil {
		writeError(w, err)
		return
	}
	channels, err := s.hub.Channels(s.opts.Prefix + "/")
	if err != nil {
		writeError(w, err)
		return
	}
	info := infoBody{
		Name: "Stardust COMET Server", Language: "Go", Version: s.opts.Version, Base: s.opts.Base,
		Transports: []string{"long-polling", "server-sent-events"},
		Uptime:     math.Round(time.Since(s.started).Seconds()*1000) / 1000,
		Channels:   len(channels),
		Clients:    st.Clients,
	}
	if m := s.router.Get("bayeux"); m != nil {
		if u, err := m.URL(); err == nil {
			info.Bayeux = u.Path
			info.Transports = append(info.Transports, "bayeux")
		}
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) handleChannelList(w http.ResponseWriter, r *http.Request) {
	prefix := s.opts.Prefix + "/"
	all, err := s.hub.Channels(prefix)
	if err != nil {
		writeError(w, err)
		return
	}
	names := []string{}
	for _, n := range all {
		if short := strings.TrimPrefix(n, prefix); isStardustName(short) {
			names = append(names, short)
		}
	}
	writeJSON(w, http.StatusOK, names)
}

type channelInfo struct {
	Name        string            `json:"name"`
	Messages    []json.RawMessage `json:"messages"`
	Size        int               `json:"size"`
	Subscribers map[string]int    `json:"subscribers"` // by kind: ids are capabilities
}

func (s *Server) handleChannelInfo(w http.ResponseWriter, r *http.Request) {
	names, full, err := s.channelVars(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if _, _, err := s.mayRead(r, full, "info", nil); err != nil {
		writeError(w, err)
		return
	}
	out := make([]channelInfo, len(names))
	for i, n := range names {
		hist, err := s.hub.History(full[i], 0)
		if err != nil {
			writeError(w, err)
			return
		}
		audience, err := s.hub.Audience(full[i])
		if err != nil {
			writeError(w, err)
			return
		}
		segs, _ := ParseChannel(full[i], false) // checked by channelVars
		ci := channelInfo{Name: n, Size: s.hub.elimits.HistoryFor(segs), Messages: make([]json.RawMessage, len(hist)),
			Subscribers: audience}
		for j, m := range hist {
			ci.Messages[j] = stardustJSON(m, s.opts.Prefix)
		}
		out[i] = ci
	}
	writeJSON(w, http.StatusOK, out)
}

type publishBody struct {
	OK         bool     `json:"ok"`
	Messages   int      `json:"messages"`
	Channels   []string `json:"channels"`
	Recipients int      `json:"recipients"`
}

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	names, full, ok := s.publishChannels(w, r)
	if !ok {
		return
	}
	body, err := s.rules.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	objs, err := DecodeMessages(r.Header.Get("Content-Type"), body, r.URL.Query(), s.opts.MaxMessageSize)
	if err != nil {
		writeError(w, err)
		return
	}
	if n := len(objs) * len(full); n > s.opts.MaxPublishes {
		writeError(w, fmt.Errorf("%w: %d messages to %d channels is %d publishes, over %d in one request",
			ErrTooLarge, len(objs), len(full), n, s.opts.MaxPublishes))
		return
	}
	// Every channel is made ready first, all or none, so that a request
	// over a channel limit publishes nothing; then no publish below can
	// be refused for a limit (only a failing engine can stop it part way).
	// With an engine that is no ChannelCreator, a publish below may be
	// refused for MaxChannels: what was published before it stays
	// published, and the answer is that 403.
	if err := s.hub.prepareChannels(s.rules.clientIP(r), full); err != nil {
		writeError(w, err)
		return
	}
	// Every message is valid: publish them all, one stored copy per channel.
	recipients := 0
	for _, obj := range objs {
		data, _ := json.Marshal(obj) // re-encoded compactly; it was valid
		for _, ch := range full {
			// One stored copy per channel: its _ts and _ch are added when
			// first encoded, from the time and channel the hub gives it.
			k, err := s.hub.Publish(&Message{Channel: ch, Data: data})
			if err != nil {
				writeError(w, err)
				return
			}
			recipients += k
		}
	}
	writeJSON(w, http.StatusOK, publishBody{OK: true, Messages: len(objs), Channels: names, Recipients: recipients})
}

// DecodeMessages reads the messages of a Stardust publish: every m parameter
// of a form body (urlencoded or multipart) or of the query, or else a JSON
// body holding one object or an array of objects. Every message must be a
// JSON object of at most maxSize bytes; on any problem it returns an error
// naming the message and nothing is to be published.
func DecodeMessages(contentType string, body []byte, query url.Values, maxSize int) ([]map[string]json.RawMessage, error) {
	mt, params, _ := mime.ParseMediaType(contentType)
	var raw []string
	switch {
	case mt == "application/json" || mt == "text/json" || (mt == "" && looksJSON(body)):
		if err := checkUTF8(body, "the JSON body"); err != nil {
			return nil, err
		}
		return decodeJSONBody(body, maxSize)
	case mt == "multipart/form-data":
		form, err := multipart.NewReader(bytes.NewReader(body), params["boundary"]).ReadForm(int64(len(body)) + 1)
		if err != nil {
			return nil, fmt.Errorf("%w: multipart body: %v", ErrBadMessage, err)
		}
		defer func() { _ = form.RemoveAll() }()
		raw = form.Value["m"]
	case mt == "" || mt == "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("%w: form body: %v", ErrBadMessage, err)
		}
		raw = form["m"]
	default:
		return nil, fmt.Errorf("%w: unsupported Content-Type %q (want form data with m=, or application/json)", ErrBadMessage, mt)
	}
	raw = append(raw, query["m"]...)
	if len(raw) == 0 {
		return nil, fmt.Errorf("%w: missing parameter m (a JSON object)", ErrBadMessage)
	}
	out := make([]map[string]json.RawMessage, len(raw))
	for i, text := range raw {
		if len(text) > maxSize {
			return nil, fmt.Errorf("%w: m #%d: over %d bytes", ErrTooLarge, i+1, maxSize)
		}
		if err := checkUTF8([]byte(text), fmt.Sprintf("m #%d", i+1)); err != nil {
			return nil, err
		}
		obj, err := decodeObject([]byte(text))
		if err != nil {
			return nil, fmt.Errorf("m #%d: %w", i+1, err)
		}
		out[i] = obj
	}
	return out, nil
}

func looksJSON(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

func decodeJSONBody(body []byte, maxSize int) ([]map[string]json.RawMessage, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty JSON body", ErrBadMessage)
	}
	if b[0] != '[' {
		if len(b) > maxSize {
			return nil, fmt.Errorf("%w: message over %d bytes", ErrTooLarge, maxSize)
		}
		obj, err := decodeObject(b)
		if err != nil {
			return nil, err
		}
		return []map[string]json.RawMessage{obj}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(b, &items); err != nil {
		return nil, fmt.Errorf("%w: invalid JSON array: %v", ErrBadMessage, jsonErrText(err))
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: empty JSON array", ErrBadMessage)
	}
	out := make([]map[string]json.RawMessage, len(items))
	for i, it := range items {
		if len(it) > maxSize {
			return nil, fmt.Errorf("%w: message #%d: over %d bytes", ErrTooLarge, i+1, maxSize)
		}
		obj, err := decodeObject(it)
		if err != nil {
			return nil, fmt.Errorf("message #%d: %w", i+1, err)
		}
		out[i] = obj
	}
	return out, nil
}

// streamBrowser gives the request's browser a cookie if it has none
// (ensureBrowser, so that the browser's next stream ids are bound to it)
// and returns the cookie the request presented ("" if none): a new stream
// id is bound to that one only, so that a client that keeps no cookies is
// not locked out of its own id.
func (s *Server) streamBrowser(h http.Header, r *http.Request) string {
	v, presented, err := s.rules.ensureBrowser(h, r, s.opts.Base)
	if err != nil || !presented {
		return ""
	}
	return v
}

// streamClient registers (or finds) the client named by the request, bound
// to browser (bindStream), keeps ident with it (nil: none), and sets its
// subscriptions to the channels of the URL: in that order, so that a
// join_leave channel announces the user at the first poll. A client that
// expires between being found and being subscribed is registered anew,
// once.
func (s *Server) streamClient(r *http.Request, id, kind string, channels []string, ident *Identity, browser string) (*Client, bool, error) {
	for attempt := 0; ; attempt++ {
		c, err := s.hub.Client(id) // the usual case: the client polls again
		created := false
		if errors.Is(err, ErrUnknownClient) {
			c, created, err = s.hub.Register(id, kind, s.opts.ClientTimeout, s.rules.clientIP(r))
		}
		if err != nil {
			return nil, false, err
		}
		if c.Kind() != kind {
			return nil, false, fmt.Errorf("%w: id %q is in use by a %s client", ErrBadClientID, id, c.Kind())
		}
		if err := bindStream(c, created, browser); err != nil {
			return nil, false, err
		}
		if ident != nil {
			if err := keepIdentity(c, *ident); err != nil {
				return nil, false, err
			}
		}
		err = s.hub.SetSubscriptions(c, channels)
		if errors.Is(err, ErrUnknownClient) && attempt == 0 {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		return c, created, nil
	}
}

// identityIf is &id when known, else nil.
func identityIf(id Identity, known bool) *Identity {
	if !known {
		return nil
	}
	return &id
}

func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	v := mux.Vars(r)
	s.serveStream(w, r, v["chans"], v["id"])
}

// serveStream answers a long poll of the channels chans by client id (the
// variables of its path; fastRoutes calls it without the router).
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, chans, id string) {
	_, full, err := s.channelNames(chans)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := checkStreamID(id); err != nil {
		writeError(w, err)
		return
	}
	var sinceText string
	if r.URL.RawQuery != "" { // most polls have none: no map to parse it into
		sinceText = r.URL.Query().Get("since")
	}
	since, err := parseSince(sinceText)
	if err != nil {
		writeError(w, err)
		return
	}
	ident, known, err := s.mayRead(r, full, TransportLongPolling, s.sessionOf(r, id))
	if err != nil {
		writeError(w, err)
		return
	}
	c, _, err := s.streamClient(r, id, KindStardust, full, identityIf(ident, known), s.streamBrowser(w.Header(), r))
	if err != nil {
		writeError(w, err)
		return
	}
	var replay []*Message
	var gap []byte // gap.go
	if !since.IsZero() {
		if replay, err = s.replay(full, func(m *Message) bool { return m.Time.After(since) }); err != nil {
			writeError(w, err)
			return
		}
		if gap, err = s.stardustGap(full, sinceText, since); err != nil {
			writeError(w, err)
			return
		}
	}
	timeout := s.opts.PollTimeout
	if len(replay) > 0 || gap != nil {
		timeout = 0 // answer at once with the replay and whatever is queued
	}
	if known && !ident.ExpireAt.IsZero() {
		// No longer than the identity holds: the next poll learns of the
		// expiry (401) then.
		timeout = min(timeout, max(ident.ExpireAt.Sub(s.idh.clock()), 0))
	}
	longPoll(w, r, s.rules, c, timeout, func(w http.ResponseWriter, b Batch, why PollEnd) bool {
		switch why {
		case PollFailed:
			writeError(w, fmt.Errorf("%w: try again", ErrEngine))
			return false
		case PollExpired:
			// The engine lost the client (a shared engine that came back
			// empty): say so; the next poll registers it anew.
			writeRawJSON(w, http.StatusOK, jsonArray([][]byte{resetJSON(time.Now())}))
			return false
		case PollClosed:
			if s.hub.wasKicked(c.ID()) { // the server API disconnected it
				writeRawJSON(w, http.StatusOK, jsonArray([][]byte{disconnectJSON}))
				return false
			}
		}
		// Committed once written (longPoll).
		body := s.stardustBatch(mergeBySeq(replay, b.Messages), b.Dropped)
		if gap != nil {
			body = withFirst(gap, body)
		}
		return writeRawJSON(w, http.StatusOK, body) == nil && why == PollReady
	})
}

// parseSince reads ?since= as epoch seconds (the _ts of a message).
func parseSince(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f > 1e11 {
		return time.Time{}, fmt.Errorf("%w: since=%q (want epoch seconds like 1700000000.5)", ErrBadMessage, v)
	}
	sec, frac := math.Modf(f)
	// Round to the microsecond that _ts carries, so since=_ts excludes that message.
	return time.Unix(int64(sec), int64(math.Round(frac*1e6))*1000).Add(999 * time.Nanosecond), nil
}

// replay returns the kept messages of the channels that keep passes, in
// publish order.
func (s *Server) replay(channels []string, keep func(*Message) bool) ([]*Message, error) {
	var out []*Message
	for _, ch := range channels {
		hist, err := s.hub.History(ch, 0)
		if err != nil {
			return nil, err
		}
		for _, m := range hist {
			if keep(m) {
				out = append(out, m)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// mergeBySeq joins replayed history and queued messages, dropping the queued
// copies of messages already replayed.
func mergeBySeq(replay, queued []*Message) []*Message {
	if len(replay) == 0 {
		return queued
	}
	seen := make(map[uint64]bool, len(replay))
	for _, m := range replay {
		seen[m.Seq] = true
	}
	out := replay
	for _, m := range queued {
		if !seen[m.Seq] {
			out = append(out, m)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// stardustBatch encodes messages as a Stardust JSON array, led by the
// overflow notice when messages were dropped.
func (s *Server) stardustBatch(msgs []*Message, dropped int) []byte {
	items := make([][]byte, 0, len(msgs)+1)
	if dropped > 0 {
		items = append(items, overflowJSON(dropped, time.Now()))
	}
	for _, m := range msgs {
		items = append(items, stardustJSON(m, s.opts.Prefix))
	}
	return jsonArray(items)
}

// stardustJSON is the message as Stardust clients receive it: the data
// object with _ts and _ch set. Non-object data is wrapped as {"data": ...}.
// Made once per message (the prefix is the server's, the same each time).
func stardustJSON(m *Message, prefix string) []byte {
	return m.encoded(encodingStardust, func(m *Message) []byte {
		name := strings.TrimPrefix(m.Channel, prefix+"/")
		obj, err := decodeObject(m.Data)
		if err != nil {
			obj = map[string]json.RawMessage{"data": m.Data}
		}
		return stampObject(obj, m.Time, name)
	})
}
