// Package bayeuxtest talks Bayeux long-polling to a server under test, for
// the tests of packages that have no client of their own.
package bayeuxtest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
)

// Post sends msgs as one batch to url (a Bayeux endpoint) and returns the
// replies, failing the test if the request or its answer is not Bayeux.
func Post(t testing.TB, url string, msgs ...map[string]any) []map[string]any {
	t.Helper()
	body, _ := json.Marshal(msgs)
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var replies []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&replies); err != nil {
		t.Fatalf("POST %s: %s: %v", url, resp.Status, err)
	}
	return replies
}

// Handshake starts a long-polling session and returns its client id.
func Handshake(t testing.TB, url string) string {
	t.Helper()
	hs := Post(t, url, map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}})
	id, _ := hs[0]["clientId"].(string)
	if id == "" {
		t.Fatalf("handshake with %s: %v", url, hs)
	}
	return id
}

// Connect sends one /meta/connect for id and returns what it brought.
func Connect(t testing.TB, url, id string) []map[string]any {
	t.Helper()
	return Post(t, url, map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"})
}
