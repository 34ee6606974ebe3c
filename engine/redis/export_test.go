package redis

import "time"

// MirrorFirstPoll makes every watch load its session's mirror at once, not
// from the second poll in a row, for the tests of the mirrors; it returns
// a function that restores the default.
func MirrorFirstPoll() (restore func()) {
	mirrorFirst.Store(true)
	return func() { mirrorFirst.Store(false) }
}

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
