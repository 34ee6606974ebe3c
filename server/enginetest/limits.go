package enginetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/server"
)

// The cases of the bounds on what one client can grow: subscriptions per
// session, channels kept and history bytes (Limits.MaxSubscriptions,
// MaxChannels, MaxHistoryBytes), with small limits so that they run fast.

func testMaxSubscriptions(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{MaxSubscriptions: 3})
	mustCreate(t, e, "m", server.KindBayeux)
	mustCreate(t, e, "other", server.KindBayeux)
	mustSubscribe(t, e, "m", "/ms/a", "/ms/b/*", "/ms/c/**")
	added, err := e.Subscribe(ctx, "m", "/ms/d")
	if !errors.Is(err, server.ErrTooManySubscriptions) || added {
		t.Fatalf("fourth subscription: %v, %v; want ErrTooManySubscriptions", added, err)
	}
	if added, err := e.Subscribe(ctx, "m", "/ms/a"); added || err != nil {
		t.Errorf("subscribing again at the limit: %v, %v; want false, nil", added, err)
	}
	subs, err := e.Subscriptions(ctx, "m")
	if err != nil || fmt.Sprint(subs) != "[/ms/a /ms/b/* /ms/c/**]" {
		t.Fatalf("subscriptions after the refusal = %v, %v; want the first three", subs, err)
	}
	// Nothing already accepted is lost, and the refused one is not there.
	publish(t, e, "/ms/a", 1)
	publish(t, e, "/ms/b/x", 2)
	publish(t, e, "/ms/c/x/y", 3)
	publish(t, e, "/ms/d", 4)
	if got := numbers(take(t, e, "m").Messages); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("delivered %v; want [1 2 3]", got)
	}
	// The bound is per session, and a freed place can be taken again.
	mustSubscribe(t, e, "other", "/ms/d", "/ms/e", "/ms/f")
	if _, err := e.Unsubscribe(ctx, "m", "/ms/a"); err != nil {
		t.Fatal(err)
	}
	if added, err := e.Subscribe(ctx, "m", "/ms/d"); !added || err != nil {
		t.Errorf("subscribing after an unsubscribe: %v, %v", added, err)
	}
	if st, err := statsOf(t, e); err != nil || st.Subscriptions != 6 {
		t.Errorf("Stats.Subscriptions = %d, %v; want 6", st.Subscriptions, err)
	}
}

