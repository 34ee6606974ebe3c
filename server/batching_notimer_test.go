package server

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Batching without a timer (BatchDelay 0, the default): nothing is held
// back on an idle server, and what comes while a write is in progress is
// gathered into the next write.

// heldBackBound is how soon a message on an idle server must be answered:
// half the 100 ms the old default batch_delay held a steady client's
// messages back, so that such a delay still fails, and loose enough for a
// shared, busy machine under -race (the median of several is taken; an
// answer takes well under a millisecond when the machine is quiet).
const heldBackBound = 50 * time.Millisecond

// median of ds.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestIdlePollAnsweredAtOnce: a client polling steadily (answered a moment
// ago, which a batch delay would hold back) on an idle server gets each
// message at once, both when it is already queued and when it comes while
// the poll waits; what came between two polls comes in one answer.
func TestIdlePollAnsweredAtOnce(t *testing.T) {
	h := NewHub(HubOptions{}, testLog()) // BatchDelay 0
	defer h.Close()
	c := subscribedLocal(t, h, "idle-1", "/a")
	publish := func(n int) {
		t.Helper()
		if _, err := h.Publish(&Message{Channel: "/a", Data: json.RawMessage(strconv.Itoa(n))}); err != nil {
			t.Fatal(err)
		}
	}
	var queued, woken []time.Duration
	for i := range 7 {
		// Queued before the poll: answered at once.
		publish(i)
		start := time.Now()
		b, why := c.Poll(context.Background(), 5*time.Second)
		queued = append(queued, time.Since(start))
		if why != PollReady || len(b.Messages) != 1 {
			t.Fatalf("queued message %d: %v with %d messages", i, why, len(b.Messages))
		}
		c.Commit(b.Cursor)
		// Published while the poll waits: answered as soon as it comes.
		got := pollAsync(c, 5*time.Second)
		waitFor(t, c.Polling)
		start = time.Now()
		publish(100 + i)
		r := <-got
		woken = append(woken, time.Since(start))
		if r.why != PollReady || len(r.batch.Messages) != 1 {
			t.Fatalf("woken poll %d: %v with %d messages", i, r.why, len(r.batch.Messages))
		}
		c.Commit(r.batch.Cursor)
	}
	if m := median(queued); m > heldBackBound {
		t.Errorf("a queued message was answered after %v (median of %v), want at once", m, queued)
	}
	if m := median(woken); m > heldBackBound {
		t.Errorf("a message to a waiting poll was answered after %v (median of %v), want at once", m, woken)
	}
	// What comes between two polls (the answer on its way) goes in one.
	for i := range 5 {
		publish(200 + i)
	}
	if b, why := c.Poll(context.Background(), 5*time.Second); why != PollReady || len(b.Messages) != 5 {
		t.Fatalf("after a burst between polls: %v with %d messages, want the 5 in one answer", why, len(b.Messages))
	}
}

// waitFor waits up to 5 s for cond.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// gatedWriter is a pushWriter whose first write is partial (the socket
// took part of it), the rest of which waits for release: a write in
// progress. It notes the messages of each batch written.
type gatedWriter struct {
	writer  sync.Mutex
	release chan struct{}
	ctx     context.Context

	mu      sync.Mutex
	batches [][]string // data of each batch's messages, in order
	partial bool       // the first write was made partial
	wrote   chan struct{}
}

func (g *gatedWriter) lockWriter(block bool) bool {
	if block {
		g.writer.Lock()
		return true
	}
	return g.writer.TryLock()
}

func (g *gatedWriter) unlockWriter() { g.writer.Unlock() }

func (g *gatedWriter) writeNow(b Batch) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var data []string
	for _, m := range b.Messages {
		data = append(data, string(m.Data))
	}
	g.batches = append(g.batches, data)
	g.wrote <- struct{}{}
	if !g.partial {
		g.partial = true
		return []byte("rest"), nil
	}
	return nil, nil
}

func (g *gatedWriter) writeRest([]byte) error {
	<-g.release
	return nil
}

