package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/stardust-go/stardust/internal/leakcheck"
)

// testServer starts the handler on a real loopback listener.
func testServer(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	log, _ := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	s := New(opts, logrus.NewEntry(log))
	ts := httptest.NewUnstartedServer(s)
	if takeoverInTest(t) { // the long polls wait on their connection taken over (longpoll.go)
		ts.Listener = TakeoverListener(ts.Config, ts.Listener)
	}
	ts.Start()
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return s, ts
}

func get(t *testing.T, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func postForm(t *testing.T, u string, ms ...string) (*http.Response, []byte) {
	t.Helper()
	form := url.Values{"m": ms}
	resp, err := http.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func decodeList(t *testing.T, body []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("not a JSON array of objects: %s", body)
	}
	return out
}

func wantJSONHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	for k, v := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestInfo(t *testing.T) {
	_, ts := testServer(t, Options{})
	for _, p := range []string{"/comet", "/comet/"} {
		resp, body := get(t, ts.URL+p)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", p, resp.StatusCode)
		}
		wantJSONHeaders(t, resp)
		var info map[string]any
		if err := json.Unmarshal(body, &info); err != nil {
			t.Fatal(err)
		}
		if info["name"] != "Stardust COMET Server" || info["language"] != "Go" || info["version"] == "" {
			t.Errorf("%s: info = %v", p, info)
		}
	}
}

func TestPublishAndChannelInfo(t *testing.T) {
	_, ts := testServer(t, Options{Hub: HubOptions{HistorySize: 5}})
	_, body := get(t, ts.URL+"/comet/channel")
	if strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("channel list at start = %s", body)
	}
	// Reading a channel does not create it.
	resp, body := get(t, ts.URL+"/comet/channel/ghost")
	if resp.StatusCode != 200 {
		t.Fatalf("info of an unknown channel: %d %s", resp.StatusCode, body)
	}
	if info := decodeList(t, body); info[0]["name"] != "ghost" || len(info[0]["messages"].([]any)) != 0 || info[0]["size"] != 5.0 {
		t.Errorf("unknown channel info = %v", info)
	}
	if _, body = get(t, ts.URL+"/comet/channel"); strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("reading created a channel: %s", body)
	}

	resp, body = postForm(t, ts.URL+"/comet/channel/foo+bar", `{"type":"a","n":1}`, `{"type":"b","n":2}`)
	if resp.StatusCode != 200 {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	wantJSONHeaders(t, resp)
	_, body = get(t, ts.URL+"/comet/channel")
	if strings.TrimSpace(string(body)) != `["bar","foo"]` {
		t.Errorf("channel list = %s, want sorted [bar foo]", body)
	}
	_, body = get(t, ts.URL+"/comet/channel/foo+bar")
	info := decodeList(t, body)
	if len(info) != 2 || info[0]["name"] != "foo" || info[1]["name"] != "bar" {
		t.Fatalf("channel info = %s", body)
	}
	for _, ci := range info {
		msgs := ci["messages"].([]any)
		if len(msgs) != 2 {
			t.Fatalf("%s: %d messages, want 2", ci["name"], len(msgs))
		}
		first := msgs[0].(map[string]any)
		if first["type"] != "a" || first["_ch"] != ci["name"] {
			t.Errorf("%s: first message %v", ci["name"], first)
		}
		if ts, ok := first["_ts"].(float64); !ok || ts < float64(time.Now().Unix()-60) {
			t.Errorf("_ts = %v, want epoch seconds", first["_ts"])
		}
	}
}

func TestPublishJSONBody(t *testing.T) {
	_, ts := testServer(t, Options{Hub: HubOptions{HistorySize: 10}})
	for _, body := range []string{`{"type":"one"}`, `[{"type":"two"},{"type":"three"}]`} {
		resp, err := http.Post(ts.URL+"/comet/channel/j", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", body, resp.StatusCode)
		}
	}
	_, body := get(t, ts.URL+"/comet/channel/j")
	msgs := decodeList(t, body)[0]["messages"].([]any)
	var types []string
	for _, m := range msgs {
		types = append(types, m.(map[string]any)["type"].(string))
	}
	if strings.Join(types, ",") != "one,two,three" {
		t.Errorf("types in history = %v", types)
	}
}

