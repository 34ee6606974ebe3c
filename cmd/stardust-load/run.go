package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// report is the outcome of a run; its JSON form is the --json output.
type report struct {
	URL        string  `json:"url"`
	Mode       string  `json:"mode"`
	Publish    string  `json:"publish"` // stardust or bayeux
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

	Latency  percentiles `json:"latency_ms"`          // publish start to arrival
	Delivery percentiles `json:"server_to_client_ms"` // server's _ts to arrival
	Request  percentiles `json:"publish_request_ms"`  // publish round trip
	// Arrival is the clock of the arrivals: kernel (the kernel's receive
	// time of the bytes, Linux), read (when the tool had read them), or
	// mixed; KernelStamped counts the deliveries stamped by the kernel.
	Arrival       string `json:"arrival,omitempty"`
	KernelStamped int64  `json:"kernel_stamped"`

	RSS       *rssReport  `json:"rss,omitempty"`
	ServerCPU *cpuReport  `json:"server_cpu,omitempty"`
	ToolCPU   float64     `json:"tool_cpu_s"` // this tool's own CPU time over the whole run
	Procs     int         `json:"procs,omitempty"`
	Hists     *childHists `json:"hists,omitempty"` // a child's, for its parent
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
	PID         int     `json:"pid"`
	BeforeKB    int64   `json:"before_kb"`
	ConnectedKB int64   `json:"connected_kb"`
	EndKB       int64   `json:"end_kb"`
	PeakKB      int64   `json:"peak_kb"`       // highest VmRSS sampled during the run
	HWMKB       int64   `json:"hwm_kb"`        // VmHWM: the process's peak since it started
	PerClientKB float64 `json:"per_client_kb"` // (connected - before) / clients: idle held clients
	// PeakPerClientKB is (max(VmHWM, peak) - before) / clients: the most
	// the run cost per client, fan-out included.
	PeakPerClientKB float64 `json:"peak_per_client_kb"`
	SampleErrors    int     `json:"sample_errors,omitempty"`
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

	perChannel []atomic.Int64 // messages accepted per channel
	ws         *websocket.Dialer

	published, pubErrors, expected, recipients atomic.Int64
	received, dups, overflowLost, polls        atomic.Int64
	pollErrors, registered                     atomic.Int64
	seq                                        atomic.Int64
	firstErr                                   sync.Once
	firstErrText                               atomic.Value

	latency, delivery, request histogram
	// warmupN: each publisher's first this many messages (--warmup at
	// --rate) are left out of the latency and delivery histograms.
	warmupN int64
	clocks  clocks // deliveries per arrival clock
}

func (r *runner) fail(err error) {
	r.firstErr.Do(func() { r.firstErrText.Store(err.Error()) })
}

func (r *runner) channelURL(k int) string {
	return r.cfg.base.String() + "/channel/" + r.names[k]
}

// newRunner prepares the shared state of a run: the HTTP client (loopback
// only, enough idle connections for every client) and the channel names.
func newRunner(cfg config) *runner {
	conns := cfg.Clients + cfg.Publishers + 16
	dialer := *loopbackDialer
	if cfg.Source != "" {
		dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(cfg.Source)}
	}
	ws := *wsDialer
	dial := stampingDial(dialer.DialContext) // arrival times: see arrival.go
	ws.NetDialContext = dial
	tr := &http.Transport{
		DialContext:         dial,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     2 * time.Minute,
		DisableCompression:  true,
	}
	r := &runner{
		cfg: cfg, run: strconv.FormatInt(time.Now().UnixNano()%1e12, 10),
		http: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirects are not followed")
		}},
		names: make([]string, cfg.Channels), on: make([]int64, cfg.Channels),
		perChannel: make([]atomic.Int64, cfg.Channels), ws: &ws,
	}
	if cfg.runTag != "" { // a child: the parent's run
		r.run = cfg.runTag
	}
	if cfg.Warmup > 0 {
		r.warmupN = int64(math.Ceil(cfg.Warmup.Seconds() * cfg.Rate / float64(cfg.Publishers)))
	}
	for k := range r.names {
		r.names[k] = fmt.Sprintf("load%s_%d", r.run, k)
	}
	for i := 0; i < cfg.Clients; i++ {
		r.on[i%cfg.Channels]++
	}
	return r
}

