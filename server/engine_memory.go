package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound an engine: every engine takes them, so that the same
// configuration means the same on any engine. Zero values take the
// defaults noted.
type Limits struct {
	HistorySize      int           // messages kept per channel; 0 none
	QueueMaxMessages int           // per-session queue bound; default 1000
	QueueMaxBytes    int           // per-session queue bound in bytes; default 1 MiB
	MaxClients       int           // sessions of all kinds; default 100000
	ChannelTimeout   time.Duration // idle channels with no subscriber are swept after this; default 1h
	// MaxSubscriptions bounds one session's subscriptions (names and
	// patterns); default 128, as Centrifugo's channels per client. Subscribe
	// of a new pattern past it fails with ErrTooManySubscriptions and changes
	// nothing; subscribing again to a pattern the session has never fails.
	MaxSubscriptions int
	// MaxChannels bounds the channels the engine keeps a record of, in the
	// whole engine; default 100000. Every engine counts the channels with
	// history; one that keeps other channel records counts those too (the
	// memory engine: every channel published to or subscribed to by name,
	// until swept). A Publish that would add a channel past it fails with
	// ErrTooManyChannels and publishes nothing (to no one, kept nowhere).
	// Subscribe never fails for it (the hub asks ChannelCreator first,
	// where the engine is one).
	MaxChannels int
	// MaxHistoryBytes bounds the bytes of all channels' history together, as
	// the engine stores them (the memory engine counts each kept message's
	// data, channel, id and ext plus 64; the Redis engine its encoded
	// form); default 256 MiB. When a publish passes it, the history of the
	// channels published to least recently (by the time of their last
	// publish) is dropped first, whole channels, the channel just published
	// to last, until the total is at most the bound again. The memory
	// engine does it all before Publish returns; an engine may bound what
	// one publish drops and drop the rest in its next Sweep. Each dropped
	// history counts one in EngineStats.HistoryTrimmed. A channel whose
	// history was dropped keeps its other records until swept. Publishes
	// never fail for it: the message is still queued for its subscribers.
	MaxHistoryBytes int64
	// ChannelHistory sizes the history of the channels its rules match
	// ([[channels]] history_size), the first match deciding; channels no
	// rule matches keep HistorySize.
	ChannelHistory []HistoryRule
}

// HistoryRule is one entry of Limits.ChannelHistory: the channels matching
// Pattern (a valid channel pattern) keep Size messages; 0 none.
type HistoryRule struct {
	Pattern string
	Size    int
	// TTL: messages older than this are not returned by History and are
	// dropped; 0 keeps them as long as Size allows.
	TTL  time.Duration
	segs []string // Pattern parsed, by Defaults
}

// HistoryFor is the history size of the channel whose segments are segs.
func (o *Limits) HistoryFor(segs []string) int {
	if r := o.historyRule(segs); r != nil {
		return r.Size
	}
	return o.HistorySize
}

// HistoryTTLFor is the history TTL of the channel whose segments are segs
// (0: none).
func (o *Limits) HistoryTTLFor(segs []string) time.Duration {
	if r := o.historyRule(segs); r != nil {
		return r.TTL
	}
	return 0
}

// historyRule is the first rule matching segs, or nil.
func (o *Limits) historyRule(segs []string) *HistoryRule {
	for i := range o.ChannelHistory {
		r := &o.ChannelHistory[i]
		ps := r.segs
		if ps == nil {
			ps, _ = ParseChannel(r.Pattern, true)
		}
		if ps != nil && covers(ps, segs) {
			return r
		}
	}
	return nil
}

