package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stardust-go/stardust/internal/centrifugo"
)

// fakeCentrifugo speaks Centrifugo v6's unidirectional transports and the
// publish method of its server HTTP API as its documentation describes them,
// and checks what the load tool sends: a wire mistake fails the test.
type fakeCentrifugo struct {
	t      *testing.T
	apiKey string
	join   bool // join pushes in one frame, as join_push_messages does

	mu      sync.Mutex
	subs    map[string][]chan []byte // channel -> subscriber queues
	offset  int
	refused int // requests that broke the protocol
}

func newFakeCentrifugo(t *testing.T, apiKey string) (*fakeCentrifugo, string) {
	f := &fakeCentrifugo{t: t, apiKey: apiKey, subs: map[string][]chan []byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /connection/uni_websocket", f.uniWebSocket)
	mux.HandleFunc("GET /connection/uni_sse", f.uniSSE)
	mux.HandleFunc("POST /api/publish", f.publish)
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return f, ts.URL
}

func (f *fakeCentrifugo) refuse(w http.ResponseWriter, status int, format string, args ...any) {
	f.mu.Lock()
	f.refused++
	f.mu.Unlock()
	f.t.Errorf("fake Centrifugo: "+format, args...)
	http.Error(w, fmt.Sprintf(format, args...), status)
}

// connect reads a connect request and subscribes its channels; it returns
// the connect push and the queue of pushes.
func (f *fakeCentrifugo) connect(raw []byte) ([]byte, chan []byte, error) {
	var req struct {
		Token string                     `json:"token"`
		Subs  map[string]json.RawMessage `json:"subs"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, nil, fmt.Errorf("connect request %q: %v", raw, err)
	}
	if len(req.Subs) == 0 {
		return nil, nil, fmt.Errorf("connect request %q subscribes to nothing", raw)
	}
	q := make(chan []byte, 1000)
	subs := map[string]any{}
	f.mu.Lock()
	for ch, sr := range req.Subs {
		if string(sr) != "{}" {
			f.mu.Unlock()
			return nil, nil, fmt.Errorf("subscribe request %s for %s: want {}", sr, ch)
		}
		f.subs[ch] = append(f.subs[ch], q)
		subs[ch] = map[string]any{}
	}
	f.mu.Unlock()
	push, _ := json.Marshal(map[string]any{"connect": map[string]any{"client": "c1", "version": "6.9.1", "subs": subs, "ping": 25, "session": "s1"}})
	return push, q, nil
}

func (f *fakeCentrifugo) uniWebSocket(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, raw, err := conn.ReadMessage()
	if err != nil || typ != websocket.TextMessage {
		f.t.Errorf("fake Centrifugo: no connect request as the first text frame: type %d, %v", typ, err)
		return
	}
	push, q, err := f.connect(raw)
	if err != nil {
		f.t.Errorf("fake Centrifugo: %v", err)
		_ = conn.WriteMessage(websocket.TextMessage, []byte(`{"disconnect":{"code":3501,"reason":"bad request"}}`))
		return
	}
	go func() { // a unidirectional client sends nothing more; a read ends with the socket
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	_ = conn.WriteMessage(websocket.TextMessage, push)
	_ = conn.WriteMessage(websocket.TextMessage, []byte(`{}`)) // a ping
	for {
		select {
		case <-r.Context().Done():
			return
		case p := <-q:
			if f.join { // everything queued in one frame, newline-separated
				for more := true; more; {
					select {
					case p2 := <-q:
						p = slices.Concat(p, []byte("\n"), p2) // a copy: p is shared by every subscriber
					default:
						more = false
					}
				}
			}
			if conn.WriteMessage(websocket.TextMessage, p) != nil {
				return
			}
		}
	}
}

func (f *fakeCentrifugo) uniSSE(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("cf_connect")
	if raw == "" {
		f.refuse(w, http.StatusBadRequest, "uni_sse without cf_connect: %s", r.URL.RawQuery)
		return
	}
	push, q, err := f.connect([]byte(raw))
	if err != nil {
		f.refuse(w, http.StatusBadRequest, "%v", err)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("\r\n"))
	_, _ = fmt.Fprintf(w, "data: %s\n\n", push)
	_, _ = w.Write([]byte("data: {}\n\n")) // a ping
	w.(http.Flusher).Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case p := <-q:
			if _, err := fmt.Fprintf(w, "data: %s\n\n", p); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	}
}

func (f *fakeCentrifugo) publish(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("X-API-Key"); got != f.apiKey {
		f.refuse(w, http.StatusUnauthorized, "X-API-Key %q, want %q", got, f.apiKey)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.refuse(w, http.StatusBadRequest, "Content-Type %q", ct)
		return
	}
	var req struct {
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	body, _ := io.ReadAll(r.Body)
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || req.Channel == "" || len(req.Data) == 0 || req.Data[0] != '{' {
		f.refuse(w, http.StatusBadRequest, "publish body %s: %v", body, err)
		return
	}
	f.mu.Lock()
	f.offset++
	push, _ := json.Marshal(map[string]any{"channel": req.Channel, "pub": map[string]any{"data": req.Data, "offset": f.offset}})
	for _, q := range f.subs[req.Channel] {
		q <- push
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"result":{}}`))
}

