package autobot_test

import (
	"encoding/json"
	"fmt"
	"log"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/examples/autobot"
	"github.com/stardust-go/stardust/server"
)

// The README quotes the body of this example as it is.
func ExampleStart() {
	srv := server.New(server.Options{
		Bayeux: &server.BayeuxOptions{Services: map[string]server.Service{"autobot": autobot.Service}},
	}, logrus.NewEntry(logrus.New()))
	defer srv.Close()
	bot, err := autobot.Start(srv.Hub(), "/chat/demo")
	if err != nil {
		log.Fatal(err)
	}
	defer bot.Close()

	// Someone to talk to: another local client (pages use Bayeux).
	answers := make(chan string, 1)
	alice, _ := srv.Hub().NewLocalClient("alice", func(m *server.Message) {
		var c autobot.Chat
		if json.Unmarshal(m.Data, &c) == nil && c.User == autobot.Name {
			answers <- c.Chat
		}
	})
	defer alice.Close()
	_ = alice.Subscribe("/chat/demo")
	_ = alice.Publish("/chat/demo", autobot.Chat{User: "alice", Chat: "hello"})
	fmt.Println(<-answers)
	// Output: I got your message, alice
}
