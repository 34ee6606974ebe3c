package server

import (
	"bytes"
	"time"

	"github.com/stardust-go/stardust/internal/takeover"
)

// Writing WebSocket frames. Data frames are written by this file, not by
// gorilla/websocket: a frame is built once (a message alone in a frame is
// built once per publish, header included, and shared by every socket) and
// written with one system call that never blocks, so that one goroutine can
// write to many sockets in turn; what a full socket did not take is written
// by a goroutine of its own, with a deadline. Every write to a socket,
// gorilla's control frames included (see wsSession.control), happens under
// the socket's lock (takeover.Socket).

// wsFrameOf is a text frame carrying items (encoded JSON) as one array.
func wsFrameOf(items [][]byte) []byte {
	return takeover.SealTextFrame(appendJSONArray(takeover.NewTextFrame(jsonArrayLen(items)), items))
}

// wsMessagesFrame is a frame carrying msgs in their Bayeux form.
func wsMessagesFrame(msgs []*Message) []byte {
	if len(msgs) == 1 {
		return wsFrame(msgs[0])
	}
	items := make([][]byte, len(msgs))
	for i, m := range msgs {
		items[i] = bayeuxJSON(m)
	}
	return wsFrameOf(items)
}

// bayeuxJSON is the message as Bayeux clients receive it.
func bayeuxJSON(m *Message) []byte {
	f := bayeuxFrame(m)
	return f[1 : len(f)-1 : len(f)-1]
}

// bayeuxFrame is the message alone in a Bayeux array.
func bayeuxFrame(m *Message) []byte { return takeover.FramePayload(wsFrame(m)) }

// encodingWebSocket is the slot of a message's encodings (Message.encoded)
// that holds its WebSocket frame.
const encodingWebSocket encodingKind = 1

// wsFrame is bayeuxFrame as a whole WebSocket text frame, header included:
// encoded once per publish (Message.encoded) and written as it is to every
// socket that gets the message alone.
func wsFrame(m *Message) []byte { return m.encoded(encodingWebSocket, encodeWSFrame) }

func encodeWSFrame(m *Message) []byte {
	b := bytes.NewBuffer(takeover.NewTextFrame(64 + len(m.Channel) + len(m.Data)))
	b.WriteString(`[{"channel":`)
	writeJSONString(b, m.Channel)
	b.WriteString(`,"data":`)
	if len(m.Data) == 0 {
		b.WriteString("null")
	} else {
		b.Write(m.Data)
	}
	if m.Presence && len(m.Ext) > 0 {
		b.WriteString(`,"ext":`)
		b.Write(m.Ext)
	}
	if m.Reply {
		b.WriteString(`,"id":`)
		writeJSONString(b, m.ID)
		b.WriteString(`,"successful":true`)
	}
	b.WriteString("}]")
	return takeover.SealTextFrame(b.Bytes())
}

// writeFrameLocked writes a whole frame, blocking if need be; on failure
// the socket is closed (its reader then ends). Under the socket's lock.
func (ws *wsSession) writeFrameLocked(frame []byte) bool {
	if err := ws.sock.WriteLocked(frame); err != nil {
		_ = ws.conn.Close()
		return false
	}
	return true
}

// writeFrame writes a whole frame; false on failure.
func (ws *wsSession) writeFrame(frame []byte) bool {
	ws.sock.Lock()
	defer ws.sock.Unlock()
	return ws.writeFrameLocked(frame)
}

// write sends items as one JSON array frame; false on failure.
func (ws *wsSession) write(items [][]byte) bool { return ws.writeFrame(wsFrameOf(items)) }

// control writes a control frame through gorilla/websocket, under the
// socket's lock like every write (takeover.Socket.Control).
func (ws *wsSession) control(kind int, data []byte) error {
	return ws.sock.Control(func() error { return ws.conn.WriteControl(kind, data, time.Now().Add(time.Second)) })
}
