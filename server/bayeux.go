package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"
)

// Bayeux 1.0 (cometd) at {base}/bayeux and {base}/cometd, on the shared hub.

// The connection types this server speaks.
const (
	TransportLongPolling     = "long-polling"
	TransportCallbackPolling = "callback-polling"
	TransportWebSocket       = "websocket"
)

// Service answers publishes to /service/NAME (POE's Services). It runs on the
// request's goroutine. A non-nil reply is sent back to the caller only, as a
// message on the same service channel carrying the call's id (what CometD's
// remoteCall and a Faye client subscribed to the channel read). An error is
// sent back as the publish reply's error.
//
//	opts.Bayeux.Services["time"] = func(c *server.Client, m *server.BayeuxMessage) (any, error) {
//		return map[string]any{"now": time.Now().Unix()}, nil
//	}
type Service func(c *Client, m *BayeuxMessage) (reply any, err error)

// EchoService answers with the data it was sent.
func EchoService(_ *Client, m *BayeuxMessage) (any, error) { return m.Data, nil }

// MessageACL is called for every message a Bayeux client sends, the handshake
// included (POE's MessageACL), before the server acts on it. A non-nil error
// rejects the message: the client gets an unsuccessful reply whose error says
// 403 and the error's text. For a handshake, c is the client-to-be: the hook
// may mark it (c.SetAttr(server.AttrUser, name)) for later checks. For an
// anonymous publish (AnonPublish), c is nil. The hook runs on the request's
// goroutine, concurrently with other requests.
//
//	opts.Bayeux.MessageACL = func(c *server.Client, m *server.BayeuxMessage) error {
//		if m.Channel == "/meta/handshake" && m.ExtString("token") != "s3cret" {
//			return errors.New("bad token")
//		}
//		return nil
//	}
type MessageACL func(c *Client, m *BayeuxMessage) error

// BayeuxOptions configure the Bayeux endpoint. Zero values take the defaults noted.
type BayeuxOptions struct {
	AnonPublish    bool          // publish without handshake
	ConnectTimeout time.Duration // client removed after this long with no connect; default 60s
	Interval       time.Duration // advice interval
	// ClientMaxConnections bounds the connects one browser (BAYEUX_BROWSER
	// cookie) holds over HTTP at once; default 1, as CometD's
	// maxSessionsPerBrowser. Further connects (more tabs) are answered at
	// once with the "multiple-clients" advice to poll every
	// MultiClientInterval (default 2s).
	ClientMaxConnections int
	MultiClientInterval  time.Duration
	WebSocket            bool // accept the websocket transport
	Services             map[string]Service
	MessageACL           MessageACL
}

// Session attributes the core and its hooks use (Session.Attrs).
const (
	AttrUser          = "user"          // the authenticated user's name
	AttrAuthenticated = "authenticated" // "true" once a handshake check passed
	AttrTransport     = "transport"     // the Bayeux transport last used
	AttrAck           = "ack"           // "true": the client speaks the ack extension
	AttrConnected     = "connected"     // "true" once the client's first connect was answered
)

// Bayeux serves the Bayeux protocol over its transports. It talks to the
// hub and its own options only.
type Bayeux struct {
	hub    *Hub
	opts   BayeuxOptions
	limits bayeuxLimits
	rules  requestRules
	log    *logrus.Entry

	upgrader  *websocket.Upgrader
	sockets   openSet[*wsSession] // open WebSockets (transport_websocket_push.go)
	incidents *incidents          // counts unsuccessful replies
	idh       *identityHooks
}

// bayeuxLimits are the Server's options that Bayeux shares.
type bayeuxLimits struct {
	pollTimeout    time.Duration // the connect hold
	maxMessageSize int           // one message's data
	base           string        // the API's path, for the browser cookie
}

func newBayeux(hub *Hub, opts BayeuxOptions, limits bayeuxLimits, rules requestRules, log *logrus.Entry) *Bayeux {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 60 * time.Second
	}
	if opts.ClientMaxConnections <= 0 {
		opts.ClientMaxConnections = 1
	}
	if opts.MultiClientInterval <= 0 {
		opts.MultiClientInterval = 2 * time.Second
	}
	b := &Bayeux{hub: hub, opts: opts, limits: limits, rules: rules, log: log.WithField("protocol", "bayeux")}
	b.upgrader = b.newUpgrader()
	return b
}

