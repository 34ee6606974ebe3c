package server

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"
)

// Drops, rejections and errors are counted, exported as the metric
// stardust_incidents_total{kind}, and logged as one summary line per
// interval at most, with counts only: a flood of them cannot flood the log,
// and no session id is ever written at info or warn level.

// Incident kinds besides "http_<status>" (requests answered 4xx or 5xx) and
// "bayeux_<code>" (Bayeux messages answered unsuccessfully).
const (
	IncidentQueueDrop         = "queue_drop"         // messages dropped from full client queues
	IncidentEngineError       = "engine_error"       // engine calls that failed
	IncidentConnectionRefused = "connection_refused" // connections over server.max_connections
	IncidentHistoryTrimmed    = "history_trimmed"    // channel histories dropped to stay under comet.max_history_bytes
)

// trimCount follows the engine's EngineStats.HistoryTrimmed, which a shared
// engine counts for every process since it started: the first value seen is
// the baseline, and increases after it are this process's incidents.
type trimCount struct {
	mu                sync.Mutex
	base, last, prior uint64
	seen              bool
}

// saw records a value of EngineStats.HistoryTrimmed.
func (c *trimCount) saw(v uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !c.seen:
		c.base, c.last, c.seen = v, v, true
	case v < c.last: // counted again from 0 (a shared engine's server lost its data)
		c.prior += c.last - c.base
		c.base, c.last = 0, v
	default:
		c.last = v
	}
}

// increase is how much the count grew since the first value seen.
func (c *trimCount) increase() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prior + c.last - c.base
}

// IncidentInterval is how often at most the summary is logged.
const IncidentInterval = 10 * time.Second

type incidents struct {
	log      *logrus.Entry
	interval time.Duration

	mu      sync.Mutex
	pending map[string]uint64 // since the last summary
	totals  map[string]uint64
	// the hub's own counters, as last read
	drops, failures, trimmed uint64
}

func newIncidents(log *logrus.Entry, interval time.Duration) *incidents {
	return &incidents{log: log, interval: interval, pending: map[string]uint64{}, totals: map[string]uint64{}}
}

func (in *incidents) add(kind string, n uint64) {
	if in == nil || n == 0 {
		return
	}
	in.mu.Lock()
	in.pending[kind] += n
	in.totals[kind] += n
	in.mu.Unlock()
}

// Incident counts n incidents of a kind (such as IncidentConnectionRefused,
// which the listener in front sees) for the metrics and the summary log.
func (s *Server) Incident(kind string, n int) {
	if n > 0 {
		s.incidents.add(kind, uint64(n))
	}
}

// run logs a summary every interval until the hub closes, then a last one.
func (in *incidents) run(h *Hub) {
	t := time.NewTicker(in.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			_, _ = h.Stats() // reads the engine's HistoryTrimmed; a failure is counted by the hub
			in.flush(h)
		case <-h.Done():
			in.flush(h)
			return
		}
	}
}

// flush takes in the hub's drop and failure counters and logs what
// happened since the last summary, if anything did.
func (in *incidents) flush(h *Hub) {
	in.flushCounters(h)
	in.mu.Lock()
	fields := logrus.Fields{}
	for k, n := range in.pending {
		if n > 0 {
			fields[k] = n
		}
	}
	clear(in.pending)
	in.mu.Unlock()
	if len(fields) > 0 && in.log.Logger.IsLevelEnabled(logrus.WarnLevel) {
		in.log.WithFields(fields).WithField("interval", in.interval.String()).Warn("incidents (counts)")
	}
}

// countRejection counts an answer of 400 or more by status.
func (s *Server) countRejection(code int) {
	if code >= 400 {
		s.incidents.add("http_"+strconv.Itoa(code), 1)
	}
}

var descIncidents = prometheus.NewDesc("stardust_incidents_total",
	"Drops, rejections and errors by kind (http_<status>, bayeux_<code>, queue_drop, engine_error, connection_refused, history_trimmed).",
	[]string{"kind"}, nil)

// collect exports the totals (the hub's counters taken in first).
func (in *incidents) collect(h *Hub, ch chan<- prometheus.Metric) {
	in.flushCounters(h)
	in.mu.Lock()
	kinds := make([]string, 0, len(in.totals))
	for k := range in.totals {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		ch <- prometheus.MustNewConstMetric(descIncidents, prometheus.CounterValue, float64(in.totals[k]), k)
	}
	in.mu.Unlock()
}

// flushCounters takes in the hub's counters without logging.
func (in *incidents) flushCounters(h *Hub) {
	drops, failures, trimmed := h.drops.Load(), h.failures.Load(), h.trimmed.increase()
	in.mu.Lock()
	defer in.mu.Unlock()
	in.pending[IncidentHistoryTrimmed] += trimmed - in.trimmed
	in.totals[IncidentHistoryTrimmed] += trimmed - in.trimmed
	in.trimmed = trimmed
	in.pending[IncidentQueueDrop] += drops - in.drops
	in.totals[IncidentQueueDrop] += drops - in.drops
	in.pending[IncidentEngineError] += failures - in.failures
	in.totals[IncidentEngineError] += failures - in.failures
	in.drops, in.failures = drops, failures
}

// streamPath matches the request paths that carry a Stardust stream id.
var streamPath = regexp.MustCompile(`^(.*/channel/[^/]+/)(stream/[^/]+|[0-9.]+)$`)

// redactPath hides the stream id of a long-poll path, for logs at info
// level: ids are capabilities.
func redactPath(p string) string {
	if m := streamPath.FindStringSubmatch(p); m != nil {
		if strings.HasPrefix(m[2], "stream/") {
			return m[1] + "stream/{id}"
		}
		return m[1] + "{id}"
	}
	return p
}
