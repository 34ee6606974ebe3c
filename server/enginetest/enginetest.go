// Package enginetest is the conformance suite every server.Engine must pass:
// sessions, delivery by exact and wildcard subscription, ordering, queue
// bounds and drop notices, fetch and commit, history after a sequence
// number, wake-ups, poll replacement (also between two processes), expiry,
// address limits and the bounds on subscriptions, channels and history
// bytes (limits.go). Run it from an engine's own tests:
//
//	func TestConformance(t *testing.T) {
//		enginetest.Run(t, enginetest.Factory{Open: func(t *testing.T, l server.Limits) server.Engine {
//			return server.NewMemoryEngine(l)
//		}})
//	}
package enginetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/internal/leakcheck"
	"github.com/stardust-go/stardust/server"
)

// Factory makes the engines under test.
type Factory struct {
	// Open returns a new, empty engine with these limits. The suite closes
	// it (directly or through a Hub).
	Open func(t *testing.T, l server.Limits) server.Engine
	// Peer returns an engine of another process sharing e's state (nil: e
	// itself, for engines that serve one process). The suite closes it.
	Peer func(t *testing.T, e server.Engine, l server.Limits) server.Engine
}

func (f Factory) peer(t *testing.T, e server.Engine, l server.Limits) server.Engine {
	if f.Peer == nil {
		return e
	}
	return f.Peer(t, e, l)
}

// wait bounds every wait of the suite: generous, for loaded machines.
const wait = 5 * time.Second

// Run runs the whole suite, each case in its own subtest, then checks that
// no goroutine of the engines is left.
func Run(t *testing.T, f Factory) {
	before := runtime.NumGoroutine()
	for _, c := range []struct {
		name string
		run  func(*testing.T, Factory)
	}{
		{"Sessions", testSessions},
		{"MaxClients", testMaxClients},
		{"Delivery", testDelivery},
		{"Ordering", testOrdering},
		{"Sequence", testSequence},
		{"QueueBounds", testQueueBounds},
		{"FetchCommit", testFetchCommit},
		{"Deliver", testDeliver},
		{"History", testHistory},
		{"ChannelsAndAudience", testChannelsAndAudience},
		{"Unsubscribe", testUnsubscribe},
		{"RemoveWakes", testRemoveWakes},
		{"WakeNotLost", testWakeNotLost},
		{"PollReplaced", testPollReplaced},
		{"Expiry", testExpiry},
		{"HeldPollKeepsAlive", testHeldPollKeepsAlive},
		{"AddressLimits", testAddressLimits},
		{"MaxSubscriptions", testMaxSubscriptions},
		{"MaxChannels", testMaxChannels},
		{"HistoryBytes", testHistoryBytes},
		{"ChannelHistory", testChannelHistory},
		{"HistoryTTL", testHistoryTTL},
		{"Presence", testPresence},
		{"Members", testMembers},
		{"TwoProcesses", testTwoProcesses},
		{"SharedSecret", testSharedSecret},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, f) })
	}
	leakcheck.Goroutines(t, before)
}

var ctx = context.Background()

func open(t *testing.T, f Factory, l server.Limits) server.Engine {
	t.Helper()
	e := f.Open(t, l)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// hub serves e in a Hub, as the server does; the hub closes the engine.
func hub(t *testing.T, e server.Engine, sweep time.Duration) *server.Hub {
	log := logrus.New()
	log.SetOutput(io.Discard)
	h := server.NewHub(server.HubOptions{Engine: e, SweepInterval: sweep}, logrus.NewEntry(log))
	t.Cleanup(h.Close)
	return h
}

func mustCreate(t *testing.T, e server.Engine, id, kind string) {
	t.Helper()
	if err := e.CreateSession(ctx, server.Session{ID: id, Kind: kind, Remote: "192.0.2.1", Timeout: time.Minute}); err != nil {
		t.Fatalf("CreateSession(%s): %v", id, err)
	}
}

func mustSubscribe(t *testing.T, e server.Engine, id string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if _, err := e.Subscribe(ctx, id, p); err != nil {
			t.Fatalf("Subscribe(%s, %s): %v", id, p, err)
		}
	}
}

