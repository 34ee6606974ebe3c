//go:build unix

package integration

import (
	"path/filepath"
	"testing"
)

// TestBayeuxClientsOverSubscriptionLimit: CometD's and Faye's clients, over
// long-polling and WebSocket, are refused the subscription past
// comet.max_subscriptions with a 403 naming it, and go on as before: the
// session stays connected and subscribed, and receives (issue 17, point 2).
func TestBayeuxClientsOverSubscriptionLimit(t *testing.T) {
	t.Parallel()
	requireNode(t)
	cfg := filepath.Join(t.TempDir(), "stardust.toml")
	writeFile(t, cfg, "[comet]\nmax_subscriptions = 3\n")
	base := startStardust(t, "--config", cfg, "--timeout", "10s")
	for _, client := range []string{"cometd", "faye"} {
		for _, transport := range []string{"long-polling", "websocket"} {
			t.Run(client+"/"+transport, func(t *testing.T) {
				t.Parallel()
				lines, err := runScenario(t, "--client", client, "--url", base+"/bayeux", "--transport", transport,
					"--scenario", "limits", "--channel", "/lim/"+client+"/"+transport, "--count", "3")
				if err != nil {
					return
				}
				if len(scenarioSteps(lines, "refused")) != 1 {
					t.Errorf("no refusal reported: %v", lines)
				}
			})
		}
	}
}
