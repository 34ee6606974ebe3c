// Command stardust-floor is the reference for load tests: the least a
// net/http server can do for the held requests of Stardust API long polling
// and for Bayeux WebSocket subscribers (see package internal/floor). It
// answers a held poll when a message is posted, writes a published message
// as one frame to each subscribed socket, and nothing more, so that cmd/stardust-load can show how far a real
// server is from the cost of HTTP itself.
//
//	GOMAXPROCS=1 taskset -c 0 stardust-floor --listen 127.0.0.1:5799 &
//	taskset -c 1 stardust-load --url http://127.0.0.1:5799/comet --pid $!
//
// It listens on loopback addresses only and exits on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stardust-go/stardust/internal/floor"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "stardust-floor:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stardust-floor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:5799", "loopback `host:port` to listen on (port 0 picks one)")
	base := fs.String("base", "/comet", "base `path`, as Stardust's server.base")
	hold := fs.Duration("timeout", 30*time.Second, "how long a poll is held with nothing to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *hold <= 0 {
		return fmt.Errorf("--timeout %s: want more than 0", *hold)
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return fmt.Errorf("--listen: %v", err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--listen %q: want a loopback address (127.0.0.0/8 or ::1)", *listen)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: floor.New(*base, *hold), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	}()
	fmt.Fprintf(stdout, "stardust-floor listening on http://%s%s\n", l.Addr(), *base)
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
