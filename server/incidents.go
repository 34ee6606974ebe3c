package server

import (
	"regexp"
	"sort"
	"strconv"
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
	IncidentFCGIRefused       = "fcgi_refused"       // FastCGI requests over the requests in flight allowed
	// IncidentLogSuppressed counts request log lines (LogRequests) left
	// out beyond logBurst: the requests are still counted by status.
	IncidentLogSuppressed = "log_suppressed"
)

// A flood of bad requests writes at most logBurst request lines at once,
// then logRate a second; the others are counted (IncidentLogSuppressed) in
// the summary, beside the count of each status.
const (
	logBurst = 20
	logRate  = 1.0
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
	// the token bucket of request log lines (allowLine)
	tokens   float64
	lastLine time.Time
}

func newIncidents(log *logrus.Entry, interval time.Duration) *incidents {
	return &incidents{log: log, interval: interval, pending: map[string]uint64{}, totals: map[string]uint64{}, tokens: logBurst}
}

// allowLine reports whether one more request line may be logged now; when
// not, it counts the line as suppressed.
func (in *incidents) allowLine(now time.Time) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.tokens = min(logBurst, in.tokens+now.Sub(in.lastLine).Seconds()*logRate)
	in.lastLine = now
	if in.tokens < 1 {
		in.pending[IncidentLogSuppressed]++
		in.totals[IncidentLogSuppressed]++
		return false
	}
	in.tokens--
	return true
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
	if fields[IncidentEngineError] != nil {
		// What clients are not shown (engineUnavailable), once per summary.
		if last := h.lastFailure.Load(); last != nil {
			fields["engine_error_last"] = cutLogValue(*last)
		}
	}
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
	"Drops, rejections and errors by kind (http_<status>, bayeux_<code>, queue_drop, engine_error, connection_refused, history_trimmed, fcgi_refused, log_suppressed).",
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

// streamPath matches the request paths that carry a Stardust stream id:
// {base}/channel/{chans}/stream/{id}, with or without more after it (a 404
// names the id too), and jquery.ev's {base}/channel/{chans}/{id}.
var streamPath = regexp.MustCompile(`^(.*?/channel/[^/]+/)(?:(stream/)[^/]+(/.*)?|[0-9.]+)$`)

// redactPath hides the stream id of a long-poll path, for logs at info
// level: ids are capabilities.
func redactPath(p string) string {
	if m := streamPath.FindStringSubmatch(p); m != nil {
		return m[1] + m[2] + "{id}" + m[3]
	}
	return p
}

// maxLogValue is how many bytes of a value the client chose (a path, a
// method, a user agent, a referer) a log line carries. net/http reads
// request lines and headers up to 1 MiB (nginx stops at 8 KB); a path
// longer than this tells the reader nothing more, and logging it whole let
// twenty requests write 18 MB of log.
const maxLogValue = 256

// cutLogValue is s cut to maxLogValue bytes (see cutTo).
func cutLogValue(s string) string { return cutTo(s, maxLogValue) }

// cutTo is s cut to n bytes, with a marker saying how long it was (ASCII,
// so that the access log keeps it as it is).
func cutTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + cutMarker(len(s))
}

func cutMarker(n int) string { return "...(cut from " + strconv.Itoa(n) + " bytes)" }

// logPath is a request path as every log writes it, the request log and
// the access log alike: cut to maxLogValue, then its stream id hidden (the
// cut first, so that a long path costs no more to redact than a short one;
// a cut id is hidden all the same).
func logPath(p string) string {
	if len(p) <= maxLogValue {
		return redactPath(p)
	}
	return redactPath(p[:maxLogValue]) + cutMarker(len(p))
}
