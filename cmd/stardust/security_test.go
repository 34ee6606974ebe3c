package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/bayeuxtest"
	"github.com/stardust-go/stardust/server"
)

// Issue 10: the new settings reach the server, and --check says what they
// leave open.

func TestCheckWarnings(t *testing.T) {
	file := writeFile(t, `[server]
demo = true
listen = "0.0.0.0:5742"
[comet]
allow_from = ["127.0.0.1"]
[bayeux.auth]
mode = "users"
users = { old = "sha256:2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90" }
[[bayeux.acl]]
channel = "/chat/**"
subscribe = ["*"]
publish = ["*"]
[[bayeux.acl]]
channel = "/chat/private/**"
subscribe = ["authenticated"]
publish = ["authenticated"]
`)
	m, _ := newTestMain()
	if err := m.ParseFlags([]string{"-c", file}); err != nil {
		t.Fatal(err)
	}
	warnings := strings.Join(m.Config.Warnings(), "\n")
	for _, want := range []string{
		`bayeux.auth.users: "old" has an unsalted sha256 hash`,
		"server.demo: the demo page publishes from the browser",
		"bayeux.acl[1]: publishes to /chat/private/** are decided by bayeux.acl[0] (/chat/**)",
	} {
		if !strings.Contains(warnings, want) {
			t.Errorf("warnings lack %q:\n%s", want, warnings)
		}
	}
	closed := writeFile(t, `[comet]
allow_from = ["127.0.0.1"]
[[bayeux.acl]]
channel = "/stardust/**"
subscribe = ["*"]
publish = ["authenticated"]
`)
	m, _ = newTestMain()
	if err := m.ParseFlags([]string{"-c", closed}); err != nil {
		t.Fatal(err)
	}
	if w := m.Config.Warnings(); len(w) != 0 {
		t.Errorf("a closed configuration warns: %v", w)
	}
	// The Stardust channels are closed to Bayeux publishers by default
	// (comet.allow_from's addresses only); a rule opening them warns. So
	// does the demo off loopback, but not on it.
	for text, want := range map[string]string{
		"[[bayeux.acl]]\nchannel = \"/stardust/*\"\nsubscribe = [\"*\"]\npublish = [\"*\"]\n": "bayeux.acl[0]: lets any Bayeux client publish to /stardust/**",
		"[server]\ndemo = true\nlisten = \"127.0.0.1:5742\"\n":                                "",
		"": "",
	} {
		m, _ = newTestMain()
		if err := m.ParseFlags([]string{"-c", writeFile(t, text)}); err != nil {
			t.Fatal(err)
		}
		if w := strings.Join(m.Config.Warnings(), "\n"); want == "" && w != "" || !strings.Contains(w, want) {
			t.Errorf("%q warns %q, want %q", text, w, want)
		}
	}
	anyone := writeFile(t, "[comet]\nallow_from = [\"*\"]\n[server]\ntrusted_proxies = [\"0.0.0.0/0\"]\n[metrics]\nallow_from = [\"*\"]\n")
	m, _ = newTestMain()
	if err := m.ParseFlags([]string{"-c", anyone}); err != nil {
		t.Fatal(err)
	}
	warnings = strings.Join(m.Config.Warnings(), "\n")
	for _, want := range []string{"comet.allow_from: anyone may publish", `server.trusted_proxies: "0.0.0.0/0" trusts everyone`,
		`metrics.allow_from: "*" lets anyone read the metrics`} {
		if !strings.Contains(warnings, want) {
			t.Errorf("warnings lack %q:\n%s", want, warnings)
		}
	}
}

func TestHashPasswordFlag(t *testing.T) {
	m, out := newTestMain()
	m.Stdin = strings.NewReader("wonder\n")
	if err := m.ParseFlags([]string{"--hash-password"}); err != errDone {
		t.Fatalf("--hash-password: %v", err)
	}
	hash := strings.TrimSpace(out.String())
	if !server.CheckPassword(hash, "wonder") || server.CheckPassword(hash, "wander") {
		t.Errorf("printed hash %q does not check out", hash)
	}
	// The hash works in the configuration as printed.
	file := writeFile(t, fmt.Sprintf("[comet]\nauth_user = \"pub\"\nauth_pass = %q\n", hash))
	m2 := startMain(t, "-c", file)
	base := "http://" + m2.Addr().String() + "/comet"
	for pass, want := range map[string]int{"wonder": 200, "wander": 401} {
		if code := publishAs(t, base, "pub", pass); code != want {
			t.Errorf("publish with %s: %d, want %d", pass, code, want)
		}
	}
}

