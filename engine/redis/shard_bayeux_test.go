package redis_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/bayeuxtest"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// TestShardedBayeuxAck: a Bayeux client of the ack extension subscribed to
// channels of three shards, whose connects alternate between two
// processes (each with its sharded engine on one Redis), gets every
// message exactly once and each channel's in order, promptly: a connect
// answers one shard's batch, and the next one the others'.
func TestShardedBayeuxAck(t *testing.T) {
	srv := redistest.Start(t)
	var nodes []string
	var hubs []*server.Hub
	var e *redis.Sharded
	for range 2 {
		e = openSharded(t, nil, srv.URL, "sbx:", 3, server.Limits{HistorySize: 10})
		s, url := apiNodeOn(t, e, func(o *server.Options) { o.PollTimeout = 2 * time.Second })
		nodes = append(nodes, url+"/comet/bayeux")
		hubs = append(hubs, s.Hub())
	}
	b := bayeuxtest.New(nodes[0])
	hs := b.Post(t, map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}, "ext": map[string]any{"ack": true}})
	id, _ := hs[0]["clientId"].(string)
	if id == "" {
		t.Fatalf("handshake: %v", hs)
	}
	segs := segments(e, 3)
	var chans []string
	for _, seg := range segs {
		ch := "/" + seg + "/room"
		chans = append(chans, ch)
		if r := b.Post(t, map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": ch}); r[0]["successful"] != true {
			t.Fatalf("subscribe %s: %v", ch, r)
		}
	}
	const each = 20
	go func() {
		for n := range each {
			for i, ch := range chans {
				if _, err := hubs[n%2].Publish(&server.Message{Channel: ch, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i*1000+n))}); err != nil {
					t.Error(err)
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	got := map[string][]int{}
	total := 0
	ack := -1
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; total < 3*each && time.Now().Before(deadline); i++ {
		b.URL = nodes[i%2]
		replies := b.Post(t, map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling",
			"ext": map[string]any{"ack": ack}})
		for _, r := range replies {
			switch ch, _ := r["channel"].(string); {
			case ch == "/meta/connect":
				if r["successful"] != true {
					t.Fatalf("connect: %v", r)
				}
				if ext, _ := r["ext"].(map[string]any); ext["ack"] != nil {
					ack = int(ext["ack"].(float64))
				}
			case slices.Contains(chans, ch):
				data, _ := r["data"].(map[string]any)
				got[ch] = append(got[ch], int(data["n"].(float64)))
				total++
			}
		}
	}
	everyOnce(t, chans, got, each)
}

// everyOnce checks that channel i of chans received i*1000, i*1000+1...
// up to each messages, each once, in order.
func everyOnce(t *testing.T, chans []string, got map[string][]int, each int) {
	t.Helper()
	for i, ch := range chans {
		want := make([]int, each)
		for n := range want {
			want[n] = i*1000 + n
		}
		if fmt.Sprint(got[ch]) != fmt.Sprint(want) {
			t.Errorf("%s: received %v; want each of %d once, in order", ch, got[ch], each)
		}
	}
}