// newClient is subscriber i of the run.
func (r *runner) newClient(i int) *client {
	c := &client{r: r, id: fmt.Sprintf("%s.%s%d", r.run, r.cfg.idPrefix(), i), ch: i % r.cfg.Channels, last: make([]int64, r.cfg.Publishers)}
	for p := range c.last {
		c.last[p] = -1
	}
	return c
}

// run sets up the clients, publishes until a bound, drains and reports.
// Progress and warnings go to logw.
func run(ctx context.Context, cfg config, logw io.Writer) (*report, error) {
	if cfg.base == nil {
		if err := cfg.validate(); err != nil {
			return nil, err
		}
	}
	r := newRunner(cfg)
	defer r.http.CloseIdleConnections()
	target := cfg.base.String()
	if cfg.bayeuxMode() {
		target = cfg.bayeux.String()
	}
	rep := &report{URL: target, Mode: cfg.Mode, Publish: cfg.Publish, Clients: cfg.Clients, Channels: cfg.Channels,
		Publishers: cfg.Publishers, RateTarget: cfg.Rate, Procs: cfg.Procs}

	// The server must answer before anything else starts.
	if cfg.usesStardustAPI() {
		if err := r.ping(ctx); err != nil {
			return nil, err
		}
	}
	pubs, err := r.publishers(ctx)
	if err != nil {
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
	var kids *children // --procs: the clients run in child processes
	setupStart := time.Now()
	if cfg.Procs > 1 {
		kids, err = r.startChildren(ctx, logw) // not clientCtx: their reports come after stopClients
	} else {
		r.startClients(clientCtx, &clients)
		err = r.waitRegistered(ctx, setupStart.Add(cfg.SetupTimeout), logw)
	}
	rep.SetupSec = time.Since(setupStart).Seconds()
	if err != nil {
		stopClients()
		clients.Wait()
		return nil, err
	}
	if cfg.Settle > 0 && cfg.control == nil {
		// "publishing" only once it is so: scripts wait for that word.
		fmt.Fprintf(logw, "stardust-load: %d clients registered in %.2fs; settling for %s\n", cfg.Clients, rep.SetupSec, cfg.Settle)
		select {
		case <-ctx.Done():
		case <-time.After(cfg.Settle):
		}
		fmt.Fprintf(logw, "stardust-load: settled; publishing\n")
	} else {
		fmt.Fprintf(logw, "stardust-load: %d clients registered in %.2fs; publishing\n", cfg.Clients, rep.SetupSec)
	}
	rss.connected()

	samplerDone := make(chan struct{})
	samplerCtx, stopSampler := context.WithCancel(ctx)
	go func() { defer close(samplerDone); rss.loop(samplerCtx) }()
	progressDone := make(chan struct{})
	go func() { defer close(progressDone); r.progress(samplerCtx, logw) }()

	var cpu *cpuSampler
	if cfg.PID > 0 {
		cpu = newCPUSampler(cfg.PID)
	}
	pubStart := time.Now()
	if cfg.control != nil { // a child: the parent publishes
		rep.StoppedBy = r.awaitPublished(ctx, pubStart.Add(cfg.Duration+cfg.SetupTimeout+cfg.Settle))
	} else {
		rep.StoppedBy = r.publish(ctx, pubs, pubStart.Add(cfg.Duration))
	}
	pubTime := time.Since(pubStart)

	// Wait, bounded, for deliveries still in flight.
	received := r.received.Load()
	if kids != nil {
		received, err = kids.published(ctx)
	} else if ctx.Err() == nil {
		deadline := time.Now().Add(cfg.Drain)
		for r.received.Load() < r.expected.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		received = r.received.Load()
	}
	rep.ServerCPU = cpu.end(received)
	if cfg.control != nil {
		fmt.Fprintf(cfg.control.out, "drained %d\n", received)
	}
	stopSampler()
	<-samplerDone
	<-progressDone
	rss.end()
	stopClients()
	clients.Wait()
	if kids != nil {
		err = errors.Join(err, kids.collect(ctx))
		if err != nil {
			r.fail(err)
		}
	}

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
	rep.Arrival, rep.KernelStamped = r.clocks.name(), r.clocks.kernel.Load()
	if rss != nil && cfg.Clients > 0 {
		rss.rep.PerClientKB = float64(rss.rep.ConnectedKB-rss.rep.BeforeKB) / float64(cfg.Clients)
		rss.rep.PeakPerClientKB = float64(max(rss.rep.HWMKB, rss.rep.PeakKB)-rss.rep.BeforeKB) / float64(cfg.Clients)
	}
	rep.ToolCPU = ownCPUSeconds()
	if cfg.control != nil {
		rep.Hists = &childHists{Latency: r.latency.dump(), Delivery: r.delivery.dump()}
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
			c := r.newClient(i)
			switch r.cfg.Mode {
			case modeSSE:
				c.sse(ctx)
			case modeBayeux:
				c.bayeuxLongPoll(ctx)
			case modeWebSocket:
				c.bayeuxWebSocket(ctx)
			case modeUniWS:
				c.uniWebSocket(ctx)
			case modeUniSSE:
				c.uniSSE(ctx)
			default:
				c.poll(ctx)
			}
		}(i)
	}
}

