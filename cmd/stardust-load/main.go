// Command stardust-load drives a COMET server on this machine with many
// subscribers and a few publishers, and reports what arrived and how fast:
// messages published, deliveries expected and received, lost and duplicated
// messages, latency percentiles from publish to receipt (the message carries
// its send time), publish throughput and, with --pid, the server's CPU time
// per delivery and its resident memory.
//
// Subscribers speak the Stardust API (long polling or SSE), Bayeux 1.0
// (long-polling or WebSocket) or Centrifugo's unidirectional WebSocket and
// SSE, so the same load drives Stardust, Faye's Node server, CometD,
// Centrifugo, or the bare net/http floor (cmd/stardust-floor). Publishers use
// the Stardust API, Bayeux long-polling or Centrifugo's server HTTP API. --cpu pins the
// tool to one CPU so that it does not compete with the server it loads.
//
// It only ever talks to loopback addresses, and it always stops by itself:
// after --duration of publishing or --messages messages, whichever comes
// first, plus a bounded set-up and drain; or at SIGINT (a second one kills).
//
//	stardust-load --url http://127.0.0.1:5742/comet --clients 1000 --channels 10 \
//	    --publishers 2 --rate 200 --duration 20s --pid $(pidof stardust)
//	stardust-load --mode websocket --bayeux http://127.0.0.1:8000/comet/bayeux \
//	    --clients 1000 --rate 100 --cpu 1 --pid $(pidof node)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	maxDuration = 10 * time.Minute
	maxMessages = 10_000_000
	maxClients  = 100_000
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stardust-load:", err)
		os.Exit(2)
	}
	if cfg.CPU >= 0 {
		if err := pinToCPU(cfg.CPU); err != nil {
			fmt.Fprintln(os.Stderr, "stardust-load: --cpu:", err)
			os.Exit(2)
		}
		if os.Getenv("GOMAXPROCS") == "" {
			runtime.GOMAXPROCS(1)
		}
	}
	cfg.Progress = isTerminal(os.Stderr) && !cfg.JSON
	if cfg.child >= 0 {
		cfg.control = newChildControl(os.Stdin, os.Stdout)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second signal kills at once
	}()
	rep, err := run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stardust-load:", err)
		os.Exit(1)
	}
	if cfg.JSON {
		enc := json.NewEncoder(os.Stdout)
		if cfg.control == nil { // a child's report is one line
			enc.SetIndent("", "  ")
		}
		_ = enc.Encode(rep)
	} else {
		rep.writeText(os.Stdout)
	}
	if rep.Lost > 0 && rep.OverflowLost == 0 && rep.StoppedBy != "signal" {
		os.Exit(3) // messages vanished without the server saying so
	}
}

// config is the command line.
type config struct {
	URL          string
	Clients      int
	Channels     int
	Publishers   int
	Rate         float64
	Duration     time.Duration
	Messages     int
	Mode         string
	PID          int
	JSON         bool
	Size         int
	Ramp         int
	SetupTimeout time.Duration
	Drain        time.Duration
	PollTimeout  time.Duration
	BayeuxURL    string
	Prefix       string
	Publish      string
	CPU          int
	APIKey       string
	Procs        int
	Source       string
	URLs         string        // --urls: the subscribers' base URLs, one per child in turn
	Settle       time.Duration // --settle: wait after set-up, before publishing
	Warmup       time.Duration // --warmup: messages of the first this of publishing count for delivery, not latency
	Progress     bool          // a progress line on standard error (set when it is a terminal)

	base, bayeux *url.URL
	spread       []string // --urls, parsed: child i's subscribers use spread[i % len]

	child   int           // --child: this process is child N of a --procs run; -1 not
	runTag  string        // --run: the parent's run tag (a child's messages and channels are its parent's)
	control *childControl // a child's line protocol with its parent
}

// idPrefix sets a child's client ids apart from its siblings'.
func (c *config) idPrefix() string {
	if c.child < 0 {
		return ""
	}
	return fmt.Sprintf("c%d.", c.child)
}

// Client transports (--mode).
const (
	modePoll      = "poll"          // Stardust API long polling
	modeSSE       = "sse"           // Stardust API Server-Sent Events
	modeBayeux    = "bayeux"        // Bayeux long-polling
	modeWebSocket = "websocket"     // Bayeux over a WebSocket
	modeUniWS     = "uni_websocket" // Centrifugo's unidirectional WebSocket
	modeUniSSE    = "uni_sse"       // Centrifugo's unidirectional SSE
)

// defaultPublish is how each transport's server is published to by default.
var defaultPublish = map[string]string{modePoll: "stardust", modeSSE: "stardust", modeBayeux: "bayeux",
	modeWebSocket: "bayeux", modeUniWS: "centrifugo", modeUniSSE: "centrifugo"}

// bayeuxMode reports whether the subscribers speak Bayeux.
func (c *config) bayeuxMode() bool { return c.Mode == modeBayeux || c.Mode == modeWebSocket }

