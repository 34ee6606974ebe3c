package redis_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// Issue 21, point 3: the limits are kept in Redis, so that three processes
// on one Redis allow exactly what one process allows, wherever the client
// lands: sessions per address, new sessions a second per address,
// sessions per user, new channels per address.

// threeHubs is three hubs, each with its own engine (apiEngine's) on one
// Redis and prefix.
func threeHubs(t *testing.T, o server.HubOptions) []*server.Hub {
	t.Helper()
	srv := redistest.Start(t)
	prefix := fmt.Sprintf("lim%d:", prefixes.Add(1))
	var hubs []*server.Hub
	for range 3 {
		e := apiEngine(t, srv.URL, prefix, o.EngineLimits())
		o.Engine = e
		h := server.NewHub(o, logrus.NewEntry(logrus.New()))
		t.Cleanup(h.Close) // and its engine
		hubs = append(hubs, h)
	}
	return hubs
}

// admitted makes sessions id0, id1... from addr (of user, if not "")
// round robin on hubs, and returns how many were admitted; every refusal
// must be ErrTooMany (a limit), never another error.
func admitted(t *testing.T, hubs []*server.Hub, n int, addr, user string) int {
	t.Helper()
	ok := 0
	for i := range n {
		h := hubs[i%len(hubs)]
		c := h.NewClient(fmt.Sprintf("%s-%s-%d", addr, user, i), server.KindBayeux, time.Minute, addr)
		if user != "" {
			_ = c.SetAttr(server.AttrUser, user)
		}
		switch err := h.Add(c); {
		case err == nil:
			ok++
		case !errors.Is(err, server.ErrTooMany):
			t.Fatalf("session %d: %v; want ErrTooMany (a limit)", i, err)
		}
	}
	return ok
}

func TestSharedAddressSessionCap(t *testing.T) {
	hubs := threeHubs(t, server.HubOptions{AddressMaxSessions: 5, AddressSessionRate: -1, UserMaxSessions: -1})
	if got := admitted(t, hubs, 12, "198.51.100.1", ""); got != 5 {
		t.Errorf("three processes admitted %d sessions from one address; want 5, as one process", got)
	}
	if got := admitted(t, hubs, 2, "198.51.100.2", ""); got != 2 {
		t.Errorf("another address: %d admitted, want 2", got)
	}
	// A session removed (by any process) gives its place back, once past
	// the grace that covers sessions being created.
	c, err := hubs[1].Client("198.51.100.1--0")
	if err != nil {
		t.Fatal(err)
	}
	if err := hubs[1].Remove(c); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	c = hubs[2].NewClient("again", server.KindBayeux, time.Minute, "198.51.100.1")
	if err := hubs[2].Add(c); err != nil {
		t.Errorf("after a removal: %v; want admitted", err)
	}
	if err := hubs[0].Add(hubs[0].NewClient("again2", server.KindBayeux, time.Minute, "198.51.100.1")); !errors.Is(err, server.ErrTooMany) {
		t.Errorf("past the cap again: %v; want ErrTooMany", err)
	}
}

func TestSharedAddressSessionRate(t *testing.T) {
	hubs := threeHubs(t, server.HubOptions{AddressSessionRate: 0.01, AddressSessionBurst: 4, UserMaxSessions: -1})
	if got := admitted(t, hubs, 12, "198.51.100.1", ""); got != 4 {
		t.Errorf("three processes admitted %d sessions at once from one address; want the burst, 4", got)
	}
}

func TestSharedUserSessionCap(t *testing.T) {
	hubs := threeHubs(t, server.HubOptions{AddressMaxSessions: -1, AddressSessionRate: -1, UserMaxSessions: 4})
	if got := admitted(t, hubs, 12, "198.51.100.1", "alice"); got != 4 {
		t.Errorf("three processes admitted %d sessions of one user; want 4, as one process", got)
	}
	if got := admitted(t, hubs, 3, "198.51.100.1", "bob"); got != 3 {
		t.Errorf("another user: %d admitted, want 3", got)
	}
	if got := admitted(t, hubs, 3, "198.51.100.1", ""); got != 3 {
		t.Errorf("no user: %d admitted, want 3 (no per-user count)", got)
	}
}

func TestSharedChannelRate(t *testing.T) {
	hubs := threeHubs(t, server.HubOptions{AddressChannelRate: 0.01, AddressChannelBurst: 5, UserMaxSessions: -1})
	var clients []*server.Client
	for i, h := range hubs {
		c := h.NewClient(fmt.Sprint("c", i), server.KindBayeux, time.Minute, "198.51.100.1")
		if err := h.Add(c); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	ok := 0
	for i := range 12 {
		h, c := hubs[i%3], clients[i%3]
		switch _, err := h.Subscribe(c, fmt.Sprintf("/new/%d", i)); {
		case err == nil:
			ok++
		case !errors.Is(err, server.ErrChannelBudget):
			t.Fatalf("subscribe %d: %v; want ErrChannelBudget", i, err)
		}
	}
	if ok != 5 {
		t.Errorf("three processes let one address add %d channels at once; want the burst, 5", ok)
	}
	// Channels that exist cost nothing: subscribing to them still works.
	for i, h := range hubs {
		if _, err := h.Subscribe(clients[i], "/new/0"); err != nil {
			t.Errorf("subscribe to a kept channel with no token left: %v", err)
		}
	}
}

var _ server.SharedLimiter = (*redis.Engine)(nil)
