package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Client kinds: how a client reaches the server. One word per kind, used in
// logs, metrics and events.
const (
	KindStardust = "stardust" // long-polls /channel/A+B/stream/ID
	KindSSE      = "sse"      // holds /channel/A+B/events
	KindBayeux   = "bayeux"   // a Bayeux session (any transport)
	KindLocal    = "local"    // an in-process Go client
)

// PollEnd says why Poll returned.
type PollEnd int

// The reasons a poll ends.
const (
	PollReady    PollEnd = iota // messages were queued (or a drop notice is due)
	PollTimeout                 // the hold time passed with nothing queued
	PollReplaced                // a newer poll by the same client took over
	PollClosed                  // the request, the client or the server ended
	PollExpired                 // the client expired or was lost: it must start again
	PollFailed                  // the engine could not be reached: retry later
)

// Client is this process's handle on one session that the engine keeps: a
// snapshot of the session (id, kind, address, attributes) and the calls that
// act on it. Handles are cheap and short-lived: a request looks its client up,
// uses it and lets it go. Safe for concurrent use.
type Client struct {
	hub   *Hub
	mu    sync.Mutex
	s     Session
	added bool // known to the engine (false between NewClient and Add)
}

// ID returns the client's id.
func (c *Client) ID() string { return c.s.ID }

// Kind returns one of the Kind constants.
func (c *Client) Kind() string { return c.s.Kind }

// Remote returns the client's address as first seen (after trusted proxies).
func (c *Client) Remote() string { return c.s.Remote }

// Attr returns one of the session's string attributes ("" if unset), as
// the handle last saw it.
func (c *Client) Attr(key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.Attrs[key]
}

// SetAttr sets a session attribute ("" deletes it), in the engine when the
// client has been added, so that every process sees it.
func (c *Client) SetAttr(key, value string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.added {
		if err := c.hub.engine.SetAttr(context.Background(), c.s.ID, key, value); err != nil {
			return c.hub.failed(err)
		}
	}
	c.s.Attrs = withAttr(c.s.Attrs, key, value)
	return nil
}

// Subscriptions returns the patterns the client is subscribed to, sorted.
func (c *Client) Subscriptions() ([]string, error) {
	subs, err := c.hub.engine.Subscriptions(context.Background(), c.s.ID)
	return subs, c.hub.failed(err)
}

// Exists reports whether the engine still has the client.
func (c *Client) Exists() (bool, error) {
	_, err := c.hub.engine.Session(context.Background(), c.s.ID)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrUnknownClient):
		return false, nil
	}
	return false, c.hub.failed(err)
}

// Commit forgets the messages of a batch from Poll once they have reached the
// client (see Engine.Commit); until then they are returned again by the next
// poll, wherever it is served. An error is logged: the messages then come
// again.
func (c *Client) Commit(cursor uint64) {
	if err := c.hub.engine.Commit(context.Background(), c.s.ID, cursor); err != nil {
		c.hub.failed(err)
		c.hub.log.WithError(err).Debug("commit failed: the batch will be sent again")
	}
}

// waiter is one poll held by this process.
type waiter struct {
	ready chan struct{} // capacity 1: a wake-up is never lost or blocking
	once  sync.Once
	ended chan struct{} // closed when the poll must end, with why set
	why   PollEnd
	// watching is set once the engine watches for this poll: from then on
	// a message, or a poll of the same client anywhere, wakes it.
	watching atomic.Bool
}

func newWaiter() *waiter {
	return &waiter{ready: make(chan struct{}, 1), ended: make(chan struct{})}
}

func (w *waiter) end(why PollEnd) {
	w.once.Do(func() {
		w.why = why
		close(w.ended)
	})
}

// notify is the waiter's Engine.Watch callback: it never blocks.
func (w *waiter) notify(why Wake) {
	switch why {
	case WakeMessages:
		select {
		case w.ready <- struct{}{}:
		default:
		}
	case WakeRemoved:
		w.end(PollClosed)
	case WakeExpired:
		w.end(PollExpired)
	case WakeReplaced:
		w.end(PollReplaced)
	}
}

