package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// Benchmarks of the core. Run them with
//
//	go test -run '^$' -bench . -benchmem ./server/
//
// BENCHMARKS.md records figures and how to read them. The machine they were
// written for is small and shared, so compare sub-benchmarks of one run as
// ratios rather than reading absolute figures.

func benchLog() *logrus.Entry {
	lg := logrus.New()
	lg.SetOutput(io.Discard)
	lg.SetLevel(logrus.WarnLevel)
	return logrus.NewEntry(lg)
}

// benchHub returns a hub with n clients subscribed to channel, and the clients.
func benchHub(b *testing.B, opts HubOptions, n int, channel string) (*Hub, []*Client) {
	b.Helper()
	h := NewHub(opts, benchLog())
	b.Cleanup(h.Close)
	clients := make([]*Client, n)
	for i := range clients {
		c, _, err := h.Register("bench-"+strconv.Itoa(i), KindLocal, 0, "")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := h.Subscribe(c, channel); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	return h, clients
}

// mallocs returns the number of heap allocations so far (stops the world:
// call only outside the timed loop).
func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// BenchmarkPublishFanout measures one Hub.Publish to a channel with N
// subscribers. The Message is stored once and every queue holds the same
// pointer, so allocations per publish must not grow with N beyond each
// queue's own slot (the append into a client's queue slice).
//
// drain=1 empties every queue after every publish, as clients that are all
// waiting in a poll do: every enqueue then starts a fresh queue slice, the
// worst case of one slot allocation per subscriber. Draining allocates
// nothing but costs one lock per client, so here it is inside the timed loop
// (stopping the timer every iteration would cost more than a publish).
// drain=100 empties the queues every 100 publishes with the timer stopped,
// the case of clients that poll less often than messages arrive: the queue
// slice grows by doubling and its allocations are amortised.
// The extra metric allocs/sub counts every allocation of the loop per
// publish per subscriber; ns/sub is ns/op divided by N.
func BenchmarkPublishFanout(b *testing.B) {
	data := []byte(`{"type":"chat","nick":"alice","text":"hello, world"}`)
	for _, drainEvery := range []int{1, 100} {
		for _, n := range []int{1, 100, 10000} {
			b.Run(fmt.Sprintf("drain=%d/subs=%d", drainEvery, n), func(b *testing.B) {
				h, clients := benchHub(b, HubOptions{QueueMaxMessages: 1000, QueueMaxBytes: 1 << 20}, n, "/stardust/x")
				b.ReportAllocs()
				runtime.GC()
				before := mallocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					k, err := h.Publish(&Message{Channel: "/stardust/x", Data: data})
					if err != nil || k != n {
						b.Fatalf("Publish = %d, %v; want %d", k, err, n)
					}
					switch {
					case drainEvery == 1:
						for _, c := range clients {
							drain(h, c)
						}
					case (i+1)%drainEvery == 0:
						b.StopTimer()
						for _, c := range clients {
							drain(h, c)
						}
						b.StartTimer()
					}
				}
				b.StopTimer()
				after := mallocs()
				b.ReportMetric(float64(after-before)/float64(b.N)/float64(n), "allocs/sub")
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/sub")
				if st := stats(b, h); st.Dropped != 0 {
					b.Fatalf("%d messages dropped: queues overflowed", st.Dropped)
				}
			})
		}
	}
}

// BenchmarkMatch measures subTree.match for one channel, /a/5/x, that exactly
// one subscription matches, in trees that also hold many unrelated
// subscriptions (/a/<i>/*, /a/<i>/**, /a/<i>/x and /b/<i>/** for other i).
// A token tree walks only the channel's own path, so the cost must stay flat
// as the unrelated count grows from 0 to 10,000.
//
// matching=3 is the other case: three patterns match (/a/5/x, /a/5/*, /a/**),
// so each match also removes duplicates.
func BenchmarkMatch(b *testing.B) {
	target := []string{"a", "5", "x"}
	build := func(b *testing.B, unrelated int) *subTree[*memSession] {
		t := newSubTree[*memSession]()
		t.add(target, &memSession{s: Session{ID: "target"}})
		patterns := []string{"/a/%d/*", "/a/%d/**", "/a/%d/x", "/b/%d/**"}
		for i := 0; i < unrelated; i++ {
			p := fmt.Sprintf(patterns[i%len(patterns)], 1000+i/len(patterns))
			segs, err := ParseChannel(p, true)
			if err != nil {
				b.Fatal(err)
			}
			t.add(segs, &memSession{s: Session{ID: "u" + strconv.Itoa(i)}})
		}
		if t.n != unrelated+1 {
			b.Fatalf("tree holds %d subscriptions, want %d", t.n, unrelated+1)
		}
		return t
	}
	run := func(b *testing.B, t *subTree[*memSession], want int) {
		var buf [16]*memSession
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if got := t.match(target, buf[:0]); len(got) != want {
				b.Fatalf("match = %d clients, want %d", len(got), want)
			}
		}
	}
	for _, n := range []int{0, 100, 10000} {
		b.Run(fmt.Sprintf("unrelated=%d", n), func(b *testing.B) {
			run(b, build(b, n), 1)
		})
	}
	b.Run("unrelated=10000/matching=3", func(b *testing.B) {
		t := build(b, 10000)
		t.add([]string{"a", "5", "*"}, &memSession{s: Session{ID: "one"}})
		t.add([]string{"a", "**"}, &memSession{s: Session{ID: "any"}})
		run(b, t, 3)
	})
}

