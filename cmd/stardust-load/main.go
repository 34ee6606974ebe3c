// Command stardust-load drives a Stardust server on this machine with many
// long-polling (or SSE) clients and a few publishers, and reports what
// arrived and how fast: messages published, deliveries expected and
// received, lost messages, latency percentiles from publish to receipt,
// publish throughput and, with --pid, the server's resident memory.
//
// It only ever talks to loopback addresses, and it always stops by itself:
// after --duration of publishing or --messages messages, whichever comes
// first, plus a bounded set-up and drain; or at SIGINT (a second one kills).
//
//	stardust-load --url http://127.0.0.1:5742/comet --clients 1000 --channels 10 \
//	    --publishers 2 --rate 200 --duration 20s --pid $(pidof stardust)
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
		enc.SetIndent("", "  ")
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

	base *url.URL
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
	fs.StringVar(&c.Mode, "mode", "poll", "client transport: poll (long polling, as jquery.ev) or sse")
	fs.IntVar(&c.PID, "pid", 0, "server process `id`, to report its resident memory (from /proc)")
	fs.BoolVar(&c.JSON, "json", false, "print the report as a JSON object")
	fs.IntVar(&c.Size, "size", 0, "extra payload `bytes` per message")
	fs.IntVar(&c.Ramp, "ramp", 2000, "clients started per second during set-up; 0 all at once")
	fs.DurationVar(&c.SetupTimeout, "setup-timeout", time.Minute, "how long to wait for every client to be registered")
	fs.DurationVar(&c.Drain, "drain", 5*time.Second, "after publishing, how long to wait for deliveries still in flight")
	fs.DurationVar(&c.PollTimeout, "poll-timeout", 90*time.Second, "client-side limit of one poll request (above the server's hold)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: stardust-load [flags]\n\nLoad a Stardust server on this machine and report deliveries, latency and memory.\n\nFlags:\n")
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
	case c.Mode != "poll" && c.Mode != "sse":
		return fmt.Errorf("--mode %q: want poll or sse", c.Mode)
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

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
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

// report is the outcome of a run; its JSON form is the --json output.
type report struct {
	URL        string  `json:"url"`
	Mode       string  `json:"mode"`
	Clients    int     `json:"clients"`
	Channels   int     `json:"channels"`
	Publishers int     `json:"publishers"`
	RateTarget float64 `json:"rate_target"`
	StoppedBy  string  `json:"stopped_by"` // duration, messages, signal
	SetupSec   float64 `json:"setup_s"`
	PublishSec float64 `json:"publish_s"`

	Published     int64   `json:"published"`
	PublishErrors int64   `json:"publish_errors"`
	PublishRate   float64 `json:"publish_rate"` // messages/s
	Expected      int64   `json:"expected"`     // deliveries to our clients
	Received      int64   `json:"received"`
	Lost          int64   `json:"lost"`
	Duplicates    int64   `json:"duplicates"`
	OverflowLost  int64   `json:"overflow_lost"` // messages the server said it dropped
	Recipients    int64   `json:"server_recipients"`
	DeliveryRate  float64 `json:"delivery_rate"` // deliveries/s over the publish window
	Polls         int64   `json:"polls"`         // poll mode: answers; sse mode: streams that ended
	PollErrors    int64   `json:"poll_errors"`
	FirstError    string  `json:"first_error,omitempty"`

	Latency  percentiles `json:"latency_ms"`          // publish start to receipt
	Delivery percentiles `json:"server_to_client_ms"` // server's _ts to receipt
	Request  percentiles `json:"publish_request_ms"`  // publish round trip

	RSS *rssReport `json:"rss,omitempty"`
}

type percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

type rssReport struct {
	PID          int     `json:"pid"`
	BeforeKB     int64   `json:"before_kb"`
	ConnectedKB  int64   `json:"connected_kb"`
	EndKB        int64   `json:"end_kb"`
	PeakKB       int64   `json:"peak_kb"` // highest VmRSS sampled during the run
	HWMKB        int64   `json:"hwm_kb"`  // VmHWM: the process's peak since it started
	PerClientKB  float64 `json:"per_client_kb"`
	SampleErrors int     `json:"sample_errors,omitempty"`
}