// usesStardustAPI reports whether anything of the run talks to the Stardust API.
func (c *config) usesStardustAPI() bool {
	return c.Mode == modePoll || c.Mode == modeSSE || c.Publish == "stardust"
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("stardust-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:5742/comet", "base `URL` of the Stardust API (loopback only)")
	fs.IntVar(&c.Clients, "clients", 100, "long-polling subscribers, each with its own stream id")
	fs.IntVar(&c.Channels, "channels", 1, "channels; client i subscribes to channel i mod K")
	fs.IntVar(&c.Publishers, "publishers", 1, "concurrent publishers")
	fs.Float64Var(&c.Rate, "rate", 100, "messages per second, all publishers together; 0 as fast as possible")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "how long to publish (at most 10m)")
	fs.IntVar(&c.Messages, "messages", 1_000_000, "stop after publishing this many messages")
	fs.StringVar(&c.Mode, "mode", modePoll, "subscriber transport: poll (Stardust API long polling, as jquery.ev), sse,\nbayeux (Bayeux long-polling), websocket (Bayeux over a WebSocket), or Centrifugo's\nuni_websocket or uni_sse (then --url is Centrifugo's base URL)")
	fs.StringVar(&c.BayeuxURL, "bayeux", "", "`URL` of the Bayeux endpoint (loopback only; default --url + \"/bayeux\")")
	fs.StringVar(&c.Prefix, "prefix", "/stardust", "Bayeux channel `prefix`: Stardust channel NAME is Bayeux channel PREFIX/NAME")
	fs.StringVar(&c.Publish, "publish", "", "how to publish: stardust (POST to the Stardust API), bayeux (Bayeux long-polling)\nor centrifugo (Centrifugo's /api/publish); default stardust for poll and sse, bayeux for\nbayeux and websocket, centrifugo for uni_websocket and uni_sse")
	fs.StringVar(&c.APIKey, "api-key", "stardust-load", "Centrifugo's HTTP API `key` (http_api.key), for --publish centrifugo")
	fs.IntVar(&c.CPU, "cpu", -1, "pin the tool to this CPU `number` (sched_setaffinity) and run it with GOMAXPROCS=1 unless\nGOMAXPROCS is set; -1 leaves it free")
	fs.IntVar(&c.Procs, "procs", 1, "run the subscribers in this many child processes (1 to 16), each with its share of\n--clients and, on Linux, its own loopback source address (127.0.0.2 and up): for more held\nclients than one process may open files")
	fs.StringVar(&c.URLs, "urls", "", "with --procs: comma-separated base `URLs` of the processes of one cluster (Redis\nengine); child i's subscribers use the (i mod n)-th, with its \"/bayeux\"; --url still\npublishes and counts the subscribers")
	fs.DurationVar(&c.Settle, "settle", 0, "after every client is registered, wait this long before publishing (so that each\nlong poll has been answered and made again: the Redis engine mirrors a client from its\nsecond poll)")
	fs.DurationVar(&c.Warmup, "warmup", 0, "the messages published in the first this of publishing (at --rate) are counted as\nreceived, lost or duplicated but left out of the latency percentiles: a server's\nfixed cost per new client (the Redis engine's first polls) then does not show as tail")
	fs.StringVar(&c.Source, "source", "", "loopback `address` to connect from (default: the system's choice)")
	fs.IntVar(&c.child, "child", -1, "internal: this is child `N` of a --procs run (line protocol on stdin/stdout)")
	fs.StringVar(&c.runTag, "run", "", "internal: a child's run `tag`, its parent's")
	fs.IntVar(&c.PID, "pid", 0, "server process `id`, to report its CPU time per delivery and resident memory (from /proc)")
	fs.BoolVar(&c.JSON, "json", false, "print the report as a JSON object")
	fs.IntVar(&c.Size, "size", 0, "extra payload `bytes` per message")
	fs.IntVar(&c.Ramp, "ramp", 2000, "clients started per second during set-up; 0 all at once")
	fs.DurationVar(&c.SetupTimeout, "setup-timeout", time.Minute, "how long to wait for every client to be registered")
	fs.DurationVar(&c.Drain, "drain", 5*time.Second, "after publishing, how long to wait for deliveries still in flight")
	fs.DurationVar(&c.PollTimeout, "poll-timeout", 90*time.Second, "client-side limit of one poll request (above the server's hold)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: stardust-load [flags]\n\nLoad a COMET server on this machine (Stardust API or Bayeux) and report deliveries,\nlatency, server CPU per delivery and memory.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.validate()
}

