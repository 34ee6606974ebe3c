// Command stardust-soak churns a Stardust server on this machine for
// minutes: Bayeux clients that handshake, subscribe, connect, publish,
// receive and disconnect (one in ten walks away instead), and Stardust API
// clients that publish and poll once under a new stream id and are never
// seen again. It samples the server's resident memory (--pid) and reports
// whether it stayed flat: the mean of the last fifth of the run against the
// mean of the second fifth (after warm-up), failing beyond --max-growth.
//
// It only talks to loopback addresses and stops by itself after --duration
// (at most 10m). make soak runs it against a server started with
// cmd/stardust-soak/soak.toml (address limits off: every client is 127.0.0.1).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stardust-go/stardust/internal/procstat"
)

const maxDuration = 10 * time.Minute

type config struct {
	URL       string
	Duration  time.Duration
	Workers   int
	PID       int
	Sample    time.Duration
	MaxGrowth float64
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stardust-soak:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep := run(ctx, cfg)
	rep.write(os.Stdout)
	if !rep.ok(cfg.MaxGrowth) {
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("stardust-soak", flag.ContinueOnError)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:5798/comet", "base `URL` of the server (loopback only)")
	fs.DurationVar(&c.Duration, "duration", 3*time.Minute, "how long to churn (at most 10m)")
	fs.IntVar(&c.Workers, "workers", 16, "concurrent clients")
	fs.IntVar(&c.PID, "pid", 0, "server process `id`, whose resident memory is sampled")
	fs.DurationVar(&c.Sample, "sample", 5*time.Second, "how often to sample")
	fs.Float64Var(&c.MaxGrowth, "max-growth", 20, "fail if resident memory grows more than this `percent`")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return c, fmt.Errorf("--url: %v", err)
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return c, fmt.Errorf("--url %s: only loopback addresses", c.URL)
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		return c, fmt.Errorf("--duration %s: want up to %s", c.Duration, maxDuration)
	}
	if c.Workers <= 0 || c.Workers > 1000 {
		return c, fmt.Errorf("--workers %d: want 1 to 1000", c.Workers)
	}
	if c.PID <= 0 {
		return c, errors.New("--pid is required: the server's process id")
	}
	c.URL = strings.TrimRight(c.URL, "/")
	return c, nil
}

type sample struct {
	At      time.Duration
	RSSKB   int64
	Clients int
}

type report struct {
	Duration              time.Duration
	Cycles, Errors, Recvd atomic.Int64
	Samples               []sample
}

func run(ctx context.Context, cfg config) *report {
	rep := &report{Duration: cfg.Duration}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				var err error
				if w%2 == 0 {
					err = bayeuxCycle(ctx, cfg.URL, w, i, rep)
				} else {
					err = stardustCycle(ctx, cfg.URL, w, i)
				}
				if err != nil && ctx.Err() == nil {
					rep.Errors.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
				rep.Cycles.Add(1)
			}
		}()
	}
	t := time.NewTicker(cfg.Sample)
	defer t.Stop()
	for {
		rss, _, err := procstat.ReadRSS(cfg.PID)
		if err == nil {
			rep.Samples = append(rep.Samples, sample{At: time.Since(start).Round(time.Second), RSSKB: rss, Clients: clients(cfg.URL)})
		}
		select {
		case <-t.C:
			continue
		case <-ctx.Done():
		}
		break
	}
	wg.Wait()
	return rep
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// clients reads the server's session count from its info page.
func clients(base string) int {
	resp, err := httpClient.Get(base + "/")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var info struct{ Clients int }
	if json.NewDecoder(resp.Body).Decode(&info) != nil {
		return -1
	}
	return info.Clients
}

// bayeuxCycle is one Bayeux client's life in a browser of its own.
func bayeuxCycle(ctx context.Context, base string, w, i int, rep *report) error {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	post := func(msgs ...map[string]any) ([]map[string]any, error) {
		body, _ := json.Marshal(msgs)
		req, _ := http.NewRequestWithContext(ctx, "POST", base+"/bayeux", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		var out []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || len(out) == 0 {
			return nil, fmt.Errorf("bad reply: %v", err)
		}
		for _, r := range out {
			if r["successful"] == false {
				return out, fmt.Errorf("%v", r["error"])
			}
		}
		return out, nil
	}
	r, err := post(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}})
	if err != nil {
		return err
	}
	id := r[0]["clientId"]
	ch := fmt.Sprintf("/stardust/soak%d", w%4)
	if _, err := post(map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": ch},
		map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling", "advice": map[string]any{"timeout": 0}}); err != nil {
		return err
	}
	if _, err := post(map[string]any{"channel": ch, "clientId": id, "data": map[string]any{"w": w, "i": i, "pad": strings.Repeat("x", 200)}}); err != nil {
		return err
	}
	r, err = post(map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling", "advice": map[string]any{"timeout": 0}})
	if err != nil {
		return err
	}
	rep.Recvd.Add(int64(len(r) - 1))
	if i%10 == 9 {
		return nil // walks away: the session expires
	}
	_, err = post(map[string]any{"channel": "/meta/disconnect", "clientId": id})
	return err
}

// stardustCycle publishes through the Stardust API and polls once under a
// new stream id that is never used again.
func stardustCycle(ctx context.Context, base string, w, i int) error {
	ch := fmt.Sprintf("soak%d", w%4)
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/channel/"+ch,
		strings.NewReader(url.Values{"m": {fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("publish: %s", resp.Status)
	}
	req, _ = http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/channel/%s/stream/%d.%d.%d", base, ch, w, i, time.Now().UnixNano()), nil)
	resp, err = httpClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("poll: %s", resp.Status)
	}
	return nil
}

// window is the mean resident memory of the samples between fractions
// from and to of the run.
func (rep *report) window(from, to float64) int64 {
	var sum, n int64
	for _, s := range rep.Samples {
		f := float64(s.At) / float64(rep.Duration)
		if f >= from && f <= to {
			sum += s.RSSKB
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / n
}

func (rep *report) growth() float64 {
	base, end := rep.window(0.2, 0.4), rep.window(0.8, 1.0)
	if base == 0 {
		return 0
	}
	return 100 * float64(end-base) / float64(base)
}

func (rep *report) ok(maxGrowth float64) bool {
	return len(rep.Samples) >= 5 && rep.growth() <= maxGrowth && rep.Errors.Load() == 0
}

func (rep *report) write(w io.Writer) {
	fmt.Fprintf(w, "soak: %s, %d client cycles, %d messages received, %d errors\n",
		rep.Duration, rep.Cycles.Load(), rep.Recvd.Load(), rep.Errors.Load())
	fmt.Fprintf(w, "%8s %10s %8s\n", "time", "rss_kB", "clients")
	for _, s := range rep.Samples {
		fmt.Fprintf(w, "%8s %10d %8d\n", s.At, s.RSSKB, s.Clients)
	}
	fmt.Fprintf(w, "resident memory: %d kB after warm-up (20-40%%), %d kB at the end (80-100%%): %+.1f%%\n",
		rep.window(0.2, 0.4), rep.window(0.8, 1.0), rep.growth())
}
