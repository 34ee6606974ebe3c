package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stardust-go/stardust/server"
)

// testNow is the fixed clock of the token tests.
var testNow = time.Unix(1_800_000_000, 0)

// testKeys are generated once per test binary: RSA generation is slow.
type testKeySet struct {
	secret  []byte
	rsa     *rsa.PrivateKey
	rsa2    *rsa.PrivateKey // another RSA key: a valid signature by a key we do not know
	ec      *ecdsa.PrivateKey
	ec384   *ecdsa.PrivateKey
	ed      ed25519.PrivateKey
	rsaPEM  []byte
	ecPEM   []byte
	edPEM   []byte
	ec384PM []byte
}

var (
	keysOnce sync.Once
	keysVal  testKeySet
)

func testKeys(t testing.TB) testKeySet {
	t.Helper()
	keysOnce.Do(func() {
		k := &keysVal
		k.secret = []byte("0123456789abcdef0123456789abcdef-secret")
		var err error
		if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if k.ec384, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		k.rsaPEM = publicPEM(k.rsa.Public())
		k.ecPEM = publicPEM(k.ec.Public())
		k.edPEM = publicPEM(k.ed.Public())
		k.ec384PM = publicPEM(k.ec384.Public())
	})
	return keysVal
}

func publicPEM(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// writeFiles writes each PEM to a file in a temporary directory.
func writeFiles(t testing.TB, pems ...[]byte) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i, p := range pems {
		path := filepath.Join(dir, "key"+string(rune('a'+i))+".pem")
		if err := os.WriteFile(path, p, 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// rawToken builds a token from a header and claims as given, signed with
// HMAC over the given key bytes (or with the signature given).
func rawToken(header, claims string, sig []byte) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(claims)) + "." + enc(sig)
}

// hmacRaw signs a raw header and claims with HS256 over key.
func hmacRaw(t testing.TB, header, claims string, key []byte) string {
	t.Helper()
	unsigned := strings.TrimSuffix(rawToken(header, claims, nil), ".")
	sig, err := jwt.SigningMethodHS256.Sign(unsigned, key)
	if err != nil {
		t.Fatal(err)
	}
	return unsigned + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func claimsFor(sub string) jwt.MapClaims {
	return jwt.MapClaims{"sub": sub, "exp": testNow.Add(time.Hour).Unix()}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func newTestAuth(t testing.TB, opts Options) *Auth {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func TestTokens(t *testing.T) {
	k := testKeys(t)
	a := newTestAuth(t, Options{HMACSecret: k.secret, PublicKeyFiles: writeFiles(t, k.rsaPEM, k.ecPEM, k.edPEM),
		Issuer: "https://app.example", Audience: "stardust"})
	base := with(claimsFor("42"), "iss", "https://app.example", "aud", "stardust")
	hs256 := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, k.secret, c, nil) }
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, base, nil)
	// Algorithm confusion: an HS256 token whose "secret" is the RSA
	// public key's PEM, which anyone has.
	confusedTok := hmacRaw(t, `{"alg":"HS256","typ":"JWT"}`, `{"sub":"42","iss":"https://app.example","aud":"stardust"}`, k.rsaPEM)
	good := hs256(base)
	tampered := good[:len(good)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(good, "AA")]

	tests := []struct {
		name  string
		token string
		user  string // "" when refused
		err   error  // the sentinel wanted when refused
		msg   string // a part of the message
	}{
		{"HS256", good, "42", nil, ""},
		{"HS384", sign(t, jwt.SigningMethodHS384, k.secret, base, nil), "42", nil, ""},
		{"HS512", sign(t, jwt.SigningMethodHS512, k.secret, base, nil), "42", nil, ""},
		{"RS256", sign(t, jwt.SigningMethodRS256, k.rsa, base, nil), "42", nil, ""},
		{"PS256", sign(t, jwt.SigningMethodPS256, k.rsa, base, nil), "42", nil, ""},
		{"ES256", sign(t, jwt.SigningMethodES256, k.ec, base, nil), "42", nil, ""},
		{"EdDSA", sign(t, jwt.SigningMethodEdDSA, k.ed, base, nil), "42", nil, ""},
		{"audience list", hs256(with(base, "aud", []string{"other", "stardust"})), "42", nil, ""},
		{"no exp", hs256(with(base, "exp", nil)), "42", nil, ""},
		{"exp within leeway", hs256(with(base, "exp", testNow.Add(-3*time.Second).Unix())), "42", nil, ""},
		{"nbf within leeway", hs256(with(base, "nbf", testNow.Add(3*time.Second).Unix())), "42", nil, ""},
		{"alg none", none, "", server.ErrUnauthenticated, `algorithm "none" is not accepted`},
		{"alg none no signature", rawToken(`{"alg":"none"}`, `{"sub":"42"}`, nil), "", server.ErrUnauthenticated, `"none" is not accepted`},
		{"alg unknown", rawToken(`{"alg":"HS999","typ":"JWT"}`, `{"sub":"42"}`, []byte("x")), "", server.ErrUnauthenticated, `"HS999" is not accepted`},
		{"alg missing", rawToken(`{"typ":"JWT"}`, `{"sub":"42"}`, []byte("x")), "", server.ErrUnauthenticated, `is not accepted`},
		{"alg confusion HS256 with the RSA key", confusedTok, "", server.ErrUnauthenticated, "bad signature"},
		{"bad signature", tampered, "", server.ErrUnauthenticated, "bad signature"},
		{"unknown RSA key", sign(t, jwt.SigningMethodRS256, k.rsa2, base, nil), "", server.ErrUnauthenticated, "bad signature"},
		{"ES384 with no P-384 key", sign(t, jwt.SigningMethodES384, k.ec384, base, nil), "", server.ErrUnauthenticated, "no public key configured can check ES384"},
		{"wrong issuer", hs256(with(base, "iss", "https://evil.example")), "", server.ErrUnauthenticated, "wrong issuer"},
		{"no issuer", hs256(with(base, "iss", nil)), "", server.ErrUnauthenticated, "no issuer"},
		{"wrong audience", hs256(with(base, "aud", "other")), "", server.ErrUnauthenticated, "wrong audience"},
		{"no audience", hs256(with(base, "aud", nil)), "", server.ErrUnauthenticated, "no audience"},
		{"expired", hs256(with(base, "exp", testNow.Add(-10*time.Second).Unix())), "", server.ErrTokenExpired, "has expired"},
		{"not valid yet", hs256(with(base, "nbf", testNow.Add(time.Minute).Unix())), "", server.ErrUnauthenticated, "not valid yet"},
		{"no sub", hs256(with(base, "sub", nil)), "", server.ErrUnauthenticated, "sub claim"},
		{"empty sub", hs256(with(base, "sub", "")), "", server.ErrUnauthenticated, "sub claim"},
		{"numeric sub", hs256(with(base, "sub", 42)), "", server.ErrUnauthenticated, "malformed"},
		{"control character in sub", hs256(with(base, "sub", "a\nb")), "", server.ErrUnauthenticated, "control"},
		{"long sub", hs256(with(base, "sub", strings.Repeat("x", 300))), "", server.ErrUnauthenticated, "longer than"},
		{"channels", hs256(with(base, "channels", []string{"/user/{user}/**", "/news"})), "42", nil, ""},
		{"bad channel", hs256(with(base, "channels", []string{"/user/*/x"})), "", server.ErrUnauthenticated, "channels"},
		{"channels not a list", hs256(with(base, "channels", "/news")), "", server.ErrUnauthenticated, "malformed"},
		{"info", hs256(with(base, "info", map[string]any{"name": "Ann"})), "42", nil, ""},
		{"info not an object", hs256(with(base, "info", []int{1})), "", server.ErrUnauthenticated, "info"},
		{"malformed one part", "abc", "", server.ErrUnauthenticated, "malformed"},
		{"malformed bad base64", "a.b.c", "", server.ErrUnauthenticated, "malformed"},
		{"malformed header not JSON", rawToken(`{alg}`, `{"sub":"42"}`, nil), "", server.ErrUnauthenticated, "malformed"},
		{"malformed claims not JSON", rawToken(`{"alg":"HS256"}`, `[`, nil), "", server.ErrUnauthenticated, "malformed"},
		{"too long", strings.Repeat("a", MaxTokenBytes+1), "", server.ErrUnauthenticated, "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(t.Context(), server.AuthRequest{Token: tc.token})
			if tc.user != "" {
				if err != nil || id.User != tc.user {
					t.Fatalf("got %+v, %v; want user %q", id, err, tc.user)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", id)
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %q; want %v with %q", err, tc.err, tc.msg)
			}
			if len(tc.token) > 20 && strings.Contains(err.Error(), tc.token) {
				t.Fatal("the error repeats the token")
			}
		})
	}
}

func TestTokenIdentity(t *testing.T) {
	k := testKeys(t)
	a := newTestAuth(t, Options{HMACSecret: k.secret})
	tok := sign(t, jwt.SigningMethodHS256, k.secret, with(claimsFor("42"),
		"channels", []string{"/user/{user}/**"}, "info", map[string]any{"name": "Ann"}), nil)
	id, err := a.Authenticate(t.Context(), server.AuthRequest{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "42" || !id.ExpireAt.Equal(testNow.Add(time.Hour)) || string(id.Info) != `{"name":"Ann"}` ||
		!id.Grants("/user/42/x") || id.Grants("/user/43/x") {
		t.Errorf("identity %+v", id)
	}
}

// Only the kind of key that goes with an algorithm checks it: with only an
// RSA key configured, an HS256 token "signed" with that key's PEM is not
// checked at all.
func TestAlgorithmConfusionWithoutSecret(t *testing.T) {
	k := testKeys(t)
	a := newTestAuth(t, Options{PublicKeyFiles: writeFiles(t, k.rsaPEM)})
	tok := sign(t, jwt.SigningMethodHS256, k.rsaPEM, claimsFor("42"), nil)
	_, err := a.Authenticate(t.Context(), server.AuthRequest{Token: tok})
	if !errors.Is(err, server.ErrUnauthenticated) || !strings.Contains(err.Error(), "no HMAC secret") {
		t.Fatalf("got %v", err)
	}
}

func TestTokenPlaces(t *testing.T) {
	k := testKeys(t)
	a := newTestAuth(t, Options{HMACSecret: k.secret, TokenCookie: "tok"})
	tok := func(sub string) string { return sign(t, jwt.SigningMethodHS256, k.secret, claimsFor(sub), nil) }
	tests := []struct {
		name string
		ext  string
		mod  func(r *http.Request)
		user string
		from string
	}{
		{"ext.token first", tok("ext"), func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok("hdr")) }, "ext", FromExt},
		{"bearer", "", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+tok("hdr")) }, "hdr", FromHeader},
		{"bearer before query", "", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer "+tok("hdr"))
			r.URL.RawQuery = "token=" + tok("query")
		}, "hdr", FromHeader},
		{"basic is not a token", "", func(r *http.Request) {
			r.SetBasicAuth("u", "p")
			r.URL.RawQuery = "token=" + tok("query")
		}, "query", FromQuery},
		{"query before cookie", "", func(r *http.Request) {
			r.URL.RawQuery = "token=" + tok("query")
			r.AddCookie(&http.Cookie{Name: "tok", Value: tok("cookie")})
		}, "query", FromQuery},
		{"cookie", "", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "tok", Value: tok("cookie")}) }, "cookie", FromCookie},
		{"other cookie", "", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: DefaultTokenCookie, Value: tok("c")}) }, "", ""},
		{"none", "", func(*http.Request) {}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/comet/sse", nil)
			tc.mod(r)
			token, from := TokenFromRequest(r, "tok")
			if tc.ext == "" && from != tc.from {
				t.Errorf("TokenFromRequest from %q, want %q", from, tc.from)
			}
			_ = token
			id, err := a.Authenticate(t.Context(), server.AuthRequest{Token: tc.ext, Request: r})
			if tc.user == "" {
				if !errors.Is(err, server.ErrNoCredentials) {
					t.Fatalf("got %+v, %v; want ErrNoCredentials", id, err)
				}
				return
			}
			if err != nil || id.User != tc.user {
				t.Fatalf("got %+v, %v; want %q", id, err, tc.user)
			}
		})
	}
	if tok, _ := TokenFromRequest(nil, ""); tok != "" {
		t.Error("a nil request has a token")
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	k := testKeys(t)
	dir := t.TempDir()
	priv, _ := x509.MarshalPKCS8PrivateKey(k.ec)
	files := map[string][]byte{
		"private.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}),
		"junk.pem":    []byte("not pem"),
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	files["small.pem"] = publicPEM(small.Public())
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		opts Options
		msg  string
	}{
		{Options{HMACSecret: []byte("short")}, "auth.token_hmac_secret"},
		{Options{PublicKeyFiles: []string{filepath.Join(dir, "missing.pem")}}, "no such file"},
		{Options{PublicKeyFiles: []string{filepath.Join(dir, "private.pem")}}, "a private key does not belong here"},
		{Options{PublicKeyFiles: []string{filepath.Join(dir, "junk.pem")}}, "no PEM block"},
		{Options{PublicKeyFiles: []string{filepath.Join(dir, "small.pem")}}, "1024 bits"},
		{Options{ConnectURL: "ftp://app/x"}, "auth.connect_url"},
		{Options{SubscribeURL: "/relative"}, "auth.subscribe_url"},
		{Options{JWKSURL: "http://user:pw@host/jwks"}, "auth.token_jwks_url"},
		{Options{PublishURL: "http://"}, "auth.publish_url"},
	} {
		_, err := New(tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("New(%+v) = %v; want %q", tc.opts, err, tc.msg)
		}
	}
}

