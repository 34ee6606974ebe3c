package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stardust-go/stardust/internal/docs"
	"github.com/stardust-go/stardust/internal/redistest"
)

// Every ```toml block of the README and docs/*.md is a working configuration as written:
// it decodes with no unknown key, validates, starts the server, and does what
// the text around it says, so that examples cannot drift from the code.

var tomlBlock = regexp.MustCompile("(?s)```toml\n(.*?)```")

func readmeTOML(t *testing.T) []string {
	t.Helper()
	readme, err := docs.Read(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	for _, m := range tomlBlock.FindAllStringSubmatch(readme, -1) {
		blocks = append(blocks, m[1])
	}
	if len(blocks) == 0 {
		t.Fatal("no ```toml block in README.md or docs/")
	}
	return blocks
}

func TestReadmeTOMLSnippets(t *testing.T) {
	for i, block := range readmeTOML(t) {
		// Addresses only are rewritten: the Redis of the Scaling out example
		// is one the test starts, and the pprof listener takes a free port.
		if strings.Contains(block, `type = "redis"`) {
			srv := redistest.Start(t)
			block = strings.ReplaceAll(block, "redis://127.0.0.1:6379/0", srv.URL)
			if strings.Contains(block, "redis_sentinels") { // the sentinels of docs/scaling.md, watching srv
				for i, s := range redistest.StartSentinels(t, srv, "stardust", 3, 0) {
					block = strings.ReplaceAll(block, fmt.Sprintf("127.0.0.1:%d", 26379+i), s.Addr)
				}
			}
			if strings.Contains(block, "redis_cluster") { // the Redis Cluster of docs/scaling.md
				for i, a := range redistest.StartCluster(t).Seeds[:3] {
					block = strings.ReplaceAll(block, fmt.Sprintf("127.0.0.1:%d", 7000+i), a)
				}
			}
		}
		block = strings.ReplaceAll(block, `pprof = "127.0.0.1:6060"`, `pprof = "127.0.0.1:0"`)
		file := writeFile(t, block)
		m, out := newTestMain()
		if err := m.ParseFlags([]string{"-c", file, "--listen", "127.0.0.1:0", "--log-level", "warn"}); err != nil {
			t.Fatalf("README toml block %d does not load: %v\n%s\n%s", i+1, err, out, block)
		}
		if err := m.Run(); err != nil {
			t.Fatalf("README toml block %d does not start: %v", i+1, err)
		}
		base := "http://" + m.Addr().String() + "/comet"
		resp, err := http.Get(base + "/")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("block %d: info page: %v %v", i+1, err, resp)
		}
		resp.Body.Close()
		if strings.Contains(block, "[bayeux.auth]") {
			checkAuthExample(t, base)
		}
		if strings.Contains(block, "auth_user") {
			checkPublishAuthExample(t, base)
		}
		if strings.Contains(block, `pattern = "/chat/private/**"`) {
			checkChannelsExample(t, base)
		}
		if m := hmacSecret.FindStringSubmatch(block); m != nil {
			checkTokenExample(t, base, m[1])
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// bayeuxPost sends one message from a browser with its own cookie jar.
func bayeuxPost(t *testing.T, hc *http.Client, base string, msg map[string]any) map[string]any {
	t.Helper()
	body, _ := json.Marshal([]any{msg})
	resp, err := hc.Post(base+"/bayeux", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var replies []map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&replies); err != nil || len(replies) == 0 {
		t.Fatalf("bayeux reply: %v", err)
	}
	return replies[0]
}

func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar}
}

// checkAuthExample: alice handshakes with the password the README gives and
// reads /chat/private/**; anonymous clients may read /chat/** but not that.
func checkAuthExample(t *testing.T, base string) {
	t.Helper()
	hs := func(hc *http.Client, ext map[string]any) map[string]any {
		return bayeuxPost(t, hc, base, map[string]any{"channel": "/meta/handshake", "version": "1.0",
			"supportedConnectionTypes": []string{"long-polling"}, "ext": ext})
	}
	alice := browser()
	r := hs(alice, map[string]any{"username": "alice", "password": "wonder"})
	if r["successful"] != true {
		t.Fatalf("the README's alice/wonder handshake fails: %v", r)
	}
	sub := bayeuxPost(t, alice, base, map[string]any{"channel": "/meta/subscribe", "clientId": r["clientId"], "subscription": "/chat/private/x"})
	if sub["successful"] != true {
		t.Errorf("alice subscribing to /chat/private/x: %v", sub)
	}
	if r := hs(browser(), map[string]any{"username": "alice", "password": "wander"}); r["successful"] != false {
		t.Errorf("a wrong password is accepted: %v", r)
	}
}

// checkPublishAuthExample: publishing needs the README's credentials.
func checkPublishAuthExample(t *testing.T, base string) {
	t.Helper()
	for pass, want := range map[string]int{"": 401, "s3cret": 200} {
		if code := publishAs(t, base, "publisher", pass); code != want {
			t.Errorf("publish with password %q: %d, want %d", pass, code, want)
		}
	}
}

// publishAs publishes one message to channel news with HTTP basic auth
// (none if pass is empty) and returns the status.
func publishAs(t *testing.T, base, user, pass string) int {
	t.Helper()
	return publishAsTo(t, base, "news", user, pass)
}

// publishAsTo is publishAs to channel.
func publishAsTo(t *testing.T, base, channel, user, pass string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/channel/"+channel, strings.NewReader(`m={"a":1}`))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if pass != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkChannelsExample: with the README's [[channels]] blocks an anonymous
// Bayeux client may not subscribe to /chat/private/x (403) but may to
// /chat/public; channel live keeps no history, news keeps comet.history_size.
func checkChannelsExample(t *testing.T, base string) {
	t.Helper()
	hc := browser()
	r := bayeuxPost(t, hc, base, map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}})
	sub := func(ch string) map[string]any {
		return bayeuxPost(t, hc, base, map[string]any{"channel": "/meta/subscribe", "clientId": r["clientId"], "subscription": ch})
	}
	if s := sub("/chat/private/x"); s["successful"] != false || !strings.HasPrefix(fmt.Sprint(s["error"]), "403:") {
		t.Errorf("anonymous subscribe to /chat/private/x: %v, want 403", s)
	}
	if s := sub("/chat/public"); s["successful"] != true {
		t.Errorf("anonymous subscribe to /chat/public: %v", s)
	}
	for ch, want := range map[string]string{"live": "0 0", "news": "50 1"} {
		if code := publishAsTo(t, base, ch, "", ""); code != 200 {
			t.Fatalf("publish to %s: %d", ch, code)
		}
		resp, err := http.Get(base + "/channel/" + ch)
		if err != nil {
			t.Fatal(err)
		}
		var info []struct {
			Size     int               `json:"size"`
			Messages []json.RawMessage `json:"messages"`
		}
		err = json.NewDecoder(resp.Body).Decode(&info)
		resp.Body.Close()
		if err != nil || len(info) != 1 || fmt.Sprint(info[0].Size, len(info[0].Messages)) != want {
			t.Errorf("channel %s: %+v %v, want size and messages %s", ch, info, err, want)
		}
	}
}
