package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stubAuth is the Authenticator and authorizers of these tests: tokens are
// names of identities the test set, read from ext.token, the Bearer header,
// ?token= or the stardust_token cookie, as package auth reads them.
type stubAuth struct {
	mu         sync.Mutex
	identities map[string]Identity // token → identity; "down" answers ErrAppUnavailable
	refuse     map[string]string   // channel → the subscribe callback's refusal
	asked      []ChannelRequest    // subscribe callback questions
	published  []ChannelRequest    // publish callback questions
	authCalls  atomic.Int64
}

func newStubAuth() *stubAuth {
	return &stubAuth{identities: map[string]Identity{}, refuse: map[string]string{}}
}

func (a *stubAuth) set(token string, id Identity) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.identities[token] = id
}

func stubToken(r *http.Request) string {
	if r == nil {
		return ""
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return v
	}
	if v := r.URL.Query().Get("token"); v != "" {
		return v
	}
	if c, err := r.Cookie("stardust_token"); err == nil {
		return c.Value
	}
	return ""
}

func (a *stubAuth) Authenticate(_ context.Context, req AuthRequest) (Identity, error) {
	a.authCalls.Add(1)
	token := req.Token
	if token == "" {
		token = stubToken(req.Request)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch id, ok := a.identities[token]; {
	case token == "":
		return Identity{}, fmt.Errorf("%w: no token", ErrNoCredentials)
	case token == "down":
		return Identity{}, fmt.Errorf("%w: the app did not answer in time", ErrAppUnavailable)
	case !ok:
		return Identity{}, fmt.Errorf("%w: bad signature", ErrUnauthenticated)
	default:
		return id, nil
	}
}

func (a *stubAuth) AuthorizeSubscribe(_ context.Context, req ChannelRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, req)
	if req.Channel == "/slow/app" {
		return fmt.Errorf("%w: the app did not answer in time", ErrAppUnavailable)
	}
	if msg, ok := a.refuse[req.Channel]; ok {
		return &Refusal{Message: msg}
	}
	return nil
}

func (a *stubAuth) AuthorizePublish(_ context.Context, req ChannelRequest) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.published = append(a.published, req)
	if msg, ok := a.refuse[req.Channel]; ok {
		return &Refusal{Message: msg}
	}
	return nil
}

// fakeNow is a clock the tests move.
type fakeNow struct{ ns atomic.Int64 }

func newFakeNow() *fakeNow {
	c := &fakeNow{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *fakeNow) now() time.Time               { return time.Unix(0, c.ns.Load()) }
func (c *fakeNow) add(d time.Duration)          { c.ns.Add(int64(d)) }
func (c *fakeNow) in(d time.Duration) time.Time { return c.now().Add(d) }

// newAuthBX is a Bayeux test server whose identity hooks are a and whose
// clock is clock.
func newAuthBX(t *testing.T, a *stubAuth, clock *fakeNow, rules []ACLRule, mod ...func(*Options)) *bx {
	t.Helper()
	acl, err := RulesACL(rules)
	if err != nil {
		t.Fatal(err)
	}
	b := newBX(t, BayeuxOptions{WebSocket: true, MessageACL: acl}, append([]func(*Options){func(o *Options) {
		o.Authenticator, o.SubscribeAuthorizer, o.PublishAuthorizer = a, a, a
	}}, mod...)...)
	b.s.idh.now = clock.now
	return b
}

func handshakeMsg(transport, token string) map[string]any {
	m := map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{transport}, "id": "h"}
	if token != "" {
		m["ext"] = map[string]any{"token": token}
	}
	return m
}

// jsonpPost sends a batch over callback-polling and returns the replies.
func (b *bx) jsonp(msgs ...map[string]any) []map[string]any {
	b.t.Helper()
	body, _ := json.Marshal(msgs)
	resp, err := b.hc.Get(b.url + "?jsonp=cb&message=" + url.QueryEscape(string(body)))
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	js, ok := strings.CutPrefix(string(out), "/**/cb(")
	js, ok2 := strings.CutSuffix(js, ");")
	var replies []map[string]any
	if !ok || !ok2 || json.Unmarshal([]byte(js), &replies) != nil {
		b.t.Fatalf("callback-polling answer %d: %s", resp.StatusCode, out)
	}
	return replies
}

