package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
)

// BayeuxMessage is one Bayeux message as a client sent it. Hooks (MessageACL,
// services) receive it; they must not keep it after they return.
type BayeuxMessage struct {
	Channel                  string          `json:"channel"`
	ID                       json.RawMessage `json:"id,omitempty"` // echoed exactly as sent
	ClientID                 string          `json:"clientId,omitempty"`
	Data                     json.RawMessage `json:"data,omitempty"`
	Ext                      json.RawMessage `json:"ext,omitempty"`
	Advice                   json.RawMessage `json:"advice,omitempty"`
	Version                  string          `json:"version,omitempty"`
	MinimumVersion           string          `json:"minimumVersion,omitempty"`
	SupportedConnectionTypes []string        `json:"supportedConnectionTypes,omitempty"`
	ConnectionType           string          `json:"connectionType,omitempty"`
	Subscription             json.RawMessage `json:"subscription,omitempty"` // a string or an array of strings

	// Subscriptions is Subscription read as a list (meta subscribe/unsubscribe).
	Subscriptions []string `json:"-"`
}

// ExtString returns ext[key] when it is a string, for handshake credentials.
func (m *BayeuxMessage) ExtString(key string) string {
	var ext map[string]json.RawMessage
	if json.Unmarshal(m.Ext, &ext) != nil {
		return ""
	}
	var v string
	if json.Unmarshal(ext[key], &v) != nil {
		return ""
	}
	return v
}

// extField returns ext[key] as sent, or nil.
func (m *BayeuxMessage) extField(key string) json.RawMessage {
	if len(m.Ext) == 0 {
		return nil // most messages carry no ext
	}
	var ext map[string]json.RawMessage
	if json.Unmarshal(m.Ext, &ext) != nil {
		return nil
	}
	return ext[key]
}

// wantsAck reports whether a handshake asks for the ack extension
// (CometD's AckExtension: ext.ack true).
func (m *BayeuxMessage) wantsAck() bool {
	return bytes.Equal(bytes.TrimSpace(m.extField("ack")), []byte("true"))
}

// ackBatch returns the batch a connect acknowledges (ext.ack), if any: the
// ext.ack of the last connect reply with messages that the client received.
func (m *BayeuxMessage) ackBatch() (uint64, bool) {
	f := bytes.TrimSpace(m.extField("ack"))
	if len(f) == 0 {
		return 0, false // no ack (ParseInt would allocate its error)
	}
	n, err := strconv.ParseInt(string(f), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return uint64(n), true
}

// idString is the message id for use inside error strings and logs.
func (m *BayeuxMessage) idString() string {
	var s string
	if json.Unmarshal(m.ID, &s) == nil {
		return s
	}
	return string(m.ID)
}

// maxBatch bounds the messages of one request, so that a client cannot make
// the server do unbounded work for one body.
const maxBatch = 1000

// DecodeBayeux reads a request body holding one Bayeux message (a JSON object)
// or a batch (an array of them). Every message needs a channel; fields of the
// wrong type are errors that name the message and the field. Nothing of a
// batch with an error is to be processed.
func DecodeBayeux(body []byte) ([]*BayeuxMessage, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty Bayeux message", ErrBadMessage)
	}
	if err := checkUTF8(b, "the Bayeux message"); err != nil {
		return nil, err
	}
	if m, ok := decodeSimple(b); ok { // a held client's next connect
		if err := checkBayeux(m); err != nil {
			return nil, fmt.Errorf("message #1: %w", err)
		}
		return []*BayeuxMessage{m}, nil
	}
	// One pass with go-json-experiment/json (the design of Go's
	// encoding/json/v2): 3.4x faster than encoding/json on a /meta/connect
	// and a third of the allocations (BenchmarkDecodeBayeux). Field names
	// match exactly, as the Bayeux specification spells them.
	var out []*BayeuxMessage
	switch b[0] {
	case '[':
		if err := jsonv2.Unmarshal(b, &out); err != nil {
			return nil, bayeuxJSONError(err, true)
		}
	case '{':
		m := &BayeuxMessage{}
		if err := jsonv2.Unmarshal(b, m); err != nil {
			return nil, bayeuxJSONError(err, false)
		}
		out = []*BayeuxMessage{m}
	default:
		return nil, fmt.Errorf("%w: want a JSON object or an array of them", ErrBadMessage)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: empty batch", ErrBadMessage)
	}
	if len(out) > maxBatch {
		return nil, fmt.Errorf("%w: more than %d messages in one batch", ErrBadMessage, maxBatch)
	}
	for i, m := range out {
		if err := checkBayeux(m); err != nil {
			return nil, fmt.Errorf("message #%d: %w", i+1, err)
		}
	}
	return out, nil
}

// bayeuxJSONError says what is wrong with a body that does not decode,
// naming the message of a batch and the field where it can.
func bayeuxJSONError(err error, batch bool) error {
	var se *jsonv2.SemanticError
	if !errors.As(err, &se) {
		return fmt.Errorf("%w: invalid JSON: %v", ErrBadMessage, strings.TrimPrefix(err.Error(), "jsontext: "))
	}
	parts := strings.Split(strings.TrimPrefix(string(se.JSONPointer), "/"), "/")
	where := ""
	if batch && parts[0] != "" {
		if n, err := strconv.Atoi(parts[0]); err == nil {
			where = fmt.Sprintf("message #%d: ", n+1)
		}
		parts = parts[1:]
	}
	switch {
	case len(parts) > 0 && parts[0] != "":
		return fmt.Errorf("%s%w: field %q: wrong type %s", where, ErrBadMessage, parts[0], se.JSONKind)
	case where != "" || !batch:
		return fmt.Errorf("%s%w: want a JSON object", where, ErrBadMessage)
	}
	return fmt.Errorf("%w: want a JSON object or an array of them", ErrBadMessage)
}