// bayeuxTypes are the connection types, WebSocket's last: offered only
// when it is on (connectionTypes).
var bayeuxTypes = [...]string{TransportLongPolling, TransportCallbackPolling, TransportWebSocket}

// connectionTypes returns the connection types offered, a list not to be
// changed (each call's is the same).
func (b *Bayeux) connectionTypes() []string {
	if b.opts.WebSocket {
		return bayeuxTypes[:3:3]
	}
	return bayeuxTypes[:2:2]
}

func (b *Bayeux) advice(reconnect string) *bayeuxAdvice {
	return &bayeuxAdvice{Reconnect: reconnect, Interval: b.opts.Interval.Milliseconds(),
		Timeout: b.limits.pollTimeout.Milliseconds()}
}

// pendingConnect is a /meta/connect waiting for messages or its hold time.
type pendingConnect struct {
	msg     *BayeuxMessage
	client  *Client
	timeout time.Duration
	// ack: the client speaks the ack extension. Its messages then come only
	// in connect replies, each batch with a number that the client's next
	// connect acknowledges; unacknowledged ones are sent again, from any
	// process, so that each arrives exactly once.
	ack bool
	// multiple: another tab of the browser holds its connects, so this one
	// is answered at once (with what is queued) and told to poll.
	multiple bool
}

// process handles one batch in order and returns the replies. A valid
// connect in the batch is not answered here: it is returned for the transport
// to hold, and its reply goes last, after the replies to the other messages.
func (b *Bayeux) process(batch []*BayeuxMessage, who caller) ([][]byte, *pendingConnect) {
	// Made here, not grown from nil by the appends below: with the nil
	// slice each WebSocket's goroutine grew its stack to 8 KiB (twice as
	// much; BENCHMARKS.md section 20, "the WebSocket stack").
	replies := make([][]byte, 0, len(batch))
	var pending *pendingConnect
	for _, m := range batch {
		var r *bayeuxReply
		switch {
		case m.Channel == "/meta/connect":
			if pending != nil {
				r = b.fail(m, fmt.Errorf("%w: more than one connect in a batch", ErrBadMessage), m.Channel)
				break
			}
			pending, r = b.connect(m, who)
		case m.Channel == "/meta/handshake":
			r = b.handshake(m, who)
		case m.Channel == "/meta/subscribe", m.Channel == "/meta/unsubscribe":
			r = b.subscribe(m, who, m.Channel == "/meta/subscribe")
		case m.Channel == "/meta/disconnect":
			r = b.disconnect(m, who)
		case IsMeta(m.Channel):
			r = b.fail(m, fmt.Errorf("%w: unknown meta channel", ErrBadChannel), m.Channel)
		default:
			r = b.publish(m, who)
		}
		if r != nil {
			replies = append(replies, r.encode())
		}
	}
	return replies, pending
}

// fail is an unsuccessful reply to m carrying err as a Bayeux error string.
func (b *Bayeux) fail(m *BayeuxMessage, err error, args ...string) *bayeuxReply {
	r := &bayeuxReply{Channel: m.Channel, ID: m.ID, ClientID: m.ClientID, Subscription: m.Subscription,
		Error: bayeuxError(err, args...)}
	if code, _, ok := strings.Cut(r.Error, ":"); ok {
		b.incidents.add("bayeux_"+code, 1)
	}
	switch {
	case strings.HasPrefix(r.Error, "402:") && b.hub.wasKicked(m.ClientID):
		// The server API disconnected the session: do not come back.
		r.Advice = &bayeuxAdvice{Reconnect: "none", Interval: 0}
	case strings.HasPrefix(r.Error, "402:"):
		r.Advice = &bayeuxAdvice{Reconnect: "handshake", Interval: 0}
	case errors.Is(err, ErrEngine):
		// A shared engine is away for a while: try again, never give up.
		r.Advice = &bayeuxAdvice{Reconnect: "retry", Interval: 1000}
	case overLimit(err):
		// Full, or over a limit for this address: come back later.
		r.Advice = &bayeuxAdvice{Reconnect: "retry", Interval: retryAfter.Milliseconds()}
	case m.Channel == "/meta/handshake":
		r.Advice = &bayeuxAdvice{Reconnect: "none", Interval: 0}
	}
	return r
}

