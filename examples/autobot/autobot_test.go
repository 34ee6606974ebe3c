package autobot_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/stardust-go/stardust/examples/autobot"
	"github.com/stardust-go/stardust/internal/bayeuxtest"
	"github.com/stardust-go/stardust/server"
)

// TestAutobot runs the bot as the package comment shows and talks to it as a
// browser would, over Bayeux long-polling: a chat line gets the bot's answer
// on the channel, a join its greeting, a leave nothing, the service a private
// answer.
func TestAutobot(t *testing.T) {
	log, _ := test.NewNullLogger()
	srv := server.New(server.Options{
		Base:        "/comet",
		PollTimeout: 2 * time.Second,
		Bayeux:      &server.BayeuxOptions{Services: map[string]server.Service{"autobot": autobot.Service}},
	}, logrus.NewEntry(log))
	bot, err := autobot.Start(srv.Hub(), "/chat/demo")
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer func() {
		bot.Close()
		srv.Close()
		ts.Close()
	}()

	url := ts.URL + "/comet/bayeux"
	browser := bayeuxtest.New(url)
	send := func(msgs ...map[string]any) []map[string]any { return browser.Post(t, msgs...) }
	id := browser.Handshake(t)
	if r := send(map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/chat/demo"}); r[0]["successful"] != true {
		t.Fatalf("subscribe: %v", r)
	}
	// chats collects what the channel carried, in order, until want lines came.
	chats := func(want int, within time.Duration) []autobot.Chat {
		t.Helper()
		var got []autobot.Chat
		deadline := time.Now().Add(within)
		for len(got) < want && time.Now().Before(deadline) {
			for _, m := range browser.Connect(t, id) {
				if m["channel"] == "/chat/demo" {
					raw, _ := json.Marshal(m["data"])
					var c autobot.Chat
					_ = json.Unmarshal(raw, &c)
					got = append(got, c)
				}
			}
		}
		return got
	}
	send(map[string]any{"channel": "/chat/demo", "clientId": id, "data": autobot.Chat{User: "alice", Join: true}})
	send(map[string]any{"channel": "/chat/demo", "clientId": id, "data": autobot.Chat{User: "alice", Chat: "hello, bot"}})
	send(map[string]any{"channel": "/chat/demo", "clientId": id, "data": autobot.Chat{User: "alice", Leave: true}})
	got := chats(5, 10*time.Second)
	want := []autobot.Chat{
		{User: "alice", Join: true},
		{User: autobot.Name, Chat: "Welcome, alice! Say something and I will answer."},
		{User: "alice", Chat: "hello, bot"},
		{User: autobot.Name, Chat: "I got your message, alice"},
		{User: "alice", Leave: true},
	}
	// The bot answers on its own goroutine: its lines may come after later
	// lines of alice, but each after the line it answers.
	if len(got) != len(want) || !sameSet(got, want) || index(got, want[1]) < index(got, want[0]) || index(got, want[3]) < index(got, want[2]) {
		t.Errorf("the channel carried %+v, want %+v", got, want)
	}
	if extra := chats(1, 3*time.Second); len(extra) != 0 { // two held connects
		t.Errorf("the bot answered a leave notice: %+v", extra)
	}

	r := send(map[string]any{"channel": "/service/autobot", "clientId": id, "id": "7", "data": autobot.Chat{User: "alice", Chat: "psst"}})
	if r[0]["successful"] != true {
		t.Fatalf("service call: %v", r)
	}
	var answer map[string]any
	for deadline := time.Now().Add(10 * time.Second); answer == nil && time.Now().Before(deadline); {
		for _, m := range browser.Connect(t, id) {
			if m["channel"] == "/service/autobot" && m["id"] == "7" {
				answer, _ = m["data"].(map[string]any)
			}
		}
	}
	if text, _ := answer["chat"].(string); answer["user"] != autobot.Name || !strings.HasPrefix(text, `You said "psst" to me alone.`) {
		t.Errorf("service answer %v", answer)
	}
}

func index(list []autobot.Chat, c autobot.Chat) int {
	for i, x := range list {
		if x == c {
			return i
		}
	}
	return -1
}

func sameSet(a, b []autobot.Chat) bool {
	for _, c := range b {
		if index(a, c) < 0 {
			return false
		}
	}
	return true
}
