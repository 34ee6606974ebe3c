// Package redistest starts a real redis-server (Debian's package) for
// tests, on a free loopback port with its files in a temp dir, and stops it
// when the test ends.
package redistest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/internal/testenv"
)

// Server is a running redis-server.
type Server struct {
	URL  string // redis://127.0.0.1:PORT/0
	Addr string // 127.0.0.1:PORT
	Dir  string // its config and data
	// TLS, when set, is how a client reaches it: it listens for TLS only.
	TLS *tls.Config

	t    testing.TB
	path string
	cmd  *exec.Cmd
}

// Start runs redis-server for the test, or skips it loudly (fails under
// STARDUST_REQUIRE_INTEGRATION=1) when the program is missing.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, "")
}

// StartReplica runs a redis-server that replicates master, and returns
// once it holds the master's data.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	return StartReplicaOf(t, master.Addr)
}

// StartReplicaOf runs a redis-server that replicates the master at addr (a
// Proxy's, to cut the link at will), and returns once it holds its data.
func StartReplicaOf(t testing.TB, addr string) *Server {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	s := start(t, fmt.Sprintf("replicaof %s %s\n", host, port))
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.Do(context.Background(), c.B().Info().Section("replication").Build()).ToString()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s did not sync with %s: %v %s", s.Addr, addr, err, info)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func start(t testing.TB, extra string) *Server {
	t.Helper()
	return startProgram(t, testenv.RequireProgram(t, "redis-server", "redis-server"), serverConf+extra)
}

// startProgram runs redis-server or redis-sentinel (path) on a free
// loopback port with its files in a temp dir, its config being the common
// lines and then conf, in which {port} is that port.
func startProgram(t testing.TB, path, conf string) *Server {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	addr := net.JoinHostPort("127.0.0.1", port)
	s := &Server{Addr: addr, URL: "redis://" + addr + "/0", Dir: t.TempDir(), t: t, path: path}
	conf = strings.ReplaceAll(conf, "{port}", port)
	conf = fmt.Sprintf("bind 127.0.0.1\nport %s\ndir %s\ndaemonize no\nloglevel warning\nlogfile %s\n",
		port, s.Dir, filepath.Join(s.Dir, "redis.log")) + conf
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

// Do runs one command (SAVE, FLUSHALL, INFO replication...) on the server
// and returns its answer as text.
func (s *Server) Do(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.result(t, args...).ToAny()
	if err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	return fmt.Sprint(out)
}

// result runs one command on the server and returns its answer.
func (s *Server) result(t testing.TB, args ...string) rueidis.RedisResult {
	t.Helper()
	// One server, even a Cluster's node: rueidis would otherwise make a
	// Cluster client, which sends a command without a key to any node.
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{s.Addr}, DisableCache: true, ForceSingleClient: true, TLSConfig: s.TLS})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.Do(context.Background(), c.B().Arbitrary(args...).Build())
}

// Proxy forwards connections on a loopback port to a server, and can be
// pointed at another one, as a failover moves clients: a client given
// Proxy.URL sees its server change under one address.
type Proxy struct {
	URL  string // redis://127.0.0.1:PORT/0
	Addr string

	l      net.Listener
	mu     sync.Mutex
	target string
	conns  map[net.Conn]string // each forwarded connection, with the address it leads to
}

// StartProxy forwards to target until the test ends.
func StartProxy(t testing.TB, target *Server) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String(), l: l, target: target.Addr, conns: map[net.Conn]string{}}
	p.URL = "redis://" + p.Addr + "/0"
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.forward(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		p.closeAll()
		wg.Wait()
	})
	return p
}

func (p *Proxy) forward(c net.Conn) {
	p.mu.Lock()
	target := p.target
	p.mu.Unlock()
	up, err := net.DialTimeout("tcp", target, time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if target != p.target {
		// Switched while dialling: this connection leads to the old target.
		p.mu.Unlock()
		_, _ = c.Close(), up.Close()
		return
	}
	p.conns[c], p.conns[up] = target, target
	p.mu.Unlock()
	splice(c, up)
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// splice copies a to b and b to a until either ends, then closes both
// and returns once both copies are done.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(b, a)
	go pipe(a, b)
	<-done
	_, _ = a.Close(), b.Close()
	<-done
}

// closeAll closes the forwarded connections, all of them or (keep set)
// those that do not lead to keep.
func (p *Proxy) closeAll(keep ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, to := range p.conns {
		if len(keep) == 0 || to != keep[0] {
			_ = c.Close()
		}
	}
}

// Cut closes every forwarded connection and refuses new ones until Switch,
// as a network partition: what was not forwarded yet never arrives.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.target = ""
	p.mu.Unlock()
	p.closeAll()
}

// Switch closes every forwarded connection to the old target and sends new
// ones to target. A connection made to target in between is kept: closing it
// too would make one failover look like two.
func (p *Proxy) Switch(target *Server) {
	p.mu.Lock()
	p.target = target.Addr
	p.mu.Unlock()
	p.closeAll(target.Addr)
}

// Try runs one command on the server and returns its answer or its error
// as text, for a test that waits for an error (CLUSTERDOWN, LOADING).
func (s *Server) Try(args ...string) string {
	out, err := s.result(s.t, args...).ToAny()
	if err != nil {
		return err.Error()
	}
	return fmt.Sprint(out)
}
