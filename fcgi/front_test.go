package fcgi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	stdfcgi "net/http/fcgi"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/stardust-go/stardust/internal/fcgitest"
)

var networks = []string{"tcp", "unix"}

// waitLong bounds every wait in these tests; nothing should come near it.
const waitLong = 5 * time.Second

// server is a Front serving on a real socket.
type server struct {
	f       *Front
	l       net.Listener
	log     *logtest.Hook
	network string
	dial    string // address for net.Dial / fcgitest.Dial
	served  chan struct{}
	err     error // Serve's result, set before served is closed
}

// addr is the address in the form fcgitest.Get takes.
func (s *server) addr() string {
	if s.network == "unix" {
		return "unix:" + s.dial
	}
	return s.dial
}

// serveResult waits for Serve to return.
func (s *server) serveResult(t *testing.T) error {
	t.Helper()
	select {
	case <-s.served:
		return s.err
	case <-time.After(waitLong):
		t.Fatal("Serve did not return")
		return nil
	}
}

// sockPath returns a socket path in a fresh directory, short enough for the
// 108-byte sun_path limit even when t.TempDir is long.
func sockPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fcgi.sock")
	if len(p) <= maxUnixPath {
		return p
	}
	dir, err := os.MkdirTemp("/tmp", "sdfcgi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "fcgi.sock")
}

// newTestLogger returns a logger at debug level (so the debug paths run)
// whose entries a test can inspect.
func newTestLogger() (*logrus.Logger, *logtest.Hook) {
	logger, hook := logtest.NewNullLogger()
	logger.SetLevel(logrus.DebugLevel)
	return logger, hook
}

func start(t *testing.T, network string, h http.Handler) *server {
	t.Helper()
	logger, hook := newTestLogger()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = "unix:" + sockPath(t)
	}
	l, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{f: New(h, logrus.NewEntry(logger)), l: l, log: hook, network: network,
		dial: l.Addr().String(), served: make(chan struct{})}
	go func() {
		s.err = s.f.Serve(l)
		close(s.served)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		if err := s.f.Shutdown(ctx); err != nil {
			t.Errorf("cleanup: Shutdown: %v", err)
		}
		s.serveResult(t)
	})
	return s
}

// seen is what the echo handler reports about a request.
type seen struct {
	Method, Path, EscapedPath, Query, RequestURI string
	Host, Remote, Body, ContentType, UserAgent   string
	Env                                          map[string]string
}

var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	json.NewEncoder(w).Encode(seen{
		Method: r.Method, Path: r.URL.Path, EscapedPath: r.URL.EscapedPath(),
		Query: r.URL.RawQuery, RequestURI: r.RequestURI, Host: r.Host,
		Remote: r.RemoteAddr, Body: string(body), ContentType: r.Header.Get("Content-Type"),
		UserAgent: r.UserAgent(), Env: stdfcgi.ProcessEnv(r),
	})
})

// decodeSeen returns a function that decodes the echo handler's response;
// it takes a (response, error) pair straight from a fcgitest call.
func decodeSeen(t *testing.T) func(*http.Response, error) seen {
	return func(resp *http.Response, err error) seen {
		t.Helper()
		return decodeSeenResp(t, resp, err)
	}
}

func decodeSeenResp(t *testing.T, resp *http.Response, err error) seen {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %s: %s (stderr %q)", resp.Status, b, resp.Trailer.Get(fcgitest.StderrTrailer))
	}
	var s seen
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRequestMapping sends every param style of mappingCases through a real
// Front and checks what the handler sees.
func TestRequestMapping(t *testing.T) {
	for _, network := range networks {
		s := start(t, network, echo)
		for _, tc := range mappingCases() {
			t.Run(network+"/"+tc.name, func(t *testing.T) {
				got := decodeSeen(t)(fcgitest.Do(s.network, s.dial, tc.params, nil))
				want := publicURL(tc.params).RequestURI()
				if got.Path != tc.path || got.Query != tc.query || got.RequestURI != want {
					t.Errorf("path %q query %q uri %q, want %q %q %q",
						got.Path, got.Query, got.RequestURI, tc.path, tc.query, want)
				}
				if tc.rawPath != "" && got.EscapedPath != tc.rawPath {
					t.Errorf("escaped path %q, want %q", got.EscapedPath, tc.rawPath)
				}
				if got.Host != tc.host || got.Method != tc.params["REQUEST_METHOD"] {
					t.Errorf("host %q method %q, want %q %q", got.Host, got.Method, tc.host, tc.params["REQUEST_METHOD"])
				}
				if a := tc.params["REMOTE_ADDR"]; a != "" && got.Remote != a+":"+tc.params["REMOTE_PORT"] {
					t.Errorf("remote %q", got.Remote)
				}
				if _, ok := got.Env[tokenParam]; ok {
					t.Errorf("handler sees %s", tokenParam)
				}
				if sf := tc.params["SCRIPT_FILENAME"]; sf != "" && got.Env["SCRIPT_FILENAME"] != sf {
					t.Errorf("SCRIPT_FILENAME %q, want %q", got.Env["SCRIPT_FILENAME"], sf)
				}
			})
		}
	}
}

