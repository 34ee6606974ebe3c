// Command embedded is the README's Go API example: Stardust inside a program
// of your own, with a service, a message ACL, an event callback and a local
// reply-bot client. Run it with `go run ./examples/embedded`.
package main

import (
	"errors"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/server"
)

func main() {
	log := logrus.NewEntry(logrus.New())
	srv := server.New(server.Options{
		Base: "/comet",
		Hub: server.HubOptions{
			HistorySize: 50,
			// Callback: every subscribe, unsubscribe, publish, client_connect,
			// client_disconnect (and queue_drop), synchronously, no lock held.
			Events: func(e server.Event) {
				if e.Type == "publish" {
					log.Infof("%s published on %s", e.ClientID, e.Channel)
				}
			},
		},
		Bayeux: &server.BayeuxOptions{
			AnonPublish: false,
			WebSocket:   true,
			// Services: publishes to /service/NAME; the reply goes to the caller only.
			Services: map[string]server.Service{
				"echo": server.EchoService,
				"time": func(c *server.Client, m *server.BayeuxMessage) (any, error) {
					return map[string]any{"now": time.Now().Unix()}, nil
				},
			},
			// MessageACL: every message, the handshake included; an error rejects it (403).
			MessageACL: server.ChainACL(
				func(c *server.Client, m *server.BayeuxMessage) error {
					if m.Channel == "/meta/handshake" && m.ExtString("token") != "s3cret" {
						return errors.New("bad token")
					}
					return nil
				},
			),
		},
	}, log)
	defer srv.Close()

	// A local client, as the POE reply-bot: no HTTP, no handshake, no ACL.
	var bot *server.LocalClient
	bot, _ = srv.Hub().NewLocalClient("reply-bot", func(m *server.Message) {
		if m.ClientID == "reply-bot" {
			return // not our own messages
		}
		_ = bot.Publish(m.Channel, map[string]any{"user": "Autobot", "chat": "I got your message"})
	})
	_ = bot.Subscribe("/chat/demo") // patterns work too: "/chat/**"

	log.Fatal(http.ListenAndServe("127.0.0.1:5744", srv)) // not 5742: make run may hold it
}
