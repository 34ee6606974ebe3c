//go:build unix

package integration

import (
	"bufio"
	"bytes"
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
	osuser "os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stardust-go/stardust/internal/docs"
	"github.com/stardust-go/stardust/internal/testenv"
)

// Bounds on waiting for the programs the tests start. Generous: a loaded CI
// machine is slow, and a test never asserts a timing tighter than these.
const (
	startTimeout = 20 * time.Second // until a started program listens
	stopTimeout  = 10 * time.Second // from SIGTERM until it has exited
	freeTimeout  = 10 * time.Second // until its ports can be bound again
)

// The shared rules of tests that drive real programs (internal/testenv): a
// missing program skips loudly, or fails under
// STARDUST_REQUIRE_INTEGRATION=1.
var (
	missingDependency = testenv.MissingDependency
	requireProgram    = testenv.RequireProgram
	lookProgram       = testenv.LookProgram
)

// haveProgram says whether a program is installed.
func haveProgram(name string) bool {
	_, ok := lookProgram(name)
	return ok
}

// The stardust binary the tests start, built once per run of the package: a
// link takes seconds on a loaded machine and nearly every test starts one.
var built struct {
	once sync.Once
	dir  string // removed by TestMain
	bin  string
	err  error
}

// Tests that mostly wait (on held polls, browsers, Redis, web servers) call
// t.Parallel: each has its own ports, temp dirs and processes. Tests that
// measure latency or load, pin or count CPUs, bind a fixed port, change the
// system (TestCapacity, TestApacheOneChannel, TestDebianPackage, ...) or
// wait a fixed sleep for something to happen (TestStardustJSPages,
// TestBrowser, ...) do not, so they run first, alone, before any parallel
// test starts. make unit runs four parallel tests at once (-parallel 4).

// TestMain removes the binary built for the tests once they have run.
func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// stardustBinary builds cmd/stardust (once for all the tests of the
// package), or returns $STARDUST_BIN when set so that a given build (a
// release, a race build) can be tested. Tests only run it, never change it.
func stardustBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("STARDUST_BIN"); bin != "" {
		return bin
	}
	root := repoRoot(t)
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "stardust-integration-"); built.err != nil {
			return
		}
		bin := filepath.Join(built.dir, "stardust")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/stardust")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("%w\n%s", err, out)
			return
		}
		built.bin = bin
	})
	if built.err != nil {
		t.Fatalf("go build ./cmd/stardust: %v", built.err)
	}
	return built.bin
}

// repoRoot is the module root, where conf/ and cmd/ live; go test runs in
// the package directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// sharedTempDir returns a temporary directory that other users can read. When
// the tests run as root, nginx and apache2 workers drop to www-data and must
// still reach the site root in it.
func sharedTempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	// t.TempDir makes its directory and a per-test parent, both 0700.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// workerUser is the unprivileged user and group that web server workers
// switch to when the tests run as root, as in a Debian install; "" when not
// root.
func workerUser(t testing.TB) (user, group string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return "", ""
	}
	for _, ug := range [][2]string{{"www-data", "www-data"}, {"nobody", "nogroup"}} {
		if _, err := osuser.Lookup(ug[0]); err != nil {
			continue
		}
		if _, err := osuser.LookupGroup(ug[1]); err == nil {
			return ug[0], ug[1]
		}
	}
	t.Fatal("running as root, but neither www-data nor nobody/nogroup exists for the web server workers")
	return "", ""
}

// freeAddr returns a loopback address with a port that nothing listens on now,
// below the kernel's ephemeral range (testenv.FreePorts), so that no outgoing
// connection takes it before the program that wants it binds it.
func freeAddr(t testing.TB) string {
	t.Helper()
	return "127.0.0.1:" + strconv.Itoa(testenv.FreePorts(t, 1))
}

// expectPortsFreed registers a cleanup that fails the test if any of addrs
// still cannot be bound once every process has stopped. Call it before
// starting the processes: cleanups run last-registered first.
func expectPortsFreed(t *testing.T, addrs ...string) {
	t.Helper()
	t.Cleanup(func() {
		for _, addr := range addrs {
			if err := waitBindable(addr, freeTimeout); err != nil {
				t.Errorf("port not freed after the processes stopped: %v", err)
			}
		}
	})
}