func publish(t *testing.T, e server.Engine, channel string, n int) *server.Message {
	t.Helper()
	m := &server.Message{Channel: channel, Data: json.RawMessage(`{"n":` + strconv.Itoa(n) + `}`)}
	if _, err := e.Publish(ctx, m); err != nil {
		t.Fatalf("Publish(%s): %v", channel, err)
	}
	return m
}

// take fetches and commits everything queued for id.
func take(t *testing.T, e server.Engine, id string) server.Batch {
	t.Helper()
	b, err := e.Fetch(ctx, id, 0)
	if err != nil {
		t.Fatalf("Fetch(%s): %v", id, err)
	}
	if err := e.Commit(ctx, id, b.Cursor); err != nil {
		t.Fatalf("Commit(%s): %v", id, err)
	}
	return b
}

// numbers returns the "n" of each message.
func numbers(msgs []*server.Message) []int {
	out := make([]int, len(msgs))
	for i, m := range msgs {
		var v struct{ N int }
		_ = json.Unmarshal(m.Data, &v)
		out[i] = v.N
	}
	return out
}

func channels(msgs []*server.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Channel
	}
	return out
}

func testSessions(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{})
	s := server.Session{ID: "s1", Kind: server.KindBayeux, Remote: "192.0.2.7", Timeout: 30 * time.Second,
		Attrs: map[string]string{"user": "alice"}}
	if err := e.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := e.CreateSession(ctx, s); !errors.Is(err, server.ErrExists) {
		t.Errorf("second CreateSession: %v, want ErrExists", err)
	}
	got, err := e.Session(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != s.ID || got.Kind != s.Kind || got.Remote != s.Remote || got.Timeout != s.Timeout || got.Attrs["user"] != "alice" {
		t.Errorf("Session = %+v, want %+v", got, s)
	}
	if err := e.SetAttr(ctx, "s1", "authenticated", "true"); err != nil {
		t.Fatal(err)
	}
	if err := e.SetAttr(ctx, "s1", "user", ""); err != nil {
		t.Fatal(err)
	}
	if again, _ := e.Session(ctx, "s1"); again.Attrs["authenticated"] != "true" || again.Attrs["user"] != "" {
		t.Errorf("attributes after SetAttr: %v", again.Attrs)
	}
	if got.Attrs["user"] != "alice" {
		t.Error("SetAttr changed a Session returned earlier")
	}
	if err := e.Touch(ctx, "s1", "nobody"); err != nil {
		t.Errorf("Touch with an unknown id: %v", err)
	}
	if ok, err := e.RemoveSession(ctx, "s1"); !ok || err != nil {
		t.Errorf("RemoveSession = %v, %v", ok, err)
	}
	if ok, err := e.RemoveSession(ctx, "s1"); ok || err != nil {
		t.Errorf("second RemoveSession = %v, %v; want false, nil", ok, err)
	}
	for name, call := range map[string]func() error{
		"Session":       func() error { _, err := e.Session(ctx, "s1"); return err },
		"SetAttr":       func() error { return e.SetAttr(ctx, "s1", "k", "v") },
		"Subscribe":     func() error { _, err := e.Subscribe(ctx, "s1", "/a"); return err },
		"Subscriptions": func() error { _, err := e.Subscriptions(ctx, "s1"); return err },
		"Fetch":         func() error { _, err := e.Fetch(ctx, "s1", 0); return err },
		"Deliver": func() error {
			return delivererOf(t, e).Deliver(ctx, "s1", &server.Message{Channel: "/x", Data: json.RawMessage(`{}`)})
		},
	} {
		if err := call(); !errors.Is(err, server.ErrUnknownClient) {
			t.Errorf("%s of a removed session: %v, want ErrUnknownClient", name, err)
		}
	}
}

func testMaxClients(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{MaxClients: 3})
	for i := range 3 {
		mustCreate(t, e, fmt.Sprint("c", i), server.KindStardust)
	}
	if err := e.CreateSession(ctx, server.Session{ID: "c3", Kind: server.KindStardust}); !errors.Is(err, server.ErrTooManyClients) {
		t.Fatalf("fourth session: %v, want ErrTooManyClients", err)
	}
	if _, err := e.RemoveSession(ctx, "c0"); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e, "c3", server.KindStardust)
	st, err := statsOf(t, e)
	if err != nil || st.Clients != 3 || st.ClientsByKind[server.KindStardust] != 3 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
}