func TestConnectionCapAndBodyTimeoutEndToEnd(t *testing.T) {
	file := writeFile(t, "[server]\nmax_connections = 5\nbody_timeout = \"500ms\"\nshutdown_timeout = \"10s\"\n")
	m := startMain(t, "-c", file)
	addr := m.Addr().String()
	// Five connections trickle a body; the sixth is refused at once.
	var slow []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /comet/channel/foo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nm=")
		slow = append(slow, c)
	}
	time.Sleep(100 * time.Millisecond)
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	_ = extra.SetReadDeadline(time.Now().Add(2 * time.Second))
	start := time.Now()
	got, _ := io.ReadAll(extra)
	if !strings.HasPrefix(string(got), "HTTP/1.1 503") || time.Since(start) > time.Second {
		t.Errorf("sixth connection: %q after %s", got, time.Since(start))
	}
	// The slow bodies are cut off at body_timeout, and a shutdown does not
	// wait for them.
	for _, c := range slow {
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("slow body not answered: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("slow body answered %d", resp.StatusCode)
		}
	}
	start = time.Now()
	if err := m.Close(); err != nil || time.Since(start) > 3*time.Second {
		t.Errorf("shutdown: %v after %s", err, time.Since(start))
	}
}

// CometD's server-restart fault: the held connect is answered with advice to
// retry; the restarted server knows no session, so the client's next connect
// gets 402 with advice to handshake, and a client that does (with the
// browser cookie it kept) is served again.
func TestFaultServerRestart(t *testing.T) {
	m := startMain(t, "--timeout", "10s")
	addr := m.Addr().String()
	base := "http://" + addr + "/comet"
	hc := browser()
	session := func() string {
		r := bayeuxPost(t, hc, base, map[string]any{"channel": "/meta/handshake", "version": "1.0",
			"supportedConnectionTypes": []string{"long-polling"}})
		if r["successful"] != true {
			t.Fatalf("handshake: %v", r)
		}
		id := r["clientId"].(string)
		if r := bayeuxPost(t, hc, base, map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/stardust/restart"}); r["successful"] != true {
			t.Fatalf("subscribe: %v", r)
		}
		// The first connect is answered at once; the next ones are held.
		if r := bayeuxPost(t, hc, base, map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"}); r["successful"] != true {
			t.Fatalf("first connect: %v", r)
		}
		return id
	}
	connect := func(id string) chan map[string]any {
		out := make(chan map[string]any, 1)
		go func() {
			body := fmt.Sprintf(`[{"channel":"/meta/connect","clientId":%q,"connectionType":"long-polling"}]`, id)
			resp, err := hc.Post(base+"/bayeux", "application/json", strings.NewReader(body))
			if err != nil {
				out <- map[string]any{"error": err.Error()}
				return
			}
			defer resp.Body.Close()
			var replies []map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&replies)
			if len(replies) == 0 {
				out <- map[string]any{"error": "no reply"}
				return
			}
			out <- replies[len(replies)-1]
			if len(replies) > 1 {
				out <- replies[0]
			}
		}()
		return out
	}
	id := session()
	held := connect(id)
	time.Sleep(200 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	r := <-held
	if adv, _ := r["advice"].(map[string]any); adv["reconnect"] != "retry" {
		t.Fatalf("held connect at shutdown: %v", r)
	}
	// The same address again, as after a restart.
	m2, _ := newTestMain()
	if err := m2.ParseFlags([]string{"--listen", addr, "--log-level", "warn", "--timeout", "10s"}); err != nil {
		t.Fatal(err)
	}
	if err := m2.Run(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m2.Close() })
	r = <-connect(id)
	if adv, _ := r["advice"].(map[string]any); r["successful"] != false || !strings.HasPrefix(fmt.Sprint(r["error"]), "402:") || adv["reconnect"] != "handshake" {
		t.Fatalf("connect after the restart: %v", r)
	}
	id = session()
	got := connect(id)
	time.Sleep(200 * time.Millisecond)
	resp, err := http.PostForm(base+"/channel/restart", map[string][]string{"m": {`{"back":true}`}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case last := <-got:
		msg := <-got
		if last["successful"] != true || fmt.Sprint(msg["data"]) != "map[back:true]" {
			t.Errorf("after re-handshaking: %v then %v", msg, last)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the re-handshaken client got nothing")
	}
}

// Issue 17, point 6: --check warns of every rule that can never decide, for
// subscriptions as for publishes: a narrow rule after a broad one that
// differ only in subscribe let anonymous readers into the protected history.
func TestCheckWarnsOfShadowedRules(t *testing.T) {
	file := writeFile(t, `[[bayeux.acl]]
channel = "/stardust/**"
subscribe = ["*"]
publish = ["authenticated"]
[[bayeux.acl]]
channel = "/chat/**"
subscribe = ["*"]
publish = ["*"]
[[bayeux.acl]]
channel = "/chat/private/**"
subscribe = ["authenticated"]
publish = ["*"]
[[bayeux.acl]]
channel = "/chat/private/x"
subscribe = ["user:x"]
publish = ["user:x"]
[[bayeux.acl]]
channel = "/chat/*"
subscribe = ["*"]
publish = ["*"]
[[bayeux.acl]]
channel = "/meta/**"
subscribe = ["authenticated"]
publish = ["authenticated"]
`)
	m, _ := newTestMain()
	if err := m.ParseFlags([]string{"-c", file}); err != nil {
		t.Fatal(err)
	}
	warnings := m.Config.Warnings()
	all := strings.Join(warnings, "\n")
	for _, want := range []string{
		"bayeux.acl[2]: subscriptions to /chat/private/** are decided by bayeux.acl[1] (/chat/**)",
		"bayeux.acl[3]: subscriptions to /chat/private/x are decided by bayeux.acl[1] (/chat/**)",
		"bayeux.acl[3]: publishes to /chat/private/x are decided by bayeux.acl[1] (/chat/**)",
		"bayeux.acl[4]: never decides: bayeux.acl[1] (/chat/**) matches every channel of /chat/* first",
		"bayeux.acl[5]: never decides: /meta/** channels are not subject to the rules",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "bayeux.acl[2]: publishes") || strings.Contains(all, "bayeux.acl[0]") {
		t.Errorf("warnings of a rule that decides as written:\n%s", all)
	}
	if len(warnings) != 5 {
		t.Errorf("%d warnings, want 5:\n%s", len(warnings), all)
	}
}

// TestBayeuxPublishToStardustChannels: without a rule for them, Bayeux
// clients publish to the Stardust channels from comet.allow_from's
// addresses only (before, from anywhere: --check warned of it instead);
// a rule for /stardust/** decides instead.
func TestBayeuxPublishToStardustChannels(t *testing.T) {
	for _, c := range []struct {
		text     string
		stardust bool // a loopback Bayeux client may publish to /stardust/news
	}{
		{"", true},
		{"[comet]\nallow_from = [\"192.0.2.1\"]\n", false},
		{"[comet]\nallow_from = [\"192.0.2.1\"]\n[[bayeux.acl]]\nchannel = \"/stardust/**\"\nsubscribe = [\"*\"]\npublish = [\"*\"]\n", true},
	} {
		m := startMain(t, "-c", writeFile(t, c.text))
		browser := bayeuxtest.New("http://" + m.Addr().String() + "/comet/bayeux")
		id := browser.Handshake(t)
		replies := browser.Post(t,
			map[string]any{"channel": "/stardust/news", "clientId": id, "data": map[string]any{"n": 1}},
			map[string]any{"channel": "/chat/room", "clientId": id, "data": map[string]any{"n": 2}})
		if len(replies) != 2 || replies[0]["successful"] != c.stardust || replies[1]["successful"] != true {
			t.Errorf("%q: publishes answered %v, want /stardust/news successful %v, /chat/room successful", c.text, replies, c.stardust)
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
