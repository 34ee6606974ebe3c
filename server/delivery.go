package server

import (
	"sync"
	"sync/atomic"
	"time"
)

// The delivery seam: the one path by which a wake reaches a client's
// writer, in this process (docs/development.md, "How a message reaches a
// held client: one path"). The engine's Watch calls a notify function, the
// waiter's (a poll: long-polling, callback-polling, Stardust polls, SSE,
// local Go clients) or a pusher's (delivery_push.go: WebSockets);
// the seam fetches (Client.take), has the transport write the batch
// (batchWriter) and commits it once written (Client.deliver). Pacing,
// the one decision to wait before a fetch so that one write carries
// several messages, is made here too (Hub.gatherUntil, Hub.gathering):
// coalescing belongs to this file, and nothing in the engine delays a
// message.
//
// Without BatchDelay (0, the default) nothing waits on a timer: a seam
// gathers only what comes while its previous write is in progress, as a
// socket's write queue does. A poll fetches everything that came since its
// client's previous answer (the round trip is the write in progress); a
// pusher counts the wakes that come while it writes, or while the fan-out
// pass has not reached it (its flush waits in the pushQueue), and serves
// them all with one fetch. An idle server answers at once; a saturated one
// batches by itself.

// batchWriter is a transport's side of the delivery seam: it writes a
// batch the seam fetched, ended by why (PollReady: the batch has messages
// or a drop notice), to its client within the transport's deadline, and
// reports whether the batch reached the client (or is ready to leave, as
// net/http's buffered Write): only then is it committed, and only when why
// is PollReady. A function rather than an interface: a closure that does
// not escape costs no allocation per answer.
type batchWriter func(b Batch, why PollEnd) bool

// deliver has write write b and commits it once written: the one place
// where every transport's batch is written and committed. It reports
// whether it committed.
func (c *Client) deliver(b Batch, why PollEnd, write batchWriter) bool {
	if !write(b, why) || why != PollReady {
		return false
	}
	c.Commit(b.Cursor)
	return true
}

// gatherUntil is when a poll of a client whose previous poll here ended at
// last may answer (zero: at once). A client answered less than BatchDelay
// ago (one receiving steadily) is answered no sooner than BatchDelay after
// that, with everything that came meanwhile.
func (h *Hub) gatherUntil(last time.Time, polledBefore bool) time.Time {
	if d := h.opts.BatchDelay; d > 0 && polledBefore && time.Since(last) < d {
		return last.Add(d)
	}
	return time.Time{}
}

// gathering reports whether a pushed client last written to at lastWrite
// (UnixNano) gathers what comes next for the batch timer (BatchDelay)
// rather than being written to at once: it was written to within
// busyWindow.
func (h *Hub) gathering(lastWrite int64) bool {
	return h.opts.BatchDelay > 0 && time.Now().UnixNano()-lastWrite < int64(busyWindow)
}

// busyWindow: a pushed client written to this recently is receiving
// steadily, and what comes next for it is gathered for BatchDelay.
const busyWindow = 100 * time.Millisecond

// waiter is one poll held by this process: what woke it, and how to
// interrupt the wait in progress. It has no channel of its own when the
// poll waits by other means (a connection taken over: longpoll.go), which cut
// tells to stop waiting. Its notify is the wake that reaches the poll's
// writer.
type waiter struct {
	mu        sync.Mutex
	why       PollEnd
	ended     bool
	ready     bool          // messages were queued since the poll last looked
	listening bool          // the wait in progress ends on messages (not while gathering)
	sig       chan struct{} // the blocking wait's: capacity 1, a wake-up is never lost or blocking
	cut       waitCutter    // the other wait's, if any: a wake-up cuts it short
	// watching is set once the engine watches for this poll: from then on
	// a message, or a poll of the same client anywhere, wakes it.
	watching atomic.Bool
}

