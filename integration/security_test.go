//go:build unix

package integration

// Issue 10: sessions are bound to the browser cookie, and the real clients
// keep it.

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestNodeClientsKeepTheBrowserCookie runs CometD's and Faye's Node clients
// over the HTTP transports, where every request after the first must carry
// the BAYEUX_BROWSER cookie (a request naming a session without it is
// answered 402), and then reads the server's count of 402 answers: none. A
// cookie-less request with a known id then makes exactly one, so the count
// is the one that would have shown a client dropping its cookie.
func TestNodeClientsKeepTheBrowserCookie(t *testing.T) {
	t.Parallel()
	requireNode(t)
	base := startStardust(t, "--timeout", "5s")
	var lastID string
	for _, client := range []string{"cometd", "faye"} {
		for _, transport := range []string{"long-polling", "callback-polling"} {
			lines, err := runScenario(t, "--client", client, "--url", base+"/bayeux",
				"--transport", transport, "--scenario", "full", "--timeout-ms", "30000")
			if err != nil {
				t.Fatalf("%s/%s: %v", client, transport, err)
			}
			for _, l := range scenarioSteps(lines, "handshake") {
				if id, ok := l["clientId"].(string); ok {
					lastID = id
				}
			}
		}
	}
	if n := count402(t, base); n != 0 {
		t.Fatalf("the clients were answered 402 %d times: one dropped the browser cookie", n)
	}
	if lastID == "" {
		t.Fatal("no clientId seen in the scenarios")
	}
	// The same id without the cookie (a session that expired or was
	// disconnected answers 402 too, which is just as well here).
	resp, err := http.Post(base+"/bayeux", "application/json", strings.NewReader(
		`[{"channel":"/meta/connect","clientId":"`+lastID+`","connectionType":"long-polling","advice":{"timeout":0}}]`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"error":"402:`) {
		t.Fatalf("a cookie-less connect: %s", body)
	}
	if n := count402(t, base); n != 1 {
		t.Errorf("402 count %d after one cookie-less connect, want 1", n)
	}
}

var bayeux402 = regexp.MustCompile(`(?m)^stardust_incidents_total\{kind="bayeux_402"\} (\d+)$`)

// count402 reads how many Bayeux messages the server answered with 402.
func count402(t *testing.T, base string) int {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := bayeux402.FindSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
