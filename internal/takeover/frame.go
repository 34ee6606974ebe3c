package takeover

import "encoding/binary"

// WebSocket data frames as the server writes them on a socket taken from
// gorilla/websocket (after its upgrade and for control frames, gorilla
// writes its own): built once, header included, and written as they are
// to every socket that gets the same bytes. Server frames are never
// masked (RFC 6455 5.1).

// maxFrameHeader is the longest header of a frame the server sends.
const maxFrameHeader = 10

// frameHeaderSize is the header size of a frame with n bytes of payload.
func frameHeaderSize(n int) int {
	switch {
	case n < 126:
		return 2
	case n < 1<<16:
		return 4
	}
	return 10
}

// putTextFrameHeader writes the header of a final text frame of n bytes
// into h, which is frameHeaderSize(n) long.
func putTextFrameHeader(h []byte, n int) {
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

// frameHeaderLen is the header length of frame f, one built here.
func frameHeaderLen(f []byte) int {
	switch f[1] & 0x7f {
	case 126:
		return 4
	case 127:
		return 10
	}
	return 2
}

// NewTextFrame is an empty text frame with room for a payload of about n
// bytes: append the payload to it, then Seal it.
func NewTextFrame(n int) []byte {
	b := make([]byte, maxFrameHeader, maxFrameHeader+n)
	return b
}

// SealTextFrame writes the header of f, made by NewTextFrame with its
// payload appended, and returns the frame (a slice of f).
func SealTextFrame(f []byte) []byte {
	n := len(f) - maxFrameHeader
	h := frameHeaderSize(n)
	out := f[maxFrameHeader-h:]
	putTextFrameHeader(out[:h], n)
	return out
}

// FramePayload is the payload of f, a frame made here.
func FramePayload(f []byte) []byte { return f[frameHeaderLen(f):] }
