package server

import (
	"fmt"
	"net/http"
	"net/netip"
)

// The Stardust API under the same rules as Bayeux:
//
//   - Options.AllowFrom says which client addresses may publish (the address
//     as the trusted proxies forward it); nil means loopback only, as the
//     Perl Stardust's allow_from intended;
//   - Options.PublishUser and PublishPassHash, when set, require HTTP basic
//     auth for publishing; a request with those credentials is treated as
//     authenticated user PublishUser by the ACL;
//   - the Bayeux MessageACL (the [[bayeux.acl]] rules) decides Stardust
//     publishes on the channels under Prefix as Bayeux publishes, and reads
//     (channel info with its history, long polls, SSE streams) as Bayeux
//     subscriptions to them.

// LoopbackOnly is the default AllowFrom: this machine only.
var LoopbackOnly = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// Anywhere allows every address (AllowFrom).
var Anywhere = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}

// stardustCaller is the client a Stardust request acts as for the ACL: not
// a session, only a name for the rules. Valid basic auth credentials for
// PublishUser make it authenticated.
func (s *Server) stardustCaller(r *http.Request) *Client {
	c := s.hub.NewClient("", KindStardust, 0, s.rules.clientIP(r))
	if s.opts.PublishUser != "" {
		if user, pass, ok := r.BasicAuth(); ok && user == s.opts.PublishUser && CheckPassword(s.opts.PublishPassHash, pass) {
			_ = c.SetAttr(AttrAuthenticated, "true") // not added: cannot fail
			_ = c.SetAttr(AttrUser, user)
		}
	}
	return c
}

// messageACL is the ACL Stardust requests are checked against, nil if none.
func (s *Server) messageACL() MessageACL {
	if s.opts.Bayeux == nil {
		return nil
	}
	return s.opts.Bayeux.MessageACL
}

// mayRead checks a read of channels (full Bayeux names) by the request r
// over transport, and returns the identity it was decided for (ok false:
// anonymous). The identity comes from the request (Bearer header, ?token=,
// the token cookie, connect_url), else from session, the stream's client
// (nil: none), whose kept identity must not have expired. The identity's
// channels grant first, then the ACL as for a Bayeux subscription, then the
// app's subscribe callback: the same order as Bayeux.
func (s *Server) mayRead(r *http.Request, channels []string, transport string, session *Client) (id Identity, ok bool, err error) {
	acl := s.messageACL()
	if acl == nil && !s.idh.authenticates() && s.idh.sub == nil && len(s.idh.chans) == 0 {
		return Identity{}, false, nil // nothing to ask: the usual poll costs nothing here
	}
	if id, ok, err = s.requestIdentity(r, transport, session); err != nil {
		return Identity{}, false, err
	}
	c := s.stardustCaller(r)
	if ok {
		_ = keepIdentity(c, id) // not added: cannot fail
	}
	req := ChannelRequest{Protocol: "stardust", Transport: transport, Header: r.Header}
	if s.idh.sub != nil { // only the app's subscribe callback reads it
		req.Session = s.rules.browserOf(r)
	}
	if session != nil {
		req.Client = session.ID()
	}
	m := &BayeuxMessage{Channel: "/meta/subscribe", Subscriptions: channels}
	if err := s.idh.checkSubscribe(r.Context(), acl, c, m, req); err != nil {
		return Identity{}, false, err
	}
	return id, ok, nil
}

// sessionOf is the stream client id names, if it exists and the request's
// browser may use it (bindStream), for its kept identity; nil otherwise, or
// when no Authenticator is set.
func (s *Server) sessionOf(r *http.Request, id string) *Client {
	if !s.idh.authenticates() {
		return nil
	}
	c, err := s.hub.Client(id)
	if err != nil {
		return nil
	}
	if b := c.Attr(AttrBrowser); b != "" && b != s.rules.browserOf(r) {
		return nil
	}
	return c
}

// mayPublish checks a publish: the client address, the credentials, then
// the ACL for each channel.
func (s *Server) mayPublish(r *http.Request, channels []string) error {
	ip := s.rules.clientIP(r)
	if !isTrusted(ip, s.opts.AllowFrom) {
		return fmt.Errorf("%w: publishing is not allowed from %s (see comet.allow_from)", ErrForbidden, ip)
	}
	c := s.stardustCaller(r)
	if s.opts.PublishUser != "" && c.Attr(AttrAuthenticated) != "true" {
		if _, _, given := r.BasicAuth(); given {
			return errAuthWrong
		}
		return errAuthRequired
	}
	acl := s.messageACL()
	if acl == nil {
		return nil
	}
	for _, ch := range channels {
		if err := acl(c, &BayeuxMessage{Channel: ch}); err != nil {
			return fmt.Errorf("%w: %v", ErrForbidden, err)
		}
	}
	return nil
}

var (
	errAuthRequired = fmt.Errorf("%w: publishing needs HTTP basic auth (comet.auth_user)", ErrForbidden)
	errAuthWrong    = fmt.Errorf("%w: wrong user name or password for publishing (comet.auth_user, comet.auth_pass)", ErrForbidden)
)

// writeDenied answers a refused Stardust request: 401 with a challenge when
// credentials are missing or wrong, else 403.
// publishChannels reads the channels of a request that changes them (a
// publish, a DELETE) and checks that its client may: otherwise it answers
// and reports false.
func (s *Server) publishChannels(w http.ResponseWriter, r *http.Request) (names, full []string, ok bool) {
	names, full, err := s.channelVars(r)
	if err != nil {
		writeError(w, err)
		return nil, nil, false
	}
	if err := s.mayPublish(r, full); err != nil {
		writeDenied(w, err)
		return nil, nil, false
	}
	return names, full, true
}

func writeDenied(w http.ResponseWriter, err error) {
	if err == errAuthRequired || err == errAuthWrong {
		w.Header().Set("WWW-Authenticate", `Basic realm="stardust", charset="UTF-8"`)
		writeJSON(w, http.StatusUnauthorized, errorBody{Error: err.Error(), Status: http.StatusUnauthorized})
		return
	}
	writeError(w, err)
}
