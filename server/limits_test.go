package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// Issue 10, items 2, 3 and 9: limits that stop floods without punishing
// shared addresses.

func TestAddressSessionCap(t *testing.T) {
	h := NewHub(HubOptions{AddressMaxSessions: 5, AddressSessionRate: -1}, testLog())
	defer h.Close()
	var ids []*Client
	for i := range 5 {
		c, _, err := h.Register(fmt.Sprint("a", i), KindStardust, time.Minute, "198.51.100.1")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c)
	}
	_, _, err := h.Register("a5", KindStardust, time.Minute, "198.51.100.1")
	if !errors.Is(err, ErrTooMany) {
		t.Fatalf("sixth session from one address: %v", err)
	}
	if _, _, err := h.Register("b0", KindStardust, time.Minute, "198.51.100.2"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	if _, _, err := h.Register("local", KindLocal, 0, ""); err != nil {
		t.Fatalf("a local client: %v", err)
	}
	// A removed session gives its slot back.
	if err := h.Remove(ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Register("a5", KindStardust, time.Minute, "198.51.100.1"); err != nil {
		t.Fatalf("after a removal: %v", err)
	}
	// So does one removed behind the hub's back (by another process sharing
	// the engine): the count is checked against the engine when full.
	if _, err := h.engine.RemoveSession(context.Background(), ids[1].ID()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := h.Register("a6", KindStardust, time.Minute, "198.51.100.1"); err != nil {
		t.Fatalf("after a removal elsewhere: %v", err)
	}
	if n := h.limits.sessions("198.51.100.1"); n != 5 {
		t.Errorf("count %d, want 5", n)
	}
}

func TestAddressSessionRate(t *testing.T) {
	h := NewHub(HubOptions{AddressSessionRate: 10, AddressSessionBurst: 3}, testLog())
	defer h.Close()
	for i := range 3 {
		if _, _, err := h.Register(fmt.Sprint("r", i), KindStardust, time.Minute, "198.51.100.1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := h.Register("r3", KindStardust, time.Minute, "198.51.100.1"); !errors.Is(err, ErrTooMany) {
		t.Fatalf("fourth session at once: %v", err)
	}
	time.Sleep(150 * time.Millisecond) // 1.5 tokens back
	if _, _, err := h.Register("r3", KindStardust, time.Minute, "198.51.100.1"); err != nil {
		t.Fatalf("after a pause: %v", err)
	}
	// The table forgets addresses that have nothing and a full bucket.
	for _, id := range []string{"r0", "r1", "r2", "r3"} {
		_ = h.Remove(clientOf(h, id))
	}
	h.limits.prune(time.Now().Add(time.Second))
	if n := len(h.limits.addrs); n != 0 {
		t.Errorf("%d addresses kept", n)
	}
}

// The refusals tell clients to come back: 503 with Retry-After for the
// Stardust API, advice "retry" with an interval for a Bayeux handshake.
func TestOverLimitSaysRetry(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	b := newBX(t, BayeuxOptions{}, func(o *Options) {
		o.TrustedProxies = trusted
		o.Hub.AddressMaxSessions = 2
		o.Hub.AddressSessionRate = -1
	})
	b.handshake()
	b.handshake()
	r := b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}})[0]
	wantError(t, r, "503:")
	adv, _ := r["advice"].(map[string]any)
	if adv["reconnect"] != "retry" || adv["interval"].(float64) < 1000 {
		t.Errorf("handshake over the limit: advice %v, want retry with an interval", adv)
	}
	resp, err := b.hc.Get(b.ts.URL + "/comet/channel/x/stream/1.5")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("stream over the limit: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Another address behind the trusted proxy is not affected.
	req, _ := http.NewRequest("POST", b.url, strings.NewReader(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", "198.51.100.7")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(out), `"successful":true`) {
		t.Errorf("another address behind the proxy: %s", out)
	}
	// Full (max_clients) is answered the same way: retry, never none.
	full := newBX(t, BayeuxOptions{}, func(o *Options) { o.Hub.MaxClients = 1 })
	full.handshake()
	r = full.post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}})[0]
	if adv, _ := r["advice"].(map[string]any); r["successful"] != false || adv["reconnect"] != "retry" || adv["interval"].(float64) <= 0 {
		t.Errorf("handshake when full: %v", r)
	}
}

