// Command stardust-compare runs the load table of issues 8 and 20 against
// Faye's Node server, Centrifugo, Stardust and the net/http floor in one
// sitting, and prints it:
// for each row and server, the server's CPU time per delivery, latency p50
// and p99, resident memory per client, and what was lost. `make compare`
// builds everything and runs it.
//
// Each server runs alone, fresh for every row, pinned to one CPU with taskset
// (GOMAXPROCS=1 for the Go ones); the load tool is pinned to another. Every
// row is bounded by --duration, every server by a deadline; it only ever
// listens and connects on 127.0.0.1 (the load tool's children of the
// 18,000-client rows connect from 127.0.0.2 and up).
//
// Centrifugo runs when --centrifugo names its binary (`make compare` builds
// it from the Go module proxy into a cache folder); without it, its runs are
// listed as skipped, loudly, and the rest goes on. Its configuration is
// written here: the unidirectional WebSocket and SSE transports on, anonymous
// connections allowed to subscribe to the channels their connect request
// names, the server HTTP API behind a key, usage statistics off, listening on
// 127.0.0.1 only.
//
//	stardust-compare --stardust bin/stardust --floor bin/stardust-floor \
//	    --load bin/stardust-load --faye integration/clients/faye-server.js --duration 20s
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stardust-go/stardust/internal/centrifugo"
	"github.com/stardust-go/stardust/internal/connlimit"
)

// A server kind: how to start it and which load modes it takes.
const (
	faye        = "Faye"
	stardustBx  = "Stardust Bayeux"
	stardustAPI = "Stardust API"
	stardustWS  = "Stardust"
	centrifugoT = "Centrifugo"
	// Stardust API with server.hold_on_connection = false: long polls held
	// in Go's HTTP server, as before that option (CPU against memory).
	stardustAPINet = "Stardust API (held in net/http)"
	floorTarget    = "floor"
	maxDuration    = 2 * time.Minute
	bigConnections = 19_500 // server.max_connections of the Stardust targets
	fileSlack      = 200
	serverDeadln   = 5 * time.Minute // a server is killed after this, whatever happens
)

// row is one line of the table: a load, run against several targets.
type row struct {
	Key     string
	Title   string
	Clients int
	Args    []string // load tool flags beside --clients, --duration and the target
	Targets []target
	// Big rows (18,000 clients, minutes of set-up) run only when --rows
	// names them.
	Big bool
}

// target is one server under one transport.
type target struct {
	Name   string // faye, stardustBx, ...
	Server string // faye, stardust, floor
	Mode   string // load tool --mode
}