// BenchmarkHTTPFanout measures the whole path over loopback HTTP: M clients
// hold long polls on /comet/channel/x/stream/ID, one POST publishes, and the
// time until the last client has read its response is reported as
// ms/fanout (also per delivery as µs/delivery). Between iterations, with
// the timer stopped, every client re-polls and the benchmark waits until all
// are held again.
func BenchmarkHTTPFanout(b *testing.B) {
	for _, m := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("clients=%d", m), func(b *testing.B) { benchHTTPFanout(b, m) })
	}
}

func benchHTTPFanout(b *testing.B, m int) {
	s := New(Options{PollTimeout: time.Minute}, benchLog())
	ts := httptest.NewServer(s)
	tr := &http.Transport{MaxIdleConnsPerHost: m + 8, MaxIdleConns: m + 8, IdleConnTimeout: time.Minute}
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		s.Close()
		wg.Wait()
		tr.CloseIdleConnections()
		ts.Close()
	}()

	got := make(chan error, m)
	ids := make([]string, m)
	for i := range ids {
		ids[i] = "b." + strconv.Itoa(i)
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			u := ts.URL + "/comet/channel/x/stream/" + id
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				resp, err := hc.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						got <- err
					}
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					got <- err
				case resp.StatusCode != http.StatusOK:
					got <- fmt.Errorf("status %d: %s", resp.StatusCode, body)
				case strings.Contains(string(body), `"n":`):
					got <- nil
				}
			}
		}(ids[i])
	}
	// allPolling waits, bounded, until every client holds a poll, so that
	// each publish meets M waiting requests rather than queues.
	allPolling := func() {
		deadline := time.Now().Add(time.Minute)
		for _, id := range ids {
			for {
				if polling(s.Hub(), id) {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("client %s not polling after a minute", id)
				}
				time.Sleep(200 * time.Microsecond)
			}
		}
	}
	form := func(i int) string { return url.Values{"m": {fmt.Sprintf(`{"type":"bench","n":%d}`, i)}}.Encode() }

	b.ReportAllocs()
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		allPolling()
		b.StartTimer()
		start := time.Now()
		resp, err := hc.Post(ts.URL+"/comet/channel/x", "application/x-www-form-urlencoded", strings.NewReader(form(i)))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("publish: status %d", resp.StatusCode)
		}
		timeout := time.NewTimer(time.Minute)
		for k := 0; k < m; k++ {
			select {
			case err := <-got:
				if err != nil {
					b.Fatal(err)
				}
			case <-timeout.C:
				b.Fatalf("only %d of %d clients received the message within a minute", k, m)
			}
		}
		timeout.Stop()
		total += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/fanout")
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/float64(m), "µs/delivery")
}

// BenchmarkDecodeMessages measures decoding of a typical publish body: one m
// parameter in a form body as jquery.ev and curl -d send it, and the same
// message as a JSON body.
func BenchmarkDecodeMessages(b *testing.B) {
	msg := `{"type":"chat","nick":"alice","text":"hello, world","room":"lobby","n":42,"tags":["a","b"]}`
	cases := []struct {
		name, ctype string
		body        []byte
	}{
		{"form", "application/x-www-form-urlencoded", []byte(url.Values{"m": {msg}}.Encode())},
		{"form-3msgs", "application/x-www-form-urlencoded", []byte(url.Values{"m": {msg, msg, msg}}.Encode())},
		{"json", "application/json", []byte(msg)},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.body)))
			for i := 0; i < b.N; i++ {
				if _, err := DecodeMessages(tc.ctype, tc.body, nil, 64<<10); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStardustJSON measures the one-time encoding of a message as
// Stardust clients receive it (with _ts and _ch). It runs once per message,
// not once per subscriber: the result is cached on the shared Message.
func BenchmarkStardustJSON(b *testing.B) {
	data := []byte(`{"type":"chat","nick":"alice","text":"hello, world","room":"lobby","n":42}`)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		m := &Message{Channel: "/stardust/x", Data: data, Time: now}
		if len(stardustJSON(m, "/stardust")) == 0 {
			b.Fatal("empty encoding")
		}
	}
}

// BenchmarkDecodeBayeux measures decoding the most frequent Bayeux request,
// a /meta/connect batch as CometD sends it (with the ack extension). With
// encoding/json (two passes: the batch, then each message) it took 2,713
// ns/op, 1,008 B/op, 20 allocs/op here; with go-json-experiment/json in one
// pass, see BENCHMARKS.md.
func BenchmarkDecodeBayeux(b *testing.B) {
	body := []byte(`[{"id":"42","channel":"/meta/connect","connectionType":"long-polling","clientId":"5b1c0a7e9d3f4e2a8b6c1d0e9f8a7b6c","advice":{"timeout":0},"ext":{"ack":17}}]`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeBayeux(body); err != nil {
			b.Fatal(err)
		}
	}
}