// session finds the Bayeux client a message names, if the caller owns it
// (see owner.go): to anyone else it is an unknown client.
func (b *Bayeux) session(m *BayeuxMessage, who caller) (*Client, error) {
	if m.ClientID == "" {
		return nil, ErrUnknownClient
	}
	c, err := b.hub.Client(m.ClientID)
	if err != nil {
		return nil, err
	}
	if c.Kind() != KindBayeux || !who.claims(c) {
		return nil, ErrUnknownClient
	}
	if err := b.idh.checkExpiry(c); err != nil {
		// Every message of the session, on every process, is refused from
		// now on (402, advice handshake): the client handshakes again with a
		// fresh token, and the old session is swept after connect_timeout.
		// It is not removed here: a connect it holds elsewhere would be
		// answered "reconnect none" (a goodbye) and could stop the client.
		return nil, err
	}
	return c, nil
}

// identify asks the Authenticator who a handshake comes from (ext.token,
// else the request's token places, else the connect callback) and keeps the
// answer with the client-to-be. An anonymous handshake passes: the ACL
// decides what it may do.
func (b *Bayeux) identify(c *Client, m *BayeuxMessage, who caller) error {
	id, ok, err := b.idh.authenticate(who.context(), AuthRequest{Token: m.ExtString("token"), Request: who.req,
		Protocol: "bayeux", Transport: who.transport, Remote: who.remote, Session: who.session()})
	if err != nil || !ok {
		return err
	}
	return keepIdentity(c, id) // not added yet: cannot fail
}

// channelRequest is what the app's callbacks are told of a message of c.
func channelRequest(c *Client, channel string, who caller) ChannelRequest {
	req := ChannelRequest{Channel: channel, Protocol: "bayeux", Transport: who.transport, Session: who.session()}
	if c != nil {
		req.Client = c.ID()
	}
	if who.req != nil {
		req.Header = who.req.Header
	}
	return req
}

func (b *Bayeux) acl(c *Client, m *BayeuxMessage) error {
	if b.opts.MessageACL == nil {
		return nil
	}
	if err := b.opts.MessageACL(c, m); err != nil {
		return fmt.Errorf("%w: %v", ErrForbidden, err)
	}
	return nil
}

func (b *Bayeux) handshake(m *BayeuxMessage, who caller) *bayeuxReply {
	if m.Version == "" {
		return b.fail(m, fmt.Errorf("%w: missing version", ErrBadMessage), "version")
	}
	if !strings.HasPrefix(m.Version, "1") || (len(m.Version) > 1 && m.Version[1] != '.') {
		if m.MinimumVersion == "" || !strings.HasPrefix(m.MinimumVersion, "1") {
			return b.fail(m, fmt.Errorf("%w: this server speaks 1.0", ErrVersion), m.Version)
		}
	}
	if !b.commonType(m.SupportedConnectionTypes) {
		return b.fail(m, fmt.Errorf("%w: this server speaks %s", ErrConnType, strings.Join(b.connectionTypes(), ", ")),
			m.SupportedConnectionTypes...)
	}
	c := b.hub.NewClient(NewID(), KindBayeux, b.opts.ConnectTimeout, who.remote)
	_ = c.SetAttr(AttrTransport, who.transport) // not added yet: cannot fail
	who.bindNew(c)
	ack := m.wantsAck()
	if ack {
		_ = c.SetAttr(AttrAck, "true")
	}
	if err := b.identify(c, m, who); err != nil {
		return b.fail(m, err, "handshake")
	}
	if err := b.acl(c, m); err != nil {
		return b.fail(m, err, "handshake")
	}
	if err := b.hub.Add(c); err != nil {
		return b.fail(m, err, "handshake")
	}
	r := &bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID, ClientID: c.ID(), Version: "1.0",
		SupportedConnectionTypes: b.connectionTypes(), Advice: b.advice("retry")}
	if ack {
		r.Ext = json.RawMessage(`{"ack":true}`)
	}
	return r
}

// commonType reports whether one of types is one this server speaks.
func (b *Bayeux) commonType(types []string) bool { return slices.ContainsFunc(types, b.speaks) }

