//go:build unix

package integration

import (
	"strconv"
	"strings"
	"testing"

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

// onRedisCluster starts a Redis Cluster and returns the master of the
// site's slot, the prefix the engine gives its keys there, and config
// with the cluster's nodes added (the last table of the shipped file
// being [engine]).
func onRedisCluster(t *testing.T, config string) (*redistest.Server, string, string) {
	t.Helper()
	c := redistest.StartCluster(t)
	var seeds []string
	for _, a := range c.Seeds {
		seeds = append(seeds, strconv.Quote(a))
	}
	const prefix = "{stardust}:" // "stardust:" of the shipped file, tagged
	master, _ := c.SlotNodes(t, prefix)
	return master, prefix, "redis_cluster = [" + strings.Join(seeds, ", ") + "]\n" + config
}
