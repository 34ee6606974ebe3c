// Package redistest starts a real redis-server (Debian's package) for
// tests, on a free loopback port with its files in a temp dir, and stops it
// when the test ends.
package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/testenv"
)

// Server is a running redis-server.
type Server struct {
	URL  string // redis://127.0.0.1:PORT/0
	Addr string // 127.0.0.1:PORT
	Dir  string // its config and data

	t    testing.TB
	path string
	cmd  *exec.Cmd
}

// Start runs redis-server for the test, or skips it loudly (fails under
// STARDUST_REQUIRE_INTEGRATION=1) when the program is missing.
func Start(t testing.TB) *Server {
	t.Helper()
	path := testenv.RequireProgram(t, "redis-server", "redis-server")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	s := &Server{Addr: addr, URL: "redis://" + addr + "/0", Dir: t.TempDir(), t: t, path: path}
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf("bind 127.0.0.1\nport %s\ndir %s\nsave \"\"\nappendonly no\nprotected-mode yes\ndaemonize no\nloglevel warning\nlogfile %s\n",
		port, s.Dir, filepath.Join(s.Dir, "redis.log"))
	if err := os.WriteFile(filepath.Join(s.Dir, "redis.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.path, filepath.Join(s.Dir, "redis.conf"))
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
			s.t.Fatalf("redis-server did not listen on %s: %s", s.Addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (its data is not saved: it comes back empty).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server and starts it again on the same port, empty,
// after down has passed.
func (s *Server) Restart(down time.Duration) {
	s.Stop()
	time.Sleep(down)
	s.start()
}