func testDelivery(t *testing.T, f Factory) {
	tests := []struct {
		pattern string
		want    []string // of the channels published below, in order
	}{
		{"/a", []string{"/a"}},
		{"/a/b", []string{"/a/b"}},
		{"/a/*", []string{"/a/b", "/a/c"}},
		{"/a/**", []string{"/a/b", "/a/c", "/a/b/c", "/a/b/c/d"}},
		{"/a/b/*", []string{"/a/b/c"}},
		{"/a/b/**", []string{"/a/b/c", "/a/b/c/d"}},
		{"/x/*", []string{"/x/y"}},
		{"/nothing/**", nil},
	}
	e := open(t, f, server.Limits{})
	for i, tt := range tests {
		id := fmt.Sprint("d", i)
		mustCreate(t, e, id, server.KindBayeux)
		mustSubscribe(t, e, id, tt.pattern)
	}
	// Overlapping subscriptions of one session deliver each message once.
	mustCreate(t, e, "both", server.KindBayeux)
	mustSubscribe(t, e, "both", "/a/*", "/a/**", "/a/b")
	for i, ch := range []string{"/a", "/a/b", "/a/c", "/a/b/c", "/a/b/c/d", "/x/y"} {
		publish(t, e, ch, i)
	}
	for i, tt := range tests {
		t.Run(tt.pattern, func(t *testing.T) {
			got := channels(take(t, e, fmt.Sprint("d", i)).Messages)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("%s received %v, want %v", tt.pattern, got, tt.want)
			}
		})
	}
	if got := channels(take(t, e, "both").Messages); fmt.Sprint(got) != "[/a/b /a/c /a/b/c /a/b/c/d]" {
		t.Errorf("overlapping subscriptions received %v, want each message once", got)
	}
}

func testOrdering(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{QueueMaxMessages: 10000, QueueMaxBytes: 64 << 20})
	for _, id := range []string{"o1", "o2"} {
		mustCreate(t, e, id, server.KindStardust)
	}
	mustSubscribe(t, e, "o1", "/ord/x")
	mustSubscribe(t, e, "o2", "/ord/*")
	// Four publishers at once: every subscriber sees one and the same order,
	// and each publisher's own messages in the order it sent them.
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				m := &server.Message{Channel: "/ord/x", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, p*1000+i))}
				if _, err := e.Publish(ctx, m); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	a, b := numbers(take(t, e, "o1").Messages), numbers(take(t, e, "o2").Messages)
	if len(a) != 400 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("subscribers saw different sequences (%d and %d messages)", len(a), len(b))
	}
	last := map[int]int{}
	for _, n := range a {
		p, i := n/1000, n%1000
		if prev, ok := last[p]; ok && i <= prev {
			t.Fatalf("publisher %d's message %d came after %d", p, i, prev)
		}
		last[p] = i
	}
}

func testSequence(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{HistorySize: 10})
	start := time.Now().Add(-time.Second)
	var prev uint64
	for i, ch := range []string{"/s/a", "/s/b", "/s/a", "/s/c"} {
		m := publish(t, e, ch, i)
		if m.Seq <= prev {
			t.Errorf("sequence %d after %d: not increasing across channels", m.Seq, prev)
		}
		if m.Time.Before(start) || m.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("message time %v is not now", m.Time)
		}
		prev = m.Seq
	}
	hist, err := e.History(ctx, "/s/a", 0)
	if err != nil || len(hist) != 2 || hist[1].Seq >= prev {
		t.Errorf("History = %d messages, %v", len(hist), err)
	}
}

