package server

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pushing over WebSockets without a goroutine per socket. A socket's client
// is watched through the engine (Client.Push); a wake-up queues a flush,
// which takes what is queued, writes it as one frame and commits it, and
// runs again while more came meanwhile. Flushes are run in turn by a few
// dispatcher goroutines that live while there is work; their writes never
// block (transport_websocket_frame.go). A socket that cannot take its frame at once, or is
// busy writing something else, gets a goroutine of its own for the rest of
// its flush (its write bounded by wsWriteTimeout): a slow or dead socket
// holds up only its own deliveries, never another socket's.
//
// Batching: a socket written to within busyWindow is receiving steadily;
// its next flush waits for the shared batch timer (at most the hub's
// BatchDelay), so that one frame and one write carry every message that came
// meanwhile. A socket that was idle gets its message at once.

// wsPusher pushes one client's messages to one socket.
type wsPusher struct {
	ws   *wsSession
	c    *Client
	stop func() // ends the watch (Client.Push)
	// wakes counts wake-ups not yet served: the one that makes it 1 starts
	// a flush, which runs until it has served them all.
	wakes atomic.Int32
	ended atomic.Bool
	last  atomic.Int64 // time of the last write (UnixNano), for batching
}

// startPush starts pushing c's messages to ws.
func (ws *wsSession) startPush(c *Client) *wsPusher {
	p := &wsPusher{ws: ws, c: c}
	p.stop = c.Push(p.notify)
	return p
}

