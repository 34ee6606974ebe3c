package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// The common access rules, for configuration from TOML; anything else is a
// MessageACL written in Go.

// ACLRule says who may subscribe to and publish on channels matching Channel
// (a channel or a pattern ending in /* or /**). Who is "*" (anyone),
// "authenticated" (a client a handshake check or the app identified),
// "user:NAME", or "user:{user}". Channel may hold {user}, read as the
// caller's own user id ("/user/{user}/**", "/stardust/inbox_{user}"); then
// "user:{user}" means "the caller is the user the channel names".
type ACLRule struct {
	Channel   string
	Subscribe []string
	Publish   []string
}

// CheckACLRule checks one rule as RulesACL reads it, for configuration
// checks: a valid channel pattern (with {user} only as whole or part of
// segments) and known words, "user:{user}" only in a rule whose channel
// holds {user}.
func CheckACLRule(r ACLRule) error {
	user := strings.Contains(r.Channel, UserTemplate)
	if user {
		if err := CheckUserPattern(r.Channel); err != nil {
			return err
		}
	} else if _, err := ParseChannel(r.Channel, true); err != nil {
		return err
	}
	for _, who := range append(append([]string{}, r.Subscribe...), r.Publish...) {
		switch {
		case who == "user:"+UserTemplate && !user:
			return fmt.Errorf("who %q needs %s in the rule's channel (such as \"/user/%s/**\")", who, UserTemplate, UserTemplate)
		case strings.HasPrefix(who, "user:") && who != "user:"+UserTemplate && strings.ContainsAny(who, "{}"):
			return fmt.Errorf("who %q: the only template is user:%s", who, UserTemplate)
		case who != "*" && who != "authenticated" && !(strings.HasPrefix(who, "user:") && len(who) > 5):
			return fmt.Errorf("who %q (want \"*\", \"authenticated\", \"user:NAME\" or \"user:%s\")", who, UserTemplate)
		}
	}
	return nil
}

// RulesACL checks subscribes and publishes against rules, in order. For a
// publish, the first rule matching the channel decides. For a subscription,
// every rule that could match one of its channels must allow it, up to the
// first rule that covers all of them, so that "/chat/**" cannot be used to
// read a "/chat/private/**" that a later rule closes. A rule with {user}
// could match a channel when it does for some user id, and covers it only
// for the caller's own id. A channel no rule matches is open. Meta messages
// other than subscribe are not checked.
func RulesACL(rules []ACLRule) (MessageACL, error) {
	type rule struct {
		pattern   string   // as written
		segs      []string // parsed; nil when pattern holds {user}
		subscribe []string
		publish   []string
	}
	parsed := make([]rule, len(rules))
	for i, r := range rules {
		if err := CheckACLRule(r); err != nil {
			return nil, fmt.Errorf("acl rule %d: %w", i+1, err)
		}
		parsed[i] = rule{pattern: r.Channel, subscribe: r.Subscribe, publish: r.Publish}
		if !strings.Contains(r.Channel, UserTemplate) {
			parsed[i].segs, _ = ParseChannel(r.Channel, true)
		}
	}
	check := func(c *Client, channel string, subscribe bool) error {
		segs, err := ParseChannel(channel, true)
		if err != nil {
			return err
		}
		user := ""
		if c != nil {
			user = c.Attr(AttrUser)
		}
		for _, r := range parsed {
			if r.segs == nil && !OverlapsAnyUser(r.pattern, channel) || r.segs != nil && !overlaps(r.segs, segs) {
				continue
			}
			who := r.publish
			if subscribe {
				who = r.subscribe
			}
			if !allowed(c, who, r.pattern, user, channel) {
				verb := "publish to"
				if subscribe {
					verb = "subscribe to"
				}
				return fmt.Errorf("not allowed to %s %s", verb, channel)
			}
			if r.segs == nil && MatchUser(r.pattern, user, channel) || r.segs != nil && covers(r.segs, segs) {
				return nil
			}
		}
		return nil
	}
	return func(c *Client, m *BayeuxMessage) error {
		switch {
		case m.Channel == "/meta/subscribe":
			for _, sub := range m.Subscriptions {
				if err := check(c, sub, true); err != nil {
					return err
				}
			}
		case IsMeta(m.Channel):
		default:
			return check(c, m.Channel, false)
		}
		return nil
	}, nil
}