// checkBayeux checks what decoding alone does not: a message is an object
// with a channel, and id, ext, advice and subscription have their types.
func checkBayeux(m *BayeuxMessage) error {
	if m == nil {
		return fmt.Errorf("%w: want a JSON object, got null", ErrBadMessage)
	}
	if m.Channel == "" {
		return fmt.Errorf("%w: missing channel", ErrBadMessage)
	}
	if len(m.ID) > 0 {
		switch m.ID[0] {
		case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		default:
			return fmt.Errorf("%w: field \"id\": want a string or number", ErrBadMessage)
		}
	}
	if len(m.Ext) > 0 && m.Ext[0] != '{' && string(m.Ext) != "null" {
		return fmt.Errorf("%w: field \"ext\": want an object", ErrBadMessage)
	}
	if len(m.Advice) > 0 && m.Advice[0] != '{' && string(m.Advice) != "null" {
		return fmt.Errorf("%w: field \"advice\": want an object", ErrBadMessage)
	}
	if len(m.Subscription) > 0 {
		subs, err := decodeSubscriptions(m.Subscription)
		if err != nil {
			return err
		}
		m.Subscriptions = subs
	}
	return nil
}

func decodeSubscriptions(raw json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil || len(many) == 0 {
		return nil, fmt.Errorf("%w: field \"subscription\": want a channel or a non-empty array of channels", ErrBadMessage)
	}
	if len(many) > MaxChannelsPerRequest {
		return nil, fmt.Errorf("%w: field \"subscription\": more than %d channels", ErrBadMessage, MaxChannelsPerRequest)
	}
	return many, nil
}

// bayeuxAdvice is the advice field of replies.
type bayeuxAdvice struct {
	Reconnect string `json:"reconnect,omitempty"`
	Interval  int64  `json:"interval"`
	Timeout   int64  `json:"timeout,omitempty"`
	// MultipleClients tells a browser already holding its connects to poll.
	MultipleClients bool `json:"multiple-clients,omitempty"`
}

// bayeuxReply is the server's answer to one message.
type bayeuxReply struct {
	Channel                  string          `json:"channel"`
	Successful               bool            `json:"successful"`
	ID                       json.RawMessage `json:"id,omitempty"`
	ClientID                 string          `json:"clientId,omitempty"`
	Version                  string          `json:"version,omitempty"`
	SupportedConnectionTypes []string        `json:"supportedConnectionTypes,omitempty"`
	Subscription             json.RawMessage `json:"subscription,omitempty"`
	Data                     json.RawMessage `json:"data,omitempty"`
	Error                    string          `json:"error,omitempty"`
	Advice                   *bayeuxAdvice   `json:"advice,omitempty"`
	Ext                      json.RawMessage `json:"ext,omitempty"`
}

// encode is kept out of its callers (noinline): inlined, its 192-byte
// buffer sat in the frame of every caller, a WebSocket's read loop among
// them, whose goroutine then grew its stack to 8 KiB (section 20).
//
//go:noinline
func (r *bayeuxReply) encode() []byte {
	if b, ok := r.appendPlain(make([]byte, 0, 192)); ok {
		return b
	}
	b, _ := json.Marshal(r)
	return b
}

// Errors of the Bayeux protocol beyond the core's.
var (
	ErrVersion  = errors.New("unsupported version")
	ErrConnType = errors.New("connection types not supported")
)

// bayeuxError maps an error to a Bayeux error string "code:args:message",
// args being what the error is about (a client id, a channel...).
func bayeuxError(err error, args ...string) string {
	code := 500
	switch {
	case errors.Is(err, ErrVersion):
		code = 300
	case errors.Is(err, ErrConnType):
		code = 301
	case errors.Is(err, ErrUnknownClient), errors.Is(err, ErrTokenExpired):
		code = 402 // with advice handshake (Bayeux.fail)
	case errors.Is(err, ErrUnauthenticated):
		code = 401
	case errors.Is(err, ErrForbidden), errors.Is(err, ErrTooManySubscriptions), errors.Is(err, ErrTooManyChannels),
		errors.Is(err, ErrChannelBudget):
		// CometD's server answers refusals with 403 too; a client treats
		// it as this message's failure and keeps its session.
		code = 403
	case errors.Is(err, ErrBadChannel):
		code = 405
	case errors.Is(err, ErrBadMessage), errors.Is(err, ErrBadClientID):
		code = 400
	case overLimit(err):
		code = 503
	}
	msg := err.Error()
	switch {
	case code == 500:
		msg = "Internal error"
	case errors.Is(err, ErrEngine):
		msg = engineUnavailable // its server's address is for the log
	default:
		msg = cutErrorText(msg)
	}
	if errors.Is(err, ErrUnknownClient) {
		msg = "Unknown client" // the exact text clients look for
	}
	// A colon in the message part is fine; args are comma-joined and colon-free.
	for i, a := range args {
		args[i] = strings.ReplaceAll(cutLogValue(a), ":", "_") // a channel name can be 1 MiB
	}
	return strconv.Itoa(code) + ":" + strings.Join(args, ",") + ":" + msg
}
