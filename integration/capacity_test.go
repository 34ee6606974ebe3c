//go:build unix

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Thousands of held clients through the shipped main configurations
// (conf/nginx/nginx.conf, conf/apache2/mpm_event.conf) around the shipped
// site files, in a copy of Debian's /etc/nginx or /etc/apache2 with only
// paths and the placeholders of SPEC section 7 rewritten.

// mainConfig says which main configuration a capacity rig runs.
type mainConfig string

const (
	mainStock   mainConfig = "stock"   // Debian's files as installed
	mainShipped mainConfig = "shipped" // conf/nginx/nginx.conf or conf/apache2/mpm_event.conf installed over them
)

// shippedMainFile is the main configuration of conf/ for a web server.
func shippedMainFile(server string) string {
	if server == "nginx" {
		return filepath.Join("conf", "nginx", "nginx.conf")
	}
	return filepath.Join("conf", "apache2", "mpm_event.conf")
}

// installShippedMain installs the shipped main configuration into confDir,
// a copy of etc, with the cp commands of its header, as README says.
func installShippedMain(t *testing.T, server, etc, confDir string, env []string) {
	t.Helper()
	header := readFile(t, filepath.Join(repoRoot(t), shippedMainFile(server)))
	cmds := headerCommands(header, "cp")
	if len(cmds) == 0 {
		t.Fatalf("%s: no cp command in the header", shippedMainFile(server))
	}
	for _, cmd := range cmds {
		runHeaderCommand(t, cmd, etc, confDir, env)
	}
}

// capacityRig is a web server installed as on Debian, with one site file,
// in front of a Stardust in the matching front.
type capacityRig struct {
	setup    webServerSetup
	dir      string // the rig's temporary directory
	confDir  string // the copy of /etc/nginx or /etc/apache2
	webAddr  string
	backAddr string
	web      *process
	stardust *process
}

// startCapacityRig copies the stock Debian configuration, installs the
// shipped main configuration when main says so, enables the site file with
// the commands of its header, and starts the web server and Stardust.
// Stardust logs warnings only: a line per request would be thousands a second.
func startCapacityRig(t *testing.T, s webServerSetup, main mainConfig, bin string) *capacityRig {
	t.Helper()
	program := requireProgram(t, s.server, s.debianPackage())
	etc := filepath.Join("/etc", s.server)
	if _, err := os.Stat(etc); err != nil {
		missingDependency(t, fmt.Sprintf("%s: %v (install the Debian package %s)", etc, err, s.debianPackage()))
	}
	r := &capacityRig{setup: s, dir: sharedTempDir(t), webAddr: freeAddr(t), backAddr: freeAddr(t)}
	r.confDir = filepath.Join(r.dir, s.server)
	siteRoot := filepath.Join(r.dir, "site")
	writeFile(t, filepath.Join(siteRoot, "index.html"), "<!doctype html><title>Stardust</title>\n")
	expectPortsFreed(t, r.webAddr, r.backAddr)
	if err := copyTree(etc, r.confDir); err != nil {
		t.Fatal(err)
	}
	// Debian's default site answers any Host on port 80; a site owner who
	// gives the machine to Stardust's site disables it, and the load tool
	// sends the address as Host.
	if s.server == "nginx" {
		if err := os.Remove(filepath.Join(r.confDir, "sites-enabled", "default")); err != nil {
			t.Fatal(err)
		}
	}
	var env []string
	if s.server == "apache2" {
		env = apacheStockEnv(t, r.dir, r.confDir)
	}
	if main == mainShipped {
		installShippedMain(t, s.server, etc, r.confDir, env)
	}
	site := readFile(t, filepath.Join(repoRoot(t), s.file()))
	for _, cmd := range headerCommands(site, "cp", "ln", "a2enmod", "a2ensite") {
		runHeaderCommand(t, cmd, etc, r.confDir, env)
	}
	var installed string // the site file as the header's cp put it
	if s.server == "nginx" {
		installed = filepath.Join(r.confDir, "sites-available", "stardust")
	} else {
		installed = filepath.Join(r.confDir, "sites-available", "stardust.conf")
	}
	text := rewritePlaceholders(t, s.file(), readFile(t, installed),
		s.backendPlaceholder(), r.backAddr, placeholderSiteRoot, siteRoot)
	if s.server == "apache2" {
		text = rewritePlaceholders(t, s.file(), text, webServerListenPlaceholder(s.server), webServerListen(s.server, r.webAddr))
	}
	writeFile(t, installed, text)

	if s.server == "nginx" {
		redirectNginxStock(t, r.dir, r.confDir, r.webAddr)
		r.web = startProcess(t, "nginx", r.dir, program, "-p", r.confDir, "-c", filepath.Join(r.confDir, "nginx.conf"), "-g", "daemon off;")
	} else {
		ports := filepath.Join(r.confDir, "ports.conf")
		writeFile(t, ports, rewritePlaceholders(t, "ports.conf", readFile(t, ports), "\nListen 80\n", "\nListen "+r.webAddr+"\n"))
		r.web = startProcessEnv(t, "apache2", r.dir, env, "/bin/sh", "-c", `. "$APACHE_CONFDIR/envvars" && exec "$0" -d "$APACHE_CONFDIR" -DFOREGROUND`, program)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s error log:\n%s", s.server, tailFile(r.errorLog(), 8192))
		}
	})
	r.web.waitListening(t, r.webAddr)
	// The header's Stardust command, with the site's placeholders rewritten.
	site = strings.NewReplacer(s.backendPlaceholder(), r.backAddr, placeholderSiteRoot, siteRoot).Replace(site)
	args := append(stardustCommand(t, s, site, r.dir, bin, r.backAddr, 30*time.Second), "--log-level", "warn")
	r.stardust = startProcess(t, "stardust", r.dir, withLoadTestLimits(t, r.dir, args)...)
	r.stardust.waitListening(t, r.backAddr)
	return r
}

