package server

import (
	"context"
	"sync"
)

// A WebSocket's side of pushed deliveries (delivery_push.go): the socket
// is its client's pushWriter, writing each batch as one frame with a write
// that never blocks (transport_websocket_frame.go, takeover.Socket), and
// the rest of a frame a full socket did not take within wsWriteTimeout.

// lockWriter takes the socket's writer (pushWriter).
func (ws *wsSession) lockWriter(block bool) bool {
	if block {
		ws.sock.Lock()
		return true
	}
	return ws.sock.TryLock()
}

// unlockWriter lets go of the socket's writer (pushWriter).
func (ws *wsSession) unlockWriter() { ws.sock.Unlock() }

// writeNow writes b's messages as one frame, without blocking (pushWriter).
func (ws *wsSession) writeNow(b Batch) ([]byte, error) {
	return ws.sock.WriteNowLocked(wsMessagesFrame(b.Messages))
}

// writeRest writes the rest of a frame within wsWriteTimeout (pushWriter).
func (ws *wsSession) writeRest(rest []byte) error { return ws.sock.WriteRestLocked(rest) }

// fail closes the socket after a failed write: its reader then ends and
// lets go of the rest (pushWriter).
func (ws *wsSession) fail() { _ = ws.conn.Close() }

// pushContext is the socket's: it ends with the socket (pushWriter).
func (ws *wsSession) pushContext() context.Context { return ws.ctx }

// wsSockets is what a Bayeux server keeps of its WebSockets: the set of
// open ones, to close them when the hub closes.
type wsSockets struct {
	mu        sync.Mutex
	open      map[*wsSession]struct{}
	closed    bool
	watchOnce sync.Once
}

// add registers an open socket; false when the hub has closed.
func (s *wsSockets) add(b *Bayeux, ws *wsSession) bool {
	s.watchOnce.Do(func() { go s.closeAllWith(b.hub) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.open == nil {
		s.open = map[*wsSession]struct{}{}
	}
	s.open[ws] = struct{}{}
	return true
}

func (s *wsSockets) remove(ws *wsSession) {
	s.mu.Lock()
	delete(s.open, ws)
	s.mu.Unlock()
}

// closeAllWith waits for the hub to close, then answers every socket's
// pending connect and closes it going away.
func (s *wsSockets) closeAllWith(h *Hub) {
	<-h.Done()
	s.mu.Lock()
	s.closed = true
	open := make([]*wsSession, 0, len(s.open))
	for ws := range s.open {
		open = append(open, ws)
	}
	s.mu.Unlock()
	for _, ws := range open {
		go ws.shutdown()
	}
}
