package server

import (
	"context"
	"errors"
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
	PollTimeout                 // the poll timeout passed with nothing queued
	PollReplaced                // a newer poll by the same client took over
	PollClosed                  // the client was removed, or the server is closing
	PollExpired                 // the client expired or was lost: it must start again
	PollFailed                  // the engine could not be reached: retry later
	// PollGone: the request went away (its context ended, its connection
	// was closed or reset). Whatever is answered is likely not read, so
	// nothing is asked of the engine for it (such as whether the server API
	// disconnected the client: see Hub.wasKicked).
	PollGone
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

// channelAddr is the address the channels c adds are counted against: none
// for in-process clients, which the program itself runs.
func (c *Client) channelAddr() string {
	if c.s.Kind == KindLocal {
		return ""
	}
	return c.s.Remote
}

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
		ctx, cancel := c.hub.call(context.Background())
		defer cancel()
		if err := c.hub.engine.SetAttr(ctx, c.s.ID, key, value); err != nil {
			return c.hub.failed(err)
		}
	}
	c.s.Attrs = withAttr(c.s.Attrs, key, value)
	return nil
}

// Subscriptions returns the patterns the client is subscribed to, sorted.
func (c *Client) Subscriptions() ([]string, error) {
	ctx, cancel := c.hub.call(context.Background())
	defer cancel()
	subs, err := c.hub.engine.Subscriptions(ctx, c.s.ID)
	return subs, c.hub.failed(err)
}

// Exists reports whether the engine still has the client.
func (c *Client) Exists() (bool, error) {
	ctx, cancel := c.hub.call(context.Background())
	defer cancel()
	_, err := c.hub.engine.Session(ctx, c.s.ID)
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
	ctx, cancel := c.hub.call(context.Background())
	defer cancel()
	if err := c.hub.engine.Commit(ctx, c.s.ID, cursor); err != nil {
		c.hub.failed(err)
		c.hub.log.WithError(err).Debug("commit failed: the batch will be sent again")
	}
}

// Poll waits up to timeout for messages and returns them as a batch to Commit
// once written. It returns at once when messages are already queued. A newer
// Poll of the same client, here or in another process, releases this one
// (PollReplaced) without messages, so that a dropped connection's request
// cannot take what its successor should get. It waits on exactly: messages
// ready, its own timer, ctx (PollGone), the client's removal and the hub's
// close (PollClosed).
func (c *Client) Poll(ctx context.Context, timeout time.Duration) (Batch, PollEnd) {
	p := c.beginPoll(ctx, timeout)
	defer p.finish()
	return p.run(ctx)
}

// pollState is one Poll of a client in progress, from beginPoll to finish. Its
// loop (run) is the same whether it waits in a select (Poll) or by reading
// its connection taken over (longpoll.go): only the waiting step differs.
type pollState struct {
	c        *Client
	w        *waiter
	deadline time.Time // the end of the poll timeout
	// waiting: the poll has waited (gathered) or reached the engine; from then
	// on an engine failure no longer ends it (see fetch), and it is counted
	// as waiting (Stats.Polling).
	waiting bool
	// notBefore: a client answered less than BatchDelay ago is answered
	// again no sooner than this, with what came meanwhile (zero: at once).
	notBefore time.Time
	stop      func()     // ends the engine's Watch
	conn      pollWaiter // waits by its own means (a connection taken over); nil: in a select
}

// pollWaiter is a poll's wait by other means than a select on the
// waiter's channel: longpoll.go's, on a connection taken over. It waits as
// pollState.wait does, and is cut short through the waiter (waitCutter).
type pollWaiter interface {
	wait(p *pollState, until time.Time, messages bool) PollEnd
}

// waitCutter ends a pollWaiter's wait in progress at once; it never
// blocks and may be called from any goroutine.
type waitCutter interface{ cutWait() }

