package server

import (
	"net/http"
	"path"
	"strings"
	"time"
)

// The work every request pays before its handler, kept small: it is paid
// again by every answer of a held long poll.

// guard is what every request goes through, in one wrapper: its read
// deadline (if it has a body to read) and its write deadline (timeouts.go),
// and once it ended, the count of rejections
// (incidents.go) and the log of requests that went wrong (LogRequests),
// read from one StatusWriter.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		setDeadlines(w, r.Body != http.NoBody, start.Add(s.opts.BodyTimeout), start.Add(s.opts.RequestTimeout))
		sw := statusWriter(w) // the access log's, if it has one
		next.ServeHTTP(sw, r)
		sw.afterAnswer(r, func(r *http.Request) {
			s.countRejection(sw.Status())
			s.logProblem(r, sw, start)
		})
	})
}

// fastRoutes serves the two most frequent requests, a Stardust long poll
// (GET {base}/channel/{chans}/stream/{id}) and a Bayeux request to
// {base}/bayeux or {base}/cometd, without the router, and hands every other
// request to it. It takes only paths the router would give the same
// handler, with the same variables (the decoded path's segments), and that
// it would not redirect to their clean form; with metrics on, it records
// them under the same route templates as the router does.
func (s *Server) fastRoutes(router http.Handler) http.Handler {
	b := s.opts.Base
	if b != "" && path.Clean(b) != b {
		return router
	}
	channel := b + "/channel/"
	streamRoute := b + "/channel/{chans}/stream/{id}"
	bayeux, cometd := b+"/bayeux", b+"/cometd"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if r.Method == http.MethodGet && strings.HasPrefix(p, channel) {
			if chans, id, ok := cutStreamPath(p[len(channel):]); ok {
				s.metrics.serve(streamRoute, w, r, func(w http.ResponseWriter, r *http.Request) {
					s.serveStream(w, r, chans, id)
				})
				return
			}
		}
		if s.bayeux != nil && (p == bayeux || p == cometd) {
			s.metrics.serve(p, w, r, s.bayeux.ServeHTTP) // the route's template is its path
			return
		}
		router.ServeHTTP(w, r)
	})
}

// cutStreamPath reads "{chans}/stream/{id}", the end of a long poll's path,
// where neither part is empty, holds a slash or is a dot segment.
func cutStreamPath(rest string) (chans, id string, ok bool) {
	chans, rest, ok = strings.Cut(rest, "/")
	if !ok || !pathSegment(chans) {
		return "", "", false
	}
	id, ok = strings.CutPrefix(rest, "stream/")
	if !ok || !pathSegment(id) || strings.IndexByte(id, '/') >= 0 {
		return "", "", false
	}
	return chans, id, true
}

// pathSegment reports whether s is a segment of a clean path.
func pathSegment(s string) bool { return s != "" && s != "." && s != ".." }