func TestPostBody(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 200<<10/16) // several STDIN records
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			s := start(t, network, echo)
			got := decodeSeen(t)(fcgitest.Post(s.addr(), "/comet/channel/foo?x=1", "application/json", strings.NewReader(big)))
			if got.Method != "POST" || got.Body != big || got.ContentType != "application/json" ||
				got.Path != "/comet/channel/foo" || got.Query != "x=1" || got.UserAgent != "fcgitest" {
				t.Errorf("got %s %s?%s type %q agent %q body of %d bytes",
					got.Method, got.Path, got.Query, got.ContentType, got.UserAgent, len(got.Body))
			}
		})
	}
}

// TestTinyRecords makes every name-value pair and the body straddle records,
// through net/http/fcgi itself.
func TestTinyRecords(t *testing.T) {
	s := start(t, "tcp", echo)
	c, err := fcgitest.Dial(s.network, s.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.RecordSize = 3
	p := fcgitest.NginxSplitParams("PUT", "/comet/channel/a%20b?q=%26", "/comet")
	p["CONTENT_LENGTH"] = "11"
	if err := c.Send(1, false, p, strings.NewReader("hello world")); err != nil {
		t.Fatal(err)
	}
	got := decodeSeen(t)(c.ReadResponse(1))
	if got.Method != "PUT" || got.Path != "/comet/channel/a b" || got.Query != "q=%26" || got.Body != "hello world" {
		t.Errorf("got %+v", got)
	}
}

// hold is a handler that blocks until release is closed.
type hold struct {
	entered, release chan struct{}
}

func newHold() *hold { return &hold{make(chan struct{}), make(chan struct{})} }

func (h *hold) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	close(h.entered)
	<-h.release
	io.WriteString(w, "released")
}

func (h *hold) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(waitLong):
		t.Fatal("handler not called")
	}
}

type result struct {
	resp *http.Response
	err  error
}

func getAsync(addr, path string) chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := fcgitest.Get(addr, path)
		ch <- result{resp, err}
	}()
	return ch
}

func wantBody(t *testing.T, ch chan result, want string) {
	t.Helper()
	var r result
	select {
	case r = <-ch:
	case <-time.After(waitLong):
		t.Fatal("no response")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	b, _ := io.ReadAll(r.resp.Body)
	if r.resp.StatusCode != http.StatusOK || string(b) != want {
		t.Fatalf("got %s %q, want 200 %q", r.resp.Status, b, want)
	}
}

// checkGoroutines waits for the goroutine count to come back to base.
func checkGoroutines(t *testing.T, base int) {
	t.Helper()
	const slack = 2
	deadline := time.Now().Add(waitLong)
	for runtime.NumGoroutine() > base+slack {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, baseline %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdownWaitsForHeldRequest(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			base := runtime.NumGoroutine()
			h := newHold()
			s := start(t, network, h)
			got := getAsync(s.addr(), "/comet/channel/foo/stream/1")
			h.waitEntered(t)

			done := make(chan error, 1)
			go func() { done <- s.f.Shutdown(context.Background()) }()
			if err := s.serveResult(t); err != nil {
				t.Fatalf("Serve returned %v after Shutdown, want nil", err)
			}
			// Not a dial to the old TCP port: on a shared machine another
			// process may have taken it already.
			if _, err := s.l.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("listener not closed after Shutdown: %v", err)
			}
			if network == "unix" {
				if c, err := net.Dial(s.network, s.dial); err == nil {
					c.Close()
					t.Fatal("unix socket still accepts after Shutdown")
				}
				if _, err := os.Stat(s.dial); err == nil {
					t.Error("socket file left behind")
				}
			}
			select {
			case err := <-done:
				t.Fatalf("Shutdown returned %v while a request was held", err)
			case <-time.After(100 * time.Millisecond):
			}

			close(h.release)
			wantBody(t, got, "released")
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Shutdown: %v", err)
				}
			case <-time.After(waitLong):
				t.Fatal("Shutdown did not return after the request finished")
			}
			checkGoroutines(t, base)
			assertLogged(t, s.log, logrus.InfoLevel, "fcgi: serving FastCGI", "fcgi: shutting down", "fcgi: stopped serving FastCGI")
		})
	}
}

