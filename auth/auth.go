package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/server"
)

// Defaults of Options.
const (
	DefaultCacheTTL        = 60 * time.Second
	DefaultCallbackTimeout = 2 * time.Second
	DefaultCacheSize       = 100000
	DefaultJWKSRefresh     = 10 * time.Minute
)

// Options configure Auth; they mirror the [auth] section of the
// configuration. Zero values take the defaults noted.
type Options struct {
	// HMACSecret checks HS256, HS384 and HS512 tokens; at least
	// MinHMACSecret bytes. nil: no HMAC tokens.
	HMACSecret []byte
	// PublicKeyFiles are PEM files of public keys (RSA, ECDSA, Ed25519)
	// checking RS*/PS*, ES* and EdDSA tokens.
	PublicKeyFiles []string
	// Issuer and Audience, when set, must be the token's iss and among its aud.
	Issuer, Audience string
	// JWKSURL is a JSON Web Key Set fetched at start and every JWKSRefresh
	// (default 10 minutes); a failed fetch keeps the last good keys.
	JWKSURL     string
	JWKSRefresh time.Duration
	// TokenCookie is the cookie a token is read from; default DefaultTokenCookie.
	TokenCookie string
	// ConnectURL, SubscribeURL and PublishURL are the app's callbacks;
	// "" for none.
	ConnectURL, SubscribeURL, PublishURL string
	// ForwardHeaders are the request headers passed to the callbacks;
	// nil: DefaultForwardHeaders. An empty non-nil list forwards none.
	ForwardHeaders []string
	// CacheTTL is how long the app's answers are kept (default 60s);
	// CacheSize how many of each kind at most (default 100,000).
	CacheTTL  time.Duration
	CacheSize int
	// CallbackTimeout bounds each call to the app or the key server
	// (default 2s).
	CallbackTimeout time.Duration
	// Log receives warnings (a callback or key fetch failed); nil: none.
	Log *logrus.Entry
	// Now is the clock (tests); nil: time.Now.
	Now func() time.Time
}

// Auth identifies requests from tokens and the app's connect callback, and
// asks the app about subscribes and publishes. Safe for concurrent use;
// Close ends its goroutines.
type Auth struct {
	tokenCookie string
	ttl         time.Duration
	now         func() time.Time

	tokens                        *verifier // nil: tokens are not accepted
	jwks                          *jwksSource
	connectCB, subscribeCB, pubCB *callback // nil when not configured

	identities *cache[server.Identity]
	decisions  *cache[struct{}]
	counts     struct{ connect, subscribe, publish atomic.Int64 }

	client    *http.Client
	stop      context.CancelFunc
	closeOnce sync.Once
}

var (
	_ server.Authenticator       = (*Auth)(nil)
	_ server.SubscribeAuthorizer = (*Auth)(nil)
	_ server.PublishAuthorizer   = (*Auth)(nil)
)

