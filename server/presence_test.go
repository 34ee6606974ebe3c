package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
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

// TestPagePresence: GET {base}/presence lists the users of a presence
// channel to a page allowed to read it, decided as a subscription is (the
// identity from a token or from the page's own session, the anonymous
// rule), without client ids, and refuses the others.
func TestPagePresence(t *testing.T) {
	a := newStubAuth()
	a.set("ann-token", Identity{User: "ann", Info: json.RawMessage(`{"name":"Ann"}`)})
	a.set("bob-token", Identity{User: "bob"})
	_, base := apiServer(t, func(o *Options) {
		o.Authenticator = a
		o.Channels = []ChannelRule{{Pattern: "/chat/private/**", Presence: true}, {Pattern: "/chat/**", Anonymous: true}}
	})
	jar, _ := cookiejar.New(nil)
	b := &bx{t: t, url: base + "/comet/bayeux", hc: &http.Client{Jar: jar}}
	var ann string
	for _, tok := range []string{"ann-token", "ann-token", "bob-token"} {
		r := b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"},
			"ext": map[string]any{"token": tok}})[0]
		id, _ := r["clientId"].(string)
		if ann == "" {
			ann = id
		}
		if r := b.subscribe(id, "/chat/private/room"); r["successful"] != true {
			t.Fatalf("subscribe: %v", r)
		}
	}
	get := func(hc *http.Client, query, token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/comet/presence?"+query, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(body))
	}
	const room = `{"channel":"/chat/private/room","users":[{"user":"ann","info":{"name":"Ann"}},{"user":"bob"}],"clients":3}`
	for _, tt := range []struct {
		name, query, token string
		hc                 *http.Client
		status             int
		body               string
	}{
		{"a token", "channel=/chat/private/room", "bob-token", http.DefaultClient, 200, room},
		{"the page's own session", "channel=/chat/private/room&client=" + ann, "", b.hc, 200, room},
		{"anonymous", "channel=/chat/private/room", "", http.DefaultClient, 403, "needs a user"},
		{"another browser's session", "channel=/chat/private/room&client=" + ann, "", http.DefaultClient, 403, "needs a user"},
		{"a bad token", "channel=/chat/private/room", "forged", http.DefaultClient, 401, ""},
		{"no presence there", "channel=/chat/lobby", "", http.DefaultClient, 400, "presence = true"},
		{"a Stardust name", "channel=news", "", http.DefaultClient, 400, "presence = true"},
		{"no channel", "", "", http.DefaultClient, 400, `\"channel\"`},
		{"a pattern", "channel=/chat/private/*", "bob-token", http.DefaultClient, 400, "channel"},
	} {
		status, body := get(tt.hc, tt.query, tt.token)
		if status != tt.status || !strings.Contains(body, tt.body) {
			t.Errorf("%s: %d %s, want %d with %s", tt.name, status, body, tt.status, tt.body)
		}
	}
}
