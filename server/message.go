package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Message is one published message on one channel. The hub stores it once and
// every subscriber's queue holds the same pointer, so a publish to many
// clients costs no copy per subscriber. After Publish returns, a Message must
// not be modified; its encodings are computed once and shared.
type Message struct {
	// Channel is the full (Bayeux) channel name, e.g. "/stardust/foo".
	Channel string
	// Data is the payload as compact JSON.
	Data json.RawMessage
	// ID is the Bayeux message id given by the publisher, if any.
	ID string
	// ClientID is the publishing client's id, empty for server-side publishes.
	ClientID string
	// Ext is the publisher's ext object, passed through to hooks (and
	// delivered only with Presence).
	Ext json.RawMessage
	// Seq is set by the hub: a number that grows with every publish, used for
	// SSE event ids and replay. Time is set with it.
	Seq  uint64
	Time time.Time

	// Reply marks a service's answer to its caller: its Bayeux form carries
	// the call's id and successful, as CometD's remoteCall expects. Other
	// messages never carry the publisher's id, which a subscriber's pending
	// remote call could mistake for its answer.
	Reply bool
	// Presence marks a join or leave notice (joinleave.go), made by the
	// server: its Ext ({"presence":"join"} or "leave") goes to Bayeux
	// subscribers with it, so that they know it from a client's publish.
	// Other messages' Ext is the publisher's and is never delivered.
	Presence bool

	// The message's encodings, one per protocol's form, each made once per
	// publish and shared by every subscriber (encoded). Two arrays rather
	// than one of structs: the Onces pack beside Reply, and a Message
	// stays in its 208-byte size class.
	encOnce [numEncodings]sync.Once
	enc     [numEncodings][]byte
}

// size is what the message counts against a client's queue byte bound.
// The ext object counts too: a client may send a large one with little data.
func (m *Message) size() int { return len(m.Data) + len(m.Channel) + len(m.ID) + len(m.Ext) + 64 }

// encodingKind names a slot of a message's encodings: one per protocol's
// form, declared by that protocol's file (stardust_wire.go, transport_websocket_frame.go);
// the core knows none of them.
type encodingKind uint8

// numEncodings is the number of slots.
const numEncodings = 2

// encoded is the message's form k, made by enc on the first call: a
// message is published once and read by many subscribers (centrifuge's
// prepared data, per protocol).
func (m *Message) encoded(k encodingKind, enc func(*Message) []byte) []byte {
	m.encOnce[k].Do(func() { m.enc[k] = enc(m) })
	return m.enc[k]
}

func writeJSONString(b *bytes.Buffer, s string) {
	out, _ := json.Marshal(s)
	b.Write(out)
}

// decodeObject parses data as one JSON object, rejecting anything else
// (arrays, scalars, trailing data, duplicate-free but otherwise any keys).
func decodeObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("%w: invalid JSON: %v", ErrBadMessage, jsonErrText(err))
	}
	if obj == nil {
		return nil, fmt.Errorf("%w: want a JSON object, got null", ErrBadMessage)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrBadMessage)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrBadMessage)
	}
	return obj, nil
}

// jsonErrText turns encoding/json errors into short, user-facing text.
func jsonErrText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "want a JSON object, got " + te.Value
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