// New checks opts, reads the key files and, with a JWKS URL, starts
// fetching it. Every problem is reported, naming the option's config key.
func New(opts Options) (*Auth, error) {
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.CallbackTimeout == 0 {
		opts.CallbackTimeout = DefaultCallbackTimeout
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.JWKSRefresh == 0 {
		opts.JWKSRefresh = DefaultJWKSRefresh
	}
	if opts.ForwardHeaders == nil {
		opts.ForwardHeaders = DefaultForwardHeaders()
	}
	if opts.TokenCookie == "" {
		opts.TokenCookie = DefaultTokenCookie
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var problems []error
	if opts.HMACSecret != nil && len(opts.HMACSecret) < MinHMACSecret {
		problems = append(problems, fmt.Errorf("auth.token_hmac_secret: %d bytes: want %d or more (openssl rand -hex 32)", len(opts.HMACSecret), MinHMACSecret))
	}
	var static []verifyKey
	if opts.HMACSecret != nil {
		static = append(static, verifyKey{key: append([]byte(nil), opts.HMACSecret...)})
	}
	for _, f := range opts.PublicKeyFiles {
		key, err := ReadPublicKeyFile(f)
		if err != nil {
			problems = append(problems, fmt.Errorf("auth.token_public_keys: %w", err))
			continue
		}
		static = append(static, verifyKey{key: key})
	}
	for key, u := range map[string]string{"auth.token_jwks_url": opts.JWKSURL, "auth.connect_url": opts.ConnectURL,
		"auth.subscribe_url": opts.SubscribeURL, "auth.publish_url": opts.PublishURL} {
		if err := CheckURL(u); err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", key, err))
		}
	}
	if opts.CacheTTL < 0 || opts.CallbackTimeout < 0 || opts.CacheSize < 0 || opts.JWKSRefresh < 0 {
		problems = append(problems, errors.New("auth: a negative cache_ttl, callback_timeout, cache size or JWKS refresh"))
	}
	if err := errors.Join(problems...); err != nil {
		return nil, err
	}

	base, stop := context.WithCancel(context.Background())
	a := &Auth{tokenCookie: opts.TokenCookie, ttl: opts.CacheTTL, now: opts.Now, stop: stop,
		identities: newCache[server.Identity](base, opts.CacheSize, opts.Now),
		decisions:  newCache[struct{}](base, opts.CacheSize, opts.Now)}
	client := newHTTPClient(opts.CallbackTimeout)
	a.client = client
	if opts.JWKSURL != "" {
		a.jwks = newJWKSSource(opts.JWKSURL, opts.JWKSRefresh, client, opts.Log)
	}
	if len(static) > 0 || a.jwks != nil {
		a.tokens = newVerifier(static, a.jwks, opts.Issuer, opts.Audience, opts.Now)
	}
	newCB := func(key, u string) *callback {
		if u == "" {
			return nil
		}
		return &callback{key: key, url: u, client: client, timeout: opts.CallbackTimeout,
			forward: canonicalHeaders(opts.ForwardHeaders), log: opts.Log}
	}
	a.connectCB = newCB("auth.connect_url", opts.ConnectURL)
	a.subscribeCB = newCB("auth.subscribe_url", opts.SubscribeURL)
	a.pubCB = newCB("auth.publish_url", opts.PublishURL)
	return a, nil
}

// CheckURL accepts "" (none) or an absolute http or https URL with a host.
func CheckURL(u string) error {
	if u == "" {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil || p.Fragment != "" {
		return fmt.Errorf("want an http:// or https:// URL with a host and no user or #fragment, got %q", u)
	}
	return nil
}

// Close stops the key refresh and cancels calls to the app in progress;
// calling it again does nothing. The Auth must not be used afterwards.
func (a *Auth) Close() {
	a.closeOnce.Do(func() {
		a.stop()
		if a.jwks != nil {
			a.jwks.close()
		}
		a.client.CloseIdleConnections()
	})
}

// Authenticate says who is behind req. A token (req.Token, else one of the
// places TokenFromRequest reads) is verified when token keys are
// configured, and then decides alone: a bad token is refused even when
// connect_url is set. Without a token, or without token keys, connect_url
// is asked (when set) with the forwarded headers. With neither, the error
// wraps server.ErrNoCredentials: the caller is anonymous.
func (a *Auth) Authenticate(ctx context.Context, req server.AuthRequest) (server.Identity, error) {
	token, from := req.Token, FromExt
	if token == "" {
		token, from = TokenFromRequest(req.Request, a.tokenCookie)
	}
	switch {
	case token != "" && a.tokens != nil:
		id, err := a.tokens.verify(token)
		if err != nil {
			return id, fmt.Errorf("%w (from the %s)", err, from)
		}
		return id, nil
	case a.connectCB != nil:
		return a.connect(ctx, req)
	case token != "":
		return server.Identity{}, fmt.Errorf("%w: a token was given (in the %s) but no token key is configured (auth.token_hmac_secret, token_public_keys or token_jwks_url)", server.ErrUnauthenticated, from)
	}
	return server.Identity{}, fmt.Errorf("%w: no token", server.ErrNoCredentials)
}

// AuthorizeSubscribe asks subscribe_url; nil (allowed) when it is not set.
func (a *Auth) AuthorizeSubscribe(ctx context.Context, req server.ChannelRequest) error {
	if a.subscribeCB == nil {
		return nil
	}
	return a.channelCall(ctx, a.subscribeCB, "subscribe", req)
}

// AuthorizePublish asks publish_url; nil (allowed) when it is not set.
func (a *Auth) AuthorizePublish(ctx context.Context, req server.ChannelRequest) error {
	if a.pubCB == nil {
		return nil
	}
	return a.channelCall(ctx, a.pubCB, "publish", req)
}

// Calls counts the calls made to the app so far (for tests, metrics and
// BENCHMARKS.md): answers from the cache and collapsed calls are not counted.
func (a *Auth) Calls() (connect, subscribe, publish int64) {
	return a.counts.connect.Load(), a.counts.subscribe.Load(), a.counts.publish.Load()
}
