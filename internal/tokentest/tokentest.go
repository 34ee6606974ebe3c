// Package tokentest signs tokens for the tests of the wired identity layer
// (cmd/stardust, integration): valid, expired, forged and alg:none ones, as
// an app beside Stardust would mint them, or an attacker forge them.
package tokentest

import (
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Secret is an HMAC secret long enough for auth.token_hmac_secret.
const Secret = "0123456789abcdef0123456789abcdef-test-only"

// HS256 signs claims with secret. A claim "exp" given as a time.Duration is
// made absolute from now (negative: already expired).
func HS256(secret string, claims map[string]any) string {
	mc := jwt.MapClaims{}
	for k, v := range claims {
		if d, ok := v.(time.Duration); ok {
			v = time.Now().Add(d).Unix()
		}
		mc[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, mc).SignedString([]byte(secret))
	if err != nil {
		panic(err) // HS256 with a []byte key does not fail
	}
	return s
}

// User is an HS256 token of Secret for user, valid for ttl.
func User(user string, ttl time.Duration) string {
	return HS256(Secret, map[string]any{"sub": user, "exp": ttl})
}

// None is an unsigned token (alg "none") for user, which must be refused.
func None(user string) string {
	enc := base64.RawURLEncoding
	head, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	body, _ := json.Marshal(map[string]any{"sub": user, "exp": time.Now().Add(time.Hour).Unix()})
	return enc.EncodeToString(head) + "." + enc.EncodeToString(body) + "."
}