// speaks reports whether t is one of connectionTypes.
func (b *Bayeux) speaks(t string) bool { return slices.Contains(b.connectionTypes(), t) }

// connect checks a /meta/connect; valid ones are returned to be held.
func (b *Bayeux) connect(m *BayeuxMessage, who caller) (*pendingConnect, *bayeuxReply) {
	c, err := b.session(m, who)
	if err != nil {
		return nil, b.fail(m, err, m.ClientID)
	}
	if m.ConnectionType == "" {
		return nil, b.fail(m, fmt.Errorf("%w: missing connectionType", ErrBadMessage), "connectionType")
	}
	if !b.speaks(m.ConnectionType) {
		return nil, b.fail(m, ErrConnType, m.ConnectionType)
	}
	if err := b.acl(c, m); err != nil {
		return nil, b.fail(m, err, m.Channel)
	}
	timeout := b.limits.pollTimeout
	if asked, ok := adviceTimeout(m.Advice); ok && asked >= 0 && asked < timeout.Milliseconds() {
		// CometD asks for an immediate first reply with timeout 0. Compared
		// in milliseconds first: a huge timeout must not overflow the
		// Duration into a negative (immediate, uncounted) hold.
		timeout = time.Duration(asked) * time.Millisecond
	}
	if c.Attr(AttrConnected) == "" {
		// The first connect is answered at once, as CometD's and the Perl
		// POE server's ("Don't delay the first time they connect"): some
		// clients send nothing else (their subscribes) until it returns.
		if err := c.SetAttr(AttrConnected, "true"); err != nil {
			return nil, b.fail(m, err, m.Channel)
		}
		timeout = 0
	}
	if left, ok := b.idh.timeLeft(c); ok && left < timeout {
		// Held no longer than the identity holds: the next connect, at
		// its expiry, is answered 402 (handshake) at once.
		timeout = max(left, 0)
	}
	h := &pendingConnect{msg: m, client: c, timeout: timeout, ack: c.Attr(AttrAck) == "true"}
	if h.ack {
		if batch, ok := m.ackBatch(); ok {
			c.Commit(batch) // the client has every message up to that batch
		}
	}
	return h, nil
}

// adviceTimeout is the timeout a connect's advice asks for, if it has one
// (decoded only then: most connects have no advice).
func adviceTimeout(advice json.RawMessage) (int64, bool) {
	if len(advice) == 0 {
		return 0, false
	}
	var adv struct {
		Timeout *int64 `json:"timeout"`
	}
	if json.Unmarshal(advice, &adv) != nil || adv.Timeout == nil {
		return 0, false
	}
	return *adv.Timeout, true
}

// connectReply answers a pending connect when it ends. For a client of the ack
// extension, a reply that carries messages carries their batch number
// (cursor); one without leaves the client's last batch as it is.
func (b *Bayeux) connectReply(h *pendingConnect, why PollEnd, cursor uint64) []byte {
	return b.appendConnectReply(make([]byte, 0, 192), h, why, cursor)
}

