package main

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/internal/floor"
	"github.com/stardust-go/stardust/server"
)

// startServer runs the real core on a loopback listener for one test.
func startServer(t *testing.T) string {
	t.Helper()
	lg := logrus.New()
	lg.SetOutput(io.Discard)
	s := server.New(server.Options{PollTimeout: 5 * time.Second, Prefix: "/stardust",
		Bayeux: &server.BayeuxOptions{ClientMaxConnections: 1000, WebSocket: true, ConnectTimeout: time.Minute}},
		logrus.NewEntry(lg))
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		ts.Close()
	})
	return ts.URL + "/comet"
}

func testConfig(t *testing.T, args ...string) config {
	t.Helper()
	cfg, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestRun loads an in-process server (and the floor) for about two seconds
// with every subscriber transport and both ways of publishing, and checks
// that the report adds up. Timing bounds are generous on purpose: the test
// machine is small and shared.
func TestRun(t *testing.T) {
	for _, tc := range []struct{ name, mode, publish string }{
		{"poll", "poll", ""},
		{"sse", "sse", ""},
		{"bayeux", "bayeux", ""},
		{"websocket", "websocket", ""},
		{"poll-publish-bayeux", "poll", "bayeux"},
		{"websocket-publish-stardust", "websocket", "stardust"},
		{"floor", "poll", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := startServer(t)
			if tc.name == "floor" {
				ts := httptest.NewServer(floor.New("/comet", 5*time.Second))
				t.Cleanup(ts.Close)
				u = ts.URL + "/comet"
			}
			args := []string{"--url", u, "--mode", tc.mode, "--clients", "20", "--channels", "3",
				"--publishers", "2", "--rate", "100", "--duration", "2s", "--drain", "10s"}
			if tc.publish != "" {
				args = append(args, "--publish", tc.publish)
			}
			cfg := testConfig(t, args...)
			cfg.PID = os.Getpid() // our own RSS and CPU: the server runs in this process
			checkRun(t, cfg)
		})
	}
}

func checkRun(t *testing.T, cfg config) *report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 40*time.Second {
		t.Errorf("run took %s for a 2s load", took)
	}
	if rep.StoppedBy != "duration" {
		t.Errorf("stopped by %q, want duration", rep.StoppedBy)
	}
	if rep.Published < 20 || rep.Published > 250 {
		t.Errorf("published %d messages in 2s at 100/s", rep.Published)
	}
	// 20 clients on 3 channels: 7, 7 and 6; messages go round the channels.
	if rep.Expected < rep.Published*6 || rep.Expected > rep.Published*7 {
		t.Errorf("expected %d deliveries for %d messages", rep.Expected, rep.Published)
	}
	if rep.Received != rep.Expected || rep.Lost != 0 || rep.Duplicates != 0 || rep.OverflowLost != 0 {
		t.Errorf("received %d of %d, lost %d, duplicates %d, overflow %d",
			rep.Received, rep.Expected, rep.Lost, rep.Duplicates, rep.OverflowLost)
	}
	if cfg.Publish == "stardust" && rep.Recipients != rep.Expected {
		t.Errorf("server counted %d recipients, we expected %d", rep.Recipients, rep.Expected)
	}
	if rep.PublishErrors != 0 || rep.PollErrors != 0 {
		t.Errorf("%d publish errors, %d poll errors: %s", rep.PublishErrors, rep.PollErrors, rep.FirstError)
	}
	l := rep.Latency
	if l.Count != rep.Received || l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max || l.Max > 10_000 {
		t.Errorf("latency figures not sane: %+v", l)
	}
	if rep.PublishRate < 10 || rep.PublishRate > 150 {
		t.Errorf("publish rate %.1f/s for a target of 100/s", rep.PublishRate)
	}
	if rep.RSS == nil || rep.RSS.ConnectedKB <= 0 || rep.RSS.EndKB <= 0 || rep.RSS.HWMKB <= 0 || rep.RSS.SampleErrors != 0 {
		t.Errorf("RSS not read: %+v", rep.RSS)
	}
	if c := rep.ServerCPU; c == nil || c.Error != "" || c.Deliveries != rep.Received || c.WindowSec < 1.5 ||
		c.CPUSec < 0 || c.CPUSec > 2*c.WindowSec+1 || (c.CPUSec > 0 && c.USPerDelivery <= 0) {
		t.Errorf("server CPU not sane: %+v", c)
	}
	if rep.ToolCPU <= 0 {
		t.Errorf("tool CPU %v", rep.ToolCPU)
	}
	// On Linux every transport's deliveries are stamped by the kernel
	// (--procs: the children's counts added up).
	if runtime.GOOS == "linux" && (rep.Arrival != clockKernel || rep.KernelStamped != rep.Received) {
		t.Errorf("arrival clock %q, %d of %d deliveries stamped by the kernel", rep.Arrival, rep.KernelStamped, rep.Received)
	}
	var out strings.Builder
	rep.writeText(&out)
	for _, want := range []string{"lost 0", "latency", "p99", "server RSS", "server CPU", "per delivery", "arrival     "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	return rep
}

