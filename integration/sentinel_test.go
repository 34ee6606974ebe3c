//go:build unix

package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/redistest"
)

// Issue 21, point 1: TestSentinelFailover runs docs/scaling.md's Sentinel
// configuration for real: a master, a replica and three sentinels, two
// stardust processes, 500 Bayeux long-polling clients with the ack
// extension on 10 channels, a publisher, and SIGKILL of the master under
// that load (failoverUnderLoad). The sentinels promote the replica;
// stardust follows it with no restart.
func TestSentinelFailover(t *testing.T) {
	const name = "stardust" // the snippet's redis_master_name
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	sentinels := redistest.StartSentinels(t, master, name, 3, 1)
	var pairs []string
	for i, s := range sentinels {
		pairs = append(pairs, fmt.Sprintf("127.0.0.1:%d", 26379+i), s.Addr)
	}
	cfg := rewritePlaceholders(t, "docs/scaling.md", docsSnippet(t, "Redis Sentinel"), pairs...)
	out := failoverUnderLoad(t, cfg, master.Stop, 1500*time.Millisecond)
	t.Logf("the sentinels promoted %s", redistest.MasterAddr(t, sentinels[0], name))
	if redistest.MasterAddr(t, sentinels[0], name) != replica.Addr {
		t.Errorf("the sentinels did not promote the replica %s", replica.Addr)
	}
	if out > redistest.SentinelDownAfter+2*redistest.SentinelFailoverTimeout+5*time.Second {
		t.Errorf("publishes failed for %v after the kill; want about the failover time (a few seconds)", out)
	}
}

// docsSnippet returns the first ```toml block of a section of
// docs/scaling.md.
func docsSnippet(t *testing.T, section string) string {
	t.Helper()
	_, text, ok := strings.Cut(readDocs(t), "\n# "+section+"\n")
	if !ok {
		t.Fatalf("docs/scaling.md has no %s section", section)
	}
	_, snippet, _ := strings.Cut(text, "```toml\n")
	snippet, _, _ = strings.Cut(snippet, "```")
	return snippet
}

