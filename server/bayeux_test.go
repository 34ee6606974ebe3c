package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

type bx struct {
	t   *testing.T
	s   *Server
	ts  *httptest.Server
	url string
	hc  *http.Client // keeps the browser cookie, as browsers and the Node clients do
}

// client is the HTTP client of this test's "browser": it keeps cookies.
func (b *bx) client() *http.Client { return b.hc }

func newBX(t *testing.T, bo BayeuxOptions, mod ...func(*Options)) *bx {
	t.Helper()
	if bo.Services == nil {
		bo.Services = map[string]Service{"echo": EchoService}
	}
	opts := Options{PollTimeout: 2 * time.Second, Bayeux: &bo, Hub: HubOptions{HistorySize: 10}}
	for _, m := range mod {
		m(&opts)
	}
	s, ts := testServer(t, opts)
	jar, _ := cookiejar.New(nil)
	return &bx{t: t, s: s, ts: ts, url: ts.URL + "/comet/bayeux", hc: &http.Client{Jar: jar}}
}

// post sends a batch and returns the replies.
func (b *bx) post(msgs ...map[string]any) []map[string]any {
	b.t.Helper()
	replies, err := b.tryPost(msgs...)
	if err != nil {
		b.t.Fatal(err)
	}
	return replies
}

// tryPost sends a batch and returns the replies, or why there are none.
func (b *bx) tryPost(msgs ...map[string]any) ([]map[string]any, error) {
	body, _ := json.Marshal(msgs)
	resp, err := b.hc.Post(b.url, "application/json", strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, out)
	}
	var replies []map[string]any
	if err := json.Unmarshal(out, &replies); err != nil {
		return nil, fmt.Errorf("reply not a JSON array: %s", out)
	}
	return replies, nil
}

// handshake makes a session as clients do: a handshake, then the first
// connect, which is answered at once (over long-polling).
func (b *bx) handshake(types ...string) string {
	b.t.Helper()
	id := b.handshakeOnly(types...)
	if r := b.post(connectMsg(id, 0)); r[0]["successful"] != true {
		b.t.Fatalf("first connect failed: %v", r)
	}
	return id
}

// handshakeOnly makes a session not yet used.
func (b *bx) handshakeOnly(types ...string) string {
	b.t.Helper()
	if len(types) == 0 {
		types = []string{"long-polling"}
	}
	r := b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": types, "id": "h"})
	if r[0]["successful"] != true {
		b.t.Fatalf("handshake failed: %v", r)
	}
	return r[0]["clientId"].(string)
}

func connectMsg(id string, timeout int) map[string]any {
	m := map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling", "id": "c"}
	if timeout >= 0 {
		m["advice"] = map[string]any{"timeout": timeout}
	}
	return m
}

func (b *bx) subscribe(id string, subs ...string) map[string]any {
	b.t.Helper()
	var sub any = subs
	if len(subs) == 1 {
		sub = subs[0]
	}
	return b.post(map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": sub, "id": "s"})[0]
}

func wantError(t *testing.T, r map[string]any, prefix string) {
	t.Helper()
	if r["successful"] != false {
		t.Fatalf("want unsuccessful, got %v", r)
	}
	if e, _ := r["error"].(string); !strings.HasPrefix(e, prefix) {
		t.Fatalf("error %q, want prefix %q", r["error"], prefix)
	}
	if parts := strings.SplitN(r["error"].(string), ":", 3); len(parts) != 3 {
		t.Errorf("error %q not in code:args:message form", r["error"])
	}
}

func TestBayeuxHandshake(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true})
	t.Run("success", func(t *testing.T) {
		r := b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
			"supportedConnectionTypes": []string{"in-process", "websocket", "long-polling"}, "id": 7})[0]
		if r["successful"] != true || r["version"] != "1.0" || r["id"] != 7.0 || r["channel"] != "/meta/handshake" {
			t.Fatalf("reply %v", r)
		}
		if id, _ := r["clientId"].(string); len(id) < 32 {
			t.Errorf("clientId %q: want at least 128 random bits", id)
		}
		types := fmt.Sprint(r["supportedConnectionTypes"])
		for _, typ := range []string{"long-polling", "callback-polling", "websocket"} {
			if !strings.Contains(types, typ) {
				t.Errorf("supportedConnectionTypes %s lacks %s", types, typ)
			}
		}
		if adv, _ := r["advice"].(map[string]any); adv["reconnect"] != "retry" || adv["timeout"] != 2000.0 {
			t.Errorf("advice %v", r["advice"])
		}
	})
	t.Run("ids differ", func(t *testing.T) {
		if b.handshake() == b.handshake() {
			t.Fatal("two handshakes got the same clientId")
		}
	})
	tests := []struct {
		name   string
		msg    map[string]any
		prefix string
		advice string
	}{
		{"missing version", map[string]any{"supportedConnectionTypes": []string{"long-polling"}}, "400:version:", "none"},
		{"version 2", map[string]any{"version": "2.0", "supportedConnectionTypes": []string{"long-polling"}}, "300:2.0:", "none"},
		{"no common type", map[string]any{"version": "1.0", "supportedConnectionTypes": []string{"flash", "iframe"}}, "301:flash,iframe:", "none"},
		{"no types", map[string]any{"version": "1.0"}, "301::", "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.msg["channel"] = "/meta/handshake"
			tt.msg["id"] = "x"
			r := b.post(tt.msg)[0]
			wantError(t, r, tt.prefix)
			if r["id"] != "x" {
				t.Errorf("id not echoed: %v", r)
			}
			if adv, _ := r["advice"].(map[string]any); adv["reconnect"] != tt.advice {
				t.Errorf("advice %v, want reconnect %s", r["advice"], tt.advice)
			}
		})
	}
	t.Run("websocket not offered when disabled", func(t *testing.T) {
		nb := newBX(t, BayeuxOptions{})
		r := nb.post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"websocket"}})[0]
		wantError(t, r, "301:")
	})
}

