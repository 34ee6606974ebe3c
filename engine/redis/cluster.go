package redis

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Redis Cluster. A site's keys all carry one hash tag (the prefix's), so
// that they live in one slot, on one master: every script touches one
// slot, as a Cluster demands, and each one names the prefix in its KEYS,
// by which rueidis sends it to that slot's master (Engine.script). The
// pub/sub connection is bound to that master too (connectPubSub), so that
// its death is seen as a Sentinel failover is: the connection drops, and
// the reconnection checks the run_id and sequence of whichever replica
// took over (checkEpoch). A Cluster so gives failover by its own replicas;
// capacity comes with Sharded (shard.go): one such engine per shard, each
// under a tag of its own, spread over the masters.

// clusterRefresh is how often rueidis asks the Cluster which node serves
// which slot, besides when a call fails or is redirected: a promotion is
// then followed within about this of the cluster's own.
const clusterRefresh = time.Second

// clusterDownRetry is how long a call answered CLUSTERDOWN waits before it
// tries again, within its timeout (Engine.exec).
const clusterDownRetry = 50 * time.Millisecond

// ClusterPrefix returns the key prefix a site uses on a Redis Cluster: the
// prefix itself when it has a hash tag ("{shop}:"; the tag being the
// first "{...}"), else the prefix with its name made one ("stardust:"
// becomes "{stardust}:"). Every key of the site then hashes to one slot.
func ClusterPrefix(prefix string) (string, error) {
	open := strings.IndexByte(prefix, '{')
	if open < 0 {
		name := strings.TrimRight(prefix, ":")
		if name == "" {
			return "", fmt.Errorf("redis engine: prefix %q: want a name to make a hash tag of, like \"stardust:\"", prefix)
		}
		return "{" + name + "}" + prefix[len(name):], nil
	}
	end := strings.IndexByte(prefix[open+1:], '}')
	if end <= 0 { // no "}", or "{}": Redis would hash each whole key, spreading the site over every slot
		return "", fmt.Errorf("redis engine: prefix %q: its first \"{\" opens no hash tag (want \"{name}\" with a name, like \"{stardust}:\")", prefix)
	}
	return prefix, nil
}

// clusterOption completes co, parsed from the URL, for the seed nodes of a
// Cluster: the URL gives the password and TLS only.
func clusterOption(co rueidis.ClientOption, opts Options) (rueidis.ClientOption, error) {
	if len(opts.Sentinels) > 0 {
		return co, fmt.Errorf("redis engine: cluster %v and sentinels %v: set one or the other (a Cluster fails over by itself)", opts.Cluster, opts.Sentinels)
	}
	for _, a := range opts.Cluster {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return co, fmt.Errorf("redis engine: cluster node %q: want host:port: %w", a, err)
		}
	}
	if co.DialCtxFn != nil {
		return co, fmt.Errorf("redis engine: url %q: with a cluster, want redis:// or rediss:// (the cluster names its nodes' hosts and ports)", opts.URL)
	}
	if co.SelectDB != 0 {
		return co, fmt.Errorf("redis engine: url %q: database %d; a Redis Cluster has only database 0", opts.URL, co.SelectDB)
	}
	if co.TLSConfig != nil {
		// rueidis names the URL's host as the server for TLS; a Cluster's
		// nodes are each checked against the host they are reached at (a
		// seed's, then the one the Cluster announces), as tls.Dialer does
		// when no name is set.
		co.TLSConfig = co.TLSConfig.Clone()
		co.TLSConfig.ServerName = ""
	}
	co.InitAddress = append([]string(nil), opts.Cluster...)
	co.ShuffleInit = true // the processes of a site spread their first CLUSTER SLOTS
	co.ClusterOption.ShardsRefreshInterval = clusterRefresh
	return co, nil
}

// checkMode refuses a client of the wrong kind: a Cluster's seed nodes
// that are not a Cluster (rueidis falls back to one server when a single
// seed refuses CLUSTER SLOTS), or a redis_url naming a Cluster node
// (rueidis then makes a Cluster client, and every script would fail for
// touching keys of several slots).
func checkMode(opts Options, c rueidis.Client) error {
	cluster := c.Mode() == rueidis.ClientModeCluster
	switch {
	case len(opts.Cluster) > 0 && !cluster:
		return fmt.Errorf("redis engine: cluster %v is not a Redis Cluster (cluster_enabled:0): use redis_url for one server", opts.Cluster)
	case len(opts.Cluster) == 0 && len(opts.Sentinels) == 0 && cluster:
		return fmt.Errorf("redis engine: %s is a node of a Redis Cluster: list its nodes in redis_cluster", opts.where())
	}
	return nil
}
