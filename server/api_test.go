package server

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const testAPIKey = "k3y-for-the-tests-0123456789abcdef"

// apiCall POSTs body to {base}/api/method with the key (none when key is
// "") and returns the status and the decoded JSON answer.
func apiCall(t *testing.T, base, method, key, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/comet/api/"+method, strings.NewReader(body))
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s: answer not a JSON object (%d): %s", method, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

func apiServer(t *testing.T, mod ...func(*Options)) (*Server, string) {
	t.Helper()
	opts := Options{APIKey: testAPIKey, PollTimeout: 3 * time.Second, Hub: HubOptions{HistorySize: 10},
		Bayeux: &BayeuxOptions{}}
	for _, m := range mod {
		m(&opts)
	}
	s, ts := testServer(t, opts)
	return s, ts.URL
}

func TestAPIErrors(t *testing.T) {
	_, base := apiServer(t)
	for _, tt := range []struct {
		name, method, key, body string
		hdr                     []string
		status                  int
		errHas                  string
	}{
		{"no key", "info", "", `{}`, nil, 401, "api.key"},
		{"wrong key", "info", "wrong", `{}`, nil, 401, "api.key"},
		{"key a prefix", "info", testAPIKey[:10], `{}`, nil, 401, "api.key"},
		{"unknown method", "nosuch", testAPIKey, `{}`, nil, 404, "nosuch"},
		{"not JSON", "publish", testAPIKey, `{"channel":`, nil, 400, "body"},
		{"unknown field", "publish", testAPIKey, `{"chanel":"/a"}`, nil, 400, "chanel"},
		{"two objects", "info", testAPIKey, `{} {}`, nil, 400, "one JSON object"},
		{"no channel", "publish", testAPIKey, `{"data":{}}`, nil, 400, `"channel"`},
		{"bad channel", "publish", testAPIKey, `{"channel":"/a/*","data":{}}`, nil, 400, `"channel"`},
		{"no data", "publish", testAPIKey, `{"channel":"/a"}`, nil, 400, `"data"`},
		{"data not object", "publish", testAPIKey, `{"channel":"/a","data":[1]}`, nil, 400, `"data"`},
		{"data too large", "publish", testAPIKey, `{"channel":"/a","data":{"x":"` + strings.Repeat("y", 70000) + `"}}`, nil, 413, `"data"`},
		{"no channels", "broadcast", testAPIKey, `{"data":{}}`, nil, 400, `"channels"`},
		{"bad channels", "broadcast", testAPIKey, `{"channels":["/a","b"],"data":{}}`, nil, 400, `"channels[1]"`},
		{"bad limit", "history", testAPIKey, `{"channel":"/a","limit":0}`, nil, 400, `"limit"`},
		{"bad since", "history", testAPIKey, `{"channel":"/a","since":-1}`, nil, 400, "since"},
		{"bad pattern", "channels", testAPIKey, `{"pattern":"x"}`, nil, 400, `"pattern"`},
		{"no user", "disconnect", testAPIKey, `{}`, nil, 400, `"user"`},
		{"no channel to subscribe", "subscribe", testAPIKey, `{"user":"u"}`, nil, 400, `"channel"`},
		{"no channel to remove", "history_remove", testAPIKey, `{}`, nil, 400, `"channel"`},
		{"body too large", "info", testAPIKey, `{"pattern":"` + strings.Repeat("a", 2<<20) + `"}`, nil, 413, "over"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, out := apiCall(t, base, tt.method, tt.key, tt.body, tt.hdr...)
			if status != tt.status || !strings.Contains(out["error"].(string), tt.errHas) {
				t.Errorf("got %d %v, want %d naming %s", status, out, tt.status, tt.errHas)
			}
		})
	}
	// GET is not the API.
	resp, err := http.Get(base + "/comet/api/info")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", resp.StatusCode)
	}
	// The Authorization form of the key.
	if status, out := apiCall(t, base, "info", "", `{}`, "Authorization", "apikey "+testAPIKey); status != 200 {
		t.Errorf("Authorization: apikey: %d %v", status, out)
	}
	if status, _ := apiCall(t, base, "info", "", `{}`, "Authorization", "Bearer "+testAPIKey); status != 401 {
		t.Errorf("Authorization: Bearer: %d, want 401", status)
	}
}

func TestAPINoKeyIsNotFound(t *testing.T) {
	_, base := apiServer(t, func(o *Options) { o.APIKey = "" })
	if status, _ := apiCall(t, base, "info", "anything", `{}`); status != 404 {
		t.Errorf("no api.key: %d, want 404", status)
	}
}

