package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// HubOptions configure the core. Zero values take the defaults noted.
type HubOptions struct {
	// Engine keeps sessions, subscriptions, queues and history. Nil: a
	// MemoryEngine bounded by the fields below (EngineLimits). Give an
	// engine made with EngineLimits too: the hub checks MaxSubscriptions
	// and names the limits in its errors.
	Engine Engine

	HistorySize int // messages kept per channel; 0 none
	// ChannelHistory sizes the history of the channels its rules match
	// before HistorySize (Limits.ChannelHistory).
	ChannelHistory   []HistoryRule
	QueueMaxMessages int // per-client queue bound; default 1000
	QueueMaxBytes    int // per-client queue bound in bytes; default 1 MiB
	MaxClients       int // sessions of all kinds; default 100000
	// What one client can grow (see Limits): subscriptions per client,
	// default 128; channels kept, default 100000; history bytes of all
	// channels, default 256 MiB.
	MaxSubscriptions int
	MaxChannels      int
	MaxHistoryBytes  int64
	// New channels a client address may add (a publish or an exact
	// subscription to a channel the engine does not keep yet), in this
	// process (in the engine for all, with a SharedLimiter engine): a
	// token bucket of AddressChannelRate a second, default 100,
	// in bursts of up to AddressChannelBurst, default 1000. Negative: no
	// limit. Counted only with an engine that is a ChannelCreator.
	AddressChannelRate  float64
	AddressChannelBurst int
	// Per client address, in this process or, with a SharedLimiter
	// engine, in the engine for all (see limits.go): sessions, default
	// 1000; new sessions a second, default 20, in bursts of up to 200.
	// Negative: no limit.
	AddressMaxSessions  int
	AddressSessionRate  float64
	AddressSessionBurst int
	ChannelTimeout      time.Duration // idle channels with no subscriber are swept after this; default 1h

	// UserMaxSessions: sessions of one user (AttrUser) at once, default
	// 100, negative: no limit. Counted when the session is made, for the
	// user known then (a handshake's authentication or identity).
	UserMaxSessions int

	SweepInterval time.Duration // how often expiry runs; default 1s
	// EngineTimeout bounds each call to an engine that talks to a server
	// (every engine but the memory engine): its ctx carries this deadline.
	// Default DefaultEngineTimeout.
	EngineTimeout time.Duration
	FetchMax      int // messages in one poll's answer at most; default 1000
	// BatchDelay is an opt-in wait for batching, on top of the gathering
	// every seam does without a timer (what comes while a write is in
	// progress goes out in the next: delivery.go). A client answered less
	// than this ago is answered again no sooner than this after its last
	// answer, with everything that came meanwhile; a client answered longer
	// ago is answered at once. Over a WebSocket, a socket written to within
	// busyWindow gathers what comes next into one frame for this long.
	// 0 (the stardust command's default): never wait.
	BatchDelay time.Duration
	// JoinLeave, if set, says which channels announce their users' joins
	// and leaves (joinleave.go): called with channel names, from any
	// goroutine. nil: none.
	JoinLeave func(channel string) bool
	// Members, if set, says which other channels count their users'
	// joins and leaves as JoinLeave's do, for the join and leave Events
	// only, publishing nothing (webhooks' member_added and member_removed
	// on presence channels). nil: none.
	Members func(channel string) bool
	// Events, if set, is called for each Event, synchronously on the goroutine
	// that caused it, with no lock of the hub held. It must not block for long.
	Events func(Event)
}

// Event is a notification of something a client did, for callbacks and metrics.
type Event struct {
	Type     string // subscribe, unsubscribe, publish, client_connect, client_disconnect, queue_drop, join, leave
	ClientID string
	Kind     string
	Channel  string
	// User is, for join and leave, the user who came to or left Channel
	// (the first of their sessions subscribed, the last one went): once per
	// user across every process sharing the engine (joinleave.go). For
	// subscribe, unsubscribe and client_disconnect it is the session's
	// user (AttrUser): "" when it has none or, for a session that expired
	// on a shared engine, when the engine did not say.
	User    string
	Message *Message // for publish
	Count   int      // for queue_drop: messages lost
	Remote  string   // for client_connect
}

