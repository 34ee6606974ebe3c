package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Pushed deliveries: the delivery seam (delivery.go) for a transport that
// writes a client's messages as they come rather than answering a request
// (WebSockets, and SSE streams served off net/http), without a goroutine
// per client. The client is
// watched through the engine (Client.Push); a wake-up queues a flush, which
// fetches what is queued, has the transport write it (pushWriter) and
// commits it (Client.deliver), and runs again while more came meanwhile:
// the wakes that come while a write is in progress are served by one fetch
// after it. Flushes are run in turn by a few dispatcher goroutines that
// live while there is work (pushQueue); their writes never block. A client
// whose transport cannot take its batch at once, or is busy writing
// something else, gets a goroutine of its own for the rest of its flush
// (bounded by the transport's write deadline): a slow or dead client holds
// up only its own deliveries, never another's.
//
// Pacing: a client written to within busyWindow is receiving steadily; its
// next flush waits for the queue's batch timer (at most the hub's
// BatchDelay, Hub.gathering), so that one write carries every message that
// came meanwhile. A client that was idle gets its message at once.

// pushWriter is a pushed transport's side of the seam (a WebSocket's,
// transport_websocket_push.go; an SSE stream's, sse_push.go).
type pushWriter interface {
	// lockWriter takes the transport's writer: waiting for it (block), or
	// only if it is free (reporting whether it took it).
	lockWriter(block bool) bool
	unlockWriter()
	// writeNow writes b's messages without blocking, under the writer,
	// and returns what the transport did not take (for writeRest). An
	// error ends the transport.
	writeNow(b Batch) (rest []byte, err error)
	// dropNotices reports whether the transport tells its client of the
	// messages dropped from its queue (an SSE stream's overflow event): a
	// batch of a drop notice alone is then written.
	dropNotices() bool
	// writeRest writes rest, blocking within the transport's deadline.
	writeRest(rest []byte) error
	// fail ends the transport after a failed write.
	fail()
	// pushEnded is called once, on a goroutine of its own, when the push
	// ends because its client was removed, expired, polls elsewhere or
	// cannot be read (why): what waits for the client is answered.
	pushEnded(p *pusher, why PollEnd)
	// pushContext bounds the engine calls made for the push.
	pushContext() context.Context
}

// pusher pushes one client's messages through one pushWriter.
type pusher struct {
	w     pushWriter
	c     *Client
	queue *pushQueue
	stop  func() // ends the watch (Client.Push)
	// wakes counts wake-ups not yet served: the one that makes it 1 starts
	// a flush, which runs until it has served them all.
	wakes atomic.Int32
	ended atomic.Bool
	last  atomic.Int64 // time of the last whole write (UnixNano), for pacing
}

// startPush starts pushing c's messages through w, its flushes run by the
// hub's queue. Messages queued before the watch began are flushed at once.
func (c *Client) startPush(w pushWriter) *pusher {
	p := &pusher{w: w, c: c, queue: &c.hub.pushes}
	p.stop = c.Push(p.notify)
	return p
}

// kick flushes what was queued before the watch began.
func (p *pusher) kick() {
	if p.wakes.Add(1) == 1 {
		p.queue.dispatch(p)
	}
}

// notify is the engine's wake-up (Engine.Watch): it never blocks.
func (p *pusher) notify(why Wake) {
	switch why {
	case WakeMessages:
		if p.wakes.Add(1) == 1 {
			p.schedule()
		}
	case WakeRemoved:
		p.end(PollClosed)
	case WakeExpired:
		p.end(PollExpired)
	case WakeReplaced:
		p.end(PollReplaced)
	}
}

// halt stops the push without an answer: the transport ended, or another
// client's push took its place.
func (p *pusher) halt() {
	p.ended.Store(true)
	p.stop()
}

// live reports whether the push goes on.
func (p *pusher) live() bool { return !p.ended.Load() }

// end stops the push once, and has the transport answer what waits.
func (p *pusher) end(why PollEnd) {
	if p.ended.CompareAndSwap(false, true) {
		go p.w.pushEnded(p, why)
	}
}

// schedule flushes now, or at the next batch tick if the client is
// receiving steadily.
func (p *pusher) schedule() {
	if p.c.hub.gathering(p.last.Load()) {
		p.queue.later(p, p.c.hub.opts.BatchDelay)
		return
	}
	p.queue.dispatch(p)
}

// run flushes until every wake-up counted so far is served. With
// mayBlock false (a dispatcher, which serves many clients in turn) it
// never blocks: what would is handed to a goroutine of the client's own.
func (p *pusher) run(mayBlock bool) {
	for {
		n := p.wakes.Load()
		if !p.flush(mayBlock, n) || !p.next(n) {
			return
		}
	}
}

