package server

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gapServer keeps 2 messages of history and has published 3 on
// /stardust/g: the first is lost. It returns the messages published.
func gapServer(t *testing.T) (*Server, string, []*Message) {
	t.Helper()
	s, ts := testServer(t, Options{PollTimeout: 2 * time.Second, Hub: HubOptions{HistorySize: 2}})
	// Another channel's message first: the lost one's position is not 1,
	// and the one before it names a point in this channel's past.
	if _, err := s.hub.Publish(&Message{Channel: "/other", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	var sent []*Message
	for i := range 3 {
		m := &Message{Channel: "/stardust/g", Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)}
		if _, err := s.hub.Publish(m); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m)
		time.Sleep(2 * time.Millisecond) // distinct _ts
	}
	return s, ts.URL, sent
}

func ts6(m *Message) string { return strconv.FormatFloat(unixSeconds(m.Time), 'f', 6, 64) }

func TestGapNoticeStardustPoll(t *testing.T) {
	_, base, sent := gapServer(t)
	before := strconv.FormatFloat(unixSeconds(sent[0].Time)-1, 'f', 6, 64)
	resp, body := get(t, base+"/comet/channel/g/stream/p1?since="+before)
	list := decodeList(t, body)
	if resp.StatusCode != 200 || len(list) != 3 || list[0]["type"] != "stardust.gap" {
		t.Fatalf("poll since before the oldest kept: %s", body)
	}
	if !strings.HasPrefix(string(body), `[{"type":"stardust.gap","since":`+before+`,"oldest":`+ts6(sent[1])+`}`) {
		t.Errorf("gap notice: %s (want since %s, oldest %s)", body, before, ts6(sent[1]))
	}
	if list[1]["n"] != float64(1) || list[2]["n"] != float64(2) {
		t.Errorf("replay after the notice: %s", body)
	}
	// From the lost message itself: nothing was missed.
	resp, body = get(t, base+"/comet/channel/g/stream/p2?since="+ts6(sent[0]))
	if list := decodeList(t, body); resp.StatusCode != 200 || len(list) != 2 || list[0]["n"] != float64(1) {
		t.Errorf("poll since the lost message: %s", body)
	}
}

// sseLines opens an SSE stream with Last-Event-ID and returns its lines
// up to the event carrying want.
func sseLines(t *testing.T, u, lastID, want string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Last-Event-ID", lastID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), want) {
			return lines
		}
	}
	t.Fatalf("stream ended without %s: %q", want, lines)
	return nil
}

func TestGapNoticeSSE(t *testing.T) {
	_, base, sent := gapServer(t)
	u := base + "/comet/channel/g/events"
	lines := strings.Join(sseLines(t, u, strconv.FormatUint(sent[0].Seq-1, 10), `"n":2`), "\n")
	want := "event: gap\ndata: {\"type\":\"stardust.gap\",\"since\":" + strconv.FormatUint(sent[0].Seq-1, 10) +
		",\"oldest\":" + strconv.FormatUint(sent[1].Seq, 10) + "}\n\nid: " + strconv.FormatUint(sent[1].Seq, 10)
	if !strings.Contains(lines, want) {
		t.Errorf("stream resumed before the oldest kept:\n%s\nwant:\n%s", lines, want)
	}
	lines = strings.Join(sseLines(t, u, strconv.FormatUint(sent[0].Seq, 10), `"n":2`), "\n")
	if strings.Contains(lines, "gap") || !strings.Contains(lines, `"n":1`) {
		t.Errorf("stream resumed after the lost message:\n%s", lines)
	}
}

// TestGapNoticeAfterHistoryRemove: history_remove loses every message.
func TestGapNoticeAfterHistoryRemove(t *testing.T) {
	s, base, sent := gapServer(t)
	if _, err := s.hub.engine.(HistoryRemover).RemoveHistory(context.Background(), "/stardust/g"); err != nil {
		t.Fatal(err)
	}
	_, body := get(t, base+"/comet/channel/g/stream/p1?since="+ts6(sent[1]))
	if want := `[{"type":"stardust.gap","since":` + ts6(sent[1]) + `,"oldest":null}]`; strings.TrimSpace(string(body)) != want {
		t.Errorf("poll after history_remove: %s, want %s", body, want)
	}
}
