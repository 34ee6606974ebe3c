//go:build unix

package integration

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/testenv"
)

// Issue 21, point 6: TestApacheOneChannel holds 1,000 clients through
// apache2 with the shipped conf/apache2/mpm_event.conf, all on the same
// channel, and publishes one message a second for 20 s on one kept-alive
// connection (as an application's HTTP client does), opened before the
// clients came. The capacity test spreads its clients over 20 channels and
// publishes on new connections; here all 1,000 answers, and the 1,000
// polls that follow them, come at the same instant, and fill every thread
// of the processes they are in. With the threads in 32 processes of 64
// (before), the publisher's connection sat in such a process: apache2
// closed it under the publisher ("all workers are busy": a POST failed
// with EOF, and 1,000 deliveries were lost), and publishes sent on it
// waited for a thread up to a whole hold (p99 1.7 s to 29 s with the load
// tool). With all the threads in one process, nothing is lost and p99 is
// 0.4 to 0.7 s here; the bound is twice the 1 s target, for a loaded CI
// machine.
func TestApacheOneChannel(t *testing.T) {
	if !haveProgram("apache2") {
		missingDependency(t, "apache2 not found: install the Debian package apache2")
	}
	checkClientIP(t)
	raiseOpenFiles(t, 1000+100)
	bin := stardustBinary(t)
	for _, s := range []webServerSetup{{"apache2", "static"}, {"apache2", "fastcgi"}} {
		t.Run(s.String(), func(t *testing.T) {
			load := capacityLoad{clients: 1000, channels: 1, messages: 20, keepAlive: true}
			r := startCapacityRig(t, s, mainShipped, bin)
			res := runCapacity(t, r, load)
			t.Logf("%s, %d clients on one channel, %d messages: %s", s, load.clients, load.messages, res)
			if res.missing() != 0 || res.duplicates != 0 {
				t.Errorf("%d of %d messages lost, %d duplicated", res.missing(), res.expected, res.duplicates)
			}
			if res.pollErrors != 0 || res.publishErrors != 0 {
				t.Errorf("%d polls and %d publishes failed; the first: %s", res.pollErrors, res.publishErrors, res.firstError)
			}
			if p99, load := res.percentile(99), loadPerCore(); p99 > 2*time.Second {
				if load > 3 {
					// Latency says nothing on a machine this busy (a CI run
					// beside other builds saw 2.2 s at 17 per core).
					t.Logf("p99 latency %v, not judged: the machine's load is %.1f per core", p99, load)
				} else {
					t.Errorf("p99 latency %v, want under 1 s (2 s on a loaded machine)", p99)
				}
			}
			if longest := time.Duration(res.publishMax.Load()); longest > 5*time.Second {
				t.Errorf("a publish took %v: it waited for a thread behind held polls", longest)
			}
		})
	}
}

// loadPerCore is the machine's one-minute load average per core (0 where
// /proc/loadavg cannot be read).
func loadPerCore() float64 {
	l, _ := strconv.ParseFloat(testenv.FirstField("/proc/loadavg"), 64)
	return l / float64(runtime.NumCPU())
}