// beginPoll registers the poll, releasing the client's older one here or
// elsewhere, and has the engine watch for it.
func (c *Client) beginPoll(ctx context.Context, timeout time.Duration) *pollState {
	h := c.hub
	w := &waiter{}
	last, polledBefore := c.enter(ctx, w)
	p := &pollState{c: c, w: w, deadline: time.Now().Add(timeout)}
	p.notBefore = h.gatherUntil(last, polledBefore)
	// Polls of this client waiting elsewhere were released; now watch, then
	// look: a message queued in between still wakes us.
	p.stop = h.engine.Watch(c.s.ID, w.notify)
	w.watching.Store(true)
	return p
}

// enter makes w the client's poll in this process, ending the older one
// here, and releases those waiting in other processes (PollNotifier). It
// reports when the client's previous poll here ended.
func (c *Client) enter(ctx context.Context, w *waiter) (last time.Time, polledBefore bool) {
	h, id := c.hub, c.s.ID
	h.mu.Lock()
	if old := h.polls[id]; old != nil {
		old.end(PollReplaced)
	}
	h.polls[id] = w
	last, polledBefore = h.recent[id]
	h.mu.Unlock()
	if pn, ok := h.engine.(PollNotifier); ok {
		ctx, cancel := h.call(ctx)
		defer cancel()
		if err := pn.NotifyPoll(ctx, id); err != nil {
			h.failed(err)
		}
	}
	return last, polledBefore
}

// leave unregisters w, if it is still the client's poll here, and notes
// when the client last polled (touched at the next sweep).
func (c *Client) leave(w *waiter) {
	h, id := c.hub, c.s.ID
	h.mu.Lock()
	if h.polls[id] == w {
		delete(h.polls, id)
	}
	h.recent[id] = time.Now()
	h.mu.Unlock()
}

// markWaiting marks the poll waiting (see pollState.waiting).
func (p *pollState) markWaiting() {
	if !p.waiting {
		p.waiting = true
		p.c.hub.waiting.Add(1)
	}
}

// finish ends the engine's Watch and unregisters the poll.
func (p *pollState) finish() {
	if p.waiting {
		p.c.hub.waiting.Add(-1)
	}
	p.stop()
	p.c.leave(p.w)
}

// fetch takes what is queued: done when the poll must answer now (with
// messages, a drop notice, or because it ended).
//
// Only a poll's first look, before it has waited, ends it when the engine
// cannot be reached: a poll already waiting (woken, or done gathering) that
// finds the engine down (Redis restarting) is not done (PollFailed): it goes on waiting, looking again every
// engineRetry until its timeout, and once the engine is back, it
// learns whether the client is gone.
func (p *pollState) fetch(ctx context.Context) (Batch, PollEnd, bool) {
	b, why := p.c.take(ctx)
	switch {
	case why == PollFailed && p.waiting:
		return Batch{}, PollFailed, false
	case why == PollExpired:
		// Removed (a disconnect) or replaced since the watch began: the
		// watch's reason, not a client lost.
		if ended, gone := p.w.look(false); gone {
			return Batch{}, ended, true
		}
		return Batch{}, why, true
	case why == PollFailed:
		return Batch{}, why, true
	}
	p.markWaiting()
	if ended, gone := p.w.look(false); gone {
		return Batch{}, ended, true // replaced while fetching: the successor takes them
	}
	if why == PollReady {
		p.c.countDrops(b)
		return b, PollReady, true
	}
	return Batch{}, 0, false
}