func testQueueBounds(t *testing.T, f Factory) {
	t.Run("messages", func(t *testing.T) {
		e := open(t, f, server.Limits{QueueMaxMessages: 5})
		mustCreate(t, e, "q", server.KindStardust)
		mustSubscribe(t, e, "q", "/q")
		for i := range 8 {
			publish(t, e, "/q", i)
		}
		b := take(t, e, "q")
		if got := numbers(b.Messages); fmt.Sprint(got) != "[3 4 5 6 7]" || b.Dropped != 3 {
			t.Errorf("got %v dropped %d; want the newest 5 and 3 dropped", got, b.Dropped)
		}
		publish(t, e, "/q", 8)
		if b := take(t, e, "q"); b.Dropped != 0 || fmt.Sprint(numbers(b.Messages)) != "[8]" {
			t.Errorf("after the drop notice: %v dropped %d; the notice is given once", numbers(b.Messages), b.Dropped)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		e := open(t, f, server.Limits{QueueMaxMessages: 1000, QueueMaxBytes: 1000})
		mustCreate(t, e, "q", server.KindStardust)
		mustSubscribe(t, e, "q", "/q")
		big := json.RawMessage(`{"pad":"` + string(make([]byte, 0)) + fmt.Sprintf("%0300d", 0) + `"}`)
		for range 10 {
			if _, err := e.Publish(ctx, &server.Message{Channel: "/q", Data: big}); err != nil {
				t.Fatal(err)
			}
		}
		b := take(t, e, "q")
		if len(b.Messages) == 0 || len(b.Messages) > 3 || b.Dropped != 10-len(b.Messages) {
			t.Errorf("kept %d of 10 messages of 300+ bytes under 1000 bytes, dropped %d", len(b.Messages), b.Dropped)
		}
	})
	t.Run("fetched but not committed", func(t *testing.T) {
		e := open(t, f, server.Limits{QueueMaxMessages: 3})
		mustCreate(t, e, "q", server.KindStardust)
		mustSubscribe(t, e, "q", "/q")
		publish(t, e, "/q", 0)
		publish(t, e, "/q", 1)
		first, err := e.Fetch(ctx, "q", 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := 2; i < 6; i++ {
			publish(t, e, "/q", i)
		}
		// The overflow took the fetched messages; committing the old
		// batch must not remove newer ones. Only message 2 was never sent.
		if err := e.Commit(ctx, "q", first.Cursor); err != nil {
			t.Fatal(err)
		}
		b := take(t, e, "q")
		if got := numbers(b.Messages); fmt.Sprint(got) != "[3 4 5]" || b.Dropped != 1 {
			t.Errorf("got %v dropped %d; want [3 4 5] and 1 dropped (0 and 1 were sent)", got, b.Dropped)
		}
	})
}

func testFetchCommit(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{})
	mustCreate(t, e, "f", server.KindBayeux)
	mustSubscribe(t, e, "f", "/f")
	for i := range 5 {
		publish(t, e, "/f", i)
	}
	b1, err := e.Fetch(ctx, "f", 2)
	if err != nil || fmt.Sprint(numbers(b1.Messages)) != "[0 1]" {
		t.Fatalf("Fetch max 2 = %v, %v", numbers(b1.Messages), err)
	}
	// Not committed: a process that died before answering loses nothing.
	again, _ := e.Fetch(ctx, "f", 0)
	if fmt.Sprint(numbers(again.Messages)) != "[0 1 2 3 4]" {
		t.Fatalf("second Fetch = %v; want everything again", numbers(again.Messages))
	}
	if err := e.Commit(ctx, "f", b1.Cursor); err != nil {
		t.Fatal(err)
	}
	b2, _ := e.Fetch(ctx, "f", 0)
	if fmt.Sprint(numbers(b2.Messages)) != "[2 3 4]" {
		t.Fatalf("after committing the first batch: %v", numbers(b2.Messages))
	}
	if err := e.Commit(ctx, "f", b1.Cursor); err != nil { // an old cursor: nothing
		t.Fatal(err)
	}
	if b, _ := e.Fetch(ctx, "f", 0); len(b.Messages) != 3 {
		t.Fatalf("committing an old cursor removed messages: %v", numbers(b.Messages))
	}
	if err := e.Commit(ctx, "f", b2.Cursor); err != nil {
		t.Fatal(err)
	}
	if b, _ := e.Fetch(ctx, "f", 0); len(b.Messages) != 0 {
		t.Fatalf("after committing everything: %v", numbers(b.Messages))
	}
	publish(t, e, "/f", 5)
	if b := take(t, e, "f"); fmt.Sprint(numbers(b.Messages)) != "[5]" || b.Cursor <= b2.Cursor {
		t.Errorf("later batch %v with cursor %d after %d", numbers(b.Messages), b.Cursor, b2.Cursor)
	}
}

func testDeliver(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{HistorySize: 5})
	mustCreate(t, e, "caller", server.KindBayeux)
	mustCreate(t, e, "other", server.KindBayeux)
	mustSubscribe(t, e, "other", "/service/**")
	m := &server.Message{Channel: "/service/echo", Data: json.RawMessage(`{"x":1}`), ID: "7", Reply: true}
	if err := delivererOf(t, e).Deliver(ctx, "caller", m); err != nil {
		t.Fatal(err)
	}
	b := take(t, e, "caller")
	if len(b.Messages) != 1 || b.Messages[0].ID != "7" || !b.Messages[0].Reply || string(b.Messages[0].Data) != `{"x":1}` || b.Messages[0].Seq == 0 {
		t.Fatalf("delivered %+v", b.Messages)
	}
	if b := take(t, e, "other"); len(b.Messages) != 0 {
		t.Error("a delivered message reached a subscriber")
	}
	if h, _ := e.History(ctx, "/service/echo", 0); len(h) != 0 {
		t.Error("a delivered message was kept in history")
	}
}