func TestBadInput(t *testing.T) {
	_, ts := testServer(t, Options{MaxBodyBytes: 4096, MaxMessageSize: 1024, Hub: HubOptions{HistorySize: 10}})
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		mention                         string
	}{
		{"missing m", "POST", "/comet/channel/foo", "application/x-www-form-urlencoded", "x=1", 400, "missing parameter m"},
		{"invalid second m", "POST", "/comet/channel/foo", "application/x-www-form-urlencoded",
			"m=" + url.QueryEscape(`{"ok":1}`) + "&m=" + url.QueryEscape(`{bad`), 400, "m #2"},
		{"array m", "POST", "/comet/channel/foo", "application/x-www-form-urlencoded", "m=" + url.QueryEscape(`[1]`), 400, "want a JSON object"},
		{"scalar m", "POST", "/comet/channel/foo", "application/x-www-form-urlencoded", "m=3", 400, "want a JSON object"},
		{"trailing", "POST", "/comet/channel/foo", "application/x-www-form-urlencoded", "m=" + url.QueryEscape(`{} {}`), 400, "trailing"},
		{"bad json body", "POST", "/comet/channel/foo", "application/json", `[{"a":1},"x"]`, 400, "message #2"},
		{"empty json body", "POST", "/comet/channel/foo", "application/json", ``, 400, "empty"},
		{"bad content type", "POST", "/comet/channel/foo", "text/plain", "m={}", 400, "Content-Type"},
		{"bad channel", "POST", "/comet/channel/f-o", "application/x-www-form-urlencoded", "m={}", 400, "f-o"},
		{"message too large", "POST", "/comet/channel/foo", "application/x-www-form-urlencoded",
			"m=" + url.QueryEscape(`{"x":"`+strings.Repeat("a", 2000)+`"}`), 413, "over 1024 bytes"},
		{"body too large", "POST", "/comet/channel/foo", "application/x-www-form-urlencoded", "m=" + strings.Repeat("a", 5000), 413, "4096"},
		{"unknown path", "GET", "/comet/nothing/here", "", "", 404, "/comet/nothing/here"},
		{"wrong method", "PUT", "/comet/channel/foo", "", "", 405, "PUT"},
		{"bad stream id", "GET", "/comet/channel/foo/stream/a:b", "", "", 400, "a:b"},
		{"bad since", "GET", "/comet/channel/foo/stream/1?since=yesterday", "", "", 400, "since"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, ts.URL+tt.path, strings.NewReader(tt.body))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			var e errorBody
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Fatalf("not a JSON error: %s", body)
			}
			if !strings.Contains(e.Error, tt.mention) {
				t.Errorf("error %q does not mention %q", e.Error, tt.mention)
			}
		})
	}
	// Nothing of the rejected requests was published.
	if _, body := get(t, ts.URL+"/comet/channel"); strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("rejected publishes left channels: %s", body)
	}
}