func TestBayeuxUnknownClient(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	for _, msg := range []map[string]any{
		connectMsg("nope", 0),
		{"channel": "/meta/subscribe", "clientId": "nope", "subscription": "/a"},
		{"channel": "/meta/unsubscribe", "clientId": "nope", "subscription": "/a"},
		{"channel": "/meta/disconnect", "clientId": "nope"},
		{"channel": "/a", "clientId": "nope", "data": map[string]any{}},
		{"channel": "/a", "data": map[string]any{}},
	} {
		t.Run(msg["channel"].(string), func(t *testing.T) {
			r := b.post(msg)[0]
			wantError(t, r, "402:")
			if !strings.HasSuffix(r["error"].(string), ":Unknown client") {
				t.Errorf("error %q", r["error"])
			}
			if adv, _ := r["advice"].(map[string]any); adv["reconnect"] != "handshake" {
				t.Errorf("advice %v, want reconnect handshake", r["advice"])
			}
		})
	}
	// A Stardust stream id is not a Bayeux client.
	recv(t, poll(t, b.ts.URL+"/comet/channel/x/stream/123"), 5*time.Second)
	wantError(t, b.post(connectMsg("123", 0))[0], "402:123:")
}

func TestBayeuxConnectAndDelivery(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	id := b.handshake()
	if r := b.subscribe(id, "/chat/room", "/chat/*"); r["successful"] != true || r["clientId"] != id {
		t.Fatalf("subscribe: %v", r)
	}
	// First connect with timeout 0 answers at once (as CometD asks).
	start := time.Now()
	r := b.post(connectMsg(id, 0))
	if time.Since(start) > time.Second || len(r) != 1 || r[0]["successful"] != true {
		t.Fatalf("immediate connect: %v after %s", r, time.Since(start))
	}
	// A held connect gets a message published meanwhile, once, with the connect reply last.
	got := make(chan []map[string]any, 1)
	go func() { got <- b.post(connectMsg(id, -1)) }()
	waitPolling(t, b.s, id)
	pub := b.post(map[string]any{"channel": "/chat/room", "clientId": id, "data": map[string]any{"text": "hi"}, "id": "p1"})
	if pub[0]["successful"] != true || pub[0]["id"] != "p1" {
		t.Fatalf("publish reply %v", pub)
	}
	var replies []map[string]any
	select {
	case replies = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("held connect not answered")
	}
	if len(replies) != 2 || replies[0]["channel"] != "/chat/room" || replies[1]["channel"] != "/meta/connect" {
		t.Fatalf("want [message, connect reply], got %v", replies)
	}
	if _, ok := replies[0]["id"]; ok {
		t.Errorf("delivered message carries the publisher's id: %v", replies[0])
	}
	if d := replies[0]["data"].(map[string]any); d["text"] != "hi" {
		t.Errorf("data %v", d)
	}
	// An idle connect ends at the hold time with a successful reply.
	start = time.Now()
	r = b.post(connectMsg(id, -1))
	if d := time.Since(start); d < 1500*time.Millisecond || r[0]["successful"] != true {
		t.Errorf("idle connect: %v after %s", r, d)
	}
	// A second connect releases the first.
	first := make(chan []map[string]any, 1)
	go func() { first <- b.post(connectMsg(id, -1)) }()
	waitPolling(t, b.s, id)
	go b.post(connectMsg(id, -1))
	select {
	case r := <-first:
		if r[len(r)-1]["channel"] != "/meta/connect" || r[len(r)-1]["successful"] != true {
			t.Errorf("released connect answered %v", r)
		}
	case <-time.After(time.Second):
		t.Fatal("first connect not released by the second")
	}
	wantError(t, b.post(map[string]any{"channel": "/meta/connect", "clientId": id})[0], "400:connectionType:")
}