// The path a client's token takes: whatever the bytes, no panic, and what
// is accepted has a user and verifies again the same.
func FuzzVerifyToken(f *testing.F) {
	k := testKeys(f)
	paths := writeFiles(f, k.rsaPEM, k.ecPEM, k.edPEM)
	a := newTestAuth(f, Options{HMACSecret: k.secret, PublicKeyFiles: paths})
	c := with(claimsFor("42"), "channels", []string{"/user/{user}/**"}, "info", map[string]any{"a": 1})
	for _, s := range []string{
		sign(f, jwt.SigningMethodHS256, k.secret, c, nil),
		sign(f, jwt.SigningMethodRS256, k.rsa, c, map[string]any{"kid": "k1"}),
		sign(f, jwt.SigningMethodES256, k.ec, c, nil),
		sign(f, jwt.SigningMethodEdDSA, k.ed, c, nil),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, c, nil),
		rawToken(`{"alg":"HS256"}`, `{"sub":"42","exp":1e400}`, []byte("x")),
		"", "a.b.c", "..", "eyJ.eyJ.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := a.Authenticate(t.Context(), server.AuthRequest{Token: tok})
		if err != nil {
			if !errors.Is(err, server.ErrUnauthenticated) && !errors.Is(err, server.ErrTokenExpired) && !errors.Is(err, server.ErrNoCredentials) {
				t.Fatalf("error %v wraps no identity sentinel", err)
			}
			return
		}
		if id.User == "" {
			t.Fatal("accepted with no user")
		}
		again, err := a.Authenticate(t.Context(), server.AuthRequest{Token: tok})
		if err != nil || again.User != id.User {
			t.Fatalf("accepted once, then %v", err)
		}
	})
}