// With the defaults, 200 users behind one address (one browser each) all
// handshake and hold their connects at once; one address still cannot take
// more than 1% of max_clients.
func TestSharedAddressDefaults(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.PollTimeout = 20 * time.Second })
	const users = DefaultAddressSessionBurst
	browsers := make([]*bx, users)
	ids := make([]string, users)
	for i := range browsers {
		browsers[i] = b.stranger()
		ids[i] = browsers[i].handshake()
	}
	var wg sync.WaitGroup
	for i := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			browsers[i].post(connectMsg(ids[i], -1))
		}()
	}
	for _, id := range ids {
		waitPolling(t, b.s, id)
	}
	b.s.Close() // answers every held connect
	wg.Wait()

	h := NewHub(HubOptions{}, testLog())
	defer h.Close()
	n := 0
	for ; n < 2000; n++ {
		if _, _, err := h.Register(fmt.Sprint("f", n), KindStardust, time.Minute, "203.0.113.9"); err != nil {
			break
		}
	}
	if n < 200 || n > DefaultAddressMaxSessions {
		t.Errorf("one address registered %d sessions at once, want 200 to %d", n, DefaultAddressMaxSessions)
	}
	if _, _, err := h.Register("other", KindStardust, time.Minute, "203.0.113.10"); err != nil {
		t.Errorf("another address after the flood: %v", err)
	}
}

// A browser holds ClientMaxConnections connects; another tab's connect is
// answered at once with the multiple-clients advice to poll.
func TestMultipleClientsAdvice(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	tab1, tab2 := b.handshake(), b.handshake()
	go b.post(connectMsg(tab1, -1))
	waitPolling(t, b.s, tab1)
	start := time.Now()
	r := b.post(connectMsg(tab2, -1))
	adv, _ := r[0]["advice"].(map[string]any)
	if time.Since(start) > time.Second || r[0]["successful"] != true || adv["multiple-clients"] != true ||
		adv["reconnect"] != "retry" || adv["interval"].(float64) != 2000 {
		t.Fatalf("second tab's connect: %v", r)
	}
	// Another browser at the same address is held as usual.
	other := b.stranger()
	id := other.handshake()
	go other.post(connectMsg(id, -1))
	waitPolling(t, b.s, id)
	// The first tab's own next connect replaces its held one (as after a
	// dropped connection) instead of being told to poll.
	got := make(chan []map[string]any, 1)
	go func() { got <- b.post(connectMsg(tab1, -1)) }()
	time.Sleep(100 * time.Millisecond)
	waitPolling(t, b.s, tab1)
	if raw, _ := json.Marshal(<-func() chan []map[string]any { b.s.Close(); return got }()); strings.Contains(string(raw), "multiple-clients") {
		t.Errorf("the same client's new connect was told to poll: %s", raw)
	}
}

func testLog() *logrus.Entry {
	log, _ := test.NewNullLogger()
	return logrus.NewEntry(log)
}

// A concurrent creation of the same id (ErrExists) does not uncount the
// session that won.
func TestAddressCountSurvivesCreationRace(t *testing.T) {
	h := NewHub(HubOptions{AddressMaxSessions: 10, AddressSessionRate: -1}, testLog())
	defer h.Close()
	if _, _, err := h.Register("same", KindStardust, time.Minute, "198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	if err := h.Add(h.NewClient("same", KindStardust, time.Minute, "198.51.100.1")); !errors.Is(err, ErrExists) {
		t.Fatalf("second creation: %v", err)
	}
	if n := h.limits.sessions("198.51.100.1"); n != 1 {
		t.Errorf("count %d after a lost creation race, want 1", n)
	}
}