// Hub is the core that both protocols and local clients use: it keeps this
// process's held polls and their wake-ups, emits events and counts, and
// leaves what must be shared (sessions, subscriptions, queues, history) to
// its Engine. It is safe for concurrent use; Close releases every waiting
// poll.
type Hub struct {
	opts   HubOptions
	log    *logrus.Entry
	engine Engine
	limits *addrLimits
	// elimits are the engine's limits, for the checks made before calling
	// it and the errors that name them.
	elimits     Limits
	newChannels *addrRate // channels added per address (limits.go)
	// inProcess: the engine answers without a server (the memory engine):
	// its calls get no deadline, and no timer is made for them.
	inProcess bool
	// conns counts held connections per address when the engine is no
	// ConnectionCounter: in this process only.
	conns   connCounts
	trimmed trimCount // the engine's HistoryTrimmed, as last seen

	// shared is the engine, when it keeps the limits for every process
	// (limits_shared.go); limits and newChannels are then not used.
	shared SharedLimiter

	mu     sync.Mutex
	polls  map[string]*waiter   // this process's held poll of each client
	recent map[string]time.Time // clients whose poll ended since the last sweep, and when
	kicked kickSet              // sessions the server API disconnected (api.go)

	published atomic.Uint64
	delivered atomic.Uint64
	drops     atomic.Uint64
	failures  atomic.Uint64
	// fallbacks counts the polls and WebSockets served the portable way
	// where the connection's raw descriptor was wanted (metrics.go).
	fallbacks fallbackCounts
	// lastFailure is the text of the last engine failure counted, which
	// names the engine's server: for the incidents summary, never clients.
	lastFailure atomic.Pointer[string]
	// pushes runs the flushes of pushed clients (delivery_push.go).
	pushes pushQueue
	// pass puts the answers of a fan-out before the next requests of the
	// polls answered (delivery.go).
	pass answerPass
	// waiting counts the polls past their first look at the engine and the
	// pushed clients (Stats.Polling): a poll is counted once it waits.
	waiting atomic.Int64

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// NewHub starts a hub and its sweeper goroutine, which Close stops.
func NewHub(opts HubOptions, log *logrus.Entry) *Hub {
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Second
	}
	if opts.FetchMax <= 0 {
		opts.FetchMax = 1000
	}
	if opts.EngineTimeout <= 0 {
		opts.EngineTimeout = DefaultEngineTimeout
	}
	h := &Hub{opts: opts, log: log, engine: opts.Engine, elimits: opts.EngineLimits(), polls: map[string]*waiter{},
		recent: map[string]time.Time{}, done: make(chan struct{}),
		limits: newAddrLimits(orDefault(opts.AddressMaxSessions, DefaultAddressMaxSessions),
			orDefault(opts.AddressSessionRate, DefaultAddressSessionRate),
			orDefault(opts.AddressSessionBurst, DefaultAddressSessionBurst),
			orDefault(opts.UserMaxSessions, DefaultUserMaxSessions)),
		newChannels: newAddrRate(orDefault(opts.AddressChannelRate, DefaultAddressChannelRate),
			orDefault(opts.AddressChannelBurst, DefaultAddressChannelBurst))}
	if h.engine == nil {
		h.engine = NewMemoryEngine(h.elimits)
		h.opts.Engine = h.engine
	}
	h.shared, _ = h.engine.(SharedLimiter)
	_, h.inProcess = h.engine.(*MemoryEngine)
	h.wg.Add(1)
	go h.sweepLoop()
	return h
}

// EngineLimits returns the engine's limits these options give, with the
// defaults filled in: what NewHub gives the memory engine it makes, and
// what a shared engine must be given.
func (o HubOptions) EngineLimits() Limits {
	l := Limits{HistorySize: o.HistorySize, QueueMaxMessages: o.QueueMaxMessages, QueueMaxBytes: o.QueueMaxBytes,
		MaxClients: o.MaxClients, ChannelTimeout: o.ChannelTimeout, MaxSubscriptions: o.MaxSubscriptions,
		MaxChannels: o.MaxChannels, MaxHistoryBytes: o.MaxHistoryBytes, ChannelHistory: o.ChannelHistory}
	l.Defaults()
	return l
}

