// Package bayeuxtest talks Bayeux long-polling to a server under test, for
// the tests of packages that have no client of their own.
package bayeuxtest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"testing"
)

// Browser is one browser talking to a Bayeux endpoint: it keeps the
// server's cookies, to which the server binds the sessions it makes.
type Browser struct {
	URL  string // the Bayeux endpoint
	HTTP *http.Client
}

// New returns a browser with an empty cookie jar.
func New(url string) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{URL: url, HTTP: &http.Client{Jar: jar}}
}

// Post sends msgs as one batch and returns the replies, failing the test if
// the request or its answer is not Bayeux.
func (b *Browser) Post(t testing.TB, msgs ...map[string]any) []map[string]any {
	t.Helper()
	body, _ := json.Marshal(msgs)
	resp, err := b.HTTP.Post(b.URL, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var replies []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&replies); err != nil {
		t.Fatalf("POST %s: %s: %v", b.URL, resp.Status, err)
	}
	return replies
}

// Handshake starts a long-polling session and returns its client id.
func (b *Browser) Handshake(t testing.TB) string {
	t.Helper()
	hs := b.Post(t, map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}})
	id, _ := hs[0]["clientId"].(string)
	if id == "" {
		t.Fatalf("handshake with %s: %v", b.URL, hs)
	}
	return id
}

// Connect sends one /meta/connect for id and returns what it brought.
func (b *Browser) Connect(t testing.TB, id string) []map[string]any {
	t.Helper()
	return b.Post(t, map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"})
}
