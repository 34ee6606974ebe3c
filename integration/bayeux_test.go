package integration

// The real Bayeux clients people use (CometD's JavaScript client and Faye's
// client, in Node) against the real stardust program, over every transport,
// and the bridge between Bayeux and the Stardust API.

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// startStardust builds and starts the program on a free loopback port and
// returns its HTTP base URL (…/comet).
func startStardust(t *testing.T, args ...string) string {
	t.Helper()
	bin := stardustBinary(t)
	addr := freeAddr(t)
	p := startProcess(t, "stardust", t.TempDir(), append([]string{bin, "--listen", addr, "--log-level", "warn"}, args...)...)
	p.waitListening(t, addr)
	return "http://" + addr + "/comet"
}

func TestBayeuxClientsAgainstStardust(t *testing.T) {
	requireNode(t)
	base := startStardust(t, "--timeout", "10s")
	for _, client := range []string{"cometd", "faye"} {
		for _, transport := range []string{"long-polling", "websocket", "callback-polling"} {
			client, transport := client, transport
			t.Run(client+"/"+transport, func(t *testing.T) {
				t.Parallel()
				lines, err := runScenario(t, "--client", client, "--url", base+"/bayeux",
					"--transport", transport, "--scenario", "full", "--timeout-ms", "40000")
				if err != nil {
					return
				}
				// The scenario checks delivery order, wildcards, the echo service,
				// unsubscribe and disconnect; here, that the transport held.
				for _, l := range scenarioSteps(lines, "transport") {
					if l["used"] != transport {
						t.Errorf("transport used %v, want %s", l["used"], transport)
					}
				}
			})
		}
	}
	t.Run("cometd/negotiated", func(t *testing.T) {
		t.Parallel()
		// Offered every transport, as in a browser, CometD must pick websocket.
		runScenario(t, "--client", "cometd", "--url", base+"/cometd", "--transport", "websocket",
			"--keep-fallback", "--scenario", "full", "--timeout-ms", "40000")
	})
}

func TestBayeuxBridgeWithRealClients(t *testing.T) {
	requireNode(t)
	base := startStardust(t, "--timeout", "10s")

	// Stardust API -> Bayeux: a curl-style publish reaches a CometD client
	// over WebSocket and a Faye client over long-polling, both on a wildcard.
	var listeners []*scenarioProc
	for _, c := range []struct{ client, transport string }{{"cometd", "websocket"}, {"faye", "long-polling"}} {
		p := startScenario(t, "--client", c.client, "--url", base+"/bayeux", "--transport", c.transport,
			"--scenario", "listen", "--channel", "/stardust/*", "--count", "2", "--timeout-ms", "30000")
		if _, err := p.WaitStep("ready", 20*time.Second); err != nil {
			return
		}
		listeners = append(listeners, p)
	}
	for i := 1; i <= 2; i++ {
		resp, err := http.PostForm(base+"/channel/news", url.Values{"m": {fmt.Sprintf(`{"type":"headline","n":%d}`, i)}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("publish: %d", resp.StatusCode)
		}
	}
	for _, p := range listeners {
		lines, err := p.Wait()
		if err != nil {
			continue
		}
		msgs := scenarioSteps(lines, "message")
		if len(msgs) != 2 || msgs[0]["channel"] != "/stardust/news" {
			t.Errorf("listener got %v", msgs)
			continue
		}
		for i, m := range msgs {
			if d, _ := m["data"].(map[string]any); d["n"] != float64(i+1) {
				t.Errorf("message %d: %v, want n=%d in order", i, m["data"], i+1)
			}
		}
	}

	// Bayeux -> Stardust API: a Faye publish reaches a waiting long poll.
	var wg sync.WaitGroup
	var body string
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := http.Get(base + "/channel/sport/stream/0.42")
		if err != nil {
			body = err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
	}()
	waitForSubscriber(t, base, "sport", "0.42")
	runScenario(t, "--client", "faye", "--url", base+"/bayeux", "--transport", "websocket",
		"--scenario", "publish", "--channel", "/stardust/sport", "--data", `{"type":"goal"}`)
	wg.Wait()
	if !strings.Contains(body, `"type":"goal"`) || !strings.Contains(body, `"_ch":"sport"`) {
		t.Errorf("Stardust stream got %q", body)
	}
}

// waitForSubscriber polls the channel info until id streams the channel.
func waitForSubscriber(t *testing.T, base, channel, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/channel/" + channel)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `"`+id+`"`) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never subscribed to %s", id, channel)
}
