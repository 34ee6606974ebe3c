package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stardust-go/stardust/server"
)

// What one token check costs per algorithm, and one answer from the cache.
// Short: go test -run '^$' -bench . -benchtime 2000x ./auth/
func BenchmarkVerify(b *testing.B) {
	k := testKeys(b)
	a := newTestAuth(b, Options{HMACSecret: k.secret, PublicKeyFiles: writeFiles(b, k.rsaPEM, k.ecPEM, k.edPEM)})
	c := claimsFor("42")
	for _, tc := range []struct {
		name   string
		method jwt.SigningMethod
		key    any
	}{
		{"HS256", jwt.SigningMethodHS256, k.secret},
		{"RS256", jwt.SigningMethodRS256, k.rsa},
		{"ES256", jwt.SigningMethodES256, k.ec},
		{"EdDSA", jwt.SigningMethodEdDSA, k.ed},
	} {
		tok := sign(b, tc.method, tc.key, c, nil)
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := a.Authenticate(b.Context(), server.AuthRequest{Token: tok}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkConnectCached(b *testing.B) {
	app := newBenchApp(b)
	a := newTestAuth(b, Options{ConnectURL: app.URL})
	req := connectReq("s1")
	for b.Loop() {
		if _, err := a.Authenticate(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
	if c, _, _ := a.Calls(); c != 1 {
		b.Fatalf("%d calls", c)
	}
}

func newBenchApp(b *testing.B) *appServer {
	app := &appServer{}
	app.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"user":"42"}`))
	}))
	b.Cleanup(app.Close)
	return app
}
