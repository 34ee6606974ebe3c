package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

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
// may mark it (c.Values.Store("user", name)) for later checks. For an
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
	AnonPublish          bool          // publish without handshake
	ConnectTimeout       time.Duration // client removed after this long with no connect; default 60s
	Interval             time.Duration // advice interval
	ClientMaxConnections int           // held connects per client address; default 10
	WebSocket            bool          // accept the websocket transport
	Services             map[string]Service
	MessageACL           MessageACL
}

// Bayeux serves the Bayeux protocol over its transports.
type Bayeux struct {
	s    *Server
	hub  *Hub
	opts BayeuxOptions
	log  *logrus.Entry

	ipMu sync.Mutex
	held map[string]int // held connects by client address
}

func newBayeux(s *Server, opts BayeuxOptions) *Bayeux {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 60 * time.Second
	}
	if opts.ClientMaxConnections <= 0 {
		opts.ClientMaxConnections = 10
	}
	return &Bayeux{s: s, hub: s.hub, opts: opts, log: s.log.WithField("protocol", "bayeux"), held: map[string]int{}}
}

func (b *Bayeux) connectionTypes() []string {
	types := []string{TransportLongPolling, TransportCallbackPolling}
	if b.opts.WebSocket {
		types = append(types, TransportWebSocket)
	}
	return types
}

func (b *Bayeux) advice(reconnect string) *bayeuxAdvice {
	return &bayeuxAdvice{Reconnect: reconnect, Interval: b.opts.Interval.Milliseconds(),
		Timeout: b.s.opts.PollTimeout.Milliseconds()}
}

// heldConnect is a /meta/connect waiting for messages or its hold time.
type heldConnect struct {
	msg    *BayeuxMessage
	client *Client
	hold   time.Duration
}

// process handles one batch in order and returns the replies. A valid
// connect in the batch is not answered here: it is returned for the transport
// to hold, and its reply goes last, after the replies to the other messages.
func (b *Bayeux) process(batch []*BayeuxMessage, remote, transport string) ([][]byte, *heldConnect) {
	replies := make([][]byte, 0, len(batch))
	var held *heldConnect
	for _, m := range batch {
		var r *bayeuxReply
		switch {
		case m.Channel == "/meta/connect":
			if held != nil {
				r = b.fail(m, fmt.Errorf("%w: more than one connect in a batch", ErrBadMessage), m.Channel)
				break
			}
			held, r = b.connect(m)
		case m.Channel == "/meta/handshake":
			r = b.handshake(m, remote, transport)
		case m.Channel == "/meta/subscribe", m.Channel == "/meta/unsubscribe":
			r = b.subscribe(m, m.Channel == "/meta/subscribe")
		case m.Channel == "/meta/disconnect":
			r = b.disconnect(m)
		case IsMeta(m.Channel):
			r = b.fail(m, fmt.Errorf("%w: unknown meta channel", ErrBadChannel), m.Channel)
		default:
			r = b.publish(m)
		}
		if r != nil {
			replies = append(replies, r.encode())
		}
	}
	return replies, held
}

// fail is an unsuccessful reply to m carrying err as a Bayeux error string.
func (b *Bayeux) fail(m *BayeuxMessage, err error, args ...string) *bayeuxReply {
	r := &bayeuxReply{Channel: m.Channel, ID: m.ID, ClientID: m.ClientID, Subscription: m.Subscription,
		Error: bayeuxError(err, args...)}
	switch {
	case strings.HasPrefix(r.Error, "402:"):
		r.Advice = &bayeuxAdvice{Reconnect: "handshake", Interval: 0}
	case m.Channel == "/meta/handshake":
		r.Advice = &bayeuxAdvice{Reconnect: "none", Interval: 0}
	}
	return r
}

// session finds the Bayeux client a message names.
func (b *Bayeux) session(m *BayeuxMessage) (*Client, error) {
	if m.ClientID == "" {
		return nil, ErrUnknownClient
	}
	c := b.hub.Client(m.ClientID)
	if c == nil || c.kind != KindBayeux {
		return nil, ErrUnknownClient
	}
	return c, nil
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

func (b *Bayeux) handshake(m *BayeuxMessage, remote, transport string) *bayeuxReply {
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
	c := b.hub.NewClient(NewID(), KindBayeux, b.opts.ConnectTimeout, remote)
	c.Values.Store("transport", transport)
	if err := b.acl(c, m); err != nil {
		return b.fail(m, err, "handshake")
	}
	if err := b.hub.Add(c); err != nil {
		return b.fail(m, err, "handshake")
	}
	return &bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID, ClientID: c.id, Version: "1.0",
		SupportedConnectionTypes: b.connectionTypes(), Advice: b.advice("retry")}
}

func (b *Bayeux) commonType(types []string) bool {
	for _, t := range types {
		for _, ours := range b.connectionTypes() {
			if t == ours {
				return true
			}
		}
	}
	return false
}