func assertLogged(t *testing.T, hook *logtest.Hook, level logrus.Level, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		found := false
		for _, e := range hook.AllEntries() {
			found = found || (e.Level == level && e.Message == m)
		}
		if !found {
			t.Errorf("no %s log %q", level, m)
		}
	}
}

func TestShutdownContextExpires(t *testing.T) {
	h := newHold()
	s := start(t, "tcp", h)
	got := getAsync(s.addr(), "/comet/hold")
	h.waitEntered(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.f.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want deadline exceeded", err)
	}
	close(h.release) // the request still completes
	wantBody(t, got, "released")
	ctx, cancel = context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := s.f.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// keepConnRequest sends one FCGI_KEEP_CONN request and reads its response.
func keepConnRequest(t *testing.T, c *fcgitest.Conn, id uint16, path string) string {
	t.Helper()
	if err := c.Send(id, true, fcgitest.NginxParams("GET", path), nil); err != nil {
		t.Fatal(err)
	}
	resp, err := c.ReadResponse(id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err) // io.EOF only comes with FCGI_END_REQUEST
	}
	resp.Body.Close()
	return string(b)
}

// wantClosed checks that the server has closed c.
func wantClosed(t *testing.T, c *fcgitest.Conn) {
	t.Helper()
	if err := c.Send(99, true, fcgitest.NginxParams("GET", "/"), nil); err == nil {
		if _, err = c.ReadResponse(99); err == nil {
			t.Fatal("connection still serves requests after Shutdown")
		}
	}
}