func (g *gatedWriter) dropNotices() bool            { return false }
func (g *gatedWriter) fail()                        {}
func (g *gatedWriter) pushEnded(*pusher, PollEnd)   {}
func (g *gatedWriter) pushContext() context.Context { return g.ctx }

// TestPushGathersWhileWriting: a pushed client (a WebSocket's seam) gets
// its first message at once, and the messages that come while that write
// is in progress in one write after it, not one each, with BatchDelay 0.
func TestPushGathersWhileWriting(t *testing.T) {
	h := NewHub(HubOptions{}, testLog()) // BatchDelay 0
	defer h.Close()
	c := subscribedLocal(t, h, "push-1", "/p")
	g := &gatedWriter{release: make(chan struct{}), ctx: context.Background(), wrote: make(chan struct{}, 64)}
	p := c.startPush(g)
	defer p.halt()
	publish := func(n int) {
		t.Helper()
		if _, err := h.Publish(&Message{Channel: "/p", Data: json.RawMessage(strconv.Itoa(n))}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(what string) {
		t.Helper()
		select {
		case <-g.wrote:
		case <-time.After(5 * time.Second):
			t.Fatalf("no write for %s", what)
		}
	}
	start := time.Now()
	publish(0)
	wait("the first message")
	if took := time.Since(start); took > 10*heldBackBound {
		t.Errorf("an idle client's message was written after %v, want at once", took)
	}
	// The first write is in progress (its rest waits): ten more come.
	for i := 1; i <= 10; i++ {
		publish(i)
	}
	time.Sleep(50 * time.Millisecond) // any write they caused would be seen
	close(g.release)
	wait("the messages that came while writing")
	time.Sleep(50 * time.Millisecond)
	g.mu.Lock()
	defer g.mu.Unlock()
	want := [][]string{{"0"}, {"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}}
	if len(g.batches) != len(want) || !slices.Equal(g.batches[0], want[0]) || !slices.Equal(g.batches[1], want[1]) {
		t.Fatalf("writes %v, want %v: one at once, then the ten gathered in one", g.batches, want)
	}
}

// TestWebSocketSteadySocketNotHeld: over a real WebSocket with the default
// BatchDelay (0), a socket receiving steadily (written to a moment ago,
// which a batch delay would hold back) gets each message at once.
func TestWebSocketSteadySocketNotHeld(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true}, func(o *Options) {
		o.PollTimeout = 30 * time.Second // no connect reply in between
	})
	ws, _ := b.subscribedOverWS("/steady")
	var took []time.Duration
	for i := range 7 {
		start := time.Now()
		b.publishHere("/steady", i)
		r := ws.read()
		took = append(took, time.Since(start))
		if len(r) != 1 || r[0]["data"] != float64(i) {
			t.Fatalf("message %d: got %v", i, r)
		}
	}
	if m := median(took); m > heldBackBound {
		t.Errorf("a steady socket's message took %v (median of %v), want at once", m, took)
	}
}

// TestSSESteadyStreamNotHeld: an SSE stream receiving steadily (its poll
// loop answered a moment ago, which a batch delay would hold back) gets
// each message at once with the default BatchDelay (0).
func TestSSESteadyStreamNotHeld(t *testing.T) {
	s, ts := testServer(t, Options{})
	resp, err := http.Get(ts.URL + "/comet/channel/steady/events?id=sse-steady")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	waitPolling(t, s, "sse-steady")
	var took []time.Duration
	for i := range 7 {
		start := time.Now()
		if _, err := s.Hub().Publish(&Message{Channel: "/stardust/steady", Data: json.RawMessage(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
		_, data := readEvent(t, r)
		took = append(took, time.Since(start))
		if !strings.Contains(data, strconv.Itoa(i)) {
			t.Fatalf("event %d: %q", i, data)
		}
	}
	if m := median(took); m > heldBackBound {
		t.Errorf("a steady stream's message took %v (median of %v), want at once", m, took)
	}
}