// notify is the engine's wake-up (Engine.Watch): it never blocks.
func (p *wsPusher) notify(why Wake) {
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

// halt stops the push without an answer: the socket ended, or another
// client's push took its place.
func (p *wsPusher) halt() {
	p.ended.Store(true)
	p.stop()
}

// end stops the push once: the socket's pending connect is answered with
// why, and the socket stays open for the peer's next words.
func (p *wsPusher) end(why PollEnd) {
	if p.ended.CompareAndSwap(false, true) {
		go p.ws.pushEnded(p, why)
	}
}

// schedule flushes now, or at the next batch tick if the socket is busy.
func (p *wsPusher) schedule() {
	if p.batching() {
		p.ws.b.sockets.later(p)
		return
	}
	p.ws.b.sockets.dispatch(p)
}

// run flushes until every wake-up counted so far is served. With
// mayBlock false (a dispatcher, which serves many sockets in turn) it
// never blocks: what would is handed to a goroutine of the socket's own.
func (p *wsPusher) run(mayBlock bool) {
	for {
		n := p.wakes.Load()
		if !p.flush(mayBlock, n) || !p.next(n) {
			return
		}
	}
}

// next counts n wake-ups as served; true when more came since that are to
// be flushed now rather than at the next batch tick.
func (p *wsPusher) next(n int32) bool {
	if p.wakes.Add(-n) == 0 {
		return false
	}
	if p.batching() {
		p.ws.b.sockets.later(p) // more came while writing: gather them for a while
		return false
	}
	return true
}

// flush writes what is queued as one frame and commits it, for the n
// wake-ups counted before. It returns false when the push or the socket has
// ended (wakes then stays above 0: no flush starts again) or when a
// goroutine of the socket's own took over the rest of the run.
func (p *wsPusher) flush(mayBlock bool, n int32) bool {
	ws := p.ws
	if p.ended.Load() || ws.b.hub.Closed() {
		return false // the hub's close answers the socket (wsSockets)
	}
	if mayBlock {
		ws.sock.Lock()
	} else if !ws.sock.TryLock() {
		go p.run(true) // the socket is busy writing something else
		return false
	}
	batch, why := p.c.Take(ws.ctx)
	switch {
	case why == PollTimeout:
		ws.sock.Unlock()
		return true
	case why != PollReady:
		ws.sock.Unlock()
		p.end(why)
		return false
	case p.ended.Load(): // replaced while fetching: the successor takes them
		ws.sock.Unlock()
		return false
	case len(batch.Messages) == 0: // a drop notice only: Bayeux has none in-band
		ws.sock.Unlock()
		return true
	}
	var rest []byte
	failed := false
	written := p.c.deliver(batch, why, writeFunc(func(batch Batch, _ PollEnd) bool {
		var err error
		rest, err = ws.sock.WriteNowLocked(wsMessagesFrame(batch.Messages))
		failed = !p.wrote(err, len(rest) == 0)
		return !failed && len(rest) == 0
	}))
	switch {
	case written:
		ws.sock.Unlock()
		return true
	case failed:
		ws.sock.Unlock()
		return false
	case !mayBlock:
		go func() { // a full socket: it waits, no other does
			if p.finish(batch, rest) && p.next(n) {
				p.run(true)
			}
		}()
		return false
	}
	return p.finish(batch, rest)
}

// finish writes the rest of a batch's frame, blocking within
// wsWriteTimeout, commits the batch once written, then lets go of the
// socket.
func (p *wsPusher) finish(batch Batch, rest []byte) bool {
	defer p.ws.sock.Unlock()
	return p.c.deliver(batch, PollReady, writeFunc(func(Batch, PollEnd) bool {
		return p.wrote(p.ws.sock.WriteRestLocked(rest), true)
	}))
}

// wrote notes the end of a write: on failure the socket is closed (its
// reader then ends and lets go of the rest) and it reports false; a frame
// written whole (all) is timed, for pacing.
func (p *wsPusher) wrote(err error, all bool) bool {
	if err != nil {
		_ = p.ws.conn.Close()
		return false
	}
	if all {
		p.last.Store(time.Now().UnixNano())
	}
	return true
}

// wsSockets is what a Bayeux server keeps of its WebSockets: the set of
// open ones, to close them when the hub closes, and the batch timer.
type wsSockets struct {
	mu        sync.Mutex
	open      map[*wsSession]struct{}
	closed    bool
	watchOnce sync.Once

	readyMu sync.Mutex
	ready   []*wsPusher // flushes to run now
	running int         // dispatchers running them

	batchMu sync.Mutex
	due     []*wsPusher // flushes waiting for the batch timer
	timer   *time.Timer
}

// add registers an open socket; false when the hub has closed.
func (s *wsSockets) add(b *Bayeux, ws *wsSession) bool {
	s.watchOnce.Do(func() { go s.closeAllWith(b.hub) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.open == nil {
		s.open = map[*wsSession]struct{}{}
	}
	s.open[ws] = struct{}{}
	return true
}

func (s *wsSockets) remove(ws *wsSession) {
	s.mu.Lock()
	delete(s.open, ws)
	s.mu.Unlock()
}

// closeAllWith waits for the hub to close, then answers every socket's
// pending connect and closes it going away.
func (s *wsSockets) closeAllWith(h *Hub) {
	<-h.Done()
	s.mu.Lock()
	s.closed = true
	open := make([]*wsSession, 0, len(s.open))
	for ws := range s.open {
		open = append(open, ws)
	}
	s.mu.Unlock()
	for _, ws := range open {
		go ws.shutdown()
	}
}

// batching reports whether p's next flush should wait for the batch timer:
// its socket was written to within busyWindow.
func (p *wsPusher) batching() bool { return p.ws.b.hub.gathering(p.last.Load()) }

// later queues p's flush for the next tick of the batch timer, which is
// armed by the first flush waiting for it: every message waits at most the
// batch delay.
func (s *wsSockets) later(p *wsPusher) {
	s.batchMu.Lock()
	defer s.batchMu.Unlock()
	s.due = append(s.due, p)
	if len(s.due) > 1 {
		return
	}
	delay := p.ws.b.hub.opts.BatchDelay
	if s.timer == nil {
		s.timer = time.AfterFunc(delay, s.tick)
	} else {
		s.timer.Reset(delay)
	}
}

func (s *wsSockets) tick() {
	s.batchMu.Lock()
	due := s.due
	s.due = nil
	s.batchMu.Unlock()
	s.dispatch(due...)
}

// dispatch runs the flushes of ps on dispatchers: goroutines that each run
// flushes in turn, which never block (see wsPusher.run). One more starts
// for every wsDispatchShare flushes waiting, so that an engine that answers
// over the network is asked for many sockets at once.
func (s *wsSockets) dispatch(ps ...*wsPusher) {
	s.readyMu.Lock()
	s.ready = append(s.ready, ps...)
	start := 0
	for s.running < wsMaxDispatchers && s.running*wsDispatchShare < len(s.ready) {
		s.running++
		start++
	}
	s.readyMu.Unlock()
	for range start {
		go s.dispatcher()
	}
}

const (
	wsDispatchShare  = 256
	wsMaxDispatchers = 64
)

func (s *wsSockets) dispatcher() {
	for {
		s.readyMu.Lock()
		if len(s.ready) == 0 {
			s.ready = nil // let a large burst's array go
			s.running--
			s.readyMu.Unlock()
			return
		}
		p := s.ready[0]
		s.ready[0] = nil
		s.ready = s.ready[1:]
		s.readyMu.Unlock()
		p.run(false)
	}
}
