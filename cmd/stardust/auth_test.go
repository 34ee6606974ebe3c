package main

import (
	"fmt"
	"net/http"
	"regexp"
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

var hmacSecret = regexp.MustCompile(`token_hmac_secret = "(.+)"`)

// checkTokenExample: with the README's [auth] block, user 42's token reads
// /user/42/x and its Stardust inbox, never user 43's; no token reads
// neither.
func checkTokenExample(t *testing.T, base, secret string) {
	t.Helper()
	token := tokentest.HS256(secret, map[string]any{"sub": "42", "exp": time.Hour})
	hc := browser()
	hs := bayeuxPost(t, hc, base, map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}, "ext": map[string]any{"token": token}})
	id, _ := hs["clientId"].(string)
	for _, tt := range []struct {
		channel string
		ok      bool
	}{{"/user/42/x", true}, {"/user/43/x", false}} {
		r := bayeuxPost(t, hc, base, map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": tt.channel})
		if (r["successful"] == true) != tt.ok {
			t.Errorf("README token example: user 42 subscribing to %s: %v", tt.channel, r)
		}
	}
	r := bayeuxPost(t, hc, base, map[string]any{"channel": "/stardust/inbox_43", "clientId": id, "data": map[string]any{"spoof": true}})
	if r["successful"] != false {
		t.Errorf("README token example: user 42 publishing to inbox_43: %v", r)
	}
	if code := publishAsTo(t, base, "inbox_42", "publisher", "s3cret"); code != 200 {
		t.Errorf("README token example: the app publishing to inbox_42: %d", code)
	}
	for _, tt := range []struct {
		inbox, token string
		status       int
	}{{"inbox_42", token, 200}, {"inbox_43", token, 403}, {"inbox_42", "", 403}} {
		req, _ := http.NewRequest(http.MethodGet, base+"/channel/"+tt.inbox, nil)
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("README token example: reading %s (token %v): %d, want %d", tt.inbox, tt.token != "", resp.StatusCode, tt.status)
		}
	}
}
