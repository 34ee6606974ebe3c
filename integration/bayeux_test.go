//go:build unix

package integration

// The real Bayeux clients people use (CometD's JavaScript client and Faye's
// client, in Node) against the real stardust program, over every transport,
// and the bridge between Bayeux and the Stardust API.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
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
	t.Parallel()
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
	t.Parallel()
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

// waitForSubscriber polls the channel info until the channel has a
// subscriber: who, the only client the test streams it with. (The info
// counts subscribers by kind; ids are capabilities, never published.)
func waitForSubscriber(t *testing.T, base, channel, who string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/channel/" + channel)
		if err == nil {
			var infos []struct{ Subscribers audience }
			err = json.NewDecoder(resp.Body).Decode(&infos)
			resp.Body.Close()
			if err == nil && len(infos) == 1 && infos[0].Subscribers.total() > 0 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never subscribed to %s", who, channel)
}

// curlJSONP runs curl on a callback-polling URL and returns the status, the
// headers and the batch inside the callback.
// jar is curl's cookie file: the session is bound to the browser cookie it keeps.
func curlJSONP(t *testing.T, curl, jar, base, callback string, msgs string) (int, string, []map[string]any) {
	t.Helper()
	u := base + "/bayeux?jsonp=" + callback + "&message=" + url.QueryEscape(msgs)
	status, head, body := curlHTTP(t, curl, jar, u)
	prefix := "/**/" + callback + "("
	if !strings.HasPrefix(body, prefix) || !strings.HasSuffix(body, ");") {
		return status, head, nil
	}
	var batch []map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(body, prefix), ");")), &batch); err != nil {
		t.Fatalf("callback argument is not a JSON batch: %s", body)
	}
	return status, head, batch
}

// curlHTTP runs curl on u with its extra arguments, keeping cookies in jar
// ("": none, as a client that keeps no cookies), and returns the status,
// the headers and the body.
func curlHTTP(t *testing.T, curl, jar, u string, args ...string) (int, string, string) {
	t.Helper()
	if jar != "" {
		args = append(args, "-b", jar, "-c", jar)
	}
	out, err := exec.Command(curl, append(append([]string{"-s", "-i", "--max-time", "20"}, args...), u)...).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", u, err)
	}
	head, body, _ := strings.Cut(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n\n")
	var status int
	fmt.Sscanf(head, "HTTP/1.1 %d", &status)
	return status, head, body
}

// checkCookielessBayeux is a client that keeps no cookies (a script, a
// device, the Perl POE client) over long-polling and callback-polling, with
// curl and no cookie jar, against the Bayeux endpoint under base: its first
// connect comes back at once, and its session works for as long as it
// likes (issue 17: before, its second request got 402 and it handshook
// again for ever).
func checkCookielessBayeux(t *testing.T, curl, base string) {
	send := map[string]func(t *testing.T, msgs string) []map[string]any{
		"long-polling": func(t *testing.T, msgs string) []map[string]any {
			status, _, body := curlHTTP(t, curl, "", base+"/bayeux", "-H", "Content-Type: application/json", "--data-binary", msgs)
			var r []map[string]any
			if err := json.Unmarshal([]byte(body), &r); status != 200 || err != nil || len(r) == 0 {
				t.Fatalf("long-polling: %d %s", status, body)
			}
			return r
		},
		"callback-polling": func(t *testing.T, msgs string) []map[string]any {
			status, _, r := curlJSONP(t, curl, "", base, "cb", msgs)
			if status != 200 || len(r) == 0 {
				t.Fatalf("callback-polling: %d %v", status, r)
			}
			return r
		},
	}
	for transport, send := range send {
		t.Run(transport, func(t *testing.T) {
			r := send(t, `[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["`+transport+`"]}]`)
			id, _ := r[0]["clientId"].(string)
			if id == "" {
				t.Fatalf("handshake: %v", r)
			}
			connect := fmt.Sprintf(`{"channel":"/meta/connect","clientId":%q,"connectionType":%q}`, id, transport)
			start := time.Now()
			if r := send(t, "["+connect+"]"); len(r) != 1 || r[0]["successful"] != true || time.Since(start) > 10*time.Second {
				t.Fatalf("first connect, after %v: %v", time.Since(start), r)
			}
			channel := "/cookieless/" + strings.ReplaceAll(transport, "-", "_")
			connectNow := strings.TrimSuffix(connect, "}") + `,"advice":{"timeout":0}}`
			r = send(t, fmt.Sprintf(`[{"channel":"/meta/subscribe","clientId":%q,"subscription":%q},%s]`, id, channel, connectNow))
			if len(r) != 2 || r[0]["successful"] != true || r[1]["successful"] != true {
				t.Fatalf("subscribe and second connect: %v", r)
			}
			for i := range 3 {
				r = send(t, fmt.Sprintf(`[{"channel":%q,"clientId":%q,"data":%d},%s]`, channel, id, i, connectNow))
				if len(r) != 3 || r[0]["successful"] != true || r[1]["data"] != float64(i) || r[2]["successful"] != true {
					t.Fatalf("publish and connect %d: %v", i, r)
				}
			}
		})
	}
}

