package server

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pushing over WebSockets without a goroutine per socket. A socket's client
// is watched through the engine (Client.Push); a wake-up starts a short-lived
// flush goroutine that takes what is queued, writes it as one frame and
// commits it, and ends when nothing more came meanwhile. A slow or dead
// socket therefore holds up only its own flush (bounded by wsWriteTimeout),
// never another socket's.
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
	go p.run()
}

// run flushes until every wake-up counted so far is served.
func (p *wsPusher) run() {
	for {
		n := p.wakes.Load()
		if !p.flush() {
			return // wakes stays above 0: no flush starts again
		}
		if p.wakes.Add(-n) == 0 {
			return
		}
		if p.batching() {
			p.ws.b.sockets.later(p) // more came while writing: gather them for a while
			return
		}
	}
}

// flush writes what is queued as one frame and commits it; false when the
// push or the socket has ended.
func (p *wsPusher) flush() bool {
	if p.ended.Load() || p.ws.b.hub.Closed() {
		return false // the hub's close answers the socket (wsSockets)
	}
	batch, why := p.c.Take(p.ws.ctx)
	switch why {
	case PollReady:
	case PollTimeout:
		return true
	default:
		p.end(why)
		return false
	}
	if p.ended.Load() {
		return false // replaced while fetching: the successor takes them
	}
	if len(batch.Messages) == 0 {
		return true // a drop notice only: Bayeux has none in-band
	}
	if !p.ws.writeFrame(bayeuxFrame(batch.Messages)) {
		return false
	}
	p.last.Store(time.Now().UnixNano())
	p.c.Commit(batch.Cursor)
	return true
}

// wsSockets is what a Bayeux server keeps of its WebSockets: the set of
// open ones, to close them when the hub closes, and the batch timer.
type wsSockets struct {
	mu        sync.Mutex
	open      map[*wsSession]struct{}
	closed    bool
	watchOnce sync.Once

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
func (p *wsPusher) batching() bool {
	return p.ws.b.hub.opts.BatchDelay > 0 && time.Now().UnixNano()-p.last.Load() < int64(busyWindow)
}

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
	for _, p := range due {
		go p.run()
	}
}

// bayeuxFrame is one frame carrying msgs: a single message's is encoded
// once per publish and shared by every socket it goes to.
func bayeuxFrame(msgs []*Message) []byte {
	if len(msgs) == 1 {
		return msgs[0].bayeuxFrame()
	}
	out := make([][]byte, len(msgs))
	for i, m := range msgs {
		out[i] = m.bayeuxJSON()
	}
	return jsonArray(out)
}
