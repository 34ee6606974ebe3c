// Package server is Stardust's core: the hub (channels, clients, bounded
// queues, history) and the HTTP handlers of the Stardust API, served by any
// front (plain HTTP or FastCGI). It knows nothing of the front, the config
// file or the command line; cmd/stardust wires those to it.
package server

import (
	"fmt"
	"io/fs"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"
)

// Options configure a Server. Zero values take the defaults noted.
type Options struct {
	Base           string        // path prefix of the API; default "/comet"; "/" the root
	Prefix         string        // Bayeux channel prefix of Stardust channels; default "/stardust"
	PollTimeout    time.Duration // long-poll hold; default 30s
	ClientTimeout  time.Duration // Stardust clients idle this long are removed; default 60s
	MaxBodyBytes   int64         // request body limit (413 beyond); default 1 MiB
	BodyTimeout    time.Duration // a request's body must arrive within this; default 20s
	RequestTimeout time.Duration // a request's answer must be written within this (after any hold); default 60s
	MaxMessageSize int           // one message's JSON; default 64 KiB
	SSEHeartbeat   time.Duration // default 15s
	SSEMaxDuration time.Duration // an SSE response ends after this, the browser resumes; default 10m
	// MaxPublishes bounds the work of one Stardust publish request: its
	// messages times its channels; default 1000 (Bayeux's batch limit).
	MaxPublishes int
	Hub          HubOptions

	DocumentRoot   string                   // static files served outside Base; "" none
	DirectoryIndex []string                 // default ["index.html"]
	TypeExpires    map[string]time.Duration // Expires/Cache-Control by MIME type
	Demo           fs.FS                    // demo pages served at Base+"/demo/"; nil none
	CORSOrigins    []string                 // allowed Origin values; "*" any
	TrustedProxies []netip.Prefix           // X-Forwarded-For honoured from these peers

	// Who may publish through the Stardust API (see stardust_rules.go):
	// client addresses (nil: LoopbackOnly; Anywhere for all), and, when
	// PublishUser is set, HTTP basic auth with a password matching
	// PublishPassHash (a hash CheckPassword reads).
	AllowFrom       []netip.Prefix
	PublishUser     string
	PublishPassHash string

	Version string // reported by the info URL

	// APIKey, when set, serves the server API (api.go) at Base+"/api/" to
	// the addresses of APIAllowFrom (nil: LoopbackOnly) that bring it.
	APIKey       string
	APIAllowFrom []netip.Prefix

	// Bayeux, if not nil, serves Bayeux 1.0 at Base+"/bayeux" and Base+"/cometd".
	Bayeux *BayeuxOptions
	// Metrics, if not nil, serves Prometheus metrics and a health check.
	Metrics *MetricsOptions
	// MetricsAllowFrom says which client addresses (as the trusted proxies
	// forward them) may read the metrics and {base}/stats; nil means
	// LoopbackOnly, Anywhere all. The health check is open to all.
	MetricsAllowFrom []netip.Prefix

	// Authenticator, when set, says who a Bayeux handshake, a Stardust poll
	// or an SSE stream comes from (package auth implements it from the
	// [auth] section); the identity is kept with the session. nil: callers
	// are who bayeux.auth and comet.auth_user make them, else anonymous.
	Authenticator Authenticator
	// SubscribeAuthorizer, when set, is asked about every subscription
	// (Bayeux subscribes, Stardust polls and SSE streams) that the ACL
	// allows and the identity's channels do not grant; nil asks no one.
	SubscribeAuthorizer SubscribeAuthorizer
	// PublishAuthorizer, when set, is asked about every publish by a Bayeux
	// client that the ACL allows; nil asks no one.
	PublishAuthorizer PublishAuthorizer
	// Channels are the [[channels]] rules (channel_rules.go), first match
	// deciding; nil: every channel keeps the defaults.
	Channels []ChannelRule
	// Webhooks, when set with a URL, POSTs channel and member events to
	// the site's back end (webhooks.go).
	Webhooks *WebhookOptions
}

func (o *Options) defaults() {
	if o.Base == "" {
		o.Base = "/comet"
	}
	o.Base = strings.TrimRight(o.Base, "/") // "/" (the root) becomes ""
	if o.Prefix == "" {
		o.Prefix = "/stardust"
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = 30 * time.Second
	}
	if o.ClientTimeout <= 0 {
		o.ClientTimeout = 60 * time.Second
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = 20 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 60 * time.Second
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 64 << 10
	}
	if o.SSEHeartbeat <= 0 {
		o.SSEHeartbeat = 15 * time.Second
	}
	if o.SSEMaxDuration <= 0 {
		o.SSEMaxDuration = 10 * time.Minute
	}
	if o.AllowFrom == nil {
		o.AllowFrom = LoopbackOnly
	}
	if o.MetricsAllowFrom == nil {
		o.MetricsAllowFrom = LoopbackOnly
	}
	if o.APIAllowFrom == nil {
		o.APIAllowFrom = LoopbackOnly
	}
	if o.MaxPublishes <= 0 {
		o.MaxPublishes = maxBatch
	}
	if len(o.DirectoryIndex) == 0 {
		o.DirectoryIndex = []string{"index.html"}
	}
	if o.Version == "" {
		o.Version = "dev"
	}
}