// run fetches, and while nothing is queued waits for a wake-up, the end of
// its timeout or the poll's end. A client answered less than BatchDelay ago
// (one receiving steadily) first waits for the rest of that time, so that
// its answers come at most once per BatchDelay, each with everything that
// came meanwhile: under load one HTTP exchange carries several messages,
// and no message waits longer than BatchDelay for it.
func (p *pollState) run(ctx context.Context) (Batch, PollEnd) {
	if p.gathering() {
		if why := p.wait(ctx, p.notBefore, false); why != PollTimeout {
			return Batch{}, why
		}
		p.markWaiting()
	}
	for {
		b, why, done := p.fetch(ctx)
		if done {
			return b, why
		}
		until := p.deadline
		if soon := time.Now().Add(engineRetry); why == PollFailed && soon.Before(until) {
			until = soon // the engine is down: look again soon, wake-up or not
		}
		why = p.wait(ctx, until, true)
		if why != pollWoken && (why != PollTimeout || !until.Before(p.deadline)) {
			return Batch{}, why
		}
	}
}

// engineRetry is how soon a waiting poll that found the engine down looks
// again.
const engineRetry = 250 * time.Millisecond

// gathering reports whether the poll must wait before it answers (see run).
func (p *pollState) gathering() bool {
	return !p.notBefore.IsZero() && time.Now().Before(p.notBefore)
}

// wait waits until messages woke the poll (pollWoken, only when messages
// is true), until (PollTimeout), or the poll's end.
func (p *pollState) wait(ctx context.Context, until time.Time, messages bool) PollEnd {
	if p.conn != nil {
		return p.conn.wait(p, until, messages)
	}
	w, h := p.w, p.c.hub
	w.mu.Lock()
	if w.sig == nil {
		w.sig = make(chan struct{}, 1)
	}
	w.mu.Unlock()
	var timer *time.Timer
	for {
		if why, now := w.look(messages); now {
			return why
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(until))
			defer timer.Stop()
		}
		select {
		case <-w.sig:
		case <-timer.C:
			return PollTimeout
		case <-ctx.Done():
			w.end(PollGone)
		case <-h.done:
			w.end(PollClosed)
		}
	}
}

// Polling reports whether a poll of the client waits in this process that
// the engine watches.
func (c *Client) Polling() bool {
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	w := c.hub.polls[c.s.ID]
	return w != nil && w.watching.Load()
}

// Push is Poll for a transport that writes a client's messages as they
// come (the WebSocket transport) rather than answering a long poll: it takes no
// goroutine. Like Poll it first releases the polls of c waiting here or in
// another process, then counts as c's poll (Polling, kept from expiry)
// until stop. notify is the Engine.Watch callback: WakeMessages when
// messages may be queued (read them with Take), WakeReplaced when a newer
// poll of c started anywhere, WakeRemoved, WakeExpired. It must not block.
func (c *Client) Push(notify func(Wake)) (stop func()) {
	w := &waiter{} // its place among the waiting polls; a newer one ends the push through the engine
	w.watching.Store(true)
	c.enter(context.Background(), w)
	unwatch := c.hub.engine.Watch(c.s.ID, notify)
	c.hub.waiting.Add(1)
	return sync.OnceFunc(func() {
		c.hub.waiting.Add(-1)
		unwatch()
		c.leave(w)
	})
}

// Take returns what is queued for a pushed client now (see Push), as a
// batch to Commit once written: PollReady with messages or a drop notice,
// PollTimeout when nothing is queued, PollExpired or PollFailed.
func (c *Client) Take(ctx context.Context) (Batch, PollEnd) {
	b, why := c.take(ctx)
	if why == PollReady {
		c.countDrops(b)
	}
	return b, why
}

// take fetches what is queued, as Take, without counting drops.
func (c *Client) take(ctx context.Context) (Batch, PollEnd) {
	h := c.hub
	ctx, cancel := h.call(ctx)
	defer cancel()
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
	return b, PollReady
}

// countDrops counts and reports a batch's drop notice, once it is answered.
func (c *Client) countDrops(b Batch) {
	if b.Dropped > 0 {
		c.hub.drops.Add(uint64(b.Dropped))
		c.hub.emit(Event{Type: "queue_drop", ClientID: c.s.ID, Kind: c.s.Kind, Count: b.Dropped})
	}
}
