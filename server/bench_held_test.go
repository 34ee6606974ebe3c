package server

import (
	"runtime"
	"testing"
	"time"
)

// BenchmarkHeldPollRoundTrip: one poll held on its connection (taken over,
// longpoll.go and internal/takeover) and answered by a publish, on one
// keep-alive loopback connection: the poll's request read, its takeover
// (the first) or its serving off net/http (the next ones), the wake-up,
// the answer written and read. The wait until the poll waits spins.
func BenchmarkHeldPollRoundTrip(b *testing.B) {
	t := &testing.T{}
	s, srv, addr := takeoverServer(t, Options{PollTimeout: time.Minute}, nil, nil)
	rc := dialRaw(t, addr)
	rc.t = t
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rc.send(pollGet("bench1", "HTTP/1.1", ""))
		for s.hub.waiting.Load() != 1 { // without allocating, unlike takeoverCount
			runtime.Gosched()
		}
		publishA(t, s, `{"n":1}`)
		if resp, _ := rc.read(); resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.StopTimer()
	_ = rc.c.Close()
	s.Close()
	_ = srv.Close()
}
