package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeBayeux is a scripted Bayeux server: it hands out client ids c1, c2...,
// forgets c1 at its first connect (402 with advice handshake), and answers
// every other connect with the messages queued by deliver, or after 200 ms.
type fakeBayeux struct {
	mu         sync.Mutex
	handshakes int
	subscribed map[string]string // client id -> subscription
	queue      map[string][]json.RawMessage
	connects   atomic.Int64
}

func newFakeBayeux() *fakeBayeux {
	return &fakeBayeux{subscribed: map[string]string{}, queue: map[string][]json.RawMessage{}}
}

// answer processes one batch and returns the reply batch.
func (f *fakeBayeux) answer(batch []map[string]any) []map[string]any {
	var out []map[string]any
	for _, m := range batch {
		ch, _ := m["channel"].(string)
		id, _ := m["clientId"].(string)
		switch ch {
		case "/meta/handshake":
			f.mu.Lock()
			f.handshakes++
			cid := "c" + string(rune('0'+f.handshakes))
			f.mu.Unlock()
			out = append(out, map[string]any{"channel": ch, "successful": true, "clientId": cid, "version": "1.0"})
		case "/meta/subscribe":
			f.mu.Lock()
			f.subscribed[id], _ = m["subscription"].(string)
			f.mu.Unlock()
			out = append(out, map[string]any{"channel": ch, "successful": true, "subscription": m["subscription"]})
		case "/meta/connect":
			f.connects.Add(1)
			if id == "c1" {
				out = append(out, map[string]any{"channel": ch, "successful": false, "error": "402::Unknown client",
					"advice": map[string]any{"reconnect": "handshake"}})
				continue
			}
			f.mu.Lock()
			for _, d := range f.queue[id] {
				out = append(out, map[string]any{"channel": f.subscribed[id], "data": d})
			}
			delete(f.queue, id)
			f.mu.Unlock()
			out = append(out, map[string]any{"channel": ch, "successful": true})
		default: // a publish: queue it for every subscriber of the channel
			f.mu.Lock()
			for cid, sub := range f.subscribed {
				if sub == ch {
					b, _ := json.Marshal(m["data"])
					f.queue[cid] = append(f.queue[cid], b)
				}
			}
			f.mu.Unlock()
			out = append(out, map[string]any{"channel": ch, "successful": true, "id": m["id"]})
		}
	}
	return out
}

func (f *fakeBayeux) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if websocket.IsWebSocketUpgrade(r) {
		f.serveWS(w, r)
		return
	}
	var batch []map[string]any
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &batch); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(batch) == 1 && batch[0]["channel"] == "/meta/connect" && batch[0]["clientId"] != "c1" {
		time.Sleep(200 * time.Millisecond) // a short hold
	}
	out, _ := json.Marshal(f.answer(batch))
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// serveWS answers each frame; a connect reply comes 200 ms later, with what
// was queued meanwhile.
func (f *fakeBayeux) serveWS(w http.ResponseWriter, r *http.Request) {
	conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var batch []map[string]any
		if json.Unmarshal(data, &batch) != nil {
			return
		}
		if len(batch) == 1 && batch[0]["channel"] == "/meta/connect" && batch[0]["clientId"] != "c1" {
			time.Sleep(200 * time.Millisecond)
		}
		if conn.WriteJSON(f.answer(batch)) != nil {
			return
		}
	}
}

