package redis

import "time"

// OnLoadRead sets a function that each load of a mirror runs between its
// read of Redis and the mirror's start (mirror.go), to make a race happen
// in that window.
func OnLoadRead(e *Engine, f func(id string)) {
	e.mir.mu.Lock()
	e.mir.loadRead = f
	e.mir.mu.Unlock()
}

// OnArrive sets a function that runs first for each pattern topic's
// pub/sub message, on the pub/sub connection's goroutine: blocking it
// holds back every pub/sub message after it, as a slow reader does.
func OnArrive(e *Engine, f func(pattern string)) { e.mir.arriving.Store(&f) }

// OnNotice sets a function that runs first for each ctl notice ("r node
// id", …), on the pub/sub connection's goroutine: blocking it holds back
// every pub/sub message after it.
func OnNotice(e *Engine, f func(notice string)) { e.hearing.Store(&f) }

// Node returns the engine's node name, as its notices carry it.
func Node(e *Engine) string { return e.node }

// AgePolls makes the engine's poll streaks (mirror.go) d older, as if
// their polls had started d earlier.
func AgePolls(e *Engine, d time.Duration) {
	s := &e.mir
	s.mu.Lock()
	for id, st := range s.polls {
		st.at = st.at.Add(-d)
		s.polls[id] = st
	}
	s.mu.Unlock()
}

// HoldReconnect makes the engine's pub/sub connection wait, once lost,
// before it connects again (and so before it checks Redis for lost data),
// until release is called.
func HoldReconnect(e *Engine) (release func()) {
	gate := make(chan struct{})
	e.reconnectGate.Store(&gate)
	return func() { e.reconnectGate.Store(nil); close(gate) }
}

// Home returns the home shard of a session.
func Home(s *Sharded, id string) int { return s.home(id) }

// AgeMirrors makes the engine's mirrors d longer unwatched, as the
// flusher counts it (flush.go; one it has not yet found unwatched counts
// from now). The flusher finds a watched one watched again.
func AgeMirrors(e *Engine, d time.Duration) {
	s := &e.mir
	now := time.Now()
	s.mu.Lock()
	for _, m := range s.byID {
		if m.idle.IsZero() {
			m.idle = now
		}
		m.idle = m.idle.Add(-d)
	}
	s.mu.Unlock()
}

// MirrorGrace is how long a mirror at least outlives its last watch.
const MirrorGrace = mirrorGrace
