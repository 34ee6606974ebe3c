package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stardust-go/stardust/internal/takeover"
)

// The websocket transport: one socket carries one client's messages both
// ways. Replies are written as soon as a batch is processed; delivered
// messages are pushed as soon as they are queued; a /meta/connect is answered
// at the end of its hold, as over long-polling.

const wsWriteTimeout = 10 * time.Second

// wsReadBuffer is the read buffer of each socket (see newUpgrader).
const wsReadBuffer = 512

// newUpgrader returns the WebSocket upgrader, one for all connections. A
// held WebSocket costs memory for as long as the page stays open, so it
// keeps little while idle: a read buffer of wsReadBuffer bytes (a connect
// fits in it; a larger frame is read past it), in place of the 4 KiB one
// the HTTP server had for the connection, and no write buffer: frames are
// built for each write (transport_websocket_frame.go), and the pool only keeps
// gorilla/websocket from giving every connection a write buffer it would
// never use.
func (b *Bayeux) newUpgrader() *websocket.Upgrader {
	return &websocket.Upgrader{
		ReadBufferSize:  wsReadBuffer,
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

// wsSession is one WebSocket connection. It has one goroutine, its reader;
// deliveries are written by short-lived flushes (see transport_websocket_push.go).
type wsSession struct {
	b      *Bayeux
	conn   *websocket.Conn
	who    caller // the socket's owner: its address, browser cookie and id
	ctx    context.Context
	cancel context.CancelFunc

	pushSocket // writes data frames, one writer at a time (transport_websocket_frame.go)

	mu      sync.Mutex
	pending *pendingConnect
	timer   *time.Timer
	owned   map[string]bool // sessions bound to this socket (AttrSocket)
	// push delivers the messages of the client the latest connect named,
	// so that a client that handshakes again on the same socket (Faye does
	// after a 402) gets its messages pushed too.
	push   *pusher
	closed bool // the socket has ended: no push starts
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

// serveWebSocket upgrades the request and returns: the socket's reader
// goroutine serves it from then on.
func (b *Bayeux) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	ip := b.rules.clientIP(r)
	header := http.Header{}
	who := caller{remote: ip, transport: TransportWebSocket, socket: NewID(), req: r}
	var err error
	if who.browser, who.presented, err = b.rules.ensureBrowser(header, r, b.limits.base); err != nil {
		writeError(w, err)
		return
	}
	conn, err := b.upgrader.Upgrade(w, r, header)
	if err != nil {
		return // the upgrader has answered with an HTTP error
	}
	conn.SetReadLimit(b.rules.MaxBodyBytes)
	// The socket lives on after its request: no request deadline holds it
	// (each write has its own, wsWriteTimeout).
	_ = conn.NetConn().SetDeadline(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	who.ctx = ctx // the app is asked for as long as the socket lives, each call bounded by the Authenticator
	ws := &wsSession{b: b, conn: conn, who: who, ctx: ctx, cancel: cancel, owned: map[string]bool{}}
	b.hub.fallbacks.Add(takeover.UseWebSocket, ws.sock.Open(conn.NetConn(), wsWriteTimeout))
	// gorilla/websocket's answers to a ping and to a close go through
	// the socket's lock too.
	conn.SetPingHandler(func(data string) error {
		err := ws.control(websocket.PongMessage, []byte(data))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	conn.SetCloseHandler(func(code int, _ string) error {
		_ = ws.control(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""))
		return nil
	})
	if !b.sockets.add(b.hub, ws) {
		ws.goingAway()
		_ = conn.Close()
		cancel()
		return
	}
	go ws.serve()
}

// serve reads the socket until it ends, then lets go of what it held.
func (ws *wsSession) serve() {
	ws.readLoop()
	ws.cancel()
	_ = ws.conn.Close()
	ws.b.sockets.remove(ws)
	ws.mu.Lock()
	ws.closed = true
	p := ws.push
	ws.push = nil
	if ws.timer != nil {
		ws.timer.Stop()
	}
	ws.mu.Unlock()
	if p != nil {
		p.halt()
	}
	ws.unbindAll()
}

// shutdown answers the pending connect and closes the socket going away,
// when the hub closes.
func (ws *wsSession) shutdown() {
	ws.answerPendingNow(PollClosed)
	ws.goingAway()
	_ = ws.conn.Close()
}

// readLoop processes each frame as a batch until the socket closes, or
// until the client sends nothing for connect_timeout after the hold of the
// last connect it sent (see idleDeadline).
func (ws *wsSession) readLoop() {
	var pendingUntil time.Time // when the last pending connect's hold ends
	for {
		_ = ws.conn.NetConn().SetReadDeadline(ws.idleDeadline(pendingUntil))
		_, data, err := ws.conn.ReadMessage()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			ws.answerPendingNow(PollClosed)
			ws.close(websocket.CloseGoingAway, "idle timeout")
			return
		}
		if err != nil {
			return
		}
		batch, err := DecodeBayeux(data)
		if err != nil {
			ws.write([][]byte{(&bayeuxReply{Channel: "/meta/unsuccessful", Error: bayeuxError(err, "message")}).encode()})
			continue
		}
		replies, pending := ws.b.process(batch, ws.who)
		if pending != nil {
			pendingUntil = time.Now().Add(pending.timeout)
		}
		if pending != nil && pending.ack {
			ws.ackConnect(pending)
			pending = nil
		}
		if pending != nil {
			if immediate := ws.setPending(pending); immediate != nil {
				replies = append(replies, immediate)
			}
		}
		if disconnected(batch, replies) {
			// In order: the pending connect's reply, the disconnect reply, then
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

// idleDeadline is when a socket that has sent nothing since is closed:
// connect_timeout after the later of now and the end of the hold of the
// connect it last sent, as a long-polling client that stops connecting is
// removed after connect_timeout. A Bayeux client sends its next connect as
// soon as one is answered, so only a socket that is no longer used (or
// never was) reaches it; pings do not count.
func (ws *wsSession) idleDeadline(pendingUntil time.Time) time.Time {
	return later(time.Now(), pendingUntil).Add(ws.b.opts.ConnectTimeout)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
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

// setPending makes h the pending connect. A connect that was pending is
// answered now; h itself is answered at once when its hold is zero (it is then
// returned), else when its timer fires.
func (ws *wsSession) setPending(h *pendingConnect) []byte {
	ws.b.noteTransport(h.client, TransportWebSocket)
	ws.bind(h.client)
	ws.pushTo(h.client)
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.pending != nil {
		ws.timer.Stop()
		old := ws.pending
		ws.pending = nil
		go ws.write([][]byte{ws.b.connectReply(old, PollReplaced, 0)})
	}
	if h.timeout <= 0 {
		return ws.b.connectReply(h, PollTimeout, 0)
	}
	ws.pending = h
	ws.timer = time.AfterFunc(h.timeout, func() { ws.answerPending(h, PollTimeout) })
	return nil
}

// ackConnect holds the connect of a client of the ack extension as long
// polling does: its messages come in the connect reply, with their batch
// number, never pushed on their own, and stay queued until the client's
// next connect acknowledges them.
func (ws *wsSession) ackConnect(h *pendingConnect) {
	ws.b.noteTransport(h.client, TransportWebSocket)
	go func() { // ends with the socket (ctx) at the latest
		msgs, cursor, why := ws.b.poll(ws.ctx, h.client, h.timeout)
		ws.write(append(msgs, ws.b.connectReply(h, why, cursor)))
	}()
}

// answerPending answers the pending connect if it is still h. The socket's
// writer is taken before the connect is let go, so that what the reader
// writes after seeing no pending connect (a disconnect's reply) comes after
// this answer.
func (ws *wsSession) answerPending(h *pendingConnect, why PollEnd) {
	ws.mu.Lock()
	if ws.pending != h {
		ws.mu.Unlock()
		return
	}
	ws.pending = nil
	ws.sock.Lock()
	ws.mu.Unlock()
	defer ws.sock.Unlock()
	ws.writeFrameLocked(wsFrameOf([][]byte{ws.b.connectReply(h, why, 0)}))
}

// pushTo makes c the client whose messages the socket pushes, unless it
// is already (a client connects again and again on its socket).
func (ws *wsSession) pushTo(c *Client) {
	ws.mu.Lock()
	old := ws.push
	if ws.closed || (old != nil && old.c.ID() == c.ID() && old.live()) {
		ws.mu.Unlock()
		return
	}
	ws.push = nil
	ws.mu.Unlock()
	if old != nil {
		old.halt()
	}
	p := c.startPush(ws) // outside ws.mu: it may end at once (pushEnded)
	ws.mu.Lock()
	if ws.closed || ws.push != nil {
		ws.mu.Unlock()
		p.halt()
		return
	}
	ws.push = p
	ws.mu.Unlock()
	p.kick() // messages queued before the watch began
}

// pushEnded is called once when p's client is removed, expires, polls
// elsewhere or cannot be read: the pending connect is answered with why.
func (ws *wsSession) pushEnded(p *pusher, why PollEnd) {
	p.stop()
	ws.mu.Lock()
	if ws.push == p {
		ws.push = nil
	}
	h := ws.pending
	ws.mu.Unlock()
	if h != nil && h.client.ID() == p.c.ID() {
		ws.answerPending(h, why)
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

// close sends a close frame; the socket's end closes the connection.
func (ws *wsSession) close(code int, text string) {
	_ = ws.control(websocket.CloseMessage, websocket.FormatCloseMessage(code, text))
}
