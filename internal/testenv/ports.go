package testenv

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FreePorts returns the first of n consecutive loopback ports free at the
// time of asking, below the kernel's ephemeral range: a port of that range,
// free when looked at, may be any test's outgoing connection or :0
// listener a moment later (a Faye of TestReadmeLoadTool, and a Redis of
// the engine's tests, once found their port so taken). A port it gave
// before in this process is not given again: it may not be bound yet.
func FreePorts(t testing.TB, n int) int {
	t.Helper()
	low := ephemeralLow()
	for range 50 {
		base := 10000 + rand.IntN(low-10000-n)
		ok := given.take(base, n)
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
			if ok = err == nil; ok {
				_ = l.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatalf("no %d consecutive free loopback ports found", n)
	return 0
}

// given is the ports FreePorts has given in this process.
var given portSet

type portSet struct {
	mu    sync.Mutex
	ports map[int]bool
}

// take marks the n ports from base given, unless one of them was already.
func (g *portSet) take(base, n int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for p := base; p < base+n; p++ {
		if g.ports[p] {
			return false
		}
	}
	if g.ports == nil {
		g.ports = map[int]bool{}
	}
	for p := base; p < base+n; p++ {
		g.ports[p] = true
	}
	return true
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// ip_local_port_range; 32768 where it cannot be read or is too low to
// leave room below it).
func ephemeralLow() int {
	low, err := strconv.Atoi(FirstField("/proc/sys/net/ipv4/ip_local_port_range"))
	if err != nil || low < 20000 {
		return 32768
	}
	return low
}

// FirstField is the first field of a small file such as one of /proc (""
// if it cannot be read).
func FirstField(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return ""
}
