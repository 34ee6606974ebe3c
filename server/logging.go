package server

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/sirupsen/logrus"
)

// LogRequests logs one line per request at info level, after it ends: method,
// path, status, bytes, duration and the client address (X-Forwarded-For
// honoured only from trusted proxies). Messages themselves are never logged at
// info level.
func (s *Server) LogRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if !s.log.Logger.IsLevelEnabled(logrus.InfoLevel) {
			return
		}
		s.log.WithFields(logrus.Fields{
			"method":   r.Method,
			"path":     redactPath(r.URL.Path), // no stream ids at info
			"status":   sw.Status(),
			"bytes":    sw.Bytes,
			"duration": time.Since(start).Round(time.Microsecond).String(),
			"remote":   s.rules.clientIP(r),
		}).Info("request")
	})
}

// StatusWriter records the status and size of a response. It passes Flush
// and Hijack through, so streaming and WebSocket upgrades keep working.
type StatusWriter struct {
	http.ResponseWriter
	Code  int
	Bytes int64
}

// Status returns the status written, 200 if none was written explicitly.
func (w *StatusWriter) Status() int {
	if w.Code == 0 {
		return http.StatusOK
	}
	return w.Code
}

// WriteHeader records the status.
func (w *StatusWriter) WriteHeader(code int) {
	if w.Code == 0 {
		w.Code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write counts the bytes.
func (w *StatusWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.Bytes += int64(n)
	return n, err
}

// Flush passes on to the underlying writer if it can flush.
func (w *StatusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack passes on to the underlying writer, for WebSocket upgrades.
func (w *StatusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := w.ResponseWriter.(http.Hijacker); ok {
		w.Code = http.StatusSwitchingProtocols
		return h.Hijack()
	}
	return nil, nil, fmt.Errorf("hijack not supported by %T", w.ResponseWriter)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
