package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// The Bayeux 1.0 drivers: subscribers over long-polling (one held
// /meta/connect POST at a time) or over a WebSocket (replies and messages
// pushed on one socket), and publishers that handshake once and then POST
// one publish per message. They speak only what every Bayeux server
// understands (this server, Faye, CometD): JSON arrays of messages.

// bayeuxMsg is one message of a Bayeux batch, as far as the load tool reads
// it. The id is left out: servers write it as a string or a number.
type bayeuxMsg struct {
	Channel      string          `json:"channel"`
	ClientID     string          `json:"clientId,omitempty"`
	Successful   *bool           `json:"successful,omitempty"`
	Error        string          `json:"error,omitempty"`
	Subscription json.RawMessage `json:"subscription,omitempty"`
	Advice       *bayeuxAdvice   `json:"advice,omitempty"`
	Data         json.RawMessage `json:"data,omitempty"`
}

type bayeuxAdvice struct {
	Reconnect string `json:"reconnect,omitempty"`
}

// maxBayeuxBatch bounds what one answer may hold, so that a broken server
// cannot make the tool allocate without end.
const maxBayeuxBatch = 100_000

// decodeBayeux reads a Bayeux answer: a JSON array of message objects, or
// one object (which some servers send for a single reply). Anything else is
// an error naming what was found.
func decodeBayeux(body []byte) ([]bayeuxMsg, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty Bayeux answer")
	}
	if body[0] == '{' {
		var m bayeuxMsg
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("Bayeux answer: %v", err)
		}
		return []bayeuxMsg{m}, nil
	}
	if body[0] != '[' {
		return nil, fmt.Errorf("Bayeux answer is not a JSON array: %q", truncate(body, 64))
	}
	var msgs []bayeuxMsg
	if err := json.Unmarshal(body, &msgs); err != nil {
		return nil, fmt.Errorf("Bayeux answer: %v", err)
	}
	if len(msgs) > maxBayeuxBatch {
		return nil, fmt.Errorf("Bayeux answer holds %d messages, more than %d", len(msgs), maxBayeuxBatch)
	}
	return msgs, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// ok reports a reply's successful field.
func (m *bayeuxMsg) ok() bool { return m.Successful != nil && *m.Successful }

// failure describes an unsuccessful reply.
func (m *bayeuxMsg) failure() error {
	return fmt.Errorf("%s unsuccessful: %q", m.Channel, m.Error)
}

// mustHandshake reports whether a reply tells the client to handshake again
// (advice reconnect=handshake, or error 401/402: unknown client).
func (m *bayeuxMsg) mustHandshake() bool {
	return (m.Advice != nil && m.Advice.Reconnect == "handshake") ||
		strings.HasPrefix(m.Error, "401") || strings.HasPrefix(m.Error, "402")
}

// bayeuxChannel is the Bayeux name of our k-th channel.
func (r *runner) bayeuxChannel(k int) string { return r.cfg.Prefix + "/" + r.names[k] }

// bayeuxPost sends one batch over long-polling with a browser's cookies
// (jar: the session is bound to them, as in a browser) and decodes the
// answer; at is its arrival.
func (r *runner) bayeuxPost(ctx context.Context, jar http.CookieJar, timeout time.Duration, batch ...map[string]any) (msgs []bayeuxMsg, at stamp, err error) {
	body, err := json.Marshal(batch)
	if err != nil {
		return nil, at, err
	}
	out, at, err := r.exchange(ctx, jar, http.MethodPost, r.cfg.bayeux.String(), "application/json", body, timeout)
	if err != nil {
		return nil, at, err
	}
	msgs, err = decodeBayeux(out)
	return msgs, at, err
}

// reply finds the reply on channel among msgs.
func reply(msgs []bayeuxMsg, channel string) (*bayeuxMsg, error) {
	for i := range msgs {
		if msgs[i].Channel == channel && msgs[i].Successful != nil {
			return &msgs[i], nil
		}
	}
	return nil, fmt.Errorf("no %s reply in the answer", channel)
}

func handshakeMsg(connType string) map[string]any {
	return map[string]any{"channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
		"supportedConnectionTypes": []string{connType}, "id": "1"}
}

// bayeuxSession is a client id, the message counter of its batches and
// the cookies of the browser it runs in.
type bayeuxSession struct {
	id  string
	seq atomic.Int64
	jar http.CookieJar
}

