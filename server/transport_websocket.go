package server

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The websocket transport: one socket carries one client's messages both
// ways. Replies are written as soon as a batch is processed; delivered
// messages are pushed as soon as they are queued; a /meta/connect is answered
// at the end of its hold, as over long-polling.

const wsWriteTimeout = 10 * time.Second

// newUpgrader returns the WebSocket upgrader, one for all connections. A
// held WebSocket costs memory for as long as the page stays open, so it
// keeps no buffer of its own while idle: reads use the buffer the HTTP
// server already had for the connection, and writes borrow one from a pool
// shared by every connection for the time of one write.
func (b *Bayeux) newUpgrader() *websocket.Upgrader {
	return &websocket.Upgrader{
		ReadBufferSize:  0, // the HTTP server's own, taken over with the connection
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     b.checkOrigin,
	}
}

// checkOrigin accepts clients that send no Origin (non-browser clients), the
// same host, and the configured CORS origins.
func (b *Bayeux) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if b.rules.corsAllowed(origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	host := r.Host
	if fwd := r.Header.Get("X-Forwarded-Host"); fwd != "" && isTrusted(peerAddr(r), b.rules.TrustedProxies) {
		host = fwd
	}
	return u.Host == host
}

// wsSession is one WebSocket connection.
type wsSession struct {
	b      *Bayeux
	conn   *websocket.Conn
	who    caller // the socket's owner: its address, browser cookie and id
	ctx    context.Context
	cancel context.CancelFunc

	writeMu sync.Mutex // gorilla/websocket allows one writer at a time

	// bound carries the client of each connect to the push loop (capacity
	// 1, latest wins), so that a client that handshakes again on the same
	// socket (Faye does after a 402) gets its messages pushed too.
	bound chan *Client
	acks  sync.WaitGroup // connects of ack-extension clients being held

	mu      sync.Mutex
	pending *heldConnect
	timer   *time.Timer
	owned   map[string]bool // sessions bound to this socket (AttrSocket)
}

// bind binds the session of a connect to this socket for the socket's life.
func (ws *wsSession) bind(c *Client) {
	if c.Attr(AttrSocket) == "" {
		if err := c.SetAttr(AttrSocket, ws.who.socket); err != nil {
			ws.b.log.WithError(err).Debug("binding a session to its socket")
		}
	}
	ws.mu.Lock()
	ws.owned[c.ID()] = true
	ws.mu.Unlock()
}

// unbindAll frees the sessions bound to this socket when it closes, so that
// their client may go on over another transport.
func (ws *wsSession) unbindAll() {
	ws.mu.Lock()
	ids := make([]string, 0, len(ws.owned))
	for id := range ws.owned {
		ids = append(ids, id)
	}
	ws.mu.Unlock()
	for _, id := range ids {
		c, err := ws.b.hub.Client(id)
		if err == nil && c.Attr(AttrSocket) == ws.who.socket {
			_ = c.SetAttr(AttrSocket, "")
		}
	}
}

func (b *Bayeux) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	ip := b.rules.clientIP(r)
	header := http.Header{}
	who := caller{remote: ip, transport: TransportWebSocket, socket: NewID()}
	who.browser, who.presented = b.rules.ensureBrowser(header, r, b.limits.base)
	conn, err := b.upgrader.Upgrade(w, r, header)
	if err != nil {
		return // the upgrader has answered with an HTTP error
	}
	conn.SetReadLimit(b.rules.MaxBodyBytes)
	// The socket lives on after its request: no request deadline holds it
	// (each write has its own, wsWriteTimeout).
	_ = conn.NetConn().SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	ws := &wsSession{b: b, conn: conn, who: who, ctx: ctx, cancel: cancel,
		bound: make(chan *Client, 1), owned: map[string]bool{}}
	defer ws.unbindAll()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		ws.readLoop()
	}()
	ws.pushLoop()
	cancel()
	_ = conn.Close()
	wg.Wait()
	ws.acks.Wait() // their polls end with ctx
	ws.mu.Lock()
	if ws.timer != nil {
		ws.timer.Stop()
	}
	ws.mu.Unlock()
}

// readLoop processes each frame as a batch until the socket closes.
func (ws *wsSession) readLoop() {
	for {
		_, data, err := ws.conn.ReadMessage()
		if err != nil {
			return
		}
		batch, err := DecodeBayeux(data)
		if err != nil {
			ws.write([][]byte{(&bayeuxReply{Channel: "/meta/unsuccessful", Error: bayeuxError(err, "message")}).encode()})
			continue
		}
		replies, held := ws.b.process(batch, ws.who)
		if held != nil && held.ack {
			ws.ackConnect(held)
			held = nil
		}
		if held != nil {
			if immediate := ws.holdConnect(held); immediate != nil {
				replies = append(replies, immediate)
			}
		}
		if disconnected(batch, replies) {
			// In order: the held connect's reply, the disconnect reply, then
			// a normal close, which CometD's client waits for.
			ws.answerPendingNow(PollClosed)
			ws.write(replies)
			ws.close(websocket.CloseNormalClosure, "disconnected")
			return
		}
		if len(replies) > 0 && !ws.write(replies) {
			return
		}
	}
}

