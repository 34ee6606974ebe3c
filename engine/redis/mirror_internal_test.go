package redis

import (
	"testing"

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
		n := 0
		for i, q := range m.queue {
			if i > 0 && q.seq <= m.queue[i-1].seq {
				t.Fatalf("queue out of order: %v", m.queue)
			}
			if q.off > m.subs["/f"].last || i > 0 && q.off <= m.queue[i-1].off {
				t.Fatalf("entry %d has offset %d, its stream is at %d: %v", i, q.off, m.subs["/f"].last, m.queue)
			}
			n++
		}
		if m.subs["/f"].n != n && !m.stale {
			t.Fatalf("count %d for %d queued", m.subs["/f"].n, n)
		}
	})
}
