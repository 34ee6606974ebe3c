package server

import (
	"encoding/json"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// subscribedOverWS handshakes a client, subscribes it to channel and holds
// its connect over a new socket.
func (b *bx) subscribedOverWS(channel string) (*wsPeer, string) {
	b.t.Helper()
	ws := b.dialWS()
	id := b.handshake("websocket")
	b.subscribe(id, channel)
	ws.send(wsConnect(id, -1))
	waitPolling(b.t, b.s, id)
	return ws, id
}

// publishHere publishes data on channel in process.
func (b *bx) publishHere(channel string, data any) {
	b.t.Helper()
	raw, _ := json.Marshal(data)
	if _, err := b.s.Hub().Publish(&Message{Channel: channel, Data: raw}); err != nil {
		b.t.Fatal(err)
	}
}

// A held WebSocket costs one goroutine, its reader: deliveries are written
// by flushes that end when nothing is left to write.
func TestWebSocketOneGoroutinePerSocket(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true})
	settle := func() int {
		time.Sleep(100 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	b.subscribedOverWS("/warm") // lazily started state counts in the baseline
	before := settle()
	const n = 40
	peers := make([]*wsPeer, n)
	for i := range peers {
		peers[i], _ = b.subscribedOverWS("/g")
	}
	// Deliveries come and go without leaving goroutines behind.
	b.publishHere("/g", "x")
	for _, p := range peers {
		if r := p.read(); len(r) != 1 || r[0]["data"] != "x" {
			t.Fatalf("push %v", r)
		}
	}
	// The test's own side of a socket has no goroutine: each socket
	// counts for the server's reader only (two per socket before).
	if got := settle() - before; got > n+n/4 {
		t.Errorf("%d held sockets: %d more goroutines, want about %d", n, got, n)
	}
}

// A socket that keeps receiving has its messages gathered into one frame
// for at most the batch delay; an idle one gets its message at once.
func TestWebSocketBatchesBusySocket(t *testing.T) {
	const delay = 2 * time.Second
	b := newBX(t, BayeuxOptions{WebSocket: true}, func(o *Options) {
		o.Hub.BatchDelay = delay
		o.PollTimeout = 30 * time.Second // no connect reply in between
	})
	ws, _ := b.subscribedOverWS("/b")
	start := time.Now()
	b.publishHere("/b", 0)
	if r := ws.read(); len(r) != 1 || r[0]["data"] != 0.0 {
		t.Fatalf("first push %v", r)
	}
	if took := time.Since(start); took > delay*3/4 {
		t.Errorf("an idle socket's message took %v (batch delay %v)", took, delay)
	}
	// Busy now: the next messages wait for the batch timer, together.
	start = time.Now()
	for i := 1; i <= 5; i++ {
		b.publishHere("/b", i)
	}
	r := ws.read()
	took := time.Since(start)
	if len(r) != 5 || r[0]["data"] != 1.0 || r[4]["data"] != 5.0 {
		t.Fatalf("want messages 1 to 5 in one frame, got %v", r)
	}
	if took < delay*9/10 || took > delay+3*time.Second {
		t.Errorf("batched frame after %v, want about the batch delay %v", took, delay)
	}
	// Idle again (nothing written for longer than busyWindow): at once.
	time.Sleep(2 * busyWindow)
	start = time.Now()
	b.publishHere("/b", 6)
	if r := ws.read(); len(r) != 1 || r[0]["data"] != 6.0 {
		t.Fatalf("push after idle %v", r)
	}
	if took := time.Since(start); took > delay*3/4 {
		t.Errorf("an idle socket's message took %v (batch delay %v)", took, delay)
	}
}

// A poll of the socket's client elsewhere ends the socket's pushing (its
// held connect is answered) and takes the messages; the client's next
// connect on the socket brings the pushing back.
func TestWebSocketPushReplaced(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true})
	ws, id := b.subscribedOverWS("/r")
	c, err := b.s.Hub().Client(id)
	if err != nil {
		t.Fatal(err)
	}
	got := pollAsync(c, 5*time.Second)
	r := ws.read()
	if r[0]["channel"] != "/meta/connect" || r[0]["successful"] != true {
		t.Fatalf("held connect on replacement: %v", r)
	}
	b.publishHere("/r", "elsewhere")
	select {
	case p := <-got:
		if p.why != PollReady || len(p.batch.Messages) != 1 || string(p.batch.Messages[0].Data) != `"elsewhere"` {
			t.Fatalf("replacing poll got %v %v", p.why, p.batch.Messages)
		}
		c.Commit(p.batch.Cursor)
	case <-time.After(5 * time.Second):
		t.Fatal("replacing poll never answered")
	}
	ws.send(wsConnect(id, -1))
	waitPolling(t, b.s, id)
	b.publishHere("/r", "back")
	if r := ws.read(); len(r) != 1 || r[0]["data"] != "back" {
		t.Fatalf("after connecting again on the socket: %v", r)
	}
}

