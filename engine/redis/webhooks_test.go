package redis_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/internal/webhooktest"
	"github.com/stardust-go/stardust/server"
)

// hookNode is a process sending webhooks to rcv, with a presence block on
// /chat/**.
func hookNode(t *testing.T, url string, rcv *webhooktest.Receiver) *server.Server {
	s, _ := apiNode(t, url, func(o *server.Options) {
		o.Channels = []server.ChannelRule{{Pattern: "/chat/**", Anonymous: true, Presence: true}}
		o.Webhooks = &server.WebhookOptions{URL: rcv.URL, Secret: "s3cret", Interval: 50 * time.Millisecond,
			Timeout: 500 * time.Millisecond}
	})
	return s
}

// hookSession adds a session of user on s, subscribed to channel.
func hookSession(t *testing.T, s *server.Server, id, user, channel string, timeout time.Duration) *server.Client {
	t.Helper()
	h := s.Hub()
	c := h.NewClient(id, server.KindBayeux, timeout, "127.0.0.1")
	if err := h.Add(c); err != nil {
		t.Fatal(err)
	}
	if err := c.SetAttr(server.AttrUser, user); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Subscribe(c, channel); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestWebhooksAcrossProcesses: two processes on one Redis, sessions of the
// same users on both: each transition is sent once, not once per process.
func TestWebhooksAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	rcv := webhooktest.New(t, "s3cret")
	a, b := hookNode(t, srv.URL, rcv), hookNode(t, srv.URL, rcv)
	a1 := hookSession(t, a, "a1", "ann", "/chat/room", time.Minute)
	b1 := hookSession(t, b, "b1", "ann", "/chat/room", time.Minute)
	b2 := hookSession(t, b, "b2", "bob", "/chat/room", time.Minute)
	want := "[channel_occupied /chat/room member_added /chat/room ann member_added /chat/room bob]"
	if got := rcv.Wait(3, 10*time.Second); fmt.Sprint(got) != want {
		t.Fatalf("events: %v\nwant %s", got, want)
	}
	for _, rm := range []struct {
		s *server.Server
		c *server.Client
	}{{a, a1}, {b, b1}, {a, b2}} { // b2 removed through the other process
		if err := rm.s.Hub().Remove(rm.c); err != nil {
			t.Fatal(err)
		}
	}
	want = "[channel_occupied /chat/room channel_vacated /chat/room client_disconnected ann client_disconnected ann " +
		"client_disconnected bob member_added /chat/room ann member_added /chat/room bob member_removed /chat/room ann member_removed /chat/room bob]"
	rcv.Wait(10, 10*time.Second)
	time.Sleep(300 * time.Millisecond) // a second copy would come by now
	if got := rcv.Sorted(); fmt.Sprint(got) != want {
		t.Errorf("events: %v\nwant %s", got, want)
	}
	rcv.Check(t)
}

// TestWebhooksProcessDies: the events queued by a process that ends before
// the app takes them are sent by the other, and the sessions of the ended
// process, once expired, are announced by the other's sweep. (Close hands
// the lease over; integration's TestReadmeWebhooks SIGKILLs the process,
// whose lease then runs out.)
func TestWebhooksProcessDies(t *testing.T) {
	srv := redistest.Start(t)
	rcv := webhooktest.New(t, "s3cret")
	rcv.FailNext(1 << 30) // the app is down
	a := hookNode(t, srv.URL, rcv)
	hookSession(t, a, "a1", "ann", "/chat/room", time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for srv.Do(t, "LLEN", "api:wq") != "2" {
		if time.Now().After(deadline) {
			t.Fatalf("events not queued in Redis: %s", srv.Do(t, "LLEN", "api:wq"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.Close() // its sessions stay
	b := hookNode(t, srv.URL, rcv)
	rcv.FailNext(0) // the app is back
	want := "[channel_occupied /chat/room channel_vacated /chat/room client_disconnected ann member_added /chat/room ann member_removed /chat/room ann]"
	rcv.Wait(5, 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	if got := rcv.Sorted(); fmt.Sprint(got) != want {
		t.Errorf("events: %v\nwant %s", got, want)
	}
	rcv.Check(t)
	_ = b
}