// errorLog is where the web server of the rig writes its errors.
func (r *capacityRig) errorLog() string {
	if r.setup.server == "nginx" {
		return filepath.Join(r.dir, "error.log")
	}
	return filepath.Join(r.dir, "log", "error.log")
}

// capacityLoad is one capacity run: clients long-polling through the web
// server, each on one of channels, and one message a second on every
// channel for messages seconds, so that every client gets one a second.
type capacityLoad struct {
	clients, channels, messages int
	// keepAlive: the publisher sends every publish on one kept-alive
	// connection, as an application's HTTP client does (the load tool's
	// too); otherwise each on a new connection.
	keepAlive bool
}

// capacityResult is what a capacity run saw.
type capacityResult struct {
	held          int64           // polls Stardust held at once before the first publish
	webKB         int64           // the web server's proportional set size with every client held
	idleWebKB     int64           // ... before the first client connected
	expected      int64           // deliveries owed: clients × messages
	received      int64           // distinct messages received
	duplicates    int64           // messages received twice by one client
	pollErrors    int64           // polls that failed (connection error, status other than 200)
	retries       int64           // polls sent again on a new connection after errClosedIdle
	publishErrors int64           // publishes that failed
	firstError    string          // the first of those errors
	publishMax    atomic.Int64    // the longest publish request, in ns
	latency       []time.Duration // publish start to receipt, every delivery, sorted
}

// missing is how many deliveries never arrived.
func (r *capacityResult) missing() int64 { return r.expected - r.received }

// percentile returns the p-th percentile (0 < p <= 100) of the latencies.
func (r *capacityResult) percentile(p float64) time.Duration {
	if len(r.latency) == 0 {
		return 0
	}
	i := int(float64(len(r.latency))*p/100+0.5) - 1
	return r.latency[min(max(i, 0), len(r.latency)-1)]
}