func waitBindable(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			return l.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still in use after %v: %w", addr, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// process is a program started by a test in its own process group, so that
// stopping it also stops the workers it forked (nginx, apache2).
type process struct {
	name   string
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // from cmd.Wait; read only after exited is closed
}

// startProcess starts args in dir with its output captured, and registers a
// cleanup that stops it and, if the test failed, shows what it printed.
func startProcess(t *testing.T, name, dir string, args ...string) *process {
	t.Helper()
	return startProcessEnv(t, name, dir, nil, args...)
}

// startProcessEnv is startProcess with the environment env (nil: the test's).
func startProcessEnv(t *testing.T, name, dir string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("%s (%s) printed:\n%s", name, strings.Join(args, " "), out.String())
		}
	})
	return p
}

// stop sends SIGTERM to the process group and waits for the leader to exit,
// killing the group if it does not within stopTimeout. nginx and apache2
// wait for their workers before they exit, so the group is empty afterwards.
func (p *process) stop(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(stopTimeout):
	}
	t.Errorf("%s did not exit within %v of SIGTERM; killing its process group", p.name, stopTimeout)
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		t.Errorf("%s survived SIGKILL for %v", p.name, stopTimeout)
	}
}

// waitListening waits until addr accepts TCP connections, failing at once if
// the process exits first.
func (p *process) waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%v) before listening on %s:\n%s", p.name, p.err, addr, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not listening on %s after %v: %v", p.name, addr, startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuffer collects a process's output; the process writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// rewritePlaceholders replaces each old value of pairs (old, new, old, new...)
// in text. Every old value must occur: a deployment file that drifted from the
// placeholders of SPEC section 7 is an error, not a silent no-op.
func rewritePlaceholders(t testing.TB, name, text string, pairs ...string) string {
	t.Helper()
	if len(pairs)%2 != 0 {
		t.Fatalf("rewritePlaceholders: odd number of arguments")
	}
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			t.Fatalf("%s: placeholder %q not found", name, pairs[i])
		}
		text = strings.ReplaceAll(text, pairs[i], pairs[i+1])
	}
	return text
}

// headerCommands returns the commands that a deployment file's header comment
// tells the reader to run, each split into words, for those whose program is
// one of programs. A command is a comment line "#   program args...".
func headerCommands(text string, programs ...string) [][]string {
	var cmds [][]string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "#") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			break // the header ends at the first directive
		}
		words := strings.Fields(strings.TrimPrefix(line, "#"))
		if len(words) == 0 || !strings.HasPrefix(line, "#   ") {
			continue
		}
		for _, p := range programs {
			if words[0] == p {
				cmds = append(cmds, words)
			}
		}
	}
	return cmds
}