func testMaxChannels(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{HistorySize: 2, MaxChannels: 3})
	mustCreate(t, e, "w", server.KindBayeux)
	mustSubscribe(t, e, "w", "/mc/**")
	for i, ch := range []string{"/mc/a", "/mc/b", "/mc/c"} {
		publish(t, e, ch, i)
	}
	n, err := e.Publish(ctx, &server.Message{Channel: "/mc/d", Data: json.RawMessage(`{"n":9}`)})
	if !errors.Is(err, server.ErrTooManyChannels) || n != 0 {
		t.Fatalf("publish to a fourth channel: %d, %v; want ErrTooManyChannels", n, err)
	}
	publish(t, e, "/mc/a", 3) // channels kept already still take publishes
	if got := numbers(take(t, e, "w").Messages); fmt.Sprint(got) != "[0 1 2 3]" {
		t.Errorf("delivered %v; want [0 1 2 3]: the refused publish reaches no one", got)
	}
	if h, _ := e.History(ctx, "/mc/d", 0); len(h) != 0 {
		t.Errorf("the refused publish was kept: %v", numbers(h))
	}
	if names, _ := e.Channels(ctx, "/mc/"); fmt.Sprint(names) != "[/mc/a /mc/b /mc/c]" {
		t.Errorf("Channels = %v", names)
	}
	cc, ok := e.(server.ChannelCreator)
	if !ok {
		t.Log("the engine is no ChannelCreator: CreateChannels not tested")
		return
	}
	if n, err := cc.CreateChannels(ctx, []string{"/mc/a", "/mc/e"}, -1); !errors.Is(err, server.ErrTooManyChannels) || n != 0 {
		t.Errorf("CreateChannels past MaxChannels = %d, %v; want ErrTooManyChannels", n, err)
	}
	if n, err := cc.CreateChannels(ctx, []string{"/mc/a", "/mc/b"}, 0); n != 0 || err != nil {
		t.Errorf("CreateChannels of kept channels = %d, %v; want 0, nil", n, err)
	}
	if names, _ := e.Channels(ctx, "/mc/"); len(names) != 3 {
		t.Errorf("a refused CreateChannels added channels: %v", names)
	}
	e2 := open(t, f, server.Limits{HistorySize: 2, MaxChannels: 10})
	c2 := e2.(server.ChannelCreator)
	if n, err := c2.CreateChannels(ctx, []string{"/cc/x", "/cc/y", "/cc/z"}, 2); !errors.Is(err, server.ErrChannelBudget) || n != 0 {
		t.Errorf("CreateChannels over budget = %d, %v; want ErrChannelBudget", n, err)
	}
	if names, _ := e2.Channels(ctx, "/cc/"); len(names) != 0 {
		t.Errorf("a CreateChannels over budget added channels: %v", names)
	}
	if n, err := c2.CreateChannels(ctx, []string{"/cc/x", "/cc/y", "/cc/x"}, 2); n != 2 || err != nil {
		t.Errorf("CreateChannels = %d, %v; want 2 (a name given twice counts once)", n, err)
	}
	if n, err := c2.CreateChannels(ctx, []string{"/cc/x", "/cc/y", "/cc/z"}, 1); n != 1 || err != nil {
		t.Errorf("CreateChannels = %d, %v; want 1: only /cc/z is new", n, err)
	}
	if names, _ := e2.Channels(ctx, "/cc/"); fmt.Sprint(names) != "[/cc/x /cc/y /cc/z]" {
		t.Errorf("Channels after CreateChannels = %v", names)
	}
	if _, err := c2.CreateChannels(ctx, []string{"/cc/*"}, -1); !errors.Is(err, server.ErrBadChannel) {
		t.Errorf("CreateChannels of a pattern: %v, want ErrBadChannel", err)
	}
}