// TestRunCentrifugo loads the fake Centrifugo with both unidirectional
// transports and checks that every published message arrived once.
func TestRunCentrifugo(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		join       bool
	}{
		{"uni_websocket", "uni_websocket", false},
		{"uni_websocket-joined", "uni_websocket", true},
		{"uni_sse", "uni_sse", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // two seconds of waiting each
			f, u := newFakeCentrifugo(t, "k1")
			f.join = tc.join
			cfg := testConfig(t, "--url", u, "--mode", tc.mode, "--api-key", "k1", "--clients", "20", "--channels", "3",
				"--publishers", "2", "--rate", "100", "--duration", "2s", "--drain", "10s")
			if cfg.Publish != "centrifugo" {
				t.Fatalf("--mode %s publishes over %q by default, want centrifugo", tc.mode, cfg.Publish)
			}
			cfg.PID = os.Getpid()
			rep := checkRun(t, cfg)
			if rep.Polls != 0 {
				t.Errorf("%d streams ended during the run: %s", rep.Polls, rep.FirstError)
			}
		})
	}
}

// TestCentrifugoRefusals: a wrong API key, a server that does not subscribe
// the client, and a disconnect push are errors that say what happened.
func TestCentrifugoRefusals(t *testing.T) {
	_, u := newFakeCentrifugo(&testing.T{}, "right") // its complaints are expected here
	cfg := testConfig(t, "--url", u, "--mode", "uni_sse", "--api-key", "wrong", "--clients", "1")
	r := newRunner(cfg)
	err := r.publishCentrifugo(t.Context(), "ch", `{"a":1}`)
	if err == nil || !strings.Contains(err.Error(), "status 401") {
		t.Errorf("publish with a wrong key: %v, want status 401", err)
	}
	c := r.newClient(0)
	for _, tc := range []struct{ push, want string }{
		{`{"connect":{"client":"x","subs":{}}}`, "not subscribed to " + r.names[0]},
		{`{"disconnect":{"code":3501,"reason":"bad request"}}`, "code 3501"},
		{`not json`, "push not JSON"},
	} {
		if err := c.gotPushes([]byte(tc.push), stamp{at: time.Now()}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("push %s: %v, want an error with %q", tc.push, err, tc.want)
		}
	}
	if c.registered {
		t.Error("a client that was not subscribed counts as registered")
	}
}

