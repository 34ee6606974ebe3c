package server

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// hidingListener is a listener wrapper whose connections hide their
// descriptor (no SyscallConn method), as some middleware's do.
type hidingListener struct{ net.Listener }

func (l hidingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return struct{ net.Conn }{c}, nil
}

func hideDescriptors(l net.Listener) net.Listener { return hidingListener{l} }

// fallbackCount is stardust_takeover_fallback_total{use,reason} as served
// at /comet/metrics.
func fallbackCount(t *testing.T, addr, use, reason string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/comet/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	prefix := `stardust_takeover_fallback_total{reason="` + reason + `",use="` + use + `"} `
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			return v
		}
	}
	t.Fatalf("metrics lack %s", prefix)
	return ""
}

// A listener wrapper that hides the connections' descriptors: polls are
// held in net/http (as with hold_on_connection = false), answered as
// usual, and counted, not silently served another way.
func TestHeldPollFallbackWhenListenerHidesDescriptor(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second,
		Metrics: &MetricsOptions{Path: "/metrics", HealthPath: "/health"}}, nil, hideDescriptors)
	if got := fallbackCount(t, addr, "poll", "no_syscall_conn"); got != "0" {
		t.Fatalf("fallbacks before any poll: %s", got)
	}
	rc := dialRaw(t, addr)
	for i := range 2 { // the keep-alive connection's second poll too
		rc.send(pollGet("f1", "HTTP/1.1", ""))
		deadline := time.Now().Add(10 * time.Second)
		for stats(t, s.Hub()).Polling != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: poll not held", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if n := takeoverCount(srv); n != 0 {
			t.Fatalf("round %d: %d polls taken over through a wrapper that hides the descriptor", i, n)
		}
		publishA(t, s, `{"n":1}`)
		if resp, body := rc.read(); resp.StatusCode != 200 || !strings.Contains(body, `"n":1`) {
			t.Fatalf("round %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if got := fallbackCount(t, addr, "poll", "no_syscall_conn"); got != "2" {
		t.Errorf("fallbacks counted: %s, want 2", got)
	}
}

// The same for a WebSocket: pushed with blocking writes, and counted.
func TestWebSocketFallbackWhenListenerHidesDescriptor(t *testing.T) {
	s, _, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second, Bayeux: &BayeuxOptions{WebSocket: true},
		Metrics: &MetricsOptions{Path: "/metrics", HealthPath: "/health"}}, nil, hideDescriptors)
	conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/comet/bayeux", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	p := &wsPeer{t: t, conn: conn}
	p.send(map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"websocket"}})
	r := p.read()
	id, _ := r[0]["clientId"].(string)
	if id == "" {
		t.Fatalf("handshake %v", r)
	}
	p.send(map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/w", "id": "s"}, wsConnect(id, -1))
	if r := p.read(); r[0]["channel"] != "/meta/subscribe" || r[0]["successful"] != true {
		t.Fatalf("subscribe %v", r)
	}
	waitPolling(t, s, id)
	if _, err := s.Hub().Publish(&Message{Channel: "/w", Data: []byte(`"pushed"`)}); err != nil {
		t.Fatal(err)
	}
	if r := p.read(); r[0]["data"] != "pushed" {
		t.Fatalf("push %v", r)
	}
	if got := fallbackCount(t, addr, "websocket", "no_syscall_conn"); got != "1" {
		t.Errorf("fallbacks counted: %s, want 1", got)
	}
}
