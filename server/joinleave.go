package server

import (
	"context"
	"encoding/json"
	"sync"
)

// Join and leave events on the channels of [[channels]] blocks with
// join_leave = true, driven by what the sessions do, not by looking: when
// a session with a user newly subscribes to such a channel by name, the
// hub asks the engine (Members.Join) to count it, and when the count of
// that user's sessions on the channel goes from 0 to 1 it publishes
// {"type":"stardust.join","user","info"} on the channel. When a session
// unsubscribes (Members.Leave), is removed or expires (Members.Gone, once
// the engine has removed it) and the count goes from 1 to 0, it publishes
// stardust.leave. Users, not sessions: a second tab of the same user sends
// nothing. The engine decides each transition atomically, so that with a
// shared engine exactly one process sees it and publishes the event; the
// sessions of a process that died expire in the sweep of the others,
// whose Gone sends their leaves. Sessions without a user and wildcard
// subscriptions (/chat/**: a listener of many rooms, not in one) are not
// counted.

// Members is an optional capability of an Engine, found by type assertion:
// the count of each user's sessions on the channels that announce joins
// and leaves. Each transition 0→1 (Join reports true) and 1→0 (Leave or
// Gone return the Member) is reported to exactly one caller, in whichever
// process. Safe for concurrent use.
type Members interface {
	// Join counts session id of user on channel, once however often it is
	// called; info is kept for the leave. It reports whether the user had
	// no session counted there before (a join to announce). A session the
	// engine does not have (removed meanwhile) is not counted: false.
	Join(ctx context.Context, channel, id, user string, info json.RawMessage) (bool, error)
	// Leave stops counting session id on channel; when it was its user's
	// last session there, it returns that user (ok true).
	Leave(ctx context.Context, channel, id string) (m Member, ok bool, err error)
	// Gone stops counting sessions that the engine no longer has (removed
	// or expired) on every channel, and returns the users they were the
	// last sessions of. A session the engine still has is left alone.
	Gone(ctx context.Context, ids ...string) ([]Member, error)
	// SweepMembers does what Gone would have done for sessions that went
	// without it (a process died between removing a session and calling
	// Gone), a bounded part of them per call; the hub calls it each sweep.
	SweepMembers(ctx context.Context) ([]Member, error)
}

// Member is a user on a channel: what a join or leave announces.
type Member struct {
	Channel string
	User    string
	Info    json.RawMessage // the identity's info (Identity.Info), or nil
}

var _ Members = (*MemoryEngine)(nil)

// joinLeaveEvent is the data of a join or leave message.
type joinLeaveEvent struct {
	Type string          `json:"type"`
	User string          `json:"user"`
	Info json.RawMessage `json:"info,omitempty"`
}

// The ext of a join or leave message, as Bayeux subscribers receive it.
var (
	joinExt  = json.RawMessage(`{"presence":"join"}`)
	leaveExt = json.RawMessage(`{"presence":"leave"}`)
)

// members returns the engine's Members when some channel announces joins
// and leaves.
func (h *Hub) members() Members {
	if h.opts.JoinLeave == nil && h.opts.Members == nil {
		return nil
	}
	m, _ := h.engine.(Members)
	return m
}

// announced says whether channel publishes its joins and leaves.
func (h *Hub) announced(channel string) bool {
	return h.opts.JoinLeave != nil && h.opts.JoinLeave(channel)
}

// counted says whether channel counts its users' joins and leaves: those
// it announces and those HubOptions.Members names.
func (h *Hub) counted(channel string) bool {
	return h.announced(channel) || (h.opts.Members != nil && h.opts.Members(channel))
}

// joined counts c on channel after its new subscription to it.
func (h *Hub) joined(c *Client, channel string) {
	mb := h.members()
	if mb == nil || IsWild(channel) || !h.counted(channel) {
		return
	}
	user := c.Attr(AttrUser)
	if user == "" {
		return
	}
	info := identityInfo(c.Attr(AttrIdentity))
	ectx, ecancel := h.call(context.Background())
	defer ecancel()
	first, err := mb.Join(ectx, channel, c.s.ID, user, info)
	if err != nil {
		h.failed(err)
		h.log.WithError(err).WithField("channel", channel).Warn("join not counted")
		return
	}
	if first {
		h.announce("join", Member{Channel: channel, User: user, Info: info})
	}
}

// left stops counting c on channel after it unsubscribed.
func (h *Hub) left(c *Client, channel string) {
	mb := h.members()
	if mb == nil || IsWild(channel) || !h.counted(channel) {
		return
	}
	ectx, ecancel := h.call(context.Background())
	defer ecancel()
	m, last, err := mb.Leave(ectx, channel, c.s.ID)
	if err != nil {
		h.failed(err)
		h.log.WithError(err).WithField("channel", channel).Warn("leave not counted")
		return
	}
	if last {
		h.announce("leave", m)
	}
}

