package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
)

// The server API: POST {base}/api/METHOD with a JSON body, for the site's
// back end (publish from the app, cut a user off at log-out or ban). It is
// served only when Options.APIKey is set, to the addresses of APIAllowFrom
// that bring the key.

// Bounds of the API's answers.
const (
	apiMaxBody      = 1 << 20 // a request body (or MaxBodyBytes, if smaller)
	apiHistoryLimit = 100     // history messages by default
	apiHistoryMax   = 1000    // history messages at most
	apiMaxChannels  = 1000    // channels in one answer of channels, in one broadcast
	apiKickMemory   = time.Minute
)

// APIMinKeyLength is the length below which --check warns about api.key.
const APIMinKeyLength = 32

// apiRequest holds every field any method takes; unknown fields are refused.
type apiRequest struct {
	Channel  string          `json:"channel"`
	Channels []string        `json:"channels"`
	Data     json.RawMessage `json:"data"`
	Since    *uint64         `json:"since"`
	Limit    *int            `json:"limit"`
	Pattern  string          `json:"pattern"`
	User     string          `json:"user"`
	Client   string          `json:"client"`
}

// apiMethods are the methods of the API, by name.
var apiMethods = map[string]func(*Server, *http.Request, *apiRequest) (any, error){
	"publish":        (*Server).apiPublish,
	"broadcast":      (*Server).apiBroadcast,
	"history":        (*Server).apiHistory,
	"history_remove": (*Server).apiHistoryRemove,
	"channels":       (*Server).apiChannels,
	"info":           (*Server).apiInfo,
	"disconnect":     (*Server).apiDisconnect,
	"subscribe":      (*Server).apiSubscribe,
	"unsubscribe":    (*Server).apiUnsubscribe,
	"presence":       (*Server).apiPresence,
	"presence_stats": (*Server).apiPresenceStats,
}

// errNoCapability: the engine cannot do what a method needs (501).
var errNoCapability = errors.New("not supported by this engine")

// handleAPI answers POST {base}/api/METHOD: the address first (403), then
// the key (401), then the method (404) and its body (400).
func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	if ip := ClientIP(r, s.opts.TrustedProxies); !isTrusted(ip, s.opts.APIAllowFrom) {
		writeError(w, fmt.Errorf("%w: the API is not served to %s (see api.allow_from)", ErrForbidden, ip))
		return
	}
	if !s.apiKeyOK(r) {
		w.Header().Set("WWW-Authenticate", `apikey realm="stardust api"`)
		writeError(w, fmt.Errorf("%w: the API needs its key (X-API-Key or Authorization: apikey KEY, see api.key)", ErrUnauthenticated))
		return
	}
	name := mux.Vars(r)["method"]
	method := apiMethods[name]
	if method == nil {
		writeError(w, fmt.Errorf("%w: no API method %s", ErrNotFound, quoteCut(name, 64)))
		return
	}
	rr := s.rules
	rr.MaxBodyBytes = min(rr.MaxBodyBytes, apiMaxBody)
	body, err := rr.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	req, err := decodeAPIRequest(body)
	if err != nil {
		writeError(w, err)
		return
	}
	out, err := method(s, r, req)
	writeResult(w, out, err)
}

// writeResult answers with out, or with err: 501 for what the engine
// cannot do, else as writeError maps it.
func writeResult(w http.ResponseWriter, out any, err error) {
	if errors.Is(err, errNoCapability) {
		writeJSON(w, http.StatusNotImplemented, errorBody{Error: err.Error(), Status: http.StatusNotImplemented})
		return
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// apiKeyOK compares the request's key with api.key in constant time.
func (s *Server) apiKeyOK(r *http.Request) bool {
	got := r.Header.Get("X-API-Key")
	if got == "" {
		if scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "apikey") {
			got = strings.TrimSpace(key)
		}
	}
	// Hashed first: ConstantTimeCompare returns at once for another
	// length, which would tell the key's length.
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.opts.APIKey))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// decodeAPIRequest reads an API body: one JSON object of apiRequest's
// fields (empty: no fields); an error names the field at fault.
func decodeAPIRequest(body []byte) (*apiRequest, error) {
	var req apiRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return &req, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, apiField(te.Field, "must be "+apiTypeName(te.Type.Kind().String()))
		}
		return nil, fmt.Errorf("%w: body: %s", ErrBadMessage, jsonErrText(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: body: one JSON object expected", ErrBadMessage)
	}
	return &req, nil
}