// DefaultEngineTimeout is HubOptions.EngineTimeout's default: longer than
// the Redis engine's own bound of one round trip (2 s), so that a call of
// several round trips still ends.
const DefaultEngineTimeout = 5 * time.Second

// noCancel is the cancel function of a call without a deadline.
func noCancel() {}

// call is the context of one engine call made for parent (a request's, or
// context.Background()): parent bounded by EngineTimeout, unless the engine
// answers in this process without waiting (no timer then).
func (h *Hub) call(parent context.Context) (context.Context, context.CancelFunc) {
	if h.inProcess {
		return parent, noCancel
	}
	return context.WithTimeout(parent, h.opts.EngineTimeout)
}

// Engine returns the hub's engine.
func (h *Hub) Engine() Engine { return h.engine }

// Done is closed when Close is called.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Close answers every waiting poll at once, stops the sweeper, waits for it
// and closes the engine. Safe to call more than once.
func (h *Hub) Close() {
	first := false
	h.closeOnce.Do(func() { close(h.done); first = true })
	h.mu.Lock()
	for _, w := range h.polls { // those waiting on a connection (longpoll.go) do not see done
		w.end(PollClosed)
	}
	h.mu.Unlock()
	h.wg.Wait()
	if first {
		if err := h.engine.Close(); err != nil {
			h.log.WithError(err).Warn("closing the engine")
		}
	}
}

// Closed reports whether Close has been called.
func (h *Hub) Closed() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

func (h *Hub) emit(e Event) {
	if e.Type == "client_disconnect" {
		h.limits.gone(e.ClientID)
	}
	if h.opts.Events != nil {
		h.opts.Events(e)
	}
}

// failed counts an engine failure; it returns err.
func (h *Hub) failed(err error) error {
	if errors.Is(err, ErrEngine) {
		h.failures.Add(1)
		text := err.Error()
		h.lastFailure.Store(&text)
	}
	return err
}

// NewID returns a random id of 128 bits from crypto/rand, as hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Client returns the client with this id; the error wraps ErrUnknownClient
// when there is none, or ErrEngine when the engine cannot say.
func (h *Hub) Client(id string) (*Client, error) {
	ctx, cancel := h.call(context.Background())
	defer cancel()
	s, err := h.engine.Session(ctx, id)
	if err != nil {
		return nil, h.failed(err)
	}
	return &Client{hub: h, s: s, added: true}, nil
}

// Register returns the client with this id, creating it (of the given kind and
// idle timeout) if it does not exist; created says which. It fails when the
// hub is closed or holds MaxClients clients already.
func (h *Hub) Register(id, kind string, timeout time.Duration, remote string) (c *Client, created bool, err error) {
	for range 3 {
		if c, err = h.Client(id); err == nil {
			return c, false, nil // its poll keeps it alive (see sweep)
		}
		if !errors.Is(err, ErrUnknownClient) {
			return nil, false, err
		}
		c = h.NewClient(id, kind, timeout, remote)
		if err = h.Add(c); !errors.Is(err, ErrExists) {
			return c, err == nil, err
		}
		// Created meanwhile by a concurrent request: take that one.
	}
	return nil, false, err
}

// NewClient makes a client that is not yet known to the hub, so that a hook
// (such as a handshake ACL) can look at it and mark it before Add.
func (h *Hub) NewClient(id, kind string, timeout time.Duration, remote string) *Client {
	return &Client{hub: h, s: Session{ID: id, Kind: kind, Remote: remote, Timeout: timeout}}
}

