// Package fcgi is the FastCGI front: it serves the core's http.Handler to a
// web server (nginx fastcgi_pass, apache2 mod_proxy_fcgi) through the
// standard library's net/http/fcgi, and adds what that package lacks for a
// long-polling server:
//
//   - Shutdown: net/http/fcgi has none. The Front tracks connections and
//     requests itself, closes its listeners, waits for every request to be
//     answered, and closes idle connections.
//   - Cancellation: net/http/fcgi never cancels a request's context. The
//     Front cancels it when the web server closes the connection (the
//     browser went away) or aborts the request.
//   - Paths: the handler sees r.URL.Path as the browser sent it (for example
//     /comet/channel/foo/stream/1.2) whichever way the web server splits it
//     into REQUEST_URI, SCRIPT_NAME and PATH_INFO, plus r.RequestURI.
//   - Panics: a handler panic is logged and ends that request only;
//     net/http/fcgi does not recover, so it would end the process.
//   - Limits: net/http/fcgi serves any number of simultaneous requests on
//     one connection; the Front refuses those beyond its Limits at once
//     (503, FCGI_OVERLOADED) before net/http/fcgi sees them.
package fcgi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"net/url"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
)

// Causes of a request context's cancellation, as returned by context.Cause.
var (
	// ErrConnClosed: the web server closed the connection the request came
	// on, usually because the browser went away.
	ErrConnClosed = errors.New("fcgi: connection to web server closed")
	// ErrRequestAborted: the web server sent FCGI_ABORT_REQUEST.
	ErrRequestAborted = errors.New("fcgi: request aborted by web server")
)

// tokenParam is the param the Front adds to each request so that the handler
// wrapper can find the connection-side state of its request. The handler
// never sees it: it is removed from fcgi.ProcessEnv before the handler runs.
const tokenParam = "STARDUST_FCGI_TOKEN"

// placeholderHost is what RequestFromMap is given when HTTP_HOST is empty or
// would not parse; the handler gets the real Host back.
const placeholderHost = "localhost"

// Front serves one http.Handler over FastCGI on any number of listeners.
// Create it with New; the zero Front is not usable. Serve and Shutdown may be
// called from any goroutine. A Front is done once Shutdown has been called:
// it cannot serve again.
type Front struct {
	h      http.Handler
	log    *logrus.Entry
	limits Limits
	down   chan struct{} // closed when Shutdown starts
	warned atomic.Bool   // warned of params without REQUEST_METHOD

	mu        sync.Mutex
	shutting  bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	reqs      map[uint64]*request // by token
	seq       uint64              // last token handed out
	handlers  int                 // handler calls running
	wake      chan struct{}       // closed (and cleared) when work ends
}

// request is the connection-side state of one FastCGI request, from
// FCGI_BEGIN_REQUEST until its FCGI_END_REQUEST has been written.
type request struct {
	c      *conn
	id     uint16
	token  uint64
	ctx    context.Context // cancelled when the web server gives up
	cancel context.CancelCauseFunc
	url    *url.URL // public URL, nil until the params are complete
	host   string   // HTTP_HOST as sent
}

// Limits bound the requests a Front serves at once, each from its
// FCGI_BEGIN_REQUEST until its FCGI_END_REQUEST is written. net/http/fcgi
// starts a goroutine for every request a connection begins, however many:
// 5,000 at once on one connection took 86 MiB. A request over a limit is
// answered at once with a 503 (Retry-After) and FCGI_END_REQUEST with
// FCGI_OVERLOADED, and its records are dropped; the connection serves on.
type Limits struct {
	// PerConn bounds the requests in flight on one connection; default
	// DefaultMaxRequestsPerConn, negative no limit.
	PerConn int
	// Total bounds the requests in flight on the whole Front; 0 or
	// negative: no limit.
	Total int
	// Refused, if set, is called for each request refused, to count it.
	// It must return at once.
	Refused func()
}

// DefaultMaxRequestsPerConn is Limits.PerConn's default. nginx, apache2
// (mod_proxy_fcgi), lighttpd and Caddy never send a second request on a
// connection before the first is answered; net/http/fcgi tells a web
// server that asks (FCGI_GET_VALUES) that it may multiplex, so a front that
// does has room for a few, while one connection costs at most 8 requests'
// memory (about 17 KiB each) rather than any number.
const DefaultMaxRequestsPerConn = 8

