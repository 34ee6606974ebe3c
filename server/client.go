package server

import (
	"context"
	"sync"
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
)

// Client is one subscriber session with a bounded queue of messages waiting
// for it. The hub's publishers enqueue under the client's own small lock and
// wake the one poll waiting, if any; the poll drains the queue and writes to
// the network holding no lock. All methods are safe for concurrent use.
type Client struct {
	hub     *Hub
	id      string
	kind    string
	timeout time.Duration // removed when idle this long; 0 never
	// Remote is the client's address as first seen (after trusted proxies).
	Remote string
	// Values holds protocol state (such as Bayeux authentication flags) for
	// hooks; it is never read by the core.
	Values sync.Map

	mu       sync.Mutex
	queue    []*Message
	qbytes   int
	dropped  int
	subs     map[string][]string // pattern -> its segments
	wait     *waiter
	polls    int
	lastSeen time.Time
	gone     bool
	done     chan struct{}
}

// waiter is one poll waiting for messages.
type waiter struct {
	ready    chan struct{} // capacity 1: a wake-up is never lost or blocking
	replaced chan struct{} // closed when a newer poll takes over
}

// ID returns the client's id.
func (c *Client) ID() string { return c.id }

// Kind returns one of the Kind constants.
func (c *Client) Kind() string { return c.kind }

// Done is closed when the client has been removed from the hub.
func (c *Client) Done() <-chan struct{} { return c.done }

// Subscriptions returns the patterns the client is subscribed to.
func (c *Client) Subscriptions() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.subs))
	for p := range c.subs {
		out = append(out, p)
	}
	return out
}

// subscribedExactly reports whether the client's subscriptions are exactly
// names (which hold no duplicates).
func (c *Client) subscribedExactly(names []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.subs) != len(names) {
		return false
	}
	for _, n := range names {
		if _, ok := c.subs[n]; !ok {
			return false
		}
	}
	return true
}

// Touch marks the client as seen now, postponing its expiry.
func (c *Client) Touch() {
	c.mu.Lock()
	c.lastSeen = time.Now()
	c.mu.Unlock()
}

// enqueue adds m to the queue, dropping the oldest messages when a bound
// would be passed, and wakes the waiting poll. Called by Hub.Publish with the
// channel's lock held, so that every client sees a channel's messages in order.
func (c *Client) enqueue(m *Message, maxMsgs, maxBytes int) (dropped int) {
	size := m.size()
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return 0
	}
	for len(c.queue) > 0 && (len(c.queue)+1 > maxMsgs || c.qbytes+size > maxBytes) {
		c.qbytes -= c.queue[0].size()
		c.queue[0] = nil
		c.queue = c.queue[1:]
		dropped++
	}
	c.queue = append(c.queue, m)
	c.qbytes += size
	c.dropped += dropped
	if c.wait != nil {
		select {
		case c.wait.ready <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
	return dropped
}

// Drain takes every queued message, oldest first, and the number of messages
// dropped from the queue since the last drain.
func (c *Client) Drain() (msgs []*Message, dropped int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drainLocked()
}

func (c *Client) drainLocked() ([]*Message, int) {
	msgs, dropped := c.queue, c.dropped
	c.queue, c.qbytes, c.dropped = nil, 0, 0
	return msgs, dropped
}

// Poll waits up to hold for messages and takes them. It returns at once when
// messages are already queued. A newer Poll of the same client releases this
// one (PollReplaced) without taking messages, so that a dropped connection's
// request cannot swallow what its successor should get. It waits on exactly:
// messages ready, its own timer, ctx, the client's removal and the hub's close.
func (c *Client) Poll(ctx context.Context, hold time.Duration) ([]*Message, int, PollEnd) {
	w := &waiter{ready: make(chan struct{}, 1), replaced: make(chan struct{})}
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return nil, 0, PollClosed
	}
	if c.wait != nil {
		close(c.wait.replaced)
	}
	c.wait = w
	c.polls++
	if len(c.queue) > 0 || c.dropped > 0 {
		msgs, dropped := c.drainLocked()
		c.endPollLocked(w)
		c.mu.Unlock()
		return msgs, dropped, PollReady
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.endPollLocked(w)
		c.mu.Unlock()
	}()

	timer := time.NewTimer(hold)
	defer timer.Stop()
	for {
		select {
		case <-w.ready:
			c.mu.Lock()
			if c.wait != w {
				c.mu.Unlock()
				return nil, 0, PollReplaced
			}
			msgs, dropped := c.drainLocked()
			c.mu.Unlock()
			if len(msgs) > 0 || dropped > 0 {
				return msgs, dropped, PollReady
			}
		case <-w.replaced:
			return nil, 0, PollReplaced
		case <-timer.C:
			return nil, 0, PollTimeout
		case <-ctx.Done():
			return nil, 0, PollClosed
		case <-c.done:
			return nil, 0, PollClosed
		case <-c.hub.done:
			return nil, 0, PollClosed
		}
	}
}

func (c *Client) endPollLocked(w *waiter) {
	if c.wait == w {
		c.wait = nil
	}
	c.polls--
	c.lastSeen = time.Now()
}

// Polling reports whether a poll of this client is in progress.
func (c *Client) Polling() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.polls > 0
}

// expired reports whether the client has been idle (no poll in progress) for
// longer than its timeout.
func (c *Client) expired(now time.Time) bool {
	if c.timeout <= 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.polls == 0 && now.Sub(c.lastSeen) > c.timeout
}