// Add makes a client from NewClient known to the hub. It fails when the hub is
// closed, is full, or already has a client with that id (ErrExists).
func (h *Hub) Add(c *Client) error {
	if h.Closed() {
		return ErrClosed
	}
	counted, err := h.admitSession(c)
	if err != nil {
		return err
	}
	ctx, cancel := h.call(context.Background())
	defer cancel()
	if err := h.engine.CreateSession(ctx, c.s); err != nil {
		if counted {
			h.limits.gone(c.s.ID)
		}
		return h.failed(err)
	}
	c.added = true
	h.emit(Event{Type: "client_connect", ClientID: c.s.ID, Kind: c.s.Kind, Remote: c.s.Remote})
	return nil
}

// Deliver queues m for one client only, outside any channel: a service's
// answer to its caller. It is not kept in history and not seen by subscribers.
func (h *Hub) Deliver(c *Client, m *Message) error {
	d, ok := h.engine.(Deliverer)
	if !ok {
		return fmt.Errorf("%w: this engine cannot deliver to one client", errors.ErrUnsupported)
	}
	ctx, cancel := h.call(context.Background())
	defer cancel()
	if err := d.Deliver(ctx, c.s.ID, m); err != nil {
		return h.failed(err)
	}
	h.delivered.Add(1)
	return nil
}

// Remove unsubscribes the client from everything, drops its queue and forgets
// it; its polls end with PollClosed. Removing a removed client does nothing.
func (h *Hub) Remove(c *Client) error {
	ctx, cancel := h.call(context.Background())
	defer cancel()
	existed, err := h.engine.RemoveSession(ctx, c.s.ID)
	if err != nil {
		return h.failed(err)
	}
	if existed {
		h.emit(Event{Type: "client_disconnect", ClientID: c.s.ID, Kind: c.s.Kind, User: c.Attr(AttrUser)})
		h.gone(false, c.s.ID)
	}
	return nil
}

// Subscribe adds a subscription of c to pattern (a channel name, or one ending
// in /* or /**). It reports whether the subscription is new. It fails,
// changing nothing, with ErrTooManySubscriptions when c has MaxSubscriptions
// already, and for a channel name the engine does not keep yet with
// ErrTooManyChannels or ErrChannelBudget (see prepareChannels).
func (h *Hub) Subscribe(c *Client, pattern string) (bool, error) {
	if _, err := ParseChannel(pattern, true); err != nil {
		return false, err
	}
	if !IsWild(pattern) {
		// Checked first, so that a refused subscription adds no channel
		// (the engine checks again, atomically).
		have, err := c.Subscriptions()
		if err != nil {
			return false, err
		}
		if len(have) >= h.elimits.MaxSubscriptions && !slices.Contains(have, pattern) {
			return false, h.tooManySubscriptions()
		}
		if err := h.prepareChannels(c.channelAddr(), []string{pattern}); err != nil {
			return false, err
		}
	}
	return h.subscribe(c, pattern)
}

// subscribe is Subscribe once the channel is prepared.
func (h *Hub) subscribe(c *Client, pattern string) (bool, error) {
	ctx, cancel := h.call(context.Background())
	defer cancel()
	added, err := h.engine.Subscribe(ctx, c.s.ID, pattern)
	if errors.Is(err, ErrTooManySubscriptions) {
		return false, h.tooManySubscriptions()
	}
	if err != nil {
		return false, h.failed(err)
	}
	if added {
		h.emit(Event{Type: "subscribe", ClientID: c.s.ID, Kind: c.s.Kind, Channel: pattern, User: c.Attr(AttrUser)})
		h.joined(c, pattern)
	}
	return added, nil
}

// Unsubscribe removes a subscription; it reports whether there was one.
func (h *Hub) Unsubscribe(c *Client, pattern string) (bool, error) {
	ctx, cancel := h.call(context.Background())
	defer cancel()
	removed, err := h.engine.Unsubscribe(ctx, c.s.ID, pattern)
	if err != nil {
		return false, h.failed(err)
	}
	if removed {
		h.emit(Event{Type: "unsubscribe", ClientID: c.s.ID, Kind: c.s.Kind, Channel: pattern, User: c.Attr(AttrUser)})
		h.left(c, pattern)
	}
	return removed, nil
}

