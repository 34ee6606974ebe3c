package redis_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// The sharded engine on a Cluster (TestSharded's cases).

// segments returns n first segments whose channels lie in n different
// shards of e, none of them avoid.
func segments(e *redis.Sharded, n int, avoid ...int) []string {
	var out []string
	used := slices.Clone(avoid)
	for i := 0; len(out) < n && i < 10000; i++ {
		seg := "s" + strconv.Itoa(i)
		if k := redis.ShardOf("/"+seg, e.Shards()); !slices.Contains(used, k) {
			used = append(used, k)
			out = append(out, seg)
		}
	}
	return out
}

// shardSpread: a site whose channels have many first segments has keys on
// every master, each key in the slot of its shard's tag, and the
// publishes' Redis work is shared by the masters.
func shardSpread(t *testing.T, c *redistest.Cluster) {
	e := openSharded(t, c, "", "spread:", 6, server.Limits{HistorySize: 10})
	ps, _ := redis.ShardPrefixes("spread:", 6)
	if err := e.CreateSession(ctx, server.Session{ID: "sp", Kind: server.KindBayeux, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for i := range 60 {
		if _, err := e.Subscribe(ctx, "sp", fmt.Sprintf("/c%d/x", i)); err != nil {
			t.Fatal(err)
		}
	}
	var masterNodes []*redistest.Server
	for _, s := range c.Nodes {
		if strings.HasPrefix(s.Do(t, "ROLE"), "[master") {
			masterNodes = append(masterNodes, s)
			s.Do(t, "CONFIG", "RESETSTAT")
		}
	}
	for range 10 {
		for i := range 60 {
			publishOn(t, e, fmt.Sprintf("/c%d/x", i), `{"n":1}`)
		}
	}
	var work []int
	total := 0
	for _, s := range masterNodes {
		n, _ := commandCalls(s.Do(t, "INFO", "commandstats"))
		work, total = append(work, n), total+n
	}
	t.Logf("600 publishes on 60 first segments: Redis commands per master %v", work)
	for i, n := range work {
		if n*5 < total { // a third each, give or take: no master below a fifth
			t.Errorf("master %s ran %d of %d commands", masterNodes[i].Addr, n, total)
		}
	}
	masters := 0
	for _, s := range masterNodes {
		masters++
		admin := clusterAdmin(t, s)
		keys, err := admin.Do(ctx, admin.B().Keys().Pattern("*{spread.*").Build()).AsStrSlice()
		if err != nil {
			t.Fatal(err)
		}
		shards := map[int]int{}
		for _, key := range keys {
			k := slices.IndexFunc(ps, func(p string) bool { return strings.HasPrefix(key, p) })
			if k < 0 || redis.KeySlot(key) != redis.KeySlot(ps[k]) {
				t.Errorf("key %q on %s: not in a shard's slot", key, s.Addr)
				continue
			}
			shards[k]++
		}
		t.Logf("master %s: %d keys of the site, by shard %v", s.Addr, len(keys), shards)
		if len(shards) != 2 {
			t.Errorf("master %s holds keys of shards %v; want 2 of the 6", s.Addr, shards)
		}
	}
	if masters != 3 {
		t.Errorf("%d masters", masters)
	}
}

// shardAcross: a session subscribed in three shards (not its home)
// receives every message once, each channel's in order, over many
// fetches: first with its watch in one process (woken for each shard),
// then polled as a Bayeux client of the ack extension whose connects
// alternate between two processes (each connect commits the batch the
// previous connect answered, announces its poll, watches and fetches, as
// the hub does). A
// shard added by another process is watched once a fetch saw it.
func shardAcross(t *testing.T, c *redistest.Cluster) {
	e1 := openSharded(t, c, "", "across:", 6, server.Limits{})
	e2 := openSharded(t, c, "", "across:", 6, server.Limits{})
	const id = "x1"
	segs := segments(e1, 3, redis.Home(e1, id))
	chans := []string{"/" + segs[0] + "/x", "/" + segs[1] + "/y", "/" + segs[2] + "/z/w"}
	if err := e1.CreateSession(ctx, server.Session{ID: id, Kind: server.KindBayeux, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{chans[0], chans[1], "/" + segs[2] + "/**"} {
		if _, err := e1.Subscribe(ctx, id, p); err != nil {
			t.Fatal(err)
		}
	}
	if subs, err := e2.Subscriptions(ctx, id); err != nil || len(subs) != 3 || !slices.IsSorted(subs) {
		t.Errorf("Subscriptions = %v, %v", subs, err)
	}
	wakes := make(chan server.Wake, 1000)
	stop := e1.Watch(id, func(w server.Wake) { wakes <- w })
	defer stop()
	const each = 50
	var wg sync.WaitGroup
	for i, ch := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range each {
				publishOn(t, e2, ch, fmt.Sprintf(`{"n":%d}`, i*1000+n))
			}
		}()
	}
	got := map[string][]int{}
	seqs := map[string][]uint64{}
	total, fetches := 0, 0
	deadline := time.Now().Add(20 * time.Second)
	var ack uint64 // the batch the previous connect answered
	for total < 3*each && time.Now().Before(deadline) {
		e := e1
		pollStop := func() {}
		if total >= each { // from then on, connects alternate between the processes
			stop()
			if fetches%2 == 1 {
				e = e2
			}
			// As the hub serves a connect: its ack first, then its poll,
			// which releases the one elsewhere (NotifyPoll) and watches
			// (whose watch waits for the other process's cursors) before
			// it fetches.
			if err := e.Commit(ctx, id, ack); err != nil {
				t.Fatal(err)
			}
			if err := e.NotifyPoll(ctx, id); err != nil {
				t.Fatal(err)
			}
			pollStop = e.Watch(id, func(server.Wake) {})
		}
		b, err := e.Fetch(ctx, id, 7)
		pollStop()
		if err != nil {
			t.Fatal(err)
		}
		fetches++
		if len(b.Messages) == 0 {
			select {
			case <-wakes:
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		shardOf := map[int]bool{}
		for _, m := range b.Messages {
			got[m.Channel] = append(got[m.Channel], numbers(m))
			seqs[m.Channel] = append(seqs[m.Channel], m.Seq)
			shardOf[redis.ShardOf(m.Channel, e1.Shards())] = true
			total++
		}
		if len(shardOf) != 1 {
			t.Errorf("one fetch answered from shards %v", shardOf)
		}
		if total < each {
			if err := e.Commit(ctx, id, b.Cursor); err != nil {
				t.Fatal(err)
			}
		} else {
			ack = b.Cursor // committed by the next connect, maybe in the other process
		}
	}
	wg.Wait()
	if err := e1.Commit(ctx, id, ack); err != nil {
		t.Fatal(err)
	}
	everyOnce(t, chans, got, each)
	for _, ch := range chans {
		if !slices.IsSorted(seqs[ch]) || len(slices.Compact(slices.Clone(seqs[ch]))) != len(seqs[ch]) {
			t.Errorf("%s: numbers not increasing: %v", ch, seqs[ch])
		}
	}
	t.Logf("%d messages of 3 shards in %d fetches", total, fetches)
	if b, err := e1.Fetch(ctx, id, 0); err != nil || len(b.Messages) != 0 {
		t.Errorf("after everything was committed: %d messages, %v", len(b.Messages), err)
	}
	if st, err := e2.Stats(ctx); err != nil || st.Clients != 1 || st.ClientsByKind[server.KindBayeux] != 1 || st.Subscriptions != 3 {
		t.Errorf("Stats = %+v, %v; want the session counted once", st, err)
	}

	// A shard added by another process: its notice wakes this watch, the
	// fetch that follows watches the new shard, and its messages wake.
	const y = "y1"
	if err := e1.CreateSession(ctx, server.Session{ID: y, Kind: server.KindBayeux, Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ywakes := make(chan server.Wake, 100)
	ystop := e1.Watch(y, func(w server.Wake) { ywakes <- w })
	defer ystop()
	seg := segments(e1, 1, redis.Home(e1, y))[0]
	if _, err := e2.Subscribe(ctx, y, "/"+seg+"/new"); err != nil {
		t.Fatal(err)
	}
	awaitWake(t, ywakes, "the other process's subscription in a new shard")
	if b, err := e1.Fetch(ctx, y, 0); err != nil || len(b.Messages) != 0 {
		t.Fatalf("Fetch = %v, %v", b.Messages, err)
	}
	for len(ywakes) > 0 {
		<-ywakes
	}
	publishOn(t, e2, "/"+seg+"/new", `{"n":7}`)
	awaitWake(t, ywakes, "a message in the new shard")
	if b, err := e1.Fetch(ctx, y, 0); err != nil || len(b.Messages) != 1 {
		t.Errorf("Fetch after the wake = %d messages, %v", len(b.Messages), err)
	}
}

func awaitWake(t *testing.T, ch <-chan server.Wake, what string) {
	t.Helper()
	if w := await(t, ch, what+": a wake"); w != server.WakeMessages {
		t.Errorf("%s: wake %v, want WakeMessages", what, w)
	}
}

// numbers returns a message's "n".
func numbers(m *server.Message) int {
	var v struct{ N int }
	_ = json.Unmarshal(m.Data, &v)
	return v.N
}

// shardFailover: SIGKILL of one master stops only the shards on it (with
// cluster-require-full-coverage no): a session whose home and channel
// live on the other masters is served all along (publish, fetch, commit,
// and the health check's Stats) until the replica is promoted, and the sessions of the dead master's
// shards are served again once it was.
func shardFailover(t *testing.T, c *redistest.Cluster) {
	e := openSharded(t, c, "", "sfo:", 6, server.Limits{HistorySize: 10})
	victimMaster, _ := c.SlotNodes(t, e.Shard(0).Prefix())
	var onDead []int
	for k := range e.Shards() {
		if m, _ := c.SlotNodes(t, e.Shard(k).Prefix()); m == victimMaster {
			onDead = append(onDead, k)
		}
	}
	idOf := func(dead bool) string {
		for i := 0; ; i++ {
			id := "f" + strconv.Itoa(i)
			if slices.Contains(onDead, redis.Home(e, id)) == dead {
				return id
			}
		}
	}
	live, victim := idOf(false), idOf(true)
	liveCh := "/" + segments(e, 1, onDead...)[0] + "/room"
	deadCh := "/" + segments(e, 1, segmentsShards(e, onDead)...)[0] + "/room"
	for id, ch := range map[string]string{live: liveCh, victim: deadCh} {
		if err := e.CreateSession(ctx, server.Session{ID: id, Kind: server.KindBayeux, Timeout: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Subscribe(ctx, id, ch); err != nil {
			t.Fatal(err)
		}
	}
	// A Cluster refuses every slot while one has no master (CLUSTERDOWN),
	// unless it may serve part of them (docs/scaling.md).
	for _, s := range c.Nodes {
		s.Do(t, "CONFIG", "SET", "cluster-require-full-coverage", "no")
	}
	victimMaster.Do(t, "WAIT", "1", "5000")
	killed := time.Now()
	victimMaster.Stop()
	promoted := make(chan time.Time, 1)
	go func() {
		c.WaitSlotMaster(t, e.Shard(0).Prefix(), victimMaster)
		promoted <- time.Now()
	}()
	// The health check reads Stats: the process stays in service.
	health := make(chan error, 1)
	go func() {
		time.Sleep(time.Second)
		started := time.Now()
		_, err := e.Stats(ctx)
		t.Logf("Stats %v after the kill: %v in %v", started.Sub(killed).Round(time.Millisecond), err, time.Since(started).Round(time.Millisecond))
		health <- err
	}()
	served, failed := 0, 0
	var at time.Time
	for at.IsZero() && time.Since(killed) < 40*time.Second { // until the promotion
		publishOn(t, e, liveCh, `{"n":1}`)
		b, err := e.Fetch(ctx, live, 0)
		if err == nil && len(b.Messages) == 1 {
			err = e.Commit(ctx, live, b.Cursor)
		} else if err == nil {
			err = fmt.Errorf("fetched %d messages, want 1", len(b.Messages))
		}
		if err != nil {
			failed++
			t.Errorf("%v after the kill: the live shards' session: %v", time.Since(killed).Round(time.Millisecond), err)
			continue
		}
		served++
		select {
		case at = <-promoted:
		default:
		}
	}
	if at.IsZero() {
		t.Fatal("no replica promoted within 40 s")
	}
	if err := <-health; err != nil {
		t.Errorf("Stats with one master down: %v; want the other shards' counts", err)
	}
	t.Logf("shards %v on the killed master; the other shards' session served %d times until the replica was promoted, %d failures; promoted %v after the kill",
		onDead, served, failed, at.Sub(killed).Round(time.Millisecond))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, perr := e.Publish(ctx, &server.Message{Channel: deadCh, Data: json.RawMessage(`{"n":2}`)})
		b, ferr := e.Fetch(ctx, victim, 0)
		if perr == nil && ferr == nil && len(b.Messages) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed master's shards not served 10 s after the promotion: %v %v", perr, ferr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// segmentsShards returns the shards not in ks.
func segmentsShards(e *redis.Sharded, ks []int) []int {
	var out []int
	for k := range e.Shards() {
		if !slices.Contains(ks, k) {
			out = append(out, k)
		}
	}
	return out
}