func (s *bayeuxSession) msg(channel string, kv ...any) map[string]any {
	m := map[string]any{"channel": channel, "clientId": s.id, "id": strconv.FormatInt(s.seq.Add(1), 10)}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// handshake opens a session over long-polling, as a new browser.
func (r *runner) handshake(ctx context.Context, connType string) (*bayeuxSession, error) {
	jar, _ := cookiejar.New(nil)
	msgs, _, err := r.bayeuxPost(ctx, jar, 30*time.Second, handshakeMsg(connType))
	if err != nil {
		return nil, fmt.Errorf("handshake: %w", err)
	}
	s, err := sessionFrom(msgs)
	if s != nil {
		s.jar = jar
	}
	return s, err
}

func sessionFrom(msgs []bayeuxMsg) (*bayeuxSession, error) {
	hs, err := reply(msgs, "/meta/handshake")
	if err != nil {
		return nil, err
	}
	if !hs.ok() || hs.ClientID == "" {
		return nil, hs.failure()
	}
	return &bayeuxSession{id: hs.ClientID}, nil
}

// gotBayeux accounts for the data messages of an answer on our channel.
func (c *client) gotBayeux(msgs []bayeuxMsg, at stamp) {
	ours := c.r.bayeuxChannel(c.ch)
	var data []loadMsg
	for i := range msgs {
		if msgs[i].Channel != ours || len(msgs[i].Data) == 0 {
			continue
		}
		var m loadMsg
		if json.Unmarshal(msgs[i].Data, &m) == nil {
			data = append(data, m)
		}
	}
	if len(data) > 0 {
		c.got(data, at)
	}
}

// registerOnce counts the client among those ready to receive, the first
// time it is subscribed.
func (c *client) registerOnce() {
	if !c.registered {
		c.registered = true
		c.r.registered.Add(1)
	}
}

// bayeuxLongPoll handshakes, subscribes and then holds /meta/connect in a
// loop, handshaking again when the server says so.
func (c *client) bayeuxLongPoll(ctx context.Context) {
	var s *bayeuxSession
	backoff := newBackoff()
	for ctx.Err() == nil {
		if s == nil {
			var err error
			if s, err = c.bayeuxJoin(ctx); err != nil {
				if c.pollFailed(ctx, fmt.Errorf("bayeux join: %w", err), backoff) {
					return
				}
				continue
			}
		}
		msgs, at, err := c.r.bayeuxPost(ctx, s.jar, c.r.cfg.PollTimeout,
			s.msg("/meta/connect", "connectionType", "long-polling"))
		if ctx.Err() != nil {
			return
		}
		c.r.polls.Add(1)
		if err == nil {
			var cr *bayeuxMsg
			if cr, err = reply(msgs, "/meta/connect"); err == nil && !cr.ok() {
				err = cr.failure()
				if cr.mustHandshake() {
					s = nil
				}
			}
		}
		c.gotBayeux(msgs, at)
		if err != nil {
			if c.pollFailed(ctx, fmt.Errorf("bayeux connect: %w", err), backoff) {
				return
			}
			continue
		}
		backoff.reset()
	}
}

// bayeuxJoin is handshake then subscribe, over long-polling.
func (c *client) bayeuxJoin(ctx context.Context) (*bayeuxSession, error) {
	s, err := c.r.handshake(ctx, "long-polling")
	if err != nil {
		return nil, err
	}
	msgs, _, err := c.r.bayeuxPost(ctx, s.jar, 30*time.Second, s.msg("/meta/subscribe", "subscription", c.r.bayeuxChannel(c.ch)))
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	sr, err := reply(msgs, "/meta/subscribe")
	if err != nil {
		return nil, err
	}
	if !sr.ok() {
		return nil, sr.failure()
	}
	c.registerOnce()
	return s, nil
}

// bayeuxWebSocket runs the client over one WebSocket: handshake, subscribe,
// then a connect after every connect reply; delivered messages come as they
// are published. A failed socket is opened again after a pause.
func (c *client) bayeuxWebSocket(ctx context.Context) {
	backoff := newBackoff()
	for ctx.Err() == nil {
		err := c.wsSession(ctx)
		if ctx.Err() != nil {
			return
		}
		c.r.polls.Add(1) // sockets that ended
		if c.pollFailed(ctx, fmt.Errorf("websocket: %w", err), backoff) {
			return
		}
	}
}

// pollFailed counts a failed exchange and waits before the next try; it
// reports true when ctx ended meanwhile.
func (c *client) pollFailed(ctx context.Context, err error, b *backoff) bool {
	c.r.pollErrors.Add(1)
	c.r.fail(err)
	return b.wait(ctx)
}

var wsDialer = &websocket.Dialer{
	NetDialContext:   stampingDial(loopbackDialer.DialContext),
	HandshakeTimeout: 10 * time.Second,
	ReadBufferSize:   4096,
	WriteBufferSize:  4096,
}

// wsURL is the WebSocket form of the Bayeux URL.
func (r *runner) wsURL() string {
	u := *r.cfg.bayeux
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	return u.String()
}

// dialWS opens a WebSocket to u, closed when ctx ends or done is called.
func (r *runner) dialWS(ctx context.Context, u string) (conn *websocket.Conn, done func(), err error) {
	dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, resp, err := r.ws.DialContext(dctx, u, nil)
	cancel()
	if err != nil {
		if resp != nil {
			return nil, nil, fmt.Errorf("upgrade: status %d", resp.StatusCode)
		}
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	conn.SetReadLimit(64 << 20)
	return conn, func() { stop(); _ = conn.Close() }, nil
}

func (c *client) wsSession(ctx context.Context) error {
	conn, done, err := c.r.dialWS(ctx, c.r.wsURL())
	if err != nil {
		return err
	}
	defer done()
	send := func(m map[string]any) error {
		b, _ := json.Marshal([]map[string]any{m})
		_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return conn.WriteMessage(websocket.TextMessage, b)
	}
	// read returns the next frame's messages, counting data messages as they come.
	read := func() ([]bayeuxMsg, error) {
		_ = conn.SetReadDeadline(time.Now().Add(c.r.cfg.PollTimeout))
		_, data, err := conn.ReadMessage()
		if err != nil {
			return nil, err
		}
		msgs, err := decodeBayeux(data)
		if err != nil {
			return nil, err
		}
		c.gotBayeux(msgs, arrivalOf(conn.NetConn()))
		return msgs, nil
	}
	// await reads frames until the reply on channel.
	await := func(channel string) (*bayeuxMsg, error) {
		for {
			msgs, err := read()
			if err != nil {
				return nil, fmt.Errorf("waiting for %s: %w", channel, err)
			}
			if r, err := reply(msgs, channel); err == nil {
				return r, nil
			}
		}
	}
	if err := send(handshakeMsg("websocket")); err != nil {
		return err
	}
	hs, err := await("/meta/handshake")
	if err != nil {
		return err
	}
	if !hs.ok() || hs.ClientID == "" {
		return hs.failure()
	}
	s := &bayeuxSession{id: hs.ClientID}
	if err := send(s.msg("/meta/subscribe", "subscription", c.r.bayeuxChannel(c.ch))); err != nil {
		return err
	}
	sr, err := await("/meta/subscribe")
	if err != nil {
		return err
	}
	if !sr.ok() {
		return sr.failure()
	}
	c.registerOnce()
	for {
		if err := send(s.msg("/meta/connect", "connectionType", "websocket")); err != nil {
			return err
		}
		cr, err := await("/meta/connect")
		if err != nil {
			return err
		}
		c.r.polls.Add(1)
		if !cr.ok() {
			return cr.failure()
		}
	}
}

// bayeuxPublisher publishes over long-polling with its own session.
type bayeuxPublisher struct {
	r *runner
	s *bayeuxSession
}

// publish sends one message and reports whether the server accepted it,
// handshaking again once if the server forgot the session.
func (p *bayeuxPublisher) publish(ctx context.Context, channel string, data json.RawMessage) error {
	for attempt := 0; ; attempt++ {
		if p.s == nil {
			s, err := p.r.handshake(ctx, "long-polling")
			if err != nil {
				return err
			}
			p.s = s
		}
		msgs, _, err := p.r.bayeuxPost(ctx, p.s.jar, 30*time.Second, p.s.msg(channel, "data", data))
		if err != nil {
			return err
		}
		pr, err := reply(msgs, channel)
		if err != nil {
			return err
		}
		if pr.ok() {
			return nil
		}
		if attempt > 0 || !pr.mustHandshake() {
			return pr.failure()
		}
		p.s = nil
	}
}

// backoff is the pause after a failed exchange: 100 ms doubling to 2 s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 100 * time.Millisecond} }

func (b *backoff) reset() { b.d = 100 * time.Millisecond }

// wait pauses and reports true when ctx ended meanwhile.
func (b *backoff) wait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-time.After(b.d):
	}
	b.d = min(2*b.d, 2*time.Second)
	return false
}
