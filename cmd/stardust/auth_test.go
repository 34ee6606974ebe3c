package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/tokentest"
)

// TestAuthFromConfig: [auth] builds the identity layer and the server asks
// it: a handshake with a token signed by token_hmac_secret passes, a forged
// one is refused with 401, and no token at all is anonymous.
func TestAuthFromConfig(t *testing.T) {
	m := startMain(t, "--config", writeFile(t, fmt.Sprintf("[auth]\ntoken_hmac_secret = %q\n", tokentest.Secret)))
	if m.auth == nil {
		t.Fatal("[auth] with a secret built no Auth")
	}
	base := fmt.Sprintf("http://%s/comet", m.Addr())
	hs := func(token string) map[string]any {
		msg := map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}}
		if token != "" {
			msg["ext"] = map[string]any{"token": token}
		}
		return bayeuxPost(t, browser(), base, msg)
	}
	if r := hs(tokentest.User("42", time.Hour)); r["successful"] != true {
		t.Errorf("valid token: %v", r)
	}
	if r := hs(tokentest.HS256("another secret, another secret, 1234", map[string]any{"sub": "42"})); r["successful"] != false ||
		!strings.HasPrefix(fmt.Sprint(r["error"]), "401:") {
		t.Errorf("forged token: %v", r)
	}
	if r := hs(""); r["successful"] != true {
		t.Errorf("no token (anonymous): %v", r)
	}
}

// TestAuthOffByDefault: without [auth] keys nothing is built (no goroutine,
// no JWT code on the request path).
func TestAuthOffByDefault(t *testing.T) {
	if m := startMain(t); m.auth != nil {
		t.Error("an Auth was built with [auth] empty")
	}
}
