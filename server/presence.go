package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
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
	list, err := p.Present(context.Background(), req.Channel)
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