func TestAPIAllowFrom(t *testing.T) {
	_, base := apiServer(t, func(o *Options) { o.APIAllowFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} })
	status, out := apiCall(t, base, "info", testAPIKey, `{}`)
	if status != 403 || !strings.Contains(out["error"].(string), "api.allow_from") {
		t.Errorf("from loopback, not allowed: %d %v", status, out)
	}
	// Through a trusted proxy, the forwarded address counts.
	_, base = apiServer(t, func(o *Options) {
		o.APIAllowFrom = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
		o.TrustedProxies = LoopbackOnly
	})
	if status, out := apiCall(t, base, "info", testAPIKey, `{}`, "X-Forwarded-For", "192.0.2.7"); status != 200 {
		t.Errorf("forwarded from an allowed address: %d %v", status, out)
	}
	if status, _ := apiCall(t, base, "info", testAPIKey, `{}`, "X-Forwarded-For", "198.51.100.1"); status != 403 {
		t.Errorf("forwarded from another address: %d, want 403", status)
	}
	// Address first: a wrong key from a wrong address learns nothing of the key.
	if status, _ := apiCall(t, base, "info", "wrong", `{}`, "X-Forwarded-For", "198.51.100.1"); status != 403 {
		t.Errorf("wrong key from a wrong address: %d, want 403", status)
	}
}

