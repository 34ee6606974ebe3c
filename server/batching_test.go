package server

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestPollBatchDelay: a client answered less than BatchDelay ago is answered
// again no sooner than BatchDelay after its last answer, with everything
// that came meanwhile; a client whose last answer is older is answered at
// once; and the first poll of a client never waits.
func TestPollBatchDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	h := NewHub(HubOptions{BatchDelay: delay}, testLog())
	defer h.Close()
	c := subscribedLocal(t, h, "batch-1", "/a")
	publish := func(n int) {
		t.Helper()
		if _, err := h.Publish(&Message{Channel: "/a", Data: json.RawMessage(`{"n":` + string(rune('0'+n)) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	poll := func() (Batch, time.Duration) {
		t.Helper()
		start := time.Now()
		b, why := c.Poll(context.Background(), 5*time.Second)
		if why != PollReady {
			t.Fatalf("poll ended with %v", why)
		}
		c.Commit(b.Cursor)
		return b, time.Since(start)
	}

	// First poll: answered at once with what is queued.
	publish(1)
	if b, took := poll(); len(b.Messages) != 1 || took > delay/2 {
		t.Fatalf("first poll: %d messages after %s, want 1 at once", len(b.Messages), took)
	}
	// Polled again at once, with messages queued and more coming: the
	// answer waits for the rest of the delay and carries them all.
	publish(2)
	go func() {
		time.Sleep(delay / 3)
		publish(3)
	}()
	b, took := poll()
	if len(b.Messages) != 2 {
		t.Fatalf("busy poll: %d messages, want 2 gathered", len(b.Messages))
	}
	if took < delay*2/3 || took > delay*3 {
		t.Fatalf("busy poll answered after %s, want about %s", took, delay)
	}
	// Answered longer than the delay ago: at once again.
	time.Sleep(delay + 50*time.Millisecond)
	publish(4)
	if b, took := poll(); len(b.Messages) != 1 || took > delay/2 {
		t.Fatalf("poll after a quiet spell: %d messages after %s, want 1 at once", len(b.Messages), took)
	}
}

// downEngine is a memory engine whose Fetch fails while down is set, as
// Redis does while it restarts.
type downEngine struct {
	*MemoryEngine
	down atomic.Bool
}

func (e *downEngine) Fetch(ctx context.Context, id string, max int) (Batch, error) {
	if e.down.Load() {
		return Batch{}, errors.New("engine down")
	}
	return e.MemoryEngine.Fetch(ctx, id, max)
}

// TestPollRidesOutEngineFailure: a poll whose first fetch fails ends at once
// (PollFailed: the client retries later); a poll already held that a
// wake-up finds the engine down keeps its hold, looks again soon, and
// answers with the message once the engine is back.
func TestPollRidesOutEngineFailure(t *testing.T) {
	e := &downEngine{MemoryEngine: NewMemoryEngine(Limits{})}
	h := NewHub(HubOptions{Engine: e}, testLog())
	defer h.Close()
	c := subscribedLocal(t, h, "down-1", "/a")
	e.down.Store(true)
	if _, why := c.Poll(context.Background(), time.Second); why != PollFailed {
		t.Fatalf("first fetch failing: %v, want PollFailed", why)
	}
	e.down.Store(false)
	done := pollAsync(c, 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for !c.Polling() {
		if time.Now().After(deadline) {
			t.Fatal("the poll is not held")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.down.Store(true)
	if _, err := h.Publish(&Message{Channel: "/a", Data: json.RawMessage(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("a held poll ended with %v while the engine was down", r.why)
	case <-time.After(3 * engineRetry):
	}
	e.down.Store(false)
	select {
	case r := <-done:
		if r.why != PollReady || len(r.batch.Messages) != 1 {
			t.Fatalf("once the engine is back: %v with %d messages", r.why, len(r.batch.Messages))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the held poll did not look again once the engine was back")
	}
}

// subscribedLocal registers a local client subscribed to pattern.
func subscribedLocal(t *testing.T, h *Hub, id, pattern string) *Client {
	t.Helper()
	c, _, err := h.Register(id, KindLocal, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Subscribe(c, pattern); err != nil {
		t.Fatal(err)
	}
	return c
}

// polled is how a poll started by pollAsync ended.
type polled struct {
	batch Batch
	why   PollEnd
}

// pollAsync polls c in a goroutine; the result comes on the channel.
func pollAsync(c *Client, hold time.Duration) <-chan polled {
	got := make(chan polled, 1)
	go func() {
		batch, why := c.Poll(context.Background(), hold)
		got <- polled{batch, why}
	}()
	return got
}

// TestGatheringPollRidesOutEngineFailure: a busy client's poll, which first
// gathers for the rest of BatchDelay, has been held by then: finding the
// engine down after the gather, it keeps its hold (ending at it with
// nothing) instead of failing.
func TestGatheringPollRidesOutEngineFailure(t *testing.T) {
	e := &downEngine{MemoryEngine: NewMemoryEngine(Limits{})}
	h := NewHub(HubOptions{Engine: e, BatchDelay: 200 * time.Millisecond}, testLog())
	defer h.Close()
	c := subscribedLocal(t, h, "down-2", "/a")
	if _, why := c.Poll(context.Background(), 0); why != PollTimeout {
		t.Fatalf("first poll: %v", why)
	}
	e.down.Store(true) // while the next poll gathers
	const hold = 600 * time.Millisecond
	start := time.Now()
	if _, why := c.Poll(context.Background(), hold); why != PollTimeout || time.Since(start) < hold-50*time.Millisecond {
		t.Fatalf("gathering poll with the engine down: %v after %s, want PollTimeout at the hold", why, time.Since(start))
	}
}
