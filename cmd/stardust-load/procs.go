package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Several processes (--procs N): one process may hold at most as many
// connections as it may open files (20,000 on the machines this was written
// for), so a load of 18,000 held clients runs its subscribers in N child
// copies of the tool, each with its share of the clients (on Linux each from
// its own loopback address, 127.0.0.2 and up, so that source ports do not run
// short), while this process publishes and measures the server. The children
// speak a line protocol on their standard input and output:
//
//	child → parent  "ready"                  every client of the child is registered
//	parent → child  "published C0 C1 ..."    messages accepted per channel: what each client is owed
//	child → parent  "drained R"              R deliveries received, the drain is over
//	child → parent  {report}                 the child's report (one line of JSON) with its histograms
//
// A child ends when its standard input closes, at the latest after
// --setup-timeout, --duration and --drain.

// maxProcs bounds --procs.
const maxProcs = 16

// childEnv marks a process started as a child, for the test binary, which
// runs main() when it sees it.
const childEnv = "STARDUST_LOAD_CHILD"

// histDump is a histogram in a report, so that a parent can merge its
// children's.
type histDump struct {
	Counts map[int]int64 `json:"counts"`
	N      int64         `json:"n"`
	Sum    int64         `json:"sum"`
	Max    int64         `json:"max"`
}

func (h *histogram) dump() *histDump {
	d := &histDump{Counts: map[int]int64{}, N: h.n.Load(), Sum: h.sum.Load(), Max: h.max.Load()}
	for i := range h.counts {
		if n := h.counts[i].Load(); n > 0 {
			d.Counts[i] = n
		}
	}
	return d
}

func (h *histogram) merge(d *histDump) {
	if d == nil {
		return
	}
	for i, n := range d.Counts {
		if i >= 0 && i < len(h.counts) {
			h.counts[i].Add(n)
		}
	}
	h.n.Add(d.N)
	h.sum.Add(d.Sum)
	for m := h.max.Load(); d.Max > m && !h.max.CompareAndSwap(m, d.Max); m = h.max.Load() {
	}
}

// childHists are a child's histograms in its report.
type childHists struct {
	Latency  *histDump `json:"latency"`
	Delivery *histDump `json:"delivery"`
}

// sourceAddr is the loopback address child i connects from: its own on
// Linux (all of 127.0.0.0/8 is local there), none elsewhere.
func sourceAddr(i int) string {
	if runtime.GOOS != "linux" {
		return ""
	}
	return net.IPv4(127, 0, 0, byte(2+i%250)).String()
}

// childArgs are the flags of child i of n, which holds share clients.
func (c *config) childArgs(i, share int, run string) []string {
	u, bx := c.URL, c.BayeuxURL
	if len(c.spread) > 0 { // --urls: another process of the cluster
		u = c.spread[i%len(c.spread)]
		bx = u + "/bayeux"
	}
	a := []string{"--url", u, "--bayeux", bx, "--mode", c.Mode, "--publish", c.Publish,
		"--api-key", c.APIKey, "--prefix", c.Prefix, "--clients", strconv.Itoa(share),
		"--channels", strconv.Itoa(min(c.Channels, share)), "--publishers", strconv.Itoa(c.Publishers),
		"--duration", c.Duration.String(), "--messages", strconv.Itoa(c.Messages),
		"--ramp", strconv.Itoa(max(1, c.Ramp/c.Procs)), "--setup-timeout", c.SetupTimeout.String(),
		"--drain", c.Drain.String(), "--settle", c.Settle.String(), "--warmup", c.Warmup.String(), "--poll-timeout", c.PollTimeout.String(), "--cpu", strconv.Itoa(c.CPU),
		"--json", "--child", strconv.Itoa(i), "--run", run}
	if c.Ramp == 0 {
		a = append(a, "--ramp", "0")
	}
	if s := sourceAddr(i); s != "" {
		a = append(a, "--source", s)
	}
	return a
}

// childProc is one running child.
type childProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

// children are the child processes of a run.
type children struct {
	procs []*childProc
	r     *runner
}

// startChildren starts the children and waits until every one has its
// clients registered (and, for the Stardust API, until the server lists
// them all).
func (r *runner) startChildren(ctx context.Context, logw io.Writer) (*children, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	k := &children{r: r}
	n := r.cfg.Procs
	for i := 0; i < n; i++ {
		share := r.cfg.Clients / n
		if i < r.cfg.Clients%n {
			share++
		}
		cmd := exec.CommandContext(ctx, exe, r.cfg.childArgs(i, share, r.run)...)
		cmd.Env = append(os.Environ(), childEnv+"=1")
		cmd.Stderr = logw
		cmd.WaitDelay = 5 * time.Second
		in, err := cmd.StdinPipe()
		if err != nil {
			k.stop()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			k.stop()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			k.stop()
			return nil, fmt.Errorf("child %d: %w", i, err)
		}
		p := &childProc{cmd: cmd, in: in, lines: make(chan string, 4)}
		go func() {
			defer close(p.lines)
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 64<<10), 16<<20)
			for sc.Scan() {
				p.lines <- sc.Text()
			}
		}()
		k.procs = append(k.procs, p)
	}
	deadline := time.Now().Add(r.cfg.SetupTimeout + 10*time.Second)
	for i, p := range k.procs {
		if line, err := p.next(ctx, deadline); err != nil || line != "ready" {
			k.stop()
			return nil, fmt.Errorf("child %d not ready: %q, %v", i, line, err)
		}
	}
	if r.cfg.Mode == modePoll || r.cfg.Mode == modeSSE {
		if err := r.waitRegistered(ctx, deadline, logw); err != nil {
			k.stop()
			return nil, err
		}
	}
	return k, nil
}

