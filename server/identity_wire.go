package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// How the protocols use the identity layer (identity.go): every protocol
// asks its identityHooks the same questions in the same order, so that the
// same rules decide the Stardust API, SSE and Bayeux.
//
//   - who: Authenticate at a Bayeux handshake, and for each Stardust poll or
//     SSE stream; the answer is kept with the session (keepIdentity) as
//     shared session attributes, so that with the Redis engine it holds on
//     every process and expires everywhere at the same time;
//   - expiry: every later message of a Bayeux session, and every poll of a
//     stream whose request brings no fresh identity, checks the kept
//     expiry (ErrTokenExpired: Bayeux 402 with advice handshake, Stardust 401);
//   - subscribe: the identity's channels grant first, then the ACL (with
//     {user}), then the app's subscribe callback;
//   - publish by a Bayeux client: the ACL, then the publish callback.

// Session attributes of an identity (besides AttrUser and AttrAuthenticated).
const (
	// AttrIdentity is the Identity kept with the session, as JSON.
	AttrIdentity = "identity"
	// AttrIdentityExpires is when it expires, in Unix milliseconds ("" never),
	// read on every message without decoding AttrIdentity.
	AttrIdentityExpires = "identity_expires"
)

// identityHooks are the Authenticator and authorizers of Options; each may
// be nil. Shared by the protocols; safe for concurrent use.
type identityHooks struct {
	authn Authenticator
	sub   SubscribeAuthorizer
	pub   PublishAuthorizer
	now   func() time.Time
	// chans are the [[channels]] rules (Options.Channels): their
	// anonymous = false is checked before anything else.
	chans channelRules
}

// authenticate asks the Authenticator who is behind req. ok is false for an
// anonymous caller (no Authenticator, or no credentials); err is one of the
// identity errors, fit for the client.
func (h *identityHooks) authenticate(ctx context.Context, req AuthRequest) (id Identity, ok bool, err error) {
	if !h.authenticates() {
		return Identity{}, false, nil
	}
	id, err = h.authn.Authenticate(ctx, req)
	switch {
	case errors.Is(err, ErrNoCredentials):
		return Identity{}, false, nil
	case err != nil:
		return Identity{}, false, err
	case id.User == "":
		return Identity{}, false, fmt.Errorf("%w: an identity without a user", ErrUnauthenticated)
	case id.Expired(h.clock()):
		return Identity{}, false, fmt.Errorf("%w: it expired at %s", ErrTokenExpired, id.ExpireAt.UTC().Format(time.RFC3339))
	}
	return id, true, nil
}

// authenticates reports whether an Authenticator is configured: without
// one there is nothing to ask, so a request's address and cookie need not be
// read for it.
func (h *identityHooks) authenticates() bool { return h != nil && h.authn != nil }

func (h *identityHooks) clock() time.Time {
	if h == nil || h.now == nil {
		return time.Now()
	}
	return h.now()
}