// TestIdentityBayeuxTransports: over each transport a handshake's
// ext.token says who the client is, and the identity is kept with the
// session; a bad token is refused (401), an app that is down means retry
// (503, advice retry), no token is anonymous; once the identity expires the
// next connect (and any other message) answers 402 with advice handshake
// and every other message of the session is refused the same way.
func TestIdentityBayeuxTransports(t *testing.T) {
	for _, transport := range []string{TransportLongPolling, TransportCallbackPolling, TransportWebSocket} {
		t.Run(transport, func(t *testing.T) {
			a, clock := newStubAuth(), newFakeNow()
			a.set("t42", Identity{User: "42", ExpireAt: clock.in(time.Minute), Channels: []string{"/granted/**"}})
			b := newAuthBX(t, a, clock, nil)
			var send func(msgs ...map[string]any) []map[string]any
			switch transport {
			case TransportLongPolling:
				send = b.post
			case TransportCallbackPolling:
				send = b.jsonp
			case TransportWebSocket:
				ws := b.dialWS()
				send = func(msgs ...map[string]any) []map[string]any { ws.send(msgs...); return ws.read() }
			}
			wantError(t, send(handshakeMsg(transport, "forged"))[0], "401:")
			r := send(handshakeMsg(transport, "down"))[0]
			wantError(t, r, "503:")
			if adv, _ := r["advice"].(map[string]any); adv["reconnect"] != "retry" {
				t.Errorf("app down: advice %v, want retry", r["advice"])
			}
			if r := send(handshakeMsg(transport, ""))[0]; r["successful"] != true {
				t.Fatalf("anonymous handshake: %v", r)
			}
			r = send(handshakeMsg(transport, "t42"))[0]
			if r["successful"] != true {
				t.Fatalf("handshake with a token: %v", r)
			}
			id := r["clientId"].(string)
			c := clientOf(b.s.hub, id)
			if kept, ok := keptIdentity(c); !ok || kept.User != "42" || c.Attr(AttrUser) != "42" || c.Attr(AttrAuthenticated) != "true" {
				t.Fatalf("kept identity %+v, attrs %v", kept, c.s.Attrs)
			}
			connect := connectMsg(id, 0)
			connect["connectionType"] = transport
			if r := send(connect); r[len(r)-1]["successful"] != true {
				t.Fatalf("connect: %v", r)
			}
			clock.add(time.Minute)
			r = send(connect)[0]
			wantError(t, r, "402:")
			if adv, _ := r["advice"].(map[string]any); adv["reconnect"] != "handshake" {
				t.Errorf("expired: advice %v, want handshake", r["advice"])
			}
			wantError(t, subscribeVia(send, id, "/news"), "402:") // every message, not only connects
		})
	}
}

