package server

import (
	"encoding/binary"
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
// the socket's writeMu.

// maxWSHeader is the longest header of a frame the server sends (no mask).
const maxWSHeader = 10

// wsHeaderSize is the header size of a frame with n bytes of payload.
func wsHeaderSize(n int) int {
	switch {
	case n < 126:
		return 2
	case n < 1<<16:
		return 4
	}
	return 10
}

// putWSHeader writes the header of a final text frame of n bytes into h,
// which is wsHeaderSize(n) long.
func putWSHeader(h []byte, n int) {
	h[0] = 0x80 | 0x1 // FIN, text
	switch len(h) {
	case 2:
		h[1] = byte(n)
	case 4:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
}

// frameHeaderLen is the header length of a frame built here.
func frameHeaderLen(f []byte) int {
	switch f[1] & 0x7f {
	case 126:
		return 4
	case 127:
		return 10
	}
	return 2
}

// wsFrameOf is a text frame carrying items (encoded JSON) as one array.
func wsFrameOf(items [][]byte) []byte {
	n := jsonArrayLen(items)
	h := wsHeaderSize(n)
	out := make([]byte, h, h+n)
	putWSHeader(out, n)
	return appendJSONArray(out, items)
}

// wsMessagesFrame is a frame carrying msgs in their Bayeux form.
func wsMessagesFrame(msgs []*Message) []byte {
	if len(msgs) == 1 {
		return msgs[0].wsFrame()
	}
	items := make([][]byte, len(msgs))
	for i, m := range msgs {
		items[i] = m.bayeuxJSON()
	}
	return wsFrameOf(items)
}

// writeRest writes the rest of a frame, blocking for at most
// wsWriteTimeout. Under writeMu.
func (ws *wsSession) writeRest(rest []byte) error {
	return takeover.WriteWithin(ws.conn.NetConn(), rest, wsWriteTimeout)
}

// writeFrameLocked writes a whole frame, blocking if need be; on failure
// the socket is closed (its reader then ends). Under writeMu.
func (ws *wsSession) writeFrameLocked(frame []byte) bool {
	if err := takeover.WriteAll(ws.conn.NetConn(), &ws.desc, frame, wsWriteTimeout); err != nil {
		_ = ws.conn.Close()
		return false
	}
	return true
}

// writeFrame writes a whole frame; false on failure.
func (ws *wsSession) writeFrame(frame []byte) bool {
	ws.writeMu.Lock()
	defer ws.writeMu.Unlock()
	return ws.writeFrameLocked(frame)
}

// write sends items as one JSON array frame; false on failure.
func (ws *wsSession) write(items [][]byte) bool { return ws.writeFrame(wsFrameOf(items)) }

// control writes a control frame through gorilla/websocket, under writeMu
// like every write, and lifts the deadline gorilla sets for it (the
// non-blocking writes above fail once a deadline has passed).
func (ws *wsSession) control(kind int, data []byte) error {
	ws.writeMu.Lock()
	defer ws.writeMu.Unlock()
	err := ws.conn.WriteControl(kind, data, time.Now().Add(time.Second))
	_ = ws.conn.NetConn().SetWriteDeadline(time.Time{})
	return err
}
