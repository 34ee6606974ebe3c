//go:build unix

package integration

// Helpers that run the third-party Bayeux clients of integration/clients
// (CometD's JavaScript client and Faye's client, in Node) against a server,
// and the self-check that proves the harness against Faye's own server.
//
// A scenario prints one JSON object per line on stdout: {"step":...,"ok":...}
// per step, then {"result":"pass"} or {"result":"fail","error":...}; its
// stderr is a wire trace of every Bayeux message, shown when a run fails.
// See integration/clients/README.md for the scenarios and their options.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// scenarioDefaultTimeout mirrors scenario.js's --timeout-ms default.
	scenarioDefaultTimeout = 30 * time.Second
	// scenarioGrace is how long past its own timeout a scenario may take
	// before the test kills it: scenario.js kills itself at its timeout, so
	// needing this means node itself hung.
	scenarioGrace = 15 * time.Second
	// scenarioStderrTail bounds the wire trace shown for a failed run.
	scenarioStderrTail = 400
)

// clientsDir is integration/clients; go test runs in integration/.
func clientsDir(t testing.TB) string {
	t.Helper()
	return filepath.Join(repoRoot(t), "integration", "clients")
}

// requireNode returns the path of node after checking that it is recent
// enough and that the client libraries are installed in
// integration/clients/node_modules. Otherwise it skips the test with a loud
// reason naming the command to run, or fails it when
// STARDUST_REQUIRE_INTEGRATION=1.
func requireNode(t *testing.T) string {
	t.Helper()
	const fix = "run `cd integration/clients && npm ci`"
	node, err := exec.LookPath("node")
	if err != nil {
		missingDependency(t, "node not found: install Node.js 20 or later (Debian package nodejs, with npm) and "+fix)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		missingDependency(t, fmt.Sprintf("%s --version failed: %v", node, err))
	}
	version := strings.TrimSpace(string(out))
	major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(version, "v"), ".", 2)[0])
	if major < 20 {
		missingDependency(t, fmt.Sprintf("node %s is too old for the client harness: install Node.js 20 or later and %s", version, fix))
	}
	dir := clientsDir(t)
	for _, pkg := range []string{"cometd", "cometd-nodejs-client", "faye", "ws"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			missingDependency(t, fmt.Sprintf("integration/clients/node_modules/%s is missing: %s", pkg, fix))
		}
	}
	return node
}

// scenarioTimeout is the --timeout-ms the arguments give scenario.js, or its
// default.
func scenarioTimeout(args []string) time.Duration {
	for i, a := range args {
		v, ok := "", false
		if a == "--timeout-ms" && i+1 < len(args) {
			v, ok = args[i+1], true
		} else if strings.HasPrefix(a, "--timeout-ms=") {
			v, ok = strings.TrimPrefix(a, "--timeout-ms="), true
		}
		if ok {
			if ms, err := strconv.Atoi(v); err == nil && ms > 0 {
				return time.Duration(ms) * time.Millisecond
			}
		}
	}
	return scenarioDefaultTimeout
}

// parseScenarioLine decodes one stdout line; a line that is not a JSON
// object is kept as {"raw": line} so that nothing the script printed is lost.
func parseScenarioLine(line string) map[string]any {
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil || m == nil {
		return map[string]any{"raw": line}
	}
	return m
}