// subscribeVia sends a subscribe of id to channel with send.
func subscribeVia(send func(...map[string]any) []map[string]any, id, channel string) map[string]any {
	return send(map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": channel, "id": "s"})[0]
}

// TestIdentityBayeuxFromRequest: without ext.token the handshake's request
// is read (here the Bearer header); ext.token comes first.
func TestIdentityBayeuxFromRequest(t *testing.T) {
	a, clock := newStubAuth(), newFakeNow()
	a.set("t42", Identity{User: "42"})
	a.set("t7", Identity{User: "7"})
	b := newAuthBX(t, a, clock, nil)
	hs := func(header, ext string) string {
		body, _ := json.Marshal([]map[string]any{handshakeMsg(TransportLongPolling, ext)})
		req, _ := http.NewRequest(http.MethodPost, b.url, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+header)
		resp, err := b.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r[0]["successful"] != true {
			t.Fatalf("handshake: %v %v", r, err)
		}
		return clientOf(b.s.hub, r[0]["clientId"].(string)).Attr(AttrUser)
	}
	if u := hs("t42", ""); u != "42" {
		t.Errorf("Bearer header: user %q", u)
	}
	if u := hs("t42", "t7"); u != "7" {
		t.Errorf("ext.token and a Bearer header: user %q, want ext.token's", u)
	}
}

// TestIdentityBesideHandshakeAuth: bayeux.auth keeps working beside
// tokens: with mode "secret", a client the app identified needs no secret,
// a wrong secret is still refused, and a client with neither is refused.
func TestIdentityBesideHandshakeAuth(t *testing.T) {
	a, clock := newStubAuth(), newFakeNow()
	a.set("t42", Identity{User: "42"})
	secret, err := HandshakeAuth("secret", "s3cret", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newAuthBX(t, a, clock, nil, func(o *Options) { o.Bayeux.MessageACL = ChainACL(secret, o.Bayeux.MessageACL) })
	if r := b.post(handshakeMsg(TransportLongPolling, "t42"))[0]; r["successful"] != true {
		t.Errorf("token, no secret: %v", r)
	}
	withSecret := func(token, s string) map[string]any {
		m := handshakeMsg(TransportLongPolling, "")
		ext := map[string]any{"secret": s}
		if token != "" {
			ext["token"] = token
		}
		m["ext"] = ext
		return m
	}
	wantError(t, b.post(withSecret("t42", "wrong"))[0], "403:")
	wantError(t, b.post(handshakeMsg(TransportLongPolling, ""))[0], "403:")
	if r := b.post(withSecret("", "s3cret"))[0]; r["successful"] != true {
		t.Errorf("secret, no token: %v", r)
	}
}

// newAuthServer is a Stardust test server (Bayeux on, for its ACL) asking a.
func newAuthServer(t *testing.T, a *stubAuth, clock *fakeNow, rules []ACLRule) *bx {
	return newAuthBX(t, a, clock, rules, func(o *Options) { o.PollTimeout = 100 * time.Millisecond })
}

// getWith sends a GET with the header name: value (none when value is "").
func getWith(t *testing.T, hc *http.Client, u, name, value string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if value != "" {
		req.Header.Set(name, value)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// TestIdentityStardustPoll: a Stardust long poll is identified from its
// request (Bearer header, ?token=, the token cookie); the identity is kept
// with the stream, so a later poll without a token is still that user until
// the identity expires: then 401 JSON. A bad token is 401, an app that is
// down 503 with Retry-After.
func TestIdentityStardustPoll(t *testing.T) {
	a, clock := newStubAuth(), newFakeNow()
	a.set("t42", Identity{User: "42", ExpireAt: clock.in(time.Minute)})
	b := newAuthServer(t, a, clock, nil)
	poll := b.ts.URL + "/comet/channel/news/stream/s1"
	for _, tt := range []struct{ how, name, value string }{
		{"Bearer header", "Authorization", "Bearer t42"},
		{"token cookie", "Cookie", "stardust_token=t42"},
		{"token parameter", "", ""},
	} {
		u := poll
		if tt.name == "" {
			u += "?token=t42"
		}
		resp, body := getWith(t, b.hc, u, tt.name, tt.value)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tt.how, resp.StatusCode, body)
		}
		if c := clientOf(b.s.hub, "s1"); c == nil || c.Attr(AttrUser) != "42" {
			t.Fatalf("%s: the stream does not keep the identity", tt.how)
		}
	}
	if resp, body := getWith(t, b.hc, poll, "", ""); resp.StatusCode != 200 {
		t.Fatalf("poll without a token, identity kept: %d %s", resp.StatusCode, body)
	}
	resp, body := getWith(t, b.hc, poll, "Authorization", "Bearer forged")
	if resp.StatusCode != 401 || !strings.Contains(string(body), `"status":401`) {
		t.Errorf("forged token: %d %s", resp.StatusCode, body)
	}
	resp, body = getWith(t, b.hc, poll, "Authorization", "Bearer down")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("app down: %d %s %v", resp.StatusCode, body, resp.Header)
	}
	clock.add(time.Minute)
	resp, body = getWith(t, b.hc, poll, "", "")
	if resp.StatusCode != 401 || !strings.Contains(string(body), "expired") {
		t.Errorf("kept identity expired: %d %s", resp.StatusCode, body)
	}
	resp, body = getWith(t, b.hc, poll, "Authorization", "Bearer t42")
	if resp.StatusCode != 401 || !strings.Contains(string(body), "expired") {
		t.Errorf("expired token: %d %s", resp.StatusCode, body)
	}
}

// TestIdentitySSE: an SSE stream is identified from its request, and ends
// with an "expired" event when the identity expires; the browser's
// reconnect with the same token then gets 401 JSON.
func TestIdentitySSE(t *testing.T) {
	a := newStubAuth()
	a.set("t42", Identity{User: "42", ExpireAt: time.Now().Add(700 * time.Millisecond)})
	b := newAuthServer(t, a, newFakeNow(), nil)
	b.s.idh.now = nil // the real clock: the stream waits for the expiry
	events := b.ts.URL + "/comet/channel/news/events?id=e1"
	resp, body := getWith(t, b.hc, events, "Cookie", "stardust_token=forged")
	if resp.StatusCode != 401 {
		t.Errorf("forged token: %d %s", resp.StatusCode, body)
	}
	start := time.Now()
	resp, body = getWith(t, b.hc, events, "Cookie", "stardust_token=t42")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "event: expired") {
		t.Fatalf("stream: %d %s", resp.StatusCode, body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the stream ended %s after it began, not at the expiry", d)
	}
	if c := clientOf(b.s.hub, "e1"); c == nil || c.Attr(AttrUser) != "42" {
		t.Error("the stream does not keep the identity")
	}
	resp, body = getWith(t, b.hc, events, "Cookie", "stardust_token=t42")
	if resp.StatusCode != 401 || !strings.Contains(string(body), "expired") {
		t.Errorf("reconnect with the expired token: %d %s", resp.StatusCode, body)
	}
}

// userRules are the rules of the README's example: each user reads its own
// /user/ID/** and its own Stardust inbox, and nobody else's.
var userRules = []ACLRule{
	{Channel: "/user/{user}/**", Subscribe: []string{"user:{user}"}, Publish: []string{"user:{user}"}},
	{Channel: "/stardust/inbox_{user}", Subscribe: []string{"user:{user}"}},
}

// TestIdentityUserRules: with {user} rules, user 42 reads /user/42/x and
// never /user/43/x or a wildcard over every user, over Bayeux, the Stardust
// long poll and SSE; an anonymous client reads neither; a channels claim
// grants what the rules refuse; channels no rule names stay open.
func TestIdentityUserRules(t *testing.T) {
	a, clock := newStubAuth(), newFakeNow()
	a.set("t42", Identity{User: "42"})
	a.set("t43", Identity{User: "43", Channels: []string{"/user/42/shared", "/stardust/inbox_42"}})
	a.set("tbad", Identity{User: "4/2"})
	b := newAuthServer(t, a, clock, userRules)

	hs := func(token string) string {
		r := b.post(handshakeMsg(TransportLongPolling, token))
		if r[0]["successful"] != true {
			t.Fatalf("handshake %q: %v", token, r)
		}
		return r[0]["clientId"].(string)
	}
	c42, c43, anon, bad := hs("t42"), hs("t43"), hs(""), hs("tbad")
	checkSubscribes(t, b, []subscribeCase{
		{c42, "/user/42/x", true}, {c42, "/user/42/**", true}, {c42, "/user/43/x", false},
		{c42, "/user/**", false}, {c42, "/news", true},
		{c43, "/user/43/x", true}, {c43, "/user/42/x", false}, {c43, "/user/42/shared", true},
		{anon, "/user/42/x", false}, {anon, "/news", true}, {bad, "/user/4/2", false},
	})
	checkReads(t, b, "", []readCase{
		{"t42", "inbox_42", "/stream/p1", 200}, {"t42", "inbox_43", "/stream/p2", 403},
		{"", "inbox_42", "/stream/p3", 403}, {"t43", "inbox_42", "/stream/p4", 200},
		{"t42", "inbox_42", "/events?id=p5", -1}, {"t43", "inbox_43", "/events?id=p6", -1},
		{"t42", "inbox_43", "/events?id=p7", 403}, {"t42", "inbox_42+inbox_43", "/stream/p8", 403},
	})
}

// subscribeCase is a Bayeux subscribe of client to sub, allowed or not.
type subscribeCase struct {
	client, sub string
	ok          bool
}

// checkSubscribes runs the cases; a refusal must be a 403.
func checkSubscribes(t *testing.T, b *bx, cases []subscribeCase) {
	t.Helper()
	for _, tt := range cases {
		r := b.subscribe(tt.client, tt.sub)
		if (r["successful"] == true) != tt.ok {
			t.Errorf("%q subscribing to %s: %v (want allowed %v)", clientOf(b.s.hub, tt.client).Attr(AttrUser), tt.sub, r, tt.ok)
		}
		if !tt.ok && !strings.HasPrefix(fmt.Sprint(r["error"]), "403:") {
			t.Errorf("refusal %v, want 403", r["error"])
		}
	}
}

// readCase is a Stardust read (path after the channel: a poll or an SSE
// stream) with a Bearer token, and its status; -1 for a stream that would
// be held, of which only the 200 is looked at.
type readCase struct {
	token, channel, path string
	status               int
}

// checkReads runs the cases; a 403's body must hold why when it is set.
func checkReads(t *testing.T, b *bx, why string, cases []readCase) {
	t.Helper()
	for _, tt := range cases {
		u := b.ts.URL + "/comet/channel/" + tt.channel + tt.path
		if tt.status == -1 {
			req, _ := http.NewRequest(http.MethodGet, u, nil)
			req.Header.Set("Authorization", "Bearer "+tt.token)
			ctx, cancel := context.WithCancel(context.Background())
			resp, err := b.hc.Do(req.WithContext(ctx))
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("%q reading %s: %v %v", tt.token, u, resp, err)
			} else {
				resp.Body.Close()
			}
			cancel()
			continue
		}
		resp, body := getWith(t, b.hc, u, "Authorization", "Bearer "+tt.token)
		if resp.StatusCode != tt.status {
			t.Errorf("%q reading %s: %d %s, want %d", tt.token, u, resp.StatusCode, body, tt.status)
		}
		if tt.status == 403 && why != "" && !strings.Contains(string(body), why) {
			t.Errorf("%q reading %s: %s does not say %q", tt.token, u, body, why)
		}
	}
}

