package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Identity from the app beside Stardust (issue 18): who is asking, and what
// the app's answer lets them do. The core defines the types and the small
// interfaces it calls; the adapter that verifies signed tokens and calls the
// app back over HTTP is the top-level package auth, which cmd/stardust wires
// in, so that an embedder who never uses tokens never links a JWT library.

// Sentinel errors of identity checks. An Authenticator or an authorizer
// wraps them with a short reason a client may see; the protocols map them to
// statuses (401, 402 for Bayeux expiry, 403, 503) and Bayeux error strings.
var (
	// ErrNoCredentials: the request carries no token and there is no session
	// to ask the app about. The caller is anonymous; channels open to "*"
	// stay open to it.
	ErrNoCredentials = errors.New("no credentials")
	// ErrUnauthenticated: credentials were given and refused (a bad
	// signature, a malformed token, an unknown key, the app answered 401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrTokenExpired: the token or the app's answer was valid once and has
	// expired (or is not valid yet); a fresh one will do.
	ErrTokenExpired = errors.New("identity expired")
	// ErrAppUnavailable: the app's callback did not answer in time, could not
	// be reached or answered with an unexpected status. Refused for now: the
	// client should retry in a few seconds.
	ErrAppUnavailable = errors.New("app unavailable")
)

// Refusal is the app's considered "no": a 403 from a callback, with the
// message the app gave (possibly empty) to pass on to the client as it is.
// It wraps ErrForbidden.
type Refusal struct {
	Message string
}

// Error returns "forbidden" and the app's message.
func (r *Refusal) Error() string {
	if r.Message == "" {
		return ErrForbidden.Error() + ": refused by the app"
	}
	return ErrForbidden.Error() + ": " + r.Message
}

// Unwrap makes errors.Is(err, ErrForbidden) hold.
func (r *Refusal) Unwrap() error { return ErrForbidden }

// Identity is who a client is, as a verified token or the app's connect
// answer says. It is kept with the client's session (and, with the Redis
// engine, shared by every process), so it is plain data that serialises.
type Identity struct {
	// User is the user id (the token's "sub"); never empty in an Identity
	// an Authenticator returns.
	User string `json:"user"`
	// ExpireAt is when the identity stops holding; zero: it does not expire.
	ExpireAt time.Time `json:"expire_at,omitzero"`
	// Channels are Bayeux channel patterns ("/user/42/**"; "{user}" stands
	// for User) the identity may subscribe to whatever the ACL says
	// otherwise. nil grants nothing more.
	Channels []string `json:"channels,omitempty"`
	// Info is a JSON object the app attached, passed back to the subscribe
	// and publish callbacks; nil when none.
	Info json.RawMessage `json:"info,omitempty"`
}

// Expired reports whether the identity has expired at now.
func (id Identity) Expired(now time.Time) bool {
	return !id.ExpireAt.IsZero() && !now.Before(id.ExpireAt)
}

// Grants reports whether one of the identity's Channels covers channel (a
// channel, or a subscription pattern every channel of which is covered).
func (id Identity) Grants(channel string) bool {
	for _, pattern := range id.Channels {
		if MatchUser(pattern, id.User, channel) {
			return true
		}
	}
	return false
}

// AuthRequest is what the core knows of a request when it asks who is
// making it.
type AuthRequest struct {
	// Token is a token the protocol carried itself (a Bayeux handshake's
	// ext.token); "" to look only in Request.
	Token string
	// Request is the HTTP request (for a WebSocket, the upgrade request):
	// the Authenticator reads the token places and the headers it forwards
	// from it. It may be nil when Token is set.
	Request *http.Request
	// Protocol is "bayeux" or "stardust"; Transport the transport's name
	// ("long-polling", "callback-polling", "websocket", "sse", "loop").
	Protocol, Transport string
	// Remote is the client's address as the core resolved it (trusted
	// proxies applied).
	Remote string
	// Session is a key of the browser session the caller chose (for
	// example the browser cookie), used with the forwarded headers to cache
	// the app's answers; "" is a session of its own.
	Session string
}

// Authenticator says who is making a request. It returns an Identity with a
// User, or an error wrapping ErrNoCredentials, ErrUnauthenticated,
// ErrTokenExpired or ErrAppUnavailable, whose text is fit for the client.
// It is called concurrently and must return by ctx's deadline.
type Authenticator interface {
	Authenticate(ctx context.Context, req AuthRequest) (Identity, error)
}

// ChannelRequest is one subscribe or publish the core asks the app about.
type ChannelRequest struct {
	User    string // the identity's user; "" for an anonymous client
	Channel string // the channel or subscription pattern
	Client  string // the client id (Bayeux clientId, Stardust client id)
	// Protocol and Transport as in AuthRequest.
	Protocol, Transport string
	Info                json.RawMessage // the identity's Info; nil for none
	// Header is the request's headers; only those the configuration
	// names are forwarded to the app. nil forwards nothing.
	Header http.Header
	// Session as in AuthRequest.
	Session string
}

