package main

import (
	"os"
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