// appendConnectReply appends connectReply's JSON to dst. The reply and its
// advice stay on the stack, and the ack extension is written into a small
// array of its own: a fan-out's answer costs no allocation here
// (BenchmarkBayeuxConnectRequest).
func (b *Bayeux) appendConnectReply(dst []byte, h *pendingConnect, why PollEnd, cursor uint64) []byte {
	adv := *b.advice("retry")
	successful, errText := true, ""
	switch {
	case h.multiple && (why == PollReady || why == PollTimeout):
		adv = *b.multipleClientsAdvice()
	case why == PollClosed && b.hub.Closed():
		adv = bayeuxAdvice{Reconnect: "retry", Interval: 1000, Timeout: b.limits.pollTimeout.Milliseconds()}
	case why == PollClosed && b.hub.wasKicked(h.client.ID()):
		// The server API disconnected it: 402, and do not come back.
		successful = false
		errText = bayeuxError(ErrUnknownClient, h.client.ID())
		adv = bayeuxAdvice{Reconnect: "none", Interval: 0}
	case why == PollClosed || why == PollGone:
		// Removed while held: the client said goodbye, so end its connect
		// loop cleanly. (A request that went away reads no reply.)
		adv = bayeuxAdvice{Reconnect: "none", Interval: 0}
	case why == PollExpired:
		// Expired or lost while held: the client must handshake again.
		successful = false
		errText = bayeuxError(ErrUnknownClient, h.client.ID())
		adv = bayeuxAdvice{Reconnect: "handshake", Interval: 0}
	case why == PollFailed:
		successful = false
		errText = bayeuxError(ErrEngine, "connect")
		adv = bayeuxAdvice{Reconnect: "retry", Interval: 1000, Timeout: b.limits.pollTimeout.Milliseconds()}
	}
	ack := h.ack && why == PollReady
	r := bayeuxReply{Channel: "/meta/connect", Successful: successful, ID: h.msg.ID, ClientID: h.client.ID(), Error: errText, Advice: &adv}
	var ext [40]byte
	if ack {
		e := strconv.AppendUint(append(ext[:0], `{"ack":`...), cursor, 10)
		r.Ext = json.RawMessage(append(e, '}'))
	}
	if out, ok := r.appendPlain(dst); ok {
		return out
	}
	return marshalConnectReply(dst, h.msg.ID, h.client.ID(), successful, errText, adv, ack, cursor)
}

// marshalConnectReply is appendConnectReply's reply through json.Marshal,
// for the rare one that appendPlain leaves to it (an id or client id to
// escape). It is given values, not the reply: nothing of
// appendConnectReply's (its advice, its ext array) may flow into what
// json.Marshal keeps, or it would leave the stack on every call.
func marshalConnectReply(dst []byte, id json.RawMessage, clientID string, successful bool, errText string, adv bayeuxAdvice, ack bool, cursor uint64) []byte {
	r := &bayeuxReply{Channel: "/meta/connect", Successful: successful, ID: id, ClientID: clientID, Error: errText, Advice: &adv}
	if ack {
		r.Ext = json.RawMessage(`{"ack":` + strconv.FormatUint(cursor, 10) + `}`)
	}
	out, _ := json.Marshal(r) // not encode: appendPlain has just declined these values
	return append(dst, out...)
}

// poll waits up to hold for c's messages and returns them in their Bayeux
// form, for any transport, with the batch's cursor to commit once they are
// written. Bayeux has no in-band notice for a queue that overflowed; the hub
// counts drops.
func (b *Bayeux) poll(ctx context.Context, c *Client, timeout time.Duration) ([][]byte, uint64, PollEnd) {
	batch, why := c.Poll(ctx, timeout)
	return bayeuxMessages(batch), batch.Cursor, why
}

// bayeuxMessages encodes a batch's messages in their Bayeux form.
func bayeuxMessages(batch Batch) [][]byte {
	out := make([][]byte, len(batch.Messages))
	for i, msg := range batch.Messages {
		out[i] = bayeuxJSON(msg)
	}
	return out
}

// browserKey is the engine's connection-count key of a browser's pending connects.
func browserKey(browser string) string { return "browser:" + browser }

func (b *Bayeux) subscribe(m *BayeuxMessage, who caller, on bool) *bayeuxReply {
	c, err := b.session(m, who)
	if err != nil {
		return b.fail(m, err, m.ClientID)
	}
	if len(m.Subscriptions) == 0 {
		return b.fail(m, fmt.Errorf("%w: missing subscription", ErrBadMessage), "subscription")
	}
	for _, sub := range m.Subscriptions {
		if _, err := ParseChannel(sub, true); err != nil {
			return b.fail(m, err, sub)
		}
		if IsMeta(sub) {
			return b.fail(m, fmt.Errorf("%w: meta channels are not subscribable", ErrForbidden), sub)
		}
	}
	if on {
		if err := b.idh.checkSubscribe(who.context(), b.opts.MessageACL, c, m, channelRequest(c, "", who)); err != nil {
			return b.fail(m, err, m.Subscriptions...)
		}
	}
	var added []string // by this message: taken back if a later one fails
	for _, sub := range m.Subscriptions {
		if IsService(sub) {
			continue // answers to service calls reach the caller without a subscription
		}
		if on {
			fresh, err := b.hub.Subscribe(c, sub)
			if err != nil {
				// All or none (over a limit, typically): the reply says the
				// message failed, so none of it may stay in force.
				for _, p := range added {
					if _, err := b.hub.Unsubscribe(c, p); err != nil {
						b.log.WithError(err).Debug("taking back a subscription")
					}
				}
				return b.fail(m, err, sub)
			}
			if fresh {
				added = append(added, sub)
			}
		} else if _, err := b.hub.Unsubscribe(c, sub); err != nil {
			return b.fail(m, err, sub)
		}
	}
	return &bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID, ClientID: c.ID(), Subscription: m.Subscription}
}