// testHistoryBytes publishes two messages of about 1 KB to each of 30
// channels in turn under a 10 KB bound: the oldest channels lose their whole
// history, the newest keep theirs, and every message still reaches its
// subscriber.
func testHistoryBytes(t *testing.T, f Factory) {
	const bound = 10000
	e := open(t, f, server.Limits{HistorySize: 5, MaxHistoryBytes: bound})
	mustCreate(t, e, "w", server.KindStardust)
	mustSubscribe(t, e, "w", "/hb/**")
	data := json.RawMessage(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)
	const n = 30
	for i := range n {
		for range 2 {
			if _, err := e.Publish(ctx, &server.Message{Channel: fmt.Sprint("/hb/", i), Data: data}); err != nil {
				t.Fatal(err)
			}
		}
		if st, err := statsOf(t, e); err != nil || st.HistoryBytes > bound || st.HistoryBytes <= 0 {
			t.Fatalf("after channel %d: HistoryBytes = %d, %v; want 1 to %d", i, st.HistoryBytes, err, bound)
		}
		time.Sleep(2 * time.Millisecond) // an engine may order channels by publish time to the millisecond
	}
	kept := make([]int, n)
	for i := range n {
		h, err := e.History(ctx, fmt.Sprint("/hb/", i), 0)
		if err != nil {
			t.Fatal(err)
		}
		kept[i] = len(h)
	}
	// Whole channels go, oldest first: what is kept is the newest channels,
	// each with both its messages.
	first := n
	for i, k := range kept {
		if k != 0 && k != 2 {
			t.Fatalf("channel %d kept %d messages; want all or nothing: %v", i, k, kept)
		}
		if k == 2 && first == n {
			first = i
		}
		if k == 0 && first < n {
			t.Fatalf("channel %d lost its history before older ones: %v", i, kept)
		}
	}
	if first == n || first < n-5 || first > n-2 {
		t.Fatalf("kept %v; want the last 2 to 5 channels' history under %d bytes", kept, bound)
	}
	st, _ := statsOf(t, e)
	if st.HistoryTrimmed != uint64(first) {
		t.Errorf("HistoryTrimmed = %d; want %d (one per channel dropped)", st.HistoryTrimmed, first)
	}
	// A message larger than the bound is delivered but not kept.
	huge := json.RawMessage(`{"pad":"` + strings.Repeat("y", 2*bound) + `"}`)
	if k, err := e.Publish(ctx, &server.Message{Channel: "/hb/huge", Data: huge}); k != 1 || err != nil {
		t.Fatalf("publish of a message over the bound: %d, %v; want it queued for 1", k, err)
	}
	// An engine may leave what one publish cannot drop to its next sweep.
	if _, err := e.Sweep(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	if st, _ := statsOf(t, e); st.HistoryBytes > bound {
		t.Errorf("HistoryBytes = %d after a message over the bound and a sweep", st.HistoryBytes)
	}
	if got := len(take(t, e, "w").Messages); got != 2*n+1 {
		t.Errorf("the subscriber got %d messages; want %d: trimming history loses no delivery", got, 2*n+1)
	}
}

// testChannelHistory: Limits.ChannelHistory sizes the history of the
// channels its rules match, the first match deciding, and the others keep
// HistorySize ([[channels]] history_size).
func testChannelHistory(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{HistorySize: 3, ChannelHistory: []server.HistoryRule{
		{Pattern: "/ch/live/*", Size: 0}, {Pattern: "/ch/**", Size: 5}}})
	for i := range 8 {
		for _, ch := range []string{"/ch/live/feed", "/ch/chat/x", "/other"} {
			publish(t, e, ch, i)
		}
	}
	for ch, want := range map[string]string{"/ch/live/feed": "[]", "/ch/chat/x": "[3 4 5 6 7]", "/other": "[5 6 7]"} {
		h, err := e.History(ctx, ch, 0)
		if err != nil || fmt.Sprint(numbers(h)) != want {
			t.Errorf("History(%s) = %v, %v; want %s", ch, numbers(h), err, want)
		}
	}
}

// testHistoryTTL: a rule's TTL ([[channels]] history_ttl): messages older
// than it are not returned by History, and the others still are; a channel
// without a TTL keeps its messages. The bytes of the expired ones are
// given back.
func testHistoryTTL(t *testing.T, f Factory) {
	e := open(t, f, server.Limits{HistorySize: 10, ChannelHistory: []server.HistoryRule{
		{Pattern: "/ttl/**", Size: 10, TTL: 1500 * time.Millisecond}}})
	for i := range 3 {
		publish(t, e, "/keep", i)
	}
	before, err := statsOf(t, e)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publish(t, e, "/ttl/a", i)
	}
	time.Sleep(1600 * time.Millisecond)
	publish(t, e, "/ttl/a", 3)
	for ch, want := range map[string]string{"/ttl/a": "[3]", "/keep": "[0 1 2]"} {
		h, err := e.History(ctx, ch, 0)
		if err != nil || fmt.Sprint(numbers(h)) != want {
			t.Errorf("History(%s) = %v, %v; want %s", ch, numbers(h), err, want)
		}
	}
	time.Sleep(1600 * time.Millisecond)
	if h, err := e.History(ctx, "/ttl/a", 0); err != nil || len(h) != 0 {
		t.Errorf("History after the TTL = %v, %v; want none", numbers(h), err)
	}
	if after, err := statsOf(t, e); err != nil || after.HistoryBytes != before.HistoryBytes {
		t.Errorf("history bytes %d (%v) once /ttl/a expired, want %d as before it", after.HistoryBytes, err, before.HistoryBytes)
	}
}
