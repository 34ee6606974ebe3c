package redis

// MirrorFirstPoll makes every watch load its session's mirror at once, not
// from the second poll in a row, for the tests of the mirrors; it returns
// a function that restores the default.
func MirrorFirstPoll() (restore func()) {
	mirrorFirst.Store(true)
	return func() { mirrorFirst.Store(false) }
}
