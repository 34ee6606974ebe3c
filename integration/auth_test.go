//go:build unix

package integration

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/bayeuxtest"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/internal/tokentest"
)

// authConfig is a configuration with tokens signed by tokentest.Secret and
// the README's {user} rule; extra is appended (an [engine] section).
func authConfig(t *testing.T, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.toml")
	writeFile(t, path, fmt.Sprintf(`[auth]
token_hmac_secret = %q

[[bayeux.acl]]
channel = "/user/{user}/**"
subscribe = ["user:{user}"]
publish = ["user:{user}"]
%s`, tokentest.Secret, extra))
	return path
}

// TestTokensWithNodeClients: CometD's and Faye's own clients handshake
// with ext.token set by an extension, as an app's page does. A valid token
// for user 42 reads and writes /user/42/**; the same client with user 43's
// token is refused /user/42/**; expired (402), forged and alg:none (401)
// tokens are refused at the handshake.
func TestTokensWithNodeClients(t *testing.T) {
	t.Parallel()
	requireNode(t)
	base := startStardust(t, "--config", authConfig(t, ""), "--timeout", "5s")
	for _, client := range []string{"cometd", "faye"} {
		t.Run(client+"/own channel", func(t *testing.T) {
			t.Parallel()
			channel := "/user/42/" + client
			listen := startScenario(t, "--client", client, "--url", base+"/bayeux", "--transport", "long-polling",
				"--scenario", "listen", "--channel", channel, "--count", "1", "--token", tokentest.User("42", time.Hour),
				"--timeout-ms", "30000")
			if _, err := listen.WaitStep("ready", 20*time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := runScenario(t, "--client", client, "--url", base+"/bayeux", "--transport", "websocket",
				"--scenario", "publish", "--channel", channel, "--data", `{"n":1}`, "--token", tokentest.User("42", time.Hour)); err != nil {
				t.Fatal(err)
			}
			if _, err := listen.Wait(); err != nil {
				t.Fatal(err)
			}
		})
		t.Run(client+"/another's channel", func(t *testing.T) {
			t.Parallel()
			lines, err := tryScenario(t, "--client", client, "--url", base+"/bayeux", "--transport", "long-polling",
				"--scenario", "listen", "--channel", "/user/42/x", "--token", tokentest.User("43", time.Hour), "--timeout-ms", "15000")
			if err == nil || scenarioFailedStep(lines) != "subscribe" || !strings.Contains(fmt.Sprint(lines), "403:") {
				t.Errorf("user 43 subscribing to /user/42/x: %v\n%v", err, lines)
			}
		})
		for _, tt := range []struct{ name, token, want string }{
			{"expired", tokentest.User("42", -time.Hour), "402"},
			{"forged", tokentest.HS256("not the server's secret, not the server's", map[string]any{"sub": "42"}), "401"},
			{"alg none", tokentest.None("42"), "401"},
		} {
			t.Run(client+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				if _, err := runScenario(t, "--client", client, "--url", base+"/bayeux", "--transport", "long-polling",
					"--scenario", "refused", "--token", tt.token, "--expect-code", tt.want, "--timeout-ms", "15000"); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// TestTokenIdentityAcrossRedisNodes: with the Redis engine the identity is
// a session attribute: a client handshaken with a token on one process
// subscribes to its own channel on another (and is refused another
// user's), and once the token expires the next connect on either process
// answers 402 with advice handshake.
func TestTokenIdentityAcrossRedisNodes(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	cfg := authConfig(t, fmt.Sprintf("\n[engine]\ntype = \"redis\"\nredis_url = %q\n", srv.URL))
	a, b := startStardust(t, "--config", cfg, "--timeout", "2s"), startStardust(t, "--config", cfg, "--timeout", "2s")
	// One browser: its cookies go to both processes (same host).
	onA := bayeuxtest.New(a + "/bayeux")
	onB := &bayeuxtest.Browser{URL: b + "/bayeux", HTTP: onA.HTTP}
	last := func(replies []map[string]any) map[string]any { return replies[len(replies)-1] }
	ttl := 4 * time.Second
	hs := last(onA.Post(t, map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"},
		"ext": map[string]any{"token": tokentest.User("42", ttl)}}))
	if hs["successful"] != true {
		t.Fatalf("handshake on the first process: %v", hs)
	}
	expires := time.Now().Add(ttl)
	id := hs["clientId"].(string)
	connect := map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling", "advice": map[string]any{"timeout": 0}}
	if r := last(onB.Post(t, connect)); r["successful"] != true {
		t.Fatalf("connect on the second process: %v", r)
	}
	sub := func(channel string) map[string]any {
		return last(onB.Post(t, map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": channel}))
	}
	if r := sub("/user/42/x"); r["successful"] != true {
		t.Errorf("own channel on the second process: %v", r)
	}
	if r := sub("/user/43/x"); r["successful"] != false {
		t.Errorf("another user's channel on the second process: %v", r)
	}
	time.Sleep(time.Until(expires) + 1500*time.Millisecond) // exp is in whole seconds
	r := last(onB.Post(t, connect))
	adv, _ := r["advice"].(map[string]any)
	if r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "402:") || adv["reconnect"] != "handshake" {
		t.Errorf("connect after the expiry on the second process: %v", r)
	}
	if r := last(onA.Post(t, connect)); r["successful"] != false {
		t.Errorf("connect after the expiry on the first process: %v", r)
	}
}

// TestPythonTokenExample: examples/python/stardust_token.py signs a token
// the server accepts (user 42 reads inbox_42, not inbox_43), and one for
// a past expiry that it refuses.
func TestPythonTokenExample(t *testing.T) {
	t.Parallel()
	python := requireProgram(t, "python3", "python3")
	base := startStardust(t, "--config", authConfig(t, "\n[[bayeux.acl]]\nchannel = \"/stardust/inbox_{user}\"\nsubscribe = [\"user:{user}\"]\npublish = []\n"))
	sign := func(ttl string) string {
		cmd := exec.Command(python, filepath.Join(repoRoot(t), "examples", "python", "stardust_token.py"), "42", ttl)
		cmd.Env = append(os.Environ(), "STARDUST_SECRET="+tokentest.Secret)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("stardust_token.py: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	read := func(channel, token string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/channel/"+channel, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	token := sign("300")
	if got := read("inbox_42", token); got != 200 {
		t.Errorf("42 reading inbox_42 with the Python token: %d", got)
	}
	if got := read("inbox_43", token); got != 403 {
		t.Errorf("42 reading inbox_43 with the Python token: %d", got)
	}
	if got := read("inbox_42", sign("-60")); got != 401 {
		t.Errorf("an expired Python token: %d, want 401", got)
	}
}
