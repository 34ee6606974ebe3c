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

// InfoField returns a field of an INFO answer.
var InfoField = infoField