// disconnected reports whether the batch held a successful /meta/disconnect.
func disconnected(batch []*BayeuxMessage, replies [][]byte) bool {
	for _, m := range batch {
		if m.Channel == "/meta/disconnect" {
			for _, r := range replies {
				if bytes.HasPrefix(r, []byte(`{"channel":"/meta/disconnect","successful":true`)) {
					return true
				}
			}
		}
	}
	return false
}

// holdConnect makes h the pending connect. A connect that was pending is
// answered now; h itself is answered at once when its hold is zero (it is then
// returned), else when its timer fires.
func (ws *wsSession) holdConnect(h *heldConnect) []byte {
	ws.b.noteTransport(h.client, TransportWebSocket)
	ws.bind(h.client)
	select {
	case <-ws.bound: // an older client not yet picked up
	default:
	}
	ws.bound <- h.client
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.pending != nil {
		ws.timer.Stop()
		old := ws.pending
		ws.pending = nil
		go ws.write([][]byte{ws.b.connectReply(old, PollReplaced, 0)})
	}
	if h.hold <= 0 {
		return ws.b.connectReply(h, PollTimeout, 0)
	}
	ws.pending = h
	ws.timer = time.AfterFunc(h.hold, func() { ws.answerPending(h, PollTimeout) })
	return nil
}

// answerPending answers the pending connect if it is still h.
// ackConnect holds the connect of a client of the ack extension as long
// polling does: its messages come in the connect reply, with their batch
// number, never pushed on their own, and stay queued until the client's
// next connect acknowledges them.
func (ws *wsSession) ackConnect(h *heldConnect) {
	ws.b.noteTransport(h.client, TransportWebSocket)
	ws.acks.Add(1)
	go func() {
		defer ws.acks.Done()
		msgs, cursor, why := ws.b.poll(ws.ctx, h.client, h.hold)
		ws.write(append(msgs, ws.b.connectReply(h, why, cursor)))
	}()
}

func (ws *wsSession) answerPending(h *heldConnect, why PollEnd) {
	ws.mu.Lock()
	if ws.pending != h {
		ws.mu.Unlock()
		return
	}
	ws.pending = nil
	ws.mu.Unlock()
	ws.write([][]byte{ws.b.connectReply(h, why, 0)})
}

// pushLoop delivers the messages of the client the latest connect named, as
// they are queued, until the socket ends or the server closes.
func (ws *wsSession) pushLoop() {
	for {
		select {
		case c := <-ws.bound:
			if !ws.push(c) {
				return
			}
		case <-ws.ctx.Done():
			return
		case <-ws.b.hub.Done():
			ws.goingAway()
			return
		}
	}
}

// push delivers c's messages until c is removed or polls elsewhere (then it
// reports true: the socket stays open for the peer's next words, the
// disconnect reply above all) or the socket or server ends (false).
func (ws *wsSession) push(c *Client) bool {
	for {
		out, cursor, why := ws.b.poll(ws.ctx, c, time.Minute)
		if len(out) > 0 {
			if !ws.write(out) {
				return false
			}
			c.Commit(cursor)
		}
		if why != PollReady && why != PollTimeout {
			ws.answerPendingNow(why)
			if ws.b.hub.Closed() {
				ws.goingAway()
				return false
			}
			return ws.ctx.Err() == nil
		}
	}
}

func (ws *wsSession) answerPendingNow(why PollEnd) {
	ws.mu.Lock()
	h := ws.pending
	ws.mu.Unlock()
	if h != nil {
		ws.answerPending(h, why)
	}
}

func (ws *wsSession) goingAway() { ws.close(websocket.CloseGoingAway, "server shutting down") }

// close sends a close frame; the handler then closes the connection.
func (ws *wsSession) close(code int, text string) {
	ws.writeMu.Lock()
	defer ws.writeMu.Unlock()
	msg := websocket.FormatCloseMessage(code, text)
	_ = ws.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
}

// write sends items as one JSON array frame; it reports false on failure.
func (ws *wsSession) write(items [][]byte) bool {
	ws.writeMu.Lock()
	defer ws.writeMu.Unlock()
	_ = ws.conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	if err := ws.conn.WriteMessage(websocket.TextMessage, jsonArray(items)); err != nil {
		ws.cancel()
		return false
	}
	return true
}
