package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--duration", "0s"},
		{"--duration", "3m"},
		{"--rows", "("},
		{"--port", "80"},
		{"--rounds", "0"},
		{"--rounds", "6"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
	o, err := parseFlags(nil, io.Discard)
	if err != nil || o.Duration != 20*time.Second || o.ServerCPU != 0 || o.ToolCPU != 1 {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

// TestRows: the table of issue 8, every row with distinct targets, and the
// long-poll rows that the floor can take have it.
func TestRows(t *testing.T) {
	keys := map[string]bool{}
	for _, r := range rows() {
		if keys[r.Key] {
			t.Errorf("row key %s twice", r.Key)
		}
		keys[r.Key] = true
		if r.Clients < 100 || len(r.Targets) < 2 {
			t.Errorf("row %s: %d clients, %d targets", r.Key, r.Clients, len(r.Targets))
		}
	}
	for _, k := range []string{"lp1000", "api1000", "held5000", "held100", "ws1000", "ws5000", "sse1000", "sse5000", "idle10000",
		"big18000poll", "big18000sse", "big18000ws"} {
		if !keys[k] {
			t.Errorf("no row %s", k)
		}
	}
	for _, r := range rows() {
		if big := r.Clients > 10000; big != r.Big {
			t.Errorf("row %s: %d clients, Big %v", r.Key, r.Clients, r.Big)
		}
		if r.Big && !slices.Contains(r.Args, "--procs") {
			t.Errorf("row %s: %d clients in one load tool process", r.Key, r.Clients)
		}
	}
}

// TestHeld100Row: issue 20's light row, 100 held long-poll clients at 2
// msg/s, over Faye, Stardust's Bayeux and API, and the floor, as the
// 5,000-client fan-out row; --rows held100 picks it alone.
func TestHeld100Row(t *testing.T) {
	var got *row
	for _, r := range rows() {
		if r.Key == "held100" {
			got = &r
		}
	}
	if got == nil {
		t.Fatal("no row held100")
	}
	if got.Clients != 100 || got.Big || strings.Join(got.Args, " ") != "--rate 2 --publishers 1" {
		t.Errorf("held100: %d clients, Big %v, args %v", got.Clients, got.Big, got.Args)
	}
	var targets []string
	for _, tg := range got.Targets {
		targets = append(targets, tg.Name+"/"+tg.Server+"/"+tg.Mode)
	}
	want := []string{faye + "/faye/bayeux", stardustBx + "/stardust/bayeux", stardustAPI + "/stardust/poll", floorTarget + "/floor/poll"}
	if !slices.Equal(targets, want) {
		t.Errorf("held100 targets %v, want %v", targets, want)
	}
	picked := 0
	re := regexp.MustCompile("held100")
	for _, r := range rows() {
		if re.MatchString(r.Key) {
			picked++
		}
	}
	if picked != 1 {
		t.Errorf("--rows held100 picks %d rows", picked)
	}
}

func fakeResult(row, target, mode string, us float64, received, polls int64) result {
	rep, _ := json.Marshal(map[string]any{
		"mode": mode, "published": 10, "publish_rate": 9.5, "polls": polls, "expected": received, "received": received,
		"latency_ms": map[string]any{"p50": 1.5, "p99": 9.25, "max": 20.4},
		"rss":        map[string]any{"per_client_kb": 20.0, "peak_per_client_kb": 40.0},
		"server_cpu": map[string]any{"cpu_s": 1.0, "us_per_delivery": us},
	})
	return result{Row: row, Title: row + " title", Target: target, Mode: mode, Report: rep}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestTable(t *testing.T) {
	results := []result{
		fakeResult("lp1000", faye, "bayeux", 40, 1000, 250),
		fakeResult("lp1000", stardustBx, "bayeux", 20, 1000, 500),
		fakeResult("api1000", stardustAPI, "poll", 10, 1000, 1000),
		fakeResult("api1000", floorTarget, "poll", 8, 1000, 1000),
		fakeResult("ws1000", stardustWS, "websocket", 5, 1000, 0),
		fakeResult("ws1000", centrifugoT, "uni_websocket", 10, 1000, 0),
		{Row: "ws1000", Title: "ws1000 title", Target: faye, Mode: "websocket", Error: "load tool: exit 1"},
	}
	var b strings.Builder
	writeTable(&b, options{Duration: 20 * time.Second, ToolCPU: 1}, results)
	out := b.String()
	for _, want := range []string{
		"| lp1000 title | Faye (bayeux) | 40.0 | 1.5 / 9.2 / 20 | 20.0 / 40.0 | 9.5 | 4.0 | 4000.0 | 1000 / 1000 | 0, 0, 0 |",
		"| ws1000 title | Stardust (websocket) | 5.0 | 1.5 / 9.2 / 20 | 20.0 / 40.0 | 9.5 | - | - | 1000 / 1000 | 0, 0, 0 |",
		"| ws1000 title | Faye (websocket) | failed: load tool: exit 1 |",
		"Stardust Bayeux / Faye = 0.50 (per answer 0.50)",
		"Stardust API / floor = 1.25 (per answer 1.00)",
		"Stardust API / Faye (Bayeux long-polling) = 0.25",
		"Stardust / Centrifugo = 0.50",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Stardust / Faye") {
		t.Errorf("a ratio with a failed run:\n%s", out)
	}
}

// TestLatencyRatios: the latency of each pair is compared as the CPU is,
// by the medians over the rounds of p50 and p99; and the load tool's own
// CPU per delivery is printed for each target (on the fan-out rows the
// latency is the tool's when it has no time to spare: issue 20).
func TestLatencyRatios(t *testing.T) {
	res := func(target string, round int, p50, p99, toolS float64) result {
		r := fakeResult("held5000", target, "poll", 50, 100000, 100000)
		var m map[string]any
		_ = json.Unmarshal(r.Report, &m)
		m["latency_ms"] = map[string]any{"p50": p50, "p99": p99, "max": p99 + 1}
		m["tool_cpu_s"] = toolS
		r.Report, _ = json.Marshal(m)
		r.Round = round
		return r
	}
	results := []result{
		res(stardustAPI, 1, 150, 500, 8.5), res(floorTarget, 1, 100, 400, 7.0),
		res(stardustAPI, 2, 300, 9000, 9.0), res(floorTarget, 2, 200, 4000, 7.5),
		res(stardustAPI, 3, 140, 480, 8.0), res(floorTarget, 3, 140, 400, 7.2),
	}
	var b strings.Builder
	writeTable(&b, options{Duration: 20 * time.Second, ToolCPU: 1, Rounds: 3}, results)
	out := b.String()
	for _, want := range []string{
		// medians: API p50 150, p99 500; floor p50 140, p99 400
		"Stardust API / floor = 1.00 (per answer 1.00); latency p50 1.07, p99 1.25",
		// medians of tool_cpu_s / received: 85, 72 µs; times 5,000 clients
		"load tool CPU per delivery, µs: Stardust API 85.0 (425 ms per message to all 5,000), floor 72.0 (360 ms",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestProfile: the profile is fetched once, when the load tool says it is
// publishing, for the publishing time, and saved.
func TestProfile(t *testing.T) {
	var asked []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.String())
		_, _ = w.Write([]byte("profile bytes"))
	}))
	defer ts.Close()
	port := ts.Listener.Addr().(*net.TCPAddr).Port
	name := filepath.Join(t.TempDir(), "p.pprof")
	var out strings.Builder
	calls := 0
	w := &onLine{w: &out, marker: "; publishing", f: func() {
		calls++
		fetchProfile(t.Context(), port, 7*time.Second, name)
	}}
	for _, line := range []string{"stardust-load: 10 of 20 clients registered\n", "stardust-load: 20 clients registered in 1.00s; publishing\n", "again; publishing\n"} {
		_, _ = io.WriteString(w, line)
	}
	b, err := os.ReadFile(name)
	if calls != 1 || err != nil || string(b) != "profile bytes" || len(asked) != 1 || asked[0] != "/debug/pprof/profile?seconds=7" {
		t.Errorf("calls %d, asked %q, file %q, %v", calls, asked, b, err)
	}
	if !strings.Contains(out.String(), "10 of 20") || !strings.Contains(out.String(), "again") {
		t.Errorf("the load tool's output was not passed on: %q", out.String())
	}
}

// TestArrivalNote: the table says which clock the latencies end at, and
// names the runs that were not stamped by the kernel.
func TestArrivalNote(t *testing.T) {
	res := func(target string, round int, arrival string) result {
		rep := fmt.Sprintf(`{"mode":"poll","received":10,"expected":10,"latency_ms":{"p50":1,"p99":2},"arrival":%q}`, arrival)
		return result{Row: "held100", Round: round, Title: "held100 title", Target: target, Mode: "poll", Report: json.RawMessage(rep)}
	}
	var b strings.Builder
	writeTable(&b, options{Duration: 20 * time.Second, ToolCPU: 1, Rounds: 2}, []result{res(stardustAPI, 1, "kernel"), res(floorTarget, 1, "kernel")})
	if want := "Latency clock: arrival: kernel (every run)"; !strings.Contains(b.String(), want) {
		t.Errorf("table lacks %q:\n%s", want, b.String())
	}
	for _, tc := range []struct {
		results []result
		want    string
	}{
		{[]result{res(stardustAPI, 1, "read"), res(floorTarget, 1, "read")}, "Latency clock: arrival: read (every run)"},
		{[]result{res(stardustAPI, 1, "kernel"), res(floorTarget, 2, "")}, "except (read: when the load tool had read the message; mixed: some of each) held100 title floor #2: read (not said)."},
		{[]result{res(stardustAPI, 1, "kernel"), res(floorTarget, 1, "mixed")}, "held100 title floor #1: mixed."},
	} {
		if got := arrivalNote(tc.results, 2); !strings.Contains(got, tc.want) {
			t.Errorf("arrivalNote = %q, want it to contain %q", got, tc.want)
		}
	}
}
