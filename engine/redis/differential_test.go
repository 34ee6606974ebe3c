package redis_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// TestFetchMatchesMemoryEngine runs the same random subscribes,
// unsubscribes, publishes, fetches (of random sizes) and commits against
// the memory engine and the Redis engine, with a chunk of subscriptions
// smaller than what sessions have, and compares every fetch: the Redis
// engine's chunked reads, its watermark (idle polls that look only at what
// was published since) and its merging must answer what the memory
// engine's per-session queues do.
func TestFetchMatchesMemoryEngine(t *testing.T) {
	srv := redistest.Start(t)
	l := server.Limits{QueueMaxMessages: 100000, QueueMaxBytes: 1 << 30, MaxSubscriptions: 1000}
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			mem := server.NewMemoryEngine(l)
			red := open(t, srv.URL, fmt.Sprintf("diff%d:", seed), l)
			defer red.Close()
			rng := rand.New(rand.NewPCG(seed, 17))
			channels := make([]string, 0, 400)
			for i := range 200 {
				channels = append(channels, fmt.Sprintf("/d/%d", i), fmt.Sprintf("/d/%d/x", i%20))
			}
			patterns := append([]string{"/d/*", "/d/**", "/d/3/*"}, channels...)
			sessions := []string{"a", "b", "c"}
			for _, id := range sessions {
				for _, e := range []server.Engine{mem, red} {
					if err := e.CreateSession(ctx, server.Session{ID: id, Kind: server.KindBayeux}); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Many subscriptions each, more than a fetch chunk (128).
			for _, id := range sessions {
				for range 300 {
					p := patterns[rng.IntN(len(patterns))]
					both(t, mem, red, func(e server.Engine) error { _, err := e.Subscribe(ctx, id, p); return err })
				}
			}
			for op := range 1500 {
				id := sessions[rng.IntN(len(sessions))]
				switch r := rng.IntN(100); {
				case r < 5:
					p := patterns[rng.IntN(len(patterns))]
					both(t, mem, red, func(e server.Engine) error { _, err := e.Subscribe(ctx, id, p); return err })
				case r < 10:
					p := patterns[rng.IntN(len(patterns))]
					both(t, mem, red, func(e server.Engine) error { _, err := e.Unsubscribe(ctx, id, p); return err })
				case r < 60:
					ch := channels[rng.IntN(len(channels))]
					data := json.RawMessage(fmt.Sprintf(`{"op":%d}`, op))
					both(t, mem, red, func(e server.Engine) error {
						_, err := e.Publish(ctx, &server.Message{Channel: ch, Data: data})
						return err
					})
				default:
					max := 1 + rng.IntN(40)
					bm, err1 := mem.Fetch(ctx, id, max)
					br, err2 := red.Fetch(ctx, id, max)
					if err1 != nil || err2 != nil {
						t.Fatal(err1, err2)
					}
					if got, want := describe(br), describe(bm); got != want {
						t.Fatalf("op %d: Fetch(%s, %d)\nredis:  %s\nmemory: %s", op, id, max, got, want)
					}
					if rng.IntN(3) > 0 { // and sometimes the answer does not arrive
						both(t, mem, red, func(e server.Engine) error {
							c := bm.Cursor
							if e == server.Engine(red) {
								c = br.Cursor
							}
							return e.Commit(ctx, id, c)
						})
					}
				}
			}
		})
	}
}

func both(t *testing.T, mem, red server.Engine, f func(server.Engine) error) {
	t.Helper()
	if err := f(mem); err != nil {
		t.Fatal("memory:", err)
	}
	if err := f(red); err != nil {
		t.Fatal("redis:", err)
	}
}

func describe(b server.Batch) string {
	s := fmt.Sprintf("dropped %d:", b.Dropped)
	for _, m := range b.Messages {
		s += fmt.Sprintf(" %s%s", m.Channel, m.Data)
	}
	return s
}

// TestFetchChunkEndsInOnePublish: an idle client's poll reads the patterns
// published to since its last look, 128 per call, in the order of their
// last message; one publish gives several patterns the same place. Here
// the 128th and the next two are one message's /t/x/y, /t/x/* and /t/**:
// the chunk must neither split nor skip them.
func TestFetchChunkEndsInOnePublish(t *testing.T) {
	srv := redistest.Start(t)
	e := open(t, srv.URL, "ties:", server.Limits{MaxSubscriptions: 1000})
	if err := e.CreateSession(ctx, server.Session{ID: "s", Kind: server.KindBayeux}); err != nil {
		t.Fatal(err)
	}
	subscribeMany(t, e, "s", "/t/", 300)
	for _, p := range []string{"/t/x/y", "/t/x/*", "/t/**"} {
		mustSub(t, e, "s", p)
	}
	if b, err := e.Fetch(ctx, "s", 0); err != nil || len(b.Messages) != 0 {
		t.Fatalf("first fetch: %d, %v", len(b.Messages), err) // records the watermark
	}
	for i := range 127 {
		publishOn(t, e, fmt.Sprintf("/t/%d", i), `{}`)
	}
	publishOn(t, e, "/t/x/y", `{"last":1}`)
	b, err := e.Fetch(ctx, "s", 0)
	if err != nil || len(b.Messages) != 128 || string(b.Messages[127].Data) != `{"last":1}` {
		t.Fatalf("fetch after 128 publishes: %d messages, %v; want 128, the last {\"last\":1}", len(b.Messages), err)
	}
}
