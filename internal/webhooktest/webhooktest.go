// Package webhooktest is the site's back end that tests send webhooks to:
// an HTTP receiver that checks each POST's X-Stardust-Signature, keeps the
// events it accepted, and can answer 500 to the first requests to make the
// sender retry.
package webhooktest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// Event is one received event.
type Event struct {
	Name     string `json:"name"`
	Channel  string `json:"channel"`
	UserID   string `json:"user_id"`
	ClientID string `json:"client_id"`
	TimeMS   int64  `json:"time_ms"`
	ID       string `json:"id"`
}

// String is the event without its id and time: "name channel user".
func (e Event) String() string {
	return strings.TrimSpace(strings.Join(strings.Fields(e.Name+" "+e.Channel+" "+e.UserID), " "))
}

// Receiver is a running receiver. Safe for concurrent use.
type Receiver struct {
	URL    string
	secret string
	srv    *httptest.Server

	mu       sync.Mutex
	events   []Event
	posts    int // requests answered 2xx
	refused  int // requests answered 500 on purpose
	failNext int
	bad      []string // what was wrong with requests: signature, body
	times    []time.Time
}

// New starts a receiver checking signatures with secret; it is closed
// when the test ends.
func New(t testing.TB, secret string) *Receiver {
	r := &Receiver{secret: secret}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL + "/hooks"
	t.Cleanup(r.srv.Close)
	return r
}

// FailNext makes the next n requests get 500.
func (r *Receiver) FailNext(n int) {
	r.mu.Lock()
	r.failNext = n
	r.mu.Unlock()
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	m := hmac.New(sha256.New, []byte(r.secret))
	m.Write(body)
	want := "sha256=" + hex.EncodeToString(m.Sum(nil))
	r.mu.Lock()
	defer r.mu.Unlock()
	if !hmac.Equal([]byte(req.Header.Get("X-Stardust-Signature")), []byte(want)) {
		r.bad = append(r.bad, "bad signature "+req.Header.Get("X-Stardust-Signature"))
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if r.failNext > 0 {
		r.failNext--
		r.refused++
		http.Error(w, "down for a moment", http.StatusInternalServerError)
		return
	}
	var b struct {
		TimeMS int64   `json:"time_ms"`
		Events []Event `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.TimeMS == 0 || len(b.Events) == 0 || len(b.Events) > 100 {
		r.bad = append(r.bad, fmt.Sprintf("bad body (%v): %.200s", err, body))
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.events = append(r.events, b.Events...)
	r.posts++
	r.times = append(r.times, time.Now())
	w.WriteHeader(http.StatusNoContent)
}

// Events returns the events accepted so far, in order.
func (r *Receiver) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Counts returns the POSTs accepted and those refused on purpose.
func (r *Receiver) Counts() (posts, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts, r.refused
}

// Sorted returns the accepted events as sorted strings (Event.String), to
// compare with a list whatever their order.
func (r *Receiver) Sorted() []string {
	var out []string
	for _, e := range r.Events() {
		out = append(out, e.String())
	}
	sort.Strings(out)
	return out
}

// Check fails the test on any bad request seen and on an event id
// received twice.
func (r *Receiver) Check(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.bad {
		t.Errorf("webhook receiver: %s", b)
	}
	seen := map[string]bool{}
	for _, e := range r.events {
		if seen[e.ID] {
			t.Errorf("webhook receiver: event %s (%s) received twice", e.ID, e)
		}
		seen[e.ID] = true
	}
}

// Wait waits up to d for n events; it returns the sorted events then.
func (r *Receiver) Wait(n int, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for len(r.Events()) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return r.Sorted()
}