// loadMsg is what publishers send and clients read back: the run tag, the
// send time, the publisher and its message number. Type and Lost are the
// server's overflow notice; TS is the server's stamp.
type loadMsg struct {
	Load string  `json:"load"`
	T    int64   `json:"t"`
	P    int     `json:"p"`
	N    int64   `json:"n"`
	TS   float64 `json:"_ts"`
	Type string  `json:"type"`
	Lost int64   `json:"lost"`
}

// runner holds the state shared by the clients and publishers of one run.
type runner struct {
	cfg   config
	run   string
	http  *http.Client
	names []string // channel names
	on    []int64  // our clients per channel

	published, pubErrors, expected, recipients atomic.Int64
	received, dups, overflowLost, polls        atomic.Int64
	pollErrors                                 atomic.Int64
	seq                                        atomic.Int64
	firstErr                                   sync.Once
	firstErrText                               atomic.Value

	latency, delivery, request histogram
}

func (r *runner) fail(err error) {
	r.firstErr.Do(func() { r.firstErrText.Store(err.Error()) })
}

func (r *runner) channelURL(k int) string {
	return r.cfg.base.String() + "/channel/" + r.names[k]
}

// run sets up the clients, publishes until a bound, drains and reports.
// Progress and warnings go to logw.
func run(ctx context.Context, cfg config, logw io.Writer) (*report, error) {
	if cfg.base == nil {
		if err := cfg.validate(); err != nil {
			return nil, err
		}
	}
	conns := cfg.Clients + cfg.Publishers + 16
	tr := &http.Transport{
		DialContext:         loopbackDialer.DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	r := &runner{
		cfg: cfg, run: strconv.FormatInt(time.Now().UnixNano()%1e12, 10),
		http: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirects are not followed")
		}},
		names: make([]string, cfg.Channels), on: make([]int64, cfg.Channels),
	}
	for k := range r.names {
		r.names[k] = fmt.Sprintf("load%s_%d", r.run, k)
	}
	for i := 0; i < cfg.Clients; i++ {
		r.on[i%cfg.Channels]++
	}
	rep := &report{URL: cfg.base.String(), Mode: cfg.Mode, Clients: cfg.Clients, Channels: cfg.Channels,
		Publishers: cfg.Publishers, RateTarget: cfg.Rate}

	// The server must answer before anything else starts.
	if err := r.ping(ctx); err != nil {
		return nil, err
	}
	var rss *rssSampler
	if cfg.PID > 0 {
		rss = newRSSSampler(cfg.PID)
		rep.RSS = &rss.rep
	}

	clientCtx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	var clients sync.WaitGroup
	setupStart := time.Now()
	r.startClients(clientCtx, &clients)
	err := r.waitRegistered(ctx, setupStart.Add(cfg.SetupTimeout), logw)
	rep.SetupSec = time.Since(setupStart).Seconds()
	if err != nil {
		stopClients()
		clients.Wait()
		return nil, err
	}
	rss.connected()
	fmt.Fprintf(logw, "stardust-load: %d clients registered in %.2fs; publishing\n", cfg.Clients, rep.SetupSec)

	samplerDone := make(chan struct{})
	samplerCtx, stopSampler := context.WithCancel(ctx)
	go func() { defer close(samplerDone); rss.loop(samplerCtx) }()

	pubStart := time.Now()
	rep.StoppedBy = r.publish(ctx, pubStart.Add(cfg.Duration))
	pubTime := time.Since(pubStart)

	// Wait, bounded, for deliveries still in flight.
	if ctx.Err() == nil {
		deadline := time.Now().Add(cfg.Drain)
		for r.received.Load() < r.expected.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	stopSampler()
	<-samplerDone
	rss.end()
	stopClients()
	clients.Wait()

	rep.PublishSec = pubTime.Seconds()
	rep.Published, rep.PublishErrors = r.published.Load(), r.pubErrors.Load()
	rep.Expected, rep.Received, rep.Recipients = r.expected.Load(), r.received.Load(), r.recipients.Load()
	rep.Duplicates, rep.OverflowLost = r.dups.Load(), r.overflowLost.Load()
	rep.Polls, rep.PollErrors = r.polls.Load(), r.pollErrors.Load()
	rep.Lost = max(0, rep.Expected-(rep.Received-rep.Duplicates))
	if s, ok := r.firstErrText.Load().(string); ok {
		rep.FirstError = s
	}
	if pubTime > 0 {
		rep.PublishRate = float64(rep.Published) / pubTime.Seconds()
		rep.DeliveryRate = float64(rep.Received) / pubTime.Seconds()
	}
	rep.Latency, rep.Delivery, rep.Request = r.latency.percentiles(), r.delivery.percentiles(), r.request.percentiles()
	if rss != nil && cfg.Clients > 0 {
		rss.rep.PerClientKB = float64(rss.rep.ConnectedKB-rss.rep.BeforeKB) / float64(cfg.Clients)
	}
	return rep, nil
}