// TestAddrRateOverdrawn: concurrent requests may overdraw a bucket; an
// overdrawn bucket has no token to give, never "no limit" (-1).
func TestAddrRateOverdrawn(t *testing.T) {
	now := time.Now()
	l := newAddrRate(1, 3)
	if got := l.available("192.0.2.1", now); got != 3 {
		t.Fatalf("a new address has %d tokens, want the burst 3", got)
	}
	l.take("192.0.2.1", 5, now) // two requests that both saw 3
	if got := l.available("192.0.2.1", now); got != 0 {
		t.Fatalf("an overdrawn bucket gives %d, want 0", got)
	}
	if got := l.available("192.0.2.1", now.Add(3*time.Second)); got != 1 {
		t.Errorf("3 s later: %d tokens, want 1 (the debt of 2 paid first)", got)
	}
	if got := l.available("", now); got != -1 {
		t.Errorf("no address: %d, want -1 (not counted)", got)
	}
	if got := newAddrRate(100, -1).available("192.0.2.1", now); got != -1 {
		t.Errorf("burst -1: %d, want -1 (no limit)", got)
	}
	l.prune(now.Add(time.Minute))
	if len(l.buckets) != 0 {
		t.Errorf("a full bucket was kept: %v", l.buckets)
	}
}

// Issue 21, point 3: sessions per user (the user a handshake's
// authentication or the app's identity names), in this process.
func TestUserSessionCap(t *testing.T) {
	h := NewHub(HubOptions{AddressMaxSessions: -1, AddressSessionRate: -1, UserMaxSessions: 3}, testLog())
	defer h.Close()
	add := func(id, user string) error {
		c := h.NewClient(id, KindBayeux, time.Minute, "198.51.100.1")
		if user != "" {
			_ = c.SetAttr(AttrUser, user)
		}
		return h.Add(c)
	}
	for i := range 3 {
		if err := add(fmt.Sprint("a", i), "alice"); err != nil {
			t.Fatal(err)
		}
	}
	err := add("a3", "alice")
	if !errors.Is(err, ErrTooMany) || !strings.Contains(err.Error(), "user_max_sessions") {
		t.Fatalf("fourth session of one user: %v; want ErrTooMany naming comet.user_max_sessions", err)
	}
	if err := add("b0", "bob"); err != nil {
		t.Errorf("another user: %v", err)
	}
	for i := range 5 {
		if err := add(fmt.Sprint("anon", i), ""); err != nil {
			t.Errorf("a session with no user: %v", err)
		}
	}
	// A removed session gives its place back, here and elsewhere.
	if err := h.Remove(clientOf(h, "a0")); err != nil {
		t.Fatal(err)
	}
	if err := add("a4", "alice"); err != nil {
		t.Errorf("after a removal: %v", err)
	}
	if _, err := h.engine.RemoveSession(context.Background(), "a1"); err != nil {
		t.Fatal(err)
	}
	if err := add("a5", "alice"); err != nil {
		t.Errorf("after a removal behind the hub's back: %v", err)
	}
	if err := add("a6", "alice"); !errors.Is(err, ErrTooMany) {
		t.Errorf("past the cap again: %v", err)
	}
	if len(h.limits.users["alice"]) != 3 {
		t.Errorf("alice counted %d times, want 3", len(h.limits.users["alice"]))
	}
}

// Issue 21, point 3: a Bayeux handshake authenticated as a user over
// comet.user_max_sessions is refused with retry advice, whatever address
// it comes from; another user is not affected.
func TestUserSessionCapHandshake(t *testing.T) {
	auth, err := HandshakeAuth("users", "", map[string]string{"alice": UserHash("wonder"), "bob": UserHash("builder")})
	if err != nil {
		t.Fatal(err)
	}
	b := newBX(t, BayeuxOptions{MessageACL: auth}, func(o *Options) { o.Hub.UserMaxSessions = 2 })
	hs := func(user, pass string) map[string]any {
		return b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"},
			"ext": map[string]any{"username": user, "password": pass}})[0]
	}
	for range 2 {
		if r := hs("alice", "wonder"); r["successful"] != true {
			t.Fatalf("alice's handshake: %v", r)
		}
	}
	r := hs("alice", "wonder")
	wantError(t, r, "503:")
	if adv, _ := r["advice"].(map[string]any); adv["reconnect"] != "retry" {
		t.Errorf("alice's third handshake: advice %v, want retry", r["advice"])
	}
	if r := hs("bob", "builder"); r["successful"] != true {
		t.Errorf("bob's handshake: %v", r)
	}
}
