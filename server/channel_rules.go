package server

import (
	"fmt"
)

// ChannelRule is one [[channels]] block of the configuration: the rules of
// the channels matching Pattern (Bayeux form, wildcards as in ACL rules; a
// Stardust channel NAME is {prefix}/NAME). Rules are tried in order and the
// first whose Pattern matches decides; unmatched channels keep the
// defaults (anonymous clients allowed).
type ChannelRule struct {
	Pattern string
	// Anonymous allows clients with no user (AttrUser empty) to subscribe.
	// false refuses them with 403 on every protocol.
	Anonymous bool
	// Presence serves the server API's presence and presence_stats for
	// the channels of the rule (presence.go).
	Presence bool
	// JoinLeave publishes stardust.join and stardust.leave on the
	// channels of the rule as users come and go (joinleave.go), with an
	// engine that implements Members.
	JoinLeave bool
}

// CheckChannelRule checks a rule's pattern, for configuration checks.
func CheckChannelRule(r ChannelRule) error {
	_, err := ParseChannel(r.Pattern, true)
	return err
}

// channelRules are the [[channels]] blocks, parsed once.
type channelRules []parsedChannelRule

type parsedChannelRule struct {
	ChannelRule
	segs []string
}

// parseChannelRules parses rules already checked with CheckChannelRule; a
// bad one is skipped (New does not fail).
func parseChannelRules(rules []ChannelRule) channelRules {
	var out channelRules
	for _, r := range rules {
		if segs, err := ParseChannel(r.Pattern, true); err == nil {
			out = append(out, parsedChannelRule{ChannelRule: r, segs: segs})
		}
	}
	return out
}

// joinLeave reports whether a rule announces joins and leaves.
func (rs channelRules) joinLeave() bool {
	for _, r := range rs {
		if r.JoinLeave {
			return true
		}
	}
	return false
}

// joinLeaveOn reports whether the rule deciding channel (a name) has
// join_leave = true.
func (rs channelRules) joinLeaveOn(channel string) bool {
	return rs.decides(channel, func(r ChannelRule) bool { return r.JoinLeave })
}

// presenceOn reports whether the rule deciding channel (a name) has
// presence = true.
func (rs channelRules) presenceOn(channel string) bool {
	return rs.decides(channel, func(r ChannelRule) bool { return r.Presence })
}

// decides reports whether a rule decides channel (a name) and has what
// has asks for.
func (rs channelRules) decides(channel string, has func(ChannelRule) bool) bool {
	segs, err := ParseChannel(channel, false)
	if err != nil {
		return false
	}
	r, ok := rs.rule(segs)
	return ok && has(r)
}

// checkAnonymous refuses a subscription of c to subs (channels or patterns)
// when c has no user and a rule with anonymous = false decides one of them.
// For a pattern subscription every rule whose channels it overlaps, up to
// the first that covers it, must allow anonymous clients: "/chat/**" must
// not reach "/chat/private/x" around a rule for "/chat/private/*".
func (rs channelRules) checkAnonymous(c *Client, subs []string) error {
	if len(rs) == 0 || (c != nil && c.Attr(AttrUser) != "") {
		return nil
	}
	for _, s := range subs {
		segs, err := ParseChannel(s, true)
		if err != nil {
			continue // the protocol reports it
		}
		for _, r := range rs {
			if !overlaps(r.segs, segs) {
				continue
			}
			if !r.Anonymous {
				return fmt.Errorf("%w: %s needs a user (channels rule %q has anonymous = false)", ErrForbidden, s, r.Pattern)
			}
			if covers(r.segs, segs) {
				break
			}
		}
	}
	return nil
}

// rule returns the rule that decides the channel whose segments are segs:
// the first whose pattern matches it.
func (rs channelRules) rule(segs []string) (ChannelRule, bool) {
	for _, r := range rs {
		if covers(r.segs, segs) {
			return r.ChannelRule, true
		}
	}
	return ChannelRule{}, false
}
