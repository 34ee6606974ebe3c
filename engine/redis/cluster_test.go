package redis_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
	"github.com/stardust-go/stardust/server/enginetest"
)

// Redis Cluster (issue 21, point 2, its first step): a site's keys in one
// slot, on a real three-master cluster with a replica each.

func TestClusterPrefix(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"stardust:", "{stardust}:", ""},
		{"t5:", "{t5}:", ""},
		{"shop", "{shop}", ""},
		{"{shop}:", "{shop}:", ""},
		{"site:{shop}:", "site:{shop}:", ""},
		{":", "", "want a name"},
		{"{}:", "", "opens no hash tag"},
		{"{shop:", "", "opens no hash tag"},
	} {
		got, err := redis.ClusterPrefix(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ClusterPrefix(%q) = %q, %v; want an error saying %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ClusterPrefix(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// openCluster opens an engine on the cluster c under prefix (which gets its
// hash tag), with mirrors on and a 2 s timeout.
func openCluster(t *testing.T, c *redistest.Cluster, prefix string, l server.Limits) *redis.Engine {
	t.Helper()
	return openWith(t, redis.Options{Cluster: c.Seeds, Prefix: prefix, Limits: l})
}

// clusterAdmin is a connection to one node of a cluster (its own counts,
// its own INFO), not a Cluster client.
func clusterAdmin(t *testing.T, s *redistest.Server) rueidis.Client {
	t.Helper()
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr}, DisableCache: true, ForceSingleClient: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	return admin
}

// TestClusterOptions: the wrong set-ups are refused with an error naming
// the problem, before or as the engine connects.
func TestClusterOptions(t *testing.T) {
	c := redistest.StartCluster(t)
	single := redistest.Start(t)
	for _, tc := range []struct {
		name string
		o    redis.Options
		want string
	}{
		{"sentinels too", redis.Options{Cluster: c.Seeds, Sentinels: []string{"127.0.0.1:26379"}, MasterName: "m"}, "set one or the other"},
		{"unix url", redis.Options{Cluster: c.Seeds, URL: "unix:///run/redis.sock"}, "want redis:// or rediss://"},
		{"database 2", redis.Options{Cluster: c.Seeds, URL: "redis://ignored:1/2"}, "only database 0"},
		{"bad seed", redis.Options{Cluster: []string{"127.0.0.1"}}, "want host:port"},
		{"bad tag", redis.Options{Cluster: c.Seeds, Prefix: "{}:"}, "opens no hash tag"},
		{"not a cluster", redis.Options{Cluster: []string{single.Addr}}, "is not a Redis Cluster"},
		{"a cluster node as url", redis.Options{URL: c.Nodes[0].URL}, "list its nodes in redis_cluster"},
	} {
		tc.o.Timeout = 2 * time.Second
		e, err := redis.New(tc.o)
		if err == nil {
			_ = e.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New: %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestClusterConformance runs the engine conformance suite on a Cluster.
// Each case's prefix is a hash tag of its own, so the cases' slots are
// spread over the three masters.
func TestClusterConformance(t *testing.T) {
	c := redistest.StartCluster(t)
	enginetest.Run(t, enginetest.Factory{
		Open: func(t *testing.T, l server.Limits) server.Engine {
			return openCluster(t, c, fmt.Sprintf("c%d:", prefixes.Add(1)), l)
		},
		Peer: func(t *testing.T, e server.Engine, l server.Limits) server.Engine {
			return openCluster(t, c, e.(*redis.Engine).Prefix(), l)
		},
	})
}

// TestClusterKeysInOneSlot: everything a site writes on a Cluster lives
// in its tag's slot, on that slot's master (the other masters hold none
// of its keys), and keeps the names it has on one Redis after the tag.
func TestClusterKeysInOneSlot(t *testing.T) {
	c := redistest.StartCluster(t)
	e := openCluster(t, c, "site:", server.Limits{HistorySize: 10})
	if e.Prefix() != "{site}:" {
		t.Fatalf("prefix on a cluster %q; want {site}:", e.Prefix())
	}
	lostSessions(t, e)
	publishOn(t, e, "/public", `{"public":1}`)
	if _, err := readAll(t, e, "pub"); err != nil {
		t.Fatal(err)
	}
	master, _ := c.SlotNodes(t, e.Prefix())
	for _, s := range c.Nodes {
		role := s.Do(t, "ROLE")
		if !strings.HasPrefix(role, "[master") {
			continue
		}
		keys := s.Do(t, "KEYS", "*")
		if s == master {
			if !strings.Contains(keys, "{site}:s:pub") || !strings.Contains(keys, "{site}:seq") {
				t.Errorf("the slot's master %s holds %s; want the site's keys", s.Addr, keys)
			}
		} else if keys != "[]" {
			t.Errorf("master %s, not the slot's, holds %s; want nothing", s.Addr, keys)
		}
	}
}

// TestClusterPublishCostIsFlat: on a Cluster, one publish costs the slot's
// master the same commands with 1 and 1,000 subscribers.
func TestClusterPublishCostIsFlat(t *testing.T) {
	c := redistest.StartCluster(t)
	var perPublish []float64
	for _, subs := range []int{1, 1000} {
		e := openCluster(t, c, fmt.Sprintf("ccost%d:", subs), server.Limits{HistorySize: 10})
		master, _ := c.SlotNodes(t, e.Prefix())
		perPublish = append(perPublish, publishCost(t, e, clusterAdmin(t, master), subs))
		_ = e.Close()
	}
	if perPublish[1] != perPublish[0] {
		t.Errorf("commands per publish grow with the audience: %v", perPublish)
	}
}

// TestClusterFailover: SIGKILL of the master of the site's slot. The
// Cluster promotes its replica after cluster-node-timeout; meanwhile
// publishes fail as the engine being unavailable (503, retry: never
// anything else), and within a second of the promotion they work again,
// without a restart, and a session made before reads on as if nothing
// happened.
func TestClusterFailover(t *testing.T) {
	c := redistest.StartCluster(t)
	e := openCluster(t, c, "fo:", server.Limits{HistorySize: 10})
	master, _ := c.SlotNodes(t, e.Prefix())
	lostSessions(t, e)
	before := publishOn(t, e, "/public", `{"public":1}`)
	master.Do(t, "WAIT", "1", "5000")
	var promoted time.Time
	var wg sync.WaitGroup
	wg.Add(1)
	killed := time.Now()
	master.Stop()
	go func() {
		defer wg.Done()
		c.WaitSlotMaster(t, e.Prefix(), master)
		promoted = time.Now()
	}()
	failures, backAt := publishThrough(t, e, killed)
	wg.Wait()
	if backAt.IsZero() {
		t.Fatal("publishing did not work again within 60 s of the master's death")
	}
	t.Logf("master killed; publishes failed %d times; working again %v after the kill, the replica promoted %v after it",
		failures, backAt.Sub(killed).Round(time.Millisecond), promoted.Sub(killed).Round(time.Millisecond))
	if late := backAt.Sub(promoted); late > time.Second+500*time.Millisecond { // a second, and the test's 50 ms polls on a loaded machine
		t.Errorf("publishes worked again %v after the promotion; want within about a second", late)
	}
	readOn(t, e, failures, before)
}

// TestClusterFailoverLostWrites: the replica misses the last writes (its
// link to the master is cut before them), and the Cluster promotes it when
// the master dies. As after a Sentinel failover, the engine sees the
// sequence went back under another run id: the sessions of the lost data
// are unknown (their clients handshake again or get stardust.reset), and
// no one is served a message of another channel.
func TestClusterFailoverLostWrites(t *testing.T) {
	c, e, master, replica := laggingCluster(t, "lw:")
	loseSecret(t, e, "on the lagging replica", func() {
		offset := func(s *redistest.Server) string {
			return infoField(s.Do(t, "INFO", "replication"), "master_repl_offset")
		}
		if m, r := offset(master), offset(replica); m == r {
			t.Fatalf("the replica has the master's replication offset %s: the test did not make it lag", m)
		}
		master.Stop()
		c.WaitSlotMaster(t, e.Prefix(), master)
	})
}

// laggingCluster starts a Cluster and an engine on it with prefix, with
// the sessions of lostSessions and a /public message that "pub" has read,
// then cuts the link of the slot's replica (cutReplica): whatever the
// engine writes next, the replica will not have.
func laggingCluster(t *testing.T, prefix string) (c *redistest.Cluster, e *redis.Engine, master, replica *redistest.Server) {
	t.Helper()
	c = redistest.StartCluster(t)
	e = openCluster(t, c, prefix, server.Limits{HistorySize: 10})
	master, replicas := c.SlotNodes(t, e.Prefix())
	lostSessions(t, e)
	publishRead(t, e, "/public", `{"public":1}`, "pub")
	cutReplica(t, master, replicas[0])
	return c, e, master, replicas[0]
}

// cutReplica waits until replica has every write of master, then cuts
// its link for good: it offers the master a password the master does not
// have, so that it cannot come back.
func cutReplica(t *testing.T, master, replica *redistest.Server) {
	t.Helper()
	master.Do(t, "WAIT", "1", "5000")
	replica.Do(t, "CONFIG", "SET", "masterauth", "not-the-password")
	master.Do(t, "CLIENT", "KILL", "TYPE", "replica")
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(replica.Do(t, "INFO", "replication"), "master_link_status:down"); {
		if time.Now().After(deadline) {
			t.Fatal("the replica's link to its master is still up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterManualFailover: CLUSTER FAILOVER makes the replica the
// slot's master while the old one lives on (as its replica). The engine's
// pub/sub connection, on the old master, is not cut: the engine must see
// that its node no longer serves the slot and move the connection to the
// new master (where a later death or lost writes would be seen), and
// held polls carry on.
func TestClusterManualFailover(t *testing.T) {
	c := redistest.StartCluster(t)
	e := openCluster(t, c, "mf:", server.Limits{HistorySize: 10})
	master, replicas := c.SlotNodes(t, e.Prefix())
	lostSessions(t, e)
	pubsubOn := func(s *redistest.Server) bool {
		return strings.Contains(s.Do(t, "CLIENT", "LIST", "TYPE", "pubsub"), "cmd=")
	}
	if !pubsubOn(master) {
		t.Fatalf("the engine's pub/sub connection is not on the slot's master %s", master.Addr)
	}
	replicas[0].Do(t, "CLUSTER", "FAILOVER")
	promoted := c.WaitSlotMaster(t, e.Prefix(), master)
	at := time.Now()
	for !pubsubOn(promoted) || pubsubOn(master) {
		if time.Since(at) > 5*time.Second {
			t.Fatalf("the pub/sub connection did not move to the new master %s within 5 s", promoted.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the pub/sub connection moved to the new master %v after its promotion", time.Since(at).Round(time.Millisecond))
	wakes, stop := watchWakes(e, "pub")
	defer stop()
	publishOn(t, e, "/public", `{"public":1}`)
	await(t, wakes, "a watch of a /public reader woken by a publish after the failover")
	if msgs, err := readAll(t, e, "pub"); err != nil || len(msgs) != 1 {
		t.Errorf("the /public reader after the failover read %d messages, %v; want its one", len(msgs), err)
	}
}

// TestClusterFailoverPublishFirst: as TestClusterFailoverLostWrites, but
// the engine publishes on the promoted replica as soon as it answers,
// before its pub/sub connection is back and has checked the new master.
// The lost /secret message's number must not be handed out again, and
// the sessions of the lost data must still start again: the check saw the
// sequence back below what the engine had seen only until that publish
// moved it on. It failed so (the session read on, and /public's message
// took the lost one's number): a publish now refuses to hand out a number
// this process has seen, and the engine finds out then.
func TestClusterFailoverPublishFirst(t *testing.T) {
	_, e, master, _ := laggingCluster(t, "pf:")
	secret := publishRead(t, e, "/secret", `{"secret":1}`, "sec")
	killed := time.Now()
	master.Stop()
	failures, backAt := publishThrough(t, e, killed)
	if backAt.IsZero() || failures == 0 {
		t.Fatalf("publishing after the kill: %d failures, back at %v", failures, backAt)
	}
	b, err := e.Fetch(ctx, "pub", 0)
	if !errors.Is(err, server.ErrUnknownClient) {
		t.Errorf("Fetch of a session on the lagging replica, after a publish there: %d messages, %v; want ErrUnknownClient", len(b.Messages), err)
	}
	for _, m := range b.Messages {
		if m.Seq <= secret.Seq {
			t.Errorf("a /public message after the failover has seq %d; the lost /secret one had %d: a number names two messages", m.Seq, secret.Seq)
		}
	}
}

// TestClusterTLS: a Cluster that speaks TLS only (rediss://), its nodes'
// certificates signed by an authority the system trusts (SSL_CERT_FILE, in
// a child process: Go reads it once) and made out to 127.0.0.1, not to the
// URL's host. The engine checks each node's certificate (without the
// authority, New fails) against the host it reaches it at, and works.
func TestClusterTLS(t *testing.T) {
	if seeds := os.Getenv("STARDUST_TEST_TLS_SEEDS"); seeds != "" {
		e, err := redis.New(redis.Options{URL: "rediss://ignored:1/0", Cluster: strings.Split(seeds, ","), Prefix: "tls:",
			Timeout: 2 * time.Second, Limits: server.Limits{HistorySize: 10}})
		if err != nil {
			t.Fatalf("New on the TLS cluster, its authority trusted: %v", err)
		}
		defer e.Close()
		lostSessions(t, e)
		publishOn(t, e, "/public", `{"public":1}`)
		if msgs, err := readAll(t, e, "pub"); err != nil || len(msgs) != 1 {
			t.Fatalf("pub read %d, %v; want its message", len(msgs), err)
		}
		return
	}
	c := redistest.StartClusterTLS(t)
	if e, err := redis.New(redis.Options{URL: "rediss://ignored:1/0", Cluster: c.Seeds, Timeout: 2 * time.Second}); err == nil {
		_ = e.Close()
		t.Fatal("New on a TLS cluster whose authority is not trusted succeeded: certificates are not checked")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("New on a TLS cluster whose authority is not trusted: %v; want a certificate error", err)
	}
	child := exec.Command(os.Args[0], "-test.run=^TestClusterTLS$", "-test.v")
	child.Env = append(os.Environ(), "SSL_CERT_FILE="+c.CAFile, "STARDUST_TEST_TLS_SEEDS="+strings.Join(c.Seeds, ","))
	out, err := child.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestClusterTLS") {
		t.Fatalf("the engine on the TLS cluster: %v\n%s", err, out)
	}
}

// infoField returns a field of Redis's INFO answer ("" if absent).
func infoField(info, name string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