// scenarioVerdict turns a finished run into nil (it printed
// {"result":"pass"} and exited 0) or an error saying why not.
func scenarioVerdict(lines []map[string]any, runErr error) error {
	var result map[string]any
	for _, l := range lines {
		if _, ok := l["result"]; ok {
			result = l
		}
	}
	switch {
	case result == nil && runErr != nil:
		return fmt.Errorf("no result line; node: %v", runErr)
	case result == nil:
		return errors.New("no result line, yet node exited 0")
	case result["result"] != "pass":
		return fmt.Errorf("failed at step %v: %v", result["step"], result["error"])
	case runErr != nil:
		return fmt.Errorf("printed pass but node: %v", runErr)
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("[... %d earlier lines ...]\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], "\n"))
}

// runScenario runs `node scenario.js args...` to completion and returns the
// lines it printed. A run that does not pass is reported with t.Errorf (with
// its output and the tail of its wire trace) and returned as err, so callers
// may stop with t.FailNow or carry on. Use tryScenario for a run that is
// expected to fail.
func runScenario(t *testing.T, args ...string) (lines []map[string]any, err error) {
	t.Helper()
	lines, err = tryScenario(t, args...)
	if err != nil {
		t.Errorf("scenario %s: %v", strings.Join(args, " "), err)
	}
	return lines, err
}

// tryScenario is runScenario without the test failure: it returns the lines
// and the verdict, and logs the output of a run that did not pass.
func tryScenario(t *testing.T, args ...string) ([]map[string]any, error) {
	t.Helper()
	return tryNodeScript(t, "scenario.js", args...)
}

// tryNodeScript runs a script of integration/clients that speaks as
// scenario.js does (--timeout-ms, JSON lines, a result line last).
func tryNodeScript(t *testing.T, script string, args ...string) ([]map[string]any, error) {
	t.Helper()
	node := requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout(args)+scenarioGrace)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = clientsDir(t)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		runErr = fmt.Errorf("killed after %v: %w", scenarioTimeout(args)+scenarioGrace, ctx.Err())
	}
	var lines []map[string]any
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, parseScenarioLine(l))
		}
	}
	err := scenarioVerdict(lines, runErr)
	if err != nil {
		t.Logf("%s %s did not pass: %v\nstdout:\n%s\nstderr (wire trace):\n%s",
			script, strings.Join(args, " "), err, stdout.String(), tail(stderr.String(), scenarioStderrTail))
	}
	return lines, err
}

// scenarioProc is a scenario running in the background, typically "listen"
// while the test publishes from elsewhere.
type scenarioProc struct {
	t      *testing.T
	args   []string
	cmd    *exec.Cmd
	ctx    context.Context
	cancel context.CancelFunc
	stderr *syncBuffer

	mu      sync.Mutex
	lines   []map[string]any
	changed chan struct{} // closed and replaced whenever lines grows or the run ends
	ended   bool          // stdout closed and the process waited for

	done   chan struct{} // closed once the process has exited
	runErr error         // from cmd.Wait; read after done is closed
}

// startScenario starts `node scenario.js args...` in the background. The
// process is killed when the test ends; its output is logged if the test
// failed.
func startScenario(t *testing.T, args ...string) *scenarioProc {
	t.Helper()
	node := requireNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), scenarioTimeout(args)+scenarioGrace)
	cmd := exec.CommandContext(ctx, node, append([]string{"scenario.js"}, args...)...)
	cmd.Dir = clientsDir(t)
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	p := &scenarioProc{t: t, args: args, cmd: cmd, ctx: ctx, cancel: cancel, stderr: &syncBuffer{}, changed: make(chan struct{}), done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start scenario %s: %v", strings.Join(args, " "), err)
	}
	go p.read(stdout)
	t.Cleanup(func() {
		p.cancel()
		<-p.done
		if t.Failed() {
			t.Logf("background scenario %s printed:\n%s\nstderr (wire trace):\n%s",
				strings.Join(p.args, " "), p.stdoutText(), tail(p.stderr.String(), scenarioStderrTail))
		}
	})
	return p
}

// read collects stdout lines until the process exits.
func (p *scenarioProc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		m := parseScenarioLine(sc.Text())
		p.mu.Lock()
		p.lines = append(p.lines, m)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	err := p.cmd.Wait()
	p.runErr = err
	close(p.done)
	p.mu.Lock()
	p.ended = true
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}

// Lines returns what the scenario has printed so far.
func (p *scenarioProc) Lines() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.lines...)
}

