package conf

import (
	"net"
	"net/url"
	"strconv"
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
		host, port, err := net.SplitHostPort(a)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
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
