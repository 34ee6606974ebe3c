package server

import (
	"context"
	"errors"
	"maps"
	"time"
)

// Engine keeps what every process serving the same clients must share:
// sessions, their subscriptions and bounded queues, channel history, the
// message sequence and per-address connection counts. The Hub keeps only what
// belongs to one process (held polls and their wake-ups, WebSockets, local Go
// clients, events and metrics) and talks to the engine through this
// interface, so that the protocols never know which engine they have.
//
// MemoryEngine (the default) keeps everything in this process; the Redis
// engine (package engine/redis) shares it between processes. Every engine
// must pass the conformance suite in package enginetest.
//
// Engine holds the methods every engine needs; what only some engines can
// do (or need) is in small optional interfaces found by type assertion:
// Deliverer (services' answers), AudienceCounter, ConnectionCounter,
// PollNotifier (engines shared by several processes), StatsReporter, and
// ChannelCreator, UserIndex, HistoryLoss, Presence and the server API's.
//
// All methods are safe for concurrent use. ctx bounds each call with a
// deadline (the hub gives HubOptions.EngineTimeout to engines other than
// the memory engine, which never waits): an engine that talks to a server
// returns an error wrapping ErrEngine when it cannot answer by then. Methods
// that name a session return an error wrapping ErrUnknownClient when there
// is no such session.
type Engine interface {
	// CreateSession stores a new session. It fails with ErrExists when the id
	// is taken and with ErrTooManyClients when the engine is full.
	CreateSession(ctx context.Context, s Session) error
	// Session returns the session with this id.
	Session(ctx context.Context, id string) (Session, error)
	// Touch marks sessions as seen now, postponing their expiry. Unknown ids
	// are ignored.
	Touch(ctx context.Context, ids ...string) error
	// SetAttr sets one string attribute of a session ("" deletes it).
	SetAttr(ctx context.Context, id, key, value string) error
	// RemoveSession forgets a session with its subscriptions and queue and
	// wakes its watchers with WakeRemoved. It reports whether it existed.
	RemoveSession(ctx context.Context, id string) (bool, error)
	// Sweep removes sessions idle past their timeout (and whatever else has
	// expired), wakes their watchers with WakeExpired and returns those it
	// removed, for events.
	Sweep(ctx context.Context, now time.Time) ([]Session, error)

	// Subscribe adds a subscription of a session to a channel name or a
	// pattern ending in /* or /**; it reports whether it is new. Messages
	// published after it returns are queued for the session.
	Subscribe(ctx context.Context, id, pattern string) (bool, error)
	// Unsubscribe removes a subscription; it reports whether there was one.
	Unsubscribe(ctx context.Context, id, pattern string) (bool, error)
	// Subscriptions returns a session's patterns, sorted.
	Subscriptions(ctx context.Context, id string) ([]string, error)

	// Publish stamps m with the next value of the one global sequence and the
	// time, keeps it in its channel's history and queues it for every
	// session whose subscription matches, then wakes their watchers. It
	// returns how many sessions it was queued for. Publishes to one channel
	// are seen in the same order by every subscriber. m.Channel is a valid
	// channel name without wildcards. m must not be changed afterwards.
	Publish(ctx context.Context, m *Message) (int, error)
	// Fetch returns up to max messages queued for the session, oldest
	// first, and how many were dropped from its queue (oldest first, on
	// overflow) since the previous fetch. Fetch does not take the messages:
	// they are returned again by later fetches until Commit is called with
	// the batch's cursor (or a later one), so that a process that dies
	// before its answer reaches the client loses nothing.
	Fetch(ctx context.Context, id string, max int) (Batch, error)
	// Commit forgets the messages of every batch up to and including the
	// one with this cursor. Committing an old cursor does nothing.
	Commit(ctx context.Context, id string, cursor uint64) error
	// Watch calls notify (from any goroutine, maybe more than once) when the
	// session may have new messages (WakeMessages), was removed
	// (WakeRemoved), or a poll of it started in another process
	// (WakeReplaced, after PollNotifier.NotifyPoll there); WakeExpired when
	// Sweep removed it. notify must return at once and must not call the
	// engine: it may run with engine locks held. A message
	// queued after Watch returns always causes a WakeMessages; watching an
	// unknown session causes a WakeExpired. stop ends the watch and marks
	// the session seen; it is safe to call more than once. While a session
	// is watched in this process, the hub touches it so that it never
	// expires under a held poll.
	Watch(id string, notify func(Wake)) (stop func())
	// History returns a channel's kept messages with Seq > after, oldest
	// first. Reading does not create the channel.
	History(ctx context.Context, channel string, after uint64) ([]*Message, error)
	// Channels returns the sorted names of channels in use (with history or
	// subscribers) that start with prefix ("" for all).
	Channels(ctx context.Context, prefix string) ([]string, error)
	// Close releases the engine's resources. The hub calls it on Close.
	Close() error
}

