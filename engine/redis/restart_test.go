package redis_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// TestFirstCallAfterRestart: Redis is SIGKILLed and listens again 400 ms
// later; the engine's first calls then succeed. Before, a connection used
// one call at a time (a quiet process) had no reader between calls, so it
// learned that its Redis had gone only when the next call failed on it
// with EOF: a request got 503 while Redis was up again, until that one
// call, a keep-alive PING (after a second idle) or the pub/sub
// reconnection used the connection up. Now each connection has its reader
// (rueidis AlwaysPipelining), which sees Redis go at once.
func TestFirstCallAfterRestart(t *testing.T) {
	srv := redistest.Start(t)
	e := open(t, srv.URL, "restart:", server.Limits{})
	publish := func() error {
		_, err := e.Publish(ctx, &server.Message{Channel: "/restart", Data: json.RawMessage(`{}`)})
		return err
	}
	for range 5 { // one call at a time, as a quiet process makes them
		if err := publish(); err != nil {
			t.Fatal(err)
		}
	}
	// Down for less than the second after which an idle connection sends a
	// keep-alive (which would find the connection dead by itself).
	srv.Restart(400 * time.Millisecond)
	for i := range 3 {
		if err := publish(); err != nil {
			t.Fatalf("call %d once Redis listened again: %v", i, err)
		}
	}
}
