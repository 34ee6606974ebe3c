package centrifugo

import (
	"encoding/json"
	"testing"
)

// TestConfig: what the comparison's Centrifugo needs, and that it listens on
// loopback only and sends nothing out.
func TestConfig(t *testing.T) {
	var c struct {
		HTTPServer struct {
			Address string `json:"address"`
			Port    int    `json:"port"`
		} `json:"http_server"`
		HTTPAPI    struct{ Key string }      `json:"http_api"`
		UsageStats struct{ Disabled bool }   `json:"usage_stats"`
		UniWS      struct{ Enabled bool }    `json:"uni_websocket"`
		UniSSE     struct{ Enabled bool }    `json:"uni_sse"`
		Client     map[string]any            `json:"client"`
		Channel    map[string]map[string]any `json:"channel"`
	}
	if err := json.Unmarshal(Config(5861), &c); err != nil {
		t.Fatal(err)
	}
	ns := c.Channel["without_namespace"]
	if c.HTTPServer.Address != "127.0.0.1" || c.HTTPServer.Port != 5861 || c.HTTPAPI.Key != APIKey ||
		!c.UsageStats.Disabled || !c.UniWS.Enabled || !c.UniSSE.Enabled ||
		c.Client["allow_anonymous_connect_without_token"] != true || c.Client["insecure"] != nil ||
		ns["allow_subscribe_for_anonymous"] != true || ns["allow_subscribe_for_client"] != true {
		t.Errorf("config: %s", Config(5861))
	}
}