func (c *config) validate() error {
	u, err := loopbackURL(c.URL)
	if err != nil {
		return err
	}
	c.base = u
	if c.BayeuxURL == "" {
		c.BayeuxURL = u.String() + "/bayeux"
	}
	if c.bayeux, err = loopbackURL(c.BayeuxURL); err != nil {
		return fmt.Errorf("--bayeux: %w", err)
	}
	if c.Publish == "" {
		c.Publish = defaultPublish[c.Mode]
	}
	c.spread = nil
	for _, raw := range strings.Split(c.URLs, ",") {
		if raw = strings.TrimSpace(raw); raw == "" {
			continue
		}
		s, err := loopbackURL(raw)
		if err != nil {
			return fmt.Errorf("--urls: %w", err)
		}
		c.spread = append(c.spread, s.String())
	}
	switch {
	case c.Clients < 1 || c.Clients > maxClients:
		return fmt.Errorf("--clients %d: want 1 to %d", c.Clients, maxClients)
	case c.Channels < 1 || c.Channels > c.Clients:
		return fmt.Errorf("--channels %d: want 1 to --clients", c.Channels)
	case c.Publishers < 1 || c.Publishers > 1000:
		return fmt.Errorf("--publishers %d: want 1 to 1000", c.Publishers)
	case c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("--rate %v: want 0 (unpaced) or more", c.Rate)
	case c.Duration <= 0 || c.Duration > maxDuration:
		return fmt.Errorf("--duration %s: want more than 0 and at most %s", c.Duration, maxDuration)
	case c.Messages < 1 || c.Messages > maxMessages:
		return fmt.Errorf("--messages %d: want 1 to %d", c.Messages, maxMessages)
	case defaultPublish[c.Mode] == "":
		return fmt.Errorf("--mode %q: want poll, sse, bayeux, websocket, uni_websocket or uni_sse", c.Mode)
	case c.Publish != "stardust" && c.Publish != "bayeux" && c.Publish != "centrifugo":
		return fmt.Errorf("--publish %q: want stardust, bayeux or centrifugo", c.Publish)
	case (c.Publish == "centrifugo") != c.centrifugoMode():
		return fmt.Errorf("--publish %s with --mode %s: Centrifugo's subscribers and publisher go together", c.Publish, c.Mode)
	case !channelPattern.MatchString(c.Prefix):
		return fmt.Errorf("--prefix %q: want a Bayeux channel such as /stardust", c.Prefix)
	case c.Procs < 1 || c.Procs > maxProcs || c.Procs > c.Clients:
		return fmt.Errorf("--procs %d: want 1 to %d, and at most --clients", c.Procs, maxProcs)
	case c.URLs != "" && c.Procs < 2:
		return errors.New("--urls: needs --procs 2 or more (the children spread over the URLs)")
	case c.Settle < 0 || c.Settle > maxDuration:
		return fmt.Errorf("--settle %s: want 0 to %s", c.Settle, maxDuration)
	case c.Warmup < 0 || c.Warmup >= c.Duration:
		return fmt.Errorf("--warmup %s: want 0 or more, and less than --duration %s", c.Warmup, c.Duration)
	case c.Warmup > 0 && c.Rate <= 0:
		return errors.New("--warmup: needs a --rate (it counts the first messages of each publisher at that rate)")
	case c.Source != "" && !isLoopbackIP(c.Source):
		return fmt.Errorf("--source %q: want a loopback IP address (127.0.0.0/8 or ::1)", c.Source)
	case c.child >= 0 && (c.Procs != 1 || c.runTag == ""):
		return errors.New("--child: needs --run and no --procs (it is set by a parent, not by hand)")
	case c.CPU < -1 || c.CPU >= 1024:
		return fmt.Errorf("--cpu %d: want a CPU number, or -1", c.CPU)
	case c.Size < 0 || c.Size > 1<<20:
		return fmt.Errorf("--size %d: want 0 to 1 MiB", c.Size)
	case c.Ramp < 0:
		return fmt.Errorf("--ramp %d: want 0 or more", c.Ramp)
	case c.SetupTimeout <= 0 || c.SetupTimeout > maxDuration:
		return fmt.Errorf("--setup-timeout %s: want more than 0 and at most %s", c.SetupTimeout, maxDuration)
	case c.Drain < 0 || c.Drain > time.Minute:
		return fmt.Errorf("--drain %s: want 0 to 1m", c.Drain)
	case c.PollTimeout <= 0 || c.PollTimeout > maxDuration:
		return fmt.Errorf("--poll-timeout %s: want more than 0 and at most %s", c.PollTimeout, maxDuration)
	}
	return nil
}

// loopbackURL parses raw and refuses anything but http(s) to 127.0.0.0/8,
// ::1 or localhost: this tool floods what it points at.
func loopbackURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--url: %v", err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("--url %q: no user information, please", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--url %q: want http:// or https://", raw)
	}
	host := u.Hostname()
	if !isLoopbackHost(host) {
		return nil, fmt.Errorf("--url %q: host %q is not loopback (127.0.0.0/8, ::1 or localhost); this tool only loads the local machine", raw, host)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

var channelPattern = regexp.MustCompile(`^(/[A-Za-z0-9_.~-]+)+$`)

func isLoopbackHost(host string) bool {
	return strings.EqualFold(host, "localhost") || isLoopbackIP(host)
}

func isLoopbackIP(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && ip.IsLoopback()
}

// loopbackDialer refuses, at connect time, any address that is not loopback,
// whatever a name resolved to.
var loopbackDialer = &net.Dialer{
	Timeout: 10 * time.Second,
	Control: func(network, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("refusing to connect to %s: not loopback", address)
		}
		return nil
	},
}
