package server

import (
	"context"
	"sync"

	"github.com/stardust-go/stardust/internal/takeover"
)

// A WebSocket's side of pushed deliveries (delivery_push.go): the socket
// is its client's pushWriter, writing each batch as one frame with a write
// that never blocks (transport_websocket_frame.go, takeover.Socket), and
// the rest of a frame a full socket did not take within wsWriteTimeout.

// pushSocket is the writer of a pushWriter that writes through a
// takeover.Socket (a WebSocket, an SSE stream taken over): its lock is the
// socket's.
type pushSocket struct {
	sock takeover.Socket
}

// lockWriter takes the socket's writer (pushWriter).
func (s *pushSocket) lockWriter(block bool) bool {
	if block {
		s.sock.Lock()
		return true
	}
	return s.sock.TryLock()
}

// unlockWriter lets go of the socket's writer (pushWriter).
func (s *pushSocket) unlockWriter() { s.sock.Unlock() }

// writeNow writes b's messages as one frame, without blocking (pushWriter).
func (ws *wsSession) writeNow(b Batch) ([]byte, error) {
	return ws.sock.WriteNowLocked(wsMessagesFrame(b.Messages))
}

// dropNotices: a Bayeux client has no drop notice in-band (pushWriter).
func (ws *wsSession) dropNotices() bool { return false }

// writeRest writes the rest of a frame within wsWriteTimeout (pushWriter).
func (ws *wsSession) writeRest(rest []byte) error { return ws.sock.WriteRestLocked(rest) }

// fail closes the socket after a failed write: its reader then ends and
// lets go of the rest (pushWriter).
func (ws *wsSession) fail() { _ = ws.conn.Close() }

// pushContext is the socket's: it ends with the socket (pushWriter).
func (ws *wsSession) pushContext() context.Context { return ws.ctx }

// openSet is what a server keeps of the connections it serves off
// net/http that live on after their request (WebSockets, SSE streams
// pushed to, sse_push.go): the set of open ones, to shut them down when the
// hub closes. The zero value is ready.
type openSet[T interface {
	comparable
	shutdown()
}] struct {
	mu        sync.Mutex
	open      map[T]struct{}
	closed    bool
	watchOnce sync.Once
}

// add registers an open connection; false when the hub has closed.
func (s *openSet[T]) add(h *Hub, x T) bool {
	s.watchOnce.Do(func() { go s.closeAllWith(h) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.open == nil {
		s.open = map[T]struct{}{}
	}
	s.open[x] = struct{}{}
	return true
}

func (s *openSet[T]) remove(x T) {
	s.mu.Lock()
	delete(s.open, x)
	s.mu.Unlock()
}

// closeAllWith waits for the hub to close, then shuts every open
// connection down (a socket's pending connect answered and the socket
// closed going away; a stream ended).
func (s *openSet[T]) closeAllWith(h *Hub) {
	<-h.Done()
	s.mu.Lock()
	s.closed = true
	open := make([]T, 0, len(s.open))
	for x := range s.open {
		open = append(open, x)
	}
	s.mu.Unlock()
	for _, x := range open {
		go x.shutdown()
	}
}