func rows() []row {
	fayeLP := target{faye, "faye", "bayeux"}
	sdLP := target{stardustBx, "stardust", "bayeux"}
	sdAPI := target{stardustAPI, "stardust", "poll"}
	sdAPINet := target{stardustAPINet, "stardust-nethold", "poll"}
	fl := target{floorTarget, "floor", "poll"}
	fayeWS := target{faye, "faye", "websocket"}
	sdWS := target{stardustWS, "stardust", "websocket"}
	// The WebSocket floor writes each message, encoded once, as one frame
	// to each socket: one write per delivery and nothing else.
	flWS := target{floorTarget, "floor", "websocket"}
	cfWS := target{centrifugoT, "centrifugo", "uni_websocket"}
	cfSSE := target{centrifugoT, "centrifugo", "uni_sse"}
	sdSSE := target{stardustWS, "stardust", "sse"}
	// One message to 18,000 held clients: the load tool's subscribers in
	// three processes (one may open 20,000 files here), a minute to deliver.
	big := []string{"--messages", "1", "--publishers", "1", "--procs", "3", "--ramp", "1000", "--drain", "60s", "--setup-timeout", "2m"}
	return []row{
		{"lp1000", "Bayeux long-polling, 1,000 subscribers, 100 msg/s", 1000,
			[]string{"--rate", "100", "--publishers", "40"}, []target{fayeLP, sdLP}, false},
		{"api1000", "Stardust API long-polling, 1,000 subscribers, 100 msg/s", 1000,
			[]string{"--rate", "100", "--publishers", "40"}, []target{sdAPI, fl}, false},
		{"held5000", "5,000 held long-poll clients, 1 msg/s fan-out", 5000,
			[]string{"--rate", "1", "--publishers", "4"}, []target{fayeLP, sdLP, sdAPI, sdAPINet, fl}, false},
		// A light load: how soon an idle server answers (issue 20's "100
		// held, 2 msg/s").
		{"held100", "100 held long-poll clients, 2 msg/s", 100,
			[]string{"--rate", "2", "--publishers", "1"}, []target{fayeLP, sdLP, sdAPI, fl}, false},
		{"ws1000", "WebSocket, 1,000 subscribers, 100 msg/s", 1000,
			[]string{"--rate", "100", "--publishers", "40"}, []target{fayeWS, cfWS, sdWS, flWS}, false},
		{"ws5000", "WebSocket, 5,000 subscribers, 2 msg/s", 5000,
			[]string{"--rate", "2", "--publishers", "4"}, []target{fayeWS, cfWS, sdWS, flWS}, false},
		{"sse1000", "SSE, 1,000 subscribers, 100 msg/s", 1000,
			[]string{"--rate", "100", "--publishers", "40"}, []target{cfSSE, sdSSE}, false},
		{"sse5000", "SSE, 5,000 subscribers, 1 msg/s", 5000,
			[]string{"--rate", "1", "--publishers", "4"}, []target{cfSSE, sdSSE}, false},
		{"idle10000", "10,000 idle held long-poll clients, then one message to all", 10000,
			[]string{"--messages", "1", "--publishers", "1", "--drain", "30s"}, []target{fayeLP, sdLP, sdAPI, sdAPINet, fl}, false},
		{"big18000poll", "18,000 held long polls, one message to all", 18000, big, []target{sdAPI, fl}, true},
		{"big18000sse", "18,000 held SSE streams, one message to all", 18000, big, []target{cfSSE, sdSSE}, true},
		{"big18000ws", "18,000 held WebSockets, one message to all", 18000, big, []target{cfWS, sdWS}, true},
	}
}

type options struct {
	Stardust, Floor, Load, Faye, Node string
	Centrifugo                        string
	Duration                          time.Duration
	Rows                              string
	Rounds                            int
	ServerCPU, ToolCPU                int
	Port                              int
	Out                               string
	Work                              string
	From                              string
	Profile                           string

	loadAvg string // at the start
}

