// Package centrifugo is what the comparison with Centrifugo (cmd/stardust-compare,
// and the load tool's test against the real server) needs to run it: the
// version, where `make compare` builds it, and its configuration.
package centrifugo

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// Version is the Centrifugo release the comparison is made with (issue 20).
const Version = "v6.9.1"

// APIKey is the key of Centrifugo's server HTTP API in the comparison: a
// server on loopback for one run, so a fixed key will do.
const APIKey = "stardust-compare"

// Binary is where `make compare` builds Centrifugo (go install into
// $HOME/.cache/stardust-compare/centrifugo-VERSION), or $STARDUST_CENTRIFUGO
// when set; "" when neither exists.
func Binary() string {
	if p := os.Getenv("STARDUST_CENTRIFUGO"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	p := filepath.Join(home, ".cache", "stardust-compare", "centrifugo-"+Version, "centrifugo")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// Config is Centrifugo v6's configuration for the comparison: its defaults,
// on 127.0.0.1:port only, with the unidirectional WebSocket and SSE
// transports on, anonymous connections subscribed to the channels their
// connect request names (allowed per channel, not the insecure mode), the
// server HTTP API behind APIKey, and no usage statistics sent out (the
// machines this runs on talk to loopback only).
func Config(port int) []byte {
	b, _ := json.MarshalIndent(map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "error"},
		"http_api":    map[string]any{"key": APIKey},
		"usage_stats": map[string]any{"disabled": true},
		"client":      map[string]any{"allow_anonymous_connect_without_token": true},
		"channel": map[string]any{"without_namespace": map[string]any{
			"allow_subscribe_for_client": true, "allow_subscribe_for_anonymous": true}},
		"uni_websocket": map[string]any{"enabled": true},
		"uni_sse":       map[string]any{"enabled": true},
	}, "", "  ")
	return b
}
