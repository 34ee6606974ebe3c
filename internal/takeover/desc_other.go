//go:build !unix

package takeover

import "net"

// supported reports whether this system has the raw-descriptor path: not
// here (Windows' descriptors are handles whose readiness the runtime does
// not report through RawConn.Read), so Open always reports
// ReasonUnsupported and callers take the portable path.
const supported = false

// descriptor is a connection's raw descriptor; on this system it never has one.
type descriptor struct{}

// Open reports ReasonUnsupported: no descriptor on this system.
func (d *descriptor) Open(net.Conn) Reason { return ReasonUnsupported }

// checkDesc reports ReasonUnsupported: no descriptor on this system.
func checkDesc(net.Conn) Reason { return ReasonUnsupported }

// Ok reports false: no descriptor on this system.
func (d *descriptor) Ok() bool { return false }

// Read is never called on this system (d has no descriptor).
func (d *descriptor) Read([]byte) (int, error) { return 0, errWouldBlock }

// ReadFirst is never called on this system (d has no descriptor).
func (d *descriptor) ReadFirst() (bp *[]byte, b []byte) { return nil, nil }

// WriteNow writes nothing (errWouldBlock): the caller writes blocking.
func (d *descriptor) WriteNow(b []byte) ([]byte, error) { return b, errWouldBlock }