// Server is the HTTP face of the core: an http.Handler for the Stardust API
// (and, when registered, other protocols) under Options.Base, plus optional
// static files. Close it to answer every held request at once.
type Server struct {
	opts    Options
	log     *logrus.Entry
	hub     *Hub
	router  *mux.Router
	started time.Time
	bayeux  *Bayeux
	handler http.Handler
	rules   requestRules
	stats   statsCache     // the last reading of {base}/stats (stats.go)
	health  healthCache    // the engine's last answer to a health check (metrics.go)
	metrics *metrics       // nil when off
	idh     *identityHooks // the identity hooks of Options (identity_wire.go)

	incidents  *incidents
	webhooks   *webhooks           // nil when off
	sseStreams openSet[*sseStream] // SSE streams served off net/http (sse_push.go)
}

// New builds a Server with its own Hub.
func New(opts Options, log *logrus.Entry) *Server {
	opts.defaults()
	chans := parseChannelRules(opts.Channels)
	if opts.Hub.JoinLeave == nil && chans.joinLeave() {
		opts.Hub.JoinLeave = chans.joinLeaveOn
	}
	wh := newWebhooks(opts.Webhooks)
	if wh != nil && opts.Hub.Members == nil && wh.memberEvents() {
		// member_added and member_removed of presence channels too: their
		// users are counted as join_leave channels' are, announced only
		// to the webhooks.
		opts.Hub.Members = chans.presenceOn
	}
	if wh != nil {
		if next := opts.Hub.Events; next != nil {
			opts.Hub.Events = func(e Event) { wh.hook(e); next(e) }
		} else {
			opts.Hub.Events = wh.hook
		}
	}
	s := &Server{opts: opts, log: log, hub: NewHub(opts.Hub, log), started: time.Now(), webhooks: wh,
		rules: requestRules{MaxBodyBytes: opts.MaxBodyBytes, TrustedProxies: opts.TrustedProxies, CORSOrigins: opts.CORSOrigins,
			RequestTimeout: opts.RequestTimeout}}
	s.rules.browsers = &browserMint{hub: s.hub}
	s.idh = &identityHooks{authn: opts.Authenticator, sub: opts.SubscribeAuthorizer, pub: opts.PublishAuthorizer,
		chans: chans}
	s.incidents = newIncidents(log, IncidentInterval)
	s.routes()
	if _, ok := s.hub.engine.(Members); chans.joinLeave() && !ok {
		log.Warn("join_leave is on but the engine cannot count members: no join or leave will be sent")
	}
	if wh != nil {
		wh.start(s)
	}
	go s.incidents.run(s.hub)
	return s
}

// Hub returns the core, for local clients and other protocols.
func (s *Server) Hub() *Hub { return s.hub }

// ServeHTTP serves a request. Safe for concurrent use.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Close answers every held long-poll and stream at once and stops the hub.
func (s *Server) Close() {
	s.webhooks.stop() // while the engine is open: it queues what is decided
	s.hub.Close()
}

// routes registers every route on one router with full paths. (Subrouters
// are avoided on purpose: gorilla/mux 1.8 answers 404 instead of 405 for a
// wrong method once a subrouter's prefix has matched.)
func (s *Server) routes() {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(s.notFound)
	r.MethodNotAllowedHandler = http.HandlerFunc(s.methodNotAllowed)
	b := s.opts.Base
	// The long poll first: it is by far the most frequent request.
	r.HandleFunc(b+"/channel/{chans}/stream/{id}", s.handleStream).Methods(http.MethodGet)
	if b != "" {
		r.HandleFunc(b, s.handleInfo).Methods(http.MethodGet, http.MethodHead)
	}
	r.HandleFunc(b+"/", s.handleInfo).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc(b+"/channel", s.handleChannelList).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc(b+"/channel/", s.handleChannelList).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc(b+"/channel/{chans}", s.handleChannelInfo).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc(b+"/channel/{chans}", s.handlePublish).Methods(http.MethodPost)
	r.HandleFunc(b+"/channel/{chans}", s.handleDelete).Methods(http.MethodDelete) // channel_delete.go
	r.HandleFunc(b+"/channel/{chans}/events", s.handleEvents).Methods(http.MethodGet)
	// jquery.ev as in the Perl synopsis polls /channel/foo/ID without "stream".
	r.HandleFunc(b+"/channel/{chans}/{id:[0-9.]+}", s.handleStream).Methods(http.MethodGet)
	if s.opts.Bayeux != nil {
		s.bayeux = newBayeux(s.hub, *s.opts.Bayeux, bayeuxLimits{pollTimeout: s.opts.PollTimeout,
			maxMessageSize: s.opts.MaxMessageSize, base: s.opts.Base}, s.rules, s.log)
		s.bayeux.incidents = s.incidents
		s.bayeux.idh = s.idh
		// CometD appends /handshake, /connect... to the URL; route them all.
		r.Handle(b+"/bayeux", s.bayeux).Name("bayeux")
		r.Handle(b+"/bayeux/{rest:.*}", s.bayeux)
		r.Handle(b+"/cometd", s.bayeux)
		r.Handle(b+"/cometd/{rest:.*}", s.bayeux)
	}
	if s.opts.APIKey != "" { // without a key there is no API: 404
		r.HandleFunc(b+"/api/{method}", s.handleAPI).Methods(http.MethodPost)
	}
	if s.opts.Metrics != nil {
		s.initMetrics(r, *s.opts.Metrics)
	}
	s.clientRoutes(r) // {base}/js/stardust.js and {base}/stats (clientjs.go, stats.go)
	if s.opts.Demo != nil {
		r.PathPrefix(b + "/demo/").Handler(http.StripPrefix(b+"/demo/", http.FileServer(http.FS(s.opts.Demo))))
	}
	if s.opts.DocumentRoot != "" {
		files := s.static()
		r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if s.underBase(req.URL.Path) {
				s.notFound(w, req)
				return
			}
			files.ServeHTTP(w, req)
		})
	}
	s.router = r
	s.handler = s.guard(s.cors(s.fastRoutes(r))) // middleware.go
}

