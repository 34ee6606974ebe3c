package server

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestJoinLeave: on a join_leave channel a user's first session sends one
// stardust.join (with the identity's info), a second tab nothing, and the
// last session leaving (a disconnect, or a timeout) one stardust.leave;
// sessions without a user are not announced.
func TestJoinLeave(t *testing.T) {
	defer func(d time.Duration) { JoinLeaveInterval = d }(JoinLeaveInterval)
	JoinLeaveInterval = 20 * time.Millisecond
	s, base := apiServer(t, func(o *Options) {
		o.Channels = []ChannelRule{{Pattern: "/chat/**", Anonymous: true, JoinLeave: true}}
	})
	b := &bx{t: t, url: base + "/comet/bayeux", hc: &http.Client{}}
	events := func(want int) string {
		t.Helper()
		var got []string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			got = got[:0]
			for _, m := range history(t, s.hub, "/chat/room") {
				got = append(got, string(m.Data))
			}
			if len(got) >= want {
				break
			}
		}
		time.Sleep(5 * JoinLeaveInterval) // nothing more comes
		got = got[:0]
		for _, m := range history(t, s.hub, "/chat/room") {
			got = append(got, string(m.Data))
		}
		return strings.Join(got, "\n")
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
	ann1 := join("ann")
	want := `{"type":"stardust.join","user":"ann","info":{"name":"Ann"}}`
	if got := events(1); got != want {
		t.Fatalf("after ann's first tab:\n%s\nwant\n%s", got, want)
	}
	ann2, bob := join("ann"), join("bob")
	want += "\n" + `{"type":"stardust.join","user":"bob"}`
	if got := events(2); got != want {
		t.Fatalf("after ann's second tab and bob:\n%s\nwant\n%s", got, want)
	}
	b.post(map[string]any{"channel": "/meta/disconnect", "clientId": ann1})
	b.post(map[string]any{"channel": "/meta/disconnect", "clientId": bob})
	want += "\n" + `{"type":"stardust.leave","user":"bob"}`
	if got := events(3); got != want {
		t.Fatalf("after ann's first tab and bob left:\n%s\nwant\n%s", got, want)
	}
	if err := s.hub.Remove(clientOf(s.hub, ann2)); err != nil {
		t.Fatal(err)
	}
	want += "\n" + `{"type":"stardust.leave","user":"ann","info":{"name":"Ann"}}`
	if got := events(4); got != want {
		t.Fatalf("after ann's last tab left:\n%s\nwant\n%s", got, want)
	}
}
