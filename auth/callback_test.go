package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stardust-go/stardust/server"
)

// appServer is the app beside Stardust: it records what it was sent and
// answers with answer(r, body).
type appServer struct {
	*httptest.Server
	calls  atomic.Int64
	mu     sync.Mutex
	bodies []map[string]any
	heads  []http.Header
}

func newApp(t *testing.T, answer func(w http.ResponseWriter, body map[string]any)) *appServer {
	app := &appServer{}
	app.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		app.calls.Add(1)
		var body map[string]any
		data, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(data, &body) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		app.mu.Lock()
		app.bodies = append(app.bodies, body)
		app.heads = append(app.heads, r.Header.Clone())
		app.mu.Unlock()
		answer(w, body)
	}))
	t.Cleanup(app.Close)
	return app
}

func (app *appServer) last() (map[string]any, http.Header) {
	app.mu.Lock()
	defer app.mu.Unlock()
	if len(app.bodies) == 0 {
		return nil, nil
	}
	return app.bodies[len(app.bodies)-1], app.heads[len(app.heads)-1]
}

func answerJSON(status int, v string) func(http.ResponseWriter, map[string]any) {
	return func(w http.ResponseWriter, _ map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, v)
	}
}

// browser is a request from a browser with the app's session cookie.
func browser(cookie string) *http.Request {
	r := httptest.NewRequest("GET", "/comet/sse", nil)
	r.Header.Set("Cookie", "PHPSESSID="+cookie)
	r.Header.Set("X-Secret-Header", "not for the app")
	r.Header.Set("User-Agent", "test-browser")
	return r
}

func connectReq(cookie string) server.AuthRequest {
	return server.AuthRequest{Request: browser(cookie), Protocol: "stardust", Transport: "sse", Remote: "192.0.2.7"}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(testNow.UnixNano())
	return c
}
func (c *fakeClock) now() time.Time         { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration)    { c.ns.Add(int64(d)) }
func (c *fakeClock) opts(o Options) Options { o.Now = c.now; return o }

func TestConnectAnswers(t *testing.T) {
	exp := testNow.Add(time.Hour).Unix()
	tests := []struct {
		name   string
		status int
		body   string
		user   string
		err    error
		msg    string
	}{
		{"allowed", 200, fmt.Sprintf(`{"user":"42","expire_at":%d,"channels":["/user/{user}/**"],"info":{"name":"Ann"}}`, exp), "42", nil, ""},
		{"integer user", 200, `{"user":42}`, "42", nil, ""},
		{"no expiry", 200, `{"user":"42","expire_at":0}`, "42", nil, ""},
		{"401", 401, ``, "", server.ErrUnauthenticated, "401"},
		{"403 with a message", 403, `{"error":"banned until Monday"}`, "", server.ErrForbidden, "banned until Monday"},
		{"403 plain", 403, `no`, "", server.ErrForbidden, "refused by the app"},
		{"500", 500, `oops`, "", server.ErrAppUnavailable, "retry"},
		{"404", 404, ``, "", server.ErrAppUnavailable, "retry"},
		{"no user", 200, `{"channels":[]}`, "", server.ErrAppUnavailable, "unusable"},
		{"float user", 200, `{"user":4.2}`, "", server.ErrAppUnavailable, "unusable"},
		{"not JSON", 200, `<html>`, "", server.ErrAppUnavailable, "unusable"},
		{"bad channel", 200, `{"user":"42","channels":["chat"]}`, "", server.ErrAppUnavailable, "unusable"},
		{"info not an object", 200, `{"user":"42","info":"x"}`, "", server.ErrAppUnavailable, "unusable"},
		{"bad expire_at", 200, `{"user":"42","expire_at":"soon"}`, "", server.ErrAppUnavailable, "unusable"},
		{"expired", 200, fmt.Sprintf(`{"user":"42","expire_at":%d}`, testNow.Unix()-1), "", server.ErrTokenExpired, "expired"},
		{"too long", 200, `{"user":"42","info":{"x":"` + strings.Repeat("x", MaxAnswerBytes) + `"}}`, "", server.ErrAppUnavailable, "retry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			app := newApp(t, answerJSON(tc.status, tc.body))
			a := newTestAuth(t, Options{ConnectURL: app.URL})
			id, err := a.Authenticate(t.Context(), connectReq("s1"))
			if tc.user != "" {
				if err != nil || id.User != tc.user {
					t.Fatalf("got %+v, %v", id, err)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v; want %v with %q", err, tc.err, tc.msg)
			}
		})
	}
}

