package main

import (
	"fmt"
	"net"
	"strconv"

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

// announceDemo prints where the demo pages are, so that `make run` (and
// --demo) says which URL to open; nothing in FastCGI mode or on a Unix
// socket, where the web server in front decides the URL.
func (m *Main) announceDemo(addr net.Addr) {
	tcp, ok := addr.(*net.TCPAddr)
	if !m.Config.Server.Demo || m.Config.Server.Mode == "fcgi" || !ok {
		return
	}
	host := tcp.IP.String()
	if tcp.IP.IsUnspecified() {
		host = "127.0.0.1" // listening everywhere: this machine is one of them
	}
	fmt.Fprintf(m.Stderr, "stardust: demo pages at http://%s%s/demo/\n",
		net.JoinHostPort(host, strconv.Itoa(tcp.Port)), m.Config.Server.Base)
}
