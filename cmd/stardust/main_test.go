package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/conf"
	redisengine "github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/fcgitest"
	"github.com/stardust-go/stardust/internal/leakcheck"
	"github.com/stardust-go/stardust/server"
)

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "stardust.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func newTestMain() (*Main, *bytes.Buffer) {
	m := NewMain()
	var out bytes.Buffer
	m.Stdout, m.Stderr = &out, &out
	return m, &out
}

func TestFlagsOverrideFileOverDefaults(t *testing.T) {
	file := writeFile(t, "[server]\nbase = \"/push\"\nlisten = \"127.0.0.1:7000\"\n[comet]\npoll_timeout = \"10s\"\nhistory_size = 3\n")
	m, _ := newTestMain()
	if err := m.ParseFlags([]string{"-c", file, "--timeout", "3", "-p", "7001", "--fcgi"}); err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if c.Server.Base != "/push" || c.Comet.HistorySize != 3 {
		t.Errorf("file not applied: base %q history %d", c.Server.Base, c.Comet.HistorySize)
	}
	if c.Comet.PollTimeout.Duration != 3*time.Second {
		t.Errorf("--timeout 3 gave %s", c.Comet.PollTimeout)
	}
	if c.Server.Listen != "127.0.0.1:7001" || c.Server.Mode != "fcgi" {
		t.Errorf("flags not applied: listen %q mode %q", c.Server.Listen, c.Server.Mode)
	}
	if c.Comet.ClientTimeout.Duration != 60*time.Second {
		t.Errorf("default lost: client_timeout %s", c.Comet.ClientTimeout)
	}
}