// gone stops counting sessions the engine removed, and, with sweep, those
// that went without it.
func (h *Hub) gone(sweep bool, ids ...string) {
	mb := h.members()
	if mb == nil {
		return
	}
	var left []Member
	if len(ids) > 0 {
		ectx, ecancel := h.call(context.Background())
		defer ecancel()
		ms, err := mb.Gone(ectx, ids...)
		if err != nil {
			h.failed(err)
			h.log.WithError(err).Warn("leaves of sessions that went not counted (the sweep finds them later)")
		}
		left = ms
	}
	if sweep {
		ectx, ecancel := h.call(context.Background())
		defer ecancel()
		ms, err := mb.SweepMembers(ectx)
		if err != nil {
			h.failed(err)
		}
		left = append(left, ms...)
	}
	for _, m := range left {
		h.announce("leave", m)
	}
}

// announce publishes a join or leave on its channel, when the channel
// announces them, and emits its event.
func (h *Hub) announce(typ string, m Member) {
	if h.announced(m.Channel) {
		data, _ := json.Marshal(joinLeaveEvent{Type: "stardust." + typ, User: m.User, Info: m.Info})
		ext := joinExt
		if typ == "leave" {
			ext = leaveExt
		}
		if _, err := h.Publish(&Message{Channel: m.Channel, Data: data, Ext: ext, Presence: true}); err != nil {
			h.log.WithError(err).WithField("channel", m.Channel).Warn("join/leave event not published")
		}
	}
	h.emit(Event{Type: typ, Channel: m.Channel, User: m.User})
}

// identityInfo is the info of an AttrIdentity value, or nil.
func identityInfo(raw string) json.RawMessage {
	var id Identity
	if raw == "" || json.Unmarshal([]byte(raw), &id) != nil {
		return nil
	}
	return id.Info
}

// memMembers is the memory engine's Members: counts under one lock.
type memMembers struct {
	mu       sync.Mutex
	counts   map[string]map[string]int // channel -> user -> sessions
	sessions map[string]*memMember     // session id -> what it is counted in
}

// memMember is one session's part in the counts.
type memMember struct {
	user     string
	info     json.RawMessage
	channels map[string]bool
}

// Join implements Members. The session is looked up under the counts'
// lock, and Gone takes that lock after the session was removed: a Join
// racing a removal either sees the session gone or is undone by Gone.
func (e *MemoryEngine) Join(_ context.Context, channel, id, user string, info json.RawMessage) (bool, error) {
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.session(id) == nil {
		return false, nil
	}
	if m.sessions == nil {
		m.sessions, m.counts = map[string]*memMember{}, map[string]map[string]int{}
	}
	s := m.sessions[id]
	if s == nil {
		s = &memMember{user: user, info: info, channels: map[string]bool{}}
		m.sessions[id] = s
	}
	if s.channels[channel] {
		return false, nil
	}
	s.channels[channel] = true
	users := m.counts[channel]
	if users == nil {
		users = map[string]int{}
		m.counts[channel] = users
	}
	users[s.user]++
	return users[s.user] == 1, nil
}

// Leave implements Members.
func (e *MemoryEngine) Leave(_ context.Context, channel, id string) (Member, bool, error) {
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[id]
	if s == nil || !s.channels[channel] {
		return Member{}, false, nil
	}
	delete(s.channels, channel)
	if len(s.channels) == 0 {
		delete(m.sessions, id)
	}
	return m.uncount(channel, s)
}

// uncount takes one session of s.user off channel. Under mu.
func (m *memMembers) uncount(channel string, s *memMember) (Member, bool, error) {
	users := m.counts[channel]
	users[s.user]--
	if users[s.user] > 0 {
		return Member{}, false, nil
	}
	delete(users, s.user)
	if len(users) == 0 {
		delete(m.counts, channel)
	}
	return Member{Channel: channel, User: s.user, Info: s.info}, true, nil
}

// Gone implements Members.
func (e *MemoryEngine) Gone(_ context.Context, ids ...string) ([]Member, error) {
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Member
	for _, id := range ids {
		if s := m.sessions[id]; s != nil && e.session(id) == nil {
			delete(m.sessions, id)
			out = append(out, m.uncountAll(s)...)
		}
	}
	return out, nil
}

// memSweepMembers bounds the sessions one SweepMembers looks at, so that
// the counts' lock is held briefly; map order differs between calls, and
// the sweeps that follow look at others.
const memSweepMembers = 1000

// SweepMembers implements Members. The hub calls Gone for every session
// the memory engine removes, in the same process, so there is seldom
// anything to find; sessions of an embedder that removes them through
// the engine directly are.
func (e *MemoryEngine) SweepMembers(context.Context) ([]Member, error) {
	m := &e.members
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Member
	n := 0
	for id, s := range m.sessions {
		if n++; n > memSweepMembers {
			break
		}
		if e.session(id) != nil {
			continue
		}
		delete(m.sessions, id)
		out = append(out, m.uncountAll(s)...)
	}
	return out, nil
}

// uncountAll takes s off all its channels. Under mu.
func (m *memMembers) uncountAll(s *memMember) []Member {
	var out []Member
	for ch := range s.channels {
		if mb, last, _ := m.uncount(ch, s); last {
			out = append(out, mb)
		}
	}
	return out
}
