package conf

import (
	"net"
	"net/url"
	"strconv"
	"strings"
)

// validateSentinels checks the Sentinel keys of a Redis engine: each
// sentinel a host:port, a master name with them (and only with them), and a
// redis_url the master can be reached with (not a unix socket: sentinels
// name a host and port). u is the parsed redis_url, nil if it did not parse.
func (e *Engine) validateSentinels(p *problems, u *url.URL) {
	if len(e.RedisSentinels) == 0 {
		if e.RedisMasterName != "" {
			p.add("engine.redis_master_name", "set without engine.redis_sentinels; set both, or neither")
		}
		if e.RedisSentinelPassword != "" {
			p.add("engine.redis_sentinel_password", "set without engine.redis_sentinels")
		}
		return
	}
	for i, a := range e.RedisSentinels {
		if !hostPort(a) {
			p.add("engine.redis_sentinels["+strconv.Itoa(i)+"]", "want host:port, like \"10.0.0.1:26379\", got %q", a)
		}
	}
	if e.RedisMasterName == "" {
		p.add("engine.redis_master_name", "must be set with engine.redis_sentinels: the name the sentinels monitor the master under (sentinel monitor NAME ...)")
	}
	if u != nil && u.Scheme == "unix" {
		p.add("engine.redis_url", "with engine.redis_sentinels, want redis:// or rediss:// (the sentinels name the master's host and port), got %q", e.RedisURL)
	}
}

// validateCluster checks the Redis Cluster keys of a Redis engine: each
// seed node a host:port, not with sentinels (a Cluster fails over by
// itself), a redis_url that gives only a password and TLS (not a socket,
// database 0), and a prefix whose first "{" opens a hash tag, if it has
// one (without, the engine makes one of it: "stardust:" is "{stardust}:").
// u is the parsed redis_url, nil if it did not parse.
func (e *Engine) validateCluster(p *problems, u *url.URL) {
	if len(e.RedisCluster) == 0 {
		return
	}
	for i, a := range e.RedisCluster {
		if !hostPort(a) {
			p.add("engine.redis_cluster["+strconv.Itoa(i)+"]", "want host:port, like \"10.0.0.1:6379\", got %q", a)
		}
	}
	if len(e.RedisSentinels) > 0 {
		p.add("engine.redis_cluster", "set with engine.redis_sentinels: set one or the other (a Redis Cluster fails over by itself)")
	}
	if u != nil && u.Scheme == "unix" {
		p.add("engine.redis_url", "with engine.redis_cluster, want redis:// or rediss:// (the Cluster names its nodes' hosts and ports), got %q", e.RedisURL)
	}
	if u != nil && u.Scheme != "unix" && strings.Trim(u.Path, "/") != "" && strings.Trim(u.Path, "/") != "0" {
		p.add("engine.redis_url", "with engine.redis_cluster, want database 0 (a Redis Cluster has no other), got %q", u.Redacted())
	}
	if open := strings.IndexByte(e.RedisPrefix, '{'); open >= 0 {
		if end := strings.IndexByte(e.RedisPrefix[open+1:], '}'); end <= 0 {
			p.add("engine.redis_prefix", "with engine.redis_cluster, its first \"{\" must open a hash tag like \"{stardust}:\" (or write none: the engine makes one), got %q", e.RedisPrefix)
		}
	}
}

// validateShards checks redis_shards: 1 to 256 (the Redis engine's
// MaxShards: cmd/stardust's TestRedisShardsBound), and above 1 only with
// redis_cluster (on one Redis, shards are only prefixes: no capacity, and
// every poll of a session in several of them costs more).
func (e *Engine) validateShards(p *problems) {
	switch {
	case e.RedisShards < 1 || e.RedisShards > 256:
		p.add("engine.redis_shards", "want 1 (one slot) to 256, got %d", e.RedisShards)
	case e.RedisShards > 1 && len(e.RedisCluster) == 0:
		p.add("engine.redis_shards", "%d shards need engine.redis_cluster: on one Redis they add no capacity", e.RedisShards)
	}
}

// hostPort reports whether a is host:port with a host and a port number.
func hostPort(a string) bool {
	host, port, err := net.SplitHostPort(a)
	n, perr := strconv.Atoi(port)
	return err == nil && host != "" && perr == nil && n >= 1 && n <= 65535
}
