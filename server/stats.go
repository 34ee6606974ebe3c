package server

import (
	"math"
	"net/http"
	"sync"
	"time"
)

// statsBody is the JSON of {base}/stats: the hub's live counts, for the demo
// status page and for scripts. The counters (published, delivered, dropped)
// only grow, so a reader takes the difference of two readings over their
// "time" for rates such as messages per second.
type statsBody struct {
	Time          float64        `json:"time"` // epoch seconds of the reading
	Uptime        float64        `json:"uptime"`
	Clients       int            `json:"clients"`
	ClientsByKind map[string]int `json:"clients_by_kind"` // stardust, sse, bayeux, local
	Channels      int            `json:"channels"`
	PollsHeld     int            `json:"polls_held"` // long polls, connects and streams waiting now
	Subscriptions int            `json:"subscriptions"`
	Published     uint64         `json:"published"`
	Delivered     uint64         `json:"delivered"`
	Dropped       uint64         `json:"dropped"`
	// HistoryBytes of HistoryMax (comet.max_history_bytes) are kept; past
	// it the oldest channels' histories go, HistoryTrimmed counting them.
	HistoryBytes   int64  `json:"history_bytes"`
	HistoryMax     int64  `json:"history_max_bytes"`
	HistoryTrimmed uint64 `json:"history_trimmed"`
}

// statsMaxAge bounds how often {base}/stats reads the hub: Hub.Stats visits
// every client, so that many status pages open at once cost one visit a
// second between them.
const statsMaxAge = time.Second

// statsCache holds the last reading; the zero value is ready to use.
type statsCache struct {
	mu   sync.Mutex
	at   time.Time
	body statsBody
}

// handleStats answers {base}/stats to the addresses of MetricsAllowFrom.
func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	if refusedOps(w, r, s.opts.MetricsAllowFrom, s.opts.TrustedProxies) {
		return
	}
	c := &s.stats
	c.mu.Lock()
	if now := time.Now(); now.Sub(c.at) >= statsMaxAge {
		st, err := s.hub.Stats()
		if err != nil {
			c.mu.Unlock()
			writeError(w, err)
			return
		}
		kinds := map[string]int{}
		for _, k := range []string{KindStardust, KindSSE, KindBayeux, KindLocal} {
			kinds[k] = st.ClientsByKind[k]
		}
		c.at = now
		c.body = statsBody{
			Time:    float64(now.UnixMicro()) / 1e6,
			Uptime:  math.Round(now.Sub(s.started).Seconds()*1000) / 1000,
			Clients: st.Clients, ClientsByKind: kinds, Channels: st.Channels, PollsHeld: st.Polling,
			Subscriptions: st.Subscriptions, Published: st.Published, Delivered: st.Delivered, Dropped: st.Dropped,
			HistoryBytes: st.HistoryBytes, HistoryMax: st.HistoryMax, HistoryTrimmed: st.Trimmed,
		}
	}
	body := c.body
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, body)
}