// poll runs a long poll in the background and returns its result channel.
func poll(t *testing.T, u string) <-chan []map[string]any {
	t.Helper()
	out := make(chan []map[string]any, 1)
	go func() {
		resp, err := http.Get(u)
		if err != nil {
			t.Error(err)
			out <- nil
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var msgs []map[string]any
		if err := json.Unmarshal(body, &msgs); err != nil {
			t.Errorf("poll answer not a JSON array: %q", body)
		}
		out <- msgs
	}()
	return out
}

func waitPolling(t *testing.T, s *Server, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if polling(s.Hub(), id) {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("client %s never started polling", id)
}

func recv(t *testing.T, ch <-chan []map[string]any, within time.Duration) []map[string]any {
	t.Helper()
	select {
	case msgs := <-ch:
		return msgs
	case <-time.After(within):
		t.Fatalf("no answer within %s", within)
		return nil
	}
}

func TestStream(t *testing.T) {
	// A hold far longer than any bound below, so that "at once" and
	// "released" cannot be mistaken for the hold running out.
	const hold = 10 * time.Second
	s, ts := testServer(t, Options{PollTimeout: hold, Hub: HubOptions{HistorySize: 10}})
	stream := ts.URL + "/comet/channel/foo+bar/stream/0.123"

	t.Run("publish reaches a waiting poll", func(t *testing.T) {
		res := poll(t, stream)
		waitPolling(t, s, "0.123")
		postForm(t, ts.URL+"/comet/channel/bar", `{"type":"hello"}`)
		msgs := recv(t, res, 2*time.Second)
		if len(msgs) != 1 || msgs[0]["type"] != "hello" || msgs[0]["_ch"] != "bar" {
			t.Fatalf("got %v", msgs)
		}
	})
	t.Run("nothing lost between polls", func(t *testing.T) {
		postForm(t, ts.URL+"/comet/channel/foo", `{"n":1}`, `{"n":2}`)
		postForm(t, ts.URL+"/comet/channel/foo", `{"n":3}`)
		start := time.Now()
		msgs := recv(t, poll(t, stream), 2*time.Second)
		if len(msgs) != 3 || msgs[0]["n"] != 1.0 || msgs[2]["n"] != 3.0 {
			t.Fatalf("got %v, want n=1,2,3 in order", msgs)
		}
		if time.Since(start) > hold/2 {
			t.Errorf("queued messages took %s: must come at once", time.Since(start))
		}
	})
	t.Run("idle poll ends with []", func(t *testing.T) {
		_, short := testServer(t, Options{PollTimeout: 300 * time.Millisecond})
		start := time.Now()
		msgs := recv(t, poll(t, short.URL+"/comet/channel/foo/stream/1"), 5*time.Second)
		if msgs == nil || len(msgs) != 0 {
			t.Fatalf("got %v, want []", msgs)
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Errorf("idle poll ended after %s, before the hold", d)
		}
	})
	t.Run("second poll releases the first", func(t *testing.T) {
		first := poll(t, stream)
		waitPolling(t, s, "0.123")
		second := poll(t, stream)
		if msgs := recv(t, first, hold/2); len(msgs) != 0 {
			t.Fatalf("first poll got %v", msgs)
		}
		postForm(t, ts.URL+"/comet/channel/foo", `{"to":"second"}`)
		if msgs := recv(t, second, 2*time.Second); len(msgs) != 1 || msgs[0]["to"] != "second" {
			t.Fatalf("second poll got %v", msgs)
		}
	})
	t.Run("since replays history", func(t *testing.T) {
		_, body := get(t, ts.URL+"/comet/channel/foo")
		hist := decodeList(t, body)[0]["messages"].([]any)
		mid := hist[1].(map[string]any)["_ts"].(float64)
		msgs := recv(t, poll(t, ts.URL+"/comet/channel/foo/stream/late?since="+strconv.FormatFloat(mid, 'f', -1, 64)), 2*time.Second)
		if len(msgs) != len(hist)-2 {
			t.Fatalf("since=%v: got %d messages, want %d: %v", mid, len(msgs), len(hist)-2, msgs)
		}
	})
	t.Run("jquery.ev path without stream", func(t *testing.T) {
		res := poll(t, ts.URL+"/comet/channel/foo/42.5")
		waitPolling(t, s, "42.5")
		postForm(t, ts.URL+"/comet/channel/foo", `{"type":"ev"}`)
		if msgs := recv(t, res, 2*time.Second); len(msgs) != 1 || msgs[0]["type"] != "ev" {
			t.Fatalf("got %v", msgs)
		}
	})
}

func TestQueueOverflow(t *testing.T) {
	s, ts := testServer(t, Options{PollTimeout: 200 * time.Millisecond, Hub: HubOptions{QueueMaxMessages: 3}})
	recv(t, poll(t, ts.URL+"/comet/channel/q/stream/slow"), 2*time.Second) // registers
	for i := 1; i <= 5; i++ {
		postForm(t, ts.URL+"/comet/channel/q", fmt.Sprintf(`{"n":%d}`, i))
	}
	msgs := recv(t, poll(t, ts.URL+"/comet/channel/q/stream/slow"), 2*time.Second)
	if len(msgs) != 4 || msgs[0]["type"] != "stardust.overflow" || msgs[0]["lost"] != 2.0 {
		t.Fatalf("got %v, want an overflow notice (lost 2) then n=3..5", msgs)
	}
	if msgs[1]["n"] != 3.0 || msgs[3]["n"] != 5.0 {
		t.Errorf("kept the wrong messages: %v", msgs)
	}
	if st := stats(t, s.Hub()); st.Dropped != 2 {
		t.Errorf("Stats.Dropped = %d, want 2", st.Dropped)
	}
}

func TestClientExpiry(t *testing.T) {
	s, ts := testServer(t, Options{PollTimeout: 50 * time.Millisecond, ClientTimeout: 200 * time.Millisecond,
		Hub: HubOptions{SweepInterval: 20 * time.Millisecond}})
	recv(t, poll(t, ts.URL+"/comet/channel/e/stream/gone"), 2*time.Second)
	if clientOf(s.Hub(), "gone") == nil {
		t.Fatal("client not registered by its first poll")
	}
	// The session goes with its subscriptions (an engine may take a
	// moment between the two).
	deadline := time.Now().Add(3 * time.Second)
	for clientOf(s.Hub(), "gone") != nil || audience(t, s.Hub(), "/stardust/e") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("idle client never expired (registered: %v, subscribers: %d)",
				clientOf(s.Hub(), "gone") != nil, audience(t, s.Hub(), "/stardust/e"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSSE(t *testing.T) {
	s, ts := testServer(t, Options{SSEHeartbeat: 100 * time.Millisecond, Hub: HubOptions{HistorySize: 10}})
	open := func(lastID string) (*bufio.Reader, func()) {
		req, _ := http.NewRequest("GET", ts.URL+"/comet/channel/live/events?id=sse1", nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
		return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
	}
	r, closeIt := open("")
	waitPolling(t, s, "sse1")
	var ids []string
	for i := 1; i <= 3; i++ {
		postForm(t, ts.URL+"/comet/channel/live", fmt.Sprintf(`{"n":%d}`, i))
		id, data := readEvent(t, r)
		if !strings.Contains(data, fmt.Sprintf(`"n":%d`, i)) {
			t.Fatalf("event %d data = %q", i, data)
		}
		ids = append(ids, id)
	}
	closeIt()
	// Resume after the first event: the other two come again from history.
	deadline := time.Now().Add(2 * time.Second)
	for clientOf(s.Hub(), "sse1") != nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	r, closeIt = open(ids[0])
	defer closeIt()
	for _, want := range ids[1:] {
		if id, _ := readEvent(t, r); id != want {
			t.Fatalf("resumed event id %s, want %s", id, want)
		}
	}
}

// readEvent reads SSE lines up to the next event with data, skipping comments.
func readEvent(t *testing.T, r *bufio.Reader) (id, data string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case strings.HasPrefix(line, "id: "):
				id = line[4:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && data != "":
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("no SSE event within 3s")
	}
	return id, data
}

func TestCloseReleasesPollsAndGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	log, _ := test.NewNullLogger()
	s := New(Options{PollTimeout: time.Minute}, logrus.NewEntry(log))
	ts := httptest.NewServer(s)
	var wg sync.WaitGroup
	results := make(chan []map[string]any, 5)
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results <- recv(t, poll(t, fmt.Sprintf("%s/comet/channel/x/stream/%d", ts.URL, i)), 10*time.Second)
		}(i)
	}
	for i := 0; i < 5; i++ {
		waitPolling(t, s, fmt.Sprint(i))
	}
	start := time.Now()
	s.Close()
	wg.Wait()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("held polls took %s to answer after Close", d)
	}
	close(results)
	for msgs := range results {
		if msgs == nil || len(msgs) != 0 {
			t.Errorf("released poll answered %v, want []", msgs)
		}
	}
	ts.Close()
	http.DefaultClient.CloseIdleConnections()
	leakcheck.Goroutines(t, before)
}

func TestPollContextCancelled(t *testing.T) {
	s, _ := testServer(t, Options{})
	c, _, err := s.Hub().Register("ctx", KindStardust, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, why := c.Poll(ctx, time.Minute); why != PollGone {
		t.Errorf("poll ended with %v, want PollGone", why)
	}
}

func FuzzDecodeMessages(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", "m=%7B%22a%22%3A1%7D&m=%7B%7D", "")
	f.Add("application/json", `[{"a":1},{"b":[1,2]}]`, "")
	f.Add("application/json", `{"a":"b"}`, "m=%7B%7D")
	f.Add("", `m={"x":1}`, "")
	f.Add("multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"m\"\r\n\r\n{\"a\":1}\r\n--X--\r\n", "")
	f.Fuzz(func(t *testing.T, ctype, body, query string) {
		q, _ := url.ParseQuery(query)
		msgs, err := DecodeMessages(ctype, []byte(body), q, 4096)
		if err != nil {
			if httpStatus(err) != 400 && httpStatus(err) != 413 {
				t.Fatalf("error maps to status %d: %v", httpStatus(err), err)
			}
			return
		}
		if len(msgs) == 0 {
			t.Fatal("no error and no message")
		}
		for _, m := range msgs {
			if m == nil {
				t.Fatal("nil message")
			}
			if _, err := json.Marshal(m); err != nil {
				t.Fatalf("accepted message does not re-encode: %v", err)
			}
		}
	})
}

func TestMetricsAndHealth(t *testing.T) {
	s, ts := testServer(t, Options{Metrics: &MetricsOptions{Path: "/metrics", HealthPath: "/health"}, PollTimeout: 100 * time.Millisecond})
	recv(t, poll(t, ts.URL+"/comet/channel/m/stream/1"), 2*time.Second)
	postForm(t, ts.URL+"/comet/channel/m", `{"a":1}`)
	resp, body := get(t, ts.URL+"/comet/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	for _, want := range []string{
		`stardust_clients{kind="stardust"} 1`,
		`stardust_channels 1`,
		`stardust_messages_published_total 1`,
		`stardust_messages_delivered_total 1`,
		`stardust_queue_dropped_total 0`,
		`stardust_http_request_duration_seconds_count{code="200",method="POST",route="/comet/channel/{chans}"} 1`,
		`stardust_polls_held`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	resp, body = get(t, ts.URL+"/comet/health")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok"`) {
		t.Errorf("health: %d %s", resp.StatusCode, body)
	}
	s.Close()
	if resp, _ = get(t, ts.URL+"/comet/health"); resp.StatusCode != 503 {
		t.Errorf("health while stopping: %d, want 503", resp.StatusCode)
	}
}

func TestSSENamedClientKeepsQueueAndTakesOver(t *testing.T) {
	s, ts := testServer(t, Options{SSEHeartbeat: time.Second})
	open := func(lastEventID string) (*bufio.Reader, func()) {
		req, _ := http.NewRequest("GET", ts.URL+"/comet/channel/named/events?id=tab1", nil)
		if lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return bufio.NewReader(resp.Body), func() { resp.Body.Close() }
	}
	first, closeFirst := open("")
	defer closeFirst()
	waitPolling(t, s, "tab1")
	second, closeSecond := open("") // takes over; the first ends
	defer closeSecond()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, err := first.ReadString('\n'); err != nil {
			break // the first stream ended
		}
		if time.Now().After(deadline) {
			t.Fatal("the first stream was not released by the second")
		}
	}
	postForm(t, ts.URL+"/comet/channel/named", `{"n":1}`)
	lastID, data := readEvent(t, second)
	if !strings.Contains(data, `"n":1`) {
		t.Fatalf("second stream got %q", data)
	}
	closeSecond()
	// Between streams the named client keeps its queue: nothing is lost.
	deadline = time.Now().Add(3 * time.Second)
	for polling(s.Hub(), "tab1") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	postForm(t, ts.URL+"/comet/channel/named", `{"n":2}`)
	third, closeThird := open(lastID) // as the browser does
	defer closeThird()
	if _, data := readEvent(t, third); !strings.Contains(data, `"n":2`) {
		t.Fatalf("reconnected stream got %q", data)
	}
}

func TestSubscribeRacingRemoveLeavesNothing(t *testing.T) {
	s, _ := testServer(t, Options{})
	h := s.Hub()
	c, _, err := h.Register("r", KindStardust, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	// The removal lands in the window between the client's own record of
	// the subscription and the tree's.
	h.Engine().(*MemoryEngine).beforeTreeAdd = func(string) { _ = h.Remove(c) }
	if _, err := h.Subscribe(c, "/race/x"); err == nil {
		t.Error("subscribing a client removed meanwhile reported success")
	}
	if n := audience(t, h, "/race/x"); n != 0 {
		t.Fatalf("a removed client was left in the subscription tree: %d", n)
	}
}

func TestPollRacingExpiryRegistersAnew(t *testing.T) {
	s, ts := testServer(t, Options{PollTimeout: 100 * time.Millisecond})
	h := s.Hub()
	var once sync.Once
	// The client expires just as its poll subscribes it.
	h.Engine().(*MemoryEngine).beforeTreeAdd = func(id string) {
		once.Do(func() { _ = h.Remove(clientOf(h, id)) })
	}
	resp, body := get(t, ts.URL+"/comet/channel/e/stream/77")
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("poll racing expiry: %d %s", resp.StatusCode, body)
	}
	if n := audience(t, h, "/stardust/e"); n != 1 || clientOf(h, "77") == nil {
		t.Errorf("%d subscribers, want the client registered anew", n)
	}
}