// perClientKB is the web server's memory per held client.
func (r *capacityResult) perClientKB() float64 {
	if r.held <= 0 {
		return 0
	}
	return float64(r.webKB-r.idleWebKB) / float64(r.held)
}

func (r *capacityResult) String() string {
	return fmt.Sprintf("held %d, delivered %d of %d (missing %d, duplicates %d), poll errors %d (and %d polls sent again after a keep-alive close), publish errors %d (longest publish %v), "+
		"latency p50 %v p99 %v max %v, web server %.1f MiB idle, %.1f MiB held (%.1f KiB per held client)",
		r.held, r.received, r.expected, r.missing(), r.duplicates, r.pollErrors, r.retries, r.publishErrors, time.Duration(r.publishMax.Load()).Round(time.Millisecond),
		r.percentile(50).Round(time.Millisecond), r.percentile(99).Round(time.Millisecond),
		r.percentile(100).Round(time.Millisecond), float64(r.idleWebKB)/1024, float64(r.webKB)/1024, r.perClientKB())
}

// capacityHost is the Host header of every request: the site files'
// server_name, since Debian's default site answers any other name.
const capacityHost = "stardust.example.com"

// raiseOpenFiles lifts the test process's soft limit of open files to its
// hard limit: every held client is a connection of this process.
func raiseOpenFiles(t *testing.T, need int) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("raising RLIMIT_NOFILE to %d: %v", lim.Max, err)
		}
	}
	if uint64(lim.Cur) < uint64(need) { // Cur is an int64 on FreeBSD
		t.Fatalf("RLIMIT_NOFILE is %d, the test needs %d: raise the hard limit (ulimit -Hn)", lim.Cur, need)
	}
}

// runCapacity holds load.clients long polls through the rig's web server,
// waits until Stardust holds them all, then publishes load.messages rounds,
// one a second on each channel, spread over the second, and waits (bounded)
// until every client has every message.
func runCapacity(t *testing.T, r *capacityRig, load capacityLoad) *capacityResult {
	t.Helper()
	res := &capacityResult{expected: int64(load.clients * load.messages)}
	res.idleWebKB = groupMemoryKB(t, r.web.cmd.Process.Pid)
	run := strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	channel := func(k int) string { return fmt.Sprintf("cap%s_%d", run, k) }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOnce sync.Once
	fail := func(counter *int64, err error) {
		atomic.AddInt64(counter, 1)
		errOnce.Do(func() { res.firstError = err.Error() })
	}
	// Publishes each on a new connection: apache2's event MPM closes idle
	// keep-alive connections when a process is busy, and a POST sent on one
	// at that moment fails (Go's client retries only idempotent requests).
	// With keepAlive, on one connection opened before the clients come, as
	// an application's client that published before.
	pub := newCometClient(t, "http://"+r.webAddr)
	pub.host = capacityHost
	pub.client.Transport.(*http.Transport).DisableKeepAlives = !load.keepAlive
	if load.keepAlive {
		if resp, body, err := pub.request("POST", "/comet/channel/"+channel(load.channels), url.Values{"m": {`{"warm":1}`}}, 30*time.Second); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("first publish: %v %v %s", err, resp, body)
		}
	}
	clients := make([]*heldClient, load.clients)
	var wg sync.WaitGroup
	for i := range clients {
		clients[i] = &heldClient{
			webAddr: r.webAddr,
			path:    "/comet/channel/" + channel(i%load.channels) + "/stream/" + run + "." + strconv.Itoa(i),
			want:    load.messages,
			seen:    make([]bool, load.messages),
		}
		if i > 0 && i%250 == 0 {
			time.Sleep(100 * time.Millisecond) // 2,500 a second: a burst, not a flood of the listen queue
		}
		wg.Add(1)
		go func(c *heldClient) {
			defer wg.Done()
			c.run(ctx, func(err error) { fail(&res.pollErrors, err) })
		}(clients[i])
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()

	api := newCometClient(t, "http://"+r.webAddr)
	api.host = capacityHost
	res.held = waitHeld(t, api, int64(load.clients), time.Minute)
	res.webKB = groupMemoryKB(t, r.web.cmd.Process.Pid)
	t.Logf("%d polls held; publishing %d rounds on %d channels", res.held, load.messages, load.channels)

	// One publisher per channel, each sending its message n at
	// start + n s + its share of the second.
	start := time.Now()
	var pubs sync.WaitGroup
	for k := 0; k < load.channels; k++ {
		pubs.Add(1)
		go func(k int) {
			defer pubs.Done()
			for n := 0; n < load.messages; n++ {
				at := start.Add(time.Duration(n)*time.Second + time.Duration(k)*time.Second/time.Duration(load.channels))
				time.Sleep(time.Until(at))
				sent := time.Now()
				m := fmt.Sprintf(`{"n":%d,"t":%d}`, n, sent.UnixNano())
				resp, body, err := pub.request("POST", "/comet/channel/"+channel(k), url.Values{"m": {m}}, 30*time.Second)
				for took := int64(time.Since(sent)); ; {
					if old := res.publishMax.Load(); took <= old || res.publishMax.CompareAndSwap(old, took) {
						break
					}
				}
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("publish: %s %s", resp.Status, body)
				}
				if err != nil {
					fail(&res.publishErrors, err)
				}
			}
		}(k)
	}
	pubs.Wait()
	select {
	case <-allDone:
	case <-time.After(30 * time.Second):
		t.Errorf("clients still waiting for messages 30s after the last publish")
		cancel()
		<-allDone
	}
	cancel()
	for _, c := range clients {
		res.received += int64(c.received)
		res.duplicates += int64(c.duplicates)
		res.retries += int64(c.retries)
		res.latency = append(res.latency, c.latency...)
	}
	slices.Sort(res.latency)
	return res
}