func TestShutdownClosesIdleKeepConn(t *testing.T) {
	base := runtime.NumGoroutine()
	s := start(t, "tcp", echo)
	c, err := fcgitest.Dial(s.network, s.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for id := uint16(1); id <= 2; id++ {
		if b := keepConnRequest(t, c, id, "/comet/x"); !strings.Contains(b, `"Path":"/comet/x"`) {
			t.Fatalf("request %d: %s", id, b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := s.f.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an idle keep-conn connection: %v", err)
	}
	wantClosed(t, c)
	c.Close()
	checkGoroutines(t, base)
}

// TestShutdownKeepConnBusy checks that a request on a FCGI_KEEP_CONN
// connection is answered in full (through FCGI_END_REQUEST) before Shutdown
// closes the connection.
func TestShutdownKeepConnBusy(t *testing.T) {
	h := newHold()
	s := start(t, "unix", h)
	c, err := fcgitest.Dial(s.network, s.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := make(chan string, 1)
	go func() { body <- keepConnRequest(t, c, 1, "/comet/hold") }()
	h.waitEntered(t)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		done <- s.f.Shutdown(ctx)
	}()
	<-s.f.down // Shutdown has begun while the request is held
	close(h.release)
	if b := <-body; b != "released" {
		t.Fatalf("body %q", b)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantClosed(t, c)
}

func TestServeAfterShutdown(t *testing.T) {
	f := New(echo, nil)
	if err := f.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Serve(l); err != nil {
		t.Fatalf("Serve after Shutdown: %v, want nil", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("listener not closed: %v", err)
	}
	if err := f.Serve(nil); err == nil {
		t.Fatal("Serve(nil) succeeded")
	}
}

func TestNewNilHandlerPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("New(nil, ...) did not panic")
		}
	}()
	New(nil, nil)
}

// waitCause waits for a handler to report its context's cancellation cause.
func waitCause(t *testing.T, causes chan error, want error) {
	t.Helper()
	select {
	case err := <-causes:
		if !errors.Is(err, want) {
			t.Fatalf("cause %v, want %v", err, want)
		}
	case <-time.After(waitLong):
		t.Fatal("request context not cancelled")
	}
}

// TestStreamAndHangUp streams Server-Sent Events and checks that closing the
// connection (the browser went away) cancels the request's context.
func TestStreamAndHangUp(t *testing.T) {
	next, causes := make(chan struct{}), make(chan error, 1)
	s := start(t, "tcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		<-next
		io.WriteString(w, "data: 2\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		causes <- context.Cause(r.Context())
	}))
	resp, err := fcgitest.DoStream(s.network, s.dial, fcgitest.NginxParams("GET", "/comet/sse"), nil)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i, want := range []string{"data: 1\n", "\n", "data: 2\n"} {
		if i == 2 {
			close(next) // event 1 arrived before event 2 was written
		}
		if line, err := br.ReadString('\n'); line != want {
			t.Fatalf("line %d: %q (%v), want %q", i, line, err, want)
		}
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	resp.Body.Close()
	waitCause(t, causes, ErrConnClosed)
}

func TestAbortCancelsContext(t *testing.T) {
	entered, causes := make(chan struct{}), make(chan error, 1)
	s := start(t, "tcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		causes <- context.Cause(r.Context())
	}))
	c, err := fcgitest.Dial(s.network, s.dial)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(1, true, fcgitest.NginxParams("GET", "/comet/x"), nil); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := c.Abort(1); err != nil {
		t.Fatal(err)
	}
	waitCause(t, causes, ErrRequestAborted)
}

func TestHandlerPanic(t *testing.T) {
	s := start(t, "tcp", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		io.WriteString(w, "fine")
	}))
	if resp, err := fcgitest.Get(s.addr(), "/panic"); err == nil {
		t.Fatalf("panicking handler answered %s", resp.Status)
	}
	wantBody(t, getAsync(s.addr(), "/ok"), "fine") // the process lives on
	found := false
	for _, e := range s.log.AllEntries() {
		found = found || (e.Level == logrus.ErrorLevel && strings.Contains(e.Message, "boom"))
	}
	if !found {
		t.Error("panic not logged")
	}
}

// pipeListener accepts the server ends of net.Pipe connections: writes on a
// pipe block until the other end reads, so a test can hold the server in
// the middle of sending a response.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "pipe"} }

func (l *pipeListener) dial() *fcgitest.Conn {
	c, s := net.Pipe()
	l.conns <- s
	return fcgitest.NewConn(c)
}

// TestShutdownWaitsForEndRequest: a handler that has returned has not
// finished its request; net/http/fcgi still has to flush the response and
// write FCGI_END_REQUEST. Shutdown must not close the connection before.
func TestShutdownWaitsForEndRequest(t *testing.T) {
	returned := make(chan struct{})
	f := New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		// net/http/fcgi writes the headers on the first Write (or, as here,
		// after the handler returns), so this handler cannot block.
		w.Header().Set("X-Answer", "42")
	}), nil)
	l := newPipeListener()
	served := make(chan error, 1)
	go func() { served <- f.Serve(l) }()
	c := l.dial()
	defer c.Close()
	if err := c.Send(1, false, fcgitest.NginxParams("GET", "/comet/x"), nil); err != nil {
		t.Fatal(err)
	}
	<-returned
	for deadline := time.Now().Add(waitLong); ; time.Sleep(time.Millisecond) {
		f.mu.Lock()
		n := f.handlers
		f.mu.Unlock()
		if n == 0 {
			break // the response is still unwritten: nobody reads the pipe yet
		}
		if time.Now().After(deadline) {
			t.Fatal("handler count did not drop")
		}
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		done <- f.Shutdown(ctx)
	}()
	<-f.down
	resp, err := c.ReadResponse(1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err != nil || resp.Header.Get("X-Answer") != "42" {
		t.Fatalf("response cut short: %v, header %v", err, resp.Header)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
