package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestBayeuxWebSocket(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true})
	id := b.handshake("websocket")
	ws := b.dialWS()
	ws.send(wsConnect(id, 0))
	if r := ws.read(); r[0]["channel"] != "/meta/connect" || r[0]["successful"] != true {
		t.Fatalf("first connect %v", r)
	}
	ws.send(map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/w/*", "id": "s"},
		wsConnect(id, -1))
	if r := ws.read(); len(r) != 1 || r[0]["channel"] != "/meta/subscribe" {
		t.Fatalf("subscribe reply %v", r)
	}
	// A message published from elsewhere is pushed at once, while the connect is held.
	postForm(t, b.ts.URL+"/comet/channel/x", `{"n":1}`)
	other := b.handshake()
	b.post(map[string]any{"channel": "/w/1", "clientId": other, "data": "pushed"})
	if r := ws.read(); len(r) != 1 || r[0]["data"] != "pushed" {
		t.Fatalf("push %v", r)
	}
	// Shutdown answers the held connect and closes the socket going away.
	b.s.Close()
	r := ws.read()
	if r[0]["channel"] != "/meta/connect" || r[0]["successful"] != true {
		t.Fatalf("connect on shutdown %v", r)
	}
	if err := ws.closedWith(websocket.CloseGoingAway); err != nil {
		t.Error(err)
	}
}

// wsPeer is a raw WebSocket Bayeux peer for the transport tests.
type wsPeer struct {
	t    *testing.T
	conn *websocket.Conn
}

func (b *bx) dialWS() *wsPeer {
	b.t.Helper()
	// The same "browser" as the HTTP requests: its cookie goes with the upgrade.
	d := *websocket.DefaultDialer
	d.Jar = b.hc.Jar
	conn, _, err := d.Dial("ws"+strings.TrimPrefix(b.url, "http"), nil)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { conn.Close() })
	return &wsPeer{t: b.t, conn: conn}
}

func (p *wsPeer) send(msgs ...map[string]any) {
	p.t.Helper()
	if err := p.conn.WriteJSON(msgs); err != nil {
		p.t.Fatal(err)
	}
}

func (p *wsPeer) read() []map[string]any {
	p.t.Helper()
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var out []map[string]any
	if err := p.conn.ReadJSON(&out); err != nil {
		p.t.Fatal(err)
	}
	return out
}

// closedWith reads the peer's next frame, which must be a close with code.
func (p *wsPeer) closedWith(code int) error {
	_ = p.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _, err := p.conn.ReadMessage()
	if websocket.IsCloseError(err, code) {
		return nil
	}
	return fmt.Errorf("want close %d, got %v", code, err)
}

// heldOverWS handshakes a client and holds its connect over a new socket.
func (b *bx) heldOverWS() (*wsPeer, string) {
	b.t.Helper()
	ws := b.dialWS()
	id := b.handshake("websocket")
	ws.send(wsConnect(id, -1))
	waitPolling(b.t, b.s, id)
	return ws, id
}

// wsConnect is a websocket /meta/connect; timeout as in connectMsg.
func wsConnect(id string, timeout int) map[string]any {
	m := connectMsg(id, timeout)
	m["connectionType"] = "websocket"
	return m
}

func TestBayeuxWebSocketDisconnect(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true})
	ws, id := b.heldOverWS()
	ws.send(map[string]any{"channel": "/meta/disconnect", "clientId": id, "id": "bye"})
	var gotConnect, gotDisconnect bool
	for !(gotConnect && gotDisconnect) {
		for _, m := range ws.read() {
			switch m["channel"] {
			case "/meta/connect":
				adv, _ := m["advice"].(map[string]any)
				if m["successful"] != true || adv["reconnect"] != "none" {
					t.Errorf("connect reply on disconnect: %v", m)
				}
				gotConnect = true
			case "/meta/disconnect":
				if m["successful"] != true || m["id"] != "bye" {
					t.Errorf("disconnect reply %v", m)
				}
				gotDisconnect = true
			}
		}
	}
	if err := ws.closedWith(websocket.CloseNormalClosure); err != nil {
		t.Errorf("after the disconnect reply: %v", err)
	}
}

func TestBayeuxWebSocketRehandshake(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true})
	ws, id := b.heldOverWS()
	// The server forgets the client (as after a restart of its node): the
	// held connect says 402 with advice to handshake.
	b.s.Hub().Engine().(*MemoryEngine).expire(id)
	wantError(t, ws.read()[0], "402:")
	// A new session on the same socket gets its messages pushed.
	id2 := b.handshake("websocket")
	b.subscribe(id2, "/again")
	ws.send(wsConnect(id2, -1))
	waitPolling(t, b.s, id2)
	// (id2 is now bound to the socket: another client publishes.)
	b.post(map[string]any{"channel": "/again", "clientId": b.handshake(), "data": "back"})
	if r := ws.read(); len(r) != 1 || r[0]["data"] != "back" {
		t.Fatalf("after re-handshake on the same socket: %v", r)
	}
}

func TestOriginRules(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true}, func(o *Options) { o.CORSOrigins = []string{"https://app.example"} })
	// CORS: a preflight and a request from the allowed origin, none for others.
	for _, tt := range []struct {
		method, origin, allow string
	}{
		{"OPTIONS", "https://app.example", "https://app.example"},
		{"GET", "https://app.example", "https://app.example"},
		{"GET", "https://evil.example", ""},
	} {
		req, _ := http.NewRequest(tt.method, b.ts.URL+"/comet/channel", nil)
		req.Header.Set("Origin", tt.origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.allow {
			t.Errorf("%s from %s: Allow-Origin %q, want %q", tt.method, tt.origin, got, tt.allow)
		}
		if tt.method == "OPTIONS" && (resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Methods") == "") {
			t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
	}
	// WebSocket: no Origin (non-browser), the same host, and cors_origins are
	// accepted; another site's page is refused.
	u := "ws" + strings.TrimPrefix(b.url, "http")
	for origin, ok := range map[string]bool{
		"": true,
		"http://" + b.ts.Listener.Addr().String(): true,
		"https://app.example":                     true,
		"https://evil.example":                    false,
	} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		conn, resp, err := websocket.DefaultDialer.Dial(u, h)
		if conn != nil {
			conn.Close()
		}
		if (err == nil) != ok {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Errorf("WebSocket from origin %q: err %v (status %d), want accepted=%v", origin, err, status, ok)
		}
	}
}

// Issue 17, point 7: a socket that sends nothing is closed once
// connect_timeout has passed (after the hold of a connect it holds, if any),
// as a long-polling client that stopped connecting is removed; before, it
// stayed open for ever.
func TestBayeuxWebSocketIdleCut(t *testing.T) {
	const connectTimeout = 500 * time.Millisecond
	b := newBX(t, BayeuxOptions{WebSocket: true, ConnectTimeout: connectTimeout})
	start := time.Now() // before the dial: the server's wait begins with the upgrade
	silent := b.dialWS()
	_ = silent.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := silent.conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("a silent socket: %v after %v, want a close (going away)", err, time.Since(start))
	}
	if took := time.Since(start); took < connectTimeout || took > connectTimeout+3*time.Second {
		t.Errorf("a silent socket closed after %v, want about %v", took, connectTimeout)
	}
	// A socket whose connect is held (2s, newBX's poll timeout) is not cut
	// during the hold, only connect_timeout after it if nothing follows.
	ws := b.dialWS()
	id := b.handshake("websocket")
	ws.send(wsConnect(id, 0))
	ws.read()
	ws.send(wsConnect(id, -1))
	start = time.Now()
	if r := ws.read(); r[0]["channel"] != "/meta/connect" || r[0]["successful"] != true {
		t.Fatalf("held connect: %v", r)
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Fatalf("the held connect answered after %v, want its 2s hold", took)
	}
	if err := ws.closedWith(websocket.CloseGoingAway); err != nil {
		t.Errorf("after the hold and connect_timeout of silence: %v", err)
	}
}