// waitHeld waits until Stardust holds want polls (its stardust_polls_held
// gauge, read through the web server) and returns how many it held.
func waitHeld(t *testing.T, api *cometClient, want int64, within time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(within)
	var held int64
	for {
		resp, body, err := api.request("GET", "/comet/metrics", nil, 10*time.Second)
		if err == nil && resp.StatusCode == http.StatusOK {
			for _, line := range strings.Split(string(body), "\n") {
				if v, ok := strings.CutPrefix(line, "stardust_polls_held "); ok {
					f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
					held = int64(f)
				}
			}
		}
		if held >= want {
			return held
		}
		if time.Now().After(deadline) {
			t.Fatalf("Stardust holds %d polls of %d after %v (last: %v)", held, want, within, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// heldClient is one long-polling client on one connection of its own, read
// and written by one goroutine: thousands of them must stay cheap.
type heldClient struct {
	webAddr, path string
	want          int    // messages 0..want-1 are owed
	seen          []bool // by message number
	received      int
	duplicates    int
	retries       int // polls sent again after errClosedIdle
	latency       []time.Duration
}

// run polls until every message has come or ctx ends; a failed poll is
// reported and retried on a new connection after a pause.
func (c *heldClient) run(ctx context.Context, fail func(error)) {
	req := []byte("GET " + c.path + " HTTP/1.1\r\nHost: " + capacityHost + "\r\nUser-Agent: stardust-capacity-test\r\n\r\n")
	var (
		mu   sync.Mutex // conn, between this goroutine and the AfterFunc
		conn net.Conn
		br   *bufio.Reader
		// reused: conn has carried a poll already, so a close before the
		// answer may be the server closing an idle keep-alive connection.
		reused bool
	)
	setConn := func(cc net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		if conn != nil {
			conn.Close()
		}
		conn = cc
		if cc != nil && ctx.Err() != nil {
			_ = cc.SetDeadline(time.Now())
		}
	}
	// A cancelled run unblocks a read at once.
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if conn != nil {
			_ = conn.SetDeadline(time.Now())
		}
	})
	defer stop()
	defer setConn(nil)
	for c.received < c.want && ctx.Err() == nil {
		if conn == nil {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}, Timeout: 10 * time.Second}
			cc, err := d.DialContext(ctx, "tcp", c.webAddr)
			if err != nil {
				if ctx.Err() == nil {
					fail(fmt.Errorf("connect: %w", err))
					sleepCtx(ctx, time.Second)
				}
				continue
			}
			setConn(cc)
			br, reused = bufio.NewReaderSize(cc, 2048), false
		}
		msgs, keep, err := c.pollOnce(ctx, conn, br, req, reused)
		reused = true
		if errors.Is(err, errClosedIdle) {
			c.retries++ // as a browser does, on a new connection at once
			setConn(nil)
			continue
		}
		if err != nil {
			if ctx.Err() == nil {
				fail(fmt.Errorf("poll %s: %w", c.path, err))
				sleepCtx(ctx, time.Second)
			}
			keep = false
		}
		if !keep {
			setConn(nil)
		}
		now := time.Now()
		for _, m := range msgs {
			if m.N < 0 || m.N >= c.want || m.T == 0 {
				continue // not ours (an overflow notice would fail the count)
			}
			if c.seen[m.N] {
				c.duplicates++
				continue
			}
			c.seen[m.N] = true
			c.received++
			c.latency = append(c.latency, now.Sub(time.Unix(0, m.T)))
		}
	}
}

