package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// Presence is an optional capability of an Engine, found by type
// assertion: who is on a channel now, for the server API's presence and
// presence_stats on channels whose [[channels]] rule has presence = true.
// The memory engine reads it from its subscriptions, so that it is exact
// and ends with the session; the Redis engine from a set of session ids
// per pattern checked when read (engine/redis/presence.go). An engine
// without it: the API answers 501.
type Presence interface {
	// Present returns the sessions a message published on the channel now
	// would reach (subscribed by name or by a pattern), by id.
	Present(ctx context.Context, channel string) ([]Session, error)
}

var _ Presence = (*MemoryEngine)(nil)

// Present implements Presence.
func (e *MemoryEngine) Present(_ context.Context, channel string) ([]Session, error) {
	segs, err := ParseChannel(channel, false)
	if err != nil {
		return nil, err
	}
	var out []Session
	for _, ms := range e.subs.match(segs, nil) {
		ms.mu.Lock()
		if !ms.gone {
			out = append(out, ms.s)
		}
		ms.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// apiPresent is one entry of the answer of presence. Client ids are
// capabilities: the API is for the site's back end only.
type apiPresent struct {
	Client    string          `json:"client"`
	User      string          `json:"user"`
	Info      json.RawMessage `json:"info,omitempty"`
	Transport string          `json:"transport"`
}

// present checks req's channel (a presence channel) and asks the engine.
func (s *Server) present(req *apiRequest) ([]Session, error) {
	if err := apiChannel("channel", req.Channel); err != nil {
		return nil, err
	}
	segs, _ := ParseChannel(req.Channel, false)
	if r, ok := s.idh.chans.rule(segs); !ok || !r.Presence {
		return nil, apiField("channel", "has no presence: no [[channels]] block with presence = true decides it")
	}
	p, ok := s.hub.engine.(Presence)
	if !ok {
		return nil, fmt.Errorf("presence: %w", errNoCapability)
	}
	ectx, ecancel := s.hub.call(context.Background())
	defer ecancel()
	list, err := p.Present(ectx, req.Channel)
	if err != nil {
		return nil, s.hub.failed(err)
	}
	return list, nil
}

func (s *Server) apiPresence(_ *http.Request, req *apiRequest) (any, error) {
	list, err := s.present(req)
	if err != nil {
		return nil, err
	}
	out := struct {
		Clients []apiPresent `json:"clients"`
	}{Clients: []apiPresent{}}
	for _, ss := range list {
		p := apiPresent{Client: ss.ID, User: ss.Attrs[AttrUser], Transport: ss.Attrs[AttrTransport]}
		if p.Transport == "" {
			p.Transport = ss.Kind
		}
		p.Info = identityInfo(ss.Attrs[AttrIdentity])
		out.Clients = append(out.Clients, p)
	}
	return out, nil
}

func (s *Server) apiPresenceStats(_ *http.Request, req *apiRequest) (any, error) {
	list, err := s.present(req)
	if err != nil {
		return nil, err
	}
	users := map[string]struct{}{}
	for _, ss := range list {
		if u := ss.Attrs[AttrUser]; u != "" {
			users[u] = struct{}{}
		}
	}
	return struct {
		Clients int `json:"clients"`
		Users   int `json:"users"`
	}{len(list), len(users)}, nil
}

// pagePresent is one user of the answer to a page: no client ids (they
// are capabilities) and no transports.
type pagePresent struct {
	User string          `json:"user"`
	Info json.RawMessage `json:"info,omitempty"`
}

// handlePresence answers GET {base}/presence?channel=C[&client=ID] for
// pages (stardust.js presence()): the distinct users on a channel whose
// [[channels]] block has presence = true, with their info, and how many
// sessions they have. C is a Bayeux name, or a Stardust name (no leading
// slash) under the prefix. The caller must be allowed to read the channel
// as a subscription to it is: the same identity (a token, the token
// cookie, or the kept identity of the session ID, a Bayeux client or a
// stream of this browser), the same ACL, anonymous rule and subscribe
// callback. The API key is never involved.
func (s *Server) handlePresence(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("channel")
	if name != "" && !strings.HasPrefix(name, "/") {
		name = s.bayeuxName(name)
	}
	if err := apiChannel("channel", name); err != nil {
		writeError(w, err)
		return
	}
	var session *Client
	if id := q.Get("client"); id != "" {
		session = s.pageSession(r, id)
	}
	if _, _, err := s.mayRead(r, []string{name}, "presence", session); err != nil {
		writeError(w, err)
		return
	}
	list, err := s.present(&apiRequest{Channel: name})
	if err != nil {
		writeResult(w, nil, err)
		return
	}
	out := struct {
		Channel string        `json:"channel"`
		Users   []pagePresent `json:"users"`
		Clients int           `json:"clients"`
	}{Channel: name, Users: []pagePresent{}, Clients: len(list)}
	seen := map[string]bool{}
	for _, ss := range list {
		if u := ss.Attrs[AttrUser]; u != "" && !seen[u] {
			seen[u] = true
			out.Users = append(out.Users, pagePresent{User: u, Info: identityInfo(ss.Attrs[AttrIdentity])})
		}
	}
	sort.Slice(out.Users, func(i, j int) bool { return out.Users[i].User < out.Users[j].User })
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// pageSession is the session id names when the request's browser owns it
// (its cookie, as the session was bound: owner.go), or when it is a bearer
// session and the request carries no cookie: whose kept identity a page's
// read may use. nil otherwise.
func (s *Server) pageSession(r *http.Request, id string) *Client {
	c, err := s.hub.Client(id)
	if err != nil {
		return nil
	}
	mine := s.rules.browserOf(r)
	b := c.Attr(AttrBrowser)
	if first, _, ok := parseFirstUse(b); ok {
		b = first
	}
	if b == "" || (b == bearer) != (mine == "") || (b != bearer && b != mine) {
		return nil
	}
	return c
}