func testHistory(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{HistorySize: 3})
	if h, err := e.History(ctx, "/h/none", 0); err != nil || len(h) != 0 {
		t.Errorf("History of an unknown channel = %v, %v", h, err)
	}
	if names, _ := e.Channels(ctx, "/h/"); len(names) != 0 {
		t.Errorf("reading history created a channel: %v", names)
	}
	var seqs []uint64
	for i := range 5 {
		seqs = append(seqs, publish(t, e, "/h/x", i).Seq)
	}
	publish(t, e, "/h/y", 99)
	h, err := e.History(ctx, "/h/x", 0)
	if err != nil || fmt.Sprint(numbers(h)) != "[2 3 4]" {
		t.Fatalf("History = %v, %v; want the last 3", numbers(h), err)
	}
	if h[0].Channel != "/h/x" || h[0].Seq != seqs[2] || h[0].Time.IsZero() {
		t.Errorf("history message %+v", h[0])
	}
	if h, _ := e.History(ctx, "/h/x", seqs[3]); fmt.Sprint(numbers(h)) != "[4]" {
		t.Errorf("History after seq %d = %v", seqs[3], numbers(h))
	}
	e0 := open(t, f, server.Limits{})
	publish(t, e0, "/h/x", 1)
	if h, _ := e0.History(ctx, "/h/x", 0); len(h) != 0 {
		t.Errorf("HistorySize 0 kept %d messages", len(h))
	}
}

func testChannelsAndAudience(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{HistorySize: 2})
	mustCreate(t, e, "b1", server.KindBayeux)
	mustCreate(t, e, "s1", server.KindStardust)
	mustCreate(t, e, "s2", server.KindStardust)
	mustSubscribe(t, e, "b1", "/stardust/*")
	mustSubscribe(t, e, "s1", "/stardust/foo")
	mustSubscribe(t, e, "s2", "/stardust/foo", "/stardust/bar")
	publish(t, e, "/other/z", 1)
	names, err := e.Channels(ctx, "/stardust/")
	if err != nil || fmt.Sprint(names) != "[/stardust/bar /stardust/foo]" {
		t.Errorf("Channels = %v, %v", names, err)
	}
	all, _ := e.Channels(ctx, "")
	if !sort.StringsAreSorted(all) || len(all) != 3 {
		t.Errorf("all channels = %v", all)
	}
	aud, err := audienceOf(t, e, "/stardust/foo")
	if err != nil || aud[server.KindBayeux] != 1 || aud[server.KindStardust] != 2 {
		t.Errorf("Audience = %v, %v", aud, err)
	}
	if aud, _ := audienceOf(t, e, "/nobody/here"); len(aud) != 0 && aud[server.KindBayeux]+aud[server.KindStardust] != 0 {
		t.Errorf("Audience of an empty channel = %v", aud)
	}
	if n, err := e.Publish(ctx, &server.Message{Channel: "/stardust/foo", Data: json.RawMessage(`{}`)}); err != nil || n != 3 {
		t.Errorf("Publish reached %d, %v; want 3", n, err)
	}
	st, err := statsOf(t, e)
	if err != nil || st.Clients != 3 || st.Subscriptions != 4 || st.Channels < 3 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	subs, err := e.Subscriptions(ctx, "s2")
	if err != nil || fmt.Sprint(subs) != "[/stardust/bar /stardust/foo]" {
		t.Errorf("Subscriptions = %v, %v", subs, err)
	}
}