// TestBayeuxDriversHandshakeAgain drives each Bayeux transport against the
// scripted server: the first session is forgotten at its first connect, the
// client must handshake and subscribe again, and then receive what is
// published to it, in order, once.
func TestBayeuxDriversHandshakeAgain(t *testing.T) {
	for _, mode := range []string{"bayeux", "websocket"} {
		t.Run(mode, func(t *testing.T) {
			f := newFakeBayeux()
			ts := httptest.NewServer(f)
			defer ts.Close()
			cfg := testConfig(t, "--bayeux", ts.URL+"/cometd", "--mode", mode, "--clients", "1")
			r := newRunner(cfg)
			defer r.http.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := r.newClient(0)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if mode == "bayeux" {
					c.bayeuxLongPoll(ctx)
				} else {
					c.bayeuxWebSocket(ctx)
				}
			}()
			// Wait for the second session's subscription.
			for {
				f.mu.Lock()
				ok := f.subscribed["c2"] != ""
				f.mu.Unlock()
				if ok || ctx.Err() != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			pubs, err := r.publishers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for n := int64(0); n < 3; n++ {
				r.publishOne(ctx, pubs[0], 0, n, 0, "")
			}
			for r.received.Load() < 3 && ctx.Err() == nil {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			<-done
			if r.registered.Load() != 1 || r.received.Load() != 3 || r.dups.Load() != 0 || r.published.Load() != 3 || r.expected.Load() != 3 {
				t.Errorf("registered %d, published %d, expected %d, received %d, duplicates %d; want 1, 3, 3, 3, 0",
					r.registered.Load(), r.published.Load(), r.expected.Load(), r.received.Load(), r.dups.Load())
			}
			// The forgotten session is an error, counted and told.
			if r.pollErrors.Load() < 1 || !strings.Contains(r.firstErrText.Load().(string), "402") {
				t.Errorf("poll errors %d, first error %v; want the 402 counted", r.pollErrors.Load(), r.firstErrText.Load())
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.handshakes != 3 { // c1 and c2 for the subscriber, c3 for the publisher
				t.Errorf("%d handshakes, want 3", f.handshakes)
			}
		})
	}
}

func TestDecodeBayeux(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		fail bool
	}{
		{`[]`, 0, false},
		{` [{"channel":"/meta/connect","successful":true,"id":7}] `, 1, false},
		{`{"channel":"/meta/handshake","successful":false,"error":"403::x"}`, 1, false},
		{`[{"channel":"/a","data":{"t":1}},{"channel":"/meta/connect","successful":true,"advice":{"reconnect":"retry"}}]`, 2, false},
		{``, 0, true},
		{`null`, 0, true},
		{`"x"`, 0, true},
		{`[1]`, 0, true},
		{`[{"channel":5}]`, 0, true},
		{`[{"channel":"/a"}`, 0, true},
	} {
		msgs, err := decodeBayeux([]byte(tc.in))
		if (err != nil) != tc.fail || (err == nil && len(msgs) != tc.n) {
			t.Errorf("decodeBayeux(%q) = %d messages, %v", tc.in, len(msgs), err)
		}
	}
	msgs, _ := decodeBayeux([]byte(`[{"channel":"/meta/connect","successful":false,"error":"402::gone","advice":{"reconnect":"handshake"}}]`))
	if r, err := reply(msgs, "/meta/connect"); err != nil || r.ok() || !r.mustHandshake() {
		t.Errorf("402 connect reply read as %+v, %v", r, err)
	}
}

// FuzzDecodeBayeux: no input makes the decoder panic, and what it accepts
// encodes back to something it accepts with the same messages.
func FuzzDecodeBayeux(f *testing.F) {
	for _, s := range []string{`[]`, `[{"channel":"/meta/connect","successful":true}]`,
		`{"channel":"/meta/handshake","clientId":"x","advice":{"reconnect":"handshake"}}`,
		`[{"channel":"/a/b","data":{"load":"1","t":2,"p":0,"n":3}}]`, `[1,2]`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		msgs, err := decodeBayeux(in)
		if err != nil {
			return
		}
		again, err := json.Marshal(msgs)
		if err != nil {
			t.Fatalf("accepted %q but cannot encode it: %v", in, err)
		}
		back, err := decodeBayeux(again)
		if err != nil || len(back) != len(msgs) {
			t.Fatalf("%q: re-encoded %s decodes to %d messages, %v; want %d", in, again, len(back), err, len(msgs))
		}
		for i := range back {
			if back[i].Channel != msgs[i].Channel || back[i].ok() != msgs[i].ok() || back[i].mustHandshake() != msgs[i].mustHandshake() {
				t.Fatalf("%q: message %d changed in a round trip: %+v vs %+v", in, i, msgs[i], back[i])
			}
		}
	})
}
