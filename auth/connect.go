package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/stardust-go/stardust/server"
)

// The connect and channel callbacks: the app answers for its own session.

// connectAnswer is the app's 200 answer to connect_url.
type connectAnswer struct {
	User     json.RawMessage `json:"user"`      // a string, or an integer for apps that have one
	ExpireAt json.Number     `json:"expire_at"` // UNIX seconds; absent or 0: no expiry
	Channels []string        `json:"channels"`
	Info     json.RawMessage `json:"info"`
}

// connect asks connect_url who is behind req, through the cache.
func (a *Auth) connect(ctx context.Context, req server.AuthRequest) (server.Identity, error) {
	var h http.Header
	if req.Request != nil {
		h = req.Request.Header
	}
	if !a.connectCB.forwards(h) {
		return server.Identity{}, fmt.Errorf("%w: no token and none of the headers the app is asked with (%v)", server.ErrNoCredentials, a.connectCB.forward)
	}
	key := a.connectCB.cacheKey(h, req.Session, req.Protocol, req.Transport, req.Remote)
	id, _, err := a.identities.do(ctx, key, func(ctx context.Context) (server.Identity, time.Duration, error) {
		a.counts.connect.Add(1)
		body := map[string]string{"protocol": req.Protocol, "transport": req.Transport, "remote": req.Remote}
		status, answer, err := a.connectCB.post(ctx, body, h)
		if err != nil {
			return server.Identity{}, 0, err
		}
		return a.readConnect(status, answer)
	})
	return id, err
}

// readConnect turns the app's answer into an identity and how long to keep
// it: the cache's time, no longer than the identity holds. Refusals are
// kept too, so that a refused long-poller does not call the app each poll;
// unusable answers are not.
func (a *Auth) readConnect(status int, answer []byte) (server.Identity, time.Duration, error) {
	switch status {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return server.Identity{}, a.ttl, fmt.Errorf("%w: the app does not know this session (401)", server.ErrUnauthenticated)
	case http.StatusForbidden:
		return server.Identity{}, a.ttl, &server.Refusal{Message: appMessage(answer)}
	default:
		return server.Identity{}, 0, a.connectCB.unexpected(status, "want 200, 401 or 403")
	}
	var ans connectAnswer
	dec := json.NewDecoder(bytes.NewReader(answer))
	dec.UseNumber()
	if err := dec.Decode(&ans); err != nil {
		return server.Identity{}, 0, a.connectCB.unexpected(status, "not JSON of the expected shape: "+err.Error())
	}
	id, err := ans.identity()
	if err != nil {
		return server.Identity{}, 0, a.connectCB.unexpected(status, err.Error())
	}
	ttl := a.ttl
	if !id.ExpireAt.IsZero() {
		left := id.ExpireAt.Sub(a.now())
		if left <= 0 {
			return server.Identity{}, 0, fmt.Errorf("%w: the app's answer has already expired (expire_at)", server.ErrTokenExpired)
		}
		ttl = min(ttl, left)
	}
	return id, ttl, nil
}

func (ans *connectAnswer) identity() (server.Identity, error) {
	var id server.Identity
	if err := json.Unmarshal(ans.User, &id.User); err != nil {
		var n json.Number
		if json.Unmarshal(ans.User, &n) != nil {
			return id, errors.New(`"user" must be a string such as "42"`)
		}
		if _, err := strconv.ParseInt(n.String(), 10, 64); err != nil {
			return id, errors.New(`"user" must be a string or an integer`)
		}
		id.User = n.String()
	}
	if id.User == "" {
		return id, errors.New(`"user" is missing or empty`)
	}
	if err := checkUser(id.User); err != nil {
		return id, fmt.Errorf(`"user": %v`, err)
	}
	if ans.ExpireAt != "" {
		secs, err := ans.ExpireAt.Int64()
		if err != nil || secs < 0 {
			return id, errors.New(`"expire_at" must be UNIX seconds`)
		}
		if secs > 0 {
			id.ExpireAt = time.Unix(secs, 0)
		}
	}
	var err error
	if id.Channels, err = checkChannels(ans.Channels); err != nil {
		return id, fmt.Errorf(`"channels": %v`, err)
	}
	if id.Info, err = checkInfo(ans.Info); err != nil {
		return id, fmt.Errorf(`"info": %v`, err)
	}
	return id, nil
}

// channelCall asks subscribe_url or publish_url about req, through the cache
// of decisions, kept per browser session (the forwarded headers and
// req.Session), user, protocol and channel: a client that polls again, or
// handshakes again from the same browser, is not asked about again until
// the decision expires.
func (a *Auth) channelCall(ctx context.Context, cb *callback, verb string, req server.ChannelRequest) error {
	key := cb.cacheKey(req.Header, verb, req.Session, req.User, req.Protocol, req.Channel)
	_, _, err := a.decisions.do(ctx, key, func(ctx context.Context) (struct{}, time.Duration, error) {
		if verb == "subscribe" {
			a.counts.subscribe.Add(1)
		} else {
			a.counts.publish.Add(1)
		}
		info := req.Info
		if len(info) == 0 {
			info = json.RawMessage("null")
		}
		body := struct {
			User      string          `json:"user"`
			Channel   string          `json:"channel"`
			Client    string          `json:"client"`
			Protocol  string          `json:"protocol"`
			Transport string          `json:"transport"`
			Info      json.RawMessage `json:"info"`
		}{req.User, req.Channel, req.Client, req.Protocol, req.Transport, info}
		status, answer, err := cb.post(ctx, body, req.Header)
		switch {
		case err != nil:
			return struct{}{}, 0, err
		case status == http.StatusOK:
			return struct{}{}, a.ttl, nil
		case status == http.StatusForbidden:
			return struct{}{}, a.ttl, &server.Refusal{Message: appMessage(answer)}
		case status == http.StatusUnauthorized:
			return struct{}{}, a.ttl, fmt.Errorf("%w: the app does not know this session (401)", server.ErrUnauthenticated)
		}
		return struct{}{}, 0, cb.unexpected(status, "want 200, 401 or 403")
	})
	return err
}
