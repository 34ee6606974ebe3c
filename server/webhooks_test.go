package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/internal/leakcheck"
	"github.com/stardust-go/stardust/internal/webhooktest"
)

// webhookServer returns a server sending webhooks to a receiver, with a
// presence block on /chat/**.
func webhookServer(t *testing.T, mod ...func(*WebhookOptions)) (*Server, *webhooktest.Receiver) {
	t.Helper()
	rcv := webhooktest.New(t, "hook-secret")
	wo := &WebhookOptions{URL: rcv.URL, Secret: "hook-secret", Interval: 50 * time.Millisecond}
	for _, m := range mod {
		m(wo)
	}
	s, _ := testServer(t, Options{Webhooks: wo, Metrics: &MetricsOptions{Path: "/metrics", HealthPath: "/health"},
		Channels: []ChannelRule{{Pattern: "/chat/**", Anonymous: true, Presence: true}}})
	return s, rcv
}

// session adds a client of user subscribed to channels.
func session(t *testing.T, h *Hub, id, user string, channels ...string) *Client {
	t.Helper()
	c := h.NewClient(id, KindBayeux, time.Minute, "127.0.0.1")
	if err := h.Add(c); err != nil {
		t.Fatal(err)
	}
	if user != "" {
		if err := c.SetAttr(AttrUser, user); err != nil {
			t.Fatal(err)
		}
	}
	for _, ch := range channels {
		if _, err := h.Subscribe(c, ch); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// TestWebhooks: with the memory engine, a channel's first subscriber and
// its last, a user's first session on a presence channel and their last
// (two tabs: once), and each disconnect are sent once each, signed, in
// batches; channels without a presence block have no member events, and a
// presence channel's subscribers get no stardust.join (that is join_leave).
func TestWebhooks(t *testing.T) {
	s, rcv := webhookServer(t)
	h := s.hub
	a1 := session(t, h, "a1", "ann", "/chat/room", "/news")
	a2 := session(t, h, "a2", "ann", "/chat/room")
	b := session(t, h, "b", "bob", "/chat/room")
	want := []string{"channel_occupied /chat/room", "channel_occupied /news", "member_added /chat/room ann", "member_added /chat/room bob"}
	if got := rcv.Wait(len(want), 5*time.Second); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events: %v\nwant %v", got, want)
	}
	if b, err := h.engine.Fetch(context.Background(), "a2", 10); err != nil || len(b.Messages) != 0 {
		t.Errorf("a subscriber of the presence channel got %d messages (%v), want none", len(b.Messages), err)
	}
	if err := h.Remove(a1); err != nil { // ann still has a2
		t.Fatal(err)
	}
	if _, err := h.Unsubscribe(b, "/chat/room"); err != nil {
		t.Fatal(err)
	}
	if err := h.Remove(a2); err != nil {
		t.Fatal(err)
	}
	want = append(want, "channel_vacated /chat/room", "channel_vacated /news", "client_disconnected ann", "client_disconnected ann",
		"member_removed /chat/room ann", "member_removed /chat/room bob")
	got := rcv.Wait(len(want), 5*time.Second)
	time.Sleep(200 * time.Millisecond) // nothing more comes
	if got = rcv.Sorted(); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", slices.Sorted(slices.Values(want))) {
		t.Errorf("events: %q\nwant %q", got, slices.Sorted(slices.Values(want)))
	}
	for _, e := range rcv.Events() {
		if e.Name == "client_disconnected" && e.ClientID == "" {
			t.Errorf("client_disconnected without client_id: %+v", e)
		}
	}
	rcv.Check(t)
}

// TestWebhooksRetried: an app that answers 500 gets the same events again,
// after a backoff, until it accepts them; the failures are in /metrics.
func TestWebhooksRetried(t *testing.T) {
	s, rcv := webhookServer(t)
	rcv.FailNext(3)
	session(t, s.hub, "c1", "ann", "/chat/room")
	got := rcv.Wait(2, 10*time.Second)
	if fmt.Sprint(got) != "[channel_occupied /chat/room member_added /chat/room ann]" {
		t.Fatalf("events: %v", got)
	}
	posts, refused := rcv.Counts()
	if posts != 1 || refused != 3 {
		t.Errorf("posts %d, refused %d; want 1 and 3", posts, refused)
	}
	rcv.Check(t)
	// The app has the events; the sender counts them once it read the
	// app's answer, a moment later.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		m, missing := scrape(t, s), ""
		for _, line := range []string{"stardust_webhook_failures_total 3", "stardust_webhook_events_sent_total 2", "stardust_webhook_queue_length 0"} {
			if !strings.Contains(m, line+"\n") {
				missing = line
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q", missing)
		}
	}
}