func (p *scenarioProc) stdoutText() string {
	var b strings.Builder
	for _, l := range p.Lines() {
		j, _ := json.Marshal(l)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// WaitStep waits until the scenario prints {"step":step,"ok":true,...} and
// returns that line. It fails (t.Errorf, and returns the error) if the
// scenario ends or fails first, or timeout passes.
func (p *scenarioProc) WaitStep(step string, timeout time.Duration) (map[string]any, error) {
	p.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		p.mu.Lock()
		lines, ended, changed := p.lines, p.ended, p.changed
		p.mu.Unlock()
		for _, l := range lines {
			if l["step"] == step && l["ok"] == true {
				return l, nil
			}
		}
		var err error
		for _, l := range lines {
			if _, ok := l["result"]; ok {
				err = fmt.Errorf("scenario ended (%v: %v) before step %q", l["result"], l["error"], step)
			}
		}
		if err == nil && ended {
			err = fmt.Errorf("scenario exited (%v) before step %q", p.runErr, step)
		}
		if err == nil {
			select {
			case <-changed:
				continue
			case <-timer.C:
				err = fmt.Errorf("no step %q within %v", step, timeout)
			}
		}
		p.t.Errorf("background scenario %s: %v", strings.Join(p.args, " "), err)
		return nil, err
	}
}

// Wait waits for the scenario to end (bounded by its own --timeout-ms plus
// a grace period) and returns all its lines. A run that did not pass is
// reported with t.Errorf and returned as err.
func (p *scenarioProc) Wait() ([]map[string]any, error) {
	p.t.Helper()
	<-p.done
	lines := p.Lines()
	runErr := p.runErr
	if errors.Is(p.ctx.Err(), context.DeadlineExceeded) {
		runErr = fmt.Errorf("killed after its deadline: %v", runErr)
	}
	err := scenarioVerdict(lines, runErr)
	if err != nil {
		p.t.Errorf("background scenario %s: %v", strings.Join(p.args, " "), err)
	}
	return lines, err
}

// scenarioSteps returns the lines of the named step.
func scenarioSteps(lines []map[string]any, step string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["step"] == step {
			out = append(out, l)
		}
	}
	return out
}

// scenarioFailedStep returns the step a failed run names in its result line.
func scenarioFailedStep(lines []map[string]any) string {
	for _, l := range lines {
		if l["result"] == "fail" {
			s, _ := l["step"].(string)
			return s
		}
	}
	return ""
}

// startFayeFixture starts integration/clients/faye-server.js, Faye's own
// Bayeux server (the harness's reference server, not the product), on a free
// loopback port and returns its Bayeux URL. It is stopped when the test ends.
func startFayeFixture(t *testing.T, node string, extra ...string) string {
	t.Helper()
	args := append([]string{"faye-server.js", "--port", "0", "--timeout-s", "25", "--max-lifetime-s", "900", "--exit-on-stdin-close"}, extra...)
	cmd := exec.Command(node, args...)
	cmd.Dir = clientsDir(t)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start faye-server.js: %v", err)
	}
	exited := make(chan struct{})
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		_, _ = io.Copy(logs, stdout)
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("faye-server.js %s printed:\n%s", strings.Join(extra, " "), tail(logs.String(), scenarioStderrTail))
		}
	})
	select {
	case line, ok := <-first:
		var hello struct {
			Listening bool   `json:"listening"`
			URL       string `json:"url"`
		}
		if !ok || json.Unmarshal([]byte(line), &hello) != nil || !hello.Listening || hello.URL == "" {
			t.Fatalf("faye-server.js did not start (first line %q):\n%s", line, logs.String())
		}
		return hello.URL
	case <-time.After(20 * time.Second):
		t.Fatalf("faye-server.js printed nothing within 20s:\n%s", logs.String())
	}
	return ""
}

