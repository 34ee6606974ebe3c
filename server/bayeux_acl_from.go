package server

import (
	"fmt"
	"net/netip"
	"strings"
)

// PublishFromACL lets Bayeux clients publish to the channels under prefix
// (the Stardust channels, "/stardust") only from the addresses in from, the
// list that says who may publish through the Stardust API (comet.allow_from):
// without it, a Bayeux publish would reach Stardust subscribers from
// anywhere, past that list. The address is the client's as its handshake
// came (through the trusted proxies). A publish without a session (anonymous
// publishing) has no address and is refused. Subscriptions and other
// channels pass. The stardust command puts it in front of the rules unless a
// [[bayeux.acl]] rule decides publishes to prefix/** itself.
func PublishFromACL(prefix string, from []netip.Prefix) MessageACL {
	under := strings.TrimSuffix(prefix, "/") + "/"
	return func(c *Client, m *BayeuxMessage) error {
		if IsMeta(m.Channel) || !strings.HasPrefix(m.Channel, under) {
			return nil
		}
		switch {
		case c == nil:
			return fmt.Errorf("not allowed to publish to %s without a session (see comet.allow_from)", m.Channel)
		case !isTrusted(c.Remote(), from):
			return fmt.Errorf("not allowed to publish to %s from %s (see comet.allow_from, or add a [[bayeux.acl]] rule for %s/**)",
				m.Channel, c.Remote(), strings.TrimSuffix(prefix, "/"))
		}
		return nil
	}
}
