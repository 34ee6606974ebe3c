package fcgi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// Record types and sizes from the FastCGI 1.0 specification (section 8).
// net/http/fcgi keeps its own copies unexported.
const (
	recBeginRequest = 1
	recAbortRequest = 2
	recEndRequest   = 3
	recParams       = 4
	recStdout       = 6

	// protocolStatus of FCGI_END_REQUEST: the application rejects a new
	// request for want of some resource (section 5.5).
	statusOverloaded = 2

	headerLen  = 8
	maxContent = 65535

	// maxParamBytes bounds the params buffered per connection. nginx and
	// apache2 send a few KiB (their request-header buffers cap them); a
	// peer that sends more is not a web server we want to talk to.
	maxParamBytes = 1 << 20

	// keepRecBuf is the largest record buffer a conn keeps between
	// records; held long-polls mostly see small records, so idle
	// connections stay cheap.
	keepRecBuf = 4096
)

var (
	errBadVersion     = errors.New("fcgi: record with unknown FastCGI version")
	errParamsTooLarge = errors.New("fcgi: request params larger than 1 MiB")
)

// listener hands net/http/fcgi connections that the Front tracks, and retries
// accept errors that pass (EMFILE...) as net/http.Server does: fcgi.Serve
// returns on the first Accept error, which would end serving for good.
type listener struct {
	net.Listener
	f *Front
}

func (l *listener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		nc, err := l.Listener.Accept()
		if err == nil {
			return l.f.track(nc)
		}
		var te interface{ Temporary() bool }
		if !errors.As(err, &te) || !te.Temporary() || l.f.stopping() {
			return nil, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		l.f.log.WithError(err).Warnf("fcgi: accept failed, retrying in %v", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.f.down:
			t.Stop()
			return nil, err
		}
	}
}

// conn sits between one web-server connection and net/http/fcgi's reader.
// On the way in it follows records to learn when requests begin or are
// aborted, and rewrites each request's params (see Front.describe). On the
// way out it watches for FCGI_END_REQUEST, which net/http/fcgi writes only
// after the response is flushed: that, not the handler's return, is when a
// request is finished and its connection may be closed.
type conn struct {
	net.Conn
	f  *Front
	br *bufio.Reader

	// Read side, used only by net/http/fcgi's reading goroutine.
	buf        []byte // backing store for the last record read
	out        []byte // bytes not yet returned by Read
	params     map[uint16][]byte
	paramBytes int
	// refused are the requests answered FCGI_OVERLOADED whose records
	// are dropped until their id begins a new request.
	refused map[uint16]bool

	wmu sync.Mutex
	wt  recordTracker // guarded by wmu

	reqs   map[uint16]*request // guarded by f.mu
	closed bool                // guarded by f.mu
}

func newConn(nc net.Conn, f *Front) *conn {
	return &conn{
		Conn: nc,
		f:    f,
		br:   bufio.NewReaderSize(nc, 2048),
		reqs: make(map[uint16]*request),
	}
}

// Read returns the web server's records, with params rewritten.
func (c *conn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

// next reads one record and queues what net/http/fcgi should see of it.
func (c *conn) next() error {
	// Once closed (say, by Shutdown as idle), no record may reach
	// net/http/fcgi, even one already in c.br: it would start a request
	// that has no state and that nothing could cancel.
	if c.f.isClosed(c) {
		return net.ErrClosed
	}
	var h [headerLen]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return err
	}
	if h[0] != 1 {
		return errBadVersion
	}
	id := binary.BigEndian.Uint16(h[2:])
	clen := int(binary.BigEndian.Uint16(h[4:]))
	rec := c.recordBuf(headerLen + clen + int(h[6]))
	copy(rec, h[:])
	if _, err := io.ReadFull(c.br, rec[headerLen:]); err != nil {
		return err
	}
	if c.refused[id] {
		if h[1] != recBeginRequest {
			return nil // the refused request's params, body or abort
		}
		delete(c.refused, id)
	}
	switch h[1] {
	case recBeginRequest:
		c.dropParams(id)
		if !c.f.begin(c, id) {
			if c.f.limits.Refused != nil {
				c.f.limits.Refused()
			}
			return c.refuse(id)
		}
	case recAbortRequest:
		c.dropParams(id)
		c.f.abort(c, id)
	case recParams:
		if clen > 0 {
			return c.bufferParams(id, rec[headerLen:headerLen+clen])
		}
		c.out = c.rewriteParams(id)
		return nil
	}
	c.out = rec
	return nil
}

func (c *conn) recordBuf(n int) []byte {
	if n <= cap(c.buf) {
		return c.buf[:n]
	}
	b := make([]byte, n)
	if n <= keepRecBuf {
		c.buf = b
	}
	return b
}