// capacityMsg is a published message as a poll returns it.
type capacityMsg struct {
	N int   `json:"n"`
	T int64 `json:"t"`
}

// pollOnce sends one long poll on conn and reads its answer; keep says
// whether the connection may carry the next one.
// errClosedIdle is a reused keep-alive connection closed by the server
// before it read the request: HTTP's race between a server closing an idle
// connection and a client sending on it, which browsers and Go's own client
// answer by sending the request again on a new connection. apache2's event
// MPM closes idle keep-alive connections when a process has no idle thread.
var errClosedIdle = errors.New("keep-alive connection closed before the answer began")

func (c *heldClient) pollOnce(ctx context.Context, conn net.Conn, br *bufio.Reader, req []byte, reused bool) (msgs []capacityMsg, keep bool, err error) {
	// Above Stardust's 30s hold: an answer that takes longer is an error.
	if err := conn.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		return nil, false, err
	}
	if err := ctx.Err(); err != nil { // checked after the deadline, which a cancel resets
		return nil, false, err
	}
	if _, err := conn.Write(req); err != nil {
		return nil, false, err
	}
	if _, err := br.Peek(1); err != nil {
		if reused && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			return nil, false, errClosedIdle
		}
		return nil, false, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, false, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return nil, false, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("%s: %.200s", resp.Status, body)
	}
	if err := json.Unmarshal(body, &msgs); err != nil {
		return nil, false, fmt.Errorf("answer not a JSON array of messages: %v: %.200s", err, body)
	}
	return msgs, !resp.Close, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// groupMemoryKB is the proportional set size (Pss: shared pages divided
// among the processes that share them) of every process in the process
// group pgid, in KiB: the memory the web server, master and workers, costs.
func groupMemoryKB(t *testing.T, pgid int) int64 {
	t.Helper()
	kb, err := processGroupPss(pgid)
	if err != nil {
		t.Fatalf("memory of process group %d: %v", pgid, err)
	}
	return kb
}

func processGroupPss(pgid int) (int64, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var total int64
	found := false
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ')'.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) < 3 || fields[2] != strconv.Itoa(pgid) {
			continue
		}
		rollup, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "smaps_rollup"))
		if err != nil {
			return 0, fmt.Errorf("pid %d: %w", pid, err)
		}
		for _, line := range strings.Split(string(rollup), "\n") {
			if v, ok := strings.CutPrefix(line, "Pss:"); ok {
				n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("pid %d: Pss %q", pid, v)
				}
				total += n
				found = true
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("no process in the group")
	}
	return total, nil
}