func testUnsubscribe(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{})
	mustCreate(t, e, "u", server.KindBayeux)
	if added, err := e.Subscribe(ctx, "u", "/u/*"); !added || err != nil {
		t.Fatalf("Subscribe = %v, %v", added, err)
	}
	if added, _ := e.Subscribe(ctx, "u", "/u/*"); added {
		t.Error("a second Subscribe reported a new subscription")
	}
	publish(t, e, "/u/a", 1)
	if removed, err := e.Unsubscribe(ctx, "u", "/u/*"); !removed || err != nil {
		t.Fatalf("Unsubscribe = %v, %v", removed, err)
	}
	if removed, _ := e.Unsubscribe(ctx, "u", "/u/*"); removed {
		t.Error("a second Unsubscribe reported a subscription")
	}
	publish(t, e, "/u/b", 2)
	if got := numbers(take(t, e, "u").Messages); fmt.Sprint(got) != "[1]" {
		t.Errorf("got %v; want what came before the unsubscribe only", got)
	}
	if _, err := e.Subscribe(ctx, "u", "/bad/**/x"); err == nil {
		t.Error("a wildcard before the last segment was accepted")
	}
}

func testRemoveWakes(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{})
	mustCreate(t, e, "r", server.KindBayeux)
	mustSubscribe(t, e, "r", "/r")
	woke := make(chan server.Wake, 8)
	stop := e.Watch("r", collect(woke))
	defer stop()
	publish(t, e, "/r", 1)
	expectWake(t, woke, server.WakeMessages)
	if _, err := e.RemoveSession(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	expectWake(t, woke, server.WakeRemoved)
	if n, _ := e.Publish(ctx, &server.Message{Channel: "/r", Data: json.RawMessage(`{}`)}); n != 0 {
		t.Errorf("a removed session still received: %d", n)
	}
	gone := make(chan server.Wake, 8)
	defer e.Watch("r", collect(gone))()
	expectWake(t, gone, server.WakeExpired)
}

// collect returns a watch callback that keeps wake-ups in ch without ever
// blocking, as Engine.Watch requires (one too many is dropped).
func collect(ch chan server.Wake) func(server.Wake) {
	return func(w server.Wake) {
		select {
		case ch <- w:
		default:
		}
	}
}

func expectWake(t *testing.T, ch <-chan server.Wake, want server.Wake) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case w := <-ch:
			if w == want {
				return
			}
		case <-deadline:
			t.Fatalf("no wake-up %d within %s", want, wait)
		}
	}
}

func testWakeNotLost(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{})
	h := hub(t, e, time.Second)
	c, _, err := h.Register("w", server.KindStardust, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.SetSubscriptions(c, []string{"/w"}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		done := make(chan server.Batch, 1)
		go func() {
			b, _ := c.Poll(ctx, wait)
			done <- b
		}()
		if i%2 == 0 {
			runtime.Gosched()
		}
		publish(t, e, "/w", i)
		select {
		case b := <-done:
			if got := numbers(b.Messages); len(got) != 1 || got[0] != i {
				t.Fatalf("poll %d got %v", i, got)
			}
			c.Commit(b.Cursor)
		case <-time.After(wait):
			t.Fatalf("poll %d missed a message published as it started", i)
		}
	}
}