// Session is what an engine keeps of one client: typed, so that any process
// can read what another wrote.
type Session struct {
	ID      string
	Kind    string        // one of the Kind constants
	Remote  string        // the client's address as first seen
	Timeout time.Duration // removed when idle this long; 0 never
	// Attrs is protocol state (such as Bayeux authentication) for hooks:
	// "user", "authenticated", "transport", "ack". Treat it as read-only;
	// change it with Engine.SetAttr.
	Attrs map[string]string
}

// withAttr returns a copy of attrs with key set to value ("" deletes it):
// attributes are copied on write, so that a Session handed out earlier
// never changes under its reader.
func withAttr(attrs map[string]string, key, value string) map[string]string {
	out := maps.Clone(attrs)
	if out == nil {
		out = map[string]string{}
	}
	if value == "" {
		delete(out, key)
	} else {
		out[key] = value
	}
	return out
}

// Batch is what Fetch returns.
type Batch struct {
	Messages []*Message
	Dropped  int    // messages lost to queue overflow since the previous fetch
	Cursor   uint64 // to Commit once the batch has reached the client
}

// Wake says why Engine.Watch's notify was called.
type Wake int

// The reasons a watcher is woken.
const (
	WakeMessages Wake = iota // messages may be queued
	WakeRemoved              // the session was removed on request (RemoveSession)
	WakeExpired              // the session expired (Sweep) or was lost
	WakeReplaced             // a poll of the session started in another process
)

// EngineStats are an engine's counts, for the info page and metrics.
type EngineStats struct {
	Clients       int
	ClientsByKind map[string]int
	Channels      int
	Subscriptions int
	// HistoryBytes is the payload bytes of all channels' history.
	HistoryBytes int64
	// HistoryTrimmed counts channel histories dropped to keep HistoryBytes
	// under Limits.MaxHistoryBytes since the engine started (with a shared
	// engine: by every process); the hub reports increases as incidents.
	HistoryTrimmed uint64
}

// Errors of engines, beside ErrUnknownClient and ErrTooManyClients.
var (
	// ErrExists is returned by CreateSession for an id in use.
	ErrExists = errors.New("client id exists")
	// ErrEngine wraps failures to reach a shared engine's server: clients
	// are told to retry.
	ErrEngine = errors.New("engine unavailable")
	// ErrTooManySubscriptions is returned by Subscribe when the session
	// has Limits.MaxSubscriptions subscriptions already.
	ErrTooManySubscriptions = errors.New("too many subscriptions")
	// ErrTooManyChannels is returned by Publish (and CreateChannels) for a
	// channel the engine does not keep yet when it keeps Limits.MaxChannels
	// channels already.
	ErrTooManyChannels = errors.New("too many channels")
	// ErrChannelBudget is returned by CreateChannels when it would add more
	// channels than its budget allows.
	ErrChannelBudget = errors.New("too many new channels")
)

