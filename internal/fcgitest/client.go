// Package fcgitest is a small FastCGI client, the web server's side of the
// protocol, for tests of FastCGI applications. It is written from the
// FastCGI 1.0 specification, independently of net/http/fcgi, so that a test
// does not check the server's record code against itself.
//
// Do and DoStream send one request on a new connection (without
// FCGI_KEEP_CONN, as nginx does by default); Get and Post fill in the params
// the way nginx's `include fastcgi_params;` does. Conn gives control over
// request IDs, FCGI_KEEP_CONN, record sizes and FCGI_ABORT_REQUEST.
package fcgitest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Record types and constants from the FastCGI 1.0 specification, section 8.
const (
	typeBeginRequest = 1
	typeAbortRequest = 2
	typeEndRequest   = 3
	typeParams       = 4
	typeStdin        = 5
	typeStdout       = 6
	typeStderr       = 7

	roleResponder = 1
	flagKeepConn  = 1
	headerLen     = 8
	maxContent    = 65535
)

// StderrTrailer is the response trailer that holds what the application
// wrote to FCGI_STDERR. Like any trailer it is filled in once the body has
// been read to EOF (Do reads it for you).
const StderrTrailer = "Fcgi-Stderr"

// ErrProtocolStatus is returned (wrapped) by a response body's Read when
// FCGI_END_REQUEST carries a protocol status other than
// FCGI_REQUEST_COMPLETE (cannot multiplex, overloaded, unknown role).
var ErrProtocolStatus = errors.New("fcgitest: request not completed")

// Conn is a client connection to a FastCGI application. Its methods must
// not be called concurrently, and requests are read one at a time: this
// client never multiplexes.
type Conn struct {
	// RecordSize caps the content of each PARAMS and STDIN record Send
	// writes, so that tests can make name-value pairs straddle records.
	// Zero means the protocol's maximum, 65535.
	RecordSize int

	nc net.Conn
	bw *bufio.Writer
	br *bufio.Reader
}

// Dial connects to a FastCGI application; network is "tcp" or "unix".
func Dial(network, addr string) (*Conn, error) {
	nc, err := net.Dial(network, addr)
	if err != nil {
		return nil, fmt.Errorf("fcgitest: %w", err)
	}
	return NewConn(nc), nil
}

// NewConn makes a Conn of an established connection, such as one end of a
// net.Pipe. The Conn owns nc: Close closes it.
func NewConn(nc net.Conn) *Conn {
	return &Conn{nc: nc, bw: bufio.NewWriter(nc), br: bufio.NewReader(nc)}
}

// Close closes the connection. A FastCGI application sees that as the web
// server giving up on every request on it.
func (c *Conn) Close() error { return c.nc.Close() }

// Send sends one request: FCGI_BEGIN_REQUEST (role responder, with
// FCGI_KEEP_CONN if keepConn), the params, an empty PARAMS record, body as
// STDIN records (each flushed as soon as body yields it, so a slow body
// streams), and an empty STDIN record. body may be nil.
func (c *Conn) Send(id uint16, keepConn bool, params map[string]string, body io.Reader) error {
	var flags byte
	if keepConn {
		flags = flagKeepConn
	}
	if err := c.writeRecord(typeBeginRequest, id, []byte{0, roleResponder, flags, 0, 0, 0, 0, 0}); err != nil {
		return err
	}
	if err := c.writeStream(typeParams, id, EncodePairs(params)); err != nil {
		return err
	}
	if err := c.sendBody(id, body); err != nil {
		return err
	}
	return c.flush()
}