// failoverUnderLoad starts two stardust processes with the configuration
// cfg (a Redis engine whose master kill stops: SIGKILL), 500 Bayeux
// long-polling clients with the ack extension on 10 channels and a
// publisher, kills the master under that load and checks that stardust
// follows the promoted replica with no restart. Counted: what each client
// lost or got twice, messages of another channel (none may come), and the
// time publishes failed, which it returns (from the kill to the first
// publish accepted again). Held clients must carry on within late of
// publishes working again.
func failoverUnderLoad(t *testing.T, cfg string, kill func(), late time.Duration) time.Duration {
	t.Helper()
	const (
		clients  = 500
		channels = 10
		hold     = 5 * time.Second
	)
	// One address opens 500 sessions at once here.
	cfg += "\n[comet]\naddress_max_sessions = -1\naddress_session_rate = -1.0\n"
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "failover.toml"), cfg)
	bin := stardustBinary(t)
	nodes := []string{freeAddr(t), freeAddr(t)}
	for i, addr := range nodes {
		p := startProcess(t, fmt.Sprintf("stardust-%d", i), dir, bin, "--config", filepath.Join(dir, "failover.toml"),
			"--listen", addr, "--timeout", hold.String(), "--log-level", "info")
		p.waitListening(t, addr)
	}
	// No call waits longer than 20 s (a hold is 5 s).
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: 0}}
	defer hc.CloseIdleConnections()
	bh := &bayeuxHTTP{client: hc} // no cookie jar: the clients are cookie-less

	cs := make([]*ackClient, clients)
	for i := range cs {
		cs[i] = &ackClient{node: nodes[i%len(nodes)], channel: fmt.Sprintf("/stardust/sf%d", i%channels), got: map[int]int{}}
	}
	var wg sync.WaitGroup
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var subscribed atomic.Int64
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.run(ctx, bh, &subscribed)
		}()
	}
	for deadline := time.Now().Add(60 * time.Second); subscribed.Load() < clients; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d clients subscribed within 60 s", subscribed.Load(), clients)
		}
	}

	// The publisher: message k on channel k%channels through node k%2,
	// every 40 ms, until 8 s after publishing works again.
	pub := &publisher{bh: bh, nodes: nodes}
	killed := make(chan time.Time, 1)
	go func() {
		time.Sleep(3 * time.Second)
		killed <- time.Now()
		kill()
	}()
	var killedAt time.Time
	for k := 0; ; k++ {
		pub.publish(k, fmt.Sprintf("sf%d", k%channels))
		if killedAt.IsZero() {
			select {
			case killedAt = <-killed:
			default:
			}
		}
		if back := pub.backAt(); !back.IsZero() && time.Since(back) > 8*time.Second || k > 2000 {
			break
		}
		time.Sleep(40 * time.Millisecond)
	}
	if pub.backAt().IsZero() {
		t.Fatalf("publishing did not work again after the master's death (%d publishes failed)", len(pub.failed))
	}

	// Every client gets what was published on its channel since it
	// (last) subscribed: wait for it, then stop the clients.
	want := func(c *ackClient) []int {
		c.mu.Lock()
		since := c.subscribedAt
		c.mu.Unlock()
		var ks []int
		for k, at := range pub.ok {
			if fmt.Sprintf("/stardust/sf%d", k%channels) == c.channel && at.After(since) {
				ks = append(ks, k)
			}
		}
		return ks
	}
	missing := func() (lost int) {
		for _, c := range cs {
			ks := want(c)
			c.mu.Lock()
			for _, k := range ks {
				if c.got[k] == 0 {
					lost++
				}
			}
			c.mu.Unlock()
		}
		return lost
	}
	for deadline := time.Now().Add(hold + 15*time.Second); missing() > 0 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	wg.Wait()

	var lost, dups, foreign, resets, ghosts, deliveries, unclear, retried int
	var gap time.Duration // the longest a client went without a message
	for _, c := range cs {
		gap = max(gap, c.maxGap)
		unclear += c.unclear
		retried += c.retried
		foreign += c.foreign
		resets += c.resets
		for k, n := range c.got {
			deliveries += n
			if n > 1 {
				dups += n - 1
			}
			if _, ok := pub.ok[k]; !ok && !pub.failed[k] {
				ghosts++
			}
		}
		for _, k := range want(c) {
			if c.got[k] == 0 {
				lost++
			}
		}
	}
	t.Logf("master SIGKILLed; publishes failed from %v to %v after the kill (%d failed, %d accepted); "+
		"%d handshakes tried meanwhile, refused with 503 and retry advice; %d deliveries to %d clients: lost %d, duplicated %d, of another channel %d, sessions lost (handshake again) %d; connects told to retry %d; the longest a client went without a message: %v",
		pub.firstFail.Sub(killedAt).Round(time.Millisecond), pub.backAt().Sub(killedAt).Round(time.Millisecond),
		len(pub.failed), len(pub.ok), pub.handshakes, deliveries, clients, lost, dups, foreign, resets, retried, gap.Round(time.Millisecond))
	if pub.unclear != 0 || unclear != 0 {
		t.Errorf("%d failed publishes were not 503 with Retry-After (or handshakes meanwhile not refused with 503 and retry advice), and %d Bayeux answers were unsuccessful without retry or handshake advice; want none", pub.unclear, unclear)
	}
	if len(pub.failed) == 0 {
		t.Error("no publish failed: the test did not see the failover")
	}
	if lost != 0 || dups != 0 || foreign != 0 || ghosts != 0 {
		t.Errorf("lost %d, duplicated %d, of another channel %d, never published %d; want none of each", lost, dups, foreign, ghosts)
	}
	// Held clients carry on soon after Redis answers again (plus the
	// 0.4 s between two messages of a channel): with the pub/sub
	// connection tried every 2 s, they waited 1.7 s more.
	if more := gap - pub.backAt().Sub(killedAt); more > late {
		t.Errorf("clients went %v without a message, %v more than publishes failed; want at most %v more", gap, more, late)
	}
	return pub.backAt().Sub(killedAt)
}

// publisher publishes numbered messages through the Stardust API and
// remembers which were accepted (200) and when, and which failed (they
// may or may not have been kept).
type publisher struct {
	bh         *bayeuxHTTP
	nodes      []string
	ok         map[int]time.Time
	failed     map[int]bool
	firstFail  time.Time
	back       time.Time // the first accepted publish after a failure
	unclear    int       // failures that were not 503 with Retry-After, handshakes meanwhile not refused with retry
	handshakes int       // handshakes tried while publishes failed
}

