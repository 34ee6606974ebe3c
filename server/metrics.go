package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stardust-go/stardust/internal/takeover"
)

// MetricsOptions place the Prometheus and health endpoints under Base.
type MetricsOptions struct {
	Path       string // e.g. "/metrics"
	HealthPath string // e.g. "/health"
}

// metrics owns a registry of its own (no global state): gauges and counters
// read from the hub when scraped, and a latency histogram per route.
type metrics struct {
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
}

func (s *Server) initMetrics(r *mux.Router, o MetricsOptions) {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stardust_http_request_duration_seconds",
		Help:    "Time from request to the end of the response, by route (long polls include their hold).",
		Buckets: []float64{.001, .005, .025, .1, .5, 1, 5, 15, 30, 60, 120},
	}, []string{"route", "method", "code"})
	m.reg.MustRegister(m.duration, &hubCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b := s.opts.Base
	r.Handle(b+o.Path, OnlyFrom(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}), s.opts.MetricsAllowFrom, s.opts.TrustedProxies)).
		Methods(http.MethodGet).Name("metrics")
	r.HandleFunc(b+o.HealthPath, s.handleHealth).Methods(http.MethodGet, http.MethodHead).Name("health")
	r.Use(m.observe)
	s.metrics = m
}

// OnlyFrom serves h to the clients whose address (ClientIP: X-Forwarded-For
// believed only from trusted proxies) is in allow, and answers the others
// 403 with a JSON body naming metrics.allow_from. It guards the operators'
// endpoints: metrics, {base}/stats and pprof, which show the server's load
// and internals to whoever reads them.
func OnlyFrom(h http.Handler, allow, trusted []netip.Prefix) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !refusedOps(w, r, allow, trusted) {
			h.ServeHTTP(w, r)
		}
	})
}

// refusedOps answers 403 and reports true when r's client is not in allow.
func refusedOps(w http.ResponseWriter, r *http.Request, allow, trusted []netip.Prefix) bool {
	ip := ClientIP(r, trusted)
	if isTrusted(ip, allow) {
		return false
	}
	writeError(w, fmt.Errorf("%w: %s is not served to %s (see metrics.allow_from)", ErrForbidden, cutLogValue(r.URL.Path), ip))
	return true
}

// observe records the latency of every routed request, labelled by the route
// template so that the number of series stays bounded.
func (m *metrics) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := "other"
		if cr := mux.CurrentRoute(r); cr != nil {
			if tpl, err := cr.GetPathTemplate(); err == nil {
				route = tpl
			}
		}
		m.serve(route, w, r, next.ServeHTTP)
	})
}

// serve serves r with h and records it under route once answered; with
// metrics off (m nil) it only serves.
func (m *metrics) serve(route string, w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter, *http.Request)) {
	if m == nil {
		h(w, r)
		return
	}
	start, sw := time.Now(), statusWriter(w)
	h(sw, r)
	sw.afterAnswer(r, func(r *http.Request) { m.record(route, r, sw, start) })
}

// record observes one answered request, served from start.
func (m *metrics) record(route string, r *http.Request, sw *StatusWriter, start time.Time) {
	m.duration.WithLabelValues(route, r.Method, strconv.Itoa(sw.Status())).Observe(time.Since(start).Seconds())
}

// statusWriter is w if it records the status already (guard made it),
// else w wrapped in a StatusWriter.
func statusWriter(w http.ResponseWriter) *StatusWriter {
	if sw, ok := w.(*StatusWriter); ok {
		return sw
	}
	return &StatusWriter{ResponseWriter: w}
}

