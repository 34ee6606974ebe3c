package main

import (
	"context"
	"net"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// A message's latency is measured from its publish to its arrival: on
// Linux the kernel's receive time of the bytes that completed it, taken
// from the socket (SO_TIMESTAMPNS, read with recvmsg), so that the time an
// answer waits in the tool's own socket buffer, while the tool reads 5,000
// others on its one CPU, is not counted as the server's. Elsewhere, or when
// the socket gives no stamp, it is the time the tool had read the message
// (the "read" clock).

// Names of the clocks, as the report gives them.
const (
	clockKernel = "kernel"
	clockRead   = "read"
	clockMixed  = "mixed"
)

// stamp is when a message arrived, and whether the kernel said so.
type stamp struct {
	at     time.Time
	kernel bool
}

// arrivalConn is a connection that knows when its last data arrived.
type arrivalConn interface {
	// lastArrival is the kernel's receive time of the bytes of the latest
	// read that returned data; ok is false when there is none.
	lastArrival() (t time.Time, ok bool)
}

// arrivalOf is the arrival of what was last read from c: the kernel's
// stamp when c has one, else now (the read clock). Every reader above c
// (bufio, net/http, gorilla/websocket) reads c only when it needs more
// bytes for the message it is parsing, so when a message has been parsed,
// c's latest read is the one that brought its last bytes (or an earlier one
// that brought all of them): its stamp is when the message was complete,
// never before, and never after the tool read it.
func arrivalOf(c net.Conn) stamp {
	if a, ok := c.(arrivalConn); ok {
		if t, ok := a.lastArrival(); ok {
			return stamp{at: t, kernel: true}
		}
	}
	return stamp{at: time.Now()}
}

// stampingDial wraps dial so that its connections record their arrival
// times where the system allows (stampArrivals).
func stampingDial(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return stampArrivals(c), nil
	}
}

// connTrace returns ctx with a trace that stores in *conn the connection a
// request is sent on, so that its answer's arrival can be read from it.
func connTrace(ctx context.Context, conn *net.Conn) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { *conn = info.Conn },
	})
}

// clocks counts the deliveries stamped by each clock.
type clocks struct{ kernel, read atomic.Int64 }

func (k *clocks) add(s stamp) {
	if s.kernel {
		k.kernel.Add(1)
	} else {
		k.read.Add(1)
	}
}

// name is the clock the latencies were measured by: kernel, read, or
// mixed when some deliveries had a kernel stamp and some not ("" when none
// was received).
func (k *clocks) name() string {
	kn, rd := k.kernel.Load(), k.read.Load()
	switch {
	case kn > 0 && rd > 0:
		return clockMixed
	case kn > 0:
		return clockKernel
	case rd > 0:
		return clockRead
	}
	return ""
}
