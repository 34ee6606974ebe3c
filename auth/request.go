package auth

import (
	"net/http"
	"strings"
)

// DefaultTokenCookie is the cookie a token is read from when token_cookie
// is not set: the app sets it (HttpOnly) at login, and a plain EventSource,
// which cannot set headers, sends it.
const DefaultTokenCookie = "stardust_token"

// Where a token was found, for messages and logs.
const (
	FromExt    = "ext.token"
	FromHeader = "Authorization header"
	FromQuery  = "token parameter"
	FromCookie = "cookie"
)

// TokenFromRequest returns the token r carries and where it was found, ""
// when none: the Authorization header's Bearer credentials first, then the
// token query parameter (EventSource and JSONP cannot set headers), then the
// cookie named cookie (DefaultTokenCookie when ""). A Bayeux handshake's
// ext.token is read by the protocol and comes before all of these (see
// AuthRequest.Token). Authorization schemes other than Bearer (the Basic
// credentials of comet.auth_user) are not tokens and are passed over.
func TokenFromRequest(r *http.Request, cookie string) (token, from string) {
	if r == nil {
		return "", ""
	}
	for _, v := range r.Header.Values("Authorization") {
		scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			if cred = strings.TrimSpace(cred); cred != "" {
				return cred, FromHeader
			}
		}
	}
	if r.URL != nil {
		if t := r.URL.Query().Get("token"); t != "" {
			return t, FromQuery
		}
	}
	if cookie == "" {
		cookie = DefaultTokenCookie
	}
	for _, c := range r.CookiesNamed(cookie) {
		if c.Value != "" {
			return c.Value, FromCookie
		}
	}
	return "", ""
}
