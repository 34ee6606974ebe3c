package conf

import (
	"fmt"
	"net"
	"net/netip"
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
	if c.Server.Demo && !anyone && onlyLoopback(c.Comet.AllowFrom) && !listensOnLoopback(c.Server.Listen) {
		add("server.demo", "the demo page publishes from the browser, and comet.allow_from lets only this machine publish: add the addresses of other browsers to use it from them")
	}
	for _, a := range c.Metrics.AllowFrom {
		if p, err := ParsePrefix(a); a == "*" || (err == nil && p.Bits() == 0) {
			add("metrics.allow_from", "%q lets anyone read the metrics, {base}/stats and pprof (the server's load, clients and internals): list the monitoring hosts instead", a)
		}
	}
	if k := c.API.Key; k != "" && len(k) < server.APIMinKeyLength {
		add("api.key", "%d characters: use at least %d random ones (openssl rand -hex 32), it lets its holder publish anywhere and disconnect anyone", len(k), server.APIMinKeyLength)
	}
	for _, a := range c.API.AllowFrom {
		if p, err := ParsePrefix(a); c.API.Key != "" && (a == "*" || (err == nil && p.Bits() == 0)) {
			add("api.allow_from", "%q lets anyone try api.key: list the site's back-end hosts instead", a)
		}
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

// aclWarnings finds rules that leave a path open: rules that can never
// decide, every one of them, and a rule that lets any Bayeux client publish
// to the Stardust channels whatever comet.allow_from says.
//
// How server.RulesACL decides: for a publish, the first rule matching the
// channel; for a subscription, the first rule covering it, every earlier
// rule that overlaps it having allowed it. So a rule that an earlier rule
// covers is never reached for its own channels, for subscriptions as for
// publishes: if the two differ on who may subscribe or publish, the earlier
// one decides, which is how a narrow rule after a broad one once let
// anonymous readers into a protected history. Meta messages are not checked
// at all (and meta channels cannot be subscribed to).
func (c *Config) aclWarnings() []string {
	var w []string
	rules := c.Bayeux.ACL
	for j, rj := range rules {
		if server.IsMeta(strings.TrimSuffix(strings.TrimSuffix(rj.Channel, "/**"), "/*")) {
			w = append(w, fmt.Sprintf("bayeux.acl[%d]: never decides: /meta/** channels are not subject to the rules (meta messages are not checked, meta channels cannot be subscribed to); remove it",
				j))
			continue
		}
		i := slices.IndexFunc(rules[:j], func(ri ACL) bool { return patternCovers(ri.Channel, rj.Channel) })
		if i < 0 {
			continue
		}
		ri, differ := rules[i], false
		for _, a := range []struct {
			what   string
			ri, rj []string
		}{{"subscriptions", ri.Subscribe, rj.Subscribe}, {"publishes", ri.Publish, rj.Publish}} {
			if !sameWho(a.ri, a.rj) {
				differ = true
				w = append(w, fmt.Sprintf("bayeux.acl[%d]: %s to %s are decided by bayeux.acl[%d] (%s), which matches first: put the narrower rule first",
					j, a.what, rj.Channel, i, ri.Channel))
			}
		}
		if !differ {
			w = append(w, fmt.Sprintf("bayeux.acl[%d]: never decides: bayeux.acl[%d] (%s) matches every channel of %s first, with the same lists; remove it",
				j, i, ri.Channel, rj.Channel))
		}
	}
	if i := c.Bayeux.PrefixRule(); i >= 0 && slices.Contains(rules[i].Publish, "*") {
		w = append(w, fmt.Sprintf("bayeux.acl[%d]: lets any Bayeux client publish to %s/**, whatever comet.allow_from says (publish = [\"authenticated\"] would not; without a rule for them, Stardust channels take Bayeux publishes from comet.allow_from's addresses only)",
			i, c.Bayeux.Prefix))
	}
	return w
}

// PrefixRule is the index of the first [[bayeux.acl]] rule that decides
// publishes to the Stardust channels (prefix/**), -1 when none does. Without
// one, Bayeux clients may publish to them only from comet.allow_from's
// addresses (server.PublishFromACL), the safe default: the Stardust API's
// list of publishers is not bypassed through Bayeux.
func (b *Bayeux) PrefixRule() int {
	return slices.IndexFunc(b.ACL, func(r ACL) bool {
		return patternCovers(r.Channel, b.Prefix+"/x") || patternCovers(r.Channel, b.Prefix+"/**")
	})
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

// listensOnLoopback reports whether listen (server.listen) takes only this
// machine's connections, where other browsers cannot come from anyway.
func listensOnLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	a, err := netip.ParseAddr(host)
	return host == "localhost" || err == nil && a.IsLoopback()
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

// sameWho reports whether two lists of who (ACL subscribe or publish) name
// the same callers, in any order.
func sameWho(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
