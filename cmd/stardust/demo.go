package main

import (
	"github.com/stardust-go/stardust/examples/autobot"
	"github.com/stardust-go/stardust/server"
)

// demoChannel is the channel of the demo chat ({base}/demo/chat.html), as
// on the POE server's /chat/demo.
const demoChannel = "/chat/demo"

// demoOptions adds what the demo pages need to the server's options when
// --demo is on: the bot's private service, "autobot".
func demoOptions(o *server.Options) {
	if o.Bayeux == nil {
		return // no Bayeux, no chat
	}
	services := map[string]server.Service{"autobot": autobot.Service}
	for name, svc := range o.Bayeux.Services {
		services[name] = svc
	}
	o.Bayeux.Services = services
}

// startDemo starts the reply bot of the demo chat; nil when the demo is off.
func startDemo(on bool, s *server.Server) (*autobot.Bot, error) {
	if !on {
		return nil, nil
	}
	return autobot.Start(s.Hub(), demoChannel)
}