// TestIdentityCallbacks: subscribe_url is asked after the ACL and not about
// what the ACL refused or a claim granted; its refusal reaches the client
// with the app's message; an app that is down refuses for now with retry
// advice (Bayeux) or 503 and Retry-After (Stardust); publish_url is asked
// about a Bayeux client's publish and told who publishes.
func TestIdentityCallbacks(t *testing.T) {
	a, clock := newStubAuth(), newFakeNow()
	a.set("t42", Identity{User: "42", Channels: []string{"/granted"}, Info: json.RawMessage(`{"plan":"gold"}`)})
	a.refuse["/closed"] = "not on your plan"
	a.refuse["/stardust/closed"] = "not on your plan"
	a.refuse["/readonly"] = "read only"
	b := newAuthServer(t, a, clock, userRules)
	r := b.post(handshakeMsg(TransportLongPolling, "t42"))
	id := r[0]["clientId"].(string)

	if r := b.subscribe(id, "/open"); r["successful"] != true {
		t.Errorf("open: %v", r)
	}
	r2 := b.subscribe(id, "/closed")
	wantError(t, r2, "403:")
	if !strings.Contains(fmt.Sprint(r2["error"]), "not on your plan") {
		t.Errorf("the app's message is lost: %v", r2["error"])
	}
	r2 = b.subscribe(id, "/slow/app")
	wantError(t, r2, "503:")
	if adv, _ := r2["advice"].(map[string]any); adv["reconnect"] != "retry" {
		t.Errorf("app down: advice %v", r2["advice"])
	}
	b.subscribe(id, "/user/43/x") // refused by the ACL
	b.subscribe(id, "/granted")   // granted by the claim
	a.mu.Lock()
	var asked []string
	for _, q := range a.asked {
		asked = append(asked, q.Channel)
		if q.User != "42" || q.Client != id || q.Protocol != "bayeux" || string(q.Info) != `{"plan":"gold"}` {
			t.Errorf("question %+v", q)
		}
	}
	a.mu.Unlock()
	if strings.Join(asked, " ") != "/open /closed /slow/app" {
		t.Errorf("subscribe_url asked about %v, want /open /closed /slow/app", asked)
	}

	resp, body := getWith(t, b.hc, b.ts.URL+"/comet/channel/closed/stream/q1", "Authorization", "Bearer t42")
	if resp.StatusCode != 403 || !strings.Contains(string(body), "not on your plan") {
		t.Errorf("Stardust poll refused by the app: %d %s", resp.StatusCode, body)
	}

	pub := func(channel string) map[string]any {
		return b.post(map[string]any{"channel": channel, "clientId": id, "data": map[string]any{"x": 1}, "id": "p"})[0]
	}
	if r := pub("/open"); r["successful"] != true {
		t.Errorf("publish: %v", r)
	}
	r2 = pub("/readonly")
	wantError(t, r2, "403:")
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.published) != 2 || a.published[0].User != "42" || a.published[0].Channel != "/open" {
		t.Errorf("publish_url questions %+v", a.published)
	}
}

