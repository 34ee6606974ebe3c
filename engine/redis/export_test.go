package redis

import "time"

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
