package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStatCPU(t *testing.T) {
	// Fields 14 and 15 (utime, stime) are 250 and 50 ticks: 3 s.
	line := "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 1000000 500 18446744073709551615"
	got, err := parseStatCPU(line)
	if err != nil || got != 3 {
		t.Errorf("parseStatCPU = %v, %v; want 3", got, err)
	}
	for _, bad := range []string{"", "1 (x) S 1 2 3", "1 (x) S 1 2 3 4 5 6 7 8 9 u s 0 0"} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
	// Our own CPU time, burnt on purpose, shows.
	before, err := processCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until 0.1 s of CPU shows: on a busy machine 300 ms of spinning
	// got 0.04 s of CPU; a count that never moves fails after 20 s.
	after := before
	for end := time.Now().Add(20 * time.Second); after-before < 0.1; {
		if time.Now().After(end) {
			t.Fatalf("20 s of spinning counted as %.2fs of CPU", after-before)
		}
		for spin := time.Now().Add(50 * time.Millisecond); time.Now().Before(spin); {
		}
		if after, err = processCPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPinToCPU pins the test process to one of its CPUs, checks every thread
// (and one started afterwards) is bound to it, and restores the set.
func TestPinToCPU(t *testing.T) {
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		t.Skip("no sched_getaffinity:", err)
	}
	defer func() {
		if err := setAffinity(&orig); err != nil {
			t.Errorf("restoring the CPU set: %v", err)
		}
	}()
	cpu := -1
	for i := 0; i < 1024 && cpu < 0; i++ {
		if orig.IsSet(i) {
			cpu = i
		}
	}
	if err := pinToCPU(cpu); err != nil {
		t.Fatal(err)
	}
	// Make the runtime start more threads, which must inherit the set.
	done := make(chan struct{})
	for range 4 {
		go func() {
			for end := time.Now().Add(50 * time.Millisecond); time.Now().Before(end); {
			}
			done <- struct{}{}
		}()
	}
	for range 4 {
		<-done
	}
	sets, err := threadAffinities()
	if err != nil || len(sets) == 0 {
		t.Fatalf("reading thread affinities: %d, %v", len(sets), err)
	}
	for i, s := range sets {
		if s.Count() != 1 || !s.IsSet(cpu) {
			t.Errorf("thread %d of %d: %d CPUs, CPU %d set %v", i, len(sets), s.Count(), cpu, s.IsSet(cpu))
		}
	}
	if err := pinToCPU(1023); err == nil || !strings.Contains(err.Error(), "1023") {
		t.Errorf("pinning to CPU 1023: %v, want an error naming it", err)
	}
}

func TestProgressLine(t *testing.T) {
	r := newRunner(testConfig(t))
	r.published.Store(12)
	r.expected.Store(120)
	r.received.Store(100)
	r.latency.add(5 * time.Millisecond)
	got := r.progressLine(3 * time.Second)
	for _, want := range []string{"3s", "published 12", "received 100 of 120", "p50 5."} {
		if !strings.Contains(got, want) {
			t.Errorf("progress line %q lacks %q", got, want)
		}
	}
}
