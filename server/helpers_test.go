package server

import (
	"context"
	"testing"
)

// Test helpers over the hub's error-returning calls, for the in-memory engine
// that cannot fail.

// stats returns the hub's counts.
func stats(t testing.TB, h *Hub) Stats {
	t.Helper()
	st, err := h.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// clientOf returns the client with this id, or nil.
func clientOf(h *Hub, id string) *Client {
	c, err := h.Client(id)
	if err != nil {
		return nil
	}
	return c
}

// polling reports whether this process holds a poll of the client.
func polling(h *Hub, id string) bool {
	c := clientOf(h, id)
	return c != nil && c.Polling()
}

// audience returns how many clients a publish on the channel would reach.
func audience(t testing.TB, h *Hub, channel string) int {
	t.Helper()
	counts, err := h.Audience(channel)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range counts {
		n += k
	}
	return n
}

// history returns the channel's kept messages.
func history(t testing.TB, h *Hub, channel string) []*Message {
	t.Helper()
	msgs, err := h.History(channel, 0)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// drain takes and commits everything queued for c.
func drain(h *Hub, c *Client) {
	ctx := context.Background()
	b, _ := h.engine.Fetch(ctx, c.ID(), 0)
	_ = h.engine.Commit(ctx, c.ID(), b.Cursor)
}