// Defaults fills zero fields with their defaults.
func (o *Limits) Defaults() {
	// A copy, parsed once: the caller's slice is not written to.
	rules := make([]HistoryRule, len(o.ChannelHistory))
	for i, r := range o.ChannelHistory {
		r.segs, _ = ParseChannel(r.Pattern, true)
		rules[i] = r
	}
	o.ChannelHistory = rules
	if o.QueueMaxMessages <= 0 {
		o.QueueMaxMessages = 1000
	}
	if o.QueueMaxBytes <= 0 {
		o.QueueMaxBytes = 1 << 20
	}
	if o.MaxClients <= 0 {
		o.MaxClients = 100000
	}
	if o.ChannelTimeout <= 0 {
		o.ChannelTimeout = time.Hour
	}
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = 128
	}
	if o.MaxChannels <= 0 {
		o.MaxChannels = 100000
	}
	if o.MaxHistoryBytes <= 0 {
		o.MaxHistoryBytes = 256 << 20
	}
}

// MemoryEngine is the default Engine: everything in this process. A publish
// walks the subscription tree once and appends the message (one pointer,
// never a copy) to each matching session's queue.
type MemoryEngine struct {
	opts Limits
	seq  atomic.Uint64
	subs *subTree[*memSession]

	mu       sync.RWMutex
	channels map[string]*memChannel
	sessions map[string]*memSession

	hist memHistory // every channel's history, within MaxHistoryBytes

	conns connCounts // held connections by address

	secret atomic.Pointer[[]byte] // SharedSecret's key, drawn on first use (browser.go)

	members memMembers // users counted on join_leave channels (joinleave.go)

	// beforeTreeAdd, if set (by tests only), runs in Subscribe between
	// recording the subscription on the session and adding it to the tree.
	beforeTreeAdd func(id string)
}

var (
	_ Engine            = (*MemoryEngine)(nil)
	_ Deliverer         = (*MemoryEngine)(nil)
	_ AudienceCounter   = (*MemoryEngine)(nil)
	_ ConnectionCounter = (*MemoryEngine)(nil)
	_ PollNotifier      = (*MemoryEngine)(nil)
	_ StatsReporter     = (*MemoryEngine)(nil)
)

// memChannel is one channel's record. Its lock orders publishes to it; its
// history belongs to the engine's memHistory, under that one's lock.
type memChannel struct {
	segs     []string
	mu       sync.Mutex
	lastUsed time.Time
	targets  []*memSession // recipients buffer, reused under mu

	// Under hist.mu:
	history []*Message // oldest first, at most HistorySize
	// The newest message no longer kept, for gap notices (gap.go): its
	// position and time only, so that a dropped history frees its bytes.
	lostSeq    uint64
	lostTime   time.Time
	hbytes     int64 // their sizes
	prev, next *memChannel
}

// memSession is a session with its queue. Positions count every message
// ever queued for it: queue[0] is at position head.
type memSession struct {
	mu       sync.Mutex
	s        Session
	subs     map[string][]string // pattern -> its segments
	queue    []*Message
	qbytes   int
	head     uint64
	seen     uint64 // positions below this have been fetched
	dropped  int
	lastSeen time.Time
	watchers []*memWatch
	gone     bool
}

type memWatch struct {
	notify  func(Wake)
	ms      *memSession
	stopped bool // under ms.mu
}

// stop removes the watch (once) and marks the session seen now.
func (w *memWatch) stop() {
	ms := w.ms
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if w.stopped {
		return
	}
	w.stopped = true
	if i := slices.Index(ms.watchers, w); i >= 0 {
		// In place: the array is kept for the session's next poll.
		last := len(ms.watchers) - 1
		copy(ms.watchers[i:], ms.watchers[i+1:])
		ms.watchers[last] = nil
		ms.watchers = ms.watchers[:last]
	}
	ms.lastSeen = time.Now()
}

// NewMemoryEngine returns an empty engine.
func NewMemoryEngine(opts Limits) *MemoryEngine {
	opts.Defaults()
	return &MemoryEngine{opts: opts, subs: newSubTree[*memSession](),
		channels: map[string]*memChannel{}, sessions: map[string]*memSession{}}
}

