package server

import (
	"net/http"
	"time"
)

// Request deadlines, so that a slow client cannot hold a connection (and its
// descriptor) for ever: the body must arrive within BodyTimeout of the
// request's start and the answer be written within RequestTimeout. Held
// polls, SSE streams and WebSockets lift them for their hold (longRequest)
// and get a write deadline after it. Under FastCGI the web server in front
// reads the client's body and applies its own timeouts; these calls then do
// nothing.

// setDeadlines sets a request's write deadline, and its read deadline if
// setRead: directly on net/http's own ResponseWriter, else through
// http.ResponseController.
func setDeadlines(w http.ResponseWriter, setRead bool, read, write time.Time) {
	if d, ok := w.(interface {
		SetReadDeadline(time.Time) error
		SetWriteDeadline(time.Time) error
	}); ok {
		if setRead {
			_ = d.SetReadDeadline(read)
		}
		_ = d.SetWriteDeadline(write)
		return
	}
	rc := http.NewResponseController(w)
	if setRead {
		_ = rc.SetReadDeadline(read)
	}
	_ = rc.SetWriteDeadline(write)
}

// longRequest lifts the read deadline of a request whose body has been read
// and that is about to wait for up to timeout (a long poll, an SSE stream),
// and moves its write deadline past the wait.
func (rr requestRules) longRequest(w http.ResponseWriter, timeout time.Duration) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Now().Add(timeout + rr.RequestTimeout))
}