// TestCapacity carries thousands of held clients through each web server
// with the shipped main configuration: 5,000 through nginx and 1,000 through
// apache2, over HTTP (static.conf) and FastCGI (fastcgi.conf), one message a
// second to every client for 15 s, and fails unless every message arrives.
// One set-up at a time: they share two cores with the rest of the tests.
// -short carries a tenth of the clients for 5 s.
func TestCapacity(t *testing.T) {
	if !haveProgram("nginx") && !haveProgram("apache2") {
		missingDependency(t, "neither nginx nor apache2 found: install the Debian packages nginx and apache2")
	}
	checkClientIP(t)
	raiseOpenFiles(t, 5000+1000)
	bin := stardustBinary(t)
	for _, tc := range []struct {
		setup   webServerSetup
		clients int
	}{
		{webServerSetup{"nginx", "static"}, 5000},
		{webServerSetup{"nginx", "fastcgi"}, 5000},
		{webServerSetup{"apache2", "static"}, 1000},
		{webServerSetup{"apache2", "fastcgi"}, 1000},
	} {
		t.Run(tc.setup.String(), func(t *testing.T) {
			load := capacityLoad{clients: tc.clients, channels: tc.clients / 50, messages: 15}
			if testing.Short() {
				load = capacityLoad{clients: tc.clients / 10, channels: tc.clients / 500, messages: 5}
			}
			r := startCapacityRig(t, tc.setup, mainShipped, bin)
			res := runCapacity(t, r, load)
			t.Logf("%s, %d clients on %d channels, %d messages each: %s",
				tc.setup, load.clients, load.channels, load.messages, res)
			if res.missing() != 0 || res.duplicates != 0 {
				t.Errorf("%d of %d messages lost, %d duplicated", res.missing(), res.expected, res.duplicates)
			}
			if res.pollErrors != 0 || res.publishErrors != 0 {
				t.Errorf("%d polls and %d publishes failed; the first: %s", res.pollErrors, res.publishErrors, res.firstError)
			}
			if res.held < int64(load.clients) {
				t.Errorf("Stardust held %d polls, want %d", res.held, load.clients)
			}
		})
	}
}

