package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// HubOptions bound the core. Zero values take the defaults noted.
type HubOptions struct {
	HistorySize      int           // messages kept per channel; 0 none
	QueueMaxMessages int           // per-client queue bound; default 1000
	QueueMaxBytes    int           // per-client queue bound in bytes; default 1 MiB
	MaxClients       int           // sessions of all kinds; default 100000
	ChannelTimeout   time.Duration // idle channels with no subscriber are swept after this; default 1h
	SweepInterval    time.Duration // how often expiry runs; default 1s
	// Events, if set, is called for each Event, synchronously on the goroutine
	// that caused it, with no lock of the hub held. It must not block for long.
	Events func(Event)
}

// Event is a notification of something a client did, for callbacks and metrics.
type Event struct {
	Type     string // subscribe, unsubscribe, publish, client_connect, client_disconnect, queue_drop
	ClientID string
	Kind     string
	Channel  string
	Message  *Message // for publish
	Count    int      // for queue_drop: messages lost
	Remote   string   // for client_connect
}

// Hub is the shared core: channels with their history, clients with their
// bounded queues, and the subscription tree. Both protocols and local clients
// use it. It is safe for concurrent use; Close releases every waiting poll.
type Hub struct {
	opts HubOptions
	log  *logrus.Entry
	seq  atomic.Uint64
	subs *subTree

	mu       sync.RWMutex
	channels map[string]*channel
	clients  map[string]*Client

	published atomic.Uint64
	delivered atomic.Uint64
	drops     atomic.Uint64

	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	// beforeTreeAdd, if set (by tests only), runs in Subscribe between
	// recording the subscription on the client and adding it to the tree.
	beforeTreeAdd func(*Client)
}

// channel is one channel's history. Its lock also orders publishes to it.
type channel struct {
	name     string
	segs     []string
	mu       sync.Mutex
	history  []*Message // oldest first, at most HistorySize
	lastUsed time.Time
	targets  []*Client // recipients buffer, reused under mu
}

// NewHub starts a hub and its sweeper goroutine, which Close stops.
func NewHub(opts HubOptions, log *logrus.Entry) *Hub {
	if opts.QueueMaxMessages <= 0 {
		opts.QueueMaxMessages = 1000
	}
	if opts.QueueMaxBytes <= 0 {
		opts.QueueMaxBytes = 1 << 20
	}
	if opts.MaxClients <= 0 {
		opts.MaxClients = 100000
	}
	if opts.ChannelTimeout <= 0 {
		opts.ChannelTimeout = time.Hour
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Second
	}
	h := &Hub{
		opts:     opts,
		log:      log,
		subs:     newSubTree(),
		channels: map[string]*channel{},
		clients:  map[string]*Client{},
		done:     make(chan struct{}),
	}
	h.wg.Add(1)
	go h.sweepLoop()
	return h
}

// Done is closed when Close is called.
func (h *Hub) Done() <-chan struct{} { return h.done }

// Close answers every waiting poll at once, stops the sweeper and waits for it.
// Safe to call more than once.
func (h *Hub) Close() {
	h.closeOnce.Do(func() { close(h.done) })
	h.wg.Wait()
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
	if h.opts.Events != nil {
		h.opts.Events(e)
	}
}

// NewID returns a random id of 128 bits from crypto/rand, as hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// Client returns the client with this id, or nil.
func (h *Hub) Client(id string) *Client {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.clients[id]
}

// Register returns the client with this id, creating it (of the given kind and
// idle timeout) if it does not exist; created says which. It fails when the
// hub is closed or holds MaxClients clients already.
func (h *Hub) Register(id, kind string, timeout time.Duration, remote string) (c *Client, created bool, err error) {
	if c = h.Client(id); c != nil {
		c.Touch()
		return c, false, nil
	}
	c = h.NewClient(id, kind, timeout, remote)
	if err := h.Add(c); err != nil {
		if errors.Is(err, errExists) {
			return h.Register(id, kind, timeout, remote)
		}
		return nil, false, err
	}
	return c, true, nil
}

// NewClient makes a client that is not yet known to the hub, so that a hook
// (such as a handshake ACL) can look at it and mark it before Add.
func (h *Hub) NewClient(id, kind string, timeout time.Duration, remote string) *Client {
	return &Client{hub: h, id: id, kind: kind, timeout: timeout, Remote: remote,
		subs: map[string][]string{}, lastSeen: time.Now(), done: make(chan struct{})}
}

var errExists = errors.New("client id exists")

// Add makes a client from NewClient known to the hub. It fails when the hub is
// closed, is full, or already has a client with that id.
func (h *Hub) Add(c *Client) error {
	if h.Closed() {
		return ErrClosed
	}
	h.mu.Lock()
	if h.clients[c.id] != nil {
		h.mu.Unlock()
		return errExists
	}
	if len(h.clients) >= h.opts.MaxClients {
		h.mu.Unlock()
		return fmt.Errorf("%w: %d sessions", ErrTooManyClients, h.opts.MaxClients)
	}
	c.lastSeen = time.Now()
	h.clients[c.id] = c
	h.mu.Unlock()
	h.emit(Event{Type: "client_connect", ClientID: c.id, Kind: c.kind, Remote: c.Remote})
	return nil
}

