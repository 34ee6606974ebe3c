package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// TestFetchCallReadsAboutMax: a session at the default subscription limit
// (128) whose every channel has 10 messages waiting, interleaved in time.
// One fetch call of max 20 used to return every stream's 10 (1280
// entries, 128 per max 1000 in production: 128,000); it must read about
// max per doubling, not max per stream.
func TestFetchCallReadsAboutMax(t *testing.T) {
	srv := redistest.Start(t)
	e, err := New(Options{URL: srv.URL, Prefix: "calls:", Timeout: 5 * time.Second,
		Limits: server.Limits{QueueMaxMessages: 100}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if err := e.CreateSession(ctx, server.Session{ID: "s", Kind: server.KindBayeux}); err != nil {
		t.Fatal(err)
	}
	for i := range 128 {
		if _, err := e.Subscribe(ctx, "s", fmt.Sprintf("/c/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 10 {
		for i := range 128 {
			m := &server.Message{Channel: fmt.Sprintf("/c/%d", i), Data: json.RawMessage(strconv.Itoa(round))}
			if _, err := e.Publish(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	const max = 20
	r, err := e.exec(ctx, scriptFetch, "s", strconv.Itoa(max), "", "", strconv.Itoa(fetchChunk), "0")
	if err != nil {
		t.Fatal(err)
	}
	vals, err := r.ToArray()
	if err != nil {
		t.Fatal(err)
	}
	entries := (len(vals) - 5) / 4
	t.Logf("one call of max %d over 128 streams of 10: %d entries", max, entries)
	if entries > 400 {
		t.Errorf("one fetch call of max %d returned %d entries; want a few times max", max, entries)
	}
	b, err := e.Fetch(ctx, "s", max)
	if err != nil || len(b.Messages) != max || string(b.Messages[0].Data) != "0" || string(b.Messages[max-1].Data) != "0" {
		t.Errorf("Fetch(max %d) = %d messages, %v; want the first %d, of round 0", max, len(b.Messages), err, max)
	}
}
