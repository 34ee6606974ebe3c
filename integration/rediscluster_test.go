//go:build unix

package integration

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/redistest"
)

// TestClusterOnRedisCluster is TestCluster (three stardust processes
// behind nginx, with the shipped conf/stardust-redis.toml and
// conf/nginx/cluster.conf) on a Redis Cluster of three masters with a
// replica each, the engine given its nodes by engine.redis_cluster
// (issue 21, point 2): every case passes as on one redis-server.
func TestClusterOnRedisCluster(t *testing.T) {
	t.Parallel()
	clusterTests(t, startClusterWith(t, clusterSetup{redisCluster: true}))
}

// TestClusterOnRedisShards is TestCluster on a Redis Cluster with the site
// split into six shards by channel (engine.redis_shards, two on each
// master): every case passes as on one redis-server.
func TestClusterOnRedisShards(t *testing.T) {
	t.Parallel()
	clusterTests(t, startClusterWith(t, clusterSetup{redisCluster: true, redisShards: 6}))
}

// onRedisCluster starts a Redis Cluster and returns the master of the
// site's slot (with shards: of the shard of the tests' /stardust/
// channels), the prefix the engine gives its keys there, and config with
// the cluster's nodes (and shards) added (the last table of the shipped
// file being [engine]).
func onRedisCluster(t *testing.T, config string, shards int) (*redistest.Server, string, string) {
	t.Helper()
	c := redistest.StartCluster(t)
	var seeds []string
	for _, a := range c.Seeds {
		seeds = append(seeds, strconv.Quote(a))
	}
	prefix := "{stardust}:" // "stardust:" of the shipped file, tagged
	if shards > 1 {
		ps, err := redis.ShardPrefixes("stardust:", shards)
		if err != nil {
			t.Fatal(err)
		}
		prefix = ps[redis.ShardOf("/stardust", shards)]
		config = "redis_shards = " + strconv.Itoa(shards) + "\n" + config
	}
	master, _ := c.SlotNodes(t, prefix)
	return master, prefix, "redis_cluster = [" + strings.Join(seeds, ", ") + "]\n" + config
}

// TestRedisClusterFailover runs docs/scaling.md's Redis Cluster
// configuration on a Cluster of three masters with a replica each
// (cluster-node-timeout 1 s): two stardust processes, 500 Bayeux
// long-polling clients with the ack extension and a publisher, and SIGKILL
// of the master of the site's slot under that load (failoverUnderLoad).
// The Cluster promotes its replica; stardust follows it with no restart,
// and no client loses a message, gets one twice or one of another channel.
func TestRedisClusterFailover(t *testing.T) {
	c := redistest.StartCluster(t)
	var pairs []string
	for i, a := range c.Seeds[:3] {
		pairs = append(pairs, fmt.Sprintf("127.0.0.1:%d", 7000+i), a)
	}
	cfg := rewritePlaceholders(t, "docs/scaling.md", docsSnippet(t, "Redis Cluster"), pairs...)
	const tag = "{stardust}:" // the snippet's prefix, tagged
	master, replicas := c.SlotNodes(t, tag)
	// The pub/sub connection finds the new master through the slot map,
	// which rueidis refreshes every second (engine/redis clusterRefresh):
	// up to that much after the publishes' first call that learnt it. Seen
	// 0.7 to 0.9 s more on a quiet machine, 1.6 s on a loaded one.
	out := failoverUnderLoad(t, cfg, master.Stop, 2500*time.Millisecond)
	promoted, _ := c.SlotNodes(t, tag)
	t.Logf("the Cluster promoted %s", promoted.Addr)
	if promoted != replicas[0] {
		t.Errorf("the slot's master is %s; want its replica %s promoted", promoted.Addr, replicas[0].Addr)
	}
	// The Cluster's own time: a master silent for cluster-node-timeout is
	// failing, the others agree, the replica waits 0.5 to 1 s and is voted
	// in; then stardust within a second.
	if out > 5*redistest.ClusterNodeTimeout+5*time.Second {
		t.Errorf("publishes failed for %v after the kill; want about the failover time (a few seconds)", out)
	}
}