// TestClientHarnessAgainstFayeServer proves the client harness itself: both
// real clients run every scenario against Faye's own Bayeux server, over
// every transport, and the checks that must catch a misbehaving server (a
// silent fallback from websocket, a service reply CometD's websocket
// transport cannot clear its timer with) do catch one.
func TestClientHarnessAgainstFayeServer(t *testing.T) {
	t.Parallel()
	node := requireNode(t)
	url := startFayeFixture(t, node)
	clients := []string{"faye", "cometd"}
	transports := []string{"long-polling", "websocket", "callback-polling"}

	for _, client := range clients {
		for _, transport := range transports {
			t.Run("full/"+client+"/"+transport, func(t *testing.T) {
				lines, err := runScenario(t, "--client", client, "--url", url, "--transport", transport, "--scenario", "full")
				if err != nil {
					return
				}
				tr := scenarioSteps(lines, "transport")
				if len(tr) != 1 || tr[0]["used"] != transport {
					t.Errorf("transport step %v, want used=%s", tr, transport)
				}
				for _, step := range []string{"handshake", "publish-batch", "deliver-batch", "deep-wildcard", "echo", "unsubscribe", "after-unsubscribe", "no-duplicates", "disconnect", "health", "replies"} {
					if len(scenarioSteps(lines, step)) == 0 {
						t.Errorf("passing run has no %q step", step)
					}
				}
			})
		}
	}

	// The browser-default handshake: CometD offering all three transports,
	// the requested one first.
	for _, transport := range transports {
		t.Run("full/cometd/"+transport+"/keep-fallback", func(t *testing.T) {
			runScenario(t, "--client", "cometd", "--url", url, "--transport", transport, "--scenario", "full", "--keep-fallback")
		})
	}

	// listen + publish across clients and transports: what the integration
	// tests do when they publish with curl.
	t.Run("listen-publish", func(t *testing.T) {
		listener := startScenario(t, "--client", "cometd", "--url", url, "--transport", "websocket",
			"--scenario", "listen", "--channel", "/stardust/*", "--count", "2", "--timeout-ms", "20000")
		if _, err := listener.WaitStep("ready", 15*time.Second); err != nil {
			t.FailNow()
		}
		want := []map[string]any{
			{"type": "x", "n": float64(1)},
			{"type": "y", "n": float64(2)},
		}
		runScenario(t, "--client", "faye", "--url", url, "--transport", "long-polling", "--scenario", "publish",
			"--channel", "/stardust/foo", "--data", `{"type":"x","n":1}`)
		runScenario(t, "--client", "faye", "--url", url, "--transport", "callback-polling", "--scenario", "publish",
			"--channel", "/stardust/bar", "--data", `{"type":"y","n":2}`)
		lines, err := listener.Wait()
		if err != nil {
			return
		}
		msgs := scenarioSteps(lines, "message")
		if len(msgs) != 2 {
			t.Fatalf("listener got %d messages, want 2: %v", len(msgs), msgs)
		}
		for i, m := range msgs {
			if !reflect.DeepEqual(m["data"], want[i]) {
				t.Errorf("message %d: data %v, want %v", i, m["data"], want[i])
			}
		}
		if msgs[0]["channel"] != "/stardust/foo" || msgs[1]["channel"] != "/stardust/bar" {
			t.Errorf("channels %v, %v; want /stardust/foo, /stardust/bar", msgs[0]["channel"], msgs[1]["channel"])
		}
	})

	// Negative checks: the harness must fail where the server is wrong.
	t.Run("negative/no-websocket", func(t *testing.T) {
		noWS := startFayeFixture(t, node, "--no-websocket")
		for _, c := range []struct {
			name, step string
			args       []string
		}{
			// Faye always handshakes over HTTP and falls back silently.
			{"faye", "transport", []string{"--client", "faye"}},
			// CometD with websocket forced: the handshake itself fails.
			{"cometd", "handshake", []string{"--client", "cometd"}},
			// CometD offering every transport falls back to long-polling.
			{"cometd-keep-fallback", "transport", []string{"--client", "cometd", "--keep-fallback"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				args := append(append([]string(nil), c.args...), "--url", noWS, "--transport", "websocket", "--scenario", "full", "--timeout-ms", "15000")
				lines, err := tryScenario(t, args...)
				if err == nil {
					t.Fatalf("websocket scenario passed against a server without websocket")
				}
				if got := scenarioFailedStep(lines); got != c.step {
					t.Errorf("failed at step %q, want %q (%v)", got, c.step, err)
				}
			})
		}
	})

	t.Run("negative/echo-reply-with-data-only", func(t *testing.T) {
		// A service reply that is only {id, successful, data}: fine for
		// long-polling and for Faye, but CometD's websocket transport never
		// clears that message's timer and drops the socket after
		// maxNetworkDelay.
		combined := startFayeFixture(t, node, "--echo-style", "combined")
		lines, err := tryScenario(t, "--client", "cometd", "--url", combined, "--transport", "websocket", "--scenario", "full")
		if err == nil {
			t.Fatalf("CometD websocket passed with data-only service replies")
		}
		if got := scenarioFailedStep(lines); got != "replies" {
			t.Errorf("failed at step %q, want replies (%v)", got, err)
		}
		runScenario(t, "--client", "cometd", "--url", combined, "--transport", "long-polling", "--scenario", "full")
		runScenario(t, "--client", "faye", "--url", combined, "--transport", "websocket", "--scenario", "full")
	})
}
