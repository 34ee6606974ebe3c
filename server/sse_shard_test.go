package server

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestSSEEncoderPerChannel: the encoder skips a message already framed (one
// both replayed and queued), by its channel's numbers: an engine whose
// numbers increase per channel only (the Redis engine's shards) hands a
// stream a message of another channel numbered below one framed before,
// and it must be framed.
func TestSSEEncoderPerChannel(t *testing.T) {
	e := sseEncoder{prefix: "/stardust"}
	msg := func(ch string, seq uint64) *Message {
		return &Message{Channel: ch, Data: json.RawMessage(`{}`), Seq: seq}
	}
	b := e.appendMessages(nil, []*Message{msg("/a/x", 30), msg("/a/x", 36)}, 0)
	b = e.appendMessages(b, []*Message{msg("/b/y", 7), msg("/a/x", 36), msg("/b/y", 13)}, 0)
	got := strings.Count(string(b), "id: ")
	if got != 4 || !strings.Contains(string(b), "id: 7\n") || !strings.Contains(string(b), "id: 13\n") {
		t.Errorf("framed %d events; want 4, /b/y's 7 and 13 among them:\n%s", got, b)
	}
}

// TestSSEEncoderResumedSpaces: a stream resumed after event 600 of an
// engine of six number spaces (SequenceSpaces: the sharded Redis engine)
// skips what that space numbered up to 600 (sent before it reconnected),
// not another space's messages, whose numbers do not compare with it.
func TestSSEEncoderResumedSpaces(t *testing.T) {
	e := sseEncoder{prefix: "/stardust", lastSeq: 600, same: func(a, b uint64) bool { return a%6 == b%6 }}
	b := e.appendMessages(nil, []*Message{
		{Channel: "/a/x", Data: json.RawMessage(`{}`), Seq: 594},
		{Channel: "/b/y", Data: json.RawMessage(`{}`), Seq: 31},
		{Channel: "/a/x", Data: json.RawMessage(`{}`), Seq: 606},
	}, 0)
	if got := string(b); strings.Contains(got, "id: 594\n") || !strings.Contains(got, "id: 31\n") || !strings.Contains(got, "id: 606\n") {
		t.Errorf("resumed after 600, framed:\n%s\nwant 31 and 606, not 594", got)
	}
}