func (e *MemoryEngine) session(id string) *memSession {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.sessions[id]
}

func (e *MemoryEngine) live(id string) (*memSession, error) {
	if s := e.session(id); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownClient, id)
}

// CreateSession implements Engine.
func (e *MemoryEngine) CreateSession(_ context.Context, s Session) error {
	s.Attrs = maps.Clone(s.Attrs)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sessions[s.ID] != nil {
		return ErrExists
	}
	if len(e.sessions) >= e.opts.MaxClients {
		return fmt.Errorf("%w: %d sessions", ErrTooManyClients, e.opts.MaxClients)
	}
	e.sessions[s.ID] = &memSession{s: s, subs: map[string][]string{}, lastSeen: time.Now()}
	return nil
}

// Session implements Engine.
func (e *MemoryEngine) Session(_ context.Context, id string) (Session, error) {
	ms, err := e.live(id)
	if err != nil {
		return Session{}, err
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.s, nil
}

// Touch implements Engine.
func (e *MemoryEngine) Touch(_ context.Context, ids ...string) error {
	now := time.Now()
	for _, id := range ids {
		if ms := e.session(id); ms != nil {
			ms.mu.Lock()
			ms.lastSeen = now
			ms.mu.Unlock()
		}
	}
	return nil
}

// SetAttr implements Engine. Attributes are copied on write, so that a
// Session returned earlier never changes under its reader.
func (e *MemoryEngine) SetAttr(_ context.Context, id, key, value string) error {
	ms, err := e.live(id)
	if err != nil {
		return err
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.s.Attrs = withAttr(ms.s.Attrs, key, value)
	return nil
}

// RemoveSession implements Engine.
func (e *MemoryEngine) RemoveSession(_ context.Context, id string) (bool, error) {
	e.mu.Lock()
	ms, watchers := e.unlink(id)
	e.mu.Unlock()
	wake(watchers, WakeRemoved)
	return ms != nil, nil
}

// unlink removes session id (if any) from the map and its subscriptions
// from the tree, in one step under e.mu, which the caller holds: a publish
// that finds the session gone counts it no more, and the sweep sees the
// channels it leaves unsubscribed. It returns the session and the watchers
// to wake once e.mu is released.
func (e *MemoryEngine) unlink(id string) (*memSession, []*memWatch) {
	ms := e.sessions[id]
	if ms == nil {
		return nil, nil
	}
	delete(e.sessions, id)
	ms.mu.Lock()
	ms.gone = true
	subs := ms.subs
	ms.subs = map[string][]string{}
	clear(ms.queue)
	ms.queue, ms.qbytes = nil, 0
	watchers := ms.watchers
	ms.watchers = nil // woken by the caller, outside the locks: no stop may change them
	ms.mu.Unlock()
	e.subs.removeAll(subs, ms)
	return ms, watchers
}

// wake tells each watcher why its session went.
func wake(watchers []*memWatch, why Wake) {
	for _, w := range watchers {
		w.notify(why)
	}
}

// Sweep implements Engine: sessions idle past their timeout with no poll
// watching them, and channels with no exact subscriber unused for
// ChannelTimeout.
func (e *MemoryEngine) Sweep(_ context.Context, now time.Time) ([]Session, error) {
	var out []Session
	var watchers []*memWatch
	e.mu.Lock()
	for id, ms := range e.sessions {
		ms.mu.Lock()
		expired := ms.s.Timeout > 0 && len(ms.watchers) == 0 && now.Sub(ms.lastSeen) > ms.s.Timeout
		s := ms.s
		ms.mu.Unlock()
		if expired {
			_, ws := e.unlink(id)
			watchers = append(watchers, ws...)
			out = append(out, s)
		}
	}
	for name, ch := range e.channels {
		ch.mu.Lock()
		stale := now.Sub(ch.lastUsed) > e.opts.ChannelTimeout
		ch.mu.Unlock()
		if stale && len(e.subs.exact(ch.segs)) == 0 {
			delete(e.channels, name)
			e.hist.forget(ch)
		}
	}
	e.mu.Unlock()
	wake(watchers, WakeExpired)
	return out, nil
}

// Subscribe implements Engine.
func (e *MemoryEngine) Subscribe(_ context.Context, id, pattern string) (bool, error) {
	segs, err := ParseChannel(pattern, true)
	if err != nil {
		return false, err
	}
	ms, err := e.live(id)
	if err != nil {
		return false, err
	}
	ms.mu.Lock()
	if ms.gone {
		ms.mu.Unlock()
		return false, fmt.Errorf("%w: %s", ErrUnknownClient, id)
	}
	if _, ok := ms.subs[pattern]; ok {
		ms.mu.Unlock()
		return false, nil
	}
	if len(ms.subs) >= e.opts.MaxSubscriptions {
		ms.mu.Unlock()
		return false, fmt.Errorf("%w: at most %d per client", ErrTooManySubscriptions, e.opts.MaxSubscriptions)
	}
	ms.subs[pattern] = segs
	ms.mu.Unlock()
	if e.beforeTreeAdd != nil {
		e.beforeTreeAdd(id)
	}
	e.subs.add(segs, ms)
	ms.mu.Lock()
	gone := ms.gone
	ms.mu.Unlock()
	if gone {
		// Removed meanwhile: drop may have run before the add above.
		e.subs.remove(segs, ms)
		return false, fmt.Errorf("%w: %s", ErrUnknownClient, id)
	}
	if !IsWild(pattern) {
		_, _ = e.touchChannel(pattern, segs, false) // never refused: not capped
	}
	return true, nil
}

// Unsubscribe implements Engine.
func (e *MemoryEngine) Unsubscribe(_ context.Context, id, pattern string) (bool, error) {
	ms, err := e.live(id)
	if err != nil {
		return false, err
	}
	ms.mu.Lock()
	segs, ok := ms.subs[pattern]
	delete(ms.subs, pattern)
	ms.mu.Unlock()
	if ok {
		e.subs.remove(segs, ms)
	}
	return ok, nil
}

// Subscriptions implements Engine.
func (e *MemoryEngine) Subscriptions(_ context.Context, id string) ([]string, error) {
	ms, err := e.live(id)
	if err != nil {
		return nil, err
	}
	ms.mu.Lock()
	out := make([]string, 0, len(ms.subs))
	for p := range ms.subs {
		out = append(out, p)
	}
	ms.mu.Unlock()
	sort.Strings(out)
	return out, nil
}

// touchChannel returns the channel, creating it, and marks it used now. The
// mark is made under the engine's read lock, which the sweeper's write lock
// excludes, so a channel being used is never swept from under its user.
// With capped, it refuses to create a channel past MaxChannels.
func (e *MemoryEngine) touchChannel(name string, segs []string, capped bool) (*memChannel, error) {
	now := time.Now()
	e.mu.RLock()
	ch := e.channels[name]
	if ch != nil {
		ch.mu.Lock()
		ch.lastUsed = now
		ch.mu.Unlock()
	}
	e.mu.RUnlock()
	if ch != nil {
		return ch, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if ch = e.channels[name]; ch == nil {
		if capped && len(e.channels) >= e.opts.MaxChannels {
			return nil, e.tooManyChannels()
		}
		ch = &memChannel{segs: segs}
		e.channels[name] = ch
	}
	ch.mu.Lock()
	ch.lastUsed = now
	ch.mu.Unlock()
	return ch, nil
}

func (e *MemoryEngine) tooManyChannels() error {
	return fmt.Errorf("%w: the server keeps at most %d", ErrTooManyChannels, e.opts.MaxChannels)
}

// Publish implements Engine.
func (e *MemoryEngine) Publish(_ context.Context, m *Message) (int, error) {
	segs, err := ParseChannel(m.Channel, false)
	if err != nil {
		return 0, err
	}
	ch, err := e.touchChannel(m.Channel, segs, true)
	if err != nil {
		return 0, err
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	m.Seq = e.seq.Add(1)
	m.Time = time.Now()
	if size := e.opts.HistoryFor(segs); size > 0 {
		if ttl := e.opts.HistoryTTLFor(segs); ttl > 0 {
			e.hist.expire(ch, m.Time.Add(-ttl)) // what one publish drops is bounded by the size
		}
		e.hist.keep(ch, m, size, e.opts.MaxHistoryBytes)
	}
	// The recipients list is the channel's own buffer, reused from publish
	// to publish under its lock: a large audience costs no garbage per
	// message.
	targets := e.subs.match(segs, ch.targets[:0])
	for _, ms := range targets {
		e.enqueue(ms, m)
	}
	n := len(targets)
	clear(targets) // hold no session beyond this publish
	if cap(targets) <= maxKeptTargets {
		ch.targets = targets[:0]
	}
	return n, nil
}

// maxKeptTargets bounds the recipients buffer a channel keeps between
// publishes (8 bytes an entry).
const maxKeptTargets = 1 << 16

// Deliver implements Deliverer.
func (e *MemoryEngine) Deliver(_ context.Context, id string, m *Message) error {
	ms, err := e.live(id)
	if err != nil {
		return err
	}
	m.Seq = e.seq.Add(1)
	m.Time = time.Now()
	e.enqueue(ms, m)
	return nil
}

// enqueue adds m to a queue, dropping the oldest messages when a bound
// would be passed, and wakes the watchers. Publish calls it with the
// channel's lock held, so that every session sees a channel's messages in
// order.
func (e *MemoryEngine) enqueue(ms *memSession, m *Message) {
	size := m.size()
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.gone {
		return
	}
	for len(ms.queue) > 0 && (len(ms.queue)+1 > e.opts.QueueMaxMessages || ms.qbytes+size > e.opts.QueueMaxBytes) {
		ms.qbytes -= ms.queue[0].size()
		ms.queue[0] = nil
		ms.queue = ms.queue[1:]
		if ms.head >= ms.seen {
			ms.dropped++ // never sent: the client must be told
		}
		ms.head++
	}
	ms.queue = append(ms.queue, m)
	ms.qbytes += size
	for _, w := range ms.watchers {
		w.notify(WakeMessages)
	}
}

// Fetch implements Engine.
func (e *MemoryEngine) Fetch(_ context.Context, id string, limit int) (Batch, error) {
	ms, err := e.live(id)
	if err != nil {
		return Batch{}, err
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	n := len(ms.queue)
	if limit > 0 && n > limit {
		n = limit
	}
	b := Batch{Dropped: ms.dropped, Cursor: ms.head + uint64(n)}
	ms.seen = max(ms.seen, b.Cursor)
	if n > 0 {
		b.Messages = append(make([]*Message, 0, n), ms.queue[:n]...)
	}
	ms.dropped = 0
	return b, nil
}

// Commit implements Engine.
func (e *MemoryEngine) Commit(_ context.Context, id string, cursor uint64) error {
	ms, err := e.live(id)
	if err != nil {
		return err
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if cursor <= ms.head {
		return nil
	}
	k := min(cursor-ms.head, uint64(len(ms.queue)))
	for i := range k {
		ms.qbytes -= ms.queue[i].size()
		ms.queue[i] = nil
	}
	ms.queue = ms.queue[k:]
	if len(ms.queue) == 0 {
		ms.queue = nil // let the backing array go
	}
	ms.head += k
	return nil
}

// Watch implements Engine. A removed session's watcher is woken at once.
func (e *MemoryEngine) Watch(id string, notify func(Wake)) (stop func()) {
	ms := e.session(id)
	if ms == nil {
		notify(WakeExpired)
		return func() {}
	}
	w := &memWatch{notify: notify, ms: ms}
	ms.mu.Lock()
	if ms.gone {
		ms.mu.Unlock()
		notify(WakeExpired)
		return func() {}
	}
	ms.watchers = append(ms.watchers, w)
	ms.mu.Unlock()
	return w.stop
}

// NotifyPoll implements PollNotifier.
func (e *MemoryEngine) NotifyPoll(_ context.Context, id string) error {
	if ms := e.session(id); ms != nil {
		ms.mu.Lock()
		defer ms.mu.Unlock()
		for _, w := range ms.watchers {
			w.notify(WakeReplaced)
		}
	}
	return nil
}

// History implements Engine.
func (e *MemoryEngine) History(_ context.Context, name string, after uint64) ([]*Message, error) {
	e.mu.RLock()
	ch := e.channels[name]
	e.mu.RUnlock()
	if ch == nil {
		return nil, nil
	}
	// Under the channel's lock, as before the history had its own: a
	// publish in progress is seen whole (kept and queued) or not at all,
	// so that a replay merged with a queue never counts it twice.
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ttl := e.opts.HistoryTTLFor(ch.segs); ttl > 0 {
		e.hist.expire(ch, time.Now().Add(-ttl))
	}
	return e.hist.after(ch, after), nil
}

// Channels implements Engine.
func (e *MemoryEngine) Channels(_ context.Context, prefix string) ([]string, error) {
	e.mu.RLock()
	out := make([]string, 0, len(e.channels))
	for name := range e.channels {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	e.mu.RUnlock()
	sort.Strings(out)
	return out, nil
}

// Audience implements AudienceCounter.
func (e *MemoryEngine) Audience(_ context.Context, channel string) (map[string]int, error) {
	segs, err := ParseChannel(channel, false)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, ms := range e.subs.match(segs, nil) {
		out[ms.s.Kind]++ // Kind never changes
	}
	return out, nil
}

// TakeConnection implements ConnectionCounter.
func (e *MemoryEngine) TakeConnection(_ context.Context, addr string, limit int) (bool, error) {
	return e.conns.take(addr, limit), nil
}

// ReleaseConnection implements ConnectionCounter.
func (e *MemoryEngine) ReleaseConnection(_ context.Context, addr string) error {
	e.conns.release(addr)
	return nil
}

// connCounts counts held connections by address, in this process: the
// memory engine's, and the hub's for an engine that is no
// ConnectionCounter. The zero value is ready.
type connCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// take counts one connection from addr if fewer than limit are counted
// (limit <= 0: no limit); it reports whether it did.
func (c *connCounts) take(addr string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if limit > 0 && c.n[addr] >= limit {
		return false
	}
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[addr]++
	return true
}

// release forgets one connection that take counted.
func (c *connCounts) release(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[addr]--; c.n[addr] <= 0 {
		delete(c.n, addr)
	}
}

// Stats implements StatsReporter.
func (e *MemoryEngine) Stats(context.Context) (EngineStats, error) {
	e.mu.RLock()
	st := EngineStats{Clients: len(e.sessions), Channels: len(e.channels), ClientsByKind: map[string]int{}}
	for _, ms := range e.sessions {
		st.ClientsByKind[ms.s.Kind]++ // Kind never changes
	}
	e.mu.RUnlock()
	e.subs.mu.RLock()
	st.Subscriptions = e.subs.n
	e.subs.mu.RUnlock()
	st.HistoryBytes, st.HistoryTrimmed = e.hist.stats()
	return st, nil
}

// expire removes a session as if it had expired (tests: a node that lost
// its clients).
func (e *MemoryEngine) expire(id string) {
	e.mu.Lock()
	_, watchers := e.unlink(id)
	e.mu.Unlock()
	wake(watchers, WakeExpired)
}

// Close implements Engine; a memory engine holds nothing to release.
func (e *MemoryEngine) Close() error { return nil }
