package main

import (
	"io"
	"os"
	"runtime"
	"testing"
)

// TestMain lets the test binary stand in for the tool when a --procs run
// starts it as a child.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRunProcs runs the subscribers in three child processes (this test
// binary, as the tool) and checks that the parent's report adds up their
// deliveries and latencies as one run's.
func TestRunProcs(t *testing.T) {
	for _, mode := range []string{"poll", "websocket"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel() // two seconds of waiting each
			u := startServer(t)
			cfg := testConfig(t, "--url", u, "--mode", mode, "--clients", "20", "--channels", "3", "--procs", "3",
				"--publishers", "2", "--rate", "100", "--duration", "2s", "--drain", "10s")
			cfg.PID = os.Getpid()
			rep := checkRun(t, cfg)
			if rep.Procs != 3 {
				t.Errorf("report says %d processes", rep.Procs)
			}
		})
	}
}

// TestChildArgsSpread checks that --urls gives child i the (i mod n)-th URL,
// with its Bayeux endpoint and its own source address, and that every child
// is told --settle (its wait for the publish is that much longer).
func TestChildArgsSpread(t *testing.T) {
	cfg := testConfig(t, "--url", "http://127.0.0.1:5931/comet", "--procs", "3", "--clients", "30",
		"--urls", "http://127.0.0.1:5931/comet/, http://127.0.0.1:5932/comet", "--settle", "45s")
	flag := func(args []string, name string) string {
		for i := 0; i+1 < len(args); i++ {
			if args[i] == name {
				return args[i+1]
			}
		}
		return ""
	}
	for i, want := range []string{"http://127.0.0.1:5931/comet", "http://127.0.0.1:5932/comet", "http://127.0.0.1:5931/comet"} {
		a := cfg.childArgs(i, 10, "run")
		if got := flag(a, "--url"); got != want {
			t.Errorf("child %d: --url %q, want %q", i, got, want)
		}
		if got := flag(a, "--bayeux"); got != want+"/bayeux" {
			t.Errorf("child %d: --bayeux %q", i, got)
		}
		if got := flag(a, "--settle"); got != "45s" {
			t.Errorf("child %d: --settle %q", i, got)
		}
		if got := flag(a, "--source"); runtime.GOOS == "linux" && got != sourceAddr(i) {
			t.Errorf("child %d: --source %q, want %q", i, got, sourceAddr(i))
		}
		if _, err := parseFlags(a, io.Discard); err != nil {
			t.Errorf("child %d's flags: %v", i, err)
		}
	}
	// Without --urls every child loads --url.
	cfg = testConfig(t, "--url", "http://127.0.0.1:5931/comet", "--procs", "2", "--clients", "4",
		"--bayeux", "http://127.0.0.1:5931/faye")
	if a := cfg.childArgs(1, 2, "run"); flag(a, "--url") != cfg.URL || flag(a, "--bayeux") != cfg.BayeuxURL {
		t.Errorf("child without --urls: %q", a)
	}
}
