package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stardust-go/stardust/server"
)

// MaxTokenBytes is the longest token read; a longer one is refused before
// any decoding, so that a client cannot make us base64- and JSON-decode
// megabytes per request.
const MaxTokenBytes = 8 << 10

// maxUserBytes bounds the user id (sub, or the connect answer's user).
const maxUserBytes = 256

// Leeway is the clock skew allowed on exp and nbf.
const Leeway = 5 * time.Second

// claims are the token claims we read.
type claims struct {
	jwt.RegisteredClaims
	Channels []string        `json:"channels,omitempty"`
	Info     json.RawMessage `json:"info,omitempty"`
}

// verifier checks signed tokens against static keys (the HMAC secret and
// PEM files) and the keys of a JWKS URL.
type verifier struct {
	static []verifyKey
	jwks   *jwksSource // nil without token_jwks_url
	parser *jwt.Parser
	now    func() time.Time

	issuer, audience string
}

func newVerifier(static []verifyKey, jwks *jwksSource, issuer, audience string, now func() time.Time) *verifier {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(algorithms),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(now),
		jwt.WithStrictDecoding(),
	}
	if issuer != "" {
		opts = append(opts, jwt.WithIssuer(issuer))
	}
	if audience != "" {
		opts = append(opts, jwt.WithAudience(audience))
	}
	return &verifier{static: static, jwks: jwks, parser: jwt.NewParser(opts...), now: now,
		issuer: issuer, audience: audience}
}

// keyError is a keyfunc refusal, whose text is ours and fit for a client.
type keyError string

func (e keyError) Error() string { return string(e) }

// keys picks the keys that may check token: those of its algorithm's kind
// and, when it names a key id, those with that id (or none, as a PEM file's).
func (v *verifier) keys(token *jwt.Token) (any, error) {
	alg := token.Method.Alg()
	kid, _ := token.Header["kid"].(string)
	cands := v.static
	var jwksErr error
	if v.jwks != nil {
		var dyn []verifyKey
		dyn, jwksErr = v.jwks.current()
		cands = append(append([]verifyKey{}, cands...), dyn...)
	}
	var set jwt.VerificationKeySet
	kidKnown := false
	for _, k := range cands {
		if kid != "" && k.kid != "" && k.kid != kid {
			continue
		}
		kidKnown = kidKnown || (kid != "" && k.kid == kid)
		if k.fits(alg) {
			set.Keys = append(set.Keys, k.key)
		}
	}
	if v.jwks != nil && jwksErr == nil && kid != "" && !kidKnown {
		v.jwks.unknownKid(v.now())
	}
	if len(set.Keys) == 0 {
		switch {
		case jwksErr != nil && len(v.static) == 0:
			return nil, keyError(jwksErr.Error())
		case kid != "" && v.jwks != nil && !kidKnown:
			return nil, keyError(fmt.Sprintf("no key with kid %s for %s (the key set is fetched again shortly)", short(kid), alg))
		case strings.HasPrefix(alg, "HS"):
			return nil, keyError(fmt.Sprintf("no HMAC secret is configured to check %s (token_hmac_secret)", alg))
		}
		return nil, keyError(fmt.Sprintf("no public key configured can check %s", alg))
	}
	return set, nil
}

// verify checks a token and returns the identity it carries, or an error
// wrapping server.ErrUnauthenticated or server.ErrTokenExpired whose text
// says what is wrong (never the token itself).
func (v *verifier) verify(token string) (server.Identity, error) {
	if len(token) > MaxTokenBytes {
		return server.Identity{}, refused("longer than %d bytes", MaxTokenBytes)
	}
	var c claims
	t, err := v.parser.ParseWithClaims(token, &c, v.keys)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.issuer != "" && c.Issuer == "":
		return server.Identity{}, refused("no issuer (iss), and token_issuer is set")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.audience != "" && len(c.Audience) == 0:
		return server.Identity{}, refused("no audience (aud), and token_audience is set")
	default:
		return server.Identity{}, tokenError(t, err)
	}
	return c.identity()
}

func (c *claims) identity() (server.Identity, error) {
	if c.Subject == "" {
		return server.Identity{}, refused("the sub claim (the user id) is missing")
	}
	if err := checkUser(c.Subject); err != nil {
		return server.Identity{}, refused("sub: %v", err)
	}
	id := server.Identity{User: c.Subject}
	if c.ExpiresAt != nil {
		id.ExpireAt = c.ExpiresAt.Time
	}
	var err error
	if id.Channels, err = checkChannels(c.Channels); err != nil {
		return server.Identity{}, refused("channels: %v", err)
	}
	if id.Info, err = checkInfo(c.Info); err != nil {
		return server.Identity{}, refused("info: %v", err)
	}
	return id, nil
}

// checkUser refuses user ids that are too long or hold control characters
// or invalid UTF-8 (they end up in logs and callback bodies).
func checkUser(user string) error {
	if len(user) > maxUserBytes {
		return fmt.Errorf("longer than %d bytes", maxUserBytes)
	}
	if !utf8.ValidString(user) {
		return errors.New("not UTF-8")
	}
	for _, r := range user {
		if r < 0x20 || r == 0x7f {
			return errors.New("holds a control character")
		}
	}
	return nil
}

// maxChannels bounds a channels claim or answer.
const maxChannels = 128

func checkChannels(chs []string) ([]string, error) {
	if len(chs) > maxChannels {
		return nil, fmt.Errorf("more than %d patterns", maxChannels)
	}
	for _, ch := range chs {
		if err := server.CheckUserPattern(ch); err != nil {
			return nil, err
		}
	}
	if len(chs) == 0 {
		return nil, nil
	}
	return chs, nil
}

// checkInfo accepts a JSON object, or nothing (absent or null).
func checkInfo(info json.RawMessage) (json.RawMessage, error) {
	info = bytes.TrimSpace(info)
	if len(info) == 0 || string(info) == "null" {
		return nil, nil
	}
	if info[0] != '{' || !json.Valid(info) {
		return nil, errors.New("want a JSON object")
	}
	return append(json.RawMessage(nil), info...), nil
}

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: token refused: %s", server.ErrUnauthenticated, fmt.Sprintf(format, args...))
}

// tokenError words a golang-jwt error for the client.
func tokenError(t *jwt.Token, err error) error {
	var ke keyError
	alg := ""
	if t != nil {
		alg, _ = t.Header["alg"].(string)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refused("malformed (want header.payload.signature in base64url, with JSON claims of the right types)")
	case t != nil && !accepted(alg):
		return refused("algorithm %s is not accepted (want one of %s)", short(alg), strings.Join(algorithms, ", "))
	case errors.As(err, &ke):
		return refused("%s", ke)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: the token has expired (exp): get a fresh one", server.ErrTokenExpired)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return refused("not valid yet (nbf)")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return refused("wrong issuer (iss)")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return refused("wrong audience (aud)")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refused("bad signature")
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return refused("invalid claims")
	}
	return refused("cannot be verified")
}

// short quotes an attacker-chosen string for a message, cut to 40 bytes.
func short(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return fmt.Sprintf("%q", s)
}
