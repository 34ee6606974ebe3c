// Package floor is the least a net/http server can do for the requests of
// Stardust API long polling: it holds GET {base}/channel/NAME/stream/ID until
// a POST {base}/channel/NAME brings messages, then answers them as a JSON
// array. For Bayeux WebSocket subscribers it writes each published message,
// encoded once, as one frame to every subscribed socket (bayeux.go). It is the reference the load tool measures servers against
// (cmd/stardust-floor), not a server to deploy: no history, no wildcards, no
// expiry of clients, no limits but a bounded queue per client.
//
// It answers only what cmd/stardust-load needs: GET {base}/ (200),
// GET {base}/channel/A+B (the subscribers of each channel), POST
// {base}/channel/NAME with form fields m= (each a JSON message; the answer
// says how many clients it reached), the held stream GET, and {base}/bayeux.
package floor

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxQueue is how many messages a client not holding a poll keeps; older
// ones are dropped.
const maxQueue = 1000

// Handler is the floor server. Create it with New.
type Handler struct {
	base string
	hold time.Duration
	mux  *http.ServeMux

	mu       sync.Mutex
	channels map[string]*channel
	sockets  map[string]map[*socket]bool // WebSocket subscribers by channel (bayeux.go)
}

type channel struct {
	mu   sync.Mutex
	subs map[string]*sub
}

// sub is one stream id: its undelivered messages and a wake-up for the poll
// that holds it.
type sub struct {
	mu      sync.Mutex
	pending [][]byte
	wake    chan struct{} // capacity 1
}

// New returns a floor handler serving under base (such as "/comet") that
// holds a poll for at most hold.
func New(base string, hold time.Duration) *Handler {
	base = strings.TrimRight(base, "/")
	h := &Handler{base: base, hold: hold, mux: http.NewServeMux(), channels: map[string]*channel{},
		sockets: map[string]map[*socket]bool{}}
	h.mux.HandleFunc("GET "+base+"/{$}", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, []byte(`{"server":"stardust-floor"}`))
	})
	h.mux.HandleFunc("GET "+base+"/channel/{chans}", h.info)
	h.mux.HandleFunc("POST "+base+"/channel/{chan}", h.publish)
	h.mux.HandleFunc("GET "+base+"/channel/{chan}/stream/{id}", h.stream)
	h.mux.HandleFunc(base+"/bayeux", h.bayeux)
	return h
}

// ServeHTTP serves the floor's five routes; anything else is 404 or 405.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) channel(name string, create bool) *channel {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.channels[name]
	if ch == nil && create {
		ch = &channel{subs: map[string]*sub{}}
		h.channels[name] = ch
	}
	return ch
}

func writeJSON(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// info counts the subscribers of each channel named, by kind, as
// Stardust's channel information does (never their ids).
func (h *Handler) info(w http.ResponseWriter, r *http.Request) {
	type info struct {
		Channel     string         `json:"channel"`
		Subscribers map[string]int `json:"subscribers"`
	}
	var out []info
	for _, name := range strings.Split(r.PathValue("chans"), "+") {
		in := info{Channel: name, Subscribers: map[string]int{}}
		if ch := h.channel(name, false); ch != nil {
			ch.mu.Lock()
			if n := len(ch.subs); n > 0 {
				in.Subscribers["stardust"] = n
			}
			ch.mu.Unlock()
		}
		out = append(out, in)
	}
	body, _ := json.Marshal(out)
	writeJSON(w, body)
}

func (h *Handler) publish(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || len(form["m"]) == 0 {
		http.Error(w, "want form fields m=", http.StatusBadRequest)
		return
	}
	msgs := make([][]byte, 0, len(form["m"]))
	for _, m := range form["m"] {
		if !json.Valid([]byte(m)) {
			http.Error(w, "m= is not JSON", http.StatusBadRequest)
			return
		}
		msgs = append(msgs, []byte(m))
	}
	n := 0
	if ch := h.channel(r.PathValue("chan"), false); ch != nil {
		ch.mu.Lock()
		for _, s := range ch.subs {
			s.add(msgs)
			n++
		}
		ch.mu.Unlock()
	}
	writeJSON(w, []byte(`{"recipients":`+strconv.Itoa(n)+`}`))
}

func (s *sub) add(msgs [][]byte) {
	s.mu.Lock()
	s.pending = append(s.pending, msgs...)
	if over := len(s.pending) - maxQueue; over > 0 {
		s.pending = append(s.pending[:0], s.pending[over:]...)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sub) take() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	s.pending = nil
	return p
}

func (h *Handler) stream(w http.ResponseWriter, r *http.Request) {
	ch := h.channel(r.PathValue("chan"), true)
	id := r.PathValue("id")
	ch.mu.Lock()
	s := ch.subs[id]
	if s == nil {
		s = &sub{wake: make(chan struct{}, 1)}
		ch.subs[id] = s
	}
	ch.mu.Unlock()
	msgs := s.take()
	if len(msgs) == 0 {
		t := time.NewTimer(h.hold)
	wait:
		for len(msgs) == 0 {
			select {
			case <-s.wake: // may be left from messages an earlier poll took
				msgs = s.take()
			case <-t.C:
				break wait
			case <-r.Context().Done():
				break wait
			}
		}
		t.Stop()
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(m)
	}
	b.WriteByte(']')
	writeJSON(w, b.Bytes())
}
