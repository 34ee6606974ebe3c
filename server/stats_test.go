package server

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestStats: {base}/stats counts clients by kind, channels, held polls and
// messages, and reads the hub at most once a second however often it is asked.
func TestStats(t *testing.T) {
	s, ts := testServer(t, Options{Base: "/comet", PollTimeout: 10 * time.Second})
	read := func() statsBody {
		t.Helper()
		resp, body := get(t, ts.URL+"/comet/stats")
		wantJSONHeaders(t, resp)
		var st statsBody
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("stats: %v: %s", err, body)
		}
		for _, k := range []string{"stardust", "sse", "bayeux", "local"} {
			if _, ok := st.ClientsByKind[k]; !ok {
				t.Errorf("stats: no count for kind %q: %s", k, body)
			}
		}
		return st
	}
	first := read()
	if first.Clients != 0 || first.Published != 0 || first.Time == 0 {
		t.Errorf("stats of a fresh server: %+v", first)
	}
	bot, err := s.Hub().NewLocalClient("bot", func(*Message) {})
	if err != nil {
		t.Fatal(err)
	}
	defer bot.Close()
	// Read again at once, not after setting up a held poll (an HTTP round
	// trip and a wait, which a loaded machine may stretch past the second):
	// the new client is not counted yet.
	if st := read(); st.Time != first.Time || st.Clients != 0 {
		t.Errorf("a second reading within %v: %+v, want the cached %+v", statsMaxAge, st, first)
	}
	done := poll(t, ts.URL+"/comet/channel/foo/stream/s1")
	waitPolling(t, s, "s1")
	time.Sleep(statsMaxAge)
	st := read()
	if st.Clients != 2 || st.ClientsByKind["local"] != 1 || st.ClientsByKind["stardust"] != 1 || st.PollsHeld != 2 || st.Channels < 1 {
		t.Errorf("with a local client (always polling) and a held poll: %+v", st)
	}
	if resp, body := postForm(t, ts.URL+"/comet/channel/foo", `{"type":"x"}`, `{"type":"y"}`); resp.StatusCode != http.StatusOK {
		t.Fatalf("publish: %s %s", resp.Status, body)
	}
	recv(t, done, 5*time.Second)
	time.Sleep(statsMaxAge)
	if st := read(); st.Published != 2 || st.Delivered != 2 {
		t.Errorf("after two messages to one subscriber: published %d, delivered %d", st.Published, st.Delivered)
	}
}