// TestWebhooksQueueBound: events past max_queue are dropped and counted,
// and an app that never answers does not hold up publishing.
func TestWebhooksQueueBound(t *testing.T) {
	s, rcv := webhookServer(t, func(o *WebhookOptions) { o.MaxQueue = 3 })
	rcv.FailNext(1 << 30)
	for i := range 5 {
		session(t, s.hub, fmt.Sprint("c", i), "", fmt.Sprint("/news/", i))
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(scrape(t, s), `stardust_webhook_events_dropped_total{reason="queue_full"} 2`+"\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no drop counted:\n%s", scrape(t, s))
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	for range 100 {
		if _, err := s.hub.Publish(&Message{Channel: "/news/1", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	d := time.Since(start)
	if d > 2*time.Second {
		t.Errorf("100 publishes took %v with the app down", d)
	}
	t.Logf("100 publishes with the app down and the queue full: %v", d)
}

// TestWebhooksExpire: events the app has not accepted within RetryFor are
// dropped and counted, and the next ones go through.
func TestWebhooksExpire(t *testing.T) {
	s, rcv := webhookServer(t, func(o *WebhookOptions) { o.RetryFor = 300 * time.Millisecond })
	rcv.FailNext(1 << 30)
	session(t, s.hub, "c1", "", "/news")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(scrape(t, s), `stardust_webhook_events_dropped_total{reason="expired"} 1`+"\n") {
		if time.Now().After(deadline) {
			t.Fatalf("no expiry counted:\n%s", scrape(t, s))
		}
		time.Sleep(20 * time.Millisecond)
	}
	rcv.FailNext(0)
	session(t, s.hub, "c2", "", "/sports")
	if got := rcv.Wait(1, 10*time.Second); fmt.Sprint(got) != "[channel_occupied /sports]" {
		t.Errorf("events: %v", got)
	}
}

// TestWebhooksOff: no URL, no webhooks, no metrics of them.
func TestWebhooksOff(t *testing.T) {
	s, _ := testServer(t, Options{Webhooks: &WebhookOptions{}, Metrics: &MetricsOptions{Path: "/metrics"}})
	if s.webhooks != nil || strings.Contains(scrape(t, s), "webhook") {
		t.Error("webhooks on without a URL")
	}
}

func TestWebhookSignature(t *testing.T) {
	// The value of the docs' example (docs/server-api.md).
	if got := WebhookSignature("hook-secret", []byte(`{"time_ms":1,"events":[]}`)); !strings.HasPrefix(got, "sha256=") || len(got) != 71 {
		t.Errorf("signature %q", got)
	}
}

// scrape returns the server's /metrics page.
func scrape(t *testing.T, s *Server) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "/comet/metrics", nil)
	req.RemoteAddr = "127.0.0.1:1"
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	body, _ := io.ReadAll(w.Result().Body)
	return string(body)
}

// TestWebhooksEndWithServer: Close ends the webhook goroutines, a POST in
// flight to an app that does not answer included.
func TestWebhooksEndWithServer(t *testing.T) {
	hang := make(chan struct{})
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer app.Close()
	defer close(hang)
	before := runtime.NumGoroutine()
	s := New(Options{Webhooks: &WebhookOptions{URL: app.URL, Secret: "x", Interval: 20 * time.Millisecond}}, logrus.NewEntry(logrus.New()))
	session(t, s.hub, "c1", "", "/news")
	time.Sleep(200 * time.Millisecond) // the POST is in flight
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	leakcheck.Goroutines(t, before)
}

// TestWebhooksJoinLeave: on a join_leave channel, the member events are
// the joins and leaves its subscribers see, once per user.
func TestWebhooksJoinLeave(t *testing.T) {
	rcv := webhooktest.New(t, "hook-secret")
	s, _ := testServer(t, Options{Webhooks: &WebhookOptions{URL: rcv.URL, Secret: "hook-secret", Interval: 50 * time.Millisecond,
		Events: []string{WebhookMemberAdded, WebhookMemberRemoved}},
		Channels: []ChannelRule{{Pattern: "/room/*", Anonymous: true, JoinLeave: true}}})
	watcher := session(t, s.hub, "w", "", "/room/1")
	a1 := session(t, s.hub, "a1", "ann", "/room/1")
	session(t, s.hub, "a2", "ann", "/room/1")
	if _, err := s.hub.Unsubscribe(a1, "/room/1"); err != nil {
		t.Fatal(err)
	}
	rcv.Wait(1, 5*time.Second)
	time.Sleep(300 * time.Millisecond) // a second one would come by now
	if got := rcv.Sorted(); fmt.Sprint(got) != "[member_added /room/1 ann]" {
		t.Errorf("events: %v", got)
	}
	if b, err := s.hub.engine.Fetch(context.Background(), watcher.ID(), 10); err != nil || len(b.Messages) != 1 ||
		!strings.Contains(string(b.Messages[0].Data), `"stardust.join"`) {
		t.Errorf("the watcher got %v (%v), want one stardust.join", b.Messages, err)
	}
	rcv.Check(t)
}