func (p *publisher) publish(k int, channel string) {
	if p.ok == nil {
		p.ok, p.failed = map[int]time.Time{}, map[int]bool{}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	body := url.Values{"m": {fmt.Sprintf(`{"n":%d}`, k)}}.Encode()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+p.nodes[k%len(p.nodes)]+"/comet/channel/"+channel, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.bh.client.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	if err == nil && resp.StatusCode == http.StatusOK {
		p.ok[k] = start
		if !p.firstFail.IsZero() && p.back.IsZero() {
			p.back = time.Now()
		}
		return
	}
	p.failed[k] = true
	if p.firstFail.IsZero() {
		p.firstFail = start
	}
	// Stardust is up: a failure is its clear answer, 503 with Retry-After.
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		p.unclear++
	}
	// And a Bayeux handshake meanwhile is refused with retry advice.
	r, err := p.bh.tryPost(context.Background(), p.nodes[k%len(p.nodes)], map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}})
	switch adv, _ := r0(r)["advice"].(map[string]any); {
	case err == nil && r0(r)["successful"] == true: // Redis was back already
	case err != nil || adv["reconnect"] != "retry" || !strings.HasPrefix(fmt.Sprint(r0(r)["error"]), "503:"):
		p.unclear++
	default:
		p.handshakes++
	}
}

func (p *publisher) backAt() time.Time { return p.back }

// ackClient is one Bayeux long-polling client with the ack extension, as
// CometD's: it acknowledges each batch in its next connect, handshakes
// again when told to, and retries when told to.
type ackClient struct {
	node, channel string

	mu           sync.Mutex
	id           string
	batch        int
	got          map[int]int // message number: times received
	foreign      int         // messages of another channel
	unclear      int         // unsuccessful answers without retry or handshake advice
	retried      int         // unsuccessful connects with retry advice
	resets       int         // handshakes again after the first
	subscribedAt time.Time   // of the current session
	lastAt       time.Time   // when the last message came
	maxGap       time.Duration
}

// start handshakes and subscribes; subscribed counts the first success.
func (c *ackClient) start(ctx context.Context, bh *bayeuxHTTP, subscribed *atomic.Int64) bool {
	r, err := bh.tryPost(ctx, c.node, map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}, "ext": map[string]any{"ack": true}})
	if err != nil || len(r) == 0 || r[0]["successful"] != true {
		if adv, _ := r0(r)["advice"].(map[string]any); err == nil && adv["reconnect"] != "retry" {
			c.mu.Lock()
			c.unclear++
			c.mu.Unlock()
		}
		return false
	}
	id, _ := r[0]["clientId"].(string)
	r, err = bh.tryPost(ctx, c.node, map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": c.channel})
	if err != nil || len(r) == 0 || r[0]["successful"] != true {
		return false
	}
	c.mu.Lock()
	if c.subscribedAt.IsZero() {
		subscribed.Add(1)
	} else {
		c.resets++
	}
	c.id, c.batch, c.subscribedAt = id, -1, time.Now()
	c.mu.Unlock()
	return true
}

// r0 is the first message of an answer (nil if none).
func r0(r []map[string]any) map[string]any {
	if len(r) == 0 {
		return nil
	}
	return r[0]
}

// run connects until ctx ends, counting what arrives.
func (c *ackClient) run(ctx context.Context, bh *bayeuxHTTP, subscribed *atomic.Int64) {
	pause := func(d time.Duration) {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	for ctx.Err() == nil {
		if c.id == "" {
			if !c.start(ctx, bh, subscribed) {
				pause(100 * time.Millisecond)
			}
			continue
		}
		m := map[string]any{"channel": "/meta/connect", "clientId": c.id, "connectionType": "long-polling"}
		if c.batch >= 0 {
			m["ext"] = map[string]any{"ack": c.batch}
		}
		r, err := bh.tryPost(ctx, c.node, m)
		if err != nil {
			pause(100 * time.Millisecond)
			continue
		}
		c.mu.Lock()
		for _, x := range r {
			if x["channel"] == "/meta/connect" {
				if x["successful"] == true {
					if ext, ok := x["ext"].(map[string]any); ok {
						if n, ok := ext["ack"].(float64); ok {
							c.batch = int(n)
						}
					}
				} else if adv, _ := x["advice"].(map[string]any); adv["reconnect"] == "handshake" {
					c.id = ""
				} else if adv["reconnect"] != "retry" {
					c.unclear++
				} else {
					c.retried++
				}
				continue
			}
			data, ok := x["data"].(map[string]any)
			if !ok {
				continue
			}
			if x["channel"] != c.channel {
				c.foreign++
			}
			if n, ok := data["n"].(float64); ok {
				c.got[int(n)]++
				now := time.Now()
				if !c.lastAt.IsZero() && now.Sub(c.lastAt) > c.maxGap {
					c.maxGap = now.Sub(c.lastAt)
				}
				c.lastAt = now
			}
		}
		c.mu.Unlock()
		if len(r) > 0 && r[0]["successful"] == false {
			pause(100 * time.Millisecond)
		}
	}
}
