// Package autobot is the POE server's reply bot for Stardust: a local client
// (in process: no HTTP, no handshake, no ACL) that answers every chat message
// on its channel, plus a service that answers the caller alone.
//
// Chat messages are Bayeux data objects as the demo chat sends them:
// {"user": "alice", "chat": "hello"} for a line, {"user": "alice", "join": true}
// and {"user": "alice", "leave": true} for notices. The bot answers a line
// with {"user": "Autobot", "chat": "I got your message, alice"} and greets
// whoever joins. `stardust --demo` runs it on /chat/demo; in a program of
// your own:
//
//	srv := server.New(opts, log) // opts.Bayeux.Services["autobot"] = autobot.Service
//	bot, err := autobot.Start(srv.Hub(), "/chat/demo")
//	if err != nil {
//		return err
//	}
//	defer bot.Close()
package autobot

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/stardust-go/stardust/server"
)

// Name is the user name the bot chats as.
const Name = "Autobot"

// Chat is one message of the demo chat.
type Chat struct {
	User  string `json:"user"`
	Chat  string `json:"chat,omitempty"`
	Join  bool   `json:"join,omitempty"`
	Leave bool   `json:"leave,omitempty"`
}

// Bot is a running reply bot.
type Bot struct {
	lc *server.LocalClient
}

// Start subscribes a bot to channel (a pattern such as /chat/** works too)
// and answers on the channel each message came from. Close stops it.
func Start(hub *server.Hub, channel string) (*Bot, error) {
	b := &Bot{}
	lc, err := hub.NewLocalClient("autobot-"+server.NewID()[:8], b.handle)
	if err != nil {
		return nil, fmt.Errorf("autobot: %w", err)
	}
	b.lc = lc
	if err := lc.Subscribe(channel); err != nil {
		lc.Close()
		return nil, fmt.Errorf("autobot: subscribe %s: %w", channel, err)
	}
	return b, nil
}

// handle runs on the local client's goroutine, one message at a time.
func (b *Bot) handle(m *server.Message) {
	if m.ClientID == b.lc.ID() {
		return // not our own messages
	}
	var in Chat
	if json.Unmarshal(m.Data, &in) != nil {
		return // not a chat message
	}
	user := in.User
	if user == "" {
		user = "anon"
	}
	var out string
	switch {
	case in.Join:
		out = fmt.Sprintf("Welcome, %s! Say something and I will answer.", user)
	case in.Chat != "":
		out = "I got your message, " + user
	default:
		return // leave notices and anything else: nothing to say
	}
	_ = b.lc.Publish(m.Channel, Chat{User: Name, Chat: out})
}

// Close stops the bot and waits for its goroutine.
func (b *Bot) Close() { b.lc.Close() }

// Service answers a publish to /service/NAME (register it in
// server.BayeuxOptions.Services) with a private line from the bot: what it
// was told, and the server's time. Only the caller gets the answer.
func Service(_ *server.Client, m *server.BayeuxMessage) (any, error) {
	var in Chat
	if err := json.Unmarshal(m.Data, &in); err != nil {
		return nil, fmt.Errorf("want {\"user\": …, \"chat\": …}: %v", err)
	}
	return Chat{User: Name, Chat: fmt.Sprintf("You said %q to me alone. It is %s here.",
		in.Chat, time.Now().UTC().Format("15:04:05 MST"))}, nil
}