// What the app is sent: the body's three fields, and of the request's
// headers exactly those named by forward_headers.
func TestConnectRequest(t *testing.T) {
	app := newApp(t, answerJSON(200, `{"user":"42","channels":["/user/{user}/**"],"info":{"name":"Ann"}}`))
	a := newTestAuth(t, Options{ConnectURL: app.URL, ForwardHeaders: []string{"cookie", "X-Tenant", "Authorization"}})
	req := connectReq("s1")
	req.Request.Header.Set("X-Tenant", "blue")
	id, err := a.Authenticate(t.Context(), req)
	if err != nil || id.User != "42" || !id.Grants("/user/42/a") || string(id.Info) != `{"name":"Ann"}` {
		t.Fatalf("got %+v, %v", id, err)
	}
	body, h := app.last()
	want := map[string]any{"protocol": "stardust", "transport": "sse", "remote": "192.0.2.7"}
	if fmt.Sprint(body) != fmt.Sprint(want) {
		t.Errorf("body %v, want %v", body, want)
	}
	if h.Get("Cookie") != "PHPSESSID=s1" || h.Get("X-Tenant") != "blue" {
		t.Errorf("forwarded headers missing: %v", h)
	}
	for _, name := range []string{"X-Secret-Header", "Authorization"} {
		if _, ok := h[name]; ok {
			t.Errorf("%s was forwarded", name)
		}
	}
	if h.Get("User-Agent") == "test-browser" {
		t.Error("the browser's User-Agent was forwarded")
	}

	// No forwarded header at all: anonymous, and the app is not asked.
	n := app.calls.Load()
	r := httptest.NewRequest("GET", "/comet/sse", nil)
	if _, err := a.Authenticate(t.Context(), server.AuthRequest{Request: r}); !errors.Is(err, server.ErrNoCredentials) {
		t.Errorf("no headers: %v", err)
	}
	if app.calls.Load() != n {
		t.Error("the app was asked about a request with none of the forwarded headers")
	}
}

// A token decides alone when token keys are set: a bad one is refused
// without asking the app.
func TestTokenBeforeConnect(t *testing.T) {
	k := testKeys(t)
	app := newApp(t, answerJSON(200, `{"user":"app"}`))
	a := newTestAuth(t, Options{ConnectURL: app.URL, HMACSecret: k.secret})
	r := browser("s1")
	r.Header.Set("Authorization", "Bearer "+sign(t, jwt.SigningMethodHS256, k.secret, claimsFor("tok"), nil))
	if id, err := a.Authenticate(t.Context(), server.AuthRequest{Request: r}); err != nil || id.User != "tok" {
		t.Fatalf("good token: %+v, %v", id, err)
	}
	r.Header.Set("Authorization", "Bearer not.a.token")
	if _, err := a.Authenticate(t.Context(), server.AuthRequest{Request: r}); !errors.Is(err, server.ErrUnauthenticated) {
		t.Fatalf("bad token: %v", err)
	}
	if id, err := a.Authenticate(t.Context(), connectReq("s1")); err != nil || id.User != "app" {
		t.Fatalf("no token: %+v, %v", id, err)
	}
	if n := app.calls.Load(); n != 1 {
		t.Errorf("the app was called %d times, want 1 (for the request without a token)", n)
	}

	// Without token keys a bearer token is the app's to read.
	b := newTestAuth(t, Options{ConnectURL: app.URL})
	if id, err := b.Authenticate(t.Context(), server.AuthRequest{Request: r}); err != nil || id.User != "app" {
		t.Fatalf("token without keys, with connect_url: %+v, %v", id, err)
	}
	c := newTestAuth(t, Options{})
	if _, err := c.Authenticate(t.Context(), server.AuthRequest{Request: r}); !errors.Is(err, server.ErrUnauthenticated) ||
		!strings.Contains(err.Error(), "no token key") {
		t.Fatalf("token without keys or connect_url: %v", err)
	}
}