// loadAverage is the machine's 1-minute load average, which says how much
// else ran beside the benchmark.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stardust-compare:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	o.loadAvg = loadAverage()
	var results []result
	if o.From != "" {
		results, err = readResults(o.From)
		for _, r := range results {
			o.Rounds = max(o.Rounds, r.Round)
		}
		if err == nil {
			writeTable(os.Stdout, o, results)
			return
		}
		fmt.Fprintln(os.Stderr, "stardust-compare:", err)
		os.Exit(1)
	}
	results, err = compare(ctx, o, os.Stderr)
	if len(results) > 0 {
		writeTable(os.Stdout, o, results)
	}
	if o.Out != "" && len(results) > 0 {
		b, _ := json.MarshalIndent(results, "", "  ")
		if werr := os.WriteFile(o.Out, b, 0o644); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stardust-compare:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("stardust-compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Stardust, "stardust", "bin/stardust", "Stardust server `binary`")
	fs.StringVar(&o.Floor, "floor", "bin/stardust-floor", "floor server `binary`")
	fs.StringVar(&o.Load, "load", "bin/stardust-load", "load tool `binary`")
	fs.StringVar(&o.Faye, "faye", "integration/clients/faye-server.js", "Faye server `script` (needs npm ci in its directory)")
	fs.StringVar(&o.Node, "node", "node", "Node.js `program`")
	fs.StringVar(&o.Centrifugo, "centrifugo", centrifugo.Binary(), "Centrifugo "+centrifugo.Version+" server `binary` (default: where make compare builds it);\nits runs are skipped when it is missing")
	fs.DurationVar(&o.Duration, "duration", 20*time.Second, "publishing time of each row (at most 2m)")
	fs.StringVar(&o.Rows, "rows", "", "only rows whose key matches this `regexp` (lp1000 api1000 held5000 held100 ws1000 ws5000 sse1000\nsse5000 idle10000; and big18000poll big18000sse big18000ws, which run only when named: `big`)")
	fs.IntVar(&o.Rounds, "rounds", 1, "run the whole table this many times (1 to 5); the ratios use the median")
	fs.IntVar(&o.ServerCPU, "server-cpu", 0, "CPU the servers are pinned to")
	fs.IntVar(&o.ToolCPU, "tool-cpu", 1, "CPU the load tool is pinned to")
	fs.IntVar(&o.Port, "port", 5850, "loopback `port` the servers listen on, one at a time")
	fs.StringVar(&o.Out, "json", "", "also write every report to this `file`")
	fs.StringVar(&o.From, "from", "", "run nothing: print the table of the reports a --json run wrote to this `file`")
	fs.StringVar(&o.Work, "work", "", "`directory` for server logs and configuration (default: a new temporary one)")
	fs.StringVar(&o.Profile, "profile", "", "write a CPU profile of each Stardust run's publishing (from its debug.pprof listener\non --port + 1) to this `directory`; profiling costs some CPU: measure without it")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if o.Duration <= 0 || o.Duration > maxDuration {
		return o, fmt.Errorf("--duration %s: want more than 0 and at most %s", o.Duration, maxDuration)
	}
	if _, err := regexp.Compile(o.Rows); err != nil {
		return o, fmt.Errorf("--rows: %v", err)
	}
	if o.Rounds < 1 || o.Rounds > 5 {
		return o, fmt.Errorf("--rounds %d: want 1 to 5", o.Rounds)
	}
	if o.Port < 1024 || o.Port > 65535 {
		return o, fmt.Errorf("--port %d: want 1024 to 65535", o.Port)
	}
	return o, nil
}

// result is one row against one target: the load tool's JSON report.
type result struct {
	Row    string          `json:"row"`
	Round  int             `json:"round"`
	Title  string          `json:"title"`
	Target string          `json:"target"`
	Mode   string          `json:"mode"`
	Report json.RawMessage `json:"report,omitempty"`
	Error  string          `json:"error,omitempty"`
	Exit   int             `json:"exit"`
}

// loadReport is the part of the load tool's report the table shows.
type loadReport struct {
	Mode        string  `json:"mode"`
	Published   int64   `json:"published"`
	PublishRate float64 `json:"publish_rate"`
	Polls       int64   `json:"polls"`
	Expected    int64   `json:"expected"`
	Received    int64   `json:"received"`
	Lost        int64   `json:"lost"`
	Duplicates  int64   `json:"duplicates"`
	PubErrors   int64   `json:"publish_errors"`
	PollErrors  int64   `json:"poll_errors"`
	FirstError  string  `json:"first_error"`
	Latency     struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"latency_ms"`
	RSS *struct {
		PerClientKB     float64 `json:"per_client_kb"`
		PeakPerClientKB float64 `json:"peak_per_client_kb"`
	} `json:"rss"`
	CPU *struct {
		CPUSec        float64 `json:"cpu_s"`
		USPerDelivery float64 `json:"us_per_delivery"`
	} `json:"server_cpu"`
	// ToolCPU is the load tool's own CPU time (s): per delivery, how much
	// of its one CPU each delivery takes (toolPerDelivery).
	ToolCPU float64 `json:"tool_cpu_s"`
	// Arrival is the clock the latencies end at: kernel (the kernel's
	// receive time of a message's bytes), read (when the load tool had
	// read it), mixed; "" from a load tool older than the field (read).
	Arrival string `json:"arrival"`
}

// toolPerDelivery is the load tool's CPU per delivery received (µs); 0
// when not reported.
func (lr *loadReport) toolPerDelivery() float64 {
	if lr.ToolCPU <= 0 || lr.Received <= 0 {
		return 0
	}
	return lr.ToolCPU * 1e6 / float64(lr.Received)
}

// median of v, 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// roundTag names the round when there are several.
func (r *result) roundTag(rounds int) string {
	if rounds <= 1 {
		return ""
	}
	return fmt.Sprintf(" #%d", r.Round)
}

// perAnswer is how many messages a long-poll answer carried on average
// (batching); "-" for WebSocket and SSE, where messages are pushed.
func (lr *loadReport) perAnswer() string {
	if lr.Mode != "poll" && lr.Mode != "bayeux" || lr.Polls == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(lr.Received)/float64(lr.Polls))
}

// cpuPerAnswer is the server's CPU time per long-poll answer, which batching
// does not move; "-" for pushed transports.
func (lr *loadReport) cpuPerAnswer() string {
	if lr.Mode != "poll" && lr.Mode != "bayeux" || lr.Polls == 0 || lr.CPU == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", lr.CPU.CPUSec*1e6/float64(lr.Polls))
}

func (r *result) load() *loadReport {
	var lr loadReport
	if len(r.Report) == 0 || json.Unmarshal(r.Report, &lr) != nil {
		return nil
	}
	return &lr
}

// readResults reads what --json wrote.
func readResults(name string) ([]result, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var results []result
	if err := json.Unmarshal(b, &results); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return results, nil
}

// compare checks what it needs, then runs every selected row.
func compare(ctx context.Context, o options, logw io.Writer) ([]result, error) {
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil, errors.New("taskset not found (Debian package util-linux)")
	}
	for _, f := range []string{o.Stardust, o.Floor, o.Load, o.Faye} {
		if _, err := os.Stat(f); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(o.Faye), "node_modules", "faye")); err != nil {
		return nil, fmt.Errorf("faye is not installed beside %s: run npm ci there (make node-deps)", o.Faye)
	}
	re := regexp.MustCompile(o.Rows)
	var selected []row
	most := 0
	for _, rw := range rows() {
		if re.MatchString(rw.Key) && (!rw.Big || o.Rows != "") {
			selected = append(selected, rw)
			most = max(most, rw.Clients)
		}
	}
	if len(selected) == 0 {
		return nil, fmt.Errorf("--rows %q matches no row", o.Rows)
	}
	if lim := connlimit.DescriptorLimit(); lim > 0 && lim < most+fileSlack {
		return nil, fmt.Errorf("open files limit %d is below the %d the largest row needs: run `ulimit -n %d` first", lim, most+fileSlack, most+fileSlack)
	}
	if o.Centrifugo == "" {
		fmt.Fprintln(logw, "stardust-compare: *** no Centrifugo binary given (--centrifugo): its runs are SKIPPED ***")
	} else if _, err := os.Stat(o.Centrifugo); err != nil {
		fmt.Fprintf(logw, "stardust-compare: *** Centrifugo not found (%v): its runs are SKIPPED ***\n", err)
		o.Centrifugo = ""
	}
	work := o.Work
	if work == "" {
		dir, err := os.MkdirTemp("", "stardust-compare-")
		if err != nil {
			return nil, err
		}
		work = dir
	}
	// Stardust with its defaults, except the per-address limit of held
	// Bayeux connections: every load client comes from 127.0.0.1.
	conf := filepath.Join(work, "stardust.toml")
	limits := "[comet]\naddress_max_sessions = -1\naddress_session_rate = -1\naddress_session_burst = -1\n" +
		"address_channel_rate = -1\naddress_channel_burst = -1\n\n[bayeux]\nclient_max_connections = 100000\n"
	// server.max_connections: by default Stardust takes 90 % of its open
	// files less 64 (17,936 of 20,000), and the big rows hold 18,000.
	maxConns := fmt.Sprintf("[server]\nmax_connections = %d\n", bigConnections)
	if o.Profile != "" {
		if err := os.MkdirAll(o.Profile, 0o755); err != nil {
			return nil, err
		}
		limits += fmt.Sprintf("\n[debug]\npprof = \"127.0.0.1:%d\"\n", o.Port+1)
	}
	if err := os.WriteFile(conf, []byte(maxConns+"\n"+limits), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(netholdConf(conf), []byte(maxConns+"hold_on_connection = false\n\n"+limits), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(logw, "stardust-compare: %d rows, %s each, servers on CPU %d, load tool on CPU %d; logs in %s\n",
		len(selected), o.Duration, o.ServerCPU, o.ToolCPU, work)
	var results []result
	// Round after round, each row's targets one after the other, so that
	// what else runs on the machine falls on all of them alike.
	for round := 1; round <= o.Rounds; round++ {
		for _, rw := range selected {
			for _, tg := range rw.Targets {
				if ctx.Err() != nil {
					return results, ctx.Err()
				}
				fmt.Fprintf(logw, "stardust-compare: round %d of %d, %s: %s (%s)\n", round, o.Rounds, rw.Key, tg.Name, tg.Mode)
				res := runOne(ctx, o, work, conf, rw, tg)
				res.Round = round
				if lr := res.load(); lr != nil {
					fmt.Fprintf(logw, "  %s\n", cell(lr))
				} else {
					fmt.Fprintf(logw, "  failed: %s\n", res.Error)
				}
				results = append(results, res)
			}
		}
	}
	return results, nil
}

func runOne(ctx context.Context, o options, work, conf string, rw row, tg target) result {
	res := result{Row: rw.Key, Title: rw.Title, Target: tg.Name, Mode: tg.Mode}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port))
	pin := []string{"taskset", "-c", strconv.Itoa(o.ServerCPU)}
	var argv []string
	var env []string
	var url, bayeux string
	switch tg.Server {
	case "faye":
		argv = append(pin, o.Node, o.Faye, "--bench", "--port", strconv.Itoa(o.Port), "--timeout-s", "30", "--max-lifetime-s", "900")
		bayeux = "http://" + addr + "/comet/bayeux"
		url = "http://" + addr + "/comet"
	case "stardust", "stardust-nethold":
		if tg.Server == "stardust-nethold" {
			conf = netholdConf(conf)
		}
		argv = append(pin, o.Stardust, "--config", conf, "--listen", addr)
		env = []string{"GOMAXPROCS=1"}
		url = "http://" + addr + "/comet"
	case "centrifugo":
		if o.Centrifugo == "" {
			res.Error = "skipped: no Centrifugo binary (make compare builds it; see its output)"
			return res
		}
		cfConf := filepath.Join(work, "centrifugo.json")
		if err := os.WriteFile(cfConf, centrifugo.Config(o.Port), 0o644); err != nil {
			res.Error = err.Error()
			return res
		}
		argv = append(pin, o.Centrifugo, "--config", cfConf)
		env = []string{"GOMAXPROCS=1"}
		url = "http://" + addr
	case "floor":
		argv = append(pin, o.Floor, "--listen", addr)
		env = []string{"GOMAXPROCS=1"}
		url = "http://" + addr + "/comet"
	}
	logName := filepath.Join(work, fmt.Sprintf("%s-%s-%s.log", rw.Key, tg.Server, tg.Mode))
	srv, err := startServer(ctx, argv, env, logName, addr)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer srv.stop()

	args := []string{"taskset", "-c", strconv.Itoa(o.ToolCPU), o.Load, "--json", "--url", url,
		"--mode", tg.Mode, "--clients", strconv.Itoa(rw.Clients), "--channels", "1",
		"--duration", o.Duration.String(), "--pid", strconv.Itoa(srv.pid())}
	if bayeux != "" {
		args = append(args, "--bayeux", bayeux)
	}
	if tg.Server == "centrifugo" {
		args = append(args, "--api-key", centrifugo.APIKey)
	}
	args = append(args, rw.Args...)
	lctx, cancel := context.WithTimeout(ctx, o.Duration+4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(lctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	profiled := make(chan struct{})
	if o.Profile != "" && strings.HasPrefix(tg.Server, "stardust") {
		// The load tool says "publishing" when every client is in: profile
		// from there for the publishing time.
		name := filepath.Join(o.Profile, fmt.Sprintf("%s-%s-%s.pprof", rw.Key, tg.Server, tg.Mode))
		cmd.Stderr = &onLine{w: &stderr, marker: "; publishing", f: func() {
			go func() { defer close(profiled); fetchProfile(lctx, o.Port+1, o.Duration, name) }()
		}}
	} else {
		close(profiled)
	}
	err = cmd.Run()
	select {
	case <-profiled:
	case <-time.After(o.Duration + 30*time.Second): // the load tool failed before publishing
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.Exit = ee.ExitCode()
	}
	if json.Valid(stdout.Bytes()) && stdout.Len() > 0 {
		res.Report = json.RawMessage(bytes.TrimSpace(stdout.Bytes()))
	}
	if err != nil && res.Exit != 3 { // 3: losses, which the report shows
		res.Error = fmt.Sprintf("load tool: %v: %s", err, lastLine(stderr.String()))
	}
	return res
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// server is a started server process.
type server struct {
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// startServer starts argv (taskset execs the server in place, so the pid is
// the server's) with its output in logName, and waits until addr accepts
// connections.
func startServer(ctx context.Context, argv, env []string, logName, addr string) (*server, error) {
	lf, err := os.Create(logName)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, serverDeadln)
	cmd := exec.CommandContext(sctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		lf.Close()
		return nil, err
	}
	s := &server{cmd: cmd, log: lf, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		cancel()
		close(s.done)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			lf.Close()
			return nil, fmt.Errorf("%s exited at start; see %s", argv[3], logName)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s not listening on %s after 15s; see %s", argv[3], addr, logName)
		}
	}
}

// stop ends the server with SIGTERM, then SIGKILL after 5 s, and waits.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.log.Close()
}

// cell is one result in a line: CPU per delivery, latency, memory, losses.
func cell(lr *loadReport) string {
	var b strings.Builder
	if lr.CPU != nil {
		fmt.Fprintf(&b, "%.1f µs/delivery", lr.CPU.USPerDelivery)
	}
	fmt.Fprintf(&b, ", p50 %.1f ms, p99 %.1f ms, last %.1f ms", lr.Latency.P50, lr.Latency.P99, lr.Latency.Max)
	if lr.RSS != nil {
		fmt.Fprintf(&b, ", %.1f KiB/client idle, %.1f KiB peak", lr.RSS.PerClientKB, lr.RSS.PeakPerClientKB)
	}
	fmt.Fprintf(&b, ", %.1f msg/s, %d of %d received", lr.PublishRate, lr.Received, lr.Expected)
	if lr.Lost > 0 || lr.Duplicates > 0 {
		fmt.Fprintf(&b, ", LOST %d, duplicates %d", lr.Lost, lr.Duplicates)
	}
	if lr.PubErrors > 0 || lr.PollErrors > 0 {
		fmt.Fprintf(&b, ", errors %d publish %d poll (%s)", lr.PubErrors, lr.PollErrors, lr.FirstError)
	}
	return b.String()
}

// writeTable prints the results as a Markdown table, then the ratios of
// server CPU per delivery that the targets of issue 8 are stated in.
func writeTable(w io.Writer, o options, results []result) {
	if o.From != "" {
		fmt.Fprintf(w, "\nThe runs saved in %s (%d rounds)\n\n", o.From, o.Rounds)
	} else {
		fmt.Fprintf(w, "\n%d s per row, servers on CPU %d (GOMAXPROCS=1 for Go), load tool on CPU %d, %s, load average %s → %s\n\n",
			int(o.Duration.Seconds()), o.ServerCPU, o.ToolCPU, time.Now().UTC().Format("2006-01-02 15:04 MST"), o.loadAvg, loadAverage())
	}
	fmt.Fprintln(w, "| load (one channel) | server | µs server CPU per delivery | p50 / p99 / last latency (ms) | RSS per client idle / peak (KiB) | msg/s published | messages per answer | µs server CPU per answer | received / expected | lost, dup, errors |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, r := range results {
		lr := r.load()
		if lr == nil {
			fmt.Fprintf(w, "| %s | %s (%s)%s | failed: %s | | | | | | | |\n", r.Title, r.Target, r.Mode, r.roundTag(o.Rounds), r.Error)
			continue
		}
		cpu, rss := "", ""
		if lr.CPU != nil {
			cpu = fmt.Sprintf("%.1f", lr.CPU.USPerDelivery)
		}
		if lr.RSS != nil {
			rss = fmt.Sprintf("%.1f / %.1f", lr.RSS.PerClientKB, lr.RSS.PeakPerClientKB)
		}
		fmt.Fprintf(w, "| %s | %s (%s)%s | %s | %.1f / %.1f / %.0f | %s | %.1f | %s | %s | %d / %d | %d, %d, %d |\n",
			r.Title, r.Target, r.Mode, r.roundTag(o.Rounds), cpu, lr.Latency.P50, lr.Latency.P99, lr.Latency.Max, rss, lr.PublishRate,
			lr.perAnswer(), lr.cpuPerAnswer(), lr.Received, lr.Expected,
			lr.Lost, lr.Duplicates, lr.PubErrors+lr.PollErrors)
	}
	fmt.Fprintln(w, "\nRatios of server CPU per delivery (and per long-poll answer), then of latency p50 and p99, medians over the rounds; below 1 the first named costs less or is quicker:")
	for _, l := range ratios(results) {
		fmt.Fprintln(w, "- "+l)
	}
	fmt.Fprintln(w, "\n"+arrivalNote(results, o.Rounds))
	if lines := toolCPU(results); len(lines) > 0 {
		// The load tool runs on one CPU: on a fan-out row it has a whole
		// message's answers to read at once, and one that needs more time
		// for them than the server took to write them sets the latency
		// itself (BENCHMARKS.md section 18).
		fmt.Fprintln(w, "\nThe load tool's own CPU per delivery (median over the rounds); on a fan-out row, times the clients, the least time in which it can read one message's answers:")
		for _, l := range lines {
			fmt.Fprintln(w, "- "+l)
		}
	}
}

// arrivalNote says which clock the latencies end at: the load tool stamps
// a message at its arrival by the kernel's receive time where it can, else
// when it has read it, which on a fan-out row adds the tool's own reading
// time (BENCHMARKS.md section 18).
func arrivalNote(results []result, rounds int) string {
	var other []string
	kernel := 0
	for i := range results {
		lr := results[i].load()
		if lr == nil || lr.Received == 0 {
			continue
		}
		if lr.Arrival == "kernel" {
			kernel++
			continue
		}
		clock := lr.Arrival
		if clock == "" {
			clock = "read (not said)"
		}
		other = append(other, fmt.Sprintf("%s %s%s: %s", results[i].Title, results[i].Target, results[i].roundTag(rounds), clock))
	}
	switch {
	case len(other) == 0 && kernel > 0:
		return "Latency clock: arrival: kernel (every run): from the publish to the kernel's receive time of the message's bytes, not to when the load tool had read them."
	case len(other) == 0:
		return "Latency clock: no run received anything."
	case kernel == 0:
		return "Latency clock: arrival: read (every run): from the publish to when the load tool had read the message, its own reading time included."
	}
	return "Latency clock: arrival: kernel, except (read: when the load tool had read the message; mixed: some of each) " + strings.Join(other, "; ") + "."
}

// toolCPU is, for each row, the load tool's median CPU per delivery against
// each target, and on a row with one message to many clients (Clients of
// 1,000 or more at one channel) what that makes per message.
func toolCPU(results []result) []string {
	var out []string
	for _, rw := range rows() {
		var parts []string
		for _, tg := range rw.Targets {
			var v []float64
			for i := range results {
				if results[i].Row != rw.Key || results[i].Target != tg.Name {
					continue
				}
				if lr := results[i].load(); lr != nil && lr.toolPerDelivery() > 0 {
					v = append(v, lr.toolPerDelivery())
				}
			}
			if len(v) == 0 {
				continue
			}
			us := median(v)
			part := fmt.Sprintf("%s %.1f", tg.Name, us)
			if rw.Clients >= 1000 {
				part += fmt.Sprintf(" (%.0f ms per message to all %s)", us*float64(rw.Clients)/1000, thousands(rw.Clients))
			}
			parts = append(parts, part)
		}
		if len(parts) > 0 {
			out = append(out, fmt.Sprintf("%s: load tool CPU per delivery, µs: %s", rw.Title, strings.Join(parts, ", ")))
		}
	}
	return out
}

// thousands writes n with a comma between thousands, as the row titles do.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// ratios compares the targets of each row, and Stardust API long polling
// with Faye's Bayeux long-polling at the same throughput load (issue 8 states
// its target that way).
func ratios(results []result) []string {
	// The medians over the rounds of CPU per delivery and, for long
	// polling, per answer.
	cpu := func(row, target string, perAnswer bool) float64 {
		var v []float64
		for i := range results {
			if results[i].Row == row && results[i].Target == target {
				lr := results[i].load()
				switch {
				case lr == nil || lr.CPU == nil || lr.CPU.USPerDelivery <= 0:
				case !perAnswer:
					v = append(v, lr.CPU.USPerDelivery)
				case lr.Polls > 0 && (lr.Mode == "poll" || lr.Mode == "bayeux"):
					v = append(v, lr.CPU.CPUSec*1e6/float64(lr.Polls))
				}
			}
		}
		return median(v)
	}
	var out []string
	// The medians over the rounds of latency p50 (p99 true) in ms.
	latency := func(row, target string, p99 bool) float64 {
		var v []float64
		for i := range results {
			if results[i].Row == row && results[i].Target == target {
				switch lr := results[i].load(); {
				case lr == nil || lr.Latency.P50 <= 0:
				case p99:
					v = append(v, lr.Latency.P99)
				default:
					v = append(v, lr.Latency.P50)
				}
			}
		}
		return median(v)
	}
	add := func(title, rowA, a, rowB, b, bName string) {
		if x, y := cpu(rowA, a, false), cpu(rowB, b, false); x > 0 && y > 0 {
			line := fmt.Sprintf("%s: %s / %s = %.2f", title, a, bName, x/y)
			if xa, ya := cpu(rowA, a, true), cpu(rowB, b, true); xa > 0 && ya > 0 {
				line += fmt.Sprintf(" (per answer %.2f)", xa/ya)
			}
			if x50, y50 := latency(rowA, a, false), latency(rowB, b, false); x50 > 0 && y50 > 0 {
				line += fmt.Sprintf("; latency p50 %.2f, p99 %.2f", x50/y50, latency(rowA, a, true)/latency(rowB, b, true))
			}
			out = append(out, line)
		}
	}
	for _, rw := range rows() {
		for _, pair := range [][2]string{{stardustBx, faye}, {stardustWS, faye}, {stardustWS, centrifugoT}, {stardustAPI, floorTarget},
			{stardustAPINet, floorTarget}, {stardustBx, floorTarget}, {stardustWS, floorTarget}, {faye, floorTarget}} {
			add(rw.Title, rw.Key, pair[0], rw.Key, pair[1], pair[1])
		}
	}
	add("1,000 subscribers, 100 msg/s", "api1000", stardustAPI, "lp1000", faye, "Faye (Bayeux long-polling)")
	return out
}

// netholdConf is the configuration file of the stardust-nethold target,
// beside conf.
func netholdConf(conf string) string { return strings.TrimSuffix(conf, ".toml") + "-nethold.toml" }

// onLine passes writes on to w and calls f once, when marker has been
// written (within one write: the load tool writes a line at a time).
type onLine struct {
	w      io.Writer
	marker string
	f      func()
	done   bool
}

func (o *onLine) Write(p []byte) (int, error) {
	if !o.done && bytes.Contains(p, []byte(o.marker)) {
		o.done = true
		o.f()
	}
	return o.w.Write(p)
}

// fetchProfile saves a CPU profile of d from the pprof listener on
// 127.0.0.1:port to name; a failure is written in the file's place.
func fetchProfile(ctx context.Context, port int, d time.Duration, name string) {
	u := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=%d", port, max(1, int(d.Seconds())))
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		defer resp.Body.Close()
		var b []byte
		if b, err = io.ReadAll(io.LimitReader(resp.Body, 64<<20)); err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		}
		if err == nil {
			err = os.WriteFile(name, b, 0o644)
		}
	}
	if err != nil {
		_ = os.WriteFile(name+".error", []byte(err.Error()+"\n"), 0o644)
	}
}