// bufferParams holds a request's params until the empty PARAMS record that
// ends them: a name-value pair may straddle records.
func (c *conn) bufferParams(id uint16, content []byte) error {
	if c.paramBytes+len(content) > maxParamBytes {
		return errParamsTooLarge
	}
	if c.params == nil {
		c.params = make(map[uint16][]byte)
	}
	c.params[id] = append(c.params[id], content...)
	c.paramBytes += len(content)
	return nil
}

func (c *conn) dropParams(id uint16) {
	c.paramBytes -= len(c.params[id])
	delete(c.params, id)
}

// rewriteParams returns the PARAMS records for one request: the pairs the web
// server sent, up to the first malformed one (net/http/fcgi stops there too),
// followed by ours, which override theirs because later pairs win.
func (c *conn) rewriteParams(id uint16) []byte {
	raw := c.params[id]
	c.dropParams(id)
	m, n := decodePairs(raw)
	raw = append(raw[:n], c.f.describe(c, id, m)...)
	return appendRecords(nil, recParams, id, raw)
}

// appendRecords appends content as records of type typ, followed by the empty
// record that ends the stream.
func appendRecords(dst []byte, typ byte, id uint16, content []byte) []byte {
	for {
		n := min(len(content), maxContent)
		dst = append(dst, 1, typ, byte(id>>8), byte(id), byte(n>>8), byte(n), 0, 0)
		dst = append(dst, content[:n]...)
		content = content[n:]
		if n == 0 {
			return dst
		}
	}
}

// overloadedResponse is the CGI response of a refused request.
const overloadedResponse = "Status: 503 Service Unavailable\r\nContent-Type: application/json\r\n" +
	"Cache-Control: no-store\r\nRetry-After: 1\r\n\r\n" +
	`{"error":"too many requests at once on this FastCGI connection","status":503}` + "\n"

// refuse answers request id at once, without net/http/fcgi ever seeing it:
// a 503 for web servers that pass on what they get, then FCGI_END_REQUEST
// with FCGI_OVERLOADED, as the specification says for a request the
// application has no resources for. The request's later records are
// dropped (see next).
func (c *conn) refuse(id uint16) error {
	if c.refused == nil {
		c.refused = make(map[uint16]bool)
	}
	c.refused[id] = true
	rec := appendRecords(nil, recStdout, id, []byte(overloadedResponse))
	rec = append(rec, 1, recEndRequest, byte(id>>8), byte(id), 0, 8, 0, 0, 0, 0, 0, 0, statusOverloaded, 0, 0, 0)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.Conn.Write(rec) // whole records, between net/http/fcgi's (see Write)
	return err
}

// Write sends net/http/fcgi's records to the web server. net/http/fcgi
// writes each record in one call, under its own lock; wmu keeps refuse's
// records from landing inside one.
//
// A request's slot is freed as its FCGI_END_REQUEST is about to be written,
// not after: the web server may send its next request as soon as it reads
// that record, and found the slot still taken (refused as overloaded) when
// the reader was quicker than this goroutine. The handler has returned by
// then; a write that fails ends the connection anyway.
func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	closing := false
	c.wt.feed(p, func(id uint16) {
		closing = c.f.end(c, id) || closing
	})
	n, err := c.Conn.Write(p)
	if closing {
		c.Close()
	}
	return n, err
}

// Close closes the connection; net/http/fcgi calls it after a request without
// FCGI_KEEP_CONN and when the web server hangs up, the Front when shutting
// down. Requests still open on the connection are cancelled.
func (c *conn) Close() error {
	c.f.untrack(c)
	return c.Conn.Close()
}

// recordTracker finds record boundaries in a stream written in arbitrary
// pieces and reports each FCGI_END_REQUEST once it has been written whole.
type recordTracker struct {
	hdr  [headerLen]byte
	have int // header bytes collected for the current record
	left int // content and padding bytes of the current record still due
}

func (t *recordTracker) feed(p []byte, ended func(id uint16)) {
	for len(p) > 0 {
		if t.have < headerLen {
			n := copy(t.hdr[t.have:], p)
			t.have += n
			p = p[n:]
			if t.have < headerLen {
				return
			}
			t.left = int(binary.BigEndian.Uint16(t.hdr[4:])) + int(t.hdr[6])
		}
		n := min(t.left, len(p))
		t.left -= n
		p = p[n:]
		if t.left > 0 {
			return
		}
		t.have = 0
		if t.hdr[1] == recEndRequest {
			ended(binary.BigEndian.Uint16(t.hdr[2:]))
		}
	}
}
