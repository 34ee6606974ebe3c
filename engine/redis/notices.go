package redis

import (
	"context"
	"time"
)

// A poll's "r" notice releases the polls of its session held in other
// processes. Two polls of one session that begin in two processes at
// nearly the same time (a client that moved on while its request was
// still held) each notice the other; only the newer may release the
// older. Every notice goes to the site's slot (the master the pub/sub
// connection listens on), so every process hears them all in one order:
// a notice heard before this process heard its own back was published
// before this process's poll began, and is ignored.

// echo counts one session's notices of this process not yet heard back.
type echo struct {
	n     int
	since time.Time
}

// echoWait bounds how long a notice not heard back (its pub/sub
// connection was lost meanwhile) keeps other processes' notices away.
const echoWait = 2 * time.Second

// notice publishes a ctl notice (kind, this node, id) on the site's slot.
func (e *Engine) notice(ctx context.Context, kind, id string) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	cmd := e.client.B().Publish().Channel(e.p + "ctl").Message(kind + " " + e.node + " " + id).Build().SetSlot(e.p + "ctl")
	return fail(e.client.Do(cctx, cmd).Error())
}

// expectEcho notes a notice about to be published.
func (e *Engine) expectEcho(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w := e.echoes[id]
	w.n++
	w.since = time.Now()
	e.echoes[id] = w
}

// heardEcho: one notice came back (or failed to go).
func (e *Engine) heardEcho(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	w, ok := e.echoes[id]
	if !ok {
		return
	}
	if w.n--; w.n <= 0 {
		delete(e.echoes, id)
		return
	}
	e.echoes[id] = w
}

// echoPending reports whether a notice of this process about the session
// is still on its way back (for at most echoWait).
func (e *Engine) echoPending(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	w, ok := e.echoes[id]
	if ok && time.Since(w.since) > echoWait {
		delete(e.echoes, id)
		return false
	}
	return ok
}

// forgetEchoes: the pub/sub connection was lost, and the notices on their
// way with it.
func (e *Engine) forgetEchoes() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.echoes)
}
