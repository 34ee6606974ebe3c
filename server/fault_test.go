package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CometD's fault scenarios (bad JSON, max queued, slow connection, network
// drop) against this server; the server restart is in cmd/stardust.

func TestFaultBadJSON(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true})
	id := b.handshake()
	for _, body := range []string{`[{"channel":`, `{"channel":"/meta/connect"`, `[1,2]`, `[{"channel":"/a","data":` + "\"\xff\"}]"} {
		resp, err := b.hc.Post(b.url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e errorBody
		if resp.StatusCode != 400 || json.Unmarshal(out, &e) != nil || e.Status != 400 {
			t.Errorf("%q: %d %s", body, resp.StatusCode, out)
		}
	}
	// Over a WebSocket: an unsuccessful reply, and the socket goes on.
	ws := b.dialWS()
	if err := ws.conn.WriteMessage(1, []byte(`[{"channel":`)); err != nil {
		t.Fatal(err)
	}
	if r := ws.read(); r[0]["channel"] != "/meta/unsuccessful" || !strings.HasPrefix(r[0]["error"].(string), "400:") {
		t.Errorf("bad frame: %v", r)
	}
	ws.send(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"websocket"}})
	if r := ws.read(); r[0]["successful"] != true {
		t.Errorf("after a bad frame: %v", r)
	}
	// The session that sent nothing wrong is untouched.
	if r := b.post(connectMsg(id, 0)); r[0]["successful"] != true {
		t.Errorf("connect after bad requests: %v", r)
	}
}

func TestFaultMaxQueued(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.Hub.QueueMaxMessages = 10 })
	id := b.handshake()
	b.subscribe(id, "/q")
	for i := range 25 {
		if _, err := b.s.hub.Publish(&Message{Channel: "/q", Data: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	r := b.post(connectMsg(id, 0))
	if len(r) != 11 {
		t.Fatalf("connect after 25 messages with a queue of 10: %d replies", len(r))
	}
	for i, m := range r[:10] {
		if m["data"] != float64(15+i) {
			t.Errorf("message %d: %v, want the newest ten in order", i, m["data"])
		}
	}
	if d := stats(t, b.s.hub).Dropped; d != 15 {
		t.Errorf("dropped %d, want 15", d)
	}
	if r[10]["successful"] != true {
		t.Errorf("the client survives its overflow: %v", r[10])
	}
}

// cookieHeader returns the Cookie header of the test's browser.
func (b *bx) cookieHeader() string {
	u, _ := http.NewRequest("GET", b.url, nil)
	var parts []string
	for _, c := range b.hc.Jar.Cookies(u.URL) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// rawConnect sends a connect for id (timeout as in connectMsg) over a raw
// connection with the jar's cookie, and returns the connection unread.
func (b *bx) rawConnect(id string, timeout int) net.Conn {
	b.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(b.ts.URL, "http://"))
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { conn.Close() })
	b.sendConnect(conn, id, timeout)
	return conn
}

func (b *bx) sendConnect(conn net.Conn, id string, timeout int) {
	body, _ := json.Marshal([]any{connectMsg(id, timeout)})
	fmt.Fprintf(conn, "POST /comet/bayeux HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nCookie: %s\r\nContent-Length: %d\r\n\r\n%s",
		b.cookieHeader(), len(body), body)
}

// A client too slow to read its answer does not hold the server: the write
// gives up after request_timeout, and what it did not get comes again. So
// does what a connection that drops mid-response did not get: a batch is
// committed only once written in full.
func TestFaultSlowConnection(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) {
		o.RequestTimeout = time.Second
		o.Hub.QueueMaxBytes = 64 << 20
		o.MaxMessageSize = 64 << 10
	})
	id := b.handshake()
	b.subscribe(id, "/big")
	big := `"` + strings.Repeat("x", 60<<10) + `"`
	const n = 200 // 12 MB
	for range n {
		if _, err := b.s.hub.Publish(&Message{Channel: "/big", Data: []byte(big)}); err != nil {
			t.Fatal(err)
		}
	}
	// A connect from a client with a tiny receive window that does not read.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { setReceiveBuffer(fd, 4096) })
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(b.ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b.sendConnect(conn, id, 0)
	time.Sleep(2500 * time.Millisecond) // past request_timeout
	// Reading now gets what was written before the server gave up, then
	// the end: not the whole answer.
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(conn)
	if len(got) >= n*60<<10 || strings.Contains(string(got), `"channel":"/meta/connect"`) {
		t.Fatalf("the server wrote the whole answer (%d bytes) to a client that did not read", len(got))
	}
	// Nothing was lost: a connect that reads gets every message (on a busy
	// machine, a 12 MB answer may itself outlast request_timeout: cut, it
	// comes again).
	msgs := 0
	for i := 0; msgs < n && i < 10; i++ {
		r, err := b.tryPost(connectMsg(id, 0))
		if err != nil {
			t.Logf("connect %d: %v (the answer comes again)", i, err)
			continue
		}
		if r[len(r)-1]["successful"] != true {
			t.Fatalf("connect: %v", r[len(r)-1])
		}
		msgs += len(r) - 1
	}
	if msgs != n {
		t.Errorf("got %d messages, want %d", msgs, n)
	}
}

// A connection that drops while its connect is held loses nothing: the
// messages published meanwhile wait for the client's next connect.
func TestFaultNetworkDropWhileHeld(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.PollTimeout = 5 * time.Second })
	id := b.handshake()
	b.subscribe(id, "/drop")
	conn := b.rawConnect(id, -1)
	waitPolling(t, b.s, id)
	conn.Close() // the network goes
	deadline := time.Now().Add(5 * time.Second)
	for polling(b.s.hub, id) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := b.s.hub.Publish(&Message{Channel: "/drop", Data: []byte(`"kept"`)}); err != nil {
		t.Fatal(err)
	}
	r := b.post(connectMsg(id, 0))
	if len(r) != 2 || r[0]["data"] != "kept" {
		t.Errorf("after the drop: %v", r)
	}
}