// New returns a Front that serves h, logging to log, with the default
// Limits (see NewLimited).
func New(h http.Handler, log *logrus.Entry) *Front { return NewLimited(h, log, Limits{}) }

// NewLimited returns a Front that serves h, logging to log, with at most
// lim requests in flight. h must not be nil (NewLimited panics:
// net/http/fcgi would silently serve http.DefaultServeMux instead). A nil
// log discards the Front's log lines.
func NewLimited(h http.Handler, log *logrus.Entry, lim Limits) *Front {
	if h == nil {
		panic("fcgi: New with nil handler")
	}
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	switch {
	case lim.PerConn == 0:
		lim.PerConn = DefaultMaxRequestsPerConn
	case lim.PerConn < 0:
		lim.PerConn = 0
	}
	lim.Total = max(lim.Total, 0)
	return &Front{
		h:         h,
		log:       log,
		limits:    lim,
		down:      make(chan struct{}),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		reqs:      make(map[uint64]*request),
	}
}

// Serve accepts FastCGI connections on l and serves each request with the
// Front's handler, until l fails or Shutdown is called. It blocks, and always
// closes l before it returns. It returns nil after Shutdown (also when called
// after Shutdown), otherwise the error that ended accepting. l must not be
// nil (net/http/fcgi would read connections from standard input).
func (f *Front) Serve(l net.Listener) error {
	if l == nil {
		return errors.New("fcgi: Serve with nil listener")
	}
	if !f.addListener(l) {
		l.Close()
		return nil
	}
	log := f.log.WithField("listen", l.Addr().Network()+":"+l.Addr().String())
	log.Info("fcgi: serving FastCGI")
	err := fcgi.Serve(&listener{Listener: l, f: f}, http.HandlerFunc(f.serveHTTP))
	l.Close()
	f.mu.Lock()
	delete(f.listeners, l)
	f.mu.Unlock()
	if f.stopping() {
		log.Info("fcgi: stopped serving FastCGI")
		return nil
	}
	log.WithError(err).Info("fcgi: stopped serving FastCGI")
	return fmt.Errorf("fcgi: serve %s: %w", l.Addr(), err)
}

// Shutdown stops the Front gracefully: it closes every listener (so Serve
// returns nil), closes connections that carry no request, and waits until
// every request has been answered and its connection closed. It does not
// cancel requests: the handler must answer held long-polls itself when the
// server shuts down. If ctx ends first, Shutdown returns ctx.Err(); requests
// still running carry on, and their connections are closed as they finish.
// Shutdown may be called more than once and concurrently.
func (f *Front) Shutdown(ctx context.Context) error {
	f.mu.Lock()
	first := !f.shutting
	if first {
		f.shutting = true
		close(f.down)
	}
	ls := make([]net.Listener, 0, len(f.listeners))
	for l := range f.listeners {
		ls = append(ls, l)
	}
	var idle []*conn
	for c := range f.conns {
		if len(c.reqs) == 0 {
			idle = append(idle, c)
		}
	}
	busy, handlers := len(f.conns)-len(idle), f.handlers
	f.mu.Unlock()

	if first {
		f.log.WithFields(logrus.Fields{"busy_conns": busy, "handlers": handlers}).
			Info("fcgi: shutting down")
	}
	for _, l := range ls {
		l.Close()
	}
	for _, c := range idle {
		c.Close()
	}
	return f.wait(ctx)
}

