package server

import (
	"fmt"
	"testing"
)

// TestBayeuxAckExtension: with CometD's ack extension a connect reply that
// carries messages numbers its batch (ext.ack), the messages stay queued
// until a later connect acknowledges that number, and a reply that was lost
// (the client acknowledges an older batch) is sent again, so each message
// arrives exactly once.
func TestBayeuxAckExtension(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	r := b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}, "ext": map[string]any{"ack": true}})
	if r[0]["successful"] != true || fmt.Sprint(r[0]["ext"]) != "map[ack:true]" {
		t.Fatalf("handshake with ext.ack: %v", r)
	}
	id := r[0]["clientId"].(string)
	b.subscribe(id, "/ack")
	connect := func(ack int) (data []any, batch any) {
		t.Helper()
		m := connectMsg(id, 0)
		m["ext"] = map[string]any{"ack": ack}
		for _, x := range b.post(m) {
			if x["channel"] == "/ack" {
				data = append(data, x["data"])
			}
			if x["channel"] == "/meta/connect" {
				if x["successful"] != true {
					t.Fatalf("connect failed: %v", x)
				}
				ext, _ := x["ext"].(map[string]any)
				batch = ext["ack"]
			}
		}
		return data, batch
	}
	if data, batch := connect(-1); len(data) != 0 || batch != nil {
		t.Fatalf("empty connect: %v batch %v; want no messages and no batch number", data, batch)
	}
	b.post(map[string]any{"channel": "/ack", "clientId": id, "data": map[string]any{"n": 1}})
	b.post(map[string]any{"channel": "/ack", "clientId": id, "data": map[string]any{"n": 2}})
	data, batch := connect(-1)
	n, ok := batch.(float64)
	if len(data) != 2 || !ok {
		t.Fatalf("first batch: %v with ext.ack %v", data, batch)
	}
	// The reply was lost: the client acknowledges nothing newer.
	if again, batch2 := connect(-1); len(again) != 2 || batch2 != batch {
		t.Fatalf("unacknowledged batch not sent again: %v (batch %v)", again, batch2)
	}
	b.post(map[string]any{"channel": "/ack", "clientId": id, "data": map[string]any{"n": 3}})
	third, _ := connect(int(n))
	if fmt.Sprint(third) != "[map[n:3]]" {
		t.Fatalf("after acknowledging batch %v: %v; want only the new message", n, third)
	}
	// A client without the extension gets no batch numbers.
	plain := b.handshake()
	b.subscribe(plain, "/ack")
	b.post(map[string]any{"channel": "/ack", "clientId": plain, "data": map[string]any{"n": 4}})
	for _, x := range b.post(connectMsg(plain, 0)) {
		if x["channel"] == "/meta/connect" && x["ext"] != nil {
			t.Errorf("a client without the ack extension got ext %v", x["ext"])
		}
	}
}