func TestCallbackPollingWithCurl(t *testing.T) {
	curl := requireProgram(t, "curl", "curl")
	base := startStardust(t, "--timeout", "5s")
	jar := filepath.Join(t.TempDir(), "cookies")
	status, head, r := curlJSONP(t, curl, jar, base, "cb_1",
		`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["callback-polling"],"id":"1"}]`)
	if status != 200 || len(r) != 1 || r[0]["successful"] != true {
		t.Fatalf("handshake: %d %v", status, r)
	}
	for _, h := range []string{"Content-Type: text/javascript", "X-Content-Type-Options: nosniff"} {
		if !strings.Contains(head, h) {
			t.Errorf("headers lack %q:\n%s", h, head)
		}
	}
	id := r[0]["clientId"].(string)
	_, _, r = curlJSONP(t, curl, jar, base, "cb_2", fmt.Sprintf(
		`[{"channel":"/meta/subscribe","clientId":%q,"subscription":"/stardust/jp","id":"2"},{"channel":"/meta/connect","clientId":%q,"connectionType":"callback-polling","advice":{"timeout":0},"id":"3"}]`, id, id))
	if len(r) != 2 || r[0]["successful"] != true || r[1]["channel"] != "/meta/connect" {
		t.Fatalf("subscribe and connect: %v", r)
	}
	got := make(chan []map[string]any, 1)
	go func() {
		_, _, r := curlJSONP(t, curl, jar, base, "cb_3", fmt.Sprintf(
			`{"channel":"/meta/connect","clientId":%q,"connectionType":"callback-polling","id":"4"}`, id))
		got <- r
	}()
	waitForSubscriber(t, base, "jp", id)
	time.Sleep(200 * time.Millisecond) // let the connect be held
	if out, err := exec.Command(curl, "-s", "-d", `m={"type":"jsonp"}`, base+"/channel/jp").CombinedOutput(); err != nil {
		t.Fatalf("curl publish: %v %s", err, out)
	}
	select {
	case r = <-got:
	case <-time.After(15 * time.Second):
		t.Fatal("held callback-polling connect not answered")
	}
	if len(r) != 2 || r[0]["channel"] != "/stardust/jp" || r[1]["channel"] != "/meta/connect" {
		t.Fatalf("held connect answered %v", r)
	}
	if status, _, _ := curlJSONP(t, curl, jar, base, "alert(document.cookie)", `{"channel":"/meta/connect"}`); status != 400 {
		t.Errorf("unsafe callback name: status %d, want 400", status)
	}
	t.Run("cookieless", func(t *testing.T) { checkCookielessBayeux(t, curl, base) })
}