func (c *Conn) sendBody(id uint16, body io.Reader) error {
	if body != nil {
		buf := make([]byte, c.recordSize())
		for {
			n, err := body.Read(buf)
			if n > 0 {
				if err := c.writeRecord(typeStdin, id, buf[:n]); err != nil {
					return err
				}
				if err := c.flush(); err != nil {
					return err
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("fcgitest: reading request body: %w", err)
			}
		}
	}
	return c.writeRecord(typeStdin, id, nil)
}

// Abort sends FCGI_ABORT_REQUEST for request id.
func (c *Conn) Abort(id uint16) error {
	if err := c.writeRecord(typeAbortRequest, id, nil); err != nil {
		return err
	}
	return c.flush()
}

// ReadResponse reads the response to request id up to the end of its CGI
// headers and returns it; the body yields FCGI_STDOUT data as it arrives and
// ends (io.EOF) at FCGI_END_REQUEST. Closing the body reads the rest of the
// response, so that the connection can carry the next request.
func (c *Conn) ReadResponse(id uint16) (*http.Response, error) {
	return readResponse(c.br, id, nil)
}

func (c *Conn) recordSize() int {
	if c.RecordSize <= 0 || c.RecordSize > maxContent {
		return maxContent
	}
	return c.RecordSize
}

// writeStream writes data as records of at most RecordSize bytes, then the
// empty record that ends the stream.
func (c *Conn) writeStream(typ byte, id uint16, data []byte) error {
	for len(data) > 0 {
		n := min(len(data), c.recordSize())
		if err := c.writeRecord(typ, id, data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return c.writeRecord(typ, id, nil)
}

// writeRecord writes one record, padded to a multiple of 8 bytes as the
// specification recommends (so the server's padding handling is exercised).
func (c *Conn) writeRecord(typ byte, id uint16, content []byte) error {
	pad := -len(content) & 7
	h := [headerLen]byte{1, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad)}
	c.bw.Write(h[:]) // bufio.Writer errors are sticky: the last Write reports them
	c.bw.Write(content)
	if _, err := c.bw.Write(make([]byte, pad)); err != nil {
		return fmt.Errorf("fcgitest: %w", err)
	}
	return nil
}

func (c *Conn) flush() error {
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("fcgitest: %w", err)
	}
	return nil
}

// EncodePairs encodes params as FastCGI name-value pairs, with 1-byte
// lengths up to 127 and 4-byte lengths above, in sorted name order.
func EncodePairs(params map[string]string) []byte {
	var b []byte
	for _, k := range slices.Sorted(maps.Keys(params)) {
		b = appendLen(b, len(k))
		b = appendLen(b, len(params[k]))
		b = append(b, k...)
		b = append(b, params[k]...)
	}
	return b
}

func appendLen(b []byte, n int) []byte {
	if n <= 127 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

// Do sends one request on a new connection and returns the whole response;
// see DoStream.
func Do(network, addr string, params map[string]string, body io.Reader) (*http.Response, error) {
	resp, err := DoStream(network, addr, params, body)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	return resp, nil
}

// DoStream dials network/addr, sends one request (ID 1, no FCGI_KEEP_CONN)
// and returns the response as soon as its CGI headers have arrived. The body
// yields FCGI_STDOUT data as the application writes it (useful for
// Server-Sent Events); closing it closes the connection, which tells the
// application the web server has given up on the request. The request body
// is sent in full before the response is read.
func DoStream(network, addr string, params map[string]string, body io.Reader) (*http.Response, error) {
	c, err := Dial(network, addr)
	if err != nil {
		return nil, err
	}
	if err := c.Send(1, false, params, body); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := readResponse(c.br, 1, c.nc)
	if err != nil {
		c.Close()
		return nil, err
	}
	return resp, nil
}

// SplitAddr splits an address in the form stardust's --listen takes,
// "host:port" or "unix:/path", into a network and an address for Dial.
func SplitAddr(addr string) (network, address string) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", p
	}
	return "tcp", addr
}

// Get sends a GET for requestURI (path and query, as a browser sends it) to
// addr ("host:port" or "unix:/path") with nginx-style params.
func Get(addr, requestURI string) (*http.Response, error) {
	network, a := SplitAddr(addr)
	return Do(network, a, NginxParams(http.MethodGet, requestURI), nil)
}

// Post sends a POST of body to addr ("host:port" or "unix:/path") with
// nginx-style params, CONTENT_TYPE and CONTENT_LENGTH. body is read in full
// first, as nginx does with fastcgi_request_buffering on (the default).
func Post(addr, requestURI, contentType string, body io.Reader) (*http.Response, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("fcgitest: reading request body: %w", err)
	}
	p := NginxParams(http.MethodPost, requestURI)
	p["CONTENT_TYPE"] = contentType
	p["CONTENT_LENGTH"] = strconv.Itoa(len(b))
	network, a := SplitAddr(addr)
	return Do(network, a, p, bytes.NewReader(b))
}