// handleHealth answers 200 while serving, 503 once shutting down, and 503
// with a reason (and Retry-After) while the engine cannot answer, so that a
// load balancer sends new clients to the nodes that can serve them. The
// reason is generic: the engine's error, which names its server, goes to
// the log (the incidents summary).
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.hub.Closed() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "stopping"})
		return
	}
	if err := s.health.check(s.hub); err != nil {
		setRetryAfter(w.Header(), err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "engine unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "uptime": time.Since(s.started).Seconds()})
}

// healthMaxAge is how long a health check's answer from the engine is
// reused: a flood of health checks costs one engine call a second.
const healthMaxAge = time.Second

// healthTimeout bounds the engine call of a health check, below the few
// seconds load balancers wait for an answer (HAProxy's and nginx's checks).
const healthTimeout = 2 * time.Second

// healthCache holds the last answer of the engine to a health check; the
// zero value is ready to use.
type healthCache struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// check asks the engine for its counts, at most once per healthMaxAge and
// for at most healthTimeout; an error wraps ErrEngine and is counted as an
// engine failure.
func (c *healthCache) check(h *Hub) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < healthMaxAge {
		return c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	var err error
	if sr, ok := h.engine.(StatsReporter); ok {
		_, err = sr.Stats(ctx)
	} else if _, err = h.engine.Session(ctx, "health-check"); errors.Is(err, ErrUnknownClient) {
		err = nil // the engine answered
	}
	if err != nil && !errors.Is(err, ErrEngine) {
		err = fmt.Errorf("%w: health check: %v", ErrEngine, err)
	}
	c.at, c.err = time.Now(), h.failed(err)
	return c.err
}

// fallbackCounts counts the connections served the portable way where the
// takeover's raw descriptor was wanted (stardust_takeover_fallback_total):
// the hub holds one, the transports add to it, the core knows no more.
type fallbackCounts = takeover.Fallbacks

// hubCollector reads the hub's counts at scrape time.
type hubCollector struct{ s *Server }

var (
	descClients       = prometheus.NewDesc("stardust_clients", "Client sessions by kind.", []string{"kind"}, nil)
	descChannels      = prometheus.NewDesc("stardust_channels", "Channels in use.", nil, nil)
	descPolls         = prometheus.NewDesc("stardust_polls_held", "Long polls, connects and streams waiting for messages.", nil, nil)
	descSubscriptions = prometheus.NewDesc("stardust_subscriptions", "Subscriptions (patterns included).", nil, nil)
	descPublished     = prometheus.NewDesc("stardust_messages_published_total", "Messages published (in).", nil, nil)
	descDelivered     = prometheus.NewDesc("stardust_messages_delivered_total", "Messages queued for a client (out: one per subscriber per message).", nil, nil)
	descDropped       = prometheus.NewDesc("stardust_queue_dropped_total", "Messages dropped from full client queues.", nil, nil)
	descFailures      = prometheus.NewDesc("stardust_engine_failures_total", "Calls to the engine that failed (a shared engine's server away).", nil, nil)
	descEngineUp      = prometheus.NewDesc("stardust_engine_up",
		"1 while the engine answers (the health check's answer, at most a second old), 0 while it cannot: a shared engine's server away.", nil, nil)
	descFallbacks = prometheus.NewDesc("stardust_takeover_fallback_total",
		"Long polls held in the HTTP server instead of on their connection (use=poll), and WebSockets written with blocking writes (use=websocket), because the connection's raw descriptor was not there: reason=unsupported (this system), no_syscall_conn (a listener wrapper hides it).",
		[]string{"use", "reason"}, nil)
)

func (c *hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descClients, descChannels, descPolls, descSubscriptions, descPublished, descDelivered, descDropped, descFailures, descEngineUp, descFallbacks, descIncidents,
		descWebhookQueue, descWebhookSent, descWebhookFailures, descWebhookDropped} {
		ch <- d
	}
}

func (c *hubCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.s.hub.Stats()
	// This process's own counts, always; the engine's only when it answers
	// (no figures rather than wrong ones while a shared engine is away).
	ch <- prometheus.MustNewConstMetric(descPolls, prometheus.GaugeValue, float64(st.Polling))
	ch <- prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(st.Published))
	ch <- prometheus.MustNewConstMetric(descDelivered, prometheus.CounterValue, float64(st.Delivered))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(st.Failures))
	// The health check's cached answer: a scrape costs at most one engine
	// call a second, and reads what /health answers.
	up := 1.0
	if c.s.health.check(c.s.hub) != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(descEngineUp, prometheus.GaugeValue, up)
	c.s.hub.fallbacks.Each(func(use, reason string, n uint64) {
		ch <- prometheus.MustNewConstMetric(descFallbacks, prometheus.CounterValue, float64(n), use, reason)
	})
	c.s.incidents.collect(c.s.hub, ch)
	c.s.webhooks.collect(ch)
	if err != nil {
		return
	}
	for _, kind := range []string{KindStardust, KindSSE, KindBayeux, KindLocal} {
		ch <- prometheus.MustNewConstMetric(descClients, prometheus.GaugeValue, float64(st.ClientsByKind[kind]), kind)
	}
	ch <- prometheus.MustNewConstMetric(descChannels, prometheus.GaugeValue, float64(st.Channels))
	ch <- prometheus.MustNewConstMetric(descSubscriptions, prometheus.GaugeValue, float64(st.Subscriptions))
}