// TestIdentityBayeuxHeldConnectEndsAtExpiry: a connect is held no longer
// than the identity holds, so that the client learns of the expiry (402 on
// its next connect) then, not a whole poll_timeout later.
func TestIdentityBayeuxHeldConnectEndsAtExpiry(t *testing.T) {
	a := newStubAuth()
	a.set("t42", Identity{User: "42", ExpireAt: time.Now().Add(1500 * time.Millisecond)})
	b := newAuthBX(t, a, newFakeNow(), nil, func(o *Options) { o.PollTimeout = 20 * time.Second })
	b.s.idh.now = nil // the real clock: the hold is real
	id := b.post(handshakeMsg(TransportLongPolling, "t42"))[0]["clientId"].(string)
	b.post(connectMsg(id, 0)) // the first connect is answered at once
	start := time.Now()
	r := b.post(connectMsg(id, -1))
	if d := time.Since(start); r[len(r)-1]["successful"] != true || d > 10*time.Second {
		t.Fatalf("held connect: %v after %s, want an answer at the expiry", r, d)
	}
	wantError(t, b.post(connectMsg(id, -1))[0], "402:")
}

// TestIdentityStardustPollEndsAtExpiry: a Stardust long poll is held no
// longer than its identity holds; the next poll is 401.
func TestIdentityStardustPollEndsAtExpiry(t *testing.T) {
	a := newStubAuth()
	a.set("t42", Identity{User: "42", ExpireAt: time.Now().Add(1500 * time.Millisecond)})
	b := newAuthBX(t, a, newFakeNow(), nil, func(o *Options) { o.PollTimeout = 20 * time.Second })
	b.s.idh.now = nil // the real clock: the hold is real
	poll := b.ts.URL + "/comet/channel/news/stream/x1"
	start := time.Now()
	if resp, body := getWith(t, b.hc, poll, "Authorization", "Bearer t42"); resp.StatusCode != 200 || time.Since(start) > 10*time.Second {
		t.Fatalf("held poll: %d %s after %s, want 200 at the expiry", resp.StatusCode, body, time.Since(start))
	}
	if resp, body := getWith(t, b.hc, poll, "", ""); resp.StatusCode != 401 {
		t.Errorf("the poll after the expiry: %d %s", resp.StatusCode, body)
	}
}