// apiTypeName names the JSON type a field of apiRequest takes.
func apiTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "slice":
		return "a list of strings"
	case "uint64":
		return "a position (a whole number, 0 or more)"
	case "int":
		return "a whole number"
	}
	return "of another type"
}

// apiField is the error of a bad or missing field.
func apiField(field, problem string) error {
	return fmt.Errorf("%w: field %q %s", ErrBadMessage, field, problem)
}

// apiChannel checks a channel name (no wildcard) of field.
func apiChannel(field, name string) error {
	if name == "" {
		return apiField(field, "is required")
	}
	if _, err := ParseChannel(name, false); err != nil {
		return apiField(field, "is not a channel name: "+err.Error())
	}
	return nil
}

// apiData checks the data of a publish: a JSON object within MaxMessageSize.
func (s *Server) apiData(req *apiRequest) error {
	d := bytes.TrimSpace(req.Data)
	if len(d) == 0 || string(d) == "null" {
		return apiField("data", "is required")
	}
	if d[0] != '{' {
		return apiField("data", "must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, d); err != nil {
		return apiField("data", "is not JSON")
	}
	if buf.Len() > s.opts.MaxMessageSize {
		return fmt.Errorf("%w: field \"data\" is %d bytes, over %d", ErrTooLarge, buf.Len(), s.opts.MaxMessageSize)
	}
	req.Data = buf.Bytes()
	return nil
}

// apiPublished is the answer of publish.
type apiPublished struct {
	Position   uint64 `json:"position"` // the message's sequence, as history and SSE ids give it
	Recipients int    `json:"recipients"`
}

func (s *Server) apiPublish(r *http.Request, req *apiRequest) (any, error) {
	if err := apiChannel("channel", req.Channel); err != nil {
		return nil, err
	}
	if err := s.apiData(req); err != nil {
		return nil, err
	}
	out, err := s.apiSend(r, []string{req.Channel}, req.Data)
	if err != nil {
		return nil, err
	}
	return apiPublished{Position: out.Positions[0], Recipients: out.Recipients}, nil
}

// apiBroadcasted is the answer of broadcast: one position per channel.
type apiBroadcasted struct {
	Positions  []uint64 `json:"positions"`
	Recipients int      `json:"recipients"`
}

func (s *Server) apiBroadcast(r *http.Request, req *apiRequest) (any, error) {
	if len(req.Channels) == 0 {
		return nil, apiField("channels", "is required (a list of channel names)")
	}
	if len(req.Channels) > apiMaxChannels {
		return nil, apiField("channels", fmt.Sprintf("has %d names, over %d", len(req.Channels), apiMaxChannels))
	}
	for i, ch := range req.Channels {
		if err := apiChannel(fmt.Sprintf("channels[%d]", i), ch); err != nil {
			return nil, err
		}
	}
	if err := s.apiData(req); err != nil {
		return nil, err
	}
	return s.apiSend(r, req.Channels, req.Data)
}

// apiSend publishes data on each channel, all channels made ready first (all
// or none, as a Stardust publish).
func (s *Server) apiSend(r *http.Request, channels []string, data json.RawMessage) (apiBroadcasted, error) {
	out := apiBroadcasted{Positions: make([]uint64, 0, len(channels))}
	if err := s.hub.prepareChannels(s.rules.clientIP(r), channels); err != nil {
		return out, err
	}
	for _, ch := range channels {
		m := &Message{Channel: ch, Data: data}
		n, err := s.hub.Publish(m)
		if err != nil {
			return out, err
		}
		out.Positions = append(out.Positions, m.Seq)
		out.Recipients += n
	}
	return out, nil
}

// apiMessage is one message of history.
type apiMessage struct {
	Channel  string          `json:"channel"`
	Data     json.RawMessage `json:"data"`
	Position uint64          `json:"position"`
	Time     float64         `json:"time"`
}

// apiHistoryBody is the answer of history. Position is where a page
// rendered from these messages resumes (its SSE Last-Event-ID, its
// Stardust position): the last message's, else the since given.
type apiHistoryBody struct {
	Messages []apiMessage `json:"messages"`
	Position uint64       `json:"position"`
	More     bool         `json:"more"` // more messages follow the last one returned
}

func (s *Server) apiHistory(_ *http.Request, req *apiRequest) (any, error) {
	if err := apiChannel("channel", req.Channel); err != nil {
		return nil, err
	}
	limit := apiHistoryLimit
	if req.Limit != nil {
		if *req.Limit < 1 || *req.Limit > apiHistoryMax {
			return nil, apiField("limit", fmt.Sprintf("must be 1 to %d", apiHistoryMax))
		}
		limit = *req.Limit
	}
	var since uint64
	if req.Since != nil {
		since = *req.Since
	}
	msgs, err := s.hub.History(req.Channel, since)
	if err != nil {
		return nil, err
	}
	out := apiHistoryBody{Messages: []apiMessage{}, Position: since}
	if len(msgs) > limit {
		msgs, out.More = msgs[:limit], true
	}
	for _, m := range msgs {
		out.Messages = append(out.Messages, apiMessage{Channel: m.Channel, Data: m.Data, Position: m.Seq,
			Time: math.Round(unixSeconds(m.Time)*1e6) / 1e6})
		out.Position = m.Seq
	}
	return out, nil
}

func (s *Server) apiHistoryRemove(_ *http.Request, req *apiRequest) (any, error) {
	if err := apiChannel("channel", req.Channel); err != nil {
		return nil, err
	}
	hr, ok := s.hub.engine.(HistoryRemover)
	if !ok {
		return nil, fmt.Errorf("history_remove: %w", errNoCapability)
	}
	ectx, ecancel := s.hub.call(context.Background())
	defer ecancel()
	had, err := hr.RemoveHistory(ectx, req.Channel)
	if err != nil {
		return nil, s.hub.failed(err)
	}
	return map[string]bool{"removed": had}, nil
}

// apiChannel is one channel of the answer of channels.
type apiChannelInfo struct {
	Channel     string `json:"channel"`
	Subscribers int    `json:"subscribers"`
	Users       *int   `json:"users,omitempty"` // distinct users; absent when the engine cannot say
}

func (s *Server) apiChannels(_ *http.Request, req *apiRequest) (any, error) {
	var match *subTree[int]
	if req.Pattern != "" {
		segs, err := ParseChannel(req.Pattern, true)
		if err != nil {
			return nil, apiField("pattern", "is not a channel name or pattern: "+err.Error())
		}
		match = newSubTree[int]()
		match.add(segs, 1)
	}
	names, err := s.hub.Channels("")
	if err != nil {
		return nil, err
	}
	out := struct {
		Channels  []apiChannelInfo `json:"channels"`
		Truncated bool             `json:"truncated"`
	}{Channels: []apiChannelInfo{}}
	for _, name := range names {
		if match != nil {
			segs, err := ParseChannel(name, false)
			if err != nil || len(match.match(segs, nil)) == 0 {
				continue
			}
		}
		if len(out.Channels) == apiMaxChannels {
			out.Truncated = true
			break
		}
		aud, err := s.hub.Audience(name)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, k := range aud {
			n += k
		}
		info := apiChannelInfo{Channel: name, Subscribers: n}
		if au, ok := s.hub.engine.(AudienceUsers); ok {
			ectx, ecancel := s.hub.call(context.Background())
			users, err := au.AudienceUsers(ectx, name)
			ecancel()
			if err != nil {
				return nil, s.hub.failed(err)
			}
			info.Users = &users
		}
		out.Channels = append(out.Channels, info)
	}
	return out, nil
}

// apiInfoBody is the answer of info: this process's uptime and counts. The
// clients, channels and subscriptions are the engine's (with the Redis
// engine: of every process); polls, published and delivered this
// process's. Processes counts those sharing the engine (1 with the memory
// engine); they are not listed one by one.
type apiInfoBody struct {
	Version       string         `json:"version"`
	Uptime        float64        `json:"uptime"`
	Shared        bool           `json:"shared_engine"`
	Processes     int            `json:"processes"`
	Clients       int            `json:"clients"`
	ClientsByKind map[string]int `json:"clients_by_kind"`
	Channels      int            `json:"channels"`
	Subscriptions int            `json:"subscriptions"`
	PollsHeld     int            `json:"polls_held"`
	Published     uint64         `json:"published"`
	Delivered     uint64         `json:"delivered"`
}

func (s *Server) apiInfo(_ *http.Request, _ *apiRequest) (any, error) {
	st, err := s.hub.Stats()
	if err != nil {
		return nil, err
	}
	_, memory := s.hub.engine.(*MemoryEngine)
	procs := 1
	if pc, ok := s.hub.engine.(ProcessCounter); ok {
		ectx, ecancel := s.hub.call(context.Background())
		defer ecancel()
		if procs, err = pc.Processes(ectx); err != nil {
			return nil, s.hub.failed(err)
		}
	}
	return apiInfoBody{Processes: procs, Version: s.opts.Version, Uptime: math.Round(time.Since(s.started).Seconds()*1000) / 1000,
		Shared: !memory, Clients: st.Clients, ClientsByKind: st.ClientsByKind, Channels: st.Channels,
		Subscriptions: st.Subscriptions, PollsHeld: st.Polling, Published: st.Published, Delivered: st.Delivered}, nil
}

// userSessions are the sessions of req.User (only req.Client, if given).
func (s *Server) userSessions(req *apiRequest) ([]Session, error) {
	if req.User == "" {
		return nil, apiField("user", "is required")
	}
	ui, ok := s.hub.engine.(UserIndex)
	if !ok {
		return nil, fmt.Errorf("finding a user's sessions: %w", errNoCapability)
	}
	ectx, ecancel := s.hub.call(context.Background())
	defer ecancel()
	all, err := ui.UserSessions(ectx, req.User)
	if err != nil {
		return nil, s.hub.failed(err)
	}
	if req.Client == "" {
		return all, nil
	}
	for _, ss := range all {
		if ss.ID == req.Client {
			return []Session{ss}, nil
		}
	}
	return nil, nil
}

// apiCount is the answer of disconnect, subscribe and unsubscribe: how many
// sessions it acted on.
type apiCount struct {
	Clients int `json:"clients"`
}

func (s *Server) apiDisconnect(_ *http.Request, req *apiRequest) (any, error) {
	sessions, err := s.userSessions(req)
	if err != nil {
		return nil, err
	}
	n := 0
	dm, shared := s.hub.engine.(DisconnectMarker)
	for _, ss := range sessions {
		// Marked first: the held polls the removal wakes, in every
		// process, read the mark.
		s.hub.kicked.add(ss.ID)
		if shared {
			ectx, ecancel := s.hub.call(context.Background())
			err := dm.MarkDisconnected(ectx, ss.ID)
			ecancel()
			if err != nil {
				return apiCount{n}, s.hub.failed(err)
			}
		}
		if err := s.hub.Remove(&Client{hub: s.hub, s: ss, added: true}); err != nil {
			return apiCount{n}, err
		}
		n++
	}
	return apiCount{n}, nil
}

func (s *Server) apiSubscribe(_ *http.Request, req *apiRequest) (any, error) {
	return s.apiEachSession(req, func(c *Client) error { _, err := s.hub.Subscribe(c, req.Channel); return err })
}

func (s *Server) apiUnsubscribe(_ *http.Request, req *apiRequest) (any, error) {
	return s.apiEachSession(req, func(c *Client) error { _, err := s.hub.Unsubscribe(c, req.Channel); return err })
}

// apiEachSession runs do on every session of req.User for req.Channel.
func (s *Server) apiEachSession(req *apiRequest, do func(*Client) error) (any, error) {
	if req.Channel == "" {
		return nil, apiField("channel", "is required")
	}
	if _, err := ParseChannel(req.Channel, true); err != nil {
		return nil, apiField("channel", "is not a channel name or pattern: "+err.Error())
	}
	sessions, err := s.userSessions(req)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, ss := range sessions {
		err := do(&Client{hub: s.hub, s: ss, added: true})
		if errors.Is(err, ErrUnknownClient) {
			continue // gone meanwhile
		}
		if err != nil {
			return apiCount{n}, err
		}
		n++
	}
	return apiCount{n}, nil
}

// kickSet remembers, in this process, the sessions the API disconnected, so
// that the polls their removal ends (and a Bayeux client's next message)
// say "disconnected" rather than "gone, handshake again". The zero value is
// ready to use.
type kickSet struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (k *kickSet) add(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now()
	if k.m == nil {
		k.m = map[string]time.Time{}
	}
	for old, at := range k.m {
		if now.Sub(at) > apiKickMemory {
			delete(k.m, old)
		}
	}
	k.m[id] = now
}

// has reports whether the API disconnected the session lately.
func (k *kickSet) has(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	at, ok := k.m[id]
	return ok && time.Since(at) <= apiKickMemory
}

// wasKicked reports whether the server API disconnected the session lately,
// in this process or (with a DisconnectMarker engine) in any. Asked only
// when a poll ended for a removal, or of a client that is unknown.
func (h *Hub) wasKicked(id string) bool {
	if id == "" {
		return false
	}
	if h.kicked.has(id) {
		return true
	}
	dm, ok := h.engine.(DisconnectMarker)
	if !ok {
		return false
	}
	ectx, ecancel := h.call(context.Background())
	defer ecancel()
	yes, err := dm.Disconnected(ectx, id)
	return err == nil && yes
}

// disconnectJSON is the notice a Stardust poll or SSE stream gets when the
// API disconnected its session.
var disconnectJSON = []byte(`{"type":"stardust.disconnect"}`)
