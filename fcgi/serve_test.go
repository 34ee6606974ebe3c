package fcgi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/internal/fcgitest"
)

// shutdown stops s and waits for Serve to return nil.
func (s *server) shutdown(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := s.f.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := s.serveResult(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestNoLeaks runs requests that end every way a request can end (answered,
// web server hung up, aborted, handler panicked) and checks that Shutdown
// leaves no goroutine behind.
func TestNoLeaks(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			base := runtime.NumGoroutine()
			s := start(t, network, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/wait":
					io.WriteString(w, "waiting\n")
					w.(http.Flusher).Flush()
					<-r.Context().Done()
				case "/panic":
					panic(http.ErrAbortHandler)
				default:
					io.WriteString(w, "ok")
				}
			}))
			for range 5 {
				wantBody(t, getAsync(s.addr(), "/comet/x"), "ok")
			}
			resp, err := fcgitest.DoStream(s.network, s.dial, fcgitest.NginxParams("GET", "/wait"), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close() // hang up on a held request
			c, err := fcgitest.Dial(s.network, s.dial)
			if err != nil {
				t.Fatal(err)
			}
			c.Send(1, true, fcgitest.NginxParams("GET", "/wait"), nil)
			c.Abort(1)
			fcgitest.Get(s.addr(), "/panic")
			s.shutdown(t)
			c.Close()
			checkGoroutines(t, base)
		})
	}
}

// TestServeListenerFails checks that Serve reports a listener that fails
// outside Shutdown.
func TestServeListenerFails(t *testing.T) {
	s := start(t, "tcp", echo)
	s.l.Close()
	if err := s.serveResult(t); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve: %v, want an error wrapping net.ErrClosed", err)
	}
}

// flakyListener fails its first Accepts with a temporary error (EMFILE).
type flakyListener struct {
	*pipeListener
	fails int
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails > 0 {
		l.fails--
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.pipeListener.Accept()
}

// TestAcceptRetries checks that a temporary accept error does not end
// serving, as it would with bare net/http/fcgi.
func TestAcceptRetries(t *testing.T) {
	logger, hook := newTestLogger()
	f := New(echo, logrus.NewEntry(logger))
	l := &flakyListener{pipeListener: newPipeListener(), fails: 2}
	served := make(chan error, 1)
	go func() { served <- f.Serve(l) }()
	c := l.dial()
	defer c.Close()
	if err := c.Send(1, false, fcgitest.NginxParams("GET", "/comet/x"), nil); err != nil {
		t.Fatal(err)
	}
	got := decodeSeen(t)(c.ReadResponse(1))
	if got.Path != "/comet/x" {
		t.Errorf("path %q", got.Path)
	}
	warned := 0
	for _, e := range hook.AllEntries() {
		if e.Level == logrus.WarnLevel && strings.Contains(e.Message, "accept failed") {
			warned++
		}
	}
	if warned != 2 {
		t.Errorf("%d accept warnings, want 2", warned)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLong):
		t.Fatal("Serve did not return")
	}
}