// wait blocks until no handler runs and no connection is open, or ctx ends.
func (f *Front) wait(ctx context.Context) error {
	for {
		f.mu.Lock()
		if f.handlers == 0 && len(f.conns) == 0 {
			f.mu.Unlock()
			return nil
		}
		if f.wake == nil {
			f.wake = make(chan struct{})
		}
		wake := f.wake
		f.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// changed wakes Shutdown's waiters. f.mu must be held.
func (f *Front) changed() {
	if f.wake != nil {
		close(f.wake)
		f.wake = nil
	}
}

func (f *Front) stopping() bool {
	select {
	case <-f.down:
		return true
	default:
		return false
	}
}

func (f *Front) addListener(l net.Listener) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.shutting {
		return false
	}
	f.listeners[l] = struct{}{}
	return true
}

func (f *Front) isClosed(c *conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return c.closed
}

// track wraps a newly accepted connection. A connection accepted while
// Shutdown closes the listener is closed at once.
func (f *Front) track(nc net.Conn) (net.Conn, error) {
	f.mu.Lock()
	if f.shutting {
		f.mu.Unlock()
		nc.Close()
		return nil, net.ErrClosed
	}
	c := newConn(nc, f)
	f.conns[c] = struct{}{}
	f.mu.Unlock()
	if f.debug() {
		f.log.WithField("peer", peer(nc)).Debug("fcgi: connection opened")
	}
	return c, nil
}

// untrack forgets a closing connection and cancels its open requests.
func (f *Front) untrack(c *conn) {
	f.mu.Lock()
	if c.closed {
		f.mu.Unlock()
		return
	}
	c.closed = true
	delete(f.conns, c)
	for _, r := range c.reqs {
		f.forget(r, ErrConnClosed)
	}
	f.changed()
	f.mu.Unlock()
	if f.debug() {
		f.log.WithField("peer", peer(c.Conn)).Debug("fcgi: connection closed")
	}
}

// forget drops a request's state and cancels its context. f.mu must be held.
func (f *Front) forget(r *request, cause error) {
	r.cancel(cause)
	delete(r.c.reqs, r.id)
	delete(f.reqs, r.token)
}

// begin records FCGI_BEGIN_REQUEST. Called from the connection's reader.
// It reports false, recording nothing, when the request would be over the
// Front's Limits: the caller refuses it.
func (f *Front) begin(c *conn, id uint16) bool {
	ctx, cancel := context.WithCancelCause(context.Background())
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.closed {
		cancel(ErrConnClosed)
		return true // net/http/fcgi's request dies with the connection
	}
	if old := c.reqs[id]; old != nil {
		// net/http/fcgi drops the connection for a reused in-flight ID.
		f.forget(old, ErrRequestAborted)
	}
	if (f.limits.PerConn > 0 && len(c.reqs) >= f.limits.PerConn) || (f.limits.Total > 0 && len(f.reqs) >= f.limits.Total) {
		cancel(nil)
		return false
	}
	f.seq++ // tokens start at 1
	r := &request{c: c, id: id, token: f.seq, ctx: ctx, cancel: cancel}
	c.reqs[id] = r
	f.reqs[r.token] = r
	return true
}

// abort records FCGI_ABORT_REQUEST. net/http/fcgi answers it with
// FCGI_END_REQUEST at once but lets the handler run on; cancelling the
// context is what lets the handler notice.
func (f *Front) abort(c *conn, id uint16) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r := c.reqs[id]; r != nil {
		r.cancel(ErrRequestAborted)
	}
}

// end records that a request's FCGI_END_REQUEST has been written. It reports
// whether the connection should now be closed: during Shutdown a connection
// is closed as soon as it carries no request, so the web server cannot start
// new ones on it.
func (f *Front) end(c *conn, id uint16) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := c.reqs[id]
	if r == nil {
		return false // a second END_REQUEST after an abort
	}
	f.forget(r, context.Canceled)
	f.changed()
	return f.shutting && len(c.reqs) == 0
}

// describe computes a request's public URL from its params once they are
// complete, stores it for the handler, and returns the pairs to append to the
// params: REQUEST_URI rewritten so RequestFromMap can always parse it, a
// parseable HTTP_HOST if the real one is not, and the request's token.
func (f *Front) describe(c *conn, id uint16, params map[string]string) []byte {
	u := publicURL(params)
	host := params["HTTP_HOST"]
	var token uint64 // 0: no state (no BEGIN_REQUEST, or the conn closed)
	f.mu.Lock()
	if r := c.reqs[id]; r != nil {
		r.url, r.host, token = u, host, r.token
	}
	f.mu.Unlock()
	if params["REQUEST_METHOD"] == "" && !f.warned.Swap(true) {
		f.log.Warn("fcgi: web server sent no REQUEST_METHOD; requests fail with 500 " +
			"(nginx: is `include fastcgi_params;` missing?)")
	}
	b := appendPair(nil, "REQUEST_URI", cgiRequestURI(u))
	if host == "" || !hostParses(host) {
		b = appendPair(b, "HTTP_HOST", placeholderHost)
	}
	// Always a token: a request without one would get a context that
	// nothing cancels; with token 0 the handler gets a cancelled one.
	return appendPair(b, tokenParam, strconv.FormatUint(token, 10))
}

