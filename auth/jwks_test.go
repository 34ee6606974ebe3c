package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stardust-go/stardust/server"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkOf writes a public key as a JWK with kid and alg ("" for none).
func jwkOf(kid, alg string, pub any) map[string]any {
	m := map[string]any{"kid": kid, "use": "sig"}
	if alg != "" {
		m["alg"] = alg
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		raw, _ := k.Bytes() // 0x04 || X || Y
		size := (len(raw) - 1) / 2
		m["kty"], m["crv"], m["x"], m["y"] = "EC", k.Curve.Params().Name, b64(raw[1:1+size]), b64(raw[1+size:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", b64(k)
	}
	return m
}

func jwksJSON(keys ...map[string]any) []byte {
	b, _ := json.Marshal(map[string]any{"keys": keys})
	return b
}

// jwksServer serves what body holds; an empty body answers 500.
type jwksServer struct {
	*httptest.Server
	body    atomic.Value // []byte
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	s.body.Store([]byte(nil))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		b := s.body.Load().([]byte)
		if len(b) == 0 {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

// eventually polls cond for up to 10 s (a generous bound on a shared machine).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The key server fails at start, recovers, fails again (the last good keys
// stay in use), then rotates its key.
func TestJWKSRefresh(t *testing.T) {
	k := testKeys(t)
	srv := newJWKSServer(t)
	a := newTestAuth(t, Options{JWKSURL: srv.URL, JWKSRefresh: 20 * time.Millisecond})
	tokA := sign(t, jwt.SigningMethodRS256, k.rsa, claimsFor("a"), map[string]any{"kid": "a"})
	tokB := sign(t, jwt.SigningMethodES256, k.ec, claimsFor("b"), map[string]any{"kid": "b"})
	auth := func(tok string) error {
		_, err := a.Authenticate(t.Context(), server.AuthRequest{Token: tok})
		return err
	}

	eventually(t, "a failed first fetch", func() bool { return srv.fetches.Load() >= 1 })
	if err := auth(tokA); !errors.Is(err, server.ErrUnauthenticated) || !strings.Contains(err.Error(), "could not be fetched yet") {
		t.Fatalf("before any good fetch: %v", err)
	}

	srv.body.Store(jwksJSON(jwkOf("a", "RS256", k.rsa.Public())))
	eventually(t, "the key set", func() bool { return auth(tokA) == nil })

	srv.body.Store([]byte(nil))
	n := srv.fetches.Load()
	eventually(t, "two failed refreshes", func() bool { return srv.fetches.Load() >= n+2 })
	if err := auth(tokA); err != nil {
		t.Fatalf("after failed refreshes the last good key is gone: %v", err)
	}
	srv.body.Store([]byte(`{"keys":[{"kty":"RSA","kid":"a","n":"!!","e":"AQAB"}]}`)) // broken: kept out too
	n = srv.fetches.Load()
	eventually(t, "a broken refresh", func() bool { return srv.fetches.Load() >= n+2 })
	if err := auth(tokA); err != nil {
		t.Fatalf("after a broken key set the last good key is gone: %v", err)
	}

	srv.body.Store(jwksJSON(jwkOf("b", "ES256", k.ec.Public())))
	eventually(t, "the rotated key", func() bool { return auth(tokB) == nil })
	if err := auth(tokA); err == nil {
		t.Fatal("a key dropped from the set still verifies")
	}
}

// A token naming a key id we do not have asks for a refetch at once
// (rate-limited), instead of waiting for the next refresh.
func TestJWKSUnknownKidRefetch(t *testing.T) {
	k := testKeys(t)
	srv := newJWKSServer(t)
	srv.body.Store(jwksJSON(jwkOf("a", "", k.rsa.Public())))
	clock := atomic.Int64{}
	clock.Store(testNow.UnixNano())
	a := newTestAuth(t, Options{JWKSURL: srv.URL, JWKSRefresh: time.Hour,
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	tokA := sign(t, jwt.SigningMethodRS256, k.rsa, claimsFor("a"), map[string]any{"kid": "a"})
	tokC := sign(t, jwt.SigningMethodEdDSA, k.ed, claimsFor("c"), map[string]any{"kid": "c"})
	auth := func(tok string) error {
		_, err := a.Authenticate(t.Context(), server.AuthRequest{Token: tok})
		return err
	}
	eventually(t, "the first fetch", func() bool { return auth(tokA) == nil })

	srv.body.Store(jwksJSON(jwkOf("a", "", k.rsa.Public()), jwkOf("c", "EdDSA", k.ed.Public())))
	err := auth(tokC)
	if !errors.Is(err, server.ErrUnauthenticated) || !strings.Contains(err.Error(), `kid "c"`) {
		t.Fatalf("unknown kid: %v", err)
	}
	eventually(t, "the refetch for kid c", func() bool { return auth(tokC) == nil })

	// Made-up key ids: at most one refetch per jwksMinRefetch.
	n := srv.fetches.Load()
	for i := range 20 {
		auth(sign(t, jwt.SigningMethodEdDSA, k.ed, claimsFor("x"), map[string]any{"kid": "x" + string(rune('a'+i))}))
	}
	time.Sleep(100 * time.Millisecond)
	if got := srv.fetches.Load() - n; got > 1 {
		t.Errorf("%d refetches for made-up key ids within the rate limit", got)
	}
	clock.Add(int64(jwksMinRefetch))
	m := srv.fetches.Load()
	auth(sign(t, jwt.SigningMethodEdDSA, k.ed, claimsFor("x"), map[string]any{"kid": "zz"}))
	eventually(t, "a refetch after the rate limit", func() bool { return srv.fetches.Load() > m })
}

func TestParseJWKS(t *testing.T) {
	k := testKeys(t)
	good := jwksJSON(jwkOf("r", "RS256", k.rsa.Public()), jwkOf("e", "", k.ec.Public()), jwkOf("d", "EdDSA", k.ed.Public()),
		map[string]any{"kty": "oct", "k": "c2VjcmV0"},                        // symmetric: skipped
		map[string]any{"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}, // encryption: skipped
		map[string]any{"kty": "OKP", "crv": "X25519", "x": "AAAA"})           // not a signing curve: skipped
	keys, err := parseJWKS(good)
	if err != nil || len(keys) != 3 {
		t.Fatalf("parseJWKS = %d keys, %v", len(keys), err)
	}
	for _, tc := range []struct {
		name, body, msg string
	}{
		{"not JSON", `{`, "not a JWKS"},
		{"empty", `{"keys":[]}`, "no signing key"},
		{"only symmetric", `{"keys":[{"kty":"oct","k":"AAAA"}]}`, "no signing key"},
		{"bad base64", `{"keys":[{"kty":"RSA","n":"!","e":"AQAB"}]}`, "base64url"},
		{"even exponent", `{"keys":[{"kty":"RSA","n":"` + b64(k.rsa.N.Bytes()) + `","e":"Ag"}]}`, "exponent"},
		{"small RSA", `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`, "bits"},
		{"EC off the curve", `{"keys":[{"kty":"EC","crv":"P-256","x":"` + b64(make([]byte, 32)) + `","y":"` + b64(make([]byte, 32)) + `"}]}`, "EC point"},
		{"EC short", `{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}`, "coordinates"},
		{"Ed25519 short", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`, "Ed25519"},
		{"alg of another kind", string(jwksJSON(jwkOf("r", "HS256", k.rsa.Public()))), "cannot check HS256"},
		{"alg mismatch", string(jwksJSON(jwkOf("r", "ES256", k.rsa.Public()))), "cannot check ES256"},
	} {
		if _, err := parseJWKS([]byte(tc.body)); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v; want %q", tc.name, err, tc.msg)
		}
	}
}

// Whatever a key server sends: no panic, and every key kept is one we accept.
func FuzzParseJWKS(f *testing.F) {
	k := testKeys(f)
	f.Add(jwksJSON(jwkOf("r", "RS256", k.rsa.Public()), jwkOf("e", "", k.ec.Public()), jwkOf("d", "EdDSA", k.ed.Public())))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-384","x":"AAAA","y":"AAAA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := parseJWKS(data)
		if err != nil {
			return
		}
		for _, key := range keys {
			if err := checkKey(key.key); err != nil {
				t.Fatalf("kept a key we refuse: %v", err)
			}
			if key.alg != "" && !key.fits(key.alg) {
				t.Fatalf("kept a %T key for %s", key.key, key.alg)
			}
		}
	})
}