// end ends the poll with why, unless it has ended already.
func (w *waiter) end(why PollEnd) {
	w.mu.Lock()
	if w.ended {
		w.mu.Unlock()
		return
	}
	w.ended, w.why = true, why
	w.interruptLocked()
	w.mu.Unlock()
}

// interruptLocked ends the wait in progress at once; it never blocks.
func (w *waiter) interruptLocked() {
	switch {
	case w.cut != nil:
		w.cut.cutWait()
	case w.sig != nil:
		select {
		case w.sig <- struct{}{}:
		default:
		}
	}
}

// notify is the waiter's Engine.Watch callback: it never blocks.
func (w *waiter) notify(why Wake) {
	switch why {
	case WakeMessages:
		w.mu.Lock()
		w.ready = true
		if w.listening {
			w.interruptLocked()
		}
		w.mu.Unlock()
	case WakeRemoved:
		w.end(PollClosed)
	case WakeExpired:
		w.end(PollExpired)
	case WakeReplaced:
		w.end(PollReplaced)
	}
}

// pollWoken is what a wait returns when messages woke it.
const pollWoken PollEnd = -1

// look tells whether a wait may start (pollWoken meaning it need not: the
// wake-up came already) and marks whether it ends on messages.
func (w *waiter) look(messages bool) (PollEnd, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return w.why, true
	}
	if messages && w.ready {
		w.ready = false
		return pollWoken, true
	}
	w.listening = messages
	return 0, false
}

// answerPass orders the work of a fan-out on one CPU: the answers of the
// polls that messages woke come before the next requests of the clients
// already answered (takeover.Pace, longpoll.go). Without it the next
// requests, which a client sends as soon as it has read its answer, are
// read, parsed and served in between the answers still to write, and
// every answer after them is that much later. The pass's work is the
// same; only its order changes: each client's next request, which has
// nothing to wait for before the next message, is served once the
// answers are out (BENCHMARKS.md section 20).
//
// The wait is before the next request is read, so it is not known yet
// what it is: any request on a connection taken over waits, a publish that
// a client (or a browser's connection pool) sends on such a connection too,
// for the rest of the pass at most. Its message could reach no held poll
// sooner: the pass's polls are all being answered, and their next connects
// wait too.
//
// open counts the polls woken (woken) whose answer has not left yet; a
// next request waits (next) while it is above 0, at most passWaitMax from
// the first such wait, so that nothing can hold the next requests longer
// (an answer whose write waits for its client counts as gone:
// takeover.Pace's Answered).
type answerPass struct {
	open atomic.Int64
	mu   sync.Mutex
	done chan struct{} // closed when open comes down to 0 (or at passWaitMax); nil when no request waits
}

// passWaitMax bounds a next request's wait for the answers of a pass: far
// more than a pass of thousands of answers takes (some 20 µs each).
const passWaitMax = 500 * time.Millisecond

// woken counts a poll woken for its answer.
func (a *answerPass) woken() { a.open.Add(1) }

// answered counts that answer as gone.
func (a *answerPass) answered() {
	if a.open.Add(-1) <= 0 {
		a.release()
	}
}

// release lets the next requests that wait go.
func (a *answerPass) release() {
	a.mu.Lock()
	if a.done != nil {
		close(a.done)
		a.done = nil
	}
	a.mu.Unlock()
}

// next waits until the answers of the pass in progress, if any, have
// left, or passWaitMax.
func (a *answerPass) next() {
	if a.open.Load() <= 0 {
		return
	}
	a.mu.Lock()
	if a.open.Load() <= 0 {
		a.mu.Unlock()
		return
	}
	if a.done == nil {
		done := make(chan struct{})
		a.done = done
		time.AfterFunc(passWaitMax, func() {
			a.mu.Lock()
			if a.done == done {
				close(done)
				a.done = nil
			}
			a.mu.Unlock()
		})
	}
	done := a.done
	a.mu.Unlock()
	<-done
}
