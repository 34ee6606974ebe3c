package redistest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/testenv"
)

// Sentinel timings for tests: a master that does not answer for
// SentinelDownAfter is down, and a failover that stalls is tried again
// after 2×SentinelFailoverTimeout, so that one takes a few seconds.
const (
	SentinelDownAfter       = time.Second
	SentinelFailoverTimeout = 3 * time.Second
)

// StartSentinels runs n redis-sentinel processes (Debian's redis-sentinel)
// that monitor master under name with a majority quorum, and returns once
// each of them knows the others and the master's replicas (wantReplicas of
// them): only then can they agree on a failover.
func StartSentinels(t testing.TB, master *Server, name string, n, wantReplicas int) []*Server {
	t.Helper()
	path := testenv.RequireProgram(t, "redis-sentinel", "redis-sentinel")
	host, port, _ := net.SplitHostPort(master.Addr)
	conf := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s %[4]d\n"+
		"sentinel down-after-milliseconds %[1]s %[5]d\nsentinel failover-timeout %[1]s %[6]d\nsentinel parallel-syncs %[1]s 1\n",
		name, host, port, n/2+1, SentinelDownAfter.Milliseconds(), SentinelFailoverTimeout.Milliseconds())
	var ss []*Server
	for range n {
		ss = append(ss, startProgram(t, path, conf))
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range ss {
		for {
			m := sentinelMaster(t, s, name)
			if m["num-other-sentinels"] == fmt.Sprint(n-1) && m["num-slaves"] == fmt.Sprint(wantReplicas) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("sentinel %s does not see %d others and %d replicas: %v", s.Addr, n-1, wantReplicas, m)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return ss
}

// sentinelMaster is a sentinel's SENTINEL MASTER answer, field by field.
func sentinelMaster(t testing.TB, s *Server, name string) map[string]string {
	t.Helper()
	m, err := s.result(t, "SENTINEL", "MASTER", name).AsStrMap()
	if err != nil {
		t.Fatalf("sentinel %s: SENTINEL MASTER %s: %v", s.Addr, name, err)
	}
	return m
}

// MasterAddr is the address the sentinel s gives as name's master now.
func MasterAddr(t testing.TB, s *Server, name string) string {
	t.Helper()
	f, err := s.result(t, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", name).AsStrSlice()
	if err != nil || len(f) != 2 {
		t.Fatalf("sentinel %s: no master for %s: %v %v", s.Addr, name, f, err)
	}
	return net.JoinHostPort(f[0], f[1])
}