// Answers are kept per browser session for cache_ttl (no longer than the
// identity holds); another session, or the same after the TTL, asks again.
func TestConnectCache(t *testing.T) {
	clock := newClock()
	exp := testNow.Add(90 * time.Second).Unix()
	app := newApp(t, func(w http.ResponseWriter, body map[string]any) {
		fmt.Fprintf(w, `{"user":"42","expire_at":%d}`, exp)
	})
	a := newTestAuth(t, clock.opts(Options{ConnectURL: app.URL, CacheTTL: time.Minute}))
	for range 10 {
		if _, err := a.Authenticate(t.Context(), connectReq("s1")); err != nil {
			t.Fatal(err)
		}
	}
	if n := app.calls.Load(); n != 1 {
		t.Fatalf("10 polls of one session made %d calls, want 1", n)
	}
	a.Authenticate(t.Context(), connectReq("s2"))
	if n := app.calls.Load(); n != 2 {
		t.Fatalf("a second session: %d calls, want 2", n)
	}
	clock.add(59 * time.Second)
	a.Authenticate(t.Context(), connectReq("s1"))
	if n := app.calls.Load(); n != 2 {
		t.Fatalf("within the TTL: %d calls, want 2", n)
	}
	clock.add(2 * time.Second)
	a.Authenticate(t.Context(), connectReq("s1"))
	if n := app.calls.Load(); n != 3 {
		t.Fatalf("after the TTL: %d calls, want 3", n)
	}
	// The answer expires 30 s after this: the cache keeps it no longer.
	clock.add(30 * time.Second)
	if _, err := a.Authenticate(t.Context(), connectReq("s1")); !errors.Is(err, server.ErrTokenExpired) {
		t.Fatalf("after expire_at: %v", err)
	}
	if _, _, sub := a.Calls(); sub != 0 {
		t.Errorf("subscribe calls %d", sub)
	}
	if c, _, _ := a.Calls(); c != app.calls.Load() {
		t.Errorf("Calls() = %d, the app saw %d", c, app.calls.Load())
	}
}

// A refusal is kept too; an app that is down is not.
func TestConnectCacheRefusalsNotFailures(t *testing.T) {
	status := atomic.Int64{}
	status.Store(403)
	app := newApp(t, func(w http.ResponseWriter, _ map[string]any) {
		w.WriteHeader(int(status.Load()))
		io.WriteString(w, `{"user":"42"}`)
	})
	a := newTestAuth(t, Options{ConnectURL: app.URL})
	for range 3 {
		a.Authenticate(t.Context(), connectReq("s1"))
	}
	if n := app.calls.Load(); n != 1 {
		t.Errorf("3 refused polls: %d calls, want 1", n)
	}
	status.Store(502)
	for range 3 {
		if _, err := a.Authenticate(t.Context(), connectReq("s2")); !errors.Is(err, server.ErrAppUnavailable) {
			t.Fatal(err)
		}
	}
	if n := app.calls.Load(); n != 4 {
		t.Errorf("3 polls while the app fails: %d calls in all, want 4", n)
	}
}

func TestCacheBounded(t *testing.T) {
	app := newApp(t, answerJSON(200, `{"user":"42"}`))
	a := newTestAuth(t, Options{ConnectURL: app.URL, CacheSize: 3})
	for i := range 10 {
		a.Authenticate(t.Context(), connectReq(fmt.Sprint("s", i)))
	}
	if n := a.identities.len(); n != 3 {
		t.Errorf("%d answers kept, want 3", n)
	}
	a.Authenticate(t.Context(), connectReq("s9")) // the most recent: still there
	a.Authenticate(t.Context(), connectReq("s0")) // the oldest: pushed out
	if n := app.calls.Load(); n != 11 {
		t.Errorf("%d calls, want 11", n)
	}
}