// next counts n wake-ups as served; true when more came since that are to
// be flushed now rather than at the next batch tick.
func (p *pusher) next(n int32) bool {
	if p.wakes.Add(-n) == 0 {
		return false
	}
	if p.c.hub.gathering(p.last.Load()) {
		p.queue.later(p, p.c.hub.opts.BatchDelay) // more came while writing: gather them for a while
		return false
	}
	return true
}

// flush fetches what is queued, has it written and commits it, for the n
// wake-ups counted before. It returns false when the push or the transport
// has ended (wakes then stays above 0: no flush starts again) or when a
// goroutine of the client's own took over the rest of the run.
func (p *pusher) flush(mayBlock bool, n int32) bool {
	if !p.live() || p.c.hub.Closed() {
		return false // the hub's close answers the transport
	}
	if !p.w.lockWriter(mayBlock) {
		go p.run(true) // the transport is busy writing something else
		return false
	}
	batch, why := p.c.Take(p.w.pushContext())
	switch {
	case why == PollTimeout:
		p.w.unlockWriter()
		return true
	case why != PollReady:
		p.w.unlockWriter()
		p.end(why)
		return false
	case !p.live(): // replaced while fetching: the successor takes them
		p.w.unlockWriter()
		return false
	case len(batch.Messages) == 0 && !p.w.dropNotices(): // a drop notice only, which Bayeux has not in-band
		p.w.unlockWriter()
		return true
	}
	var rest []byte
	failed := false
	written := p.c.deliver(batch, why, func(batch Batch, _ PollEnd) bool {
		var err error
		rest, err = p.w.writeNow(batch)
		failed = !p.wrote(err, len(rest) == 0)
		return !failed && len(rest) == 0
	})
	switch {
	case written:
		p.w.unlockWriter()
		return true
	case failed:
		p.w.unlockWriter()
		return false
	case !mayBlock:
		go func() { // a full transport: it waits, no other does
			if p.finish(batch, rest) && p.next(n) {
				p.run(true)
			}
		}()
		return false
	}
	return p.finish(batch, rest)
}

// finish writes the rest of a batch, blocking within the transport's
// deadline, commits the batch once written, then lets go of the writer.
func (p *pusher) finish(batch Batch, rest []byte) bool {
	defer p.w.unlockWriter()
	return p.c.deliver(batch, PollReady, func(Batch, PollEnd) bool {
		return p.wrote(p.w.writeRest(rest), true)
	})
}

// wrote notes the end of a write: on failure the transport ends and it
// reports false; a batch written whole (all) is timed, for pacing.
func (p *pusher) wrote(err error, all bool) bool {
	if err != nil {
		p.w.fail()
		return false
	}
	if all {
		p.last.Store(time.Now().UnixNano())
	}
	return true
}

// pushQueue runs the flushes of a hub's pushers: now, on dispatchers, or
// at the next tick of the batch timer. The zero value is ready.
type pushQueue struct {
	readyMu sync.Mutex
	ready   []*pusher // flushes to run now
	running int       // dispatchers running them

	batchMu sync.Mutex
	due     []*pusher // flushes waiting for the batch timer
	timer   *time.Timer
}

// later queues p's flush for the next tick of the batch timer, which is
// armed for delay by the first flush waiting for it: every message waits
// at most the batch delay.
func (q *pushQueue) later(p *pusher, delay time.Duration) {
	q.batchMu.Lock()
	defer q.batchMu.Unlock()
	q.due = append(q.due, p)
	if len(q.due) > 1 {
		return
	}
	if q.timer == nil {
		q.timer = time.AfterFunc(delay, q.tick)
	} else {
		q.timer.Reset(delay)
	}
}

func (q *pushQueue) tick() {
	q.batchMu.Lock()
	due := q.due
	q.due = nil
	q.batchMu.Unlock()
	q.dispatch(due...)
}

// dispatch runs the flushes of ps on dispatchers: goroutines that each run
// flushes in turn, which never block (see pusher.run). One more starts for
// every pushDispatchShare flushes waiting, so that an engine that answers
// over the network is asked for many clients at once.
func (q *pushQueue) dispatch(ps ...*pusher) {
	q.readyMu.Lock()
	q.ready = append(q.ready, ps...)
	start := 0
	for q.running < pushMaxDispatchers && q.running*pushDispatchShare < len(q.ready) {
		q.running++
		start++
	}
	q.readyMu.Unlock()
	for range start {
		go q.dispatcher()
	}
}

const (
	pushDispatchShare  = 256
	pushMaxDispatchers = 64
)

func (q *pushQueue) dispatcher() {
	for {
		q.readyMu.Lock()
		if len(q.ready) == 0 {
			q.ready = nil // let a large burst's array go
			q.running--
			q.readyMu.Unlock()
			return
		}
		p := q.ready[0]
		q.ready[0] = nil
		q.ready = q.ready[1:]
		q.readyMu.Unlock()
		p.run(false)
	}
}