// SetSubscriptions makes c subscribed to exactly these channel names or
// patterns (which hold no duplicates). More names than MaxSubscriptions, or
// new channels the engine refuses (see prepareChannels), fail before
// anything changes.
func (h *Hub) SetSubscriptions(c *Client, names []string) error {
	if len(names) > h.elimits.MaxSubscriptions {
		return h.tooManySubscriptions()
	}
	have, err := c.Subscriptions()
	if err != nil {
		return err
	}
	wanted := func(p string) bool { return slices.Contains(names, p) }
	if len(names) > 8 {
		want := make(map[string]bool, len(names))
		for _, n := range names {
			want[n] = true
		}
		wanted = func(p string) bool { return want[p] }
	}
	same := len(have) == len(names) && !slices.ContainsFunc(have, func(p string) bool { return !wanted(p) })
	if same {
		return nil // the usual case: a client polling the same channels again
	}
	exact := names
	if slices.ContainsFunc(names, IsWild) {
		exact = slices.DeleteFunc(slices.Clone(names), IsWild)
	}
	if err := h.prepareChannels(c.channelAddr(), exact); err != nil {
		return err
	}
	for _, p := range have {
		if !wanted(p) {
			if _, err := h.Unsubscribe(c, p); err != nil {
				return err
			}
		}
	}
	for _, n := range names {
		if _, err := h.subscribe(c, n); err != nil {
			return err
		}
	}
	return nil
}

// Publish stamps m with its sequence number and time, keeps it in the
// channel's history and queues it for every client whose subscription matches.
// It returns the number of clients it was queued for. m.Channel must be a valid
// channel name (no wildcard). Publishes to one channel are seen in the same
// order by every subscriber. A publish that would add a channel past
// MaxChannels fails with ErrTooManyChannels and publishes nothing.
func (h *Hub) Publish(m *Message) (int, error) {
	if h.Closed() {
		return 0, ErrClosed
	}
	if _, err := ParseChannel(m.Channel, false); err != nil {
		return 0, err
	}
	ctx, cancel := h.call(context.Background())
	defer cancel()
	n, err := h.engine.Publish(ctx, m)
	if errors.Is(err, ErrTooManyChannels) {
		return 0, h.tooManyChannels()
	}
	if err != nil {
		return 0, h.failed(err)
	}
	h.published.Add(1)
	h.delivered.Add(uint64(n))
	h.emit(Event{Type: "publish", ClientID: m.ClientID, Channel: m.Channel, Message: m})
	return n, nil
}

// History returns the channel's kept messages published after seq (0: all),
// oldest first. Reading does not create the channel.
func (h *Hub) History(name string, afterSeq uint64) ([]*Message, error) {
	ctx, cancel := h.call(context.Background())
	defer cancel()
	msgs, err := h.engine.History(ctx, name, afterSeq)
	return msgs, h.failed(err)
}

// Channels returns the sorted names of channels in use (with history or
// subscribers) under prefix ("" for all).
func (h *Hub) Channels(prefix string) ([]string, error) {
	ctx, cancel := h.call(context.Background())
	defer cancel()
	names, err := h.engine.Channels(ctx, prefix)
	return names, h.failed(err)
}

// Audience returns how many clients of each kind a message published on the
// channel now would reach. It never names them: ids are capabilities. It
// fails with errors.ErrUnsupported when the engine is no AudienceCounter.
func (h *Hub) Audience(name string) (map[string]int, error) {
	ac, ok := h.engine.(AudienceCounter)
	if !ok {
		return nil, fmt.Errorf("%w: this engine does not count audiences", errors.ErrUnsupported)
	}
	ctx, cancel := h.call(context.Background())
	defer cancel()
	counts, err := ac.Audience(ctx, name)
	return counts, h.failed(err)
}

// TakeConnection counts a held connection from addr against limit (<= 0: no
// limit); it reports whether there was room. Give it back with
// ReleaseConnection. Counted by the engine (every process) when it is a
// ConnectionCounter, else in this process.
func (h *Hub) TakeConnection(addr string, limit int) (bool, error) {
	cc, ok := h.engine.(ConnectionCounter)
	if !ok {
		return h.conns.take(addr, limit), nil
	}
	ctx, cancel := h.call(context.Background())
	defer cancel()
	ok, err := cc.TakeConnection(ctx, addr, limit)
	return ok, h.failed(err)
}

