package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// SlowWrite is how long one write (or flush) of a response may block before
// the request is logged as slow: the client or a proxy in between is not
// reading. Held polls and streams are long by design and are not slow.
const SlowWrite = time.Second

// LogRequests logs the requests that went wrong, after they end, with their
// method, path, status, bytes, duration and client address (X-Forwarded-For
// honoured only from trusted proxies): at warn level those answered 5xx
// (problem=failed) and those whose response stalled (problem=slow, see
// SlowWrite), at info level those rejected with 4xx (problem=rejected).
// Requests that went well are not logged here: that is the access log's job
// (AccessLog, log.requests), off by default. Messages are never logged.
// Beyond a burst, lines are only counted (IncidentLogSuppressed) in the
// incidents summary; a path is cut to maxLogValue bytes.
func (s *Server) LogRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		sw.afterAnswer(r, func(r *http.Request) { s.logProblem(r, sw, start) })
	})
}

// logProblem logs a request that ended, if it went wrong (see LogRequests).
func (s *Server) logProblem(r *http.Request, sw *StatusWriter, start time.Time) {
	status := sw.Status()
	level, problem := logrus.WarnLevel, ""
	switch {
	case status >= 500:
		problem = "failed"
	case status >= 400:
		level, problem = logrus.InfoLevel, "rejected"
	case sw.Stalled >= SlowWrite:
		problem = "slow"
	default:
		return
	}
	if !s.log.Logger.IsLevelEnabled(level) || !s.incidents.allowLine(time.Now()) {
		return
	}
	fields := logrus.Fields{
		"method":   cutLogValue(r.Method),
		"path":     logPath(r.URL.Path), // no stream ids at info, at most maxLogValue bytes
		"status":   status,
		"bytes":    sw.Bytes,
		"duration": time.Since(start).Round(time.Microsecond).String(),
		"remote":   s.rules.clientIP(r),
		"problem":  problem,
	}
	if problem == "slow" {
		fields["stalled"] = sw.Stalled.Round(time.Millisecond).String()
	}
	s.log.WithFields(fields).Log(level, "request")
}

// AccessLog writes one line per request in the combined format of nginx and
// apache2, followed by the request time in seconds:
//
//	127.0.0.1 - - [29/Nov/2026:08:50:00 +0000] "GET /comet/channel/a/stream/1 HTTP/1.1" 200 27 "-" "curl/8.5.0" 0.412
//
// The path is written without its query string, which may carry messages
// (callback-polling) or tokens, and without its stream id (a capability,
// see logPath); the path, method, referer and user agent are cut to
// maxLogValue bytes. Lines are buffered and written out every
// second, when the buffer fills, and at Close. Safe for concurrent use.
type AccessLog struct {
	mu   sync.Mutex
	buf  *bufio.Writer
	err  error
	stop chan struct{}
	done chan struct{}
}

// NewAccessLog returns an access log writing to out, flushed every flushEvery
// (a second if 0 or less).
func NewAccessLog(out io.Writer, flushEvery time.Duration) *AccessLog {
	if flushEvery <= 0 {
		flushEvery = time.Second
	}
	a := &AccessLog{buf: bufio.NewWriterSize(out, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-t.C:
				a.mu.Lock()
				a.flushLocked()
				a.mu.Unlock()
			}
		}
	}()
	return a
}

func (a *AccessLog) flushLocked() {
	if err := a.buf.Flush(); err != nil && a.err == nil {
		a.err = err
	}
}

// Close writes out what is buffered and stops the flushing; it returns the
// first write error the log met. Lines logged after Close are dropped.
func (a *AccessLog) Close() error {
	a.mu.Lock()
	select {
	case <-a.stop:
	default:
		close(a.stop)
	}
	a.flushLocked()
	err := a.err
	a.mu.Unlock()
	<-a.done
	return err
}

// WithAccessLog returns s's handler with every request written to a after
// it ends, the client address read as for the rest of the server.
func (s *Server) WithAccessLog(a *AccessLog) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &StatusWriter{ResponseWriter: w}
		s.ServeHTTP(sw, r)
		sw.afterAnswer(r, func(r *http.Request) { a.log(s.rules.clientIP(r), r, sw, time.Since(start)) })
	})
}

