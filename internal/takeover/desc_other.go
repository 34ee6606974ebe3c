//go:build !unix

package takeover

import "net"

// Supported reports whether this system has the raw-descriptor path: not
// here (Windows' descriptors are handles whose readiness the runtime does
// not report through RawConn.Read), so Open always reports
// ReasonUnsupported and callers take the portable path.
const Supported = false

// Desc is a connection's raw descriptor; on this system it never has one.
type Desc struct{}

// Open reports ReasonUnsupported: no descriptor on this system.
func (d *Desc) Open(net.Conn) Reason { return ReasonUnsupported }

// Check reports ReasonUnsupported: no descriptor on this system.
func Check(net.Conn) Reason { return ReasonUnsupported }

// Ok reports false: no descriptor on this system.
func (d *Desc) Ok() bool { return false }

// WaitReadable returns at once: the caller's Read waits.
func (d *Desc) WaitReadable() error { return nil }

// ReadFirst is never called on this system (d has no descriptor).
func (d *Desc) ReadFirst() (bp *[]byte, b []byte) { return nil, nil }

// WriteNow writes nothing (ErrWouldBlock): the caller writes blocking.
func (d *Desc) WriteNow(b []byte) ([]byte, error) { return b, ErrWouldBlock }