// waitRegistered waits until the server lists every client among the
// subscribers of our channels (Stardust API), or every Bayeux client has had
// its subscription confirmed, so that no message is published before its
// subscribers exist.
func (r *runner) waitRegistered(ctx context.Context, deadline time.Time, logw io.Writer) error {
	var seen int
	lastLog := time.Now()
	for {
		var n int
		var err error
		if r.cfg.bayeuxMode() || r.cfg.centrifugoMode() {
			n = int(r.registered.Load())
		} else {
			n, err = r.countSubscribers(ctx)
		}
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
			Subscribers map[string]int `json:"subscribers"` // by kind
		}
		err = json.NewDecoder(resp.Body).Decode(&infos)
		resp.Body.Close()
		cancel()
		if err != nil || resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("channel info: status %d: %v", resp.StatusCode, err)
		}
		for _, ci := range infos {
			for _, n := range ci.Subscribers {
				total += n
			}
		}
	}
	return total, nil
}

// publish runs the publishers until the deadline, the message bound or ctx,
// and says which ended it. A request under way at the deadline completes, so
// that every message the server accepted is counted.
func (r *runner) publish(ctx context.Context, pubs []*bayeuxPublisher, deadline time.Time) string {
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
				r.publishOne(ctx, pubs[p], p, n, int(g-1)%r.cfg.Channels, pad)
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

// publishers opens a Bayeux session per publisher when publishing over
// Bayeux (nil entries otherwise), before the clock of the run starts.
func (r *runner) publishers(ctx context.Context) ([]*bayeuxPublisher, error) {
	pubs := make([]*bayeuxPublisher, r.cfg.Publishers)
	if r.cfg.Publish != "bayeux" || r.cfg.control != nil {
		return pubs, nil
	}
	for p := range pubs {
		s, err := r.handshake(ctx, "long-polling")
		if err != nil {
			return nil, fmt.Errorf("publisher %d: Bayeux server not answering at %s: %w", p, r.cfg.bayeux, err)
		}
		pubs[p] = &bayeuxPublisher{r: r, s: s}
	}
	return pubs, nil
}

func (r *runner) publishOne(ctx context.Context, bp *bayeuxPublisher, p int, n int64, k int, pad string) {
	sent := time.Now()
	m := fmt.Sprintf(`{"load":%q,"t":%d,"p":%d,"n":%d`, r.run, sent.UnixNano(), p, n)
	if pad != "" {
		m += `,"pad":"` + pad + `"`
	}
	m += "}"
	if r.cfg.Publish == "centrifugo" || bp != nil {
		var err error
		if bp != nil {
			err = bp.publish(ctx, r.bayeuxChannel(k), json.RawMessage(m))
		} else {
			err = r.publishCentrifugo(ctx, r.names[k], m)
		}
		if err != nil {
			if ctx.Err() == nil {
				r.pubErrors.Add(1)
				r.fail(fmt.Errorf("publish: %w", err))
			}
			return
		}
		r.accepted(k, -1, sent)
		return
	}
	body := url.Values{"m": {m}}.Encode()
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
	text, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err == nil {
		err = json.Unmarshal(text, &out)
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		r.pubErrors.Add(1)
		r.fail(fmt.Errorf("publish: status %d: %s (%v)", resp.StatusCode, truncate(bytes.TrimSpace(text), 200), err))
		return
	}
	r.accepted(k, out.Recipients, sent)
}

// accepted counts a message the server accepted: from here it owes every
// subscriber of channel k a copy. recipients is the server's own count, -1
// when it gives none (Bayeux).
func (r *runner) accepted(k int, recipients int64, sent time.Time) {
	r.expected.Add(r.on[k])
	r.perChannel[k].Add(1)
	if recipients >= 0 {
		r.recipients.Add(recipients)
	}
	r.published.Add(1)
	r.request.add(time.Since(sent))
}

// client is one subscriber session.
type client struct {
	r    *runner
	id   string
	ch   int
	last []int64 // per publisher, the last message number received

	registered bool           // counted in runner.registered (Bayeux)
	jar        http.CookieJar // long-poll mode: this client's cookies
}

// got accounts for messages that arrived together, at at.
func (c *client) got(msgs []loadMsg, at stamp) {
	for _, m := range msgs {
		switch {
		case m.Type == "stardust.overflow":
			c.r.overflowLost.Add(m.Lost)
			continue
		case m.Load != c.r.run || m.P < 0 || m.P >= len(c.last):
			continue // not ours
		}
		c.r.received.Add(1)
		c.r.clocks.add(at)
		// One publisher's messages to one channel arrive in publish order.
		if m.N <= c.last[m.P] {
			c.r.dups.Add(1)
		} else {
			c.last[m.P] = m.N
		}
		if m.N < c.r.warmupN {
			continue // received, and checked for order; not timed
		}
		c.r.latency.add(at.at.Sub(time.Unix(0, m.T)))
		if m.TS > 0 {
			sec, frac := math.Modf(m.TS)
			c.r.delivery.add(at.at.Sub(time.Unix(int64(sec), int64(frac*1e9))))
		}
	}
}

// poll long-polls in a loop as jquery.ev does: a new request as soon as one
// answers, a pause after an error.
func (c *client) poll(ctx context.Context) {
	u := c.r.channelURL(c.ch) + "/stream/" + c.id
	backoff := newBackoff()
	for ctx.Err() == nil {
		msgs, at, err := c.pollOnce(ctx, u)
		if ctx.Err() != nil {
			return
		}
		c.r.polls.Add(1)
		if err != nil {
			if c.pollFailed(ctx, fmt.Errorf("poll: %w", err), backoff) {
				return
			}
			continue
		}
		backoff.reset()
		c.got(msgs, at)
	}
}

// pollOnce makes one long poll and returns its messages and their arrival.
func (c *client) pollOnce(ctx context.Context, u string) ([]loadMsg, stamp, error) {
	if c.jar == nil { // a browser: it keeps the cookie the server sets
		c.jar, _ = cookiejar.New(nil)
	}
	body, at, err := c.r.exchange(ctx, c.jar, http.MethodGet, u, "", nil, c.r.cfg.PollTimeout)
	if err != nil {
		return nil, at, err
	}
	var msgs []loadMsg
	if err := json.Unmarshal(body, &msgs); err != nil {
		return nil, at, fmt.Errorf("answer not a JSON array: %v", err)
	}
	return msgs, at, nil
}

// exchange makes one request with a browser's cookies (jar; nil: none),
// bounded by timeout, and returns the body of a 200 answer (at most 64 MiB)
// and its arrival (arrivalOf the connection once the body is read); any
// other status is an error quoting the body.
func (r *runner) exchange(ctx context.Context, jar http.CookieJar, method, u, contentType string, body []byte, timeout time.Duration) ([]byte, stamp, error) {
	hc := r.http
	if jar != nil {
		hc = &http.Client{Transport: r.http.Transport, CheckRedirect: r.http.CheckRedirect, Jar: jar}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var conn net.Conn
	ctx = connTrace(ctx, &conn)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, stamp{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, stamp{}, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, stamp{}, err
	}
	at := arrivalOf(conn)
	if resp.StatusCode != http.StatusOK {
		return nil, at, fmt.Errorf("status %d: %s", resp.StatusCode, truncate(bytes.TrimSpace(out), 200))
	}
	return out, at, nil
}

// sse holds an event stream, reconnecting with Last-Event-ID when it ends.
func (c *client) sse(ctx context.Context) {
	u := c.r.channelURL(c.ch) + "/events?id=" + url.QueryEscape(c.id)
	var lastID string
	backoff := newBackoff()
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
		if backoff.wait(ctx) {
			return
		}
	}
}

func (c *client) sseOnce(ctx context.Context, u string, lastID *string) error {
	return c.r.eventStream(ctx, u, lastID, func(event, data []byte, at stamp) error {
		var m loadMsg
		if err := json.Unmarshal(data, &m); err == nil {
			if string(event) == "overflow" {
				m.Type = "stardust.overflow"
			}
			c.got([]loadMsg{m}, at)
		}
		return nil
	})
}
