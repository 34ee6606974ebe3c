package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// kickAsked is a memory engine that counts how often the hub asks whether
// the server API disconnected a session (DisconnectMarker).
type kickAsked struct {
	*MemoryEngine
	asked atomic.Int64
}

func (e *kickAsked) MarkDisconnected(context.Context, string) error { return nil }

func (e *kickAsked) Disconnected(context.Context, string) (bool, error) {
	e.asked.Add(1)
	return false, nil
}

// A poll whose request went away asks nothing of the engine about its
// client (with Redis, one EXISTS a client in `make scale-100k` when the
// load tool's clients left), on both paths: held on its connection and
// held by net/http. One whose client was removed still asks whether the
// server API did it (the control: the count is wired).
func TestPollGoneAsksNothing(t *testing.T) {
	for _, held := range []bool{true, false} {
		name := map[bool]string{true: "held on its connection", false: "held by net/http"}[held]
		t.Run(name, func(t *testing.T) {
			e := &kickAsked{MemoryEngine: NewMemoryEngine(Limits{})}
			s, srv, addr := serveForTest(t, held, Options{PollTimeout: 20 * time.Second, Hub: HubOptions{Engine: e}}, nil, nil)
			rc := dialRaw(t, addr)
			rc.send(pollGet("gone1", "HTTP/1.1", ""))
			waitHeld(t, s, srv, held, "gone1")
			_ = rc.c.Close()
			waitNotPolling(t, s, "gone1")

			rc = dialRaw(t, addr)
			rc.send(pollGet("gone2", "HTTP/1.1", ""))
			waitHeld(t, s, srv, held, "gone2")
			if err := s.Hub().Remove(clientOf(s.Hub(), "gone2")); err != nil {
				t.Fatal(err)
			}
			if _, body := rc.read(); strings.TrimSpace(body) != "[]" {
				t.Errorf("the removed client's poll answered %s", body)
			}
			// Asked before that answer was written; gone1's answer came
			// before, or it would be counted here too.
			if n := e.asked.Load(); n != 1 {
				t.Errorf("asked the engine %d times whether the client was disconnected, want once (for the removed client)", n)
			}
		})
	}
}

// waitHeld waits until the client's poll waits: on its connection when
// held there.
func waitHeld(t *testing.T, s *Server, srv *http.Server, held bool, id string) {
	t.Helper()
	waitPolling(t, s, id)
	if held {
		waitTakenOver(t, s, srv, 1)
	}
}

// waitNotPolling waits until this process holds no poll of the client.
func waitNotPolling(t *testing.T, s *Server, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for polling(s.Hub(), id) {
		if time.Now().After(deadline) {
			t.Fatalf("client %s still polling", id)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A client that leaves while its poll is being taken over ends the poll at
// once, not at its timeout: the end that net/http's background read saw,
// or that came before the first wait on the connection, counts (before,
// one of some hundred such polls was held until its timeout).
func TestPollEndsWhenClientLeftAroundTakeover(t *testing.T) {
	s, _, addr := takeoverServer(t, Options{PollTimeout: time.Minute}, nil, nil)
	for i := range 200 {
		id := "left" + strconv.Itoa(i)
		rc := dialRaw(t, addr)
		rc.send(pollGet(id, "HTTP/1.1", ""))
		waitPolling(t, s, id)
		_ = rc.c.Close()
		waitNotPolling(t, s, id)
	}
}
