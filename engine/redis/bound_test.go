package redis_test

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// maxCommandsPerScript is the most Redis commands one script call may run,
// on average over an operation: a chunk of subscriptions (128) times the
// few commands each costs (at most 5), plus a constant. A session's
// subscriptions can be many more (a raised limit): they must be handled in
// several calls, so that one client never holds Redis for everyone else.
const maxCommandsPerScript = 1000

// TestScriptWorkIsBounded gives sessions far more subscriptions than a
// script may handle in one call, and checks, with Redis's own INFO
// commandstats, that no operation on them (fetch with news on every
// subscription, fetch with nothing new while every other channel was
// published to, subscriptions, remove, expiry) runs more than
// maxCommandsPerScript commands per script call. With STARDUST_WORST_SUBS=N it uses N
// subscriptions and logs SLOWLOG figures (see BENCHMARKS.md):
//
//	STARDUST_WORST_SUBS=200000 go test -count=1 -run TestScriptWorkIsBounded -v ./engine/redis
func TestScriptWorkIsBounded(t *testing.T) {
	subs := 2000
	if s := os.Getenv("STARDUST_WORST_SUBS"); s != "" {
		subs, _ = strconv.Atoi(s)
	}
	srv := redistest.Start(t)
	admin := adminOf(t, srv)
	ctx := context.Background()
	// A long timeout: before the fix, one call took seconds.
	e, err := redis.New(redis.Options{URL: srv.URL, Prefix: "bound:", Timeout: time.Minute,
		Limits: server.Limits{MaxSubscriptions: subs, QueueMaxMessages: 10}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// big and gone subscribe to /w/0 ... /w/N-1, idle to /v/0 ... /v/N-1.
	for id, prefix := range map[string]string{"big": "/w/", "gone": "/w/", "idle": "/v/"} {
		if err := e.CreateSession(ctx, server.Session{ID: id, Kind: server.KindBayeux, Timeout: time.Hour}); err != nil {
			t.Fatal(err)
		}
		subscribeMany(t, e, id, prefix, subs)
	}
	do := func(c rueidis.Completed) {
		if err := admin.Do(ctx, c).Error(); err != nil {
			t.Fatal(err)
		}
	}
	// The commands a script runs are logged too; 100 µs keeps out the
	// fast ones, so that the slowest calls stay in the log.
	do(admin.B().ConfigSet().ParameterValue().ParameterValue("slowlog-log-slower-than", "100").
		ParameterValue("slowlog-max-len", "100000").Build())
	measure := func(name string, op func()) {
		t.Helper()
		do(admin.B().ConfigResetstat().Build())
		do(admin.B().SlowlogReset().Build())
		start := time.Now()
		op()
		wall := time.Since(start)
		info, err := admin.Do(ctx, admin.B().Info().Section("commandstats").Build()).ToString()
		if err != nil {
			t.Fatal(err)
		}
		scripts, commands, usec := scriptCalls(info)
		log, err := admin.Do(ctx, admin.B().SlowlogGet().Count(-1).Build()).ToArray()
		if err != nil {
			t.Fatal(err)
		}
		var slowest int64
		for _, entry := range log {
			f, _ := entry.ToArray()
			if len(f) < 4 {
				continue
			}
			// Script calls, and the command that was one call before.
			if args, _ := f[3].AsStrSlice(); len(args) > 0 {
				if name := strings.ToLower(args[0]); strings.HasPrefix(name, "eval") || name == "hgetall" {
					us, _ := f[2].AsInt64()
					slowest = max(slowest, us)
				}
			}
		}
		per := float64(commands) / float64(max(scripts, 1))
		t.Logf("%-20s %5d script calls, %7.1f commands per call; slowest call %7d µs; Redis busy %8d µs in all; wall %v",
			name, scripts, per, slowest, usec, wall.Round(time.Millisecond))
		if per > maxCommandsPerScript {
			t.Errorf("%s: %.0f commands per script call with %d subscriptions; want at most %d", name, per, subs, maxCommandsPerScript)
		}
	}
	fetch := func(id string, want int) func() {
		return func() {
			if b, err := e.Fetch(ctx, id, 1000); err != nil || len(b.Messages) != want {
				t.Fatalf("Fetch(%s) = %d messages, %v; want %d", id, len(b.Messages), err, want)
			}
		}
	}
	measure("fetch, first poll", fetch("big", 0))
	// One message on every channel of big: each of its subscriptions has
	// news (the most a poll must look at), and every other client's
	// watermark is behind as many publishes.
	forEach(subs, func(i int) {
		if _, err := e.Publish(ctx, &server.Message{Channel: "/w/" + strconv.Itoa(i), Data: json.RawMessage(`{}`)}); err != nil {
			t.Error(err)
		}
	})
	measure("fetch, news everywhere", fetch("big", min(subs, 1000)))
	measure("fetch, idle, busy site", fetch("idle", 0))
	measure("fetch, idle again", fetch("idle", 0))
	measure("subscriptions", func() {
		if got, err := e.Subscriptions(ctx, "big"); err != nil || len(got) != subs {
			t.Fatalf("Subscriptions: %d, %v; want %d", len(got), err, subs)
		}
	})
	watch := func() { e.Watch("big", func(server.Wake) {})() }
	measure("watch (a held poll)", watch)
	measure("watch again", watch)
	measure("remove", func() {
		if ok, err := e.RemoveSession(ctx, "big"); !ok || err != nil {
			t.Fatalf("RemoveSession: %v %v", ok, err)
		}
	})
	measure("sweep (expire)", func() {
		for range 1000 {
			if _, err := e.Sweep(ctx, time.Now().Add(2*time.Hour)); err != nil {
				t.Fatal(err)
			}
			a, _ := e.Audience(ctx, lastW("/w/", subs))
			b, _ := e.Audience(ctx, lastW("/v/", subs))
			if len(a)+len(b) == 0 {
				return // the last patterns in name order: every subscription dropped from the counts
			}
		}
	})
	if st, err := e.Stats(ctx); err != nil || st.Subscriptions != 0 || st.Clients != 0 {
		t.Errorf("after removal and expiry: %+v, %v; want nothing left", st, err)
	}
	for _, ch := range []string{"/w/0", "/v/" + strconv.Itoa(subs-1), lastW("/w/", subs), lastW("/v/", subs)} {
		if a, err := e.Audience(ctx, ch); len(a) != 0 || err != nil {
			t.Errorf("audience of %s after removal and expiry: %v, %v; want none", ch, a, err)
		}
	}
}

// subscribeMany subscribes session id to prefix0 ... prefix(n-1).
func subscribeMany(t *testing.T, e server.Engine, id, prefix string, n int) {
	t.Helper()
	forEach(n, func(i int) {
		if _, err := e.Subscribe(context.Background(), id, prefix+strconv.Itoa(i)); err != nil {
			t.Error(err)
		}
	})
}

// forEach calls f(0) ... f(n-1), 32 at a time.
func forEach(n int, f func(int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// lastW returns the last of prefix0 ... prefix(n-1) in name order.
func lastW(prefix string, n int) string {
	last := ""
	for i := range n {
		last = max(last, prefix+strconv.Itoa(i))
	}
	return last
}

// scriptCalls returns, from INFO commandstats, how many scripts ran, how
// many commands they ran between them, and how long Redis spent in
// scripts and in HGETALL (what one call cost before).
func scriptCalls(info string) (scripts, commands int, usec int64) {
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		fields := strings.Split(rest, ",")
		n, _ := strconv.Atoi(fields[0])
		if len(fields) > 1 && (strings.HasPrefix(name, "eval") || name == "hgetall") {
			us, _ := strconv.ParseInt(strings.TrimPrefix(fields[1], "usec="), 10, 64)
			usec += us
		}
		switch {
		case name == "evalsha" || name == "eval":
			scripts += n
		case strings.HasPrefix(name, "config") || strings.HasPrefix(name, "slowlog") || name == "info":
		default:
			commands += n
		}
	}
	return scripts, commands, usec
}