// Deliver queues m for one client only, outside any channel: a service's
// answer to its caller. It is not kept in history and not seen by subscribers.
func (h *Hub) Deliver(c *Client, m *Message) {
	m.Seq = h.seq.Add(1)
	m.Time = time.Now()
	if d := c.enqueue(m, h.opts.QueueMaxMessages, h.opts.QueueMaxBytes); d > 0 {
		h.drops.Add(uint64(d))
	}
	h.delivered.Add(1)
}

// Remove unsubscribes the client from everything, drops its queue and forgets
// it; its polls end with PollClosed. Removing a removed client does nothing.
func (h *Hub) Remove(c *Client) {
	h.mu.Lock()
	if h.clients[c.id] == c {
		delete(h.clients, c.id)
	}
	h.mu.Unlock()
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.gone = true
	subs := c.subs
	c.subs = map[string][]string{}
	c.queue, c.qbytes = nil, 0
	close(c.done)
	c.mu.Unlock()
	for _, segs := range subs {
		h.subs.remove(segs, c)
	}
	h.emit(Event{Type: "client_disconnect", ClientID: c.id, Kind: c.kind})
}

// Subscribe adds a subscription of c to pattern (a channel name, or one ending
// in /* or /**). It reports whether the subscription is new.
func (h *Hub) Subscribe(c *Client, pattern string) (bool, error) {
	segs, err := ParseChannel(pattern, true)
	if err != nil {
		return false, err
	}
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return false, ErrUnknownClient
	}
	if _, ok := c.subs[pattern]; ok {
		c.mu.Unlock()
		return false, nil
	}
	c.subs[pattern] = segs
	c.mu.Unlock()
	if h.beforeTreeAdd != nil {
		h.beforeTreeAdd(c)
	}
	h.subs.add(segs, c)
	c.mu.Lock()
	gone := c.gone
	c.mu.Unlock()
	if gone {
		// Removed meanwhile: Remove may have run before the add above.
		h.subs.remove(segs, c)
		return false, ErrUnknownClient
	}
	if !IsWild(pattern) {
		h.touchChannel(pattern, segs)
	}
	h.emit(Event{Type: "subscribe", ClientID: c.id, Kind: c.kind, Channel: pattern})
	return true, nil
}

// Unsubscribe removes a subscription; it reports whether there was one.
func (h *Hub) Unsubscribe(c *Client, pattern string) bool {
	c.mu.Lock()
	segs, ok := c.subs[pattern]
	delete(c.subs, pattern)
	c.mu.Unlock()
	if !ok {
		return false
	}
	h.subs.remove(segs, c)
	h.emit(Event{Type: "unsubscribe", ClientID: c.id, Kind: c.kind, Channel: pattern})
	return true
}