func TestCheckListsEveryProblem(t *testing.T) {
	file := writeFile(t, "[server]\nmode = \"cgi\"\nlistne = \"x\"\n[log]\nformat = \"xml\"\n")
	m, _ := newTestMain()
	err := m.ParseFlags([]string{"--check", "--config", file})
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{`unknown key "server.listne"`, "server.mode", "log.format"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	m, _ = newTestMain()
	if err := m.ParseFlags([]string{"--check", "--config", "../../conf/stardust.toml"}); err != nil {
		t.Errorf("the annotated file does not pass --check: %v", err)
	}
	m, _ = newTestMain()
	if err := m.ParseFlags([]string{"--timeout", "soon"}); err == nil || !strings.Contains(err.Error(), "--timeout") {
		t.Errorf("bad --timeout: %v", err)
	}
}

// startMain runs the real program in-process on a free port.
func startMain(t *testing.T, args ...string) *Main {
	t.Helper()
	m, _ := newTestMain()
	if err := m.ParseFlags(append([]string{"--listen", "127.0.0.1:0", "--log-level", "warn"}, args...)); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestEndToEndHTTP(t *testing.T) {
	for _, on := range []bool{true, false} { // server.hold_on_connection
		t.Run(fmt.Sprintf("hold_on_connection=%v", on), func(t *testing.T) {
			before := runtime.NumGoroutine()
			conf := writeFile(t, fmt.Sprintf("[server]\nhold_on_connection = %v\n", on))
			m := startMain(t, "--config", conf, "--timeout", "5s")
			if held := m.http.ConnContext != nil; held != on { // set by server.TakeoverListener
				t.Fatalf("polls held on their connection: %v, want %v", held, on)
			}
			base := "http://" + m.Addr().String() + "/comet"
			got := make(chan string, 1)
			go func() {
				resp, err := http.Get(base + "/channel/news/stream/1.5")
				if err != nil {
					got <- err.Error()
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				got <- string(b)
			}()
			waitClient(t, m, "1.5")
			resp, err := http.PostForm(base+"/channel/news", url.Values{"m": {`{"type":"headline","text":"hi"}`}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			body := wait(t, got)
			if !strings.Contains(body, `"type":"headline"`) || !strings.Contains(body, `"_ch":"news"`) {
				t.Fatalf("stream got %s", body)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			http.DefaultClient.CloseIdleConnections()
			leakcheck.Goroutines(t, before)
		})
	}
}

func TestEndToEndFastCGI(t *testing.T) {
	m := startMain(t, "--fcgi", "--timeout", "5s")
	addr := m.Addr().String()
	got := make(chan string, 1)
	go func() {
		resp, err := fcgitest.Get(addr, "/comet/channel/news+sport/stream/77")
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	waitClient(t, m, "77")
	resp, err := fcgitest.Post(addr, "/comet/channel/sport", "application/x-www-form-urlencoded",
		strings.NewReader("m="+url.QueryEscape(`{"type":"goal"}`)))
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("publish over FastCGI: %d %s", resp.StatusCode, pb)
	}
	body := wait(t, got)
	if !strings.HasPrefix(body, "200 ") || !strings.Contains(body, `"type":"goal"`) || !strings.Contains(body, `"_ch":"sport"`) {
		t.Fatalf("stream over FastCGI got %s", body)
	}
	// No WebSocket is offered under FastCGI, which cannot carry one.
	resp, err = fcgitest.Post(addr, "/comet/bayeux", "application/json", strings.NewReader(
		`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["websocket","long-polling"]}]`))
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(hb), `"successful":true`) || strings.Contains(string(hb), `"websocket"`) {
		t.Errorf("handshake over FastCGI: %s", hb)
	}
	// The info URL and a JSON 404 route the same under FastCGI.
	resp, err = fcgitest.Get(addr, "/comet/")
	if err != nil {
		t.Fatal(err)
	}
	ib, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(ib), "Stardust COMET Server") {
		t.Errorf("info over FastCGI: %s", ib)
	}
}

func waitClient(t *testing.T, m *Main, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := m.server.Hub().Client(id); err == nil && c.Polling() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("client %s never polled", id)
}

func wait(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10s")
		return ""
	}
}

// buildBinary builds the real program once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stardust")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

var addrLine = regexp.MustCompile(`addr="?([0-9.]+:[0-9]+)`)

// startProcess runs the binary and returns it with the address it logged.
func startProcess(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stderr)
	found := make(chan string, 1)
	go func() {
		for lines.Scan() {
			if m := addrLine.FindStringSubmatch(lines.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case addr := <-found:
		return cmd, addr
	case <-time.After(20 * time.Second):
		t.Fatal("the program never logged its address")
		return nil, ""
	}
}

func TestSignalShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	for _, mode := range []string{"http", "fcgi"} {
		t.Run(mode, func(t *testing.T) {
			args := []string{"--timeout", "60s"}
			if mode == "fcgi" {
				args = append(args, "--fcgi")
			}
			cmd, addr := startProcess(t, bin, args...)
			got := make(chan string, 1)
			go func() {
				var resp *http.Response
				var err error
				if mode == "fcgi" {
					resp, err = fcgitest.Get(addr, "/comet/channel/x/stream/9")
				} else {
					resp, err = http.Get("http://" + addr + "/comet/channel/x/stream/9")
				}
				if err != nil {
					got <- "error: " + err.Error()
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				got <- strings.TrimSpace(string(b))
			}()
			time.Sleep(300 * time.Millisecond) // let the poll be held
			start := time.Now()
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if body := wait(t, got); body != "[]" {
				t.Errorf("held poll answered %q on SIGTERM, want []", body)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				if err != nil {
					t.Errorf("exit: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("did not exit within 5s of SIGTERM")
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("shutdown took %s", d)
			}
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	m, out := newTestMain()
	if err := m.ParseFlags([]string{"--version"}); err != errDone || !strings.HasPrefix(out.String(), "stardust ") {
		t.Errorf("--version: %v %q", err, out)
	}
	m, out = newTestMain()
	if err := m.ParseFlags([]string{"--help"}); err == nil || !strings.Contains(out.String(), "--document-root") && !strings.Contains(out.String(), "-document-root") {
		t.Errorf("--help: %v %q", err, out)
	}
}

func TestLogFileAndJSONFormat(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "stardust.log")
	file := writeFile(t, fmt.Sprintf("[log]\nfile = %q\nformat = \"json\"\nlevel = \"info\"\n", logPath))
	m := startMain(t, "--config", file, "--log-level", "info")
	// A request that goes well is not logged; a rejected one is.
	getPaths(t, m, "/comet/", "/comet/nowhere")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var sawRequest bool
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line not JSON: %q", line)
		}
		if e["msg"] == "request" && e["path"] == "/comet/nowhere" && e["status"] == 404.0 && e["problem"] == "rejected" {
			sawRequest = true
		}
		if e["msg"] == "request" && e["path"] == "/comet/" {
			t.Errorf("a request that went well was logged: %q", line)
		}
	}
	if !sawRequest {
		t.Errorf("no line for the rejected request in the log file:\n%s", data)
	}
}

// getPaths makes a GET of each path on m's listener.
func getPaths(t *testing.T, m *Main, paths ...string) {
	t.Helper()
	for _, path := range paths {
		resp, err := http.Get("http://" + m.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
}

// TestAccessLogFile: log.requests writes one combined-format line per
// request to its file, written out at the latest when the server stops.
func TestAccessLogFile(t *testing.T) {
	accessPath := filepath.Join(t.TempDir(), "access.log")
	file := writeFile(t, fmt.Sprintf("[log]\nrequests = %q\n", accessPath))
	m := startMain(t, "--config", file)
	getPaths(t, m, "/comet/", "/comet/channel/a?since=0")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(accessPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "127.0.0.1 - - [") ||
		!strings.Contains(lines[0], `"GET /comet/ HTTP/1.1" 200 `) || !strings.Contains(lines[1], `"GET /comet/channel/a HTTP/1.1" 200 `) {
		t.Errorf("access log:\n%s", data)
	}
}

// TestPprof: debug.pprof serves profiles on a loopback address and refuses
// any other unless allowed; it is off by default.
func TestPprof(t *testing.T) {
	if m := startMain(t); m.PprofAddr() != nil {
		t.Errorf("pprof on by default at %s", m.PprofAddr())
	}
	m := startMain(t, "--config", writeFile(t, "[debug]\npprof = \"127.0.0.1:0\"\n"))
	resp, err := http.Get("http://" + m.PprofAddr().String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("pprof goroutine page: %d %.200s", resp.StatusCode, body)
	}
	// The API's port does not serve profiles.
	if resp, err := http.Get("http://" + m.Addr().String() + "/debug/pprof/"); err != nil {
		t.Error(err)
	} else if resp.Body.Close(); resp.StatusCode == 200 {
		t.Error("the API port serves /debug/pprof/")
	}
	mm, _ := newTestMain()
	err = mm.ParseFlags([]string{"--listen", "127.0.0.1:0", "--config", writeFile(t, "[debug]\npprof = \"0.0.0.0:0\"\n")})
	if err == nil || !strings.Contains(err.Error(), "debug.pprof") || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("pprof on 0.0.0.0 without pprof_allow_remote: %v", err)
	}
	// metrics.allow_from guards pprof too (issue 17, point 8): a monitoring
	// host listed, this machine not.
	m = startMain(t, "--config", writeFile(t, "[debug]\npprof = \"127.0.0.1:0\"\n[metrics]\nallow_from = [\"192.0.2.9\"]\n"))
	for _, u := range []string{"http://" + m.PprofAddr().String() + "/debug/pprof/goroutine?debug=1", "http://" + m.Addr().String() + "/comet/metrics"} {
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "metrics.allow_from") {
			t.Errorf("%s from an address metrics.allow_from does not list: %d %.200s, want 403", u, resp.StatusCode, body)
		}
	}
}

// optionsOf returns the server options a configuration file gives.
func optionsOf(t *testing.T, toml string) server.Options {
	t.Helper()
	m, _ := newTestMain()
	if err := m.ParseFlags([]string{"-c", writeFile(t, toml)}); err != nil {
		t.Fatal(err)
	}
	o, err := serverOptions(&m.Config)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestGrowthLimitsWired: the limits on what one client can grow reach the
// hub and the engine's Limits (which a Redis engine is given too).
func TestGrowthLimitsWired(t *testing.T) {
	o := optionsOf(t, "[comet]\nmax_subscriptions = 3\nmax_channels = 7\nmax_history_bytes = 100000\n"+
		"address_channel_rate = 2.5\naddress_channel_burst = 70\n")
	if o.Hub.AddressChannelRate != 2.5 || o.Hub.AddressChannelBurst != 70 {
		t.Errorf("channel rate %g burst %d", o.Hub.AddressChannelRate, o.Hub.AddressChannelBurst)
	}
	if l := o.Hub.EngineLimits(); l.MaxSubscriptions != 3 || l.MaxChannels != 7 || l.MaxHistoryBytes != 100000 {
		t.Errorf("engine limits %+v", l)
	}
}

// TestRedisMirrorWired: engine.redis_mirror reaches the Redis engine's
// Mirror, on unless set false.
func TestRedisMirrorWired(t *testing.T) {
	for text, want := range map[string]bool{
		"[engine]\ntype = \"redis\"\n":                       true,
		"[engine]\ntype = \"redis\"\nredis_mirror = false\n": false,
	} {
		m, _ := newTestMain()
		if err := m.ParseFlags([]string{"-c", writeFile(t, text)}); err != nil {
			t.Fatal(err)
		}
		if got := redisOptions(&m.Config, server.HubOptions{}, logrus.NewEntry(logrus.New())).Mirror; got != want {
			t.Errorf("%q: Mirror %v, want %v", text, got, want)
		}
	}
}

// TestAPIWired: [api] reaches the server's options.
func TestAPIWired(t *testing.T) {
	o := optionsOf(t, "[api]\nkey = \"0123456789abcdef0123456789abcdef\"\nallow_from = [\"10.0.0.0/8\"]\n")
	if o.APIKey != "0123456789abcdef0123456789abcdef" || len(o.APIAllowFrom) != 1 || o.APIAllowFrom[0].String() != "10.0.0.0/8" {
		t.Errorf("api options: key %q allow %v", o.APIKey, o.APIAllowFrom)
	}
}

// TestChannelsWired: [[channels]] reach the server's rules and the engine's
// history rules in order, an unset anonymous reading true and an unset
// history_size comet.history_size.
func TestChannelsWired(t *testing.T) {
	o := optionsOf(t, "[comet]\nhistory_size = 7\n\n[[channels]]\npattern = \"/chat/**\"\nanonymous = false\nhistory_size = 0\n\n"+
		"[[channels]]\npattern = \"/stardust/news\"\npresence = true\njoin_leave = true\n")
	if fmt.Sprint(o.Channels) != "[{/chat/** false false false} {/stardust/news true true true}]" {
		t.Errorf("channel rules %v", o.Channels)
	}
	l := o.Hub.EngineLimits()
	for ch, want := range map[string]int{"/chat/x/y": 0, "/stardust/news": 7, "/other": 7} {
		segs, _ := server.ParseChannel(ch, false)
		if got := l.HistoryFor(segs); got != want {
			t.Errorf("history of %s: %d, want %d", ch, got, want)
		}
	}
}

// TestRedisShardsBound: the configuration's bound on redis_shards is the
// engine's, MaxShards (conf does not import the engine).
func TestRedisShardsBound(t *testing.T) {
	for n, ok := range map[int]bool{redisengine.MaxShards: true, redisengine.MaxShards + 1: false} {
		c := conf.Default()
		c.Engine.Type, c.Engine.RedisCluster, c.Engine.RedisShards = "redis", []string{"127.0.0.1:7000"}, n
		if err := c.Validate(); (err == nil) != ok {
			t.Errorf("redis_shards = %d: %v (accepted: want %v)", n, err, ok)
		}
	}
}
