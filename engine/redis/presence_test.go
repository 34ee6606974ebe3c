package redis_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

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

// TestJoinLeaveAcrossProcesses: three processes share Redis; ann has a
// tab on two of them, bob one on the third. Each user joins once, ann
// leaves once when her last tab goes (on the other process than her
// first), and when bob's process stops without removing its sessions (as
// a SIGKILL leaves them), the sweep of the others sends his leave, once.
func TestJoinLeaveAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	rooms := func(o *server.Options) {
		o.Channels = []server.ChannelRule{{Pattern: "/chat/**", Anonymous: true, JoinLeave: true}}
		o.Bayeux.ConnectTimeout = time.Second
		o.Hub.SweepInterval = 100 * time.Millisecond
	}
	a, baseA := apiNode(t, srv.URL, rooms)
	b, baseB := apiNode(t, srv.URL, rooms)
	c, baseC := apiNode(t, srv.URL, rooms)
	tab := func(s *server.Server, base, user string) (*bayeuxtest.Browser, string) {
		br := bayeuxtest.New(base + "/comet/bayeux")
		id := br.Handshake(t)
		cl, err := s.Hub().Client(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.SetAttr(server.AttrUser, user); err != nil {
			t.Fatal(err)
		}
		if r := br.Post(t, map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/chat/room"}); r[0]["successful"] != true {
			t.Fatalf("subscribe: %v", r)
		}
		return br, id
	}
	events := func() string {
		msgs, err := a.Hub().History("/chat/room", 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range msgs {
			out = append(out, string(m.Data))
		}
		return strings.Join(out, " ")
	}
	const (
		annJoin  = `{"type":"stardust.join","user":"ann"}`
		bobJoin  = `{"type":"stardust.join","user":"bob"}`
		annLeave = `{"type":"stardust.leave","user":"ann"}`
		bobLeave = `{"type":"stardust.leave","user":"bob"}`
	)
	ann1, id1 := tab(a, baseA, "ann")
	ann2, id2 := tab(b, baseB, "ann")
	tab(c, baseC, "bob")
	if got, want := events(), annJoin+" "+bobJoin; got != want {
		t.Fatalf("after three tabs: %s, want %s", got, want)
	}
	// Keep ann's tabs alive while bob's expires.
	stop := make(chan struct{})
	defer close(stop)
	for _, tb := range []struct {
		br *bayeuxtest.Browser
		id string
	}{{ann1, id1}, {ann2, id2}} {
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
					body := `[{"channel":"/meta/connect","clientId":"` + tb.id + `","connectionType":"long-polling","advice":{"timeout":0}}]`
					if r, err := tb.br.HTTP.Post(tb.br.URL, "application/json", strings.NewReader(body)); err == nil {
						r.Body.Close()
					}
				}
			}
		}()
	}
	c.Close() // bob's process stops: its sessions stay in Redis, as after a SIGKILL
	want := annJoin + " " + bobJoin + " " + bobLeave
	for deadline := time.Now().Add(10 * time.Second); events() != want && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
	}
	time.Sleep(500 * time.Millisecond) // no second leave comes
	if got := events(); got != want {
		t.Fatalf("after bob's process stopped: %s, want %s", got, want)
	}
	ann1.Post(t, map[string]any{"channel": "/meta/disconnect", "clientId": id1})
	if got := events(); got != want {
		t.Fatalf("after ann's first tab left: %s, want %s", got, want)
	}
	ann2.Post(t, map[string]any{"channel": "/meta/disconnect", "clientId": id2})
	if got, want := events(), want+" "+annLeave; got != want {
		t.Fatalf("after ann's last tab left: %s, want %s", got, want)
	}
}
