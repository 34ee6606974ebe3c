package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// Issue 10, item 6: drops, rejections and errors are counted and summed up
// in the log, never one line each and never with a session id.
func TestLogsCannotBeFlooded(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.InfoLevel)
	s := New(Options{PollTimeout: 50 * time.Millisecond, Metrics: &MetricsOptions{Path: "/metrics", HealthPath: "/health"},
		Hub: HubOptions{QueueMaxMessages: 10, AddressMaxSessions: -1, AddressSessionRate: -1}}, logrus.NewEntry(log))
	ts := httptest.NewServer(s)
	defer ts.Close()
	defer s.Close()

	const clients = 1000
	ids := make([]string, clients)
	for i := range ids {
		ids[i] = fmt.Sprintf("stalled%d", i)
		c, _, err := s.hub.Register(ids[i], KindStardust, time.Minute, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.hub.Subscribe(c, "/stardust/flood"); err != nil {
			t.Fatal(err)
		}
	}
	batch := "[" + strings.TrimSuffix(strings.Repeat(`{"n":1},`, 550), ",") + "]"
	for range 2 {
		resp, err := http.Post(ts.URL+"/comet/channel/flood", "application/json", strings.NewReader(batch))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("publish: %d", resp.StatusCode)
		}
	}
	// A hundred of them come back and learn of their drops; bad requests pour in.
	for _, id := range ids[:100] {
		resp, _ := get(t, ts.URL+"/comet/channel/flood/stream/"+id)
		if resp.StatusCode != 200 {
			t.Fatalf("poll: %d", resp.StatusCode)
		}
	}
	for range 300 {
		get(t, ts.URL+"/comet/channel/bad!name")
	}
	s.incidents.flush(s.hub)

	warnings := 0
	for _, e := range hook.AllEntries() {
		if e.Level <= logrus.WarnLevel {
			warnings++
		}
		line, _ := e.String()
		for _, id := range ids[:100] {
			if strings.Contains(line, id+" ") || strings.Contains(line, id+"\"") || strings.HasSuffix(strings.TrimSpace(line), id) ||
				strings.Contains(line, "/"+id) {
				t.Fatalf("a log line names session %s: %s", id, line)
			}
		}
	}
	if warnings != 1 {
		t.Errorf("%d warning lines, want one summary", warnings)
	}
	_, metrics := get(t, ts.URL+"/comet/metrics")
	for _, want := range []string{`stardust_incidents_total{kind="queue_drop"} 109000`, `stardust_incidents_total{kind="http_400"} 300`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestRedactPath(t *testing.T) {
	for in, want := range map[string]string{
		"/comet/channel/a+b/stream/0.123": "/comet/channel/a+b/stream/{id}",
		"/comet/channel/a/0.5":            "/comet/channel/a/{id}",
		"/comet/channel/a":                "/comet/channel/a",
		"/comet/bayeux":                   "/comet/bayeux",
	} {
		if got := redactPath(in); got != want {
			t.Errorf("redactPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFaviconIsNotAnIncident: a browser opening the demo or the API asks
// for /favicon.ico, at the root and under the base; that is answered 204
// and counted nowhere, where it was an http_404 in every incidents summary
// of a first run.
func TestFaviconIsNotAnIncident(t *testing.T) {
	s, ts := testServer(t, Options{})
	for _, p := range []string{"/favicon.ico", "/comet/favicon.ico"} {
		resp, err := http.Get(ts.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("GET %s: %s, want 204 No Content", p, resp.Status)
		}
	}
	resp, err := http.Get(ts.URL + "/comet/nothing.ico")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s.incidents.mu.Lock()
	defer s.incidents.mu.Unlock()
	if n := s.incidents.totals["http_404"]; n != 1 {
		t.Errorf("http_404 incidents: %d, want 1 (the other path only)", n)
	}
}
