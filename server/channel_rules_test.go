package server

import (
	"testing"
	"time"
)

// anonRules: chats need a user, except the lobby; the Stardust channel
// "vip" needs one too; everything else keeps the defaults.
var anonRules = []ChannelRule{
	{Pattern: "/chat/lobby", Anonymous: true},
	{Pattern: "/chat/**", Anonymous: false},
	{Pattern: "/stardust/vip", Anonymous: false},
}

// TestChannelsAnonymous: a [[channels]] rule with anonymous = false refuses
// clients with no user on every protocol (Bayeux 403:, Stardust poll and
// SSE 403 JSON), also through a wildcard that reaches its channels, and
// lets a client with a user in; the first matching rule decides, and
// unmatched channels stay open.
func TestChannelsAnonymous(t *testing.T) {
	a, clock := newStubAuth(), newFakeNow()
	a.set("t42", Identity{User: "42"})
	b := newAuthBX(t, a, clock, nil, func(o *Options) {
		o.PollTimeout = 100 * time.Millisecond
		o.Channels = anonRules
	})
	hs := func(token string) string {
		r := b.post(handshakeMsg(TransportLongPolling, token))
		if r[0]["successful"] != true {
			t.Fatalf("handshake %q: %v", token, r)
		}
		return r[0]["clientId"].(string)
	}
	c42, anon := hs("t42"), hs("")
	checkSubscribes(t, b, []subscribeCase{
		{anon, "/chat/room", false}, {anon, "/chat/*", false}, {anon, "/stardust/**", false},
		{anon, "/chat/lobby", true}, {anon, "/news", true}, {anon, "/stardust/news", true},
		{anon, "/stardust/vip", false}, {anon, "/stardust/*", false},
		{c42, "/chat/room", true}, {c42, "/chat/**", true}, {c42, "/stardust/vip", true},
	})
	checkReads(t, b, "anonymous = false", []readCase{
		{"", "vip", "/stream/p1", 403}, {"t42", "vip", "/stream/p2", 200},
		{"", "news", "/stream/p3", 200}, {"", "news+vip", "/stream/p4", 403},
		{"", "vip", "/events?id=p5", 403}, {"t42", "vip", "/events?id=p6", -1},
	})
}

// TestChannelsAnonymousWithoutHooks: the rule holds with no ACL and no
// Authenticator at all (the Stardust poll's fast path).
func TestChannelsAnonymousWithoutHooks(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.Channels = anonRules })
	resp, body := getWith(t, b.hc, b.ts.URL+"/comet/channel/vip/stream/q1", "", "")
	if resp.StatusCode != 403 {
		t.Errorf("anonymous poll of vip: %d %s, want 403", resp.StatusCode, body)
	}
}
