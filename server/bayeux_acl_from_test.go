package server

import (
	"net/netip"
	"strings"
	"testing"
)

// TestPublishFromACL: Bayeux publishes to Stardust channels obey the
// Stardust API's address list; other channels and subscriptions do not.
func TestPublishFromACL(t *testing.T) {
	acl := PublishFromACL("/stardust", LoopbackOnly)
	h := &Hub{}
	local := h.NewClient("l", KindBayeux, 0, "127.0.0.1")
	remote := h.NewClient("r", KindBayeux, 0, "192.0.2.7")
	for _, c := range []struct {
		c       *Client
		channel string
		subs    []string
		want    string // "" for allowed, else a part of the error
	}{
		{local, "/stardust/news", nil, ""},
		{remote, "/stardust/news", nil, "from 192.0.2.7"},
		{nil, "/stardust/news", nil, "without a session"},
		{remote, "/chat/room", nil, ""},
		{remote, "/stardustish/x", nil, ""},
		{remote, "/meta/subscribe", []string{"/stardust/news"}, ""},
	} {
		err := acl(c.c, &BayeuxMessage{Channel: c.channel, Subscriptions: c.subs})
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want allowed", c.channel, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error with %q", c.channel, err, c.want)
		}
	}
	if err := PublishFromACL("/stardust", []netip.Prefix{})(local, &BayeuxMessage{Channel: "/stardust/x"}); err == nil {
		t.Error("an empty comet.allow_from let a Bayeux client publish to a Stardust channel")
	}
}