// SubscribeAuthorizer asks the app whether a client may subscribe. nil
// allows; an error wrapping ErrForbidden (a *Refusal, with the app's
// message) refuses; an error wrapping ErrAppUnavailable refuses for now.
// It is called concurrently and must return by ctx's deadline.
type SubscribeAuthorizer interface {
	AuthorizeSubscribe(ctx context.Context, req ChannelRequest) error
}

// PublishAuthorizer is SubscribeAuthorizer for a client's publish.
type PublishAuthorizer interface {
	AuthorizePublish(ctx context.Context, req ChannelRequest) error
}

// UserTemplate stands for the caller's own user id in a channel pattern of
// an ACL rule or a channels claim: "/user/{user}/**", "/stardust/inbox_{user}".
const UserTemplate = "{user}"

// IsUserSegment reports whether user may stand for {user}: a non-empty
// string of channel segment characters. Any other user id never matches a
// template, so that "a/b" cannot reach "/user/a/b/**".
func IsUserSegment(user string) bool {
	if user == "" {
		return false
	}
	for i := 0; i < len(user); i++ {
		if !isSegmentByte(user[i]) {
			return false
		}
	}
	return true
}

// CheckUserPattern checks a pattern that may hold {user}: with every {user}
// read as a user id it must be a valid channel pattern, and hold no other
// braces. For configuration checks.
func CheckUserPattern(pattern string) error {
	probe := strings.ReplaceAll(pattern, UserTemplate, "u")
	if strings.ContainsAny(probe, "{}") {
		return fmt.Errorf("%w: %q: braces only in %s", ErrBadChannel, pattern, UserTemplate)
	}
	_, err := ParseChannel(probe, true)
	return err
}

// ExpandUser returns pattern with each {user} replaced by user. It fails
// when user is not a valid channel segment (IsUserSegment) or the result is
// not a valid pattern; a pattern without {user} is returned as it is.
func ExpandUser(pattern, user string) (string, error) {
	if !strings.Contains(pattern, UserTemplate) {
		return pattern, CheckUserPattern(pattern)
	}
	if !IsUserSegment(user) {
		return "", fmt.Errorf("%w: user id %q is not a channel segment", ErrBadChannel, user)
	}
	if err := CheckUserPattern(pattern); err != nil {
		return "", err
	}
	out := strings.ReplaceAll(pattern, UserTemplate, user)
	if _, err := ParseChannel(out, true); err != nil {
		return "", err
	}
	return out, nil
}

// MatchUser reports whether pattern, with {user} read as user, covers
// channel: every channel that channel names (it may be a subscription
// pattern such as "/user/42/**") matches the expanded pattern. A user id
// that is not a channel segment never matches a pattern holding {user}; an
// invalid pattern or channel matches nothing.
func MatchUser(pattern, user, channel string) bool {
	p, err := ExpandUser(pattern, user)
	if err != nil {
		return false
	}
	ps, err := ParseChannel(p, true)
	if err != nil {
		return false
	}
	cs, err := ParseChannel(channel, true)
	if err != nil {
		return false
	}
	return covers(ps, cs)
}

// OverlapsAnyUser reports whether, for some user id, pattern (which may hold
// {user}) and channel (a channel or subscription pattern) have a channel in
// common: whether an ACL rule written with {user} is about channel at all,
// so that "/stardust/inbox_{user}" applies to "/stardust/inbox_42" and
// "/stardust/*" but not to "/stardust/news". Every {user} stands for the
// same id.
func OverlapsAnyUser(pattern, channel string) bool {
	if CheckUserPattern(pattern) != nil {
		return false
	}
	cs, err := ParseChannel(channel, true)
	if err != nil {
		return false
	}
	ps := strings.Split(pattern[1:], "/")
	user := ""
	for {
		switch {
		case len(ps) == 0 || len(cs) == 0:
			return len(ps) == 0 && len(cs) == 0
		case ps[0] == "**" || cs[0] == "**":
			return true // each side still matches at least one more segment
		case cs[0] == "*" || ps[0] == "*":
		case strings.Contains(ps[0], UserTemplate):
			u, ok := bindSegment(ps[0], cs[0])
			if !ok || (user != "" && u != user) {
				return false
			}
			user = u
		case ps[0] != cs[0]:
			return false
		}
		ps, cs = ps[1:], cs[1:]
	}
}

// bindSegment finds the user id for which the template segment tmpl (holding
// {user} once or more) reads seg.
func bindSegment(tmpl, seg string) (string, bool) {
	n := strings.Count(tmpl, UserTemplate)
	lit := len(tmpl) - n*len(UserTemplate)
	if len(seg) <= lit || (len(seg)-lit)%n != 0 {
		return "", false
	}
	at := strings.Index(tmpl, UserTemplate)
	user := seg[at : at+(len(seg)-lit)/n]
	if !IsUserSegment(user) || strings.ReplaceAll(tmpl, UserTemplate, user) != seg {
		return "", false
	}
	return user, true
}
