package floor

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The WebSocket floor: the least a server can do for Bayeux subscribers that
// hold one WebSocket each. At {base}/bayeux a WebSocket client may
// handshake, subscribe to exact channel names and connect (held for the
// hold, then answered); a POST of a long-polling batch may handshake and
// publish. A publish encodes its message once and writes it, as one frame,
// to every socket subscribed to the channel, from the publisher's request:
// one write per delivery and nothing else, which is the bound a real
// server's WebSocket transport is measured against. No meta channel but
// those, no wildcards, no validation beyond JSON, no extension.

// wsWriteTimeout bounds one frame's write to a socket.
const wsWriteTimeout = 10 * time.Second

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	CheckOrigin:     func(*http.Request) bool { return true },
}

// bayeuxMsg is the part of a Bayeux message the floor reads.
type bayeuxMsg struct {
	Channel      string          `json:"channel"`
	ClientID     string          `json:"clientId,omitempty"`
	ID           string          `json:"id,omitempty"`
	Subscription string          `json:"subscription,omitempty"`
	Data         json.RawMessage `json:"data,omitempty"`
}

// bayeuxReply is a meta or publish reply.
type bayeuxReply struct {
	Channel                  string   `json:"channel"`
	Successful               bool     `json:"successful"`
	ID                       string   `json:"id,omitempty"`
	ClientID                 string   `json:"clientId,omitempty"`
	Version                  string   `json:"version,omitempty"`
	SupportedConnectionTypes []string `json:"supportedConnectionTypes,omitempty"`
	Subscription             string   `json:"subscription,omitempty"`
	Error                    string   `json:"error,omitempty"`
	Advice                   any      `json:"advice,omitempty"`
}

// socket is one subscriber's WebSocket.
type socket struct {
	mu      sync.Mutex // one writer at a time
	conn    *websocket.Conn
	pending *time.Timer // the held connect's answer
}

func (s *socket) write(pm *websocket.PreparedMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	return s.conn.WritePreparedMessage(pm)
}

func (s *socket) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	return s.conn.WriteMessage(websocket.TextMessage, b)
}

func newClientID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func handshakeReply(m bayeuxMsg) bayeuxReply {
	return bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID, ClientID: newClientID(),
		Version: "1.0", SupportedConnectionTypes: []string{"websocket", "long-polling"}}
}

// bayeux serves {base}/bayeux: a WebSocket upgrade, or a POSTed batch.
func (h *Handler) bayeux(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		h.serveSocket(w, r)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST a batch or upgrade to a WebSocket", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var batch []bayeuxMsg
	if err := json.Unmarshal(body, &batch); err != nil {
		http.Error(w, "want a JSON array of Bayeux messages", http.StatusBadRequest)
		return
	}
	replies := make([]bayeuxReply, 0, len(batch))
	for _, m := range batch {
		switch m.Channel {
		case "/meta/handshake":
			replies = append(replies, handshakeReply(m))
		case "/meta/connect", "/meta/subscribe", "/meta/unsubscribe", "/meta/disconnect":
			replies = append(replies, bayeuxReply{Channel: m.Channel, ID: m.ID, ClientID: m.ClientID,
				Error: "402::the floor serves these over WebSocket only"})
		default:
			h.fanOut(m)
			replies = append(replies, bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID})
		}
	}
	out, _ := json.Marshal(replies)
	writeJSON(w, out)
}

// fanOut writes m, encoded once, to every socket subscribed to its channel.
func (h *Handler) fanOut(m bayeuxMsg) {
	frame, err := json.Marshal([]bayeuxMsg{{Channel: m.Channel, ID: m.ID, Data: m.Data}})
	if err != nil {
		return
	}
	pm, err := websocket.NewPreparedMessage(websocket.TextMessage, frame)
	if err != nil {
		return
	}
	h.mu.Lock()
	subs := h.sockets[m.Channel]
	targets := make([]*socket, 0, len(subs))
	for s := range subs {
		targets = append(targets, s)
	}
	h.mu.Unlock()
	for _, s := range targets {
		if s.write(pm) != nil {
			_ = s.conn.Close() // its read loop then unsubscribes it
		}
	}
}

// serveSocket answers one WebSocket's batches until it closes.
func (h *Handler) serveSocket(w http.ResponseWriter, r *http.Request) {
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s := &socket{conn: conn}
	var subscribed []string
	defer func() {
		h.mu.Lock()
		for _, name := range subscribed {
			delete(h.sockets[name], s)
			if len(h.sockets[name]) == 0 {
				delete(h.sockets, name)
			}
		}
		h.mu.Unlock()
		s.mu.Lock()
		if s.pending != nil {
			s.pending.Stop()
		}
		s.mu.Unlock()
		_ = conn.Close()
	}()
	conn.SetReadLimit(1 << 20)
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var batch []bayeuxMsg
		if err := json.Unmarshal(data, &batch); err != nil {
			return
		}
		var replies []bayeuxReply
		for _, m := range batch {
			switch m.Channel {
			case "/meta/handshake":
				replies = append(replies, handshakeReply(m))
			case "/meta/subscribe":
				h.mu.Lock()
				if h.sockets[m.Subscription] == nil {
					h.sockets[m.Subscription] = map[*socket]bool{}
				}
				h.sockets[m.Subscription][s] = true
				h.mu.Unlock()
				subscribed = append(subscribed, m.Subscription)
				replies = append(replies, bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID,
					ClientID: m.ClientID, Subscription: m.Subscription})
			case "/meta/connect":
				reply := bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID, ClientID: m.ClientID}
				s.mu.Lock()
				if s.pending != nil {
					s.pending.Stop()
				}
				s.pending = time.AfterFunc(h.hold, func() { _ = s.writeJSON([]bayeuxReply{reply}) })
				s.mu.Unlock()
			default:
				h.fanOut(m)
				replies = append(replies, bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID})
			}
		}
		if len(replies) > 0 && s.writeJSON(replies) != nil {
			return
		}
	}
}