// keepIdentity stores id with c's session (in the engine once c is added),
// writing only when it changed, so that a poll that brings the same token
// again costs no write.
func keepIdentity(c *Client, id Identity) error {
	raw, err := json.Marshal(id)
	if err != nil {
		return err
	}
	if c.Attr(AttrIdentity) == string(raw) {
		return nil
	}
	expires := ""
	if !id.ExpireAt.IsZero() {
		expires = strconv.FormatInt(id.ExpireAt.UnixMilli(), 10)
	}
	// The expiry first: a reader that sees the new user sees its expiry.
	for _, kv := range [][2]string{{AttrIdentityExpires, expires}, {AttrUser, id.User},
		{AttrAuthenticated, "true"}, {AttrIdentity, string(raw)}} {
		if err := c.SetAttr(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// keptIdentity returns the identity kept with c's session, if any.
func keptIdentity(c *Client) (Identity, bool) {
	if c == nil {
		return Identity{}, false
	}
	raw := c.Attr(AttrIdentity)
	if raw == "" {
		return Identity{}, false
	}
	var id Identity
	if json.Unmarshal([]byte(raw), &id) != nil {
		return Identity{}, false
	}
	return id, true
}

// checkExpiry fails with ErrTokenExpired when c's kept identity has expired.
func (h *identityHooks) checkExpiry(c *Client) error {
	if left, ok := h.timeLeft(c); ok && left <= 0 {
		return fmt.Errorf("%w: log in again (a fresh token)", ErrTokenExpired)
	}
	return nil
}

// timeLeft is how long c's kept identity still holds; ok is false when c
// has none that expires. An unreadable expiry has none left.
func (h *identityHooks) timeLeft(c *Client) (time.Duration, bool) {
	if c == nil {
		return 0, false
	}
	v := c.Attr(AttrIdentityExpires)
	if v == "" {
		return 0, false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, true
	}
	return time.UnixMilli(ms).Sub(h.clock()), true
}

// checkSubscribe decides a subscription of c to subs (channels or
// patterns): those the identity's channels claim grants are allowed; the
// others must pass acl (the [[bayeux.acl]] rules and hooks, called with m
// narrowed to them) and then the app's subscribe callback. base carries what
// the callback is told besides the channel.
func (h *identityHooks) checkSubscribe(ctx context.Context, acl MessageACL, c *Client, m *BayeuxMessage, base ChannelRequest) error {
	if h != nil {
		if err := h.chans.checkAnonymous(c, m.Subscriptions); err != nil {
			return err
		}
	}
	id, _ := keptIdentity(c)
	rest := make([]string, 0, len(m.Subscriptions))
	for _, s := range m.Subscriptions {
		if !id.Grants(s) {
			rest = append(rest, s)
		}
	}
	if len(rest) == 0 {
		return nil
	}
	if acl != nil {
		narrowed := *m
		narrowed.Subscriptions = rest
		if err := acl(c, &narrowed); err != nil {
			return fmt.Errorf("%w: %v", ErrForbidden, err)
		}
	}
	if h == nil || h.sub == nil {
		return nil
	}
	base.User, base.Info = id.User, id.Info
	for _, s := range rest {
		req := base
		req.Channel = s
		if err := h.sub.AuthorizeSubscribe(ctx, req); err != nil {
			return callbackError(err)
		}
	}
	return nil
}

// checkPublish asks the app's publish callback about a client's publish
// (after the ACL); nil when there is none.
func (h *identityHooks) checkPublish(ctx context.Context, c *Client, base ChannelRequest) error {
	if h == nil || h.pub == nil {
		return nil
	}
	id, _ := keptIdentity(c)
	base.User, base.Info = id.User, id.Info
	return callbackError(h.pub.AuthorizePublish(ctx, base))
}

// callbackError makes sure an authorizer's refusal reads as one: an error
// that wraps none of the identity errors is the app failing, not refusing.
func callbackError(err error) error {
	if err == nil || errors.Is(err, ErrForbidden) || errors.Is(err, ErrAppUnavailable) ||
		errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrTokenExpired) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrAppUnavailable, err)
}

// requestIdentity is a Stardust request's identity: from the request itself
// (Bearer header, ?token=, the token cookie, or the connect callback), or
// else the one kept with the stream session c (nil: none), whose expiry is
// checked. ok is false for an anonymous caller.
func (s *Server) requestIdentity(r *http.Request, transport string, c *Client) (Identity, bool, error) {
	if s.idh.authenticates() {
		id, ok, err := s.idh.authenticate(r.Context(), AuthRequest{Request: r, Protocol: "stardust",
			Transport: transport, Remote: s.rules.clientIP(r), Session: s.rules.browserOf(r)})
		if err != nil || ok {
			return id, ok, err
		}
	}
	if err := s.idh.checkExpiry(c); err != nil {
		return Identity{}, false, err
	}
	id, ok := keptIdentity(c)
	return id, ok, nil
}