func TestAPIPublishHistory(t *testing.T) {
	s, base := apiServer(t)
	local, err := s.hub.NewLocalClient("l1", func(*Message) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Subscribe("/stardust/news"); err != nil {
		t.Fatal(err)
	}
	status, out := apiCall(t, base, "publish", testAPIKey, `{"channel":"/stardust/news","data":{"text":"hi"}}`)
	if status != 200 || out["position"].(float64) < 1 || out["recipients"].(float64) != 1 {
		t.Fatalf("publish: %d %v", status, out)
	}
	first := uint64(out["position"].(float64))
	status, out = apiCall(t, base, "broadcast", testAPIKey, `{"channels":["/stardust/news","/other"],"data":{"text":"all"}}`)
	pos := out["positions"].([]any)
	if status != 200 || len(pos) != 2 || uint64(pos[0].(float64)) <= first {
		t.Fatalf("broadcast: %d %v", status, out)
	}
	status, out = apiCall(t, base, "history", testAPIKey, `{"channel":"/stardust/news"}`)
	msgs := out["messages"].([]any)
	if status != 200 || len(msgs) != 2 || out["position"] != pos[0] || out["more"] != false {
		t.Fatalf("history: %d %v", status, out)
	}
	if m := msgs[0].(map[string]any); m["data"].(map[string]any)["text"] != "hi" || uint64(m["position"].(float64)) != first {
		t.Errorf("history's first message: %v", m)
	}
	_, out = apiCall(t, base, "history", testAPIKey, `{"channel":"/stardust/news","since":`+jsonNum(first)+`}`)
	if msgs := out["messages"].([]any); len(msgs) != 1 {
		t.Errorf("history since %d: %v", first, out)
	}
	_, out = apiCall(t, base, "history", testAPIKey, `{"channel":"/stardust/news","limit":1}`)
	if msgs := out["messages"].([]any); len(msgs) != 1 || out["more"] != true || uint64(out["position"].(float64)) != first {
		t.Errorf("history limit 1: %v", out)
	}
	// The Stardust side sees what the API published.
	resp, body := get(t, base+"/comet/channel/news/stream/a1?since=1")
	if list := decodeList(t, body); resp.StatusCode != 200 || len(list) != 2 || list[1]["text"] != "all" {
		t.Errorf("Stardust replay: %s", body)
	}
	status, out = apiCall(t, base, "history_remove", testAPIKey, `{"channel":"/stardust/news"}`)
	if status != 200 || out["removed"] != true {
		t.Errorf("history_remove: %d %v", status, out)
	}
	_, out = apiCall(t, base, "history", testAPIKey, `{"channel":"/stardust/news"}`)
	if msgs := out["messages"].([]any); len(msgs) != 0 {
		t.Errorf("history after history_remove: %v", out)
	}
	_, out = apiCall(t, base, "history_remove", testAPIKey, `{"channel":"/stardust/news"}`)
	if out["removed"] != false {
		t.Errorf("second history_remove: %v", out)
	}
}

func jsonNum(n uint64) string { b, _ := json.Marshal(n); return string(b) }

func TestAPIChannelsInfo(t *testing.T) {
	s, base := apiServer(t)
	for _, id := range []string{"l1", "l2"} {
		local, err := s.hub.NewLocalClient(id, func(*Message) {})
		if err != nil {
			t.Fatal(err)
		}
		if err := local.Subscribe("/stardust/a"); err != nil {
			t.Fatal(err)
		}
		if id == "l1" { // one of the two has a user
			if err := clientOf(s.hub, id).SetAttr(AttrUser, "u1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	apiCall(t, base, "publish", testAPIKey, `{"channel":"/other/b","data":{}}`)
	_, out := apiCall(t, base, "channels", testAPIKey, ``)
	chans := out["channels"].([]any)
	if len(chans) != 2 {
		t.Fatalf("channels: %v", out)
	}
	if c := chans[1].(map[string]any); c["channel"] != "/stardust/a" || c["subscribers"].(float64) != 2 || c["users"] != float64(1) {
		t.Errorf("channels: %v", out)
	}
	_, out = apiCall(t, base, "channels", testAPIKey, `{"pattern":"/other/*"}`)
	if chans := out["channels"].([]any); len(chans) != 1 || chans[0].(map[string]any)["channel"] != "/other/b" {
		t.Errorf("channels /other/*: %v", out)
	}
	status, out := apiCall(t, base, "info", testAPIKey, `{}`)
	if status != 200 || out["clients"].(float64) != 2 || out["published"].(float64) != 1 || out["shared_engine"] != false || out["processes"] != float64(1) ||
		out["version"] != "dev" {
		t.Errorf("info: %d %v", status, out)
	}
}

// TestAPIDisconnect: every session of the user ends, each as its protocol
// says; other users' sessions stay.
func TestAPIDisconnect(t *testing.T) {
	s, base := apiServer(t)
	// A held Stardust long poll of user u1.
	type answer struct {
		status int
		body   string
	}
	polled := make(chan answer, 1)
	go func() {
		resp, err := http.Get(base + "/comet/channel/news/stream/p1")
		if err != nil {
			polled <- answer{0, err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		polled <- answer{resp.StatusCode, string(b)}
	}()
	waitPolling(t, s, "p1")
	if err := clientOf(s.hub, "p1").SetAttr(AttrUser, "u1"); err != nil {
		t.Fatal(err)
	}
	// An SSE stream of u1.
	resp, err := http.Get(base + "/comet/channel/news/events?id=e1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	waitPolling(t, s, "e1")
	if err := clientOf(s.hub, "e1").SetAttr(AttrUser, "u1"); err != nil {
		t.Fatal(err)
	}
	// Two Bayeux sessions: u1 holding a connect, u2.
	b := &bx{t: t, url: base + "/comet/bayeux", hc: &http.Client{}}
	b1, b2 := b.handshake(), b.handshake()
	_ = clientOf(s.hub, b1).SetAttr(AttrUser, "u1")
	_ = clientOf(s.hub, b2).SetAttr(AttrUser, "u2")
	connected := make(chan []map[string]any, 1)
	go func() { connected <- b.post(connectMsg(b1, -1)) }()
	waitPolling(t, s, b1)

	start := time.Now()
	status, out := apiCall(t, base, "disconnect", testAPIKey, `{"user":"u1"}`)
	if status != 200 || out["clients"].(float64) != 3 {
		t.Fatalf("disconnect: %d %v", status, out)
	}
	select {
	case a := <-polled:
		if a.status != 200 || strings.TrimSpace(a.body) != `[{"type":"stardust.disconnect"}]` {
			t.Errorf("Stardust poll: %d %s", a.status, a.body)
		}
	case <-time.After(time.Second):
		t.Error("the Stardust poll was not answered within a second")
	}
	select {
	case r := <-connected:
		wantError(t, r[0], "402:")
		if adv := r[0]["advice"].(map[string]any); adv["reconnect"] != "none" {
			t.Errorf("held connect: %v", r)
		}
	case <-time.After(time.Second):
		t.Error("the Bayeux connect was not answered within a second")
	}
	if r := b.post(connectMsg(b1, 0)); r[0]["advice"].(map[string]any)["reconnect"] != "none" {
		t.Errorf("a later connect of the disconnected client: %v", r)
	}
	sse, _ := io.ReadAll(bufio.NewReader(resp.Body)) // the stream ends
	if !strings.Contains(string(sse), "event: disconnect\ndata: {\"type\":\"stardust.disconnect\"}") {
		t.Errorf("SSE stream: %q", sse)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	for _, id := range []string{"p1", "e1", b1} {
		if clientOf(s.hub, id) != nil {
			t.Errorf("%s still exists", id)
		}
	}
	if clientOf(s.hub, b2) == nil {
		t.Error("u2's session went too")
	}
	// One session of a user, by its id.
	status, out = apiCall(t, base, "disconnect", testAPIKey, `{"user":"u2","client":"nosuch"}`)
	if status != 200 || out["clients"].(float64) != 0 || clientOf(s.hub, b2) == nil {
		t.Errorf("disconnect of another client id: %d %v", status, out)
	}
	status, out = apiCall(t, base, "disconnect", testAPIKey, `{"user":"u2","client":"`+b2+`"}`)
	if status != 200 || out["clients"].(float64) != 1 || clientOf(s.hub, b2) != nil {
		t.Errorf("disconnect of u2's client: %d %v", status, out)
	}
}

func TestAPISubscribe(t *testing.T) {
	s, base := apiServer(t)
	b := &bx{t: t, url: base + "/comet/bayeux", hc: &http.Client{}}
	b1, b2, b3 := b.handshake(), b.handshake(), b.handshake()
	_ = clientOf(s.hub, b1).SetAttr(AttrUser, "u1")
	_ = clientOf(s.hub, b2).SetAttr(AttrUser, "u1")
	_ = clientOf(s.hub, b3).SetAttr(AttrUser, "u2")
	status, out := apiCall(t, base, "subscribe", testAPIKey, `{"user":"u1","channel":"/room/1"}`)
	if status != 200 || out["clients"].(float64) != 2 {
		t.Fatalf("subscribe: %d %v", status, out)
	}
	if n := audience(t, s.hub, "/room/1"); n != 2 {
		t.Errorf("audience %d, want 2", n)
	}
	apiCall(t, base, "publish", testAPIKey, `{"channel":"/room/1","data":{"n":1}}`)
	r := b.post(connectMsg(b1, 0))
	if len(r) != 2 || r[0]["channel"] != "/room/1" {
		t.Errorf("u1's connect after the publish: %v", r)
	}
	status, out = apiCall(t, base, "unsubscribe", testAPIKey, `{"user":"u1","channel":"/room/1"}`)
	if status != 200 || out["clients"].(float64) != 2 || audience(t, s.hub, "/room/1") != 0 {
		t.Errorf("unsubscribe: %d %v", status, out)
	}
	status, out = apiCall(t, base, "subscribe", testAPIKey, `{"user":"nobody","channel":"/room/1"}`)
	if status != 200 || out["clients"].(float64) != 0 {
		t.Errorf("subscribe of a user with no session: %d %v", status, out)
	}
}

// FuzzDecodeAPIRequest: any body is decoded or refused with a 400 that
// names the problem, never a panic or another status.
func FuzzDecodeAPIRequest(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"channel":"/a","data":{"x":1}}`, `{"channels":["/a",1]}`, `{"since":-1}`,
		`{"limit":1e99}`, `{"user":"u","client":"c"}`, `{} {}`, `[]`, `{"x":1}`, `{"data":nul`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeAPIRequest(body)
		if err != nil {
			if httpStatus(err) != http.StatusBadRequest {
				t.Fatalf("%q: %v is not a 400", body, err)
			}
			return
		}
		if req == nil {
			t.Fatalf("%q: no request and no error", body)
		}
	})
}

// TestAPIDisconnectWebSocket: a connect held over a WebSocket is answered
// 402 with reconnect none too.
func TestAPIDisconnectWebSocket(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true}, func(o *Options) { o.APIKey = testAPIKey })
	ws, id := b.heldOverWS()
	if err := clientOf(b.s.hub, id).SetAttr(AttrUser, "u1"); err != nil {
		t.Fatal(err)
	}
	if status, out := apiCall(t, b.ts.URL, "disconnect", testAPIKey, `{"user":"u1"}`); status != 200 || out["clients"].(float64) != 1 {
		t.Fatalf("disconnect: %d %v", status, out)
	}
	r := ws.read()
	if len(r) != 1 || r[0]["channel"] != "/meta/connect" {
		t.Fatalf("over the socket: %v", r)
	}
	wantError(t, r[0], "402:")
	if adv, _ := r[0]["advice"].(map[string]any); adv["reconnect"] != "none" {
		t.Errorf("advice: %v", r[0])
	}
}