// SetSubscriptions makes c subscribed to exactly these channel names.
func (h *Hub) SetSubscriptions(c *Client, names []string) error {
	if c.subscribedExactly(names) {
		return nil // the usual case: a client polling the same channels again
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	for _, p := range c.Subscriptions() {
		if !want[p] {
			h.Unsubscribe(c, p)
		}
	}
	for _, n := range names {
		if _, err := h.Subscribe(c, n); err != nil {
			return err
		}
	}
	return nil
}

// touchChannel returns the channel, creating it, and marks it used now. The
// mark is made under the hub's read lock, which the sweeper's write lock
// excludes, so a channel being used is never swept from under its user.
func (h *Hub) touchChannel(name string, segs []string) *channel {
	now := time.Now()
	h.mu.RLock()
	ch := h.channels[name]
	if ch != nil {
		ch.mu.Lock()
		ch.lastUsed = now
		ch.mu.Unlock()
	}
	h.mu.RUnlock()
	if ch != nil {
		return ch
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch = h.channels[name]; ch == nil {
		ch = &channel{name: name, segs: segs}
		h.channels[name] = ch
	}
	ch.mu.Lock()
	ch.lastUsed = now
	ch.mu.Unlock()
	return ch
}

// Publish stamps m with its sequence number and time, keeps it in the
// channel's history and queues it for every client whose subscription matches.
// It returns the number of clients it was queued for. m.Channel must be a valid
// channel name (no wildcard). Publishes to one channel are seen in the same
// order by every subscriber.
func (h *Hub) Publish(m *Message) (int, error) {
	if h.Closed() {
		return 0, ErrClosed
	}
	segs, err := ParseChannel(m.Channel, false)
	if err != nil {
		return 0, err
	}
	ch := h.touchChannel(m.Channel, segs)
	type drop struct {
		c    *Client
		lost int
	}
	var drops []drop
	ch.mu.Lock()
	m.Seq = h.seq.Add(1)
	m.Time = time.Now()
	if h.opts.HistorySize > 0 {
		if len(ch.history) >= h.opts.HistorySize {
			copy(ch.history, ch.history[1:])
			ch.history[len(ch.history)-1] = m
		} else {
			ch.history = append(ch.history, m)
		}
	}
	// The recipients list is the channel's own buffer, reused from publish
	// to publish under its lock: a large audience costs no garbage per
	// message.
	targets := h.subs.match(segs, ch.targets[:0])
	for _, c := range targets {
		if d := c.enqueue(m, h.opts.QueueMaxMessages, h.opts.QueueMaxBytes); d > 0 {
			drops = append(drops, drop{c, d})
		}
	}
	n := len(targets)
	clear(targets) // hold no client beyond this publish
	if cap(targets) <= maxKeptTargets {
		ch.targets = targets[:0]
	}
	ch.mu.Unlock()
	h.published.Add(1)
	h.delivered.Add(uint64(n))
	for _, d := range drops {
		h.drops.Add(uint64(d.lost))
		h.log.WithFields(logrus.Fields{"client": d.c.id, "lost": d.lost}).Warn("client queue full: oldest messages dropped")
		h.emit(Event{Type: "queue_drop", ClientID: d.c.id, Kind: d.c.kind, Count: d.lost})
	}
	h.emit(Event{Type: "publish", ClientID: m.ClientID, Channel: m.Channel, Message: m})
	return n, nil
}

// maxKeptTargets bounds the recipients buffer a channel keeps between
// publishes (8 bytes an entry).
const maxKeptTargets = 1 << 16

// History returns the channel's kept messages published after seq (0: all),
// oldest first. Reading does not create the channel.
func (h *Hub) History(name string, afterSeq uint64) []*Message {
	h.mu.RLock()
	ch := h.channels[name]
	h.mu.RUnlock()
	if ch == nil {
		return nil
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	i := sort.Search(len(ch.history), func(i int) bool { return ch.history[i].Seq > afterSeq })
	return append([]*Message(nil), ch.history[i:]...)
}

// Channels returns the sorted names of channels in use (with history or
// subscribers) under prefix ("" for all).
func (h *Hub) Channels(prefix string) []string {
	h.mu.RLock()
	out := make([]string, 0, len(h.channels))
	for name := range h.channels {
		if prefix == "" || strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	h.mu.RUnlock()
	sort.Strings(out)
	return out
}

// Subscribers returns the ids of clients that would receive a message
// published on the channel now, sorted.
func (h *Hub) Subscribers(name string) []string {
	segs, err := ParseChannel(name, false)
	if err != nil {
		return nil
	}
	cs := h.subs.match(segs, nil)
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.id
	}
	sort.Strings(ids)
	return ids
}

// HistorySize returns the configured history capacity per channel.
func (h *Hub) HistorySize() int { return h.opts.HistorySize }

// Stats is a snapshot of the hub's counters for the info page and metrics.
type Stats struct {
	Clients       int
	ClientsByKind map[string]int
	Polling       int
	Channels      int
	Subscriptions int
	Published     uint64 // messages published
	Delivered     uint64 // queue insertions (one per subscriber per message)
	Dropped       uint64 // messages dropped from full queues
}

// Stats returns current counts. It takes each client's lock briefly.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	s := Stats{Clients: len(h.clients), Channels: len(h.channels), ClientsByKind: map[string]int{}}
	clients := make([]*Client, 0, len(h.clients))
	for _, c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.RUnlock()
	for _, c := range clients {
		s.ClientsByKind[c.kind]++
		if c.Polling() {
			s.Polling++
		}
	}
	h.subs.mu.RLock()
	s.Subscriptions = h.subs.n
	h.subs.mu.RUnlock()
	s.Published, s.Delivered, s.Dropped = h.published.Load(), h.delivered.Load(), h.drops.Load()
	return s
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

// sweep removes clients idle past their timeout and channels with no
// subscriber that have not been used for ChannelTimeout.
func (h *Hub) sweep(now time.Time) {
	h.mu.RLock()
	var idle []*Client
	for _, c := range h.clients {
		if c.expired(now) {
			idle = append(idle, c)
		}
	}
	h.mu.RUnlock()
	for _, c := range idle {
		h.log.WithFields(logrus.Fields{"client": c.id, "kind": c.kind}).Debug("client expired")
		h.Remove(c)
	}

	h.mu.Lock()
	for name, ch := range h.channels {
		ch.mu.Lock()
		stale := now.Sub(ch.lastUsed) > h.opts.ChannelTimeout
		ch.mu.Unlock()
		if stale && len(h.subs.exact(ch.segs)) == 0 {
			delete(h.channels, name)
		}
	}
	h.mu.Unlock()
}