func TestBayeuxBatchInOrder(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	id := b.handshake()
	// Faye's habit: subscribe, publish and an immediate connect in one POST.
	r := b.post(
		map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/b/**", "id": "1"},
		map[string]any{"channel": "/b/x/y", "clientId": id, "data": 1, "id": "2"},
		map[string]any{"channel": "/b/x/y", "clientId": id, "data": 2, "id": "3"},
		connectMsg(id, 0),
	)
	var chans []string
	for _, m := range r {
		chans = append(chans, fmt.Sprintf("%v|%v|%v", m["channel"], m["id"], m["data"]))
	}
	want := "/meta/subscribe|1|<nil> /b/x/y|2|<nil> /b/x/y|3|<nil> /b/x/y|<nil>|1 /b/x/y|<nil>|2 /meta/connect|c|<nil>"
	if strings.Join(chans, " ") != want {
		t.Errorf("order:\n got %s\nwant %s", strings.Join(chans, " "), want)
	}
	wantError(t, b.post(connectMsg(id, 0), connectMsg(id, 0))[0], "400:/meta/connect:")
}

func TestBayeuxSubscribeErrors(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	id := b.handshake()
	for _, tt := range []struct{ sub, prefix string }{
		{"/meta/connect", "403:"}, {"/meta/**", "403:"}, {"/a/*/b", "405:"}, {"/**", "405:"}, {"bad", "405:"}, {"/a b", "405:"},
	} {
		wantError(t, b.subscribe(id, tt.sub), tt.prefix)
	}
	// A batch with one bad channel subscribes to none of them.
	wantError(t, b.subscribe(id, "/ok", "/meta/x"), "403:")
	if n := audience(t, b.s.Hub(), "/ok"); n != 0 {
		t.Errorf("partial subscribe: %d subscribers", n)
	}
	wantError(t, b.post(map[string]any{"channel": "/meta/subscribe", "clientId": id})[0], "400:subscription:")
	// Service channels: accepted, nothing subscribed in the hub.
	if r := b.subscribe(id, "/service/echo"); r["successful"] != true {
		t.Errorf("subscribe to a service channel: %v", r)
	}
	if r := b.post(map[string]any{"channel": "/meta/unsubscribe", "clientId": id, "subscription": "/never"})[0]; r["successful"] != true {
		t.Errorf("unsubscribe of nothing: %v", r)
	}
}

func TestBayeuxPublishErrors(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.MaxMessageSize = 100 })
	id := b.handshake()
	for _, tt := range []struct {
		name   string
		msg    map[string]any
		prefix string
	}{
		{"wildcard channel", map[string]any{"channel": "/a/*", "data": 1}, "405:"},
		{"meta channel", map[string]any{"channel": "/meta/foo", "data": 1}, "405:/meta/foo:"},
		{"missing data", map[string]any{"channel": "/a"}, "400:data:"},
		{"data too large", map[string]any{"channel": "/a", "data": strings.Repeat("x", 200)}, "400:/a:"},
		{"unknown service", map[string]any{"channel": "/service/nope", "data": 1}, "405:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.msg["clientId"] = id
			wantError(t, b.post(tt.msg)[0], tt.prefix)
		})
	}
}

func TestBayeuxBadRequests(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.MaxBodyBytes = 2048 })
	for _, tt := range []struct {
		name, ctype, body string
		status            int
		mention           string
	}{
		{"malformed JSON", "application/json", `[{"channel":`, 400, "invalid JSON"},
		{"not an object", "application/json", `[1]`, 400, "message #1"},
		{"no channel", "application/json", `[{"id":"1"}]`, 400, "missing channel"},
		{"wrong type", "application/json", `[{"channel":"/meta/handshake","version":1}]`, 400, `field \"version\"`},
		{"empty batch", "application/json", `[]`, 400, "empty batch"},
		{"too large", "application/json", `[{"channel":"/a","data":"` + strings.Repeat("x", 3000) + `"}]`, 413, "2048"},
		{"form without message", "application/x-www-form-urlencoded", "x=1", 400, "missing parameter message"},
		{"other content type", "text/plain", "hello", 400, "Content-Type"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(b.url, tt.ctype, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.mention) {
				t.Fatalf("got %d %s, want %d mentioning %q", resp.StatusCode, body, tt.status, tt.mention)
			}
		})
	}
	req, _ := http.NewRequest("PUT", b.url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("PUT: %d", resp.StatusCode)
	}
}

func TestBayeuxFormAndAlias(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	hs := `{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}`
	for _, u := range []string{b.url, b.ts.URL + "/comet/cometd", b.ts.URL + "/comet/bayeux/handshake"} {
		form := url.Values{"message": {hs, `[` + hs + `]`}}
		resp, err := http.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var r []map[string]any
		if json.Unmarshal(body, &r) != nil || len(r) != 2 || r[0]["successful"] != true || r[1]["successful"] != true {
			t.Errorf("%s: form message= twice: %s", u, body)
		}
	}
	resp, err := http.Post(b.url, "text/json", strings.NewReader(hs))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("text/json: %d", resp.StatusCode)
	}
}

func TestBayeuxCallbackPolling(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	hs := url.QueryEscape(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["callback-polling"],"id":"1"}]`)
	for _, tt := range []struct {
		query, prefix string
		status        int
	}{
		{"jsonp=cb_1&message=" + hs, "/**/cb_1([", 200},
		{"message=" + hs, "/**/jsonpcallback([", 200},
		{"jsonp=__jsonp1__&message=" + hs, "/**/__jsonp1__([", 200},
		{"jsonp=a.b.c&message=" + hs, `{"error"`, 400},
		{"jsonp=" + strings.Repeat("x", 200) + "&message=" + hs, `{"error"`, 400},
		{"jsonp=alert(1)&message=" + hs, `{"error"`, 400},
		{"jsonp=" + url.QueryEscape("x;y") + "&message=" + hs, `{"error"`, 400},
		{"jsonp=cb", `{"error"`, 400},
	} {
		resp, err := http.Get(b.url + "?" + tt.query)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.HasPrefix(string(body), tt.prefix) {
			t.Errorf("%s: %d %s", tt.query, resp.StatusCode, body)
			continue
		}
		if tt.status == 200 {
			if resp.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
				t.Errorf("headers %v", resp.Header)
			}
			if !strings.HasSuffix(string(body), ");") || !strings.Contains(string(body), `"successful":true`) {
				t.Errorf("body %s", body)
			}
		}
	}
}

func TestBayeuxServiceEcho(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	id := b.handshake()
	r := b.post(map[string]any{"channel": "/service/echo", "clientId": id, "data": map[string]any{"text": "ping"}, "id": "42"})
	if r[0]["successful"] != true || r[0]["id"] != "42" {
		t.Fatalf("publish reply %v", r)
	}
	if _, ok := r[0]["data"]; ok {
		t.Errorf("the publish reply must carry no data (CometD's websocket timer): %v", r[0])
	}
	c := b.post(connectMsg(id, 0))
	if len(c) != 2 || c[0]["channel"] != "/service/echo" || c[0]["id"] != "42" || c[0]["successful"] != true {
		t.Fatalf("echo answer %v", c)
	}
	if d := c[0]["data"].(map[string]any); d["text"] != "ping" {
		t.Errorf("echo data %v", d)
	}
	// Nobody else sees service traffic, even with a catch-all subscription.
	other := b.handshake()
	b.subscribe(other, "/service/**")
	if got := b.post(connectMsg(other, 0)); len(got) != 1 {
		t.Errorf("another client saw service traffic: %v", got)
	}
}

func TestBayeuxDisconnect(t *testing.T) {
	events := make(chan Event, 100)
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.Hub.Events = func(e Event) { events <- e } })
	id := b.handshake()
	b.subscribe(id, "/d")
	held := make(chan []map[string]any, 1)
	go func() { held <- b.post(connectMsg(id, -1)) }()
	waitPolling(t, b.s, id)
	// The connect is polling (watched) a moment before its first look at
	// the queue, which would find the client gone: wait until it waits.
	for deadline := time.Now().Add(5 * time.Second); stats(t, b.s.Hub()).Polling != 1; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the connect is watched but not waiting: %d polls waiting", stats(t, b.s.Hub()).Polling)
		}
	}
	r := b.post(map[string]any{"channel": "/meta/disconnect", "clientId": id, "id": "bye"})[0]
	if r["successful"] != true || r["id"] != "bye" {
		t.Fatalf("disconnect: %v", r)
	}
	select {
	case got := <-held:
		last := got[len(got)-1]
		adv, _ := last["advice"].(map[string]any)
		if last["successful"] != true || adv["reconnect"] != "none" {
			t.Errorf("held connect on disconnect: %v, want successful with reconnect none", last)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("held connect not answered on disconnect")
	}
	wantError(t, b.post(connectMsg(id, 0))[0], "402:")
	var types []string
	for len(events) > 0 {
		e := <-events
		types = append(types, e.Type+":"+e.Channel)
	}
	if got := strings.Join(types, " "); got != "client_connect: subscribe:/d client_disconnect:" {
		t.Errorf("events %s", got)
	}
}

