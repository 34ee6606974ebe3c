package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/takeover"
)

// TestBayeuxConnectsServedOnTakenOverConnection: a Bayeux long-polling
// client's next connects (POSTs with a body) on a connection taken over by
// its held connect are served there, by the same takeover, not given back
// to net/http's connection loop; each body is read whole first (sent here in
// two pieces), and what follows it is the next request.
func TestBayeuxConnectsServedOnTakenOverConnection(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second, Bayeux: &BayeuxOptions{}}, nil, nil)
	rc := dialRaw(t, addr)
	post := func(body string) string {
		return "POST /comet/bayeux HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nCookie: " + BrowserCookie + "=" + benchBrowser +
			"\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	rc.send(post(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]`))
	_, body := rc.read()
	var hs []struct{ ClientID string }
	if err := json.Unmarshal([]byte(body), &hs); err != nil || len(hs) != 1 || hs[0].ClientID == "" {
		t.Fatalf("handshake: %s", body)
	}
	id := hs[0].ClientID
	rc.send(post(`[{"channel":"/meta/subscribe","clientId":"` + id + `","subscription":"/stardust/a","id":"2"}]`))
	rc.read()
	connect := post(`[{"channel":"/meta/connect","clientId":"` + id + `","connectionType":"long-polling","id":"3"}]`)
	rc.send(connect) // the first is answered at once (as CometD's)
	rc.read()
	var first takeover.Held
	for i := range 3 {
		if i == 1 { // the body in two pieces: the request is served once it has all come
			rc.send(connect[:len(connect)-10])
			time.Sleep(30 * time.Millisecond)
			rc.send(connect[len(connect)-10:])
		} else {
			rc.send(connect)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !polling(s.Hub(), id) || takeoverCount(srv) != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("connect %d is not held on its connection", i)
			}
			time.Sleep(2 * time.Millisecond)
		}
		held := heldOn(srv)
		if i == 0 {
			first = held
		} else if held != first {
			t.Fatalf("connect %d was given back to net/http and taken over anew, not served on the connection taken over", i)
		}
		publishA(t, s, `{"n":`+strconv.Itoa(i)+`}`)
		if _, body := rc.read(); !strings.Contains(body, `"n":`+strconv.Itoa(i)) || !strings.Contains(body, `"successful":true`) {
			t.Fatalf("connect %d: %s", i, body)
		}
	}
	// A request of another path after a connect goes back to net/http.
	rc.send(connect + "GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n")
	waitPolling(t, s, id)
	publishA(t, s, `{"n":9}`)
	if _, body := rc.read(); !strings.Contains(body, `"n":9`) {
		t.Fatalf("last connect: %s", body)
	}
	if _, body := rc.read(); !strings.Contains(body, "Stardust COMET Server") {
		t.Fatalf("the request after the connect: %s", body)
	}
}

// heldOn is the connection srv's takeover listener holds (the last, if
// several).
func heldOn(srv *http.Server) takeover.Held {
	var held takeover.Held
	takeoverListenerOf(srv).Count(func(h takeover.Held) bool {
		held = h
		return true
	})
	return held
}
