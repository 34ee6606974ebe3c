//go:build unix

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/testenv"
)

// readmeBlocks returns the ```lang blocks of README.md and docs/*.md
// (readDocs), those inside list items unindented.
func readmeBlocks(t *testing.T, lang string) []string {
	t.Helper()
	readme := readDocs(t)
	var blocks []string
	lines := strings.Split(readme, "\n")
	for i := 0; i < len(lines); i++ {
		open := strings.TrimLeft(lines[i], " ")
		if open != "```"+lang {
			continue
		}
		indent := len(lines[i]) - len(open)
		var b strings.Builder
		for i++; i < len(lines) && strings.TrimLeft(lines[i], " ") != "```"; i++ {
			b.WriteString(strings.TrimPrefix(lines[i], strings.Repeat(" ", indent)) + "\n")
		}
		blocks = append(blocks, b.String())
	}
	return blocks
}

// readmeShBlock returns the ```sh block of README.md that starts with first.
func readmeShBlock(t *testing.T, first string) string {
	t.Helper()
	for _, b := range readmeBlocks(t, "sh") {
		if strings.HasPrefix(b, first) {
			return b
		}
	}
	t.Fatalf("README.md has no sh block starting with %q", first)
	return ""
}

// runScript runs a README snippet with bash -e in the repository root, in
// its own process group, which is killed when the script ends or times out.
func runScript(t *testing.T, script string, timeout time.Duration, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left in the background
	if err != nil {
		t.Fatalf("README snippet failed: %v\n%s\n--- output:\n%s", err, script, out.String())
	}
	return out.String()
}

// waitPortFree waits, bounded, for a fixed port a README snippet uses to be
// free: on a shared machine someone else may hold it for a while.
func waitPortFree(t *testing.T, port string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		l, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err == nil {
			l.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %s, which the README snippet uses, is still busy after a minute: %v", port, err)
		}
		time.Sleep(time.Second)
	}
}

func requireFaye(t *testing.T) {
	t.Helper()
	requireProgram(t, "node", "nodejs")
	if _, err := os.Stat(filepath.Join(repoRoot(t), "integration", "clients", "node_modules", "faye")); err != nil {
		missingDependency(t, "faye is not installed: run `cd integration/clients && npm ci`")
	}
}

// TestReadmeLoadTool runs the README's load tool snippet as written: Stardust
// over Bayeux long-polling, WebSocket and SSE, the floor over long polling
// and WebSocket, and Faye, each for 2 s, and checks that every run delivered
// everything.
func TestReadmeLoadTool(t *testing.T) {
	requireFaye(t)
	port := testenv.FreePorts(t, 3)
	out := runScript(t, readmeShBlock(t, "go build -o bin/ ./cmd/stardust ./cmd/stardust-load"), 3*time.Minute,
		"PORT="+strconv.Itoa(port))
	reports := strings.Count(out, "stardust-load: ") - strings.Count(out, "registered in")
	if n := strings.Count(out, ", lost 0, duplicates 0;"); n != 5 || reports != 5 {
		t.Errorf("want 5 text reports with nothing lost, found %d reports, %d clean:\n%s", reports, n, out)
	}
	for _, want := range []string{"bayeux mode", "websocket mode", "poll mode", "µs per delivery", "VmHWM"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var rep struct {
		Mode, Publish  string
		Received, Lost int64
	}
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "bin", "sse.json"))
	if err != nil || json.Unmarshal(b, &rep) != nil || rep.Mode != "sse" || rep.Publish != "bayeux" || rep.Received == 0 || rep.Lost != 0 {
		t.Errorf("the --json run: %v, %+v\n%s", err, rep, b)
	}
}

// TestReadmeCompare runs the README's short `make compare` as written: one
// row against Faye and Stardust, and checks the table.
func TestReadmeCompare(t *testing.T) {
	requireFaye(t)
	requireProgram(t, "taskset", "util-linux")
	requireProgram(t, "make", "make")
	if runtime.NumCPU() < 2 {
		missingDependency(t, "make compare pins servers and the tool to two different CPUs; this machine has one")
	}
	// Without Centrifugo: its build from the module proxy takes minutes
	// (TestRealCentrifugo runs it when it was built).
	out := runScript(t, readmeShBlock(t, "make compare"), 3*time.Minute, "COMPARE_PORT="+strconv.Itoa(testenv.FreePorts(t, 1)),
		"COMPARE_CENTRIFUGO=no")
	for _, want := range []string{
		"| WebSocket, 1,000 subscribers, 100 msg/s | Faye (websocket) |",
		"| WebSocket, 1,000 subscribers, 100 msg/s | Stardust (websocket) |",
		"| WebSocket, 1,000 subscribers, 100 msg/s | floor (websocket) |",
		"Centrifugo",
		"Stardust / Faye = ",
		"Stardust / floor = ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make compare output lacks %q:\n%s", want, out)
		}
	}
	// Centrifugo's runs, left out, say "failed: skipped: …".
	if strings.Contains(strings.ReplaceAll(out, "failed: skipped:", ""), "failed") || strings.Contains(out, "LOST") {
		t.Errorf("make compare had a failed or lossy run:\n%s", out)
	}
}

// readmeTOML returns the ```toml blocks of README.md that contain key.
func readmeTOML(t *testing.T, key string) string {
	t.Helper()
	var out strings.Builder
	for _, b := range readmeBlocks(t, "toml") {
		if strings.Contains(b, key) {
			out.WriteString(b)
		}
	}
	if out.Len() == 0 {
		t.Fatalf("README.md has no toml block with %q", key)
	}
	return out.String()
}

// TestReadmeAccessLogAndPprof runs Stardust with the README's log.requests
// and debug.pprof blocks as written, and the README's pprof command against
// it: the access log has the request, the profile is read.
func TestReadmeAccessLogAndPprof(t *testing.T) {
	waitPortFree(t, "6060")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "stardust.toml")
	if err := os.WriteFile(cfg, []byte(readmeTOML(t, "requests =")+readmeTOML(t, "pprof =")), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p := startProcess(t, "stardust", dir, stardustBinary(t), "--config", cfg, "--listen", addr)
	p.waitListening(t, addr)
	c := newCometClient(t, "http://"+addr)
	c.waitReady(t)
	out := runScript(t, readmeShBlock(t, "go tool pprof"), 2*time.Minute)
	if !strings.Contains(out, "flat") {
		t.Errorf("go tool pprof printed no profile:\n%s", out)
	}
	deadline := time.Now().Add(5 * time.Second) // the access log is written out every second
	for !strings.Contains(p.out.String(), `"GET /comet/ HTTP/1.1" 200 `) {
		if time.Now().After(deadline) {
			t.Fatalf("no access log line for GET /comet/ on stderr:\n%s", p.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
