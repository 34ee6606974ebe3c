package redis_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// TestChannelDeleteAcrossProcesses: a DELETE on one process reaches the
// subscribers of another: they get the notice and are unsubscribed, and
// the history kept in Redis is gone.
func TestChannelDeleteAcrossProcesses(t *testing.T) {
	srv := redistest.Start(t)
	a, _ := apiNode(t, srv.URL)
	b, baseB := apiNode(t, srv.URL)
	c := hookSession(t, a, "s1", "ann", "/stardust/room", 0)
	if _, err := b.Hub().Publish(&server.Message{Channel: "/stardust/room", Data: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodDelete, baseB+"/comet/channel/room", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("DELETE: %s", resp.Status)
	}
	ctx := context.Background()
	batch, err := a.Hub().Engine().Fetch(ctx, c.ID(), 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range batch.Messages {
		got = append(got, string(m.Data))
	}
	if fmt.Sprint(got) != `[{"n":1} {"channel":"room","type":"stardust.channel_deleted"}]` {
		t.Errorf("the subscriber on the other process got %v", got)
	}
	if subs, _ := a.Hub().Engine().Subscriptions(ctx, c.ID()); len(subs) != 0 {
		t.Errorf("still subscribed: %v", subs)
	}
	if h, _ := a.Hub().History("/stardust/room", 0); len(h) != 0 {
		t.Errorf("history left: %d messages", len(h))
	}
}
