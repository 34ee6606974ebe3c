package main

import (
	"testing"
	"time"
)

func TestFlagsStayOnLoopbackAndBounded(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "http://192.0.2.1:5798/comet", "--pid", "1"},
		{"--duration", "11m", "--pid", "1"},
		{"--workers", "0", "--pid", "1"},
		{},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if _, err := parseFlags([]string{"--url", "http://[::1]:5798/comet", "--pid", "1"}); err != nil {
		t.Error(err)
	}
}

func TestGrowthVerdict(t *testing.T) {
	rep := &report{Duration: 100 * time.Second}
	for i := range 11 {
		rss := int64(50000)
		if i >= 8 {
			rss = 70000 // grows at the end
		}
		rep.Samples = append(rep.Samples, sample{At: time.Duration(i*10) * time.Second, RSSKB: rss})
	}
	if g := rep.growth(); g < 39 || g > 41 || rep.ok(20) {
		t.Errorf("growth %.1f%%, ok %v: want 40%% and a failure", g, rep.ok(20))
	}
	for i := range rep.Samples {
		rep.Samples[i].RSSKB = 50000
	}
	if !rep.ok(20) {
		t.Error("flat memory fails")
	}
}
