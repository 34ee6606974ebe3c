package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The bounds on what one client can grow (issue 17, point 2), through the
// protocols: subscriptions per client, channels kept, new channels per
// address, history bytes. Each refusal is a 4xx JSON error or an
// unsuccessful Bayeux reply naming the limit, and loses nothing accepted.

const subsLimitMsg = "too many subscriptions: at most 128 per client (comet.max_subscriptions)"

// TestBayeuxSubscriptionLimit: a session subscribing 129 patterns gets a
// 403 naming the limit on the 129th, keeps the first 128 and its session.
func TestBayeuxSubscriptionLimit(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	id := b.handshake()
	batch := make([]map[string]any, 128)
	for i := range batch {
		sub := fmt.Sprintf("/s/%d", i)
		if i%2 == 1 {
			sub += "/*" // patterns count as names do
		}
		batch[i] = map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": sub}
	}
	for i, r := range b.post(batch...) {
		if r["successful"] != true {
			t.Fatalf("subscription %d refused: %v", i, r)
		}
	}
	r := b.subscribe(id, "/s/128")
	wantError(t, r, "403:/s/128:"+subsLimitMsg)
	if r["advice"] != nil {
		t.Errorf("a refused subscribe carries advice %v: the session must go on as it was", r["advice"])
	}
	c := clientOf(b.s.Hub(), id)
	subs, _ := c.Subscriptions()
	if len(subs) != 128 || !strings.Contains(strings.Join(subs, " "), "/s/0 ") {
		t.Fatalf("after the refusal the client has %d subscriptions; want the first 128", len(subs))
	}
	if names, _ := b.s.Hub().Channels("/s/"); len(names) != 64 {
		t.Errorf("%d channels under /s/; want the 64 subscribed by name, none for the refused one", len(names))
	}
	// A message subscribing two with one place free takes none.
	b.post(map[string]any{"channel": "/meta/unsubscribe", "clientId": id, "subscription": "/s/0"})
	wantError(t, b.subscribe(id, "/s/x", "/s/y"), "403:/s/y:too many subscriptions")
	if subs, _ := c.Subscriptions(); len(subs) != 127 || strings.Contains(strings.Join(subs, " "), "/s/x") {
		t.Errorf("a refused subscribe message left %d subscriptions (/s/x among them?): %v", len(subs), subs)
	}
	// Still subscribed and connected: a publish reaches it.
	if _, err := b.s.Hub().Publish(&Message{Channel: "/s/3/z", Data: json.RawMessage(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	replies := b.post(connectMsg(id, 0))
	if len(replies) != 2 || replies[0]["channel"] != "/s/3/z" || replies[1]["successful"] != true {
		t.Errorf("connect after the refusals = %v; want the message and a successful connect", replies)
	}
}

// TestStardustSubscriptionLimit: a poll of more channels than the client
// may subscribe to is refused (403 JSON naming the limit) and leaves the
// client's subscriptions as they were.
func TestStardustSubscriptionLimit(t *testing.T) {
	s, ts := testServer(t, Options{PollTimeout: 100 * time.Millisecond, Hub: HubOptions{MaxSubscriptions: 2}})
	base := ts.URL + "/comet/channel/"
	if resp, body := get(t, base+"a/stream/7"); resp.StatusCode != 200 {
		t.Fatalf("first poll: %d %s", resp.StatusCode, body)
	}
	resp, body := get(t, base+"a+b+c/stream/7")
	var e errorBody
	if resp.StatusCode != http.StatusForbidden || json.Unmarshal(body, &e) != nil ||
		e.Error != "too many subscriptions: at most 2 per client (comet.max_subscriptions)" {
		t.Fatalf("poll of 3 channels with at most 2: %d %s", resp.StatusCode, body)
	}
	wantJSONHeaders(t, resp)
	subs, _ := clientOf(s.Hub(), "7").Subscriptions()
	if fmt.Sprint(subs) != "[/stardust/a]" {
		t.Fatalf("subscriptions after the refused poll = %v; want [/stardust/a]", subs)
	}
	if names, _ := s.Hub().Channels("/stardust/"); len(names) != 1 {
		t.Errorf("the refused poll added channels: %v", names)
	}
	if resp, body := get(t, base+"a+b/stream/7"); resp.StatusCode != 200 {
		t.Errorf("a poll within the limit: %d %s", resp.StatusCode, body)
	}
}

// TestChannelLimitPublishesNothing: a Stardust publish to A+B that would
// pass MaxChannels publishes to neither; Bayeux is refused the same way.
func TestChannelLimitPublishesNothing(t *testing.T) {
	b := newBX(t, BayeuxOptions{}, func(o *Options) { o.Hub.MaxChannels = 2 })
	h := b.s.Hub()
	base := b.ts.URL + "/comet/channel/"
	id := b.handshake()
	if r := b.subscribe(id, "/stardust/*"); r["successful"] != true {
		t.Fatal(r)
	}
	if resp, body := postForm(t, base+"a", `{"n":1}`); resp.StatusCode != 200 {
		t.Fatalf("publish to one channel: %d %s", resp.StatusCode, body)
	}
	resp, body := postForm(t, base+"a+b+c", `{"n":2}`)
	var e errorBody
	if resp.StatusCode != http.StatusForbidden || json.Unmarshal(body, &e) != nil ||
		e.Error != "too many channels: the server keeps at most 2 (comet.max_channels)" {
		t.Fatalf("publish past MaxChannels: %d %s", resp.StatusCode, body)
	}
	if n := len(history(t, h, "/stardust/a")); n != 1 {
		t.Errorf("channel a keeps %d messages; want 1: the refused request published to it", n)
	}
	pub := func(ch string) map[string]any {
		return b.post(map[string]any{"channel": ch, "clientId": id, "data": map[string]any{"n": 3}})[0]
	}
	if r := pub("/stardust/d"); r["successful"] != true {
		t.Fatalf("publish to the second channel: %v", r)
	}
	wantError(t, pub("/stardust/e"), "403:/stardust/e:too many channels")
	replies := b.post(connectMsg(id, 0))
	if len(replies) != 3 || replies[0]["channel"] != "/stardust/a" || replies[1]["channel"] != "/stardust/d" ||
		replies[2]["successful"] != true {
		t.Errorf("the subscriber got %v; want only the accepted messages", replies)
	}
	// Publishes to the channels kept go on.
	if resp, body := postForm(t, base+"a", `{"n":4}`); resp.StatusCode != 200 {
		t.Errorf("publish to a kept channel: %d %s", resp.StatusCode, body)
	}
}

// TestAddressChannelRate: one address adding channels faster than its
// bucket allows gets 429 with Retry-After (Bayeux: 403), and nothing of
// the refused request happens.
func TestAddressChannelRate(t *testing.T) {
	b := newBX(t, BayeuxOptions{AnonPublish: true}, func(o *Options) {
		o.Hub.AddressChannelRate, o.Hub.AddressChannelBurst = 0.001, 3
	})
	h := b.s.Hub()
	base := b.ts.URL + "/comet/channel/"
	if resp, body := postForm(t, base+"a+b", `{"n":1}`); resp.StatusCode != 200 {
		t.Fatalf("two new channels: %d %s", resp.StatusCode, body)
	}
	resp, body := postForm(t, base+"a+c+d", `{"n":2}`)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(string(body), "too many new channels: at most 0.001 a second from one address (comet.address_channel_rate)") {
		t.Fatalf("two more with one token left: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if n := len(history(t, h, "/stardust/a")); n != 1 {
		t.Errorf("channel a keeps %d messages; want 1", n)
	}
	if resp, body := postForm(t, base+"a+b", `{"n":3}`); resp.StatusCode != 200 {
		t.Errorf("channels kept already cost nothing: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(t, base+"a+e+f/stream/9"); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a poll adding two channels with one token: %d %s", resp.StatusCode, body)
	}
	r := b.post(map[string]any{"channel": "/x/1", "data": map[string]any{"n": 1}})[0]
	if r["successful"] != true {
		t.Fatalf("the last token: %v", r)
	}
	wantError(t, b.post(map[string]any{"channel": "/x/2", "data": map[string]any{"n": 1}})[0],
		"403:/x/2:too many new channels")
}

// TestHistoryBytesBound publishes big messages to many channels: the history
// stays under its bound, the oldest channels' histories go first, and the
// trims are counted as incidents.
func TestHistoryBytesBound(t *testing.T) {
	const bound = 100 << 10
	s, _ := testServer(t, Options{Hub: HubOptions{HistorySize: 10, MaxHistoryBytes: bound}})
	h := s.Hub()
	data := json.RawMessage(`{"pad":"` + strings.Repeat("x", 5000) + `"}`)
	for i := range 200 {
		for range 3 {
			if _, err := h.Publish(&Message{Channel: fmt.Sprint("/stardust/c", i), Data: data}); err != nil {
				t.Fatal(err)
			}
		}
		if st := stats(t, h); st.HistoryBytes > bound {
			t.Fatalf("after channel %d: %d history bytes, over %d", i, st.HistoryBytes, bound)
		}
	}
	if n := len(history(t, h, "/stardust/c0")); n != 0 {
		t.Errorf("the oldest channel keeps %d messages", n)
	}
	if n := len(history(t, h, "/stardust/c199")); n != 3 {
		t.Errorf("the newest channel keeps %d messages; want 3", n)
	}
	st := stats(t, h)
	if st.Trimmed < 190 || st.HistoryMax != bound {
		t.Errorf("Stats: %d trimmed, bound %d", st.Trimmed, st.HistoryMax)
	}
	s.incidents.flushCounters(h)
	if got := s.incidents.totals[IncidentHistoryTrimmed]; got != st.Trimmed {
		t.Errorf("incident %s = %d; want %d", IncidentHistoryTrimmed, got, st.Trimmed)
	}
}

func TestTrimCount(t *testing.T) {
	var c trimCount
	for _, step := range []struct {
		saw, want uint64
	}{{50, 0}, {53, 3}, {53, 3}, {2, 5}, {4, 7}} { // a shared engine's count from before, then a reset
		c.saw(step.saw)
		if got := c.increase(); got != step.want {
			t.Fatalf("after %d: increase %d, want %d", step.saw, got, step.want)
		}
	}
}
