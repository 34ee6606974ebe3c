package redis_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// The limits of server.Limits in the Redis engine (issue 17, point 2).
// The shared conformance suite checks them against every engine; these
// check the Redis side of them, its counts kept in Redis included.

func TestMaxSubscriptions(t *testing.T) {
	srv := redistest.Start(t)
	e := open(t, srv.URL, "maxsubs:", server.Limits{MaxSubscriptions: 3})
	if err := e.CreateSession(ctx, server.Session{ID: "s", Kind: server.KindBayeux}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/a", "/b/*", "/c/**"} {
		if ok, err := e.Subscribe(ctx, "s", p); !ok || err != nil {
			t.Fatalf("Subscribe(%s) = %v, %v", p, ok, err)
		}
	}
	if ok, err := e.Subscribe(ctx, "s", "/d"); ok || !errors.Is(err, server.ErrTooManySubscriptions) {
		t.Errorf("a 4th subscription with a limit of 3: %v, %v; want ErrTooManySubscriptions", ok, err)
	}
	if ok, err := e.Subscribe(ctx, "s", "/a"); ok || err != nil {
		t.Errorf("subscribing again to one it has, at the limit: %v, %v; want false, nil", ok, err)
	}
	if subs, _ := e.Subscriptions(ctx, "s"); fmt.Sprint(subs) != "[/a /b/* /c/**]" {
		t.Errorf("subscriptions after the refusal: %v", subs)
	}
	if st, _ := e.Stats(ctx); st.Subscriptions != 3 {
		t.Errorf("Stats.Subscriptions = %d; want 3", st.Subscriptions)
	}
	if ok, err := e.Unsubscribe(ctx, "s", "/a"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if ok, err := e.Subscribe(ctx, "s", "/d"); !ok || err != nil {
		t.Errorf("after an unsubscribe, a new one: %v, %v", ok, err)
	}
}

func TestMaxChannels(t *testing.T) {
	srv := redistest.Start(t)
	e := open(t, srv.URL, "maxch:", server.Limits{HistorySize: 5, MaxChannels: 2, ChannelTimeout: time.Minute})
	if err := e.CreateSession(ctx, server.Session{ID: "s", Kind: server.KindBayeux}); err != nil {
		t.Fatal(err)
	}
	mustSub(t, e, "s", "/c")
	publishOn(t, e, "/a", `{"n":1}`)
	publishOn(t, e, "/b", `{"n":2}`)
	_, err := e.Publish(ctx, &server.Message{Channel: "/c", Data: json.RawMessage(`{"n":3}`)})
	if !errors.Is(err, server.ErrTooManyChannels) {
		t.Fatalf("a 3rd channel with history, limit 2: %v; want ErrTooManyChannels", err)
	}
	if h, _ := e.History(ctx, "/c", 0); len(h) != 0 {
		t.Errorf("the refused message is in /c's history: %d", len(h))
	}
	if b, _ := e.Fetch(ctx, "s", 0); len(b.Messages) != 0 {
		t.Errorf("the refused message reached a subscriber: %d", len(b.Messages))
	}
	publishOn(t, e, "/a", `{"n":4}`) // a channel that has history already
	// Channels unused for the channel timeout go, and make room.
	if _, err := e.Sweep(ctx, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	publishOn(t, e, "/d", `{"n":5}`)
	if st, _ := e.Stats(ctx); st.HistoryBytes <= 0 || st.HistoryBytes > 200 {
		t.Errorf("HistoryBytes of one message: %d", st.HistoryBytes)
	}
}

func TestMaxHistoryBytes(t *testing.T) {
	srv := redistest.Start(t)
	const bound = 4000
	e := open(t, srv.URL, "maxhb:", server.Limits{HistorySize: 100, MaxHistoryBytes: bound, ChannelTimeout: time.Minute})
	if err := e.CreateSession(ctx, server.Session{ID: "s", Kind: server.KindBayeux}); err != nil {
		t.Fatal(err)
	}
	mustSub(t, e, "s", "/h/1")
	data := `{"pad":"` + strings.Repeat("x", 300) + `"}`
	for _, ch := range []string{"/h/1", "/h/2", "/h/3"} {
		for range 5 {
			publishOn(t, e, ch, data)
		}
		time.Sleep(2 * time.Millisecond) // distinct publish times
	}
	st, err := e.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.HistoryBytes > bound || st.HistoryBytes < 5*300 {
		t.Errorf("HistoryBytes = %d; want under %d and at least one channel's", st.HistoryBytes, bound)
	}
	if st.HistoryTrimmed != 1 {
		t.Errorf("HistoryTrimmed = %d; want 1 (/h/1, the least recently published)", st.HistoryTrimmed)
	}
	if h, _ := e.History(ctx, "/h/1", 0); len(h) != 0 {
		t.Errorf("/h/1 kept %d messages of history; it was published to least recently", len(h))
	}
	for _, ch := range []string{"/h/2", "/h/3"} {
		if h, _ := e.History(ctx, ch, 0); len(h) != 5 {
			t.Errorf("%s kept %d of its 5 messages", ch, len(h))
		}
	}
	// What was queued for a subscriber is not history: it is all there.
	if b, _ := e.Fetch(ctx, "s", 0); len(b.Messages) != 5 {
		t.Errorf("the /h/1 subscriber got %d of 5 messages", len(b.Messages))
	}
	// The count follows the history trimmed by its size and swept.
	for range 150 {
		publishOn(t, e, "/h/3", `{}`)
	}
	if _, err := e.Sweep(ctx, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.Stats(ctx); st.HistoryBytes != 0 || st.Channels != 1 {
		t.Errorf("after every channel's timeout: HistoryBytes %d, Channels %d; want 0 and 1 (/h/1 has a subscriber)", st.HistoryBytes, st.Channels)
	}
}

func mustSub(t *testing.T, e server.Engine, id, pattern string) {
	t.Helper()
	if _, err := e.Subscribe(ctx, id, pattern); err != nil {
		t.Fatal(err)
	}
}

// TestChannelsListedInChunks: the channel list is read 1000 names per
// command (one command for all of them held Redis for every one else),
// from the first name with the prefix.
func TestChannelsListedInChunks(t *testing.T) {
	srv := redistest.Start(t)
	e := open(t, srv.URL, "chl:", server.Limits{HistorySize: 1, ChannelTimeout: time.Minute})
	forEach(2500, func(i int) {
		if _, err := e.Publish(ctx, &server.Message{Channel: fmt.Sprintf("/l/%d", i), Data: json.RawMessage(`{}`)}); err != nil {
			t.Error(err)
		}
	})
	publishOn(t, e, "/k", `{}`)
	publishOn(t, e, "/m", `{}`)
	all, err := e.Channels(ctx, "")
	if err != nil || len(all) != 2502 || all[0] != "/k" || all[2501] != "/m" || !slices.IsSorted(all) {
		t.Fatalf("Channels(\"\") = %d names, %v; want 2502, sorted", len(all), err)
	}
	if l, _ := e.Channels(ctx, "/l/"); len(l) != 2500 || l[0] != "/l/0" {
		t.Errorf("Channels(/l/) = %d names from %v; want 2500", len(l), l[:min(len(l), 1)])
	}
	if l, _ := e.Channels(ctx, "/l/1"); len(l) != 1111 { // /l/1, /l/10-19, /l/100-199, /l/1000-1999
		t.Errorf("Channels(/l/1) = %d names; want 1111", len(l))
	}
	if _, err := e.Sweep(ctx, time.Now().Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ { // the sweep drops 100 idle channels per call, 20 calls per Sweep
		if all, _ = e.Channels(ctx, ""); len(all) == 0 {
			break
		}
		if _, err := e.Sweep(ctx, time.Now().Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if len(all) != 0 {
		t.Errorf("after the channel timeout: %d channels listed", len(all))
	}
}

// TestHistoryReadInChunks: a history longer than one command reads (100)
// comes back whole and in order, from any point.
func TestHistoryReadInChunks(t *testing.T) {
	srv := redistest.Start(t)
	e := open(t, srv.URL, "hist:", server.Limits{HistorySize: 250})
	var seqs []uint64
	for i := range 260 {
		seqs = append(seqs, publishOn(t, e, "/h", fmt.Sprintf(`{"n":%d}`, i)).Seq)
	}
	h, err := e.History(ctx, "/h", 0)
	if err != nil || len(h) != 250 || string(h[0].Data) != `{"n":10}` || string(h[249].Data) != `{"n":259}` {
		t.Fatalf("History = %d messages, %v; want the newest 250 in order", len(h), err)
	}
	for i := 1; i < len(h); i++ {
		if h[i].Seq <= h[i-1].Seq {
			t.Fatalf("out of order at %d", i)
		}
	}
	if h, _ := e.History(ctx, "/h", seqs[149]); len(h) != 110 || string(h[0].Data) != `{"n":150}` {
		t.Errorf("History after the 150th = %d messages; want 110 from {\"n\":150}", len(h))
	}
}