// Poll waits up to hold for messages and returns them as a batch to Commit
// once written. It returns at once when messages are already queued. A newer
// Poll of the same client, here or in another process, releases this one
// (PollReplaced) without messages, so that a dropped connection's request
// cannot take what its successor should get. It waits on exactly: messages
// ready, its own timer, ctx, the client's removal and the hub's close.
func (c *Client) Poll(ctx context.Context, hold time.Duration) (Batch, PollEnd) {
	h, id := c.hub, c.s.ID
	w := newWaiter()
	h.mu.Lock()
	if old := h.polls[id]; old != nil {
		old.end(PollReplaced)
	}
	h.polls[id] = w
	last, polledBefore := h.recent[id]
	h.mu.Unlock()
	batch := h.opts.BatchDelay > 0 && polledBefore && time.Since(last) < busyWindow
	defer func() {
		h.mu.Lock()
		if h.polls[id] == w {
			delete(h.polls, id)
		}
		h.recent[id] = time.Now() // touched at the next sweep
		h.mu.Unlock()
	}()
	// Release polls of this client held elsewhere, then watch, then look:
	// a message queued in between still wakes us.
	if err := h.engine.NotifyPoll(ctx, id); err != nil {
		h.failed(err)
	}
	stop := h.engine.Watch(id, w.notify)
	defer stop()
	w.watching.Store(true)

	var timer *time.Timer
	for {
		b, err := h.engine.Fetch(ctx, id, h.opts.FetchMax)
		switch {
		case errors.Is(err, ErrUnknownClient):
			return Batch{}, PollExpired
		case err != nil:
			h.failed(err)
			return Batch{}, PollFailed
		}
		select {
		case <-w.ended:
			return Batch{}, w.why // replaced while fetching: the successor takes them
		default:
		}
		if len(b.Messages) > 0 || b.Dropped > 0 {
			if b.Dropped > 0 {
				h.drops.Add(uint64(b.Dropped))
				h.emit(Event{Type: "queue_drop", ClientID: id, Kind: c.s.Kind, Count: b.Dropped})
			}
			return b, PollReady
		}
		if timer == nil {
			timer = time.NewTimer(hold)
			defer timer.Stop()
		}
		select {
		case <-w.ready:
			if batch && !w.gather(ctx, h, h.opts.BatchDelay) {
				return Batch{}, w.why
			}
		case <-w.ended:
			return Batch{}, w.why
		case <-timer.C:
			return Batch{}, PollTimeout
		case <-ctx.Done():
			return Batch{}, PollClosed
		case <-h.done:
			return Batch{}, PollClosed
		}
	}
}

// gather waits up to d for more messages to arrive after the first woke
// the poll; false when the poll must end instead (w.why says why, or the
// request or the hub ended: PollClosed).
func (w *waiter) gather(ctx context.Context, h *Hub, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.ended:
		return false
	case <-ctx.Done():
	case <-h.done:
	}
	w.end(PollClosed)
	return false
}

// Polling reports whether this process holds a poll of the client that
// the engine watches.
func (c *Client) Polling() bool {
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	w := c.hub.polls[c.s.ID]
	return w != nil && w.watching.Load()
}

// Push is Poll for a transport that writes a client's messages as they
// come (the WebSocket transport) rather than holding a request: it takes no
// goroutine. Like Poll it first releases the polls of c held here or in
// another process, then counts as c's poll (Polling, kept from expiry)
// until stop. notify is the Engine.Watch callback: WakeMessages when
// messages may be queued (read them with Take), WakeReplaced when a newer
// poll of c started anywhere, WakeRemoved, WakeExpired. It must not block.
func (c *Client) Push(notify func(Wake)) (stop func()) {
	h, id := c.hub, c.s.ID
	w := newWaiter() // its place among the held polls; a newer one ends the push through the engine
	w.watching.Store(true)
	h.mu.Lock()
	if old := h.polls[id]; old != nil {
		old.end(PollReplaced)
	}
	h.polls[id] = w
	h.mu.Unlock()
	if err := h.engine.NotifyPoll(context.Background(), id); err != nil {
		h.failed(err)
	}
	unwatch := h.engine.Watch(id, notify)
	return sync.OnceFunc(func() {
		unwatch()
		h.mu.Lock()
		if h.polls[id] == w {
			delete(h.polls, id)
		}
		h.recent[id] = time.Now() // touched at the next sweep
		h.mu.Unlock()
	})
}

// Take returns what is queued for a pushed client now (see Push), as a
// batch to Commit once written: PollReady with messages or a drop notice,
// PollTimeout when nothing is queued, PollExpired or PollFailed.
func (c *Client) Take(ctx context.Context) (Batch, PollEnd) {
	h := c.hub
	b, err := h.engine.Fetch(ctx, c.s.ID, h.opts.FetchMax)
	switch {
	case errors.Is(err, ErrUnknownClient):
		return Batch{}, PollExpired
	case err != nil:
		h.failed(err)
		return Batch{}, PollFailed
	case len(b.Messages) == 0 && b.Dropped == 0:
		return b, PollTimeout
	}
	if b.Dropped > 0 {
		h.drops.Add(uint64(b.Dropped))
		h.emit(Event{Type: "queue_drop", ClientID: c.s.ID, Kind: c.s.Kind, Count: b.Dropped})
	}
	return b, PollReady
}