// serveHTTP is the handler net/http/fcgi calls: it counts the call for
// Shutdown, puts the public URL and a cancellable context on the request,
// and contains panics.
func (f *Front) serveHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.handlers++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.handlers--
		f.changed()
		f.mu.Unlock()
	}()

	r, c, done := f.prepare(r)
	defer done()
	defer f.recoverPanic(w, r, c)
	start := time.Now()
	f.h.ServeHTTP(w, r)
	if f.debug() {
		f.log.WithFields(logrus.Fields{
			"method": r.Method, "uri": r.RequestURI, "remote": r.RemoteAddr,
			"duration": time.Since(start),
		}).Debug("fcgi: request served")
	}
}

// prepare finds the request's connection-side state by its token and returns
// the request as the handler should see it, its connection (nil if unknown)
// and a function to call when the handler is done.
func (f *Front) prepare(r *http.Request) (*http.Request, *conn, func()) {
	cl := f.claim(r)
	if cl.url != nil {
		r.URL, r.Host, r.RequestURI = cl.url, cl.host, cl.url.RequestURI()
	} else {
		// Either the connection is already gone (the request is dead and
		// its context cancelled below) or the web server sent STDIN before
		// the end of PARAMS: use what RequestFromMap made of the URL.
		r.URL = &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		r.RequestURI = r.URL.RequestURI()
	}
	if cl.req == nil {
		if cl.tokened { // the connection closed before the handler started
			ctx, cancel := context.WithCancelCause(r.Context())
			cancel(ErrConnClosed)
			r = r.WithContext(ctx)
		}
		return r, nil, func() {}
	}
	rctx := cl.req.ctx
	ctx, cancel := context.WithCancelCause(r.Context())
	stop := context.AfterFunc(rctx, func() { cancel(context.Cause(rctx)) })
	return r.WithContext(ctx), cl.req.c, func() { stop(); cancel(context.Canceled) }
}

// claimed is what the handler wrapper takes from a request's state.
type claimed struct {
	req     *request // nil if unknown or its connection is closed
	tokened bool     // the request carried a token
	url     *url.URL // a copy of req.url, or nil
	host    string
}

// claim takes the token param out of the request's CGI environment and looks
// up its state; the URL and Host are copied under the lock.
func (f *Front) claim(r *http.Request) claimed {
	env := fcgi.ProcessEnv(r)
	tok, ok := env[tokenParam]
	if !ok {
		return claimed{}
	}
	delete(env, tokenParam)
	n, err := strconv.ParseUint(tok, 10, 64)
	if err != nil {
		return claimed{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	req := f.reqs[n]
	if req == nil || req.c.closed {
		return claimed{tokened: true}
	}
	cl := claimed{req: req, tokened: true, host: req.host}
	if req.url != nil {
		u := *req.url
		cl.url = &u
	}
	return cl
}

// recoverPanic ends a panicking request as net/http.Server does: log it
// (except http.ErrAbortHandler) and drop the connection, so that the web
// server reports an error instead of passing on a cut-off response.
func (f *Front) recoverPanic(w http.ResponseWriter, r *http.Request, c *conn) {
	v := recover()
	if v == nil {
		return
	}
	if v != http.ErrAbortHandler {
		f.log.WithFields(logrus.Fields{"method": r.Method, "uri": r.RequestURI}).
			Errorf("fcgi: panic serving request: %v\n%s", v, debug.Stack())
	}
	w.WriteHeader(http.StatusInternalServerError) // no-op if headers are out
	if c != nil {
		c.Close()
	}
}

// peer names the web server's end of a connection for the log.
func peer(nc net.Conn) string {
	if a := nc.RemoteAddr(); a != nil && a.String() != "" {
		return a.Network() + ":" + a.String()
	}
	return nc.LocalAddr().Network() // unix sockets: the peer is unnamed
}

func (f *Front) debug() bool { return f.log.Logger.IsLevelEnabled(logrus.DebugLevel) }
