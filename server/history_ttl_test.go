package server

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHistoryTTLRecovery: a channel of a rule with a TTL replays only what
// is younger than it, and a resume from before an expired message gets
// the gap notice, as for messages dropped by the size bound.
func TestHistoryTTLRecovery(t *testing.T) {
	s, ts := testServer(t, Options{PollTimeout: time.Second, Hub: HubOptions{HistorySize: 10,
		ChannelHistory: []HistoryRule{{Pattern: "/stardust/t", Size: 10, TTL: time.Second}}}})
	old := &Message{Channel: "/stardust/t", Data: []byte(`{"n":0}`)}
	if _, err := s.hub.Publish(old); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.hub.Publish(&Message{Channel: "/stardust/t", Data: []byte(`{"n":1}`)}); err != nil {
		t.Fatal(err)
	}
	before := strconv.FormatFloat(unixSeconds(old.Time)-1, 'f', 6, 64)
	_, body := get(t, ts.URL+"/comet/channel/t/stream/p1?since="+before)
	list := decodeList(t, body)
	if len(list) != 2 || list[0]["type"] != "stardust.gap" || list[1]["n"] != float64(1) || strings.Contains(string(body), `"n":0`) {
		t.Errorf("resume from before the expired message: %s", body)
	}
}
