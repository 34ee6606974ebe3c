package conf

import (
	"fmt"
	"slices"
	"strings"

	"github.com/stardust-go/stardust/server"
)

// Warnings lists settings that are valid but leave something open or weak,
// each naming its key; stardust --check prints them and the server logs
// them at start. A valid configuration may have warnings.
func (c *Config) Warnings() []string {
	var w []string
	add := func(key, format string, args ...any) {
		w = append(w, key+": "+fmt.Sprintf(format, args...))
	}
	for name, h := range c.Bayeux.Auth.Users {
		if weak, err := server.CheckHash(h); err == nil && weak {
			add("bayeux.auth.users", "%q has an unsalted sha256 hash: replace it with a bcrypt one (stardust --hash-password)", name)
		}
	}
	if weak, err := server.CheckHash(c.Comet.AuthPass); err == nil && weak {
		add("comet.auth_pass", "an unsalted sha256 hash: replace it with a bcrypt one (stardust --hash-password)")
	}

	anyone := false
	for _, a := range c.Comet.AllowFrom {
		if p, err := ParsePrefix(a); a == "*" || (err == nil && p.Bits() == 0) {
			anyone = true
		}
	}
	if anyone && c.Comet.AuthUser == "" {
		add("comet.allow_from", "anyone may publish through the Stardust API (set comet.auth_user, or list the publishers' addresses)")
	}
	if c.Server.Demo && !anyone && onlyLoopback(c.Comet.AllowFrom) {
		add("server.demo", "the demo page publishes from the browser, and comet.allow_from lets only this machine publish: add the addresses of other browsers to use it from them")
	}
	for _, tp := range c.Server.TrustedProxies {
		if p, err := ParsePrefix(tp); err == nil && p.Bits() == 0 {
			add("server.trusted_proxies", "%q trusts everyone's X-Forwarded-For: any client can claim any address, past comet.allow_from and the per-address limits", tp)
		}
	}
	for _, o := range c.Server.CORSOrigins {
		if o == "*" {
			add("server.cors_origins", "\"*\" lets pages of any site use the API with their visitors' cookies")
		}
	}

	if c.Bayeux.Enabled {
		w = append(w, c.aclWarnings()...)
		if c.Bayeux.AnonPublish {
			add("bayeux.anon_publish", "anyone may publish without a handshake, on every channel the ACL leaves open")
		}
	}
	return w
}

// aclWarnings finds rules that leave a path open: a channel tree that an
// earlier, broader rule decides for publishes (so that the narrower rule
// never applies to them), and Stardust channels that Bayeux clients may
// publish to whatever comet.allow_from says.
func (c *Config) aclWarnings() []string {
	var w []string
	rules := c.Bayeux.ACL
	for j, rj := range rules {
		for i := 0; i < j; i++ {
			ri := rules[i]
			if patternCovers(ri.Channel, rj.Channel) && !slices.Equal(ri.Publish, rj.Publish) {
				w = append(w, fmt.Sprintf("bayeux.acl[%d]: publishes to %s are decided by bayeux.acl[%d] (%s), which matches first: put the narrower rule first",
					j, rj.Channel, i, ri.Channel))
				break
			}
		}
	}
	prefix := c.Bayeux.Prefix + "/x"
	for _, r := range rules {
		if patternCovers(r.Channel, prefix) || patternCovers(r.Channel, c.Bayeux.Prefix+"/**") {
			if !slices.Contains(r.Publish, "*") {
				return w
			}
			break
		}
	}
	w = append(w, fmt.Sprintf("bayeux.acl: no rule restricts publishing to %s/**: any Bayeux client may publish to Stardust channels, whatever comet.allow_from says (add a rule such as channel = %q, publish = [\"authenticated\"])",
		c.Bayeux.Prefix, c.Bayeux.Prefix+"/**"))
	return w
}

// patternCovers reports whether every channel matching p also matches r
// (Bayeux patterns: a last segment * or **).
func patternCovers(r, p string) bool {
	rs := strings.Split(strings.Trim(r, "/"), "/")
	ps := strings.Split(strings.Trim(p, "/"), "/")
	for i, seg := range rs {
		switch {
		case seg == "**":
			return len(ps) > i
		case i >= len(ps):
			return false
		case seg == "*":
			if ps[i] == "**" {
				return false
			}
		case seg != ps[i]:
			return false
		}
	}
	return len(rs) == len(ps)
}

func onlyLoopback(list []string) bool {
	for _, a := range list {
		p, err := ParsePrefix(a)
		if err != nil || !p.Addr().IsLoopback() {
			return false
		}
	}
	return true
}
