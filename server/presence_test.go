package server

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
)

// TestAPIPresence: presence lists the sessions a message on a presence
// channel would reach (by name or pattern) with their user, info and
// transport; presence_stats counts them and their distinct users; a
// session that leaves leaves the list; a channel no presence rule decides
// is a 400 naming the field.
func TestAPIPresence(t *testing.T) {
	s, base := apiServer(t, func(o *Options) {
		o.Channels = []ChannelRule{{Pattern: "/chat/secret", Anonymous: true}, {Pattern: "/chat/**", Anonymous: true, Presence: true}}
	})
	b := &bx{t: t, url: base + "/comet/bayeux", hc: &http.Client{}}
	ann1, ann2, bob, anon := b.handshake(), b.handshake(), b.handshake(), b.handshake()
	for id, user := range map[string]string{ann1: "ann", ann2: "ann", bob: "bob"} {
		if err := clientOf(s.hub, id).SetAttr(AttrUser, user); err != nil {
			t.Fatal(err)
		}
	}
	_ = clientOf(s.hub, ann1).SetAttr(AttrIdentity, `{"user":"ann","info":{"name":"Ann"}}`)
	for id, sub := range map[string]string{ann1: "/chat/room", ann2: "/chat/room", bob: "/chat/**", anon: "/chat/room"} {
		if r := b.subscribe(id, sub); r["successful"] != true {
			t.Fatalf("subscribe: %v", r)
		}
	}
	status, out := apiCall(t, base, "presence", testAPIKey, `{"channel":"/chat/room"}`)
	if status != 200 {
		t.Fatalf("presence: %d %v", status, out)
	}
	var got []string
	for _, c := range out["clients"].([]any) {
		e := c.(map[string]any)
		got = append(got, fmt.Sprint(e["user"], " ", e["info"], " ", e["transport"], " ", e["client"] != ""))
	}
	sort.Strings(got)
	want := "[ <nil> long-polling true ann <nil> long-polling true ann map[name:Ann] long-polling true bob <nil> long-polling true]"
	if fmt.Sprint(got) != want {
		t.Errorf("presence: %v\nwant %s", got, want)
	}
	stats := func(ch string) string {
		status, out := apiCall(t, base, "presence_stats", testAPIKey, `{"channel":"`+ch+`"}`)
		return fmt.Sprint(status, " ", out["clients"], " ", out["users"])
	}
	if got := stats("/chat/room"); got != "200 4 2" {
		t.Errorf("presence_stats: %s, want 200 4 2", got)
	}
	b.post(map[string]any{"channel": "/meta/disconnect", "clientId": ann1})
	b.post(map[string]any{"channel": "/meta/disconnect", "clientId": bob})
	if got := stats("/chat/room"); got != "200 2 1" {
		t.Errorf("presence_stats after two leave: %s, want 200 2 1", got)
	}
	for _, ch := range []string{"/news", "/chat/secret"} {
		status, out := apiCall(t, base, "presence", testAPIKey, `{"channel":"`+ch+`"}`)
		if e := fmt.Sprint(out["error"]); status != 400 || !strings.Contains(e, "presence = true") {
			t.Errorf("presence of %s: %d %v, want 400", ch, status, out)
		}
	}
	if status, out := apiCall(t, base, "presence_stats", testAPIKey, `{}`); status != 400 || !strings.Contains(fmt.Sprint(out), "channel") {
		t.Errorf("presence_stats without a channel: %d %v", status, out)
	}
}
