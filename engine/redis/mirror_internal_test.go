package redis

import (
	"context"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// FuzzPubSubMessage feeds a pattern topic's pub/sub messages ("SEQ OFFSET
// PAYLOAD", mirror.go) to a mirror: whatever comes, nothing panics, the
// queue stays in sequence order without a number twice, and its counts
// match it.
func FuzzPubSubMessage(f *testing.F) {
	f.Add("1 1 {\"c\":\"/f\",\"t\":1}", "2 2 {\"c\":\"/f\",\"d\":1,\"t\":2}")
	f.Add("5 1 {\"c\":\"/f\",\"t\":1}", "4 3 not json")
	f.Add("x", "7 -1 {}")
	f.Add("2 1 {\"c\":\"/f\",\"t\":1}", "1 2 {\"c\":\"/f\",\"t\":2}") // CI found: a later offset with an earlier number
	f.Add("1 1 {\"c\":\"/f\",\"t\":1}", "1 2 {\"c\":\"/f\",\"t\":1}") // one number at two offsets
	f.Fuzz(func(t *testing.T, a, b string) {
		e := &Engine{}
		e.mir.init(server.Limits{QueueMaxMessages: 3, QueueMaxBytes: 1 << 10})
		e.cache.init(8)
		m := &mirror{id: "s", subs: map[string]*msub{"/f": {}}}
		e.mir.byID["s"] = m
		e.mir.feeds["/f"] = &feed{last: -1, mirrors: map[*mirror]struct{}{m: {}}}
		for _, text := range []string{a, b, a} {
			e.arrive("/f", text)
		}
		n, prev := 0, int64(0)
		for i, q := range m.queue {
			if i > 0 && q.seq <= m.queue[i-1].seq {
				t.Fatalf("queue out of order: %v", m.queue)
			}
			if len(q.more) > 0 { // one stream carries a message once
				t.Fatalf("entry %d is at offsets %d and %v of one stream: %v", i, q.off, q.more, m.queue)
			}
			if q.off > m.subs["/f"].last || q.off <= prev {
				t.Fatalf("entry %d has offset %d after %d, its stream is at %d: %v", i, q.off, prev, m.subs["/f"].last, m.queue)
			}
			prev = q.off
			n++
		}
		if m.subs["/f"].n != n && !m.stale {
			t.Fatalf("count %d for %d queued", m.subs["/f"].n, n)
		}
	})
}

// TestLoadRacingTopicDropped: a topic dropped (the janitor unsubscribes a
// pattern no watch needed for topicGrace) while a mirror is loading, after
// the load found it live: the mirror must not start, as it would read a
// stream this process no longer hears. Before, it started valid.
func TestLoadRacingTopicDropped(t *testing.T) {
	srv := redistest.Start(t)
	e, err := New(Options{URL: srv.URL, Prefix: "drop:", Mirror: true, MirrorFromFirstPoll: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	ctx := context.Background()
	if err := e.CreateSession(ctx, server.Session{ID: "s", Kind: server.KindBayeux, Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Subscribe(ctx, "s", "/d"); err != nil {
		t.Fatal(err)
	}
	e.mir.mu.Lock()
	e.mir.loadRead = func(string) { e.topicDropped("/d") } // as the janitor does, in the window
	e.mir.mu.Unlock()
	stop := e.Watch("s", func(server.Wake) {}) // loads the mirror
	defer stop()
	if e.owns("s") {
		t.Error("a mirror started on a topic dropped while it loaded")
	}
}
