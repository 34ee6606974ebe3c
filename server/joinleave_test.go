package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestJoinLeave: on a join_leave channel a user's first session sends one
// stardust.join (with the identity's info) at once, as its subscribe
// returns, a second tab nothing, and the last session leaving (an
// unsubscribe, a disconnect, or a timeout) one stardust.leave; sessions
// without a user and wildcard subscriptions are not announced; each is an
// Event of type join or leave naming the user.
func TestJoinLeave(t *testing.T) {
	var mu sync.Mutex
	var events []string
	s, base := apiServer(t, func(o *Options) {
		o.Channels = []ChannelRule{{Pattern: "/chat/**", Anonymous: true, JoinLeave: true}}
		o.Hub.Events = func(e Event) {
			if e.Type == "join" || e.Type == "leave" {
				mu.Lock()
				events = append(events, e.Type+" "+e.User+" "+e.Channel)
				mu.Unlock()
			}
		}
	})
	b := &bx{t: t, url: base + "/comet/bayeux", hc: &http.Client{}}
	var want []string
	check := func(when string, more ...string) {
		t.Helper()
		want = append(want, more...)
		var got []string
		for _, m := range history(t, s.hub, "/chat/room") {
			got = append(got, string(m.Data))
		}
		if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
			t.Fatalf("%s:\n%s\nwant\n%s", when, g, w)
		}
	}
	join := func(user string) string {
		id := b.handshake()
		_ = clientOf(s.hub, id).SetAttr(AttrUser, user)
		if user == "ann" {
			_ = clientOf(s.hub, id).SetAttr(AttrIdentity, `{"user":"ann","info":{"name":"Ann"}}`)
		}
		if r := b.subscribe(id, "/chat/room"); r["successful"] != true {
			t.Fatalf("subscribe: %v", r)
		}
		return id
	}
	anon := b.handshake()
	b.subscribe(anon, "/chat/**")
	b.subscribe(anon, "/chat/room")
	watcher := join("wes")
	b.post(map[string]any{"channel": "/meta/unsubscribe", "clientId": watcher, "subscription": "/chat/room"})
	b.subscribe(watcher, "/chat/*") // a pattern: not in the room
	check("wes came and went", `{"type":"stardust.join","user":"wes"}`, `{"type":"stardust.leave","user":"wes"}`)
	ann1 := join("ann")
	check("after ann's first tab", `{"type":"stardust.join","user":"ann","info":{"name":"Ann"}}`)
	ann2, bob := join("ann"), join("bob")
	check("after ann's second tab and bob", `{"type":"stardust.join","user":"bob"}`)
	b.post(map[string]any{"channel": "/meta/disconnect", "clientId": ann1})
	b.post(map[string]any{"channel": "/meta/disconnect", "clientId": bob})
	check("after ann's first tab and bob left", `{"type":"stardust.leave","user":"bob"}`)

	// The last tab times out: the sweep sends the leave.
	s.hub.sweep(time.Now()) // forgets the polls that ended: they keep their client alive once
	ms := s.hub.engine.(*MemoryEngine).session(ann2)
	ms.mu.Lock()
	ms.lastSeen = time.Now().Add(-time.Hour)
	ms.mu.Unlock()
	s.hub.sweep(time.Now())
	check("after ann's last tab timed out", `{"type":"stardust.leave","user":"ann","info":{"name":"Ann"}}`)

	// Bayeux subscribers get them with ext.presence.
	replies := b.post(connectMsg(anon, 0))
	var exts []string
	for _, r := range replies {
		if r["channel"] == "/chat/room" {
			ext, _ := json.Marshal(r["ext"])
			exts = append(exts, string(ext))
		}
	}
	if got := strings.Join(exts, " "); !strings.HasPrefix(got, `{"presence":"join"} {"presence":"leave"} {"presence":"join"}`) || len(exts) != 6 {
		t.Errorf("Bayeux deliveries' ext: %s (%v)", got, replies)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(events, ", "); got != "join wes /chat/room, leave wes /chat/room, join ann /chat/room, join bob /chat/room, leave bob /chat/room, leave ann /chat/room" {
		t.Errorf("events: %s", got)
	}
}

// TestJoinLeaveStardustStream: a Stardust poll with an identity joins a
// join_leave channel at its first poll (its identity is kept before it is
// subscribed), and its own poll brings the join.
func TestJoinLeaveStardustStream(t *testing.T) {
	a := newStubAuth()
	a.set("ann-token", Identity{User: "ann"})
	s, base := apiServer(t, func(o *Options) {
		o.Authenticator = a
		o.Channels = []ChannelRule{{Pattern: "/stardust/room", Anonymous: true, JoinLeave: true}}
	})
	req, _ := http.NewRequest(http.MethodGet, base+"/comet/channel/room/stream/s1", nil)
	req.Header.Set("Authorization", "Bearer ann-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"type":"stardust.join","user":"ann"`) {
		t.Errorf("the first poll: %d %s, want ann's join", resp.StatusCode, body)
	}
	if got := len(history(t, s.hub, "/stardust/room")); got != 1 {
		t.Errorf("%d messages in the room, want the join", got)
	}
}
