package server

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// TestChannelDelete: DELETE {base}/channel/NAME, from comet.allow_from
// only, sends the notice to the channel's subscribers, unsubscribes those
// subscribed by name (a pattern subscriber keeps its pattern) and drops
// the channel's history; another channel is left alone.
func TestChannelDelete(t *testing.T) {
	s, ts := testServer(t, Options{Hub: HubOptions{HistorySize: 10},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	h := s.hub
	byName := session(t, h, "n1", "", "/stardust/room", "/stardust/other")
	byPattern := session(t, h, "p1", "", "/stardust/**")
	for _, ch := range []string{"/stardust/room", "/stardust/other"} {
		if _, err := h.Publish(&Message{Channel: ch, Data: []byte(`{"n":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if code, body := do(t, "DELETE", ts.URL+"/comet/channel/room", "", "198.51.100.7", "", ""); code != 403 || !strings.Contains(body, "comet.allow_from") {
		t.Errorf("from an address not in allow_from: %d %s", code, body)
	}
	code, body := do(t, "DELETE", ts.URL+"/comet/channel/room", "", "", "", "")
	if code != 200 || body != `{"ok":true,"channels":["room"],"unsubscribed":1,"history":1}`+"\n" {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	for _, c := range []*Client{byName, byPattern} {
		b, err := h.engine.Fetch(context.Background(), c.ID(), 100)
		if err != nil {
			t.Fatal(err)
		}
		last := b.Messages[len(b.Messages)-1]
		if last.Channel != "/stardust/room" || string(last.Data) != `{"channel":"room","type":"stardust.channel_deleted"}` {
			t.Errorf("%s's last message: %s %s", c.ID(), last.Channel, last.Data)
		}
	}
	for id, want := range map[string]string{"n1": "[/stardust/other]", "p1": "[/stardust/**]"} {
		if subs, _ := h.engine.Subscriptions(context.Background(), id); fmt.Sprint(subs) != want {
			t.Errorf("%s's subscriptions: %v, want %s", id, subs, want)
		}
	}
	if n := len(history(t, h, "/stardust/room")); n != 0 {
		t.Errorf("history of the deleted channel: %d messages", n)
	}
	if n := len(history(t, h, "/stardust/other")); n != 1 {
		t.Errorf("history of another channel: %d messages, want 1", n)
	}
	// A channel with no one and nothing: 200, nothing done.
	if code, body := do(t, "DELETE", ts.URL+"/comet/channel/nothing", "", "", "", ""); code != 200 || !strings.Contains(body, `"unsubscribed":0,"history":0`) {
		t.Errorf("DELETE of an unknown channel: %d %s", code, body)
	}
	if code, _ := do(t, "DELETE", ts.URL+"/comet/channel/a..b", "", "", "", ""); code != 400 {
		t.Errorf("DELETE of a bad name: %d, want 400", code)
	}
}