// readFile returns a file's content, failing the test when it cannot be read.
func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readDocs returns README.md and docs/*.md as one text (see internal/docs).
func readDocs(t testing.TB) string {
	t.Helper()
	text, err := docs.Read(repoRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	return text
}

// writeFile writes content to path, failing the test when it cannot.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies the directory tree src to dst, keeping symbolic links as
// links (Debian's sites-enabled and modules-enabled are made of them).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.Type()&os.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, b, 0o644)
		default:
			return errors.New("unexpected file type: " + path)
		}
	})
}

// Talking to Stardust through the web server.

// cometClient talks to Stardust through the web server, from clientIP.
type cometClient struct {
	base   string // http://host:port of the web server
	host   string // Host header when not base's host:port
	client *http.Client
}

func newCometClient(t *testing.T, base string) *cometClient {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 8}
	t.Cleanup(tr.CloseIdleConnections)
	return &cometClient{base: base, client: &http.Client{Transport: tr}}
}

// request is one round trip bounded by timeout; the body is read whole.
func (c *cometClient) request(method, path string, body url.Values, timeout time.Duration) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.host != "" {
		req.Host = c.host
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// waitReady waits until the web server passes a request through to Stardust:
// both listen already, but a proxy may still be connecting.
func (c *cometClient) waitReady(t *testing.T) {
	t.Helper()
	c.waitOK(t, "/comet/", startTimeout)
}

// waitOK waits until GET path answers 200, for at most within.
func (c *cometClient) waitOK(t *testing.T, path string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		resp, body, err := c.request("GET", path, nil, 5*time.Second)
		if err == nil && resp.StatusCode == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s not 200 after %v: %v %s", path, within, err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// publish posts one message (a JSON object) to a channel as a form parameter m.
func (c *cometClient) publish(t *testing.T, channel, message string) {
	t.Helper()
	resp, body, err := c.request("POST", "/comet/channel/"+channel, url.Values{"m": {message}}, 10*time.Second)
	if err != nil {
		t.Fatalf("publish to %s: %v", channel, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("publish to %s: %s\n%s", channel, resp.Status, body)
	}
}

// audience is a channel's subscriber counts by kind, as the channel info
// reports them (never ids: they are capabilities).
type audience map[string]int

func (a audience) total() int {
	n := 0
	for _, k := range a {
		n += k
	}
	return n
}

// waitSubscriber waits until Stardust counts a subscriber on channel (the
// client under test, who, when it is the only one). A message published
// before then would not be queued for it.
func (c *cometClient) waitSubscriber(t *testing.T, channel, who string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body, err := c.request("GET", "/comet/channel/"+channel, nil, 5*time.Second)
		var infos []struct{ Subscribers audience }
		if err == nil && resp.StatusCode == http.StatusOK && json.Unmarshal(body, &infos) == nil {
			for _, info := range infos {
				if info.Subscribers.total() > 0 {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no subscriber %q on channel %s after 10s (last answer: %v %s)", who, channel, err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type pollResult struct {
	status  int
	body    []byte
	err     error
	elapsed time.Duration
}

// startPoll starts one long poll of channel as client id and delivers its
// result on the channel returned.
func (c *cometClient) startPoll(channel, id string, timeout time.Duration) <-chan pollResult {
	done := make(chan pollResult, 1)
	go func() {
		start := time.Now()
		resp, body, err := c.request("GET", "/comet/channel/"+channel+"/stream/"+id, nil, timeout)
		r := pollResult{body: body, err: err, elapsed: time.Since(start)}
		if resp != nil {
			r.status = resp.StatusCode
		}
		done <- r
	}()
	return done
}

// openStream sends req and waits up to within for the response headers. An
// event stream must start at once: a browser's EventSource reports it open
// only then, and headers held back mean something in the path buffers.
func (c *cometClient) openStream(req *http.Request, within time.Duration) (*http.Response, error) {
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.client.Do(req)
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		return r.resp, r.err
	case <-time.After(within):
		go func() { // close the response when it does come, after the test has moved on
			if r := <-done; r.resp != nil {
				r.resp.Body.Close()
			}
		}()
		return nil, fmt.Errorf("no response headers within %v: the web server or Stardust holds them back", within)
	}
}

// readLines delivers the lines of r until r ends or ctx is done.
func readLines(ctx context.Context, r io.Reader) <-chan string {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	return lines
}

// waitForLine reads lines until one matches, the stream ends, or within passes.
func waitForLine(lines <-chan string, within time.Duration, match func(string) bool) error {
	timer := time.NewTimer(within)
	defer timer.Stop()
	var seen []string
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return fmt.Errorf("stream ended; lines so far: %q", seen)
			}
			if match(l) {
				return nil
			}
			if len(seen) < 50 {
				seen = append(seen, l)
			}
		case <-timer.C:
			return fmt.Errorf("not received within %v; lines so far: %q", within, seen)
		}
	}
}

// bayeuxCall sends one Bayeux message and returns the reply with the same
// channel and id, skipping other messages, within the deadline.
func bayeuxCall(conn *websocket.Conn, within time.Duration, msg map[string]any) (map[string]any, error) {
	if err := conn.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return nil, err
	}
	if err := conn.WriteJSON([]map[string]any{msg}); err != nil {
		return nil, fmt.Errorf("send %v: %w", msg["channel"], err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(within)); err != nil {
		return nil, err
	}
	for range 100 { // bounded: a reply arrives among at most a few other messages
		var batch []map[string]any
		if err := conn.ReadJSON(&batch); err != nil {
			return nil, fmt.Errorf("waiting for the %v reply: %w", msg["channel"], err)
		}
		for _, m := range batch {
			if m["channel"] == msg["channel"] && m["id"] == msg["id"] {
				return m, nil
			}
		}
	}
	return nil, fmt.Errorf("no %v reply among 100 messages", msg["channel"])
}
