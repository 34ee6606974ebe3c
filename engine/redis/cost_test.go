package redis_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// TestPublishCostIsFlat counts, with Redis's own INFO commandstats, the
// commands one publish costs with 1, 100 and 10,000 subscribers (some
// through a wildcard): it must not grow with the audience. The figures go
// to BENCHMARKS.md (go test -run TestPublishCostIsFlat -v ./engine/redis).
func TestPublishCostIsFlat(t *testing.T) {
	srv := redistest.Start(t)
	admin := adminOf(t, srv)
	var perPublish []float64
	for _, subs := range []int{1, 100, 10000} {
		e := open(t, srv.URL, fmt.Sprintf("cost%d:", subs), server.Limits{HistorySize: 10})
		perPublish = append(perPublish, publishCost(t, e, admin, subs))
		_ = e.Close()
	}
	if perPublish[2] != perPublish[0] || perPublish[1] != perPublish[0] {
		t.Errorf("commands per publish grow with the audience: %v", perPublish)
	}
}

// publishCost gives e subs subscribers of /cost/room, and returns the
// commands one publish there costs, as the Redis of admin counts them.
func publishCost(t *testing.T, e server.Engine, admin rueidis.Client, subs int) float64 {
	t.Helper()
	const publishes = 100
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range subs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id := "s" + strconv.Itoa(i)
			if err := e.CreateSession(ctx, server.Session{ID: id, Kind: server.KindStardust}); err != nil {
				t.Error(err)
				return
			}
			// Half through the channel, half through a wildcard, and
			// the first through both: every audience needs both streams.
			patterns := []string{"/cost/room"}
			switch {
			case i == 0:
				patterns = append(patterns, "/cost/*")
			case i%2 == 1:
				patterns = []string{"/cost/*"}
			}
			for _, p := range patterns {
				if _, err := e.Subscribe(ctx, id, p); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	// One publish first, so that script loading is not counted.
	if _, err := e.Publish(ctx, &server.Message{Channel: "/cost/room", Data: json.RawMessage(`{}`)}); err != nil {
		t.Fatal(err)
	}
	calls, detail := fewestCalls(t, admin, func() {
		for i := range publishes {
			n, err := e.Publish(ctx, &server.Message{Channel: "/cost/room", Data: json.RawMessage(`{"n":` + strconv.Itoa(i) + `}`)})
			if err != nil || n < subs {
				t.Fatalf("publish reached %d of %d: %v", n, subs, err)
			}
		}
	})
	per := float64(calls) / publishes
	t.Logf("%5d subscribers: %.1f Redis commands per publish (%s)", subs, per, detail)
	return per
}

// fewestCalls runs work in three windows and returns the Redis commands
// (and commandCalls's detail) of the window with the fewest, as the Redis
// of admin counts them: the engine's own background work (the epoch check
// once its pub/sub connects, a sweep) may fall into a window and only
// ever adds commands.
func fewestCalls(t *testing.T, admin rueidis.Client, work func()) (int, string) {
	t.Helper()
	calls, detail := -1, ""
	for range 3 {
		if err := admin.Do(ctx, admin.B().ConfigResetstat().Build()).Error(); err != nil {
			t.Fatal(err)
		}
		work()
		info, err := admin.Do(ctx, admin.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		if c, d := commandCalls(info); calls < 0 || c < calls {
			calls, detail = c, d
		}
	}
	return calls, detail
}

// commandCalls sums the calls of INFO commandstats (the script's own
// commands included), leaving out CONFIG and INFO (the test's own) and
// PING: the engine sends none, but every rueidis connection idle for a
// second (the test's admin connection while a slow window publishes, the
// engine's pub/sub connection) sends one to keep alive. On a Cluster,
// CLUSTER (rueidis asks for the slots every second), REPLCONF (the
// replica's acknowledgement, every second) and EXISTS (the engine's check
// that its pub/sub connection is on the slot's master, every second) are
// left out too: none is a publish's.
func commandCalls(info string) (int, string) {
	total := 0
	var parts []string
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		if strings.HasPrefix(name, "config") || strings.HasPrefix(name, "cluster") || name == "info" || name == "ping" || name == "replconf" || name == "exists" {
			continue
		}
		n, _ := strconv.Atoi(strings.Split(rest, ",")[0])
		total += n
		parts = append(parts, fmt.Sprintf("%s %d", name, n))
	}
	return total, strings.Join(parts, ", ")
}
