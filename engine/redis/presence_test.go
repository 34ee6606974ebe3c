package redis_test

import (
	"fmt"
	"testing"

	"github.com/stardust-go/stardust/internal/bayeuxtest"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// TestPresenceAcrossProcesses: two processes share Redis; the presence and
// presence_stats of either list the subscribers of both, and a session
// that disconnects on one leaves the answer of the other.
func TestPresenceAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	rooms := func(o *server.Options) {
		o.Channels = []server.ChannelRule{{Pattern: "/chat/**", Anonymous: true, Presence: true}}
	}
	a, baseA := apiNode(t, srv.URL, rooms)
	b, baseB := apiNode(t, srv.URL, rooms)
	var ids []string
	var brs []*bayeuxtest.Browser
	for _, n := range []struct {
		s    *server.Server
		base string
		user string
		sub  string
	}{{a, baseA, "ann", "/chat/room"}, {b, baseB, "bob", "/chat/*"}, {b, baseB, "ann", "/chat/room"}} {
		br := bayeuxtest.New(n.base + "/comet/bayeux")
		id := br.Handshake(t)
		c, err := n.s.Hub().Client(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetAttr(server.AttrUser, n.user); err != nil {
			t.Fatal(err)
		}
		if r := br.Post(t, map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": n.sub}); r[0]["successful"] != true {
			t.Fatalf("subscribe: %v", r)
		}
		ids, brs = append(ids, id), append(brs, br)
	}
	stats := func(base string) string {
		out := apiPost(t, base, "presence_stats", `{"channel":"/chat/room"}`)
		return fmt.Sprint(out["clients"], " ", out["users"])
	}
	for _, base := range []string{baseA, baseB} {
		if got := stats(base); got != "3 2" {
			t.Errorf("presence_stats: %s, want 3 2", got)
		}
	}
	out := apiPost(t, baseA, "presence", `{"channel":"/chat/room"}`)
	if list, _ := out["clients"].([]any); len(list) != 3 {
		t.Errorf("presence: %v", out)
	}
	if r := brs[1].Post(t, map[string]any{"channel": "/meta/disconnect", "clientId": ids[1]}); r[0]["successful"] != true {
		t.Fatalf("disconnect: %v", r)
	}
	if got := stats(baseA); got != "2 1" {
		t.Errorf("presence_stats after bob left on the other process: %s, want 2 1", got)
	}
}
