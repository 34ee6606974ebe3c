package server

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sessions are bound to their owner, so that an id seen by someone else (in
// a log, over a shoulder, in a proxy) is worth nothing to them:
//
//   - a Bayeux session to the browser that made it, by the BAYEUX_BROWSER
//     cookie (HttpOnly, SameSite=Lax, as CometD's), kept as the session's
//     AttrBrowser so that every process sharing the engine checks it; a
//     request naming the session without that cookie is answered as for an
//     unknown client (402), and the client handshakes again. A handshake
//     that carried no cookie (a first visit) gets one in its answer, and
//     the session is bound at its first use: to the cookie that request
//     presents, or to the socket it came over (clients such as Faye open
//     their WebSocket before the handshake's answer has set the cookie;
//     the upgrade's answer sets it);
//   - a Bayeux session handshaken and first used over HTTP without a cookie
//     (scripts, devices, the Perl POE client: clients that keep no cookies)
//     is a bearer session: its 128-bit clientId, never published, is the
//     capability. Only cookie-less requests may use it; a request that
//     presents a cookie never does, and a cookie-less request never uses a
//     session bound to a browser;
//   - a Bayeux session handshaken or connected over a WebSocket to that
//     socket (AttrSocket) for the socket's life;
//   - a Stardust stream id first polled with a browser cookie to that
//     browser; ids first polled without one (curl, scripts) are not bound,
//     and are safe only because ids are never published.
//
// Only cookie values this server issued count (browser.go): any other
// value is treated as no cookie, and a new one is issued.

// BrowserCookie is the name of the cookie that identifies a browser.
const BrowserCookie = "BAYEUX_BROWSER"

// Session attributes of ownership.
const (
	// AttrBrowser is the BAYEUX_BROWSER value of the browser that owns the
	// session; for a Bayeux session bound at its first use, that value and
	// the time (firstUse); "-" for a bearer session (bearer).
	AttrBrowser = "browser"
	AttrSocket  = "socket" // the id of the WebSocket the session is bound to, while it is open
)

// browserCookie is a new browser cookie for the API under base.
func (rr requestRules) browserCookie(r *http.Request, base, value string) *http.Cookie {
	p := base
	if p == "" {
		p = "/"
	}
	secure := r.TLS != nil ||
		(isTrusted(peerAddr(r), rr.TrustedProxies) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"))
	return &http.Cookie{Name: BrowserCookie, Value: value, Path: p, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: secure}
}

// caller is who sent a Bayeux batch: what ownership is checked against.
type caller struct {
	remote    string // the client address
	transport string
	browser   string // the BAYEUX_BROWSER value, as presented or as just issued
	presented bool   // the request carried browser (else it was issued in the answer)
	socket    string // the WebSocket's id ("" for HTTP transports)
	// req is the request (for a WebSocket, its upgrade request), whose
	// token places and headers a handshake's Authenticator reads; ctx bounds
	// the calls to the app made for the batch.
	req *http.Request
	ctx context.Context
}

// context returns the caller's context (never nil).
func (who caller) context() context.Context {
	if who.ctx == nil {
		return context.Background()
	}
	return who.ctx
}

// session is the browser session key the app's answers are cached under:
// the browser cookie the request presented, "" for none.
func (who caller) session() string {
	if who.presented {
		return who.browser
	}
	return ""
}

// bearer is the AttrBrowser of a bearer session: one handshaken and first
// used over HTTP without a browser cookie. No cookie value equals it (values
// are hex), so only cookie-less requests claim such a session.
const bearer = "-"

// A session bound at its first use (handshaken without a cookie) may move
// to another cookie of the browser for firstUseWindow: two tabs of a first
// visit that handshake at once each get a new cookie, and the browser keeps
// only the last one, which may not be the one a session was first used
// with (the first tab's first connect may even be served before the second
// tab's handshake issued the cookie that is kept). Only to a cookie issued
// within cookieRace of the first one, presented from the address the
// session was handshaken from: the cookies of that race, not one a stranger
// got later or elsewhere. A stranger would also need the session's id,
// which is never published, within those seconds and from that address. The window is long enough for
// a held connect (poll_timeout) to come back with the cookie the browser
// kept.
const (
	firstUseWindow = 2 * time.Minute
	cookieRace     = 10 * time.Second
)

// racedFor reports whether the browser value v may take over a session
// first used at at with the value first (see firstUseWindow).
func racedFor(v, first string, at time.Time) bool {
	return time.Since(at) < firstUseWindow &&
		browserIssued(v).Sub(browserIssued(first)).Abs() < cookieRace
}

// firstUse is the AttrBrowser of a session bound at its first use, at that
// time, to browser: "~" browser "@" Unix microseconds.
func firstUse(browser string, at time.Time) string {
	return "~" + browser + "@" + strconv.FormatInt(at.UnixMicro(), 10)
}

// parseFirstUse reads a firstUse value; ok is false for any other value.
func parseFirstUse(v string) (browser string, at time.Time, ok bool) {
	rest, ok := strings.CutPrefix(v, "~")
	if !ok {
		return "", time.Time{}, false
	}
	browser, ms, ok := strings.Cut(rest, "@")
	n, err := strconv.ParseInt(ms, 10, 64)
	return browser, time.UnixMicro(n), ok && err == nil
}

// claims reports whether the caller may act as session c: the browser and
// the socket the session is bound to, if any, must be the caller's. A
// session at its first use (handshaken without a cookie) is bound now: to
// the caller's browser when the request presented a cookie or came over a
// socket (whose upgrade answer set the cookie), or for a while to another
// cookie of the same race (firstUseWindow), then for good; else it becomes
// a bearer session, so that a client that keeps no cookies can go on using
// it.
func (who caller) claims(c *Client) bool {
	b := c.Attr(AttrBrowser)
	first, at, moving := parseFirstUse(b)
	switch {
	case b == "":
		v := bearer
		if who.presented || who.socket != "" {
			v = firstUse(who.browser, time.Now())
		}
		if err := c.SetAttr(AttrBrowser, v); err != nil {
			return false
		}
	case b == bearer:
		if who.presented {
			return false // a browser's request never uses a cookie-less session
		}
	case moving && first == who.browser:
	case moving && who.presented && who.remote == c.Remote() && racedFor(who.browser, first, at):
		if err := c.SetAttr(AttrBrowser, firstUse(who.browser, at)); err != nil {
			return false
		}
	case moving || b != who.browser:
		return false
	}
	if s := c.Attr(AttrSocket); s != "" && s != who.socket {
		return false
	}
	return true
}

// bindNew marks a client-to-be (not yet added) as the caller's: bound to
// its socket, and to its browser if the request proved one (a cookie it
// presented, or the socket that carries it).
func (who caller) bindNew(c *Client) {
	if who.browser != "" && (who.presented || who.socket != "") {
		_ = c.SetAttr(AttrBrowser, who.browser) // not added yet: cannot fail
	}
	if who.socket != "" {
		_ = c.SetAttr(AttrSocket, who.socket)
	}
}

// bindStream binds a Stardust stream id to the browser that first polls it,
// and refuses it to any other browser.
func bindStream(c *Client, created bool, browser string) error {
	if created {
		if browser != "" {
			return c.SetAttr(AttrBrowser, browser)
		}
		return nil
	}
	if b := c.Attr(AttrBrowser); b != "" && b != browser {
		return fmt.Errorf("%w: stream id %q belongs to another browser", ErrForbidden, c.ID())
	}
	return nil
}