// TestReadEvents: data lines join with newlines, an id is kept, comments
// and blank keep-alives are skipped.
func TestReadEvents(t *testing.T) {
	stream := "\r\n: comment\n\nid: 7\nevent: overflow\ndata: {\"a\":\ndata: 1}\n\ndata:{}\r\n\r\n"
	var got []string
	var id string
	err := readEvents(strings.NewReader(stream), &id, func(typ, data []byte) error {
		got = append(got, string(typ)+"|"+string(data))
		return nil
	})
	if err != nil || id != "7" || strings.Join(got, ";") != "overflow|{\"a\":\n1};|{}" {
		t.Errorf("events %q, id %q, err %v", got, id, err)
	}
}

// TestRealCentrifugo runs the Centrifugo drivers against the real server,
// configured as the comparison configures it, when `make compare` has built
// it (or $STARDUST_CENTRIFUGO names it); the build needs the Go module proxy,
// so the tests never start it and skip loudly without it.
func TestRealCentrifugo(t *testing.T) {
	bin := centrifugo.Binary()
	if bin == "" {
		t.Skip("SKIPPED: no Centrifugo " + centrifugo.Version + " binary: `make compare` builds it, or set STARDUST_CENTRIFUGO")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "centrifugo.json")
	if err := os.WriteFile(conf, centrifugo.Config(port), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd := exec.Command(bin, "--config", conf)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Centrifugo not listening on %s after 15s: %s", addr, out.String())
		}
	}
	for _, mode := range []string{"uni_websocket", "uni_sse"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(t, "--url", "http://"+addr, "--mode", mode, "--api-key", centrifugo.APIKey, "--clients", "20",
				"--channels", "3", "--publishers", "2", "--rate", "100", "--duration", "2s", "--drain", "10s")
			cfg.PID = cmd.Process.Pid
			checkRun(t, cfg)
		})
	}
}

// FuzzReadEvents: no stream makes the reader panic, and the events it reads,
// written out again as an event stream, read back the same.
func FuzzReadEvents(f *testing.F) {
	for _, s := range []string{"data: {}\n\n", "\r\nid: 7\nevent: overflow\ndata: {\"a\":\ndata: 1}\n\n", ": c\n\ndata:x\r\n\r\n", "data: a\ndata"} {
		f.Add([]byte(s))
	}
	type ev struct{ typ, data string }
	read := func(in []byte) ([]ev, error) {
		var got []ev
		var id string
		err := readEvents(bytes.NewReader(in), &id, func(typ, data []byte) error {
			got = append(got, ev{string(typ), string(data)})
			return nil
		})
		return got, err
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := read(in)
		if err != nil {
			return
		}
		var out bytes.Buffer
		for _, e := range got {
			if e.typ != "" {
				fmt.Fprintf(&out, "event: %s\n", e.typ)
			}
			for line := range strings.SplitSeq(e.data, "\n") {
				fmt.Fprintf(&out, "data: %s\n", line)
			}
			out.WriteString("\n")
		}
		again, err := read(out.Bytes())
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("%q read as %q; written out again as %q it reads as %q, %v", in, got, out.Bytes(), again, err)
		}
	})
}

// FuzzGotPushes: no frame makes the push decoder panic or count more
// messages than the frame has lines.
func FuzzGotPushes(f *testing.F) {
	for _, s := range []string{`{}`, `{"connect":{"client":"x","subs":{"ch_0":{}}}}`,
		`{"channel":"ch_0","pub":{"data":{"load":"r","t":1,"p":0,"n":0}}}` + "\n" + `{"channel":"ch_0","pub":{"data":{"load":"r","t":1,"p":0,"n":1}}}`,
		`{"disconnect":{"code":3000,"reason":"x"}}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		r := &runner{cfg: config{Publishers: 1, Channels: 1}, run: "r", names: []string{"ch_0"}}
		c := r.newClient(0)
		_ = c.gotPushes(frame, stamp{at: time.Now()})
		if n := r.received.Load(); n > int64(bytes.Count(frame, []byte("\n"))+1) {
			t.Fatalf("%q counted as %d messages", frame, n)
		}
	})
}