// allowed reports whether the words who let c act on channel under the rule
// pattern; user is c's user id ("" for none).
func allowed(c *Client, who []string, pattern, user, channel string) bool {
	for _, w := range who {
		switch {
		case w == "*":
			return true
		case c == nil:
		case w == "authenticated":
			if c.Attr(AttrAuthenticated) == "true" {
				return true
			}
		case w == "user:"+UserTemplate:
			if user != "" && MatchUser(pattern, user, channel) {
				return true
			}
		case strings.HasPrefix(w, "user:"):
			if user != "" && user == w[5:] {
				return true
			}
		}
	}
	return false
}

// overlaps reports whether some channel matches both patterns.
func overlaps(a, b []string) bool {
	switch {
	case len(a) == 0 || len(b) == 0:
		return len(a) == 0 && len(b) == 0
	case a[0] == "**" || b[0] == "**":
		return true // each side still matches at least one more segment
	case a[0] == "*" || b[0] == "*" || a[0] == b[0]:
		return overlaps(a[1:], b[1:])
	}
	return false
}

// covers reports whether every channel matching p also matches r.
func covers(r, p []string) bool {
	switch {
	case len(r) == 0:
		return len(p) == 0
	case r[0] == "**":
		return len(p) > 0
	case len(p) == 0 || p[0] == "**":
		return false
	case r[0] == "*":
		return covers(r[1:], p[1:])
	case p[0] == "*":
		return false
	}
	return r[0] == p[0] && covers(r[1:], p[1:])
}

// UserHash is the old, unsalted form of a password kept in [bayeux.auth]
// users: "sha256:" and the hex of its SHA-256. It is still read; new hashes
// should come from HashPassword (bcrypt) or an argon2id tool.
func UserHash(password string) string {
	sum := sha256.Sum256([]byte(password))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ErrBadCredentials rejects a handshake whose ext credentials do not check out.
var ErrBadCredentials = errors.New("invalid credentials")

// HandshakeAuth checks handshakes: with mode "secret", ext.secret must equal
// secret; with mode "users", ext.username and ext.password must match users
// (name to a hash CheckPassword reads). A client that passes is marked "authenticated" (and
// "user" with its name) for RulesACL. Mode "none" lets everyone in.
func HandshakeAuth(mode, secret string, users map[string]string) (MessageACL, error) {
	switch mode {
	case "", "none":
		return func(*Client, *BayeuxMessage) error { return nil }, nil
	case "secret":
		if secret == "" {
			return nil, errors.New("auth mode secret needs a secret")
		}
		return func(c *Client, m *BayeuxMessage) error {
			if m.Channel != "/meta/handshake" || (c.Attr(AttrIdentity) != "" && m.ExtString("secret") == "") {
				return nil // or identified by the app (a token, connect_url), and no secret to check
			}
			if subtle.ConstantTimeCompare([]byte(m.ExtString("secret")), []byte(secret)) != 1 {
				return ErrBadCredentials
			}
			return c.SetAttr(AttrAuthenticated, "true")
		}, nil
	case "users":
		for name, hash := range users {
			if _, err := CheckHash(hash); err != nil {
				return nil, fmt.Errorf("user %q: %w", name, err)
			}
		}
		return func(c *Client, m *BayeuxMessage) error {
			if m.Channel != "/meta/handshake" {
				return nil
			}
			name := m.ExtString("username")
			if c.Attr(AttrIdentity) != "" && name == "" {
				return nil // identified by the app (a token, connect_url), and no name to check
			}
			want, ok := users[name]
			if !ok {
				want = dummyHash // as slow as a known name
			}
			if !CheckPassword(want, m.ExtString("password")) || !ok {
				return ErrBadCredentials
			}
			if err := c.SetAttr(AttrAuthenticated, "true"); err != nil {
				return err
			}
			return c.SetAttr(AttrUser, name)
		}, nil
	}
	return nil, fmt.Errorf("auth mode %q (want none, secret or users)", mode)
}

// ChainACL runs hooks in order; the first error rejects the message. nil
// hooks are skipped: with one hook left it is that hook, with none nil (no
// check at all, which costs nothing per message).
func ChainACL(acls ...MessageACL) MessageACL {
	var set []MessageACL
	for _, acl := range acls {
		if acl != nil {
			set = append(set, acl)
		}
	}
	switch len(set) {
	case 0:
		return nil
	case 1:
		return set[0]
	}
	acls = set
	return func(c *Client, m *BayeuxMessage) error {
		for _, acl := range acls {
			if acl == nil {
				continue
			}
			if err := acl(c, m); err != nil {
				return err
			}
		}
		return nil
	}
}