// ReleaseConnection gives back a connection that TakeConnection took.
func (h *Hub) ReleaseConnection(addr string) {
	cc, ok := h.engine.(ConnectionCounter)
	if !ok {
		h.conns.release(addr)
		return
	}
	ctx, cancel := h.call(context.Background())
	defer cancel()
	if err := cc.ReleaseConnection(ctx, addr); err != nil {
		h.failed(err)
		h.log.WithError(err).Debug("releasing a connection count")
	}
}

// Stats is a snapshot of the hub's counters for the info page and metrics.
type Stats struct {
	Clients       int
	ClientsByKind map[string]int
	Polling       int // polls of this process waiting (past their first look at the engine), and pushed clients
	Channels      int
	Subscriptions int
	HistoryBytes  int64  // the bytes of all channels' history
	HistoryMax    int64  // their bound, MaxHistoryBytes
	Trimmed       uint64 // channel histories dropped to stay under it, as this process saw
	Published     uint64 // messages published through this process
	Delivered     uint64 // queue insertions (one per subscriber per message)
	Dropped       uint64 // messages dropped from full queues, as their polls learnt
	Failures      uint64 // engine calls that failed
}

// Stats returns current counts. With an error (the engine could not
// answer), the counts of this process are still filled in.
func (h *Hub) Stats() (Stats, error) {
	es, err := h.engineStats(context.Background())
	if err == nil {
		h.trimmed.saw(es.HistoryTrimmed)
	}
	return Stats{Clients: es.Clients, ClientsByKind: es.ClientsByKind, Channels: es.Channels,
		Subscriptions: es.Subscriptions, Polling: int(h.waiting.Load()), Published: h.published.Load(),
		HistoryBytes: es.HistoryBytes, HistoryMax: h.elimits.MaxHistoryBytes, Trimmed: h.trimmed.increase(),
		Delivered: h.delivered.Load(), Dropped: h.drops.Load(), Failures: h.failures.Load()}, h.failed(err)
}

// engineStats are the engine's counts, zero when it is no StatsReporter.
func (h *Hub) engineStats(parent context.Context) (EngineStats, error) {
	sr, ok := h.engine.(StatsReporter)
	if !ok {
		return EngineStats{}, nil
	}
	ctx, cancel := h.call(parent)
	defer cancel()
	return sr.Stats(ctx)
}

func (h *Hub) sweepLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case now := <-t.C:
			h.sweep(now)
		}
	}
}

// sweep keeps the clients this process holds polls for, or whose poll ended
// since the last sweep, alive (one call to the engine for all of them), then
// has the engine remove idle clients and channels.
func (h *Hub) sweep(now time.Time) {
	h.mu.Lock()
	watched := make([]string, 0, len(h.polls)+len(h.recent))
	for id := range h.polls {
		watched = append(watched, id)
	}
	for id := range h.recent {
		if h.polls[id] == nil {
			watched = append(watched, id)
		}
	}
	clear(h.recent)
	h.mu.Unlock()
	if len(watched) > 0 {
		ctx, cancel := h.call(context.Background())
		err := h.engine.Touch(ctx, watched...)
		cancel()
		if err != nil {
			h.failed(err)
			return
		}
	}
	h.limits.prune(now)
	h.newChannels.prune(now)
	ctx, cancel := h.call(context.Background())
	gone, err := h.engine.Sweep(ctx, now)
	cancel()
	if err != nil {
		h.failed(err)
		return
	}
	ids := make([]string, len(gone))
	for i, s := range gone {
		if h.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
			h.log.WithField("kind", s.Kind).Debug("client expired")
		}
		h.emit(Event{Type: "client_disconnect", ClientID: s.ID, Kind: s.Kind, User: s.Attrs[AttrUser]})
		ids[i] = s.ID
	}
	h.gone(true, ids...)
}