func TestBayeuxConnectTimeout(t *testing.T) {
	b := newBX(t, BayeuxOptions{ConnectTimeout: 200 * time.Millisecond}, func(o *Options) { o.Hub.SweepInterval = 20 * time.Millisecond })
	id := b.handshake()
	deadline := time.Now().Add(3 * time.Second)
	for clientOf(b.s.Hub(), id) != nil {
		if time.Now().After(deadline) {
			t.Fatal("client that never connected was not removed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantError(t, b.post(connectMsg(id, 0))[0], "402:")
}

func TestBayeuxQueueBetweenConnects(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.Hub.QueueMaxMessages = 3 })
	id := b.handshake()
	b.subscribe(id, "/q")
	pub := b.handshake()
	for i := 1; i <= 5; i++ {
		b.post(map[string]any{"channel": "/q", "clientId": pub, "data": i})
	}
	r := b.post(connectMsg(id, 0))
	if len(r) != 4 || r[0]["data"] != 3.0 || r[2]["data"] != 5.0 {
		t.Fatalf("want the newest 3 messages then the connect reply, got %v", r)
	}
	if st := stats(t, b.s.Hub()); st.Dropped != 2 {
		t.Errorf("dropped %d, want 2", st.Dropped)
	}
}

func TestBayeuxAnonPublish(t *testing.T) {
	for _, anon := range []bool{false, true} {
		b := newBX(t, BayeuxOptions{AnonPublish: anon})
		r := b.post(map[string]any{"channel": "/stardust/anon", "data": map[string]any{"a": 1}})[0]
		if anon != (r["successful"] == true) {
			t.Errorf("anon_publish=%v: %v", anon, r)
		}
		if anon {
			wantError(t, b.post(map[string]any{"channel": "/service/echo", "data": 1})[0], "402:")
		}
	}
}

func TestBridgeBothWays(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	id := b.handshake()
	b.subscribe(id, "/stardust/*")
	postForm(t, b.ts.URL+"/comet/channel/foo", `{"type":"x"}`)
	r := b.post(connectMsg(id, 0))
	if len(r) != 2 || r[0]["channel"] != "/stardust/foo" || r[0]["data"].(map[string]any)["type"] != "x" {
		t.Fatalf("Stardust publish did not reach the Bayeux subscriber: %v", r)
	}
	res := poll(t, b.ts.URL+"/comet/channel/foo/stream/9.9")
	waitPolling(t, b.s, "9.9")
	b.post(map[string]any{"channel": "/stardust/foo", "clientId": id, "data": map[string]any{"type": "y"}})
	msgs := recv(t, res, 3*time.Second)
	if len(msgs) != 1 || msgs[0]["type"] != "y" || msgs[0]["_ch"] != "foo" || msgs[0]["_ts"] == nil {
		t.Fatalf("Bayeux publish did not reach the Stardust stream: %v", msgs)
	}
	// Non-object data reaches Stardust clients wrapped.
	res = poll(t, b.ts.URL+"/comet/channel/foo/stream/9.9")
	waitPolling(t, b.s, "9.9")
	b.post(map[string]any{"channel": "/stardust/foo", "clientId": id, "data": "plain"})
	if msgs := recv(t, res, 3*time.Second); len(msgs) != 1 || msgs[0]["data"] != "plain" {
		t.Fatalf("wrapped data: %v", msgs)
	}
}

func TestLocalClient(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	got := make(chan *Message, 10)
	var bot *LocalClient
	bot, err := b.s.Hub().NewLocalClient("reply-bot", func(m *Message) {
		if m.ClientID == "reply-bot" {
			return
		}
		got <- m
		_ = bot.Publish(m.Channel, map[string]any{"user": "Autobot", "chat": "I got your message"})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bot.Close()
	if err := bot.Subscribe("/chat/**"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.s.Hub().NewLocalClient("reply-bot", func(*Message) {}); err == nil {
		t.Error("a second local client with the same id was accepted")
	}
	id := b.handshake()
	b.subscribe(id, "/chat/demo")
	b.post(map[string]any{"channel": "/chat/demo", "clientId": id, "data": map[string]any{"user": "ann", "chat": "hello"}})
	select {
	case m := <-got:
		if m.Channel != "/chat/demo" || m.ClientID != id {
			t.Errorf("bot got %+v", m)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("local client got nothing")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		r := b.post(connectMsg(id, 0))
		for _, m := range r {
			if d, ok := m["data"].(map[string]any); ok && d["user"] == "Autobot" {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("bot's reply never reached the Bayeux client: %v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBayeuxShutdownAnswersHeldConnect(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.PollTimeout = time.Minute })
	id := b.handshake()
	held := make(chan []map[string]any, 1)
	go func() { held <- b.post(connectMsg(id, -1)) }()
	waitPolling(t, b.s, id)
	b.s.Close()
	select {
	case r := <-held:
		adv, _ := r[0]["advice"].(map[string]any)
		if r[0]["successful"] != true || adv["reconnect"] != "retry" {
			t.Errorf("connect on shutdown %v", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("held connect not answered at shutdown")
	}
}

func FuzzDecodeBayeux(f *testing.F) {
	f.Add(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]`)
	f.Add(`{"channel":"/meta/subscribe","clientId":"x","subscription":["/a","/b/*"]}`)
	f.Add(`[{"channel":"/a","data":{"x":[1,2,{}]},"ext":{"k":"v"},"id":7}]`)
	f.Add(`[{"channel":"/meta/connect","advice":{"timeout":0}}]`)
	f.Add(`[1, "x", null]`)
	f.Fuzz(func(t *testing.T, body string) {
		msgs, err := DecodeBayeux([]byte(body))
		if err != nil {
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("error does not wrap ErrBadMessage: %v", err)
			}
			return
		}
		if len(msgs) == 0 {
			t.Fatal("no error and no message")
		}
		b := newFuzzBayeux(t)
		defer b.hub.Close()
		replies, held := b.process(msgs, caller{remote: "127.0.0.1", transport: TransportLongPolling})
		if len(replies) == 0 && held == nil {
			t.Fatal("a batch got no reply")
		}
		for _, r := range replies {
			if !json.Valid(r) {
				t.Fatalf("reply is not JSON: %s", r)
			}
		}
	})
}

func newFuzzBayeux(t *testing.T) *Bayeux {
	log, _ := test.NewNullLogger()
	s := New(Options{Bayeux: &BayeuxOptions{Services: map[string]Service{"echo": EchoService}}}, logrus.NewEntry(log))
	return s.bayeux
}

func TestEverythingIsSweptBack(t *testing.T) {
	b := newBX(t, BayeuxOptions{ConnectTimeout: 150 * time.Millisecond}, func(o *Options) {
		o.PollTimeout = 20 * time.Millisecond
		o.ClientTimeout = 150 * time.Millisecond
		o.Hub.ChannelTimeout = 200 * time.Millisecond
		o.Hub.SweepInterval = 20 * time.Millisecond
	})
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			recv(t, poll(t, fmt.Sprintf("%s/comet/channel/c%d+shared/stream/%d", b.ts.URL, i%30, i)), 5*time.Second)
			postForm(t, fmt.Sprintf("%s/comet/channel/p%d", b.ts.URL, i), `{"n":1}`)
		}(i)
	}
	for i := 0; i < 20; i++ {
		id := b.handshakeOnly() // its first connect comes last: the connect timeout is short
		b.subscribe(id, fmt.Sprintf("/deep/%d/**", i), "/stardust/shared")
		b.post(connectMsg(id, -1))
	}
	wg.Wait()
	h := b.s.Hub()
	if st := stats(t, h); st.Clients == 0 || st.Channels == 0 || st.Subscriptions == 0 {
		t.Fatalf("nothing to sweep: %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := stats(t, h)
		e := h.Engine().(*MemoryEngine)
		e.subs.mu.RLock()
		treeEmpty := e.subs.root.empty()
		e.subs.mu.RUnlock()
		e.conns.mu.Lock()
		held := len(e.conns.n)
		e.conns.mu.Unlock()
		if st.Clients == 0 && st.Channels == 0 && st.Subscriptions == 0 && treeEmpty && held == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind: %+v, tree empty %v, held %d", st, treeEmpty, held)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue 17, point 7: a refused callback name is named in the error by its
// first 32 characters only, escaped: the whole of it (up to the 1 MiB of a
// request line) was echoed back.
func TestBayeuxRefusedCallbackNotEchoed(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	name := "<script>alert(1)</script>" + strings.Repeat("x", 8000)
	resp, err := http.Get(b.url + "?jsonp=" + url.QueryEscape(name) + "&message=%5B%5D")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e errorBody
	if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil {
		t.Fatalf("a refused callback name: %d %s, want 400 JSON", resp.StatusCode, body)
	}
	if len(body) > 200 || strings.Contains(string(body), "<script>") || !strings.Contains(e.Error, `"<script>alert(1)</script>xxxxxxx"...`) {
		t.Errorf("a refused callback name of %d bytes answered with %d bytes: %.300s", len(name), len(body), body)
	}
}

// Issue 17: the first /meta/connect of a session is answered at once, as
// CometD's and the Perl POE server's ("Don't delay the first time they
// connect"): some clients send nothing else until it returns. The next
// ones are held.
func TestBayeuxFirstConnectAnsweredAtOnce(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true}, func(o *Options) { o.PollTimeout = 30 * time.Second })
	timed := func(send func() []map[string]any) ([]map[string]any, time.Duration) {
		start := time.Now()
		r := send()
		return r, time.Since(start)
	}
	id := b.handshakeOnly()
	r, took := timed(func() []map[string]any { return b.post(connectMsg(id, -1)) })
	if r[0]["successful"] != true || took > 10*time.Second {
		t.Fatalf("first long-polling connect answered after %v: %v", took, r)
	}
	b.subscribe(id, "/x")
	done := make(chan []map[string]any, 1)
	go func() { done <- b.post(connectMsg(id, -1)) }()
	deadline := time.Now().Add(5 * time.Second)
	for !polling(b.s.hub, id) {
		if time.Now().After(deadline) {
			t.Fatal("the second connect is not held")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.publishHere("/x", "wake")
	<-done

	ws := b.dialWS()
	ws.send(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"websocket"}})
	wid := ws.read()[0]["clientId"].(string)
	r, took = timed(func() []map[string]any { ws.send(wsConnect(wid, -1)); return ws.read() })
	if r[0]["successful"] != true || took > 10*time.Second {
		t.Fatalf("first websocket connect answered after %v: %v", took, r)
	}
}

// Issue 17, point 9: a tab told to poll (multiple-clients) gets what is
// queued for it in that answer. Before, the answer carried nothing, so a
// tab that another one kept from holding never got its messages (CometD's
// client: two clients in one process, the subscriber second).
func TestMultipleClientsAnswerCarriesMessages(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.PollTimeout = 30 * time.Second })
	holder, tab := b.handshake(), b.handshake()
	b.subscribe(tab, "/stock/**")
	go b.post(connectMsg(holder, -1))
	waitPolling(t, b.s, holder)
	for i := range 3 {
		b.publishHere("/stock/nasdaq/goog", i)
	}
	r := b.post(connectMsg(tab, -1))
	last := r[len(r)-1]
	if adv, _ := last["advice"].(map[string]any); last["channel"] != "/meta/connect" || adv["multiple-clients"] != true {
		t.Fatalf("the tab was not told to poll: %v", r)
	}
	if len(r) != 4 || r[0]["data"] != 0.0 || r[2]["data"] != 2.0 {
		t.Fatalf("the multiple-clients answer: %v, want the 3 messages then the connect reply", r)
	}
	// They were taken: the next answer does not bring them again.
	if r := b.post(connectMsg(tab, -1)); len(r) != 1 {
		t.Fatalf("the next answer: %v", r)
	}
}

// decodeSimple's result on any body it reads is the full decoder's.
func FuzzDecodeSimpleBayeux(f *testing.F) {
	f.Add(`[{"channel":"/meta/connect","clientId":"5b1c","connectionType":"long-polling","id":"3"}]`)
	f.Add(`{"id":42,"channel":"/meta/connect","advice":{"timeout":0},"ext":{"ack":17,"k":"v","b":true,"n":null}}`)
	f.Add(` [ { "channel" : "/a" , "id" : -0 } ] `)
	f.Add(`{"channel":"/a","id":01}`)
	f.Add(`{"channel":"/a","ext":{"a":1,"a":2}}`)
	f.Add(`{"channel":"/a","channel":"/b"}`)
	f.Add(`{}`)
	f.Add(`[{"channel":"/a"},]`)
	f.Add(`{"channel":"/a","id":1e3}`)
	f.Fuzz(func(t *testing.T, body string) {
		b := bytes.TrimSpace([]byte(body))
		if checkUTF8(b, "body") != nil {
			return
		}
		fast, ok := decodeSimple(b)
		if !ok {
			return
		}
		var full []*BayeuxMessage
		var err error
		switch b[0] {
		case '[':
			err = jsonv2.Unmarshal(b, &full)
		default:
			full = []*BayeuxMessage{{}}
			err = jsonv2.Unmarshal(b, full[0])
		}
		if err != nil {
			t.Fatalf("read as simple, refused by the full decoder: %v", err)
		}
		if len(full) != 1 || !reflect.DeepEqual(normalRaw(*fast), normalRaw(*full[0])) {
			t.Fatalf("simple %+v, full %+v", *fast, full)
		}
	})
}

// normalRaw is m with its empty raw fields nil, as the full decoder leaves
// them.
func normalRaw(m BayeuxMessage) BayeuxMessage {
	for _, f := range []*json.RawMessage{&m.ID, &m.Data, &m.Ext, &m.Advice, &m.Subscription} {
		if len(*f) == 0 {
			*f = nil
		}
	}
	return m
}

// A simple body's raw members are copies: the buffer it was read from may
// be reused.
func TestDecodeSimpleBayeuxKeepsNoBuffer(t *testing.T) {
	body := []byte(`[{"channel":"/meta/connect","id":"7","ext":{"ack":3},"advice":{"timeout":0}}]`)
	msgs, err := DecodeBayeux(body)
	if err != nil || len(msgs) != 1 {
		t.Fatal(msgs, err)
	}
	clear(body)
	if m := msgs[0]; string(m.ID) != `"7"` || string(m.Ext) != `{"ack":3}` || string(m.Advice) != `{"timeout":0}` {
		t.Fatalf("after the buffer was reused: id %s, ext %s, advice %s", m.ID, m.Ext, m.Advice)
	}
}

// removedOnFetch is a memory engine that removes session id (as a
// disconnect would) just before it next fetches it, when armed.
type removedOnFetch struct {
	*MemoryEngine
	id    string
	armed atomic.Bool
}

func (e *removedOnFetch) Fetch(ctx context.Context, id string, max int) (Batch, error) {
	if id == e.id && e.armed.CompareAndSwap(true, false) {
		_, _ = e.MemoryEngine.RemoveSession(ctx, id)
	}
	return e.MemoryEngine.Fetch(ctx, id, max)
}

// TestBayeuxDisconnectBeforeFirstLook: a disconnect that lands after a
// connect is watched but before its first look at the queue ends it as a
// held one (successful, reconnect none), not as a client lost (402,
// handshake): before, the look found the client unknown and said so.
func TestBayeuxDisconnectBeforeFirstLook(t *testing.T) {
	e := &removedOnFetch{MemoryEngine: NewMemoryEngine(Limits{})}
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.Hub.Engine = e })
	id := b.handshake()
	e.id = id
	e.armed.Store(true)
	r := b.post(connectMsg(id, -1))
	last := r[len(r)-1]
	if adv, _ := last["advice"].(map[string]any); last["successful"] != true || adv["reconnect"] != "none" {
		t.Errorf("connect removed before its first look: %v, want successful with reconnect none", last)
	}
}