// connect checks a /meta/connect; valid ones are returned to be held.
func (b *Bayeux) connect(m *BayeuxMessage) (*heldConnect, *bayeuxReply) {
	c, err := b.session(m)
	if err != nil {
		return nil, b.fail(m, err, m.ClientID)
	}
	if m.ConnectionType == "" {
		return nil, b.fail(m, fmt.Errorf("%w: missing connectionType", ErrBadMessage), "connectionType")
	}
	if !b.commonType([]string{m.ConnectionType}) {
		return nil, b.fail(m, ErrConnType, m.ConnectionType)
	}
	if err := b.acl(c, m); err != nil {
		return nil, b.fail(m, err, m.Channel)
	}
	c.Touch()
	hold := b.s.opts.PollTimeout
	var adv struct {
		Timeout *int64 `json:"timeout"`
	}
	if json.Unmarshal(m.Advice, &adv) == nil && adv.Timeout != nil && *adv.Timeout >= 0 {
		// CometD asks for an immediate first reply with timeout 0.
		hold = min(hold, time.Duration(*adv.Timeout)*time.Millisecond)
	}
	return &heldConnect{msg: m, client: c, hold: hold}, nil
}

// connectReply answers a held connect when it ends.
func (b *Bayeux) connectReply(h *heldConnect, why PollEnd) []byte {
	r := &bayeuxReply{Channel: "/meta/connect", Successful: true, ID: h.msg.ID, ClientID: h.client.id,
		Advice: b.advice("retry")}
	select {
	case <-h.client.done:
		if v, _ := h.client.Values.Load("disconnected"); v == true {
			// The client said goodbye: end its connect loop cleanly.
			r.Advice = &bayeuxAdvice{Reconnect: "none", Interval: 0}
			break
		}
		// Expired while held: the client must handshake again.
		r.Successful = false
		r.Error = bayeuxError(ErrUnknownClient, h.client.id)
		r.Advice = &bayeuxAdvice{Reconnect: "handshake", Interval: 0}
	default:
	}
	if why == PollClosed && b.hub.Closed() {
		r.Advice = &bayeuxAdvice{Reconnect: "retry", Interval: 1000, Timeout: b.s.opts.PollTimeout.Milliseconds()}
	}
	return r.encode()
}

// poll waits up to hold for c's messages and returns them in their Bayeux
// form, for any transport. Bayeux has no in-band notice for a queue that
// overflowed, so drops are logged (and counted by the hub).
func (b *Bayeux) poll(ctx context.Context, c *Client, hold time.Duration) ([][]byte, PollEnd) {
	msgs, dropped, why := c.Poll(ctx, hold)
	if dropped > 0 {
		b.log.WithFields(logrus.Fields{"client": c.id, "lost": dropped}).Warn("bayeux client queue overflowed")
	}
	out := make([][]byte, len(msgs))
	for i, msg := range msgs {
		out[i] = msg.bayeuxJSON()
	}
	return out, why
}

// takeConnection counts a held connect against the client address's limit.
func (b *Bayeux) takeConnection(ip string) bool {
	b.ipMu.Lock()
	defer b.ipMu.Unlock()
	if b.held[ip] >= b.opts.ClientMaxConnections {
		return false
	}
	b.held[ip]++
	return true
}

func (b *Bayeux) releaseConnection(ip string) {
	b.ipMu.Lock()
	defer b.ipMu.Unlock()
	if b.held[ip]--; b.held[ip] <= 0 {
		delete(b.held, ip)
	}
}

func (b *Bayeux) subscribe(m *BayeuxMessage, on bool) *bayeuxReply {
	c, err := b.session(m)
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
		if err := b.acl(c, m); err != nil {
			return b.fail(m, err, m.Subscriptions...)
		}
	}
	c.Touch()
	for _, sub := range m.Subscriptions {
		if IsService(sub) {
			continue // answers to service calls reach the caller without a subscription
		}
		if on {
			if _, err := b.hub.Subscribe(c, sub); err != nil {
				return b.fail(m, err, sub)
			}
		} else {
			b.hub.Unsubscribe(c, sub)
		}
	}
	return &bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID, ClientID: c.id, Subscription: m.Subscription}
}

func (b *Bayeux) disconnect(m *BayeuxMessage) *bayeuxReply {
	c, err := b.session(m)
	if err != nil {
		return b.fail(m, err, m.ClientID)
	}
	c.Values.Store("disconnected", true)
	b.hub.Remove(c)
	return &bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID, ClientID: c.id}
}

func (b *Bayeux) publish(m *BayeuxMessage) *bayeuxReply {
	if _, err := ParseChannel(m.Channel, false); err != nil {
		return b.fail(m, err, m.Channel)
	}
	c, err := b.session(m)
	if err != nil && !(b.opts.AnonPublish && !IsService(m.Channel)) {
		return b.fail(m, err, m.ClientID)
	}
	if len(m.Data) == 0 {
		return b.fail(m, fmt.Errorf("%w: missing data", ErrBadMessage), "data")
	}
	if len(m.Data) > b.s.opts.MaxMessageSize {
		return b.fail(m, fmt.Errorf("%w: data over %d bytes", ErrBadMessage, b.s.opts.MaxMessageSize), m.Channel)
	}
	if err := b.acl(c, m); err != nil {
		return b.fail(m, err, m.Channel)
	}
	if c != nil {
		c.Touch()
	}
	if IsService(m.Channel) {
		return b.callService(c, m)
	}
	msg := &Message{Channel: m.Channel, Data: m.Data, ID: m.idString(), ClientID: m.ClientID, Ext: m.Ext}
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
		b.hub.Deliver(c, &Message{Channel: m.Channel, Data: data, ID: m.idString(), reply: true})
	}
	return &bayeuxReply{Channel: m.Channel, Successful: true, ID: m.ID}
}