func (r *runner) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.base.String()+"/", nil)
	resp, err := r.http.Do(req)
	if err != nil {
		return fmt.Errorf("server not answering at %s: %w", r.cfg.base, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s/: status %d; is --url the Stardust base path?", r.cfg.base, resp.StatusCode)
	}
	return nil
}

// startClients starts every client, at most cfg.Ramp per second, so that
// the server's accept queue is not flooded at once.
func (r *runner) startClients(ctx context.Context, wg *sync.WaitGroup) {
	batch := r.cfg.Clients
	if r.cfg.Ramp > 0 {
		batch = max(1, r.cfg.Ramp/20) // every 50 ms
	}
	for i := 0; i < r.cfg.Clients; i++ {
		if i > 0 && i%batch == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c := &client{r: r, id: fmt.Sprintf("%s.%d", r.run, i), ch: i % r.cfg.Channels, last: make([]int64, r.cfg.Publishers)}
			for p := range c.last {
				c.last[p] = -1
			}
			if r.cfg.Mode == "sse" {
				c.sse(ctx)
			} else {
				c.poll(ctx)
			}
		}(i)
	}
}

// waitRegistered waits until the server lists every client among the
// subscribers of our channels, so that no message is published before its
// subscribers exist.
func (r *runner) waitRegistered(ctx context.Context, deadline time.Time, logw io.Writer) error {
	var seen int
	lastLog := time.Now()
	for {
		n, err := r.countSubscribers(ctx)
		if err == nil {
			seen = n
			if n >= r.cfg.Clients {
				return nil
			}
		}
		if time.Since(lastLog) > 5*time.Second {
			fmt.Fprintf(logw, "stardust-load: %d of %d clients registered\n", seen, r.cfg.Clients)
			lastLog = time.Now()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d clients registered within --setup-timeout %s (last error: %v)", seen, r.cfg.Clients, r.cfg.SetupTimeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("interrupted during set-up: %d of %d clients registered", seen, r.cfg.Clients)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (r *runner) countSubscribers(ctx context.Context) (int, error) {
	total := 0
	for from := 0; from < len(r.names); from += 64 { // the server takes 64 channels per request
		to := min(from+64, len(r.names))
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.base.String()+"/channel/"+strings.Join(r.names[from:to], "+"), nil)
		resp, err := r.http.Do(req)
		if err != nil {
			cancel()
			return 0, err
		}
		var infos []struct {
			Subscribers []string `json:"subscribers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&infos)
		resp.Body.Close()
		cancel()
		if err != nil || resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("channel info: status %d: %v", resp.StatusCode, err)
		}
		for _, ci := range infos {
			total += len(ci.Subscribers)
		}
	}
	return total, nil
}

// publish runs the publishers until the deadline, the message bound or ctx,
// and says which ended it. A request under way at the deadline completes, so
// that every message the server accepted is counted.
func (r *runner) publish(ctx context.Context, deadline time.Time) string {
	var wg sync.WaitGroup
	var byCount atomic.Bool
	pad := strings.Repeat("x", r.cfg.Size)
	start := time.Now()
	for p := 0; p < r.cfg.Publishers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			var interval time.Duration
			if r.cfg.Rate > 0 {
				interval = time.Duration(float64(r.cfg.Publishers) / r.cfg.Rate * float64(time.Second))
			}
			// Publisher p sends its n-th message at start + (n + p/P) * interval,
			// so the publishers interleave evenly.
			next := start.Add(interval * time.Duration(p) / time.Duration(r.cfg.Publishers))
			for n := int64(0); ctx.Err() == nil && time.Now().Before(deadline); n++ {
				if interval > 0 {
					if next.After(deadline) {
						return
					}
					if d := time.Until(next); d > 0 {
						select {
						case <-ctx.Done():
							return
						case <-time.After(d):
						}
					}
					next = next.Add(interval)
				}
				g := r.seq.Add(1)
				if g > int64(r.cfg.Messages) {
					byCount.Store(true)
					return
				}
				r.publishOne(ctx, p, n, int(g-1)%r.cfg.Channels, pad)
			}
		}(p)
	}
	wg.Wait()
	switch {
	case ctx.Err() != nil:
		return "signal"
	case byCount.Load():
		return "messages"
	}
	return "duration"
}

func (r *runner) publishOne(ctx context.Context, p int, n int64, k int, pad string) {
	sent := time.Now()
	m := fmt.Sprintf(`{"load":%q,"t":%d,"p":%d,"n":%d`, r.run, sent.UnixNano(), p, n)
	if pad != "" {
		m += `,"pad":"` + pad + `"`
	}
	body := url.Values{"m": {m + "}"}}.Encode()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodPost, r.channelURL(k), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := r.http.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			r.pubErrors.Add(1)
			r.fail(fmt.Errorf("publish: %w", err))
		}
		return
	}
	var out struct {
		Recipients int64 `json:"recipients"`
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		r.pubErrors.Add(1)
		r.fail(fmt.Errorf("publish: status %d: %v", resp.StatusCode, err))
		return
	}
	// Counted once accepted: from here the server owes every subscriber a copy.
	r.expected.Add(r.on[k])
	r.recipients.Add(out.Recipients)
	r.published.Add(1)
	r.request.add(time.Since(sent))
}

// client is one subscriber session.
type client struct {
	r    *runner
	id   string
	ch   int
	last []int64 // per publisher, the last message number received
}

// got accounts for messages received at one instant.
func (c *client) got(msgs []loadMsg, at time.Time) {
	for _, m := range msgs {
		switch {
		case m.Type == "stardust.overflow":
			c.r.overflowLost.Add(m.Lost)
			continue
		case m.Load != c.r.run || m.P < 0 || m.P >= len(c.last):
			continue // not ours
		}
		c.r.received.Add(1)
		// One publisher's messages to one channel arrive in publish order.
		if m.N <= c.last[m.P] {
			c.r.dups.Add(1)
		} else {
			c.last[m.P] = m.N
		}
		c.r.latency.add(at.Sub(time.Unix(0, m.T)))
		if m.TS > 0 {
			sec, frac := math.Modf(m.TS)
			c.r.delivery.add(at.Sub(time.Unix(int64(sec), int64(frac*1e9))))
		}
	}
}

// poll long-polls in a loop as jquery.ev does: a new request as soon as one
// answers, a pause after an error.
func (c *client) poll(ctx context.Context) {
	u := c.r.channelURL(c.ch) + "/stream/" + c.id
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		msgs, err := c.pollOnce(ctx, u)
		if ctx.Err() != nil {
			return
		}
		c.r.polls.Add(1)
		if err != nil {
			c.r.pollErrors.Add(1)
			c.r.fail(fmt.Errorf("poll: %w", err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		c.got(msgs, time.Now())
	}
}

func (c *client) pollOnce(ctx context.Context, u string) ([]loadMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.r.cfg.PollTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := c.r.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	var msgs []loadMsg
	if err := json.Unmarshal(body, &msgs); err != nil {
		return nil, fmt.Errorf("answer not a JSON array: %v", err)
	}
	return msgs, nil
}

// sse holds an event stream, reconnecting with Last-Event-ID when it ends.
func (c *client) sse(ctx context.Context) {
	u := c.r.channelURL(c.ch) + "/events?id=" + url.QueryEscape(c.id)
	var lastID string
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := c.sseOnce(ctx, u, &lastID)
		if ctx.Err() != nil {
			return
		}
		c.r.polls.Add(1)
		if err != nil {
			c.r.pollErrors.Add(1)
			c.r.fail(fmt.Errorf("sse: %w", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (c *client) sseOnce(ctx context.Context, u string, lastID *string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	if *lastID != "" {
		req.Header.Set("Last-Event-ID", *lastID)
	}
	resp, err := c.r.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	var data []byte
	var event string
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil // the server ended the stream; resume
			}
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0: // end of an event
			if len(data) > 0 {
				var m loadMsg
				if err := json.Unmarshal(data, &m); err == nil {
					if event == "overflow" {
						m.Type = "stardust.overflow"
					}
					c.got([]loadMsg{m}, time.Now())
				}
			}
			data, event = data[:0], ""
		case bytes.HasPrefix(line, []byte("data:")):
			data = append(data, bytes.TrimPrefix(bytes.TrimPrefix(line, []byte("data:")), []byte(" "))...)
		case bytes.HasPrefix(line, []byte("id:")):
			*lastID = string(bytes.TrimSpace(line[3:]))
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[6:]))
		}
	}
}

// histogram counts durations in microseconds in log-linear buckets (32 per
// power of two, so about 3% resolution), safe for concurrent use, with the
// exact maximum and mean.
type histogram struct {
	counts [60 * 32]atomic.Int64
	n, sum atomic.Int64
	max    atomic.Int64
}

func bucketOf(us int64) int {
	if us < 64 {
		return int(us)
	}
	shift := bits.Len64(uint64(us)) - 6
	return (shift+1)*32 + int(us>>shift) - 32
}

// bucketMid is the middle of a bucket's range, in microseconds.
func bucketMid(i int) float64 {
	if i < 64 {
		return float64(i)
	}
	shift := i/32 - 1
	lo := int64(i%32+32) << shift
	return float64(lo) + float64(int64(1)<<shift-1)/2
}

func (h *histogram) add(d time.Duration) {
	us := max(d.Microseconds(), 0)
	h.counts[min(bucketOf(us), len(h.counts)-1)].Add(1)
	h.n.Add(1)
	h.sum.Add(us)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

// percentiles reads the histogram in milliseconds.
func (h *histogram) percentiles() percentiles {
	n := h.n.Load()
	if n == 0 {
		return percentiles{}
	}
	maxUS := float64(h.max.Load())
	at := func(q float64) float64 {
		rank := int64(math.Ceil(q * float64(n)))
		var seen int64
		for i := range h.counts {
			if seen += h.counts[i].Load(); seen >= rank {
				return math.Min(bucketMid(i), maxUS) / 1000
			}
		}
		return maxUS / 1000
	}
	round := func(v float64) float64 { return math.Round(v*1000) / 1000 }
	return percentiles{Count: n, P50: round(at(0.50)), P90: round(at(0.90)), P99: round(at(0.99)),
		Max: round(maxUS / 1000), Mean: round(float64(h.sum.Load()) / float64(n) / 1000)}
}

// rssSampler reads a process's resident memory from /proc/PID/status. A nil
// sampler does nothing.
type rssSampler struct {
	rep rssReport
}

func newRSSSampler(pid int) *rssSampler {
	s := &rssSampler{rep: rssReport{PID: pid}}
	s.rep.BeforeKB, _ = s.sample()
	return s
}

// sample returns VmRSS and records the peak and VmHWM.
func (s *rssSampler) sample() (int64, int64) {
	rss, hwm, err := readRSS(s.rep.PID)
	if err != nil {
		s.rep.SampleErrors++
		return 0, 0
	}
	s.rep.PeakKB = max(s.rep.PeakKB, rss)
	s.rep.HWMKB = hwm
	return rss, hwm
}

func (s *rssSampler) connected() {
	if s != nil {
		s.rep.ConnectedKB, _ = s.sample()
	}
}

func (s *rssSampler) end() {
	if s != nil {
		s.rep.EndKB, _ = s.sample()
	}
}

func (s *rssSampler) loop(ctx context.Context) {
	if s == nil {
		return
	}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.sample()
		}
	}
}

// readRSS reads VmRSS and VmHWM, in kB, from /proc/PID/status.
func readRSS(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %v", pid, k, err)
		}
		if k == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return rss, hwm, nil
}

func (rep *report) writeText(w io.Writer) {
	rate := "unpaced"
	if rep.RateTarget > 0 {
		rate = fmt.Sprintf("%g msg/s", rep.RateTarget)
	}
	fmt.Fprintf(w, "stardust-load: %s mode, %d clients on %d channels, %d publishers at %s, %s\n",
		rep.Mode, rep.Clients, rep.Channels, rep.Publishers, rate, rep.URL)
	fmt.Fprintf(w, "set-up      %.2fs until every client was registered\n", rep.SetupSec)
	fmt.Fprintf(w, "published   %d messages in %.2fs (%.1f msg/s), %d publish errors; stopped by %s\n",
		rep.Published, rep.PublishSec, rep.PublishRate, rep.PublishErrors, rep.StoppedBy)
	fmt.Fprintf(w, "deliveries  expected %d, received %d (%.0f/s), lost %d, duplicates %d; server counted %d recipients\n",
		rep.Expected, rep.Received, rep.DeliveryRate, rep.Lost, rep.Duplicates, rep.Recipients)
	if rep.OverflowLost > 0 {
		fmt.Fprintf(w, "overflow    the server dropped %d messages from full queues and said so\n", rep.OverflowLost)
	}
	if rep.Lost > 0 && rep.OverflowLost == 0 {
		fmt.Fprintf(w, "LOST        %d deliveries missing with no overflow notice\n", rep.Lost)
	}
	pc := func(name string, p percentiles) {
		fmt.Fprintf(w, "%-11s p50 %.2fms  p90 %.2fms  p99 %.2fms  max %.2fms  mean %.2fms  (n=%d)\n",
			name, p.P50, p.P90, p.P99, p.Max, p.Mean, p.Count)
	}
	pc("latency", rep.Latency)
	pc(" server→cl", rep.Delivery)
	pc(" publish rq", rep.Request)
	if rep.Mode == "sse" {
		fmt.Fprintf(w, "streams     %d ended early, %d errors\n", rep.Polls, rep.PollErrors)
	} else {
		fmt.Fprintf(w, "polls       %d answered, %d errors\n", rep.Polls, rep.PollErrors)
	}
	if rep.FirstError != "" {
		fmt.Fprintf(w, "first error %s\n", rep.FirstError)
	}
	if r := rep.RSS; r != nil {
		mib := func(kb int64) float64 { return float64(kb) / 1024 }
		fmt.Fprintf(w, "server RSS  pid %d: before %.1f MiB, clients connected %.1f MiB (%.1f KiB per client), end %.1f MiB, peak %.1f MiB, VmHWM %.1f MiB\n",
			r.PID, mib(r.BeforeKB), mib(r.ConnectedKB), r.PerClientKB, mib(r.EndKB), mib(r.PeakKB), mib(r.HWMKB))
	}
}
