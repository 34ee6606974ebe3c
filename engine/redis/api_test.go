package redis_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/stardust-go/stardust/internal/bayeuxtest"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

const apiKey = "0123456789abcdef0123456789abcdef"

// apiNode is one process of a cluster sharing Redis, with the server API on.
func apiNode(t *testing.T, url string, mod ...func(*server.Options)) (*server.Server, string) {
	t.Helper()
	return apiNodeOn(t, apiEngine(t, url, "api:", server.Limits{HistorySize: 10}), mod...)
}

// apiEngine opens the engine of apiNode, hookNode and threeHubs: the
// one-slot engine, or, while TestShardedAcrossProcesses runs the tests
// again, a sharded one (the package's tests run one at a time).
var apiEngine = openOne

// openOne is open as a server.Engine.
func openOne(t *testing.T, url, prefix string, l server.Limits) server.Engine {
	return open(t, url, prefix, l)
}

// apiNodeOn is apiNode on the engine e (closed with the server).
func apiNodeOn(t *testing.T, e server.Engine, mod ...func(*server.Options)) (*server.Server, string) {
	t.Helper()
	log, _ := test.NewNullLogger()
	opts := server.Options{APIKey: apiKey, PollTimeout: 5 * time.Second, Bayeux: &server.BayeuxOptions{},
		Hub: server.HubOptions{Engine: e, HistorySize: 10}}
	for _, m := range mod {
		m(&opts)
	}
	s := server.New(opts, logrus.NewEntry(log))
	ts := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); ts.Close() })
	return s, ts.URL
}

func apiPost(t *testing.T, base, method, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/comet/api/"+method, strings.NewReader(body))
	req.Header.Set("X-API-Key", apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: %d %s", method, resp.StatusCode, raw)
	}
	return out
}

func waitHeld(t *testing.T, s *server.Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if st, _ := s.Hub().Stats(); st.Polling >= n {
			return
		}
	}
	t.Fatalf("fewer than %d polls held", n)
}

// TestAPIAcrossProcesses: two processes share Redis; the API of one
// publishes to a subscriber of the other and disconnects a user's sessions
// on both, each answered as its protocol says within a second.
func TestAPIAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	a, baseA := apiNode(t, srv.URL)
	b, baseB := apiNode(t, srv.URL)
	// A Stardust long poll of u1 on A.
	polled := make(chan string, 1)
	go func() {
		resp, err := http.Get(baseA + "/comet/channel/news/stream/p1")
		if err != nil {
			polled <- err.Error()
			return
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		polled <- strings.TrimSpace(string(raw))
	}()
	waitHeld(t, a, 1)
	c, err := a.Hub().Client("p1")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetAttr(server.AttrUser, "u1"); err != nil {
		t.Fatal(err)
	}

	// Bayeux sessions on B: u1's holds a connect, u2's stays.
	br := bayeuxtest.New(baseB + "/comet/bayeux")
	b1, b2 := br.Handshake(t), br.Handshake(t)
	for id, user := range map[string]string{b1: "u1", b2: "u2"} {
		c, err := b.Hub().Client(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SetAttr(server.AttrUser, user); err != nil {
			t.Fatal(err)
		}
		br.Connect(t, id) // the first connect is answered at once
	}
	connected := make(chan []map[string]any, 1)
	go func() {
		body := `[{"channel":"/meta/connect","clientId":"` + b1 + `","connectionType":"long-polling"}]`
		resp, err := br.HTTP.Post(br.URL, "application/json", strings.NewReader(body))
		if err != nil {
			connected <- nil
			return
		}
		defer resp.Body.Close()
		var r []map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&r)
		connected <- r
	}()
	waitHeld(t, b, 1)

	// Publish through A reaches B's subscriber: the API's position is the
	// message's sequence.
	sub, err := b.Hub().NewLocalClient("l1", func(*server.Message) {})
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe("/room"); err != nil {
		t.Fatal(err)
	}
	if out := apiPost(t, baseA, "publish", `{"channel":"/room","data":{"n":1}}`); out["recipients"].(float64) != 1 || out["position"].(float64) < 1 {
		t.Errorf("publish through A: %v", out)
	}

	// History through the other process, then removed through it.
	if out := apiPost(t, baseB, "history", `{"channel":"/room"}`); len(out["messages"].([]any)) != 1 {
		t.Errorf("history through B: %v", out)
	}
	if out := apiPost(t, baseB, "history_remove", `{"channel":"/room"}`); out["removed"] != true {
		t.Errorf("history_remove through B: %v", out)
	}
	if out := apiPost(t, baseA, "history", `{"channel":"/room"}`); len(out["messages"].([]any)) != 0 {
		t.Errorf("history through A after history_remove: %v", out)
	}
	if out := apiPost(t, baseA, "history_remove", `{"channel":"/room"}`); out["removed"] != false {
		t.Errorf("second history_remove: %v", out)
	}

	// Each process counts once it has swept (every second).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out := apiPost(t, baseA, "info", `{}`)
		if out["processes"] == float64(2) && out["shared_engine"] == true {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("info: %v", out)
			break
		}
	}

	start := time.Now()
	if out := apiPost(t, baseA, "disconnect", `{"user":"u1"}`); out["clients"].(float64) != 2 {
		t.Fatalf("disconnect: %v", out)
	}
	select {
	case got := <-polled:
		if got != `[{"type":"stardust.disconnect"}]` {
			t.Errorf("Stardust poll on A: %s", got)
		}
	case <-time.After(time.Second):
		t.Error("the poll on A was not answered within a second")
	}
	select {
	case r := <-connected:
		if len(r) != 1 || r[0]["successful"] != false || !strings.HasPrefix(r[0]["error"].(string), "402:") ||
			r[0]["advice"].(map[string]any)["reconnect"] != "none" {
			t.Errorf("held connect on B: %v", r)
		}
	case <-time.After(time.Second):
		t.Error("the connect on B was not answered within a second")
	}
	t.Logf("both ended %v after the call", time.Since(start))
	if r := br.Connect(t, b1); r[0]["advice"].(map[string]any)["reconnect"] != "none" {
		t.Errorf("a later connect on B of the disconnected client: %v", r)
	}
	if _, err := b.Hub().Client(b2); err != nil {
		t.Errorf("u2's session: %v", err)
	}
	// The other user, from the other process.
	if out := apiPost(t, baseB, "subscribe", `{"user":"u2","channel":"/room"}`); out["clients"].(float64) != 1 {
		t.Errorf("subscribe u2 through B: %v", out)
	}
	if out := apiPost(t, baseA, "disconnect", `{"user":"u2"}`); out["clients"].(float64) != 1 {
		t.Errorf("disconnect u2 through A: %v", out)
	}
}