func testPollReplaced(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{})
	h := hub(t, e, time.Second)
	c, _, err := h.Register("p", server.KindStardust, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	_ = h.SetSubscriptions(c, []string{"/p"})
	first := make(chan server.PollEnd, 1)
	go func() {
		_, why := c.Poll(ctx, wait)
		first <- why
	}()
	waitPolling(t, c)
	second := make(chan server.Batch, 1)
	go func() {
		b, _ := c.Poll(ctx, wait)
		second <- b
	}()
	select {
	case why := <-first:
		if why != server.PollReplaced {
			t.Fatalf("first poll ended with %d, want PollReplaced", why)
		}
	case <-time.After(wait):
		t.Fatal("a second poll did not release the first")
	}
	publish(t, e, "/p", 1)
	select {
	case b := <-second:
		if fmt.Sprint(numbers(b.Messages)) != "[1]" {
			t.Fatalf("second poll got %v", numbers(b.Messages))
		}
	case <-time.After(wait):
		t.Fatal("the second poll got nothing")
	}
}

func waitPolling(t *testing.T, c *server.Client) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !c.Polling() {
		if time.Now().After(deadline) {
			t.Fatal("poll never started")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func testExpiry(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{})
	if err := e.CreateSession(ctx, server.Session{ID: "x", Kind: server.KindStardust, Timeout: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if err := e.CreateSession(ctx, server.Session{ID: "forever", Kind: server.KindLocal}); err != nil {
		t.Fatal(err)
	}
	mustSubscribe(t, e, "x", "/x")
	woke := make(chan server.Wake, 4)
	stop := e.Watch("x", collect(woke))
	stop() // a watch that ended does not keep the session alive
	woke2 := make(chan server.Wake, 4)
	h := hub(t, e, 20*time.Millisecond)
	_ = h
	deadline := time.Now().Add(wait)
	for {
		if _, err := e.Session(ctx, "x"); errors.Is(err, server.ErrUnknownClient) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an idle session did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer e.Watch("x", collect(woke2))()
	expectWake(t, woke2, server.WakeExpired)
	if aud, _ := audienceOf(t, e, "/x"); aud[server.KindStardust] != 0 {
		t.Error("an expired session is still subscribed")
	}
	if _, err := e.Session(ctx, "forever"); err != nil {
		t.Errorf("a session with no timeout expired: %v", err)
	}
}

func testHeldPollKeepsAlive(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{})
	h := hub(t, e, 20*time.Millisecond)
	c, _, err := h.Register("held", server.KindStardust, 150*time.Millisecond, "")
	if err != nil {
		t.Fatal(err)
	}
	_ = h.SetSubscriptions(c, []string{"/held"})
	done := make(chan server.PollEnd, 1)
	go func() {
		_, why := c.Poll(ctx, 600*time.Millisecond)
		done <- why
	}()
	select {
	case why := <-done:
		if why != server.PollTimeout {
			t.Fatalf("a poll held past the client timeout ended with %d, want PollTimeout", why)
		}
	case <-time.After(wait):
		t.Fatal("the poll never ended")
	}
	if ok, err := c.Exists(); !ok || err != nil {
		t.Errorf("a client expired while its poll was held: %v %v", ok, err)
	}
}

func testAddressLimits(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{})
	for i := range 3 {
		if ok, err := connCounterOf(t, e).TakeConnection(ctx, "192.0.2.9", 3); !ok || err != nil {
			t.Fatalf("connection %d refused: %v", i, err)
		}
	}
	if ok, _ := connCounterOf(t, e).TakeConnection(ctx, "192.0.2.9", 3); ok {
		t.Fatal("a fourth connection from one address was counted")
	}
	if ok, _ := connCounterOf(t, e).TakeConnection(ctx, "192.0.2.10", 3); !ok {
		t.Fatal("another address was refused")
	}
	if err := connCounterOf(t, e).ReleaseConnection(ctx, "192.0.2.9"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := connCounterOf(t, e).TakeConnection(ctx, "192.0.2.9", 3); !ok {
		t.Fatal("a released connection was not given back")
	}
	if ok, _ := connCounterOf(t, e).TakeConnection(ctx, "192.0.2.11", 0); !ok {
		t.Fatal("limit 0 must mean no limit")
	}
}

// testTwoProcesses serves one client from two processes sharing the engine
// (for engines that serve one process, the same engine twice).
func testTwoProcesses(t *testing.T, f Factory) {
	l := server.Limits{HistorySize: 5}
	e1 := f.Open(t, l)
	e2 := f.peer(t, e1, l)
	h1, h2 := hub(t, e1, time.Second), hub(t, e2, time.Second)
	c1, _, err := h1.Register("tp", server.KindBayeux, time.Minute, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.SetSubscriptions(c1, []string{"/tp/*"}); err != nil {
		t.Fatal(err)
	}
	c2, err := h2.Client("tp")
	if err != nil {
		t.Fatalf("the second process does not know the client: %v", err)
	}
	if err := c1.SetAttr("user", "bob"); err != nil {
		t.Fatal(err)
	}
	if c, _ := h2.Client("tp"); c.Attr("user") != "bob" {
		t.Error("an attribute set in one process is not seen in the other")
	}
	// Held in process 1, published in process 2.
	first := make(chan server.Batch, 1)
	go func() {
		b, _ := c1.Poll(ctx, wait)
		first <- b
	}()
	waitPolling(t, c1)
	if _, err := h2.Publish(&server.Message{Channel: "/tp/a", Data: json.RawMessage(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	var b server.Batch
	select {
	case b = <-first:
	case <-time.After(wait):
		t.Fatal("a message published in the other process did not wake the held poll")
	}
	if fmt.Sprint(numbers(b.Messages)) != "[1]" {
		t.Fatalf("got %v", numbers(b.Messages))
	}
	// Process 1 dies before committing: process 2 answers the next poll
	// with the same message.
	b2, why := c2.Poll(ctx, wait)
	if why != server.PollReady || fmt.Sprint(numbers(b2.Messages)) != "[1]" {
		t.Fatalf("the other process got %v (%d); want the uncommitted message again", numbers(b2.Messages), why)
	}
	c2.Commit(b2.Cursor)
	// A poll held in process 1 is released by a poll starting in process 2.
	released := make(chan server.PollEnd, 1)
	go func() {
		_, why := c1.Poll(ctx, wait)
		released <- why
	}()
	waitPolling(t, c1)
	second := make(chan server.Batch, 1)
	go func() {
		b, _ := c2.Poll(ctx, wait)
		second <- b
	}()
	select {
	case why := <-released:
		if why != server.PollReplaced {
			t.Fatalf("the first process's poll ended with %d, want PollReplaced", why)
		}
	case <-time.After(wait):
		t.Fatal("a poll in the other process did not release the held one")
	}
	waitPolling(t, c2)
	if _, err := h1.Publish(&server.Message{Channel: "/tp/b", Data: json.RawMessage(`{"n":2}`)}); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-second:
		if fmt.Sprint(numbers(b.Messages)) != "[2]" {
			t.Fatalf("second process got %v", numbers(b.Messages))
		}
	case <-time.After(wait):
		t.Fatal("the second process's poll got nothing")
	}
	if h, _ := h2.History("/tp/a", 0); len(h) != 1 {
		t.Errorf("history seen from the other process: %d messages", len(h))
	}
}

// testSharedSecret: an engine that has the cookie key (server.SecretSharer)
// gives every process the same one, random, from its first use on, so that
// a BAYEUX_BROWSER cookie one node issued is valid on the others.
func testSharedSecret(t *testing.T, f Factory) {
	e1 := open(t, f, server.Limits{})
	s1, ok := e1.(server.SecretSharer)
	switch {
	case !ok && f.Peer != nil:
		t.Fatal("an engine that processes share has no shared secret: their cookies would not agree")
	case !ok:
		t.Skip("the engine has no shared secret: each hub draws its own")
	}
	k1, err := s1.SharedSecret(ctx)
	if err != nil || len(k1) < 32 {
		t.Fatalf("key of %d bytes: %v", len(k1), err)
	}
	e2 := f.peer(t, e1, server.Limits{})
	if e2 != e1 {
		t.Cleanup(func() { _ = e2.Close() })
	}
	k2, err := e2.(server.SecretSharer).SharedSecret(ctx)
	if err != nil || string(k1) != string(k2) {
		t.Errorf("the second process's key differs (%v)", err)
	}
	if again, _ := s1.SharedSecret(ctx); string(again) != string(k1) {
		t.Error("the key changed between two reads")
	}
	other := open(t, f, server.Limits{})
	if k3, _ := other.(server.SecretSharer).SharedSecret(ctx); string(k3) == string(k1) {
		t.Error("two separate engines share a key: it is not random")
	}
}
