package server

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestBayeuxMessageACL(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	acl := func(c *Client, m *BayeuxMessage) error {
		mu.Lock()
		seen = append(seen, m.Channel)
		mu.Unlock()
		if m.Channel == "/meta/handshake" && m.ExtString("token") != "ok" {
			return errors.New("bad token")
		}
		if m.Channel == "/locked" {
			return errors.New("locked")
		}
		return nil
	}
	b := newBX(t, BayeuxOptions{MessageACL: acl})
	r := b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}})[0]
	wantError(t, r, "403:handshake:")
	if !strings.Contains(r["error"].(string), "bad token") {
		t.Errorf("error %q", r["error"])
	}
	if st := stats(t, b.s.Hub()); st.Clients != 0 {
		t.Errorf("a rejected handshake left %d clients", st.Clients)
	}
	r = b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"},
		"ext": map[string]any{"token": "ok"}})[0]
	id := r["clientId"].(string)
	wantError(t, b.post(map[string]any{"channel": "/locked", "clientId": id, "data": 1})[0], "403:/locked:")
	if len(history(t, b.s.Hub(), "/locked")) != 0 {
		t.Error("a rejected publish was published")
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, " ") != "/meta/handshake /meta/handshake /locked" {
		t.Errorf("ACL saw %v", seen)
	}
}

func TestRulesACL(t *testing.T) {
	acl, err := RulesACL([]ACLRule{
		{Channel: "/chat/private/**", Subscribe: []string{"user:alice"}, Publish: []string{"user:alice"}},
		{Channel: "/chat/**", Subscribe: []string{"*"}, Publish: []string{"authenticated"}},
		{Channel: "/news", Subscribe: []string{"*"}, Publish: []string{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHub(HubOptions{}, logrus.NewEntry(logrus.New()))
	defer h.Close()
	anon := h.NewClient("anon", KindBayeux, 0, "")
	bob := h.NewClient("bob", KindBayeux, 0, "")
	bob.SetAttr(AttrAuthenticated, "true")
	bob.SetAttr(AttrUser, "bob")
	alice := h.NewClient("alice", KindBayeux, 0, "")
	alice.SetAttr(AttrAuthenticated, "true")
	alice.SetAttr(AttrUser, "alice")
	sub := func(s string) *BayeuxMessage {
		return &BayeuxMessage{Channel: "/meta/subscribe", Subscriptions: []string{s}}
	}
	tests := []struct {
		name string
		c    *Client
		m    *BayeuxMessage
		ok   bool
	}{
		{"anyone subscribes chat", anon, sub("/chat/room"), true},
		{"anon may not publish chat", anon, &BayeuxMessage{Channel: "/chat/room"}, false},
		{"nil client (anon publish) may not publish chat", nil, &BayeuxMessage{Channel: "/chat/room"}, false},
		{"authenticated publishes chat", bob, &BayeuxMessage{Channel: "/chat/room"}, true},
		{"bob may not read private", bob, sub("/chat/private/x"), false},
		{"bob may not read private by wildcard", bob, sub("/chat/**"), false},
		{"bob may read chat/*", bob, sub("/chat/*"), true},
		{"alice reads private", alice, sub("/chat/private/x"), true},
		{"alice reads all chat", alice, sub("/chat/**"), true},
		{"nobody publishes news", alice, &BayeuxMessage{Channel: "/news"}, false},
		{"unruled channel open", anon, &BayeuxMessage{Channel: "/other"}, true},
		{"meta not checked", anon, &BayeuxMessage{Channel: "/meta/connect"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := acl(tt.c, tt.m); (err == nil) != tt.ok {
				t.Errorf("got %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if _, err := RulesACL([]ACLRule{{Channel: "/a", Publish: []string{"admins"}}}); err == nil {
		t.Error("an unknown who was accepted")
	}
	if _, err := RulesACL([]ACLRule{{Channel: "a"}}); err == nil {
		t.Error("a bad channel was accepted")
	}
}

func TestHandshakeAuth(t *testing.T) {
	h := NewHub(HubOptions{}, logrus.NewEntry(logrus.New()))
	defer h.Close()
	hs := func(ext string) *BayeuxMessage {
		return &BayeuxMessage{Channel: "/meta/handshake", Ext: json.RawMessage(ext)}
	}
	secret, _ := HandshakeAuth("secret", "s3", nil)
	users, _ := HandshakeAuth("users", "", map[string]string{"alice": UserHash("wonder")})
	tests := []struct {
		name string
		acl  MessageACL
		ext  string
		ok   bool
		user string
	}{
		{"secret ok", secret, `{"secret":"s3"}`, true, ""},
		{"secret wrong", secret, `{"secret":"s4"}`, false, ""},
		{"secret missing", secret, ``, false, ""},
		{"user ok", users, `{"username":"alice","password":"wonder"}`, true, "alice"},
		{"user wrong password", users, `{"username":"alice","password":"land"}`, false, ""},
		{"unknown user", users, `{"username":"eve","password":""}`, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := h.NewClient("c", KindBayeux, 0, "")
			err := tt.acl(c, hs(tt.ext))
			if (err == nil) != tt.ok {
				t.Fatalf("got %v, want ok=%v", err, tt.ok)
			}
			if u := c.Attr(AttrUser); tt.user != "" && u != tt.user {
				t.Errorf("user %v, want %s", u, tt.user)
			}
		})
	}
	if err := secret(nil, &BayeuxMessage{Channel: "/meta/connect"}); err != nil {
		t.Errorf("non-handshake checked: %v", err)
	}
	if _, err := HandshakeAuth("kerberos", "", nil); err == nil {
		t.Error("unknown mode accepted")
	}
}

func TestOverlapsAndCovers(t *testing.T) {
	seg := func(s string) []string { return strings.Split(s[1:], "/") }
	tests := []struct {
		a, b             string
		overlap, aCovers bool
	}{
		{"/a/**", "/a/b", true, true},
		{"/a/**", "/a/*", true, true},
		{"/a/*", "/a/**", true, false},
		{"/a/*", "/a/b/c", false, false},
		{"/a/b/**", "/a/**", true, false},
		{"/a/b", "/a/c", false, false},
		{"/x/**", "/a/**", false, false},
		{"/a/*/c", "/a/b/*", true, false},
	}
	for _, tt := range tests {
		if got := overlaps(seg(tt.a), seg(tt.b)); got != tt.overlap {
			t.Errorf("overlaps(%s, %s) = %v", tt.a, tt.b, got)
		}
		if got := covers(seg(tt.a), seg(tt.b)); got != tt.aCovers {
			t.Errorf("covers(%s, %s) = %v", tt.a, tt.b, got)
		}
	}
}
