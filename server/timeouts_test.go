package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Issue 10, item 4: slow bodies are timed out; held polls, streams and
// sockets are not.

func TestSlowBodyTimedOut(t *testing.T) {
	_, ts := testServer(t, Options{BodyTimeout: 300 * time.Millisecond, RequestTimeout: 500 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /comet/channel/foo HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nm=")
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		// Trickle a byte every 50ms: each arrives in time, the whole never does.
		for range 100 {
			if _, err := conn.Write([]byte("x")); err != nil {
				done <- err
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		done <- nil
	}()
	_ = conn.SetReadDeadline(time.Now().Add(4 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("slow body answered %d", resp.StatusCode)
		}
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("slow body held the connection %s", took)
	}
}

func TestHeldRequestsOutliveTimeouts(t *testing.T) {
	b := newBX(t, BayeuxOptions{WebSocket: true}, func(o *Options) {
		o.BodyTimeout = 200 * time.Millisecond
		o.RequestTimeout = 300 * time.Millisecond
		o.PollTimeout = time.Second
	})
	// A Stardust long poll is held its full second and answered.
	start := time.Now()
	resp, body := get(t, b.ts.URL+"/comet/channel/t/stream/7.1")
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" || time.Since(start) < 900*time.Millisecond {
		t.Errorf("long poll: %d %s after %s", resp.StatusCode, body, time.Since(start))
	}
	// A Bayeux connect too.
	id := b.handshake()
	start = time.Now()
	if r := b.post(connectMsg(id, -1)); r[0]["successful"] != true || time.Since(start) < 900*time.Millisecond {
		t.Errorf("held connect: %v after %s", r, time.Since(start))
	}
	// A WebSocket carries messages long after its upgrade request.
	ws, wid := b.heldOverWS()
	b.subscribe(b.handshake(), "/unused")
	time.Sleep(time.Second)
	ws.send(map[string]any{"channel": "/meta/subscribe", "clientId": wid, "subscription": "/late", "id": "s"})
	if r := ws.read(); r[len(r)-1]["successful"] != true && r[0]["successful"] != true {
		t.Errorf("socket after the request timeouts: %v", r)
	}
	// An SSE stream keeps sending past them.
	req, _ := http.NewRequest("GET", b.ts.URL+"/comet/channel/t/events", nil)
	sresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	time.Sleep(time.Second)
	postForm(t, b.ts.URL+"/comet/channel/t", `{"late":true}`)
	r := bufio.NewReader(sresp.Body)
	_, data := readEvent(t, r)
	if !strings.Contains(data, `"late":true`) {
		t.Errorf("SSE after the request timeouts: %q", data)
	}
}
