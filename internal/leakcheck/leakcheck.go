// Package leakcheck checks, in tests, that goroutines started by the code
// under test have ended after it was closed.
package leakcheck

import (
	"runtime"
	"testing"
	"time"
)

// slack allows for goroutines of the runtime and test framework that come
// and go on their own.
const slack = 2

// Goroutines fails t if, within a few seconds, the number of goroutines does
// not come back to at most before (+ a small slack); it prints every stack.
// Take before with runtime.NumGoroutine() before starting what is checked.
func Goroutines(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+slack && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+slack {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}
