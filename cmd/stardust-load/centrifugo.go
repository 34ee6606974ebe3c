package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// The Centrifugo drivers (v6), so that the same load measures Centrifugo
// beside Stardust and Faye: subscribers over Centrifugo's unidirectional
// transports, which need no SDK, and a publisher over its server HTTP API.
//
//   - uni_websocket: GET /connection/uni_websocket upgraded; the client's
//     first and only frame is the connect request, {"subs":{"CHANNEL":{}}};
//     then every frame from the server is one push (or several separated by
//     newlines when join_push_messages is on): {"connect":{...}} first,
//     {"channel":"CHANNEL","pub":{"data":...}} per message, {} as a ping.
//   - uni_sse: GET /connection/uni_sse?cf_connect=<the same connect request>;
//     every event's data is one such push.
//   - publish: POST /api/publish with X-API-Key and
//     {"channel":"CHANNEL","data":<message>}; the answer is {"result":{...}}
//     or {"error":{"code":N,"message":"..."}}.
//
// The server subscribes an anonymous connection to the channels its connect
// request names only when told to: cmd/stardust-compare writes such a
// configuration (client.allow_anonymous_connect_without_token and
// channel.without_namespace.allow_subscribe_for_anonymous).

// Centrifugo's endpoints under --url.
const (
	centrifugoUniWS  = "/connection/uni_websocket"
	centrifugoUniSSE = "/connection/uni_sse"
	centrifugoAPI    = "/api/publish"
)

// centrifugoPush is one push of the unidirectional protocol, as far as the
// load tool reads it.
type centrifugoPush struct {
	Channel string `json:"channel"`
	Pub     *struct {
		Data json.RawMessage `json:"data"`
	} `json:"pub"`
	Connect *struct {
		Client string                     `json:"client"`
		Subs   map[string]json.RawMessage `json:"subs"`
	} `json:"connect"`
	Disconnect *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"disconnect"`
}

// connectRequest is the connect request of client c: no token, one
// server-side subscription to its channel.
func (c *client) connectRequest() []byte {
	b, _ := json.Marshal(map[string]any{"subs": map[string]any{c.r.names[c.ch]: map[string]any{}}})
	return b
}

// gotPushes accounts for the pushes in one frame or event (newline-separated
// when the server joins them). It returns an error when the server refused
// the connection or did not subscribe the client to its channel.
func (c *client) gotPushes(frame []byte, at stamp) error {
	ours := c.r.names[c.ch]
	var data []loadMsg
	for line := range bytes.SplitSeq(frame, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var p centrifugoPush
		if err := json.Unmarshal(line, &p); err != nil {
			return fmt.Errorf("push not JSON: %v: %q", err, truncate(line, 64))
		}
		switch {
		case p.Disconnect != nil:
			return fmt.Errorf("disconnected by the server: code %d, %q", p.Disconnect.Code, p.Disconnect.Reason)
		case p.Connect != nil:
			if _, ok := p.Connect.Subs[ours]; !ok {
				return fmt.Errorf("connected but not subscribed to %s (is anonymous subscribe allowed in the server's configuration?)", ours)
			}
			c.registerOnce()
		case p.Pub != nil && p.Channel == ours:
			var m loadMsg
			if json.Unmarshal(p.Pub.Data, &m) == nil {
				data = append(data, m)
			}
		}
	}
	if len(data) > 0 {
		c.got(data, at)
	}
	return nil
}

// centrifugoURL is endpoint under the server's base URL, in scheme.
func (r *runner) centrifugoURL(scheme, endpoint string) string {
	u := *r.cfg.base
	if scheme != "" {
		u.Scheme = scheme
	}
	u.Path += endpoint
	return u.String()
}

// uniWebSocket holds one unidirectional WebSocket, opening it again after a
// pause when it fails.
func (c *client) uniWebSocket(ctx context.Context) {
	c.retry(ctx, "uni_websocket", c.uniWebSocketOnce)
}

// uniSSE holds one unidirectional event stream, opening it again after a
// pause when it ends.
func (c *client) uniSSE(ctx context.Context) {
	c.retry(ctx, "uni_sse", c.uniSSEOnce)
}

// retry runs once until ctx ends, counting every end as a stream that ended
// and every error as a failed exchange, with a backoff between tries.
func (c *client) retry(ctx context.Context, name string, once func(context.Context) error) {
	backoff := newBackoff()
	for ctx.Err() == nil {
		err := once(ctx)
		if ctx.Err() != nil {
			return
		}
		c.r.polls.Add(1)
		if err == nil {
			err = errors.New("the server ended the stream")
		}
		if c.pollFailed(ctx, fmt.Errorf("%s: %w", name, err), backoff) {
			return
		}
	}
}

func (c *client) uniWebSocketOnce(ctx context.Context) error {
	scheme := "ws"
	if c.r.cfg.base.Scheme == "https" {
		scheme = "wss"
	}
	conn, done, err := c.r.dialWS(ctx, c.r.centrifugoURL(scheme, centrifugoUniWS))
	if err != nil {
		return err
	}
	defer done()
	_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := conn.WriteMessage(websocket.TextMessage, c.connectRequest()); err != nil {
		return err
	}
	for {
		// Centrifugo pings every 25 s once connected; --poll-timeout (90 s)
		// leaves room for a connect push that a busy server sends late.
		_ = conn.SetReadDeadline(time.Now().Add(c.r.cfg.PollTimeout))
		_, frame, err := conn.ReadMessage()
		if err != nil {
			return err
		}
		if err := c.gotPushes(frame, arrivalOf(conn.NetConn())); err != nil {
			return err
		}
	}
}

func (c *client) uniSSEOnce(ctx context.Context) error {
	u := c.r.centrifugoURL("", centrifugoUniSSE) + "?cf_connect=" + url.QueryEscape(string(c.connectRequest()))
	return c.r.eventStream(ctx, u, nil, func(_, data []byte, at stamp) error { return c.gotPushes(data, at) })
}

// publishCentrifugo publishes one message through Centrifugo's server HTTP
// API and returns an error unless the server accepted it.
func (r *runner) publishCentrifugo(ctx context.Context, channel, msg string) error {
	body, _ := json.Marshal(map[string]any{"channel": channel, "data": json.RawMessage(msg)})
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodPost, r.centrifugoURL("", centrifugoAPI), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", r.cfg.APIKey)
	resp, err := r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, truncate(bytes.TrimSpace(b), 200))
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("answer not JSON: %v", err)
	}
	if out.Error != nil {
		return fmt.Errorf("error %d: %s", out.Error.Code, out.Error.Message)
	}
	return nil
}

// centrifugoMode reports whether the subscribers speak Centrifugo's
// unidirectional protocol.
func (c *config) centrifugoMode() bool { return strings.HasPrefix(c.Mode, "uni_") }