// next is the child's next line, or an error at ctx's end, the deadline or
// the end of its output.
func (p *childProc) next(ctx context.Context, deadline time.Time) (string, error) {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case line, ok := <-p.lines:
		if !ok {
			return "", errors.New("the child ended")
		}
		return line, nil
	case <-ctx.Done():
		return "", ctx.Err()
	case <-t.C:
		return "", errors.New("timed out")
	}
}

// published tells every child how many messages each channel got, and
// waits until all have drained; it returns the deliveries they received.
func (k *children) published(ctx context.Context) (int64, error) {
	counts := make([]string, len(k.r.perChannel))
	for i := range k.r.perChannel {
		counts[i] = strconv.FormatInt(k.r.perChannel[i].Load(), 10)
	}
	line := "published " + strings.Join(counts, " ") + "\n"
	var errs []error
	for i, p := range k.procs {
		if _, err := io.WriteString(p.in, line); err != nil {
			errs = append(errs, fmt.Errorf("child %d: %w", i, err))
		}
	}
	deadline := time.Now().Add(k.r.cfg.Drain + 30*time.Second)
	var received int64
	for i, p := range k.procs {
		line, err := p.next(ctx, deadline)
		var n int64
		if err == nil {
			_, err = fmt.Sscanf(line, "drained %d", &n)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("child %d did not drain: %q, %w", i, line, err))
		}
		received += n
	}
	return received, errors.Join(errs...)
}

// collect reads the children's reports into the runner's counters, as if
// their clients had run here, and ends them.
func (k *children) collect(ctx context.Context) error {
	var errs []error
	r := k.r
	r.expected.Store(0)
	for i, p := range k.procs {
		line, err := p.next(ctx, time.Now().Add(30*time.Second))
		var rep struct {
			report
			Hists childHists `json:"hists"`
		}
		if err == nil {
			err = json.Unmarshal([]byte(line), &rep)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("child %d report: %w", i, err))
			continue
		}
		r.expected.Add(rep.Expected)
		r.received.Add(rep.Received)
		r.clocks.kernel.Add(rep.KernelStamped)
		r.clocks.read.Add(rep.Received - rep.KernelStamped)
		r.dups.Add(rep.Duplicates)
		r.overflowLost.Add(rep.OverflowLost)
		r.polls.Add(rep.Polls)
		r.pollErrors.Add(rep.PollErrors)
		if rep.FirstError != "" {
			r.fail(fmt.Errorf("child %d: %s", i, rep.FirstError))
		}
		r.latency.merge(rep.Hists.Latency)
		r.delivery.merge(rep.Hists.Delivery)
	}
	k.stop()
	return errors.Join(errs...)
}

// stop closes every child's input, which ends it, and waits (the command's
// WaitDelay kills one that lingers).
func (k *children) stop() {
	var wg sync.WaitGroup
	for _, p := range k.procs {
		_ = p.in.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.cmd.Wait()
		}()
	}
	wg.Wait()
	k.procs = nil
}

// childControl is a child's side of the line protocol.
type childControl struct {
	out   io.Writer
	lines chan string
}

func newChildControl(in io.Reader, out io.Writer) *childControl {
	cc := &childControl{out: out, lines: make(chan string, 1)}
	go func() {
		defer close(cc.lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			cc.lines <- sc.Text()
		}
	}()
	return cc
}

// awaitPublished tells the parent that the clients are registered, then
// waits for what was published and counts what the clients are owed. It
// reports how the wait ended, as publish does.
func (r *runner) awaitPublished(ctx context.Context, deadline time.Time) string {
	cc := r.cfg.control
	fmt.Fprintln(cc.out, "ready")
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return "signal"
	case <-t.C:
		return "duration"
	case line, ok := <-cc.lines:
		if !ok {
			return "signal" // the parent is gone
		}
		f := strings.Fields(strings.TrimPrefix(line, "published"))
		for k := 0; k < len(f) && k < len(r.on); k++ {
			n, _ := strconv.ParseInt(f[k], 10, 64)
			r.published.Add(n)
			r.expected.Add(n * r.on[k])
		}
		return "messages"
	}
}