// Deliverer is an optional capability of an Engine, found by type
// assertion: queuing a message for one session only, which services'
// answers to their callers need (Hub.Deliver). Without it a service's call
// fails (errors.ErrUnsupported) after the service ran.
type Deliverer interface {
	// Deliver queues m for one session only, outside any channel (a
	// service's answer to its caller), stamped like a publish.
	Deliver(ctx context.Context, id string, m *Message) error
}

// AudienceCounter is an optional capability of an Engine, found by type
// assertion: the server API's and Stardust's audience counts
// (Hub.Audience). Without it they fail with errors.ErrUnsupported.
type AudienceCounter interface {
	// Audience returns how many sessions of each kind a message published
	// on the channel now would reach.
	Audience(ctx context.Context, channel string) (map[string]int, error)
}

// ConnectionCounter is an optional capability of an Engine, found by type
// assertion: held connections counted per address (a browser's) across
// every process sharing the engine. Without it the hub counts those of its
// own process only.
type ConnectionCounter interface {
	// TakeConnection counts one held connection from addr if fewer than
	// limit are held (limit <= 0: no limit); it reports whether it did.
	TakeConnection(ctx context.Context, addr string, limit int) (bool, error)
	// ReleaseConnection gives back one connection that TakeConnection took.
	ReleaseConnection(ctx context.Context, addr string) error
}

// PollNotifier is an optional capability of an Engine, found by type
// assertion, that an engine shared by several processes must have: without
// it a poll of a session started in another process does not release the
// one held here. An engine of one process needs none: the hub releases its
// own polls itself.
type PollNotifier interface {
	// NotifyPoll wakes every watcher of the session, in every process
	// sharing the engine, with WakeReplaced: a new poll of it starts, so
	// the held ones must let go. The hub calls it before its own Watch.
	NotifyPoll(ctx context.Context, id string) error
}

// StatsReporter is an optional capability of an Engine, found by type
// assertion: its counts, for the info page, metrics and the health check.
// Without it those counts are zero, and the health check asks for a
// session instead.
type StatsReporter interface {
	// Stats returns the engine's counts.
	Stats(ctx context.Context) (EngineStats, error)
}

// ChannelCreator is an optional capability of an Engine, found by type
// assertion: the hub calls it before a publish or an exact subscription
// made for a client, so that a request naming several channels is refused
// before anything is published (all or none) and so that the channels a
// client address adds can be counted against its rate. Without it the hub
// publishes and subscribes as before: Limits.MaxChannels still holds (the
// engine's Publish refuses), but a request naming several channels may be
// refused part way, and there is no per-address bound on new channels.
type ChannelCreator interface {
	// CreateChannels makes the engine keep each named channel (valid names
	// without wildcards, as Publish takes), marked used now as a publish
	// marks it, and returns how many it added. It adds none and fails with
	// ErrChannelBudget when more than budget would be added (budget < 0:
	// no bound), or with ErrTooManyChannels when the engine would keep more
	// than Limits.MaxChannels. The check and the additions are atomic.
	CreateChannels(ctx context.Context, names []string, budget int) (int, error)
}

// SequenceSpaces is an optional capability of an Engine whose message
// numbers increase on each channel but not across every channel: the
// Redis engine split into shards numbers each shard's channels apart.
// Two numbers compare only when SameSpace says so; an SSE stream resumed
// after an event id skips and replays by it only the messages of that
// space (the others' are in the stream's queue, if it has one). Without
// it every number compares with every other: one sequence.
type SequenceSpaces interface {
	// SameSpace reports whether the messages numbered a and b were
	// numbered by one sequence.
	SameSpace(a, b uint64) bool
}

// sameSpace returns the engine's SequenceSpaces.SameSpace, or a function
// that says yes.
func sameSpace(e Engine) func(a, b uint64) bool {
	if sp, ok := e.(SequenceSpaces); ok {
		return sp.SameSpace
	}
	return func(uint64, uint64) bool { return true }
}