// TestRunMessageBound stops at --messages, unpaced, long before --duration.
func TestRunMessageBound(t *testing.T) {
	u := startServer(t)
	cfg := testConfig(t, "--url", u, "--clients", "5", "--rate", "0", "--messages", "50", "--duration", "30s")
	start := time.Now()
	rep, err := run(context.Background(), cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.StoppedBy != "messages" || rep.Published != 50 || rep.Received != 250 || rep.Lost != 0 {
		t.Errorf("stopped by %s after %d messages, %d deliveries, %d lost; want messages, 50, 250, 0",
			rep.StoppedBy, rep.Published, rep.Received, rep.Lost)
	}
	if took := time.Since(start); took > 25*time.Second {
		t.Errorf("took %s: the message bound did not stop it", took)
	}
}

// TestRunCancelled stops promptly when its context ends, as on SIGINT.
func TestRunCancelled(t *testing.T) {
	u := startServer(t)
	cfg := testConfig(t, "--url", u, "--clients", "5", "--rate", "50", "--duration", "5m")
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := run(ctx, cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if rep.StoppedBy != "signal" {
		t.Errorf("stopped by %q, want signal", rep.StoppedBy)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("took %s after cancel at 1.5s", took)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"http://127.0.0.1:5742/comet", true},
		{"http://127.9.8.7:80/comet/", true},
		{"http://localhost:5742/comet", true},
		{"http://[::1]:5742/comet", true},
		{"https://127.0.0.1/comet", true},
		{"http://10.0.0.1:5742/comet", false},
		{"http://192.168.1.1/comet", false},
		{"http://example.com/comet", false},
		{"http://127.0.0.1.example.com/comet", false},
		{"http://[::2]/comet", false},
		{"http://0.0.0.0:5742/comet", false},
		{"ftp://127.0.0.1/comet", false},
		{"127.0.0.1:5742", false},
	} {
		_, err := loopbackURL(tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("loopbackURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

func TestFlagBounds(t *testing.T) {
	for _, args := range [][]string{
		{"--duration", "0s"},
		{"--duration", "11m"},
		{"--messages", "0"},
		{"--clients", "0"},
		{"--channels", "200", "--clients", "100"},
		{"--rate", "-1"},
		{"--mode", "cometd"},
		{"--publish", "sse"},
		{"--prefix", "stardust"},
		{"--prefix", "/a//b"},
		{"--cpu", "-2"},
		{"--bayeux", "http://example.org/comet/bayeux"},
		{"--bayeux", "ws://127.0.0.1/comet/bayeux"},
		{"--url", "http://example.org/comet"},
		{"--mode", "uni_sse", "--publish", "stardust"},
		{"--mode", "poll", "--publish", "centrifugo"},
		{"--procs", "0"},
		{"--procs", "17", "--clients", "100"},
		{"--procs", "3", "--clients", "2"},
		{"--source", "10.0.0.1"},
		{"--source", "localhost"},
		{"--child", "0"},
		{"--child", "0", "--run", "x", "--procs", "2"},
		{"--urls", "http://127.0.0.1:5931/comet"}, // one process: nothing to spread
		{"--urls", "http://127.0.0.1:5931/comet,http://10.0.0.1/comet", "--procs", "2"},
		{"--settle", "-1s"},
		{"--settle", "11m"},
		{"--warmup", "-1s"},
		{"--warmup", "10s", "--duration", "10s"},
		{"--warmup", "1s", "--rate", "0"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	cfg := testConfig(t)
	if cfg.Duration != 10*time.Second || cfg.Mode != "poll" || cfg.base.String() != "http://127.0.0.1:5742/comet" ||
		cfg.bayeux.String() != "http://127.0.0.1:5742/comet/bayeux" || cfg.Publish != "stardust" || cfg.CPU != -1 {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg := testConfig(t, "--mode", "websocket", "--bayeux", "http://[::1]:8000/faye"); cfg.Publish != "bayeux" || cfg.bayeux.Host != "[::1]:8000" {
		t.Errorf("websocket defaults: publish %q, bayeux %s", cfg.Publish, cfg.bayeux)
	}
}

// TestWarmupLeavesFirstMessagesUntimed: with --warmup 1s at 10 messages a
// second from 2 publishers, each publisher's first 5 messages are received
// (and counted) but not timed; the later ones are.
func TestWarmupLeavesFirstMessagesUntimed(t *testing.T) {
	cfg := testConfig(t, "--rate", "10", "--publishers", "2", "--warmup", "1s")
	r := newRunner(cfg)
	c := r.newClient(0) // its last: -1 for each of the 2 publishers
	var msgs []loadMsg
	for n := int64(0); n < 8; n++ {
		msgs = append(msgs, loadMsg{Load: r.run, T: time.Now().UnixNano(), P: int(n % 2), N: n / 2 * 2})
	}
	for n := int64(0); n < 8; n++ {
		msgs = append(msgs, loadMsg{Load: r.run, T: time.Now().UnixNano(), P: 0, N: 100 + n})
	}
	c.got(msgs, stamp{at: time.Now()})
	if got := r.received.Load(); got != 16 {
		t.Errorf("received %d; want every one of 16", got)
	}
	// Publisher 0: N 0, 2, 4 are warm-up (below 5), 6 is timed; publisher 1
	// the same; then 8 timed ones.
	if got := r.latency.n.Load(); got != 2+8 {
		t.Errorf("timed %d messages; want 10 (the 6 warm-up ones left out)", got)
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	p := h.percentiles()
	near := func(got, want float64) bool { return got >= want*0.95 && got <= want*1.05 }
	if p.Count != 1000 || !near(p.P50, 500) || !near(p.P90, 900) || !near(p.P99, 990) || p.Max != 1000 || !near(p.Mean, 500.5) {
		t.Errorf("percentiles of 1..1000ms: %+v", p)
	}
	for _, us := range []int64{0, 1, 63, 64, 65, 127, 128, 1 << 20, 1<<40 + 12345} {
		mid := bucketMid(bucketOf(us))
		if d := mid - float64(us); d < -float64(us)/30-1 || d > float64(us)/30+1 {
			t.Errorf("bucket of %dµs has middle %.1f", us, mid)
		}
	}
}
