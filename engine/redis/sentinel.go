package redis

import (
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/redis/rueidis"
)

// sentinelRefresh is how often the engine asks the sentinels who the master
// is, besides following their +switch-master notices at once: a notice
// missed (the sentinel connection was down at that moment) would otherwise
// bind the engine to a demoted master until a restart.
const sentinelRefresh = time.Second

// reconnectMax bounds the wait between two tries of the pub/sub connection
// (listen, pubsub.go): held polls are woken only once it is back, so that
// after a failover (or a restart) they carry on within this of Redis
// answering again. A try every quarter second costs nothing while Redis is
// away. It was 2 s: after a Sentinel failover of 2.3 s, held clients then
// waited 1.7 s more (TestSentinelFailover, integration).
const reconnectMax = 250 * time.Millisecond

// clientOption turns Options into rueidis's: the URL alone (one server), or
// with Sentinels, the sentinels to ask for MasterName's master, the URL
// then giving only what the master needs (password, database, TLS), or with
// Cluster, a Cluster's seed nodes (cluster.go).
func clientOption(opts Options) (rueidis.ClientOption, error) {
	co, err := rueidis.ParseURL(opts.URL)
	if err != nil {
		return co, fmt.Errorf("redis engine: url %q: %w", opts.URL, err)
	}
	co.DisableCache = true
	// Every connection keeps a reader, which sees Redis go at once: a
	// connection used one call at a time otherwise has none between calls,
	// and after a restart its next call failed (a 503 with Redis up again).
	co.AlwaysPipelining = true
	co.ConnWriteTimeout = opts.Timeout
	co.Dialer.Timeout = opts.Timeout
	if len(opts.Cluster) > 0 {
		return clusterOption(co, opts) // cluster.go
	}
	if len(opts.Sentinels) == 0 {
		return co, nil
	}
	if opts.MasterName == "" {
		return co, fmt.Errorf("redis engine: sentinels %v without a master name", opts.Sentinels)
	}
	for _, a := range opts.Sentinels {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return co, fmt.Errorf("redis engine: sentinel %q: want host:port: %w", a, err)
		}
	}
	if co.DialCtxFn != nil { // a unix:// URL: a master that sentinels name is at host:port
		return co, fmt.Errorf("redis engine: url %q: with sentinels, want redis:// or rediss://", opts.URL)
	}
	co.InitAddress = append([]string(nil), opts.Sentinels...)
	co.Sentinel = rueidis.SentinelOption{
		MasterSet:               opts.MasterName,
		Password:                opts.SentinelPassword,
		Dialer:                  net.Dialer{Timeout: opts.Timeout},
		TLSConfig:               co.TLSConfig,
		TopologyRefreshInterval: sentinelRefresh,
	}
	return co, nil
}

// where names the Redis the engine uses, for errors: never a password.
func (o Options) where() string {
	if len(o.Cluster) > 0 {
		return fmt.Sprintf("cluster %v", o.Cluster)
	}
	if len(o.Sentinels) > 0 {
		return fmt.Sprintf("master %q of sentinels %v", o.MasterName, o.Sentinels)
	}
	if u, err := url.Parse(o.URL); err == nil {
		return u.Redacted()
	}
	return "the url"
}
