package takeover

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Socket writes a pushed stream itself on a connection taken from net/http:
// a WebSocket's data frames (frame.go) on the connection gorilla/websocket
// upgraded, or an SSE stream's events (Conn.OpenSocket). It writes with one
// system call that never blocks where the connection has a descriptor, so
// that one goroutine can write to many sockets in turn, and what a full
// socket does not take within a deadline, by the goroutine that has time
// for it. Every write, gorilla's control frames included (Control), is made
// under the socket's lock, which its owner takes (Lock, TryLock) around a
// write and what must stay in order with it.
type Socket struct {
	mu      sync.Mutex
	conn    net.Conn
	desc    descriptor
	timeout time.Duration
}

// Open sets s up on c, the upgraded connection (websocket.Conn.NetConn),
// with timeout for the writes that block; it reports why writes will block
// (a fallback to count), ReasonNone when they need not.
func (s *Socket) Open(c net.Conn, timeout time.Duration) Reason {
	s.conn, s.timeout = c, timeout
	return s.desc.Open(c)
}

// Lock takes the socket's writer, waiting for it.
func (s *Socket) Lock() { s.mu.Lock() }

// TryLock takes the socket's writer if it is free.
func (s *Socket) TryLock() bool { return s.mu.TryLock() }

// Unlock lets go of the socket's writer.
func (s *Socket) Unlock() { s.mu.Unlock() }

// WriteNowLocked writes what of frame the socket takes without blocking and
// returns the rest (all of it without a descriptor); for WriteRestLocked.
// Under the lock.
func (s *Socket) WriteNowLocked(frame []byte) (rest []byte, err error) {
	rest, err = s.desc.WriteNow(frame)
	if errors.Is(err, errWouldBlock) {
		err = nil
	}
	return rest, err
}

// WriteRestLocked writes rest, blocking within the socket's timeout. Under
// the lock.
func (s *Socket) WriteRestLocked(rest []byte) error { return writeWithin(s.conn, rest, s.timeout) }

// WriteLocked writes a whole frame: at once if the socket takes it, else
// blocking within the timeout. Under the lock.
func (s *Socket) WriteLocked(frame []byte) error {
	return writeAll(s.conn, &s.desc, frame, s.timeout, nil)
}

// Write writes a whole frame under the lock.
func (s *Socket) Write(frame []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.WriteLocked(frame)
}

// Control runs write (gorilla/websocket's WriteControl) under the lock,
// then lifts the write deadline it set: the writes that never block fail
// once a deadline has passed.
func (s *Socket) Control(write func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := write()
	_ = s.conn.SetWriteDeadline(time.Time{})
	return err
}
