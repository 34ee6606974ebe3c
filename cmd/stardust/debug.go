package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/stardust-go/stardust/conf"
	"github.com/stardust-go/stardust/server"
)

// The diagnostics that are off by default: the access log (log.requests)
// and the net/http/pprof listener (debug.pprof).

// openAccessLog opens log.requests: nothing for "", standard error for
// "stderr", else the file, appended.
func (m *Main) openAccessLog() error {
	switch r := m.Config.Log.Requests; r {
	case "":
		return nil
	case "stderr":
		m.accessLog = server.NewAccessLog(m.Stderr, time.Second)
	default:
		f, err := os.OpenFile(r, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return fmt.Errorf("log.requests: %w", err)
		}
		m.accessLogFile = f
		m.accessLog = server.NewAccessLog(f, time.Second)
	}
	return nil
}

// handler is the core, behind the access log when there is one.
func (m *Main) handler() http.Handler {
	if m.accessLog == nil {
		return m.server
	}
	return m.server.WithAccessLog(m.accessLog)
}

// closeAccessLog writes out what the access log holds and closes its file.
func (m *Main) closeAccessLog() error {
	if m.accessLog == nil {
		return nil
	}
	err := m.accessLog.Close()
	if m.accessLogFile != nil {
		err = errors.Join(err, m.accessLogFile.Close())
	}
	return err
}

// PprofHandler serves net/http/pprof's pages under /debug/pprof/.
func PprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// startPprof listens on debug.pprof, if set, after checking again that it is
// loopback or explicitly allowed to be remote; it answers only the clients
// metrics.allow_from lets in.
func (m *Main) startPprof() error {
	d := m.Config.Debug
	if d.Pprof == "" {
		return nil
	}
	if err := conf.CheckPprof(d.Pprof, d.PprofAllowRemote); err != nil {
		return fmt.Errorf("debug.pprof: %w", err)
	}
	l, err := net.Listen("tcp", d.Pprof)
	if err != nil {
		return fmt.Errorf("debug.pprof: %w", err)
	}
	m.pprofAddr = l.Addr()
	opts, err := serverOptions(&m.Config)
	if err != nil {
		l.Close()
		return err
	}
	h := server.OnlyFrom(PprofHandler(), opts.MetricsAllowFrom, opts.TrustedProxies)
	m.pprof = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = m.pprof.Serve(l) }()
	m.log.WithField("addr", l.Addr().String()).Warn("pprof listening: profiles of this process are served there")
	return nil
}

// PprofAddr is where the pprof listener listens, nil when it is off.
func (m *Main) PprofAddr() net.Addr { return m.pprofAddr }

func (m *Main) stopPprof() {
	if m.pprof != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = m.pprof.Shutdown(ctx)
	}
}
