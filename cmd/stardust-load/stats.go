package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/stardust-go/stardust/internal/procstat"
)

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
func readRSS(pid int) (rss, hwm int64, err error) { return procstat.ReadRSS(pid) }

// cpuReport is the server's CPU time from the start of publishing to the
// end of the drain, and what it comes to per delivery received.
type cpuReport struct {
	PID            int     `json:"pid"`
	CPUSec         float64 `json:"cpu_s"`    // user + system
	WindowSec      float64 `json:"window_s"` // wall time measured over
	Cores          float64 `json:"cores"`    // CPUSec / WindowSec
	Deliveries     int64   `json:"deliveries"`
	USPerDelivery  float64 `json:"us_per_delivery"`
	DeliveriesPerS float64 `json:"deliveries_per_cpu_s"`
	Error          string  `json:"error,omitempty"`
}

// cpuSampler reads a process's CPU time at the start and end of a window.
// A nil sampler reports nil.
type cpuSampler struct {
	pid   int
	start time.Time
	cpu0  float64
	err   error
}

func newCPUSampler(pid int) *cpuSampler {
	s := &cpuSampler{pid: pid, start: time.Now()}
	s.cpu0, s.err = processCPU(pid)
	return s
}

// end closes the window; deliveries is what the run received in it.
func (s *cpuSampler) end(deliveries int64) *cpuReport {
	if s == nil {
		return nil
	}
	rep := &cpuReport{PID: s.pid, WindowSec: round3(time.Since(s.start).Seconds()), Deliveries: deliveries}
	cpu1, err := processCPU(s.pid)
	if err = errors.Join(s.err, err); err != nil {
		rep.Error = err.Error()
		return rep
	}
	rep.CPUSec = round3(cpu1 - s.cpu0)
	if rep.WindowSec > 0 {
		rep.Cores = round3(rep.CPUSec / rep.WindowSec)
	}
	if deliveries > 0 {
		rep.USPerDelivery = round3(rep.CPUSec * 1e6 / float64(deliveries))
	}
	if rep.CPUSec > 0 {
		rep.DeliveriesPerS = math.Round(float64(deliveries) / rep.CPUSec)
	}
	return rep
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// progress writes a progress line to w, rewritten in place every second,
// while the run publishes and drains, when cfg.Progress is set.
func (r *runner) progress(ctx context.Context, w io.Writer) {
	if !r.cfg.Progress {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			fmt.Fprintln(w)
			return
		case <-t.C:
			fmt.Fprintf(w, "\r%s", r.progressLine(time.Since(start)))
		}
	}
}

func (r *runner) progressLine(elapsed time.Duration) string {
	lat := r.latency.percentiles()
	return fmt.Sprintf("stardust-load: %3.0fs  published %d  received %d of %d  errors %d+%d  latency p50 %.1fms p99 %.1fms   ",
		elapsed.Seconds(), r.published.Load(), r.received.Load(), r.expected.Load(),
		r.pubErrors.Load(), r.pollErrors.Load(), lat.P50, lat.P99)
}

func (rep *report) writeText(w io.Writer) {
	rate := "unpaced"
	if rep.RateTarget > 0 {
		rate = fmt.Sprintf("%g msg/s", rep.RateTarget)
	}
	fmt.Fprintf(w, "stardust-load: %s mode, %d clients on %d channels, %d publishers (%s) at %s, %s\n",
		rep.Mode, rep.Clients, rep.Channels, rep.Publishers, rep.Publish, rate, rep.URL)
	fmt.Fprintf(w, "set-up      %.2fs until every client was registered\n", rep.SetupSec)
	fmt.Fprintf(w, "published   %d messages in %.2fs (%.1f msg/s), %d publish errors; stopped by %s\n",
		rep.Published, rep.PublishSec, rep.PublishRate, rep.PublishErrors, rep.StoppedBy)
	counted := fmt.Sprintf("server counted %d recipients", rep.Recipients)
	if rep.Publish != "stardust" {
		counted = "published over " + rep.Publish
	}
	fmt.Fprintf(w, "deliveries  expected %d, received %d (%.0f/s), lost %d, duplicates %d; %s\n",
		rep.Expected, rep.Received, rep.DeliveryRate, rep.Lost, rep.Duplicates, counted)
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
	fmt.Fprintf(w, "arrival     %s\n", arrivalNote(rep.Arrival, rep.KernelStamped, rep.Received))
	pc(" server→cl", rep.Delivery)
	pc(" publish rq", rep.Request)
	switch rep.Mode {
	case modeSSE, modeUniSSE, modeUniWS:
		fmt.Fprintf(w, "streams     %d ended early, %d errors\n", rep.Polls, rep.PollErrors)
	case modeWebSocket:
		fmt.Fprintf(w, "connects    %d answered or sockets ended, %d errors\n", rep.Polls, rep.PollErrors)
	default:
		fmt.Fprintf(w, "polls       %d answered, %d errors\n", rep.Polls, rep.PollErrors)
	}
	if rep.FirstError != "" {
		fmt.Fprintf(w, "first error %s\n", rep.FirstError)
	}
	if r := rep.RSS; r != nil {
		mib := func(kb int64) float64 { return float64(kb) / 1024 }
		fmt.Fprintf(w, "server RSS  pid %d: before %.1f MiB, clients connected %.1f MiB (%.1f KiB per client), end %.1f MiB, peak %.1f MiB, VmHWM %.1f MiB (%.1f KiB per client)\n",
			r.PID, mib(r.BeforeKB), mib(r.ConnectedKB), r.PerClientKB, mib(r.EndKB), mib(r.PeakKB), mib(r.HWMKB), r.PeakPerClientKB)
	}
	if c := rep.ServerCPU; c != nil {
		if c.Error != "" {
			fmt.Fprintf(w, "server CPU  pid %d: %s\n", c.PID, c.Error)
		} else {
			fmt.Fprintf(w, "server CPU  pid %d: %.2fs in %.2fs (%.2f cores), %.1f µs per delivery (%d deliveries)\n",
				c.PID, c.CPUSec, c.WindowSec, c.Cores, c.USPerDelivery, c.Deliveries)
		}
	}
	fmt.Fprintf(w, "tool CPU    %.2fs\n", rep.ToolCPU)
}

// arrivalNote says which clock stamped the arrivals that latencies end at.
func arrivalNote(clock string, kernel, received int64) string {
	switch clock {
	case clockKernel:
		return "kernel: latencies end at the kernel's receive time of the message's bytes"
	case clockRead:
		return "read: latencies end when the tool had read the message (no kernel receive timestamps)"
	case clockMixed:
		return fmt.Sprintf("mixed: %d of %d deliveries stamped by the kernel, the others when read", kernel, received)
	}
	return "none: nothing received"
}