// A socket whose peer reads nothing blocks its own writes only: the other
// sockets keep getting their messages.
func TestWebSocketSlowReaderDelaysNoOther(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true}, func(o *Options) {
		o.Hub.QueueMaxBytes = 64 << 20
		o.Hub.QueueMaxMessages = 10000
	})
	slow, slowID := b.subscribedOverWS("/s")
	if tc, ok := slow.conn.NetConn().(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	fast, _ := b.subscribedOverWS("/s")
	// Fill the slow socket's buffers until a write to it stays blocked.
	big := strings.Repeat("x", 256<<10)
	blocked := func() bool {
		return writerStuck(func() tryLocker {
			if ws := findSocket(&b.s.bayeux.sockets, slowID); ws != nil {
				return &ws.sock
			}
			return nil
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for !blocked() {
		if time.Now().After(deadline) {
			t.Fatal("writes to a socket that reads nothing never blocked")
		}
		b.publishHere("/s", big)
		// The fast peer reads everything.
		_ = fast.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := fast.conn.ReadMessage(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	b.publishHere("/s", "small")
	for {
		r := fast.read()
		if r[len(r)-1]["data"] == "small" {
			break
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a blocked socket delayed another by %v", took)
	}
	if !blocked() {
		t.Error("the slow socket's write ended meanwhile: the test proved nothing")
	}
}

// findSocket returns the open socket bound to client id, for tests.
func findSocket(s *openSet[*wsSession], id string) *wsSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ws := range s.open {
		ws.mu.Lock()
		owned := ws.owned[id]
		ws.mu.Unlock()
		if owned {
			return ws
		}
	}
	return nil
}

// Frames are built here, not by gorilla/websocket: every payload length
// form (7 bits, 16 bits, 64 bits) reads back whole.
func TestWebSocketFrameSizes(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true})
	ws, id := b.subscribedOverWS("/f")
	overhead := len(`[{"channel":"/f","data":""}]`)
	for _, size := range []int{0, 125, 126, 127, 65535, 65536, 200000} {
		data := strings.Repeat("y", max(0, size-overhead))
		b.publishHere("/f", data)
		_ = ws.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, frame, err := ws.conn.ReadMessage()
		if err != nil {
			t.Fatalf("frame of %d bytes: %v", size, err)
		}
		var r []map[string]any
		if err := json.Unmarshal(frame, &r); err != nil || len(r) != 1 || r[0]["data"] != data {
			t.Fatalf("frame of %d bytes read back as %d bytes: %.80s (%v)", size, len(frame), frame, err)
		}
	}
	// Several messages in one frame, and the replies, are frames too.
	b.publishHere("/f", 1)
	b.publishHere("/f", 2)
	got := 0
	for got < 2 {
		got += len(ws.read())
	}
	ws.send(map[string]any{"channel": "/meta/subscribe", "clientId": "nobody", "subscription": "/x", "id": "s"})
	if r := ws.read(); r[0]["successful"] != false || r[0]["id"] != "s" {
		t.Errorf("reply %v", r)
	}
	// A frame from the peer far larger than the socket's read buffer.
	big := strings.Repeat("z", 20*wsReadBuffer)
	ws.send(map[string]any{"channel": "/f", "clientId": id, "data": big, "id": "big"})
	var replied, delivered bool
	for !(replied && delivered) {
		for _, m := range ws.read() {
			replied = replied || (m["id"] == "big" && m["successful"] == true)
			delivered = delivered || m["data"] == big
		}
	}
}

// A client of the ack extension gets its messages in connect replies over
// a WebSocket too, each batch numbered, never pushed on their own.
func TestWebSocketAckExtension(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true}, func(o *Options) { o.PollTimeout = 30 * time.Second })
	ws := b.dialWS()
	r := b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"websocket"}, "ext": map[string]any{"ack": true}})
	id := r[0]["clientId"].(string)
	b.subscribe(id, "/ack")
	first := wsConnect(id, -1)
	first["ext"] = map[string]any{"ack": -1}
	ws.send(first)
	if r := ws.read(); r[0]["successful"] != true {
		t.Fatalf("the first connect, answered at once: %v", r)
	}
	connect := wsConnect(id, -1)
	connect["ext"] = map[string]any{"ack": -1}
	ws.send(connect)
	waitPolling(t, b.s, id)
	b.publishHere("/ack", "a")
	got := ws.read()
	if len(got) != 2 || got[0]["data"] != "a" || got[1]["channel"] != "/meta/connect" {
		t.Fatalf("want the message then the connect reply in one frame, got %v", got)
	}
	if ext, _ := got[1]["ext"].(map[string]any); ext["ack"] == nil {
		t.Errorf("connect reply without its batch number: %v", got[1])
	}
}