func (a *AccessLog) log(remote string, r *http.Request, sw *StatusWriter, took time.Duration) {
	line := make([]byte, 0, 256)
	line = appendLogField(line, remote)
	line = append(line, " - - ["...)
	line = time.Now().AppendFormat(line, "02/Jan/2006:15:04:05 -0700")
	line = append(line, "] \""...)
	line = appendLogField(line, cutLogValue(r.Method))
	line = append(line, ' ')
	line = appendLogField(line, logPath(r.URL.Path))
	line = append(line, ' ')
	line = appendLogField(line, cutLogValue(r.Proto))
	line = append(line, "\" "...)
	line = strconv.AppendInt(line, int64(sw.Status()), 10)
	line = append(line, ' ')
	line = strconv.AppendInt(line, sw.Bytes, 10)
	line = append(line, " \""...)
	line = appendLogField(line, cutLogValue(r.Referer()))
	line = append(line, "\" \""...)
	line = appendLogField(line, cutLogValue(r.UserAgent()))
	line = append(line, "\" "...)
	line = strconv.AppendFloat(line, took.Seconds(), 'f', 3, 64)
	line = append(line, '\n')
	a.mu.Lock()
	select {
	case <-a.stop:
	default:
		if _, err := a.buf.Write(line); err != nil && a.err == nil {
			a.err = err
		}
	}
	a.mu.Unlock()
}

// appendLogField appends s as nginx does: "-" when empty, and quotes,
// backslashes, control characters and bytes beyond ASCII as \xHH, so that a
// line can be neither split nor forged.
func appendLogField(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

// StatusWriter records the status and size of a response. It passes Flush
// and Hijack through, so streaming and WebSocket upgrades keep working.
type StatusWriter struct {
	http.ResponseWriter
	Code  int
	Bytes int64
	// Stalled is the longest a single Write or Flush blocked.
	Stalled time.Duration
	// takeover, when set, is the long poll served after the takeover of
	// its connection, which writes the answer after the handler returned
	// (longpoll.go): what is to be done with the answer's status and size
	// waits for it.
	takeover *answerHooks
}

// answerHooks are what is to be done once an answer written after its
// handler returned (longpoll.go's takeoverConn, sse_push.go's sseStream) is out: StatusWriter.afterAnswer
// adds to them, the writer of the answer runs them (answered), with the
// StatusWriter's Code, Bytes and Stalled then set. A concrete type, not an
// interface: a StatusWriter is made per request, and stays in its size
// class.
type answerHooks struct {
	mu       sync.Mutex
	r        *http.Request // the request answered
	reported bool
	after    []func(r *http.Request)
	buf      [4]func(r *http.Request) // room for the usual middleware
}

// whenAnswered runs f once the answer is written. The writer may answer
// before the middleware has returned: a hook added after runs at once.
func (a *answerHooks) whenAnswered(f func(r *http.Request)) {
	a.mu.Lock()
	if !a.reported {
		a.after = append(a.after, f)
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	f(a.r)
}

// answered runs the hooks: the answer is out.
func (a *answerHooks) answered() {
	a.mu.Lock()
	a.reported = true
	after := a.after
	a.after = nil
	a.mu.Unlock()
	for _, f := range after {
		f(a.r)
	}
}

// afterAnswer runs f once r's answer is written: now, or, for a long poll
// served after the takeover of its connection, when it answers
// (longpoll.go).
func (sw *StatusWriter) afterAnswer(r *http.Request, f func(r *http.Request)) {
	if sw.takeover != nil {
		sw.takeover.whenAnswered(f)
		return
	}
	f(r)
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

// Write counts the bytes and how long the write blocked.
func (w *StatusWriter) Write(p []byte) (int, error) {
	start := monotonic()
	n, err := w.ResponseWriter.Write(p)
	w.Bytes += int64(n)
	w.Stalled = max(w.Stalled, monotonic()-start)
	return n, err
}

// Flush passes on to the underlying writer if it can flush.
func (w *StatusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		start := monotonic()
		f.Flush()
		w.Stalled = max(w.Stalled, monotonic()-start)
	}
}

// monotonic reads the monotonic clock only, half the cost of time.Now,
// which reads the wall clock too: enough to time a write.
func monotonic() time.Duration { return time.Since(processStart) }

var processStart = time.Now()

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
