package redis_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
	"github.com/stardust-go/stardust/server/enginetest"
)

// Sharding by channel (issue 21, point 2): a site split into shards, each
// a slot of its own, spread over the masters of a Cluster (shard.go).

// openSharded opens a sharded engine of n shards under prefix, on the
// Cluster c or (c nil) on the one Redis at url, with mirrors on.
func openSharded(t *testing.T, c *redistest.Cluster, url, prefix string, n int, l server.Limits) *redis.Sharded {
	t.Helper()
	o := redis.Options{URL: url, Prefix: prefix, Shards: n, Limits: l, Timeout: 2 * time.Second, Mirror: true}
	if c != nil {
		o.Cluster = c.Seeds
	}
	e, err := redis.NewSharded(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// TestKeySlot: the engine's CRC16 is Redis's (CLUSTER KEYSLOT), and the
// shards' tags fall in n equal ranges of the slots, in order.
func TestKeySlot(t *testing.T) {
	// Values of Redis's documentation (CLUSTER KEYSLOT) and of CRC16/XMODEM;
	// TestSharded compares more with a Cluster's own answers.
	for k, want := range map[string]int{"somekey": 11058, "foo{hash_tag}": 2515, "bar{hash_tag}": 2515, "123456789": 0x31c3, "{}x": redis.KeySlot("{}x")} {
		if got := redis.KeySlot(k); got != want {
			t.Errorf("KeySlot(%q) = %d, want %d", k, got, want)
		}
	}
	for _, n := range []int{2, 3, 6, 16, 256} {
		ps, err := redis.ShardPrefixes("stardust:", n)
		if err != nil {
			t.Fatal(err)
		}
		for k, p := range ps {
			slot := redis.KeySlot(p)
			if lo, hi := k*16384/n, (k+1)*16384/n; slot < lo || slot >= hi {
				t.Errorf("%d shards: shard %d's prefix %q in slot %d, not in [%d, %d)", n, k, p, slot, lo, hi)
			}
		}
	}
	if ps, _ := redis.ShardPrefixes("site:{shop}:", 2); ps[0][:11] != "site:{shop." {
		t.Errorf("prefix with a tag: shards %v", ps)
	}
	for _, n := range []int{0, 1000} {
		if _, err := redis.ShardPrefixes("stardust:", n); err == nil {
			t.Errorf("%d shards accepted", n)
		}
	}
}

// TestShardedConformanceOneRedis runs the conformance suite on a sharded
// engine of three shards on one Redis: the routing without a Cluster.
func TestShardedConformanceOneRedis(t *testing.T) {
	srv := redistest.Start(t)
	enginetest.Run(t, enginetest.Factory{
		Open: func(t *testing.T, l server.Limits) server.Engine {
			return openSharded(t, nil, srv.URL, fmt.Sprintf("sh%d:", prefixes.Add(1)), 3, l)
		},
		Peer: func(t *testing.T, e server.Engine, l server.Limits) server.Engine {
			return openSharded(t, nil, srv.URL, e.(*redis.Sharded).Prefix(), 3, l)
		},
	})
}

// TestSharded runs the sharded engine on one three-master Cluster (each
// start costs about ten seconds): the conformance suite, the spread of
// the keys over the masters, the publish cost, a session across shards,
// and last a master's failover.
func TestSharded(t *testing.T) {
	c := redistest.StartCluster(t)
	t.Run("KeySlot", func(t *testing.T) { shardKeySlot(t, c) })
	t.Run("Conformance", func(t *testing.T) {
		enginetest.Run(t, enginetest.Factory{
			Open: func(t *testing.T, l server.Limits) server.Engine {
				return openSharded(t, c, "", fmt.Sprintf("cs%d:", prefixes.Add(1)), 6, l)
			},
			Peer: func(t *testing.T, e server.Engine, l server.Limits) server.Engine {
				return openSharded(t, c, "", e.(*redis.Sharded).Prefix(), 6, l)
			},
		})
	})
	t.Run("Spread", func(t *testing.T) { shardSpread(t, c) })
	t.Run("PublishCostIsFlat", func(t *testing.T) {
		var perPublish []float64
		for _, subs := range []int{1, 1000} {
			e := openSharded(t, c, "", fmt.Sprintf("scost%d:", subs), 6, server.Limits{HistorySize: 10})
			master, _ := c.SlotNodes(t, e.Shard(redis.ShardOf("/cost/room", e.Shards())).Prefix())
			perPublish = append(perPublish, publishCost(t, e, clusterAdmin(t, master), subs))
			_ = e.Close()
		}
		if perPublish[1] != perPublish[0] {
			t.Errorf("commands per publish grow with the audience: %v", perPublish)
		}
	})
	t.Run("AcrossShards", func(t *testing.T) { shardAcross(t, c) })
	t.Run("Failover", func(t *testing.T) { shardFailover(t, c) })
}

// shardKeySlot: KeySlot answers as the Cluster's CLUSTER KEYSLOT.
func shardKeySlot(t *testing.T, c *redistest.Cluster) {
	ps, err := redis.ShardPrefixes("stardust:", 6)
	if err != nil {
		t.Fatal(err)
	}
	keys := append([]string{"stardust", "{stardust}:seq", "a{b}c", "{}x", "{x", "x}", "", "{stardust.1.7}:s:abc"}, ps...)
	for _, k := range keys {
		if got, want := strconv.Itoa(redis.KeySlot(k)), c.Nodes[0].Do(t, "CLUSTER", "KEYSLOT", k); got != want {
			t.Errorf("KeySlot(%q) = %s, CLUSTER KEYSLOT = %s", k, got, want)
		}
	}
}

// TestShardedCopyLost: a session whose copy in another shard is gone (that
// shard's Redis lost it, or it expired before its home) ends whole, so
// that its client starts again rather than miss that shard's messages:
// the next fetch expires it (its watch is told WakeExpired), and a copy
// expired first makes the sweep report the session once.
func TestShardedCopyLost(t *testing.T) {
	srv := redistest.Start(t)
	e := openSharded(t, nil, srv.URL, "lost:", 3, server.Limits{})
	admin := adminOf(t, srv)
	ps, _ := redis.ShardPrefixes("lost:", 3)
	start := func(id string) int {
		t.Helper()
		if err := e.CreateSession(ctx, server.Session{ID: id, Kind: server.KindBayeux, Timeout: time.Minute}); err != nil {
			t.Fatal(err)
		}
		seg := segments(e, 1, redis.Home(e, id))[0] // a shard not its home
		if _, err := e.Subscribe(ctx, id, "/"+seg+"/x"); err != nil {
			t.Fatal(err)
		}
		return redis.ShardOf("/"+seg, e.Shards())
	}

	k := start("a")
	wakes := make(chan server.Wake, 10)
	stop := e.Watch("a", func(w server.Wake) { wakes <- w })
	defer stop()
	if err := admin.Do(ctx, admin.B().Del().Key(ps[k]+"s:a").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Fetch(ctx, "a", 0); !errors.Is(err, server.ErrUnknownClient) {
		t.Errorf("Fetch with the copy gone: %v, want ErrUnknownClient", err)
	}
	if _, err := e.Session(ctx, "a"); !errors.Is(err, server.ErrUnknownClient) {
		t.Errorf("the session after its copy was lost: %v, want it gone", err)
	}
	if w := await(t, wakes, "the watch woken"); w != server.WakeExpired {
		t.Errorf("watch woken with %v, want WakeExpired", w)
	}

	k = start("b")
	if err := admin.Do(ctx, admin.B().Zadd().Key(ps[k]+"sessions").ScoreMember().ScoreMember(1, "b").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	gone, err := e.Sweep(ctx, time.Now())
	if err != nil || len(gone) != 1 || gone[0].ID != "b" {
		t.Errorf("Sweep with b's copy expired = %v, %v; want b once", gone, err)
	}
	if _, err := e.Session(ctx, "b"); !errors.Is(err, server.ErrUnknownClient) {
		t.Errorf("b after its copy expired: %v, want it gone", err)
	}
	if st, err := e.Stats(ctx); err != nil || st.Clients != 0 {
		t.Errorf("Stats after both ended = %+v, %v; want no client", st, err)
	}
}

// TestShardedPollCost counts the Redis commands of a poll's fetch and
// commit (mirrors off: a poll that another process's mirror does not
// serve) of one message, for a session subscribed in its home only, and
// in three shards, against the one-slot engine's. The figures are in
// docs/scaling.md ("What a wildcard costs").
func TestShardedPollCost(t *testing.T) {
	srv := redistest.Start(t)
	admin := adminOf(t, srv)
	plain, err := redis.New(redis.Options{URL: srv.URL, Prefix: "pc1:", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Close() })
	sh, err := redis.NewSharded(redis.Options{URL: srv.URL, Prefix: "pc3:", Shards: 3, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sh.Close() })
	cost := func(e server.Engine, id string, chans []string) float64 {
		t.Helper()
		if err := e.CreateSession(ctx, server.Session{ID: id, Kind: server.KindBayeux, Timeout: time.Minute}); err != nil {
			t.Fatal(err)
		}
		for _, ch := range chans {
			if _, err := e.Subscribe(ctx, id, ch); err != nil {
				t.Fatal(err)
			}
		}
		const polls = 30
		best, _ := fewestCalls(t, admin, func() {
			for i := range polls {
				publishOn(t, e, chans[i%len(chans)], `{"n":1}`)
				b, err := e.Fetch(ctx, id, 0)
				if err != nil || len(b.Messages) != 1 {
					t.Fatalf("fetch: %d messages, %v", len(b.Messages), err)
				}
				if err := e.Commit(ctx, id, b.Cursor); err != nil {
					t.Fatal(err)
				}
			}
		})
		return float64(best) / polls
	}
	one := cost(plain, "p", []string{"/a/x"})
	seg := segments(sh, 1, segmentsShards(sh, []int{redis.Home(sh, "h")})...)[0] // in its home shard
	home := cost(sh, "h", []string{"/" + seg + "/x"})
	segs := segments(sh, 3)
	three := cost(sh, "m", []string{"/" + segs[0] + "/x", "/" + segs[1] + "/x", "/" + segs[2] + "/x"})
	t.Logf("Redis commands per publish + fetch + commit of one message: one slot %.1f; sharded, session in its home shard %.1f, in three shards %.1f", one, home, three)
	if home > one+6 || three > one+6+2*10 {
		t.Errorf("sharded polls cost %.1f and %.1f commands, the one-slot engine's %.1f", home, three, one)
	}
}

// TestShardedWakesAgain: a fetch answers from one shard; when it had news,
// the session's watch is woken again at once, so that a seam that fetches
// only when woken (a WebSocket's, an SSE stream's) takes the other shards'
// news without waiting for another message.
func TestShardedWakesAgain(t *testing.T) {
	srv := redistest.Start(t)
	e := openSharded(t, nil, srv.URL, "again:", 3, server.Limits{})
	if err := e.CreateSession(ctx, server.Session{ID: "w", Kind: server.KindStardust, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	segs := segments(e, 3)
	for _, seg := range segs {
		if _, err := e.Subscribe(ctx, "w", "/"+seg+"/x"); err != nil {
			t.Fatal(err)
		}
	}
	wakes := make(chan server.Wake, 100)
	stop := e.Watch("w", func(w server.Wake) { wakes <- w })
	defer stop()
	for _, seg := range segs {
		publishOn(t, e, "/"+seg+"/x", `{"n":1}`)
	}
	got := 0
	for range 3 {
		await(t, wakes, fmt.Sprintf("a wake with %d of 3 messages fetched", got))
		for len(wakes) > 0 { // the seam fetches once for the wakes that came meanwhile
			<-wakes
		}
		b, err := e.Fetch(ctx, "w", 0)
		if err != nil {
			t.Fatal(err)
		}
		got += len(b.Messages)
		if err := e.Commit(ctx, "w", b.Cursor); err != nil {
			t.Fatal(err)
		}
	}
	if got != 3 {
		t.Errorf("three fetches, each after a wake, got %d of 3 messages", got)
	}
}

// TestShardedAcrossProcesses runs the cross-process tests again with each
// process's engine a site in three shards: the server API (users'
// sessions found in their homes, history in the channel's shard, the
// process count in shard 0), presence and join/leave in the channel's
// shard, a channel deleted in its shard, the gap notice of a poll
// resuming before what history keeps, webhooks (occupancy and members in
// the channel's shard, the queue in shard 0, each transition sent once),
// and the shared limits on three processes (the sessions of an address or
// a user have their homes in every shard, and are counted as one).
func TestShardedAcrossProcesses(t *testing.T) {
	apiEngine = func(t *testing.T, url, prefix string, l server.Limits) server.Engine {
		return openSharded(t, nil, url, prefix, 3, l)
	}
	defer func() { apiEngine = openOne }()
	t.Run("API", TestAPIAcrossProcesses)
	t.Run("Webhooks", TestWebhooksAcrossProcesses)
	t.Run("AddressSessionCap", TestSharedAddressSessionCap)
	t.Run("AddressSessionRate", TestSharedAddressSessionRate)
	t.Run("UserSessionCap", TestSharedUserSessionCap)
	t.Run("Presence", TestPresenceAcrossProcesses)
	t.Run("Gap", TestGapAcrossProcesses)
	t.Run("JoinLeave", TestJoinLeaveAcrossProcesses)
	t.Run("ChannelDelete", TestChannelDeleteAcrossProcesses)
}

// TestShardedNoForeignMessageAfterFlush: FLUSHALL under a running sharded
// engine: every shard lost its data; the sessions are unknown, start
// again, and a /public reader gets only its own message, whatever the
// shards of /public, /secret and the sessions' homes.
func TestShardedNoForeignMessageAfterFlush(t *testing.T) {
	srv := redistest.Start(t)
	admin := adminOf(t, srv)
	e := openSharded(t, nil, srv.URL, "slost:", 3, server.Limits{HistorySize: 10})
	lostSessions(t, e)
	secret := flushUnder(t, e, admin)
	startAgain(t, e, "pub")
	checkPublic(t, e, secret)
}