// underBase reports whether path belongs to the API rather than the site.
func (s *Server) underBase(path string) bool {
	return s.opts.Base != "" && (path == s.opts.Base || strings.HasPrefix(path, s.opts.Base+"/"))
}

// requestRules are what every protocol needs to read a request the same
// way: the body limit, whose X-Forwarded-For to believe, and which origins
// may use the API. The protocols get a copy, never the Server.
type requestRules struct {
	MaxBodyBytes   int64
	RequestTimeout time.Duration // to write an answer, after any hold
	TrustedProxies []netip.Prefix
	CORSOrigins    []string
	browsers       *browserMint // issues and checks BAYEUX_BROWSER values (browser.go)
}

// clientIP is the request's client address: the peer, or, when the peer is
// a trusted proxy, the last X-Forwarded-For entry that is not a trusted proxy.
func (rr requestRules) clientIP(r *http.Request) string {
	return ClientIP(r, rr.TrustedProxies)
}

// ClientIP returns the address of the client that made r, honouring
// X-Forwarded-For only when the connection comes from a trusted proxy, and
// then walking the list from the right past trusted proxies.
func ClientIP(r *http.Request, trusted []netip.Prefix) string {
	peer := peerAddr(r)
	if !isTrusted(peer, trusted) {
		return peer
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return peer // the usual request, even from a trusted proxy's address: nothing to split
	}
	hops := strings.Split(strings.Join(xff, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop := strings.TrimSpace(hops[i])
		if hop == "" {
			continue
		}
		a, err := netip.ParseAddr(hop)
		if err != nil {
			return peer // a garbled header is not trusted past this point
		}
		if !isTrusted(a.Unmap().String(), trusted) {
			return a.Unmap().String()
		}
		peer = a.Unmap().String()
	}
	return peer
}

// peerAddr is the address of the connection's other end, without the port.
func peerAddr(r *http.Request) string {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		if ap.Addr().Is4() {
			// An IPv4 address parses only in its canonical form: the
			// text before the port is its String, without allocating.
			return r.RemoteAddr[:strings.LastIndexByte(r.RemoteAddr, ':')]
		}
		return ap.Addr().Unmap().String()
	}
	if a, err := netip.ParseAddr(r.RemoteAddr); err == nil {
		return a.Unmap().String()
	}
	return r.RemoteAddr
}

func isTrusted(addr string, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	for _, p := range trusted {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// cors answers preflight requests and sets Access-Control-Allow-Origin for
// allowed origins, so pages on another host can use the API.
func (s *Server) cors(next http.Handler) http.Handler {
	if len(s.opts.CORSOrigins) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && s.rules.corsAllowed(origin) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions {
				h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Content-Type, Last-Event-ID, Authorization") // Authorization: stardust.js's token
				h.Set("Access-Control-Max-Age", "86400")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// corsAllowed reports whether cors_origins lets pages from origin in.
func (rr requestRules) corsAllowed(origin string) bool {
	for _, o := range rr.CORSOrigins {
		if o == "*" || o == origin {
			return true
		}
	}
	return false
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		(r.URL.Path == "/favicon.ico" || r.URL.Path == s.opts.Base+"/favicon.ico") {
		// Every browser asks for it: not worth a 404 in the incidents
		// summary. No content, kept for a day so that it asks less often.
		w.Header().Set("Cache-Control", "max-age=86400")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeError(w, fmt.Errorf("%w: no such URL: %s", ErrNotFound, cutLogValue(r.URL.Path)))
}

func (s *Server) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	writeError(w, fmt.Errorf("%w: %s %s", ErrMethod, cutLogValue(r.Method), cutLogValue(r.URL.Path)))
}
