package floor

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func publish(t *testing.T, u string, msgs ...string) (int, string) {
	t.Helper()
	resp, err := http.PostForm(u, url.Values{"m": msgs})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFloor(t *testing.T) {
	ts := httptest.NewServer(New("/comet", time.Second))
	defer ts.Close()
	base := ts.URL + "/comet"

	if code, _ := get(t, base+"/"); code != 200 {
		t.Errorf("GET base/: %d", code)
	}
	if code, _ := get(t, base+"/elsewhere"); code != 404 {
		t.Errorf("GET base/elsewhere: %d, want 404", code)
	}
	// An idle poll ends after the hold with [].
	start := time.Now()
	if code, body := get(t, base+"/channel/a/stream/1"); code != 200 || body != "[]" {
		t.Errorf("idle poll: %d %q", code, body)
	}
	if took := time.Since(start); took < 900*time.Millisecond || took > 10*time.Second {
		t.Errorf("idle poll held %s, want about 1s", took)
	}
	// A held poll is answered by a publish.
	answer := make(chan string)
	go func() {
		_, body := get(t, base+"/channel/a/stream/1")
		answer <- body
	}()
	time.Sleep(100 * time.Millisecond)
	if code, body := publish(t, base+"/channel/a", `{"n":1}`, `{"n":2}`); code != 200 || body != `{"recipients":1}` {
		t.Errorf("publish: %d %q", code, body)
	}
	if body := <-answer; body != `[{"n":1},{"n":2}]` {
		t.Errorf("held poll answered %q", body)
	}
	// Between polls messages wait for the client; the channel lists it.
	publish(t, base+"/channel/a", `{"n":3}`)
	if _, body := get(t, base+"/channel/a/stream/1"); body != `[{"n":3}]` {
		t.Errorf("queued message: %q", body)
	}
	var infos []struct {
		Channel     string         `json:"channel"`
		Subscribers map[string]int `json:"subscribers"`
	}
	_, body := get(t, base+"/channel/a+b")
	if err := json.Unmarshal([]byte(body), &infos); err != nil || len(infos) != 2 ||
		infos[0].Subscribers["stardust"] != 1 || len(infos[1].Subscribers) != 0 {
		t.Errorf("channel info %q: %+v, %v", body, infos, err)
	}
	// Bad publishes are refused.
	if code, _ := publish(t, base+"/channel/a", `{not json`); code != 400 {
		t.Errorf("publish of bad JSON: %d, want 400", code)
	}
	if code, _ := publish(t, base+"/channel/a"); code != 400 {
		t.Errorf("publish of nothing: %d, want 400", code)
	}
	if code, body := publish(t, base+"/channel/nobody", `{}`); code != 200 || body != `{"recipients":0}` {
		t.Errorf("publish to an empty channel: %d %q", code, body)
	}
}

// TestFloorQueueBound keeps only the newest maxQueue messages of a client
// that does not poll.
func TestFloorQueueBound(t *testing.T) {
	s := &sub{wake: make(chan struct{}, 1)}
	for i := 0; i < maxQueue+10; i++ {
		s.add([][]byte{[]byte{byte(i)}})
	}
	p := s.take()
	if len(p) != maxQueue || p[0][0] != byte(10) {
		t.Errorf("kept %d messages starting with %d, want %d starting with 10", len(p), p[0][0], maxQueue)
	}
}

// TestBayeuxWebSocket: a socket that handshakes, subscribes and connects gets
// each message a long-polling publisher posts, once, as its own frame; the
// held connect is answered at the end of the hold; a closed socket is
// forgotten.
func TestBayeuxWebSocket(t *testing.T) {
	h := New("/comet", 300*time.Millisecond)
	ts := httptest.NewServer(h)
	defer ts.Close()
	conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(ts.URL, "http")+"/comet/bayeux", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	exchange := func(batch string) []map[string]any {
		t.Helper()
		if err := conn.WriteMessage(websocket.TextMessage, []byte(batch)); err != nil {
			t.Fatal(err)
		}
		return readFrame(t, conn)
	}
	hs := exchange(`[{"channel":"/meta/handshake","version":"1.0","id":"1"}]`)
	id, _ := hs[0]["clientId"].(string)
	if hs[0]["successful"] != true || len(id) != 32 {
		t.Fatalf("handshake reply %v", hs)
	}
	sub := exchange(`[{"channel":"/meta/subscribe","clientId":"` + id + `","subscription":"/stardust/a","id":"2"}]`)
	if sub[0]["successful"] != true || sub[0]["subscription"] != "/stardust/a" {
		t.Fatalf("subscribe reply %v", sub)
	}
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`[{"channel":"/meta/connect","clientId":"`+id+`","id":"3"}]`)); err != nil {
		t.Fatal(err)
	}
	for i, data := range []string{`{"n":1}`, `{"n":2}`} {
		if b := postBatch(t, ts.URL+"/comet/bayeux", `[{"channel":"/stardust/a","data":`+data+`,"id":"p`+strconv.Itoa(i)+`"}]`); !strings.Contains(b, `"successful":true`) {
			t.Fatalf("publish answer %s", b)
		}
		got := readFrame(t, conn)
		if len(got) != 1 || got[0]["channel"] != "/stardust/a" || !reflect.DeepEqual(got[0]["data"], map[string]any{"n": float64(i + 1)}) {
			t.Fatalf("delivery %d: %v", i, got)
		}
	}
	if got := readFrame(t, conn); got[0]["channel"] != "/meta/connect" || got[0]["successful"] != true {
		t.Fatalf("held connect answered with %v", got)
	}
	// Meta messages other than the handshake are WebSocket-only.
	if b := postBatch(t, ts.URL+"/comet/bayeux", `[{"channel":"/meta/connect","clientId":"x"}]`); !strings.Contains(b, `"successful":false`) {
		t.Errorf("long-polling connect: %s", b)
	}
	conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.mu.Lock()
		n := len(h.sockets)
		h.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a closed socket is still subscribed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// postBatch POSTs a Bayeux batch and returns the answer's body.
func postBatch(t *testing.T, u, batch string) string {
	t.Helper()
	resp, err := http.Post(u, "application/json", strings.NewReader(batch))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func readFrame(t *testing.T, conn *websocket.Conn) []map[string]any {
	t.Helper()
	_, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	if err := json.Unmarshal(data, &out); err != nil || len(out) == 0 {
		t.Fatalf("frame %s: %v", data, err)
	}
	return out
}