func (b *Bayeux) disconnect(m *BayeuxMessage, who caller) *bayeuxReply {
	c, err := b.session(m, who)
	if err != nil {
		return b.fail(m, err, m.ClientID)
	}
	if err := b.hub.Remove(c); err != nil {
		return b.fail(m, err, m.ClientID)
	}
	return &bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID, ClientID: c.ID()}
}

func (b *Bayeux) publish(m *BayeuxMessage, who caller) *bayeuxReply {
	if _, err := ParseChannel(m.Channel, false); err != nil {
		return b.fail(m, err, m.Channel)
	}
	c, err := b.session(m, who)
	if err != nil && !(b.opts.AnonPublish && !IsService(m.Channel)) {
		return b.fail(m, err, m.ClientID)
	}
	if len(m.Data) == 0 {
		return b.fail(m, fmt.Errorf("%w: missing data", ErrBadMessage), "data")
	}
	if len(m.Data) > b.limits.maxMessageSize {
		return b.fail(m, fmt.Errorf("%w: data over %d bytes", ErrBadMessage, b.limits.maxMessageSize), m.Channel)
	}
	if err := b.acl(c, m); err != nil {
		return b.fail(m, err, m.Channel)
	}
	if IsService(m.Channel) {
		return b.callService(c, m)
	}
	if err := b.idh.checkPublish(who.context(), c, channelRequest(c, m.Channel, who)); err != nil {
		return b.fail(m, err, m.Channel)
	}
	// A channel the engine does not keep yet counts against the caller's
	// address (and MaxChannels) before anything is published.
	if err := b.hub.prepareChannels(who.remote, []string{m.Channel}); err != nil {
		return b.fail(m, err, m.Channel)
	}
	msg := &Message{Channel: m.Channel, Data: m.Data, ID: m.idString(), Ext: m.Ext}
	if c != nil {
		msg.ClientID = c.ID() // an anonymous publish names no one, whatever it claims
	}
	if _, err := b.hub.Publish(msg); err != nil {
		return b.fail(m, err, m.Channel)
	}
	return &bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID}
}

func (b *Bayeux) callService(c *Client, m *BayeuxMessage) *bayeuxReply {
	name := strings.TrimPrefix(m.Channel, "/service/")
	svc := b.opts.Services[name]
	if svc == nil {
		svc = b.opts.Services["_handler"] // POE's fallback handler
	}
	if svc == nil {
		return b.fail(m, fmt.Errorf("%w: no such service", ErrBadChannel), m.Channel)
	}
	reply, err := svc(c, m)
	if err != nil {
		return b.fail(m, fmt.Errorf("%w: %v", ErrForbidden, err), m.Channel)
	}
	if reply != nil {
		data, err := json.Marshal(reply)
		if err != nil {
			b.log.WithError(err).WithField("service", name).Error("service reply does not encode")
			return b.fail(m, err, m.Channel)
		}
		// The answer goes through the caller's queue, after the data-less
		// publish reply: CometD's websocket transport clears a message's
		// timer only on a reply without data, and its remoteCall then
		// matches the answer by id.
		if err := b.hub.Deliver(c, &Message{Channel: m.Channel, Data: data, ID: m.idString(), Reply: true}); err != nil {
			return b.fail(m, err, m.Channel)
		}
	}
	return &bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID}
}

// noteTransport records the transport a client connects with, for hooks,
// writing to the engine only when it changed.
func (b *Bayeux) noteTransport(c *Client, transport string) {
	if c.Attr(AttrTransport) != transport {
		if err := c.SetAttr(AttrTransport, transport); err != nil {
			b.log.WithError(err).Debug("recording the transport")
		}
	}
}