// TestProxyLoad runs the load tool, cmd/stardust-load, through one set-up
// with the stock or the shipped main configuration, for BENCHMARKS.md. It
// runs only when asked, with STARDUST_PROXY_LOAD="SETUP MAIN CLIENTS", e.g.
//
//	STARDUST_PROXY_LOAD='nginx/static stock 2000' go test ./integration -run TestProxyLoad -v
//
// Every client gets a message a second (a channel per 50 clients, or
// CHANNELS if given: STARDUST_PROXY_LOAD='apache2/static shipped 1000 1' puts
// everyone on one; a message a second on each, a publisher per 5 channels:
// each publishes in turn) for 20 s. It logs the tool's report, the web server's
// memory with every client registered, and the errors in its log; it fails
// only when it cannot run.
func TestProxyLoad(t *testing.T) {
	spec := os.Getenv("STARDUST_PROXY_LOAD")
	if spec == "" {
		t.Skip("set STARDUST_PROXY_LOAD='SETUP MAIN CLIENTS' (e.g. 'apache2/fastcgi shipped 1000') to run")
	}
	f := strings.Fields(spec)
	var s webServerSetup
	var clients, channels int
	if len(f) == 3 || len(f) == 4 {
		server, name, _ := strings.Cut(f[0], "/")
		s = webServerSetup{server, name}
		clients, _ = strconv.Atoi(f[2])
		channels = max(1, clients/50)
		if len(f) == 4 {
			channels, _ = strconv.Atoi(f[3])
		}
	}
	if !slices.Contains(webServerSetups(), s) || (f[1] != string(mainStock) && f[1] != string(mainShipped)) || clients < 1 || channels < 1 {
		t.Fatalf("STARDUST_PROXY_LOAD=%q: want SETUP MAIN CLIENTS [CHANNELS], SETUP one of %v, MAIN stock or shipped", spec, webServerSetups())
	}
	raiseOpenFiles(t, clients+100)
	bin := stardustBinary(t)
	load := filepath.Join(t.TempDir(), "stardust-load")
	build := exec.Command("go", "build", "-o", load, "./cmd/stardust-load")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/stardust-load: %v\n%s", err, out)
	}
	r := startCapacityRig(t, s, mainConfig(f[1]), bin)
	args := []string{"--url", "http://" + r.webAddr + "/comet", "--clients", strconv.Itoa(clients),
		"--channels", strconv.Itoa(channels), "--rate", strconv.Itoa(channels), "--publishers", strconv.Itoa(max(4, channels/5)),
		"--duration", "20s", "--setup-timeout", "45s", "--drain", "10s"}
	t.Logf("stardust-load %s", strings.Join(args, " "))
	idle := groupMemoryKB(t, r.web.cmd.Process.Pid)
	cmd := exec.Command(load, args...)
	out := &syncBuffer{}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		if strings.Contains(line, "clients registered in") {
			held := groupMemoryKB(t, r.web.cmd.Process.Pid)
			t.Logf("web server memory (Pss of all its processes): %.1f MiB idle, %.1f MiB with %d clients registered: %.1f KiB per client",
				float64(idle)/1024, float64(held)/1024, clients, float64(held-idle)/float64(clients))
		}
	}
	err = cmd.Wait()
	t.Logf("stardust-load exited: %v\n%s", err, out.String())
	errs := map[string]int{}
	for _, line := range strings.Split(readFile(t, r.errorLog()), "\n") {
		for _, what := range []string{"worker_connections are not enough", "MaxRequestWorkers", "Connection reset", "timed out", "AH0"} {
			if strings.Contains(line, what) {
				errs[what]++
				break
			}
		}
	}
	t.Logf("%s error log: %v", s.server, errs)
}

// withLoadTestLimits turns off the per-address session limits for a load
// from one machine (cmd/stardust-load/loadtest.toml).
func withLoadTestLimits(t *testing.T, dir string, args []string) []string {
	t.Helper()
	limits := readFile(t, filepath.Join(repoRoot(t), "cmd", "stardust-load", "loadtest.toml"))
	return withTOML(t, dir, "loadtest.toml", args, limits)
}

// withTOML adds the settings of extra to a Stardust command line: into the
// config file the command names, or a file of its own (name in dir).
func withTOML(t *testing.T, dir, name string, args []string, extra string) []string {
	t.Helper()
	for i, a := range args {
		if (a == "--config" || a == "-c") && i+1 < len(args) {
			writeFile(t, args[i+1], mergeTOMLTables(readFile(t, args[i+1]), extra))
			return args
		}
	}
	file := filepath.Join(dir, name)
	writeFile(t, file, extra)
	return append(args, "--config", file)
}

// mergeTOMLTables adds the keys of each [table] of extra to base: under
// base's own header of that table when it has one (TOML forbids a second),
// else as a new table at the end. Comments of extra are dropped.
func mergeTOMLTables(base, extra string) string {
	table := ""
	keys := map[string][]string{}
	var order []string
	for _, line := range strings.Split(extra, "\n") {
		l := strings.TrimSpace(line)
		switch {
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "["):
			table = l
			order = append(order, l)
		default:
			keys[table] = append(keys[table], l)
		}
	}
	lines := strings.Split(base, "\n")
	for _, tbl := range order {
		found := false
		for i, l := range lines {
			if strings.TrimSpace(l) == tbl {
				lines = append(lines[:i+1], append(append([]string{}, keys[tbl]...), lines[i+1:]...)...)
				found = true
				break
			}
		}
		if !found {
			lines = append(lines, "", tbl)
			lines = append(lines, keys[tbl]...)
		}
	}
	return strings.Join(lines, "\n") + "\n"
}