// TestGapAcrossProcesses: a Stardust poll on one process resuming before
// what history keeps gets the gap notice, whichever process published.
func TestGapAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	log, _ := test.NewNullLogger()
	var bases []string
	var hubs []*server.Hub
	for range 2 {
		s := server.New(server.Options{PollTimeout: 2 * time.Second,
			Hub: server.HubOptions{Engine: apiEngine(t, srv.URL, "gap:", server.Limits{HistorySize: 2}), HistorySize: 2}}, logrus.NewEntry(log))
		ts := httptest.NewServer(s)
		t.Cleanup(func() { s.Close(); ts.Close() })
		bases, hubs = append(bases, ts.URL), append(hubs, s.Hub())
	}
	var sent []*server.Message
	for i := range 3 {
		// Data with a "t" of its own: the recorded time is the message's.
		m := &server.Message{Channel: "/stardust/g", Data: json.RawMessage(`{"t":1,"n":` + string(rune('0'+i)) + `}`)}
		if _, err := hubs[0].Publish(m); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
		time.Sleep(2 * time.Millisecond)
	}
	ts6 := func(m *server.Message) string {
		return strconv.FormatFloat(float64(m.Time.UnixMicro())/1e6, 'f', 6, 64)
	}
	get := func(u string) string {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	body := get(bases[1] + "/comet/channel/g/stream/p1?since=" + ts6(sent[0]))
	if strings.Contains(body, "stardust.gap") || !strings.Contains(body, `"n":1`) {
		t.Errorf("since the lost message: %s", body)
	}
	before := strconv.FormatFloat(float64(sent[0].Time.UnixMicro())/1e6-0.001, 'f', 6, 64)
	body = get(bases[1] + "/comet/channel/g/stream/p2?since=" + before)
	if want := `[{"type":"stardust.gap","since":` + before + `,"oldest":` + ts6(sent[1]) + `}`; !strings.HasPrefix(body, want) {
		t.Errorf("since before the lost message: %s, want it to start with %s", body, want)
	}
}
