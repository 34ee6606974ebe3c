package server

import (
	"context"
	"sort"
)

// UserIndex is an optional capability of an Engine, found by type
// assertion: the server API's disconnect, subscribe and unsubscribe find a
// user's sessions through it. Without it those methods answer that the
// engine cannot say.
type UserIndex interface {
	// UserSessions returns the sessions whose AttrUser is user, by id.
	UserSessions(ctx context.Context, user string) ([]Session, error)
}

// HistoryRemover is an optional capability of an Engine: the server API's
// history_remove drops a channel's kept messages through it.
type HistoryRemover interface {
	// RemoveHistory forgets a channel's history; it reports whether there
	// was any.
	RemoveHistory(ctx context.Context, channel string) (bool, error)
}

// DisconnectMarker is an optional capability of a shared Engine: the
// server API marks the sessions it disconnects, so that a process other
// than the one that removed a session answers its polls "disconnected"
// (not "gone, handshake again"). The memory engine needs none: its one
// process remembers them (Hub.kicked).
type DisconnectMarker interface {
	// MarkDisconnected remembers, for about a minute, that the session
	// was disconnected on purpose.
	MarkDisconnected(ctx context.Context, id string) error
	// Disconnected reports whether it was, lately.
	Disconnected(ctx context.Context, id string) (bool, error)
}

// ProcessCounter is an optional capability of a shared Engine: how many
// processes share it now, for the server API's info.
type ProcessCounter interface {
	// Processes returns the number of live processes using the engine.
	Processes(ctx context.Context) (int, error)
}

// AudienceUsers is an optional capability of an Engine: how many distinct
// users (by AttrUser) a message on the channel would reach, for the server
// API's channels. The Redis engine keeps counts of subscribers, not who
// they are, and has none.
type AudienceUsers interface {
	// AudienceUsers returns the distinct users among the sessions a message
	// published on the channel now would reach; sessions with no user are
	// not counted.
	AudienceUsers(ctx context.Context, channel string) (int, error)
}

var _ AudienceUsers = (*MemoryEngine)(nil)

// AudienceUsers implements AudienceUsers.
func (e *MemoryEngine) AudienceUsers(_ context.Context, channel string) (int, error) {
	segs, err := ParseChannel(channel, false)
	if err != nil {
		return 0, err
	}
	users := map[string]struct{}{}
	for _, ms := range e.subs.match(segs, nil) {
		ms.mu.Lock()
		if u := ms.s.Attrs[AttrUser]; u != "" {
			users[u] = struct{}{}
		}
		ms.mu.Unlock()
	}
	return len(users), nil
}

var (
	_ UserIndex      = (*MemoryEngine)(nil)
	_ HistoryRemover = (*MemoryEngine)(nil)
)

// UserSessions implements UserIndex. It visits every session: the API is
// for the site's occasional calls (a log-out, a ban), not for every request.
func (e *MemoryEngine) UserSessions(_ context.Context, user string) ([]Session, error) {
	e.mu.RLock()
	var out []Session
	for _, ms := range e.sessions {
		ms.mu.Lock()
		if !ms.gone && ms.s.Attrs[AttrUser] == user {
			out = append(out, ms.s)
		}
		ms.mu.Unlock()
	}
	e.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// RemoveHistory implements HistoryRemover.
func (e *MemoryEngine) RemoveHistory(_ context.Context, name string) (bool, error) {
	e.mu.RLock()
	ch := e.channels[name]
	e.mu.RUnlock()
	if ch == nil {
		return false, nil
	}
	ch.mu.Lock() // as History: no publish half seen
	defer ch.mu.Unlock()
	had := len(e.hist.after(ch, 0)) > 0
	e.hist.forget(ch)
	return had, nil
}