// Identical questions asked at once make one call.
func TestConnectSingleflight(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	app := newApp(t, func(w http.ResponseWriter, _ map[string]any) {
		<-release
		io.WriteString(w, `{"user":"42"}`)
	})
	t.Cleanup(unblock) // before app.Close, which waits for the handlers
	a := newTestAuth(t, Options{ConnectURL: app.URL, CallbackTimeout: 10 * time.Second})
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			id, err := a.Authenticate(t.Context(), connectReq("s1"))
			if err == nil && id.User != "42" {
				err = fmt.Errorf("user %q", id.User)
			}
			errs <- err
		})
	}
	eventually(t, "the call", func() bool { return app.calls.Load() >= 1 })
	time.Sleep(100 * time.Millisecond) // let the others queue behind it
	unblock()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := app.calls.Load(); got != 1 {
		t.Errorf("%d concurrent identical questions made %d calls, want 1", n, got)
	}
}

// A slow app: refused after callback_timeout with retry advice, never a
// hang; a caller who gives up first is not held either.
func TestCallbackTimeout(t *testing.T) {
	hold := make(chan struct{})
	app := newApp(t, func(w http.ResponseWriter, _ map[string]any) { <-hold })
	t.Cleanup(func() { close(hold) }) // before app.Close, which waits for the handlers
	a := newTestAuth(t, Options{ConnectURL: app.URL, SubscribeURL: app.URL, CallbackTimeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := a.Authenticate(t.Context(), connectReq("s1"))
	if !errors.Is(err, server.ErrAppUnavailable) || !strings.Contains(err.Error(), "did not answer within 200ms") ||
		!strings.Contains(err.Error(), "retry") {
		t.Fatalf("slow app: %v", err)
	}
	err = a.AuthorizeSubscribe(t.Context(), server.ChannelRequest{User: "42", Channel: "/a", Header: browser("s1").Header})
	if !errors.Is(err, server.ErrAppUnavailable) {
		t.Fatalf("slow app, subscribe: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("two calls to a slow app with a 200ms timeout took %s", d)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := a.Authenticate(ctx, connectReq("s9")); !errors.Is(err, server.ErrAppUnavailable) || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("a caller who gives up first: %v", err)
	}
}

// An app that is down: refused at once with retry advice.
func TestCallbackDown(t *testing.T) {
	app := newApp(t, answerJSON(200, `{}`))
	url := app.URL
	app.Close()
	a := newTestAuth(t, Options{ConnectURL: url, SubscribeURL: url, PublishURL: url})
	_, err := a.Authenticate(t.Context(), connectReq("s1"))
	if !errors.Is(err, server.ErrAppUnavailable) || !strings.Contains(err.Error(), "could not be reached: retry") {
		t.Fatalf("app down: %v", err)
	}
	req := server.ChannelRequest{User: "42", Channel: "/a", Header: browser("s1").Header}
	if err := a.AuthorizeSubscribe(t.Context(), req); !errors.Is(err, server.ErrAppUnavailable) {
		t.Fatalf("app down, subscribe: %v", err)
	}
	if err := a.AuthorizePublish(t.Context(), req); !errors.Is(err, server.ErrAppUnavailable) {
		t.Fatalf("app down, publish: %v", err)
	}
}

// A redirect is not followed: calls go to the configured URL only.
func TestCallbackNoRedirect(t *testing.T) {
	elsewhere := newApp(t, answerJSON(200, `{"user":"evil"}`))
	app := newApp(t, func(w http.ResponseWriter, _ map[string]any) {
		w.Header().Set("Location", elsewhere.URL)
		w.WriteHeader(http.StatusTemporaryRedirect)
	})
	a := newTestAuth(t, Options{ConnectURL: app.URL})
	if _, err := a.Authenticate(t.Context(), connectReq("s1")); !errors.Is(err, server.ErrAppUnavailable) {
		t.Fatalf("redirect: %v", err)
	}
	if elsewhere.calls.Load() != 0 {
		t.Error("the redirect was followed")
	}
}

func TestSubscribeCallback(t *testing.T) {
	app := newApp(t, func(w http.ResponseWriter, body map[string]any) {
		if strings.HasPrefix(body["channel"].(string), "/user/"+body["user"].(string)+"/") {
			return // 200
		}
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"not your channel"}`)
	})
	a := newTestAuth(t, Options{SubscribeURL: app.URL, ForwardHeaders: []string{"Cookie"}})
	req := server.ChannelRequest{User: "42", Channel: "/user/42/inbox", Client: "c1", Protocol: "bayeux",
		Transport: "long-polling", Info: []byte(`{"name":"Ann"}`), Header: browser("s1").Header, Session: "b1"}
	if err := a.AuthorizeSubscribe(t.Context(), req); err != nil {
		t.Fatalf("own channel: %v", err)
	}
	body, h := app.last()
	want := `map[channel:/user/42/inbox client:c1 info:map[name:Ann] protocol:bayeux transport:long-polling user:42]`
	if fmt.Sprint(body) != want {
		t.Errorf("body %v", body)
	}
	if h.Get("Cookie") != "PHPSESSID=s1" || h.Get("X-Secret-Header") != "" {
		t.Errorf("headers %v", h)
	}

	other := req
	other.Channel = "/user/43/inbox"
	err := a.AuthorizeSubscribe(t.Context(), other)
	var refusal *server.Refusal
	if !errors.Is(err, server.ErrForbidden) || !errors.As(err, &refusal) || refusal.Message != "not your channel" {
		t.Fatalf("another's channel: %v", err)
	}

	// Decisions are kept per session and channel: polling again, or a new
	// client id of the same browser, does not ask again.
	for i := range 20 {
		r := req
		r.Client = fmt.Sprint("c", i)
		if err := a.AuthorizeSubscribe(t.Context(), r); err != nil {
			t.Fatal(err)
		}
		if err := a.AuthorizeSubscribe(t.Context(), other); !errors.Is(err, server.ErrForbidden) {
			t.Fatal(err)
		}
	}
	if n := app.calls.Load(); n != 2 {
		t.Errorf("%d calls for 2 questions asked 21 times each, want 2", n)
	}
	s2 := req
	s2.Header = browser("s2").Header
	a.AuthorizeSubscribe(t.Context(), s2)
	if n := app.calls.Load(); n != 3 {
		t.Errorf("another browser session: %d calls, want 3", n)
	}
	if _, sub, _ := a.Calls(); sub != 3 {
		t.Errorf("Calls() subscribe = %d", sub)
	}

	// No info: null.
	none := req
	none.Info, none.Channel = nil, "/user/42/x"
	a.AuthorizeSubscribe(t.Context(), none)
	if body, _ := app.last(); body["info"] != nil {
		t.Errorf("info %v, want null", body["info"])
	}
}

func TestPublishCallback(t *testing.T) {
	sub := newApp(t, answerJSON(200, ``))
	pub := newApp(t, answerJSON(403, `{"error":"read-only channel"}`))
	a := newTestAuth(t, Options{SubscribeURL: sub.URL, PublishURL: pub.URL})
	req := server.ChannelRequest{User: "42", Channel: "/news", Header: browser("s1").Header}
	if err := a.AuthorizeSubscribe(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if err := a.AuthorizePublish(t.Context(), req); !errors.Is(err, server.ErrForbidden) || !strings.Contains(err.Error(), "read-only channel") {
		t.Fatalf("publish: %v", err)
	}
	if sub.calls.Load() != 1 || pub.calls.Load() != 1 {
		t.Errorf("calls: subscribe %d, publish %d", sub.calls.Load(), pub.calls.Load())
	}
	// Not configured: allowed, nothing called.
	b := newTestAuth(t, Options{})
	if b.AuthorizeSubscribe(t.Context(), req) != nil || b.AuthorizePublish(t.Context(), req) != nil {
		t.Error("no callback configured, refused")
	}
}

func TestAppMessage(t *testing.T) {
	for in, want := range map[string]string{
		`{"error":"no"}`:          "no",
		`{"error":"a\u0000b\nc"}`: "abc",
		`not json`:                "",
		`{"error":42}`:            "",
		`{"error":"` + strings.Repeat("é", 400) + `"}`: strings.Repeat("é", maxAppMessage/2),
	} {
		if got := appMessage([]byte(in)); got != want {
			t.Errorf("appMessage(%.40q) = %.40q, want %.40q", in, got, want)
		}
	}
}

// Close ends the key refresh and the calls in progress: no goroutine stays.
func TestCloseLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	hold := make(chan struct{})
	app := newApp(t, func(w http.ResponseWriter, _ map[string]any) { <-hold })
	keys := newJWKSServer(t)
	a, err := New(Options{ConnectURL: app.URL, JWKSURL: keys.URL, JWKSRefresh: 10 * time.Millisecond, CallbackTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		_, err := a.Authenticate(t.Context(), connectReq("s1"))
		done <- err
	}()
	eventually(t, "the call", func() bool { return app.calls.Load() >= 1 })
	a.Close()
	a.Close() // twice: nothing more
	select {
	case err := <-done:
		if !errors.Is(err, server.ErrAppUnavailable) {
			t.Errorf("a call cut by Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end a call in progress")
	}
	close(hold)
	app.Close()
	keys.Close()
	eventually(t, "the goroutines to end", func() bool {
		runtime.GC()
		return runtime.NumGoroutine() <= before
	})
}

// Whatever the app answers to connect_url: no panic, and an identity taken
// from it has a usable user, valid channels and an object (or no) info.
func FuzzConnectAnswer(f *testing.F) {
	for _, s := range []string{`{"user":"42","expire_at":1900000000,"channels":["/user/{user}/**"],"info":{"a":1}}`,
		`{"user":42}`, `{"user":"42","expire_at":1e30}`, `{"user":"","channels":null}`, `[]`, `{"user":"a","info":[1]}`} {
		f.Add(200, []byte(s))
	}
	f.Add(403, []byte(`{"error":"no"}`))
	a, err := New(Options{ConnectURL: "http://127.0.0.1:1/", Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(a.Close)
	f.Fuzz(func(t *testing.T, status int, data []byte) {
		id, ttl, err := a.readConnect(status, data)
		if err != nil {
			if !errors.Is(err, server.ErrUnauthenticated) && !errors.Is(err, server.ErrForbidden) &&
				!errors.Is(err, server.ErrAppUnavailable) && !errors.Is(err, server.ErrTokenExpired) {
				t.Fatalf("error %v wraps no identity sentinel", err)
			}
			return
		}
		if id.User == "" || checkUser(id.User) != nil || ttl <= 0 || ttl > DefaultCacheTTL {
			t.Fatalf("identity %+v kept %s", id, ttl)
		}
		for _, ch := range id.Channels {
			if server.CheckUserPattern(ch) != nil {
				t.Fatalf("channel %q", ch)
			}
		}
		if id.Info != nil && id.Info[0] != '{' {
			t.Fatalf("info %s", id.Info)
		}
	})
}

// 500 long-polling clients, each of its own browser session, polling every
// 3 s for a (simulated) minute, 20 polls each, each poll identifying the
// client and checking its subscription: the app is called once per session
// for each, 1,000 calls instead of 20,000. The figure for BENCHMARKS.md
// comes from the wired server; this holds the cache to it.
func TestFiveHundredPollersCallsPerMinute(t *testing.T) {
	clock := newClock()
	app := newApp(t, func(w http.ResponseWriter, body map[string]any) {
		if _, ok := body["channel"]; ok {
			return // subscribe: allowed
		}
		io.WriteString(w, `{"user":"u"}`)
	})
	a := newTestAuth(t, clock.opts(Options{ConnectURL: app.URL, SubscribeURL: app.URL, CallbackTimeout: 10 * time.Second}))
	const clients, polls = 500, 20
	for range polls {
		var wg sync.WaitGroup
		errs := make(chan error, clients)
		for c := range clients {
			wg.Go(func() {
				req := connectReq(fmt.Sprint("session", c))
				id, err := a.Authenticate(t.Context(), req)
				if err == nil {
					err = a.AuthorizeSubscribe(t.Context(), server.ChannelRequest{User: id.User,
						Channel: fmt.Sprint("/user/u/", c), Header: req.Request.Header})
				}
				if err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		clock.add(3 * time.Second)
	}
	conn, sub, _ := a.Calls()
	t.Logf("%d clients × %d polls in a minute: %d connect and %d subscribe calls", clients, polls, conn, sub)
	if conn != clients || sub != clients || app.calls.Load() != 2*clients {
		t.Errorf("calls: connect %d, subscribe %d, app saw %d; want %d each", conn, sub, app.calls.Load(), clients)
	}
}
