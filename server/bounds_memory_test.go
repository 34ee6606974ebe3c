package server

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/internal/procstat"
)

// TestHostileGrowthMemory measures the heap and resident memory of the two
// hostile cases of issue 17 with the default limits: one session trying
// 1,000,000 subscriptions, and 17,500 channels each given a 60 KB message
// (history_size 50, the config's default). Before the limits they took
// about 760 MiB and 1.2 GB. By default it runs 2% of the first and a tenth
// of the second, with the history bound scaled down to match (16 MiB);
// STARDUST_MEASURE=1 runs them whole
// (a few seconds, 1 GB of allocations) and logs the figures.
func TestHostileGrowthMemory(t *testing.T) {
	full := os.Getenv("STARDUST_MEASURE") == "1"
	attempts, channels := 20_000, 1_750
	opts := HubOptions{HistorySize: 50, MaxHistoryBytes: 16 << 20}
	if full {
		attempts, channels = 1_000_000, 17_500
		opts.MaxHistoryBytes = 0 // the default, 256 MiB
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	h := NewHub(opts, logrus.NewEntry(log))
	defer h.Close()
	limits := opts.EngineLimits()

	heap0, rss0 := memNow()
	c, _, err := h.Register("hostile", KindBayeux, time.Hour, "192.0.2.66")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	refused := 0
	for i := range attempts {
		p := fmt.Sprintf("/h/%d", i)
		if i%2 == 1 {
			p += "/*"
		}
		if _, err := h.Subscribe(c, p); err != nil {
			refused++
		}
	}
	took := time.Since(start)
	heap1, rss1 := memNow()
	st := stats(t, h)
	t.Logf("%d subscription attempts by one session in %s: %d refused, %d kept, %d channels; heap %+.1f MiB, RSS %+.1f MiB",
		attempts, took.Round(time.Millisecond), refused, st.Subscriptions, st.Channels, mib(heap1-heap0), mib(rss1-rss0))
	if st.Subscriptions != limits.MaxSubscriptions || refused != attempts-limits.MaxSubscriptions {
		t.Errorf("kept %d subscriptions, refused %d", st.Subscriptions, refused)
	}
	if st.Channels > limits.MaxSubscriptions {
		t.Errorf("refused subscriptions left channels behind: %d", st.Channels)
	}
	if grew := heap1 - heap0; grew > 16<<20 {
		t.Errorf("the heap grew %.1f MiB", mib(grew))
	}

	data := json.RawMessage(`{"pad":"` + strings.Repeat("x", 60_000) + `"}`)
	start = time.Now()
	for i := range channels {
		// A copy each: a client sends its own bytes.
		m := &Message{Channel: fmt.Sprint("/big/", i), Data: append(json.RawMessage(nil), data...)}
		if _, err := h.Publish(m); err != nil {
			t.Fatal(err)
		}
	}
	took = time.Since(start)
	heap2, rss2 := memNow()
	st = stats(t, h)
	t.Logf("%d channels of a 60 KB message in %s: %d channels, %.1f MiB of history kept (bound %.0f MiB), %d trimmed; heap %+.1f MiB, RSS %+.1f MiB",
		channels, took.Round(time.Millisecond), st.Channels, mib(st.HistoryBytes), mib(st.HistoryMax), st.Trimmed,
		mib(heap2-heap1), mib(rss2-rss1))
	if st.HistoryBytes > limits.MaxHistoryBytes || st.Trimmed == 0 {
		t.Errorf("%d history bytes (bound %d), %d trimmed", st.HistoryBytes, limits.MaxHistoryBytes, st.Trimmed)
	}
	if grew := heap2 - heap1; grew > limits.MaxHistoryBytes+limits.MaxHistoryBytes/4+16<<20 {
		t.Errorf("the heap grew %.1f MiB for a history bound of %.0f MiB", mib(grew), mib(limits.MaxHistoryBytes))
	}
}

// memNow returns the live heap after a collection, and the resident set.
func memNow() (heap, rss int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	kb, _, _ := procstat.ReadRSS(os.Getpid()) // 0 where there is no /proc
	return int64(ms.HeapAlloc), kb << 10
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
