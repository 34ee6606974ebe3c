package main

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/bayeuxtest"
	"github.com/stardust-go/stardust/internal/leakcheck"
)

// TestDemo: --demo serves the pages and runs the chat's reply bot, with its
// private service, and Close stops the bot with the rest; without --demo
// there are neither pages nor bot.
func TestDemo(t *testing.T) {
	before := runtime.NumGoroutine()
	m := startMain(t, "--demo", "--timeout", "2s")
	base := "http://" + m.Addr().String() + "/comet"
	// What `make run` shows: the URL to open.
	if out, want := fmt.Sprint(m.Stderr), "stardust: demo pages at "+base+"/demo/\n"; !strings.Contains(out, want) {
		t.Errorf("--demo printed %q, want the line %q", out, want)
	}
	for _, page := range []string{"", "chat.html", "live.html", "status.html", "style.css"} {
		resp, err := http.Get(base + "/demo/" + page)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /comet/demo/%s: %s", page, resp.Status)
		}
	}
	url := base + "/bayeux"
	browser := bayeuxtest.New(url)
	id := browser.Handshake(t)
	browser.Post(t, map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": demoChannel},
		map[string]any{"channel": demoChannel, "clientId": id, "data": map[string]any{"user": "dora", "chat": "hi"}},
		map[string]any{"channel": "/service/autobot", "clientId": id, "id": "s1", "data": map[string]any{"user": "dora", "chat": "psst"}})
	var answered, private bool
	for deadline := time.Now().Add(10 * time.Second); !(answered && private) && time.Now().Before(deadline); {
		for _, r := range browser.Connect(t, id) {
			data, _ := r["data"].(map[string]any)
			answered = answered || (r["channel"] == demoChannel && data["chat"] == "I got your message, dora")
			private = private || (r["channel"] == "/service/autobot" && data["user"] == "Autobot")
		}
	}
	if !answered || !private {
		t.Errorf("with --demo: the bot answered on %s: %v, by its service: %v", demoChannel, answered, private)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	leakcheck.Goroutines(t, before)

	plain := startMain(t)
	resp, err := http.Get("http://" + plain.Addr().String() + "/comet/demo/chat.html")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("without --demo, GET /comet/demo/chat.html: %s, want 404", resp.Status)
	}
	if st, err := plain.server.Hub().Stats(); err != nil || st.Clients != 0 {
		t.Errorf("without --demo the server has %d clients (%v), want none (no bot)", st.Clients, err)
	}
}
