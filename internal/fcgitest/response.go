package fcgitest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// maxStderr bounds the FCGI_STDERR text kept per response.
const maxStderr = 1 << 20

// readResponse reads the CGI headers of request id's response from br and
// returns the response with a streaming body. If conn is not nil, closing the
// body closes it; otherwise closing the body drains the response.
func readResponse(br *bufio.Reader, id uint16, conn io.Closer) (*http.Response, error) {
	resp := &http.Response{
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Trailer: http.Header{StderrTrailer: nil},
	}
	sr := &stdoutReader{br: br, id: id, trailer: resp.Trailer}
	body := bufio.NewReader(sr)
	hdr, err := textproto.NewReader(body).ReadMIMEHeader()
	if err != nil {
		if len(sr.stderr) > 0 {
			err = fmt.Errorf("%w (stderr: %q)", err, sr.stderr)
		}
		return nil, fmt.Errorf("fcgitest: reading CGI headers: %w", err)
	}
	resp.Header = http.Header(hdr)
	if resp.StatusCode, resp.Status, err = parseStatus(resp.Header); err != nil {
		return nil, err
	}
	resp.ContentLength = -1
	if n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil && n >= 0 {
		resp.ContentLength = n
	}
	resp.Body = &responseBody{r: body, conn: conn}
	return resp, nil
}

// parseStatus takes the CGI "Status" header out of h (RFC 3875 section
// 6.3.3). Without one, a Location header means 302 and anything else 200.
func parseStatus(h http.Header) (code int, status string, err error) {
	s := h.Get("Status")
	h.Del("Status")
	if s == "" {
		if h.Get("Location") != "" {
			return http.StatusFound, "302 Found", nil
		}
		return http.StatusOK, "200 OK", nil
	}
	digits, text, _ := strings.Cut(s, " ")
	code, err = strconv.Atoi(digits)
	if err != nil || len(digits) != 3 || code < 100 {
		return 0, "", fmt.Errorf("fcgitest: bad CGI Status header %q", s)
	}
	if text == "" {
		text = http.StatusText(code)
	}
	return code, digits + " " + text, nil
}

// responseBody is a response's body: FCGI_STDOUT after the CGI headers.
type responseBody struct {
	r      *bufio.Reader
	conn   io.Closer
	closed bool
}

func (b *responseBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errors.New("fcgitest: read on closed response body")
	}
	return b.r.Read(p)
}

func (b *responseBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.conn != nil {
		return b.conn.Close()
	}
	_, err := io.Copy(io.Discard, b.r)
	return err
}

// stdoutReader yields the FCGI_STDOUT content of one request as it arrives,
// keeps its FCGI_STDERR aside, and ends with io.EOF at FCGI_END_REQUEST.
type stdoutReader struct {
	br      *bufio.Reader
	id      uint16
	trailer http.Header // StderrTrailer is set at the end
	buf     []byte      // backing store for the current record
	pending []byte      // STDOUT bytes not yet returned
	stderr  []byte
	err     error // sticky
}

func (r *stdoutReader) Read(p []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// next reads one record; pending may alias r.buf until it is drained.
func (r *stdoutReader) next() error {
	typ, id, content, err := readRecord(r.br, &r.buf)
	if err != nil {
		return fmt.Errorf("fcgitest: reading response: %w", err)
	}
	if id != r.id {
		return fmt.Errorf("fcgitest: record type %d for request %d while reading request %d", typ, id, r.id)
	}
	switch typ {
	case typeStdout:
		r.pending = content
	case typeStderr:
		if len(r.stderr)+len(content) <= maxStderr {
			r.stderr = append(r.stderr, content...)
		}
	case typeEndRequest:
		if len(content) != 8 {
			return fmt.Errorf("fcgitest: FCGI_END_REQUEST with %d bytes", len(content))
		}
		r.trailer[StderrTrailer] = []string{string(r.stderr)}
		if ps := content[4]; ps != 0 {
			return fmt.Errorf("%w: protocol status %d, app status %d",
				ErrProtocolStatus, ps, binary.BigEndian.Uint32(content))
		}
		return io.EOF
	default:
		return fmt.Errorf("fcgitest: unexpected record type %d", typ)
	}
	return nil
}

// readRecord reads one record, reusing *buf for its content and padding.
// A connection that ends before or inside a record is io.ErrUnexpectedEOF:
// a response only ends with FCGI_END_REQUEST.
func readRecord(br *bufio.Reader, buf *[]byte) (typ byte, id uint16, content []byte, err error) {
	var h [headerLen]byte
	if _, err = io.ReadFull(br, h[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, nil, err
	}
	if h[0] != 1 {
		return 0, 0, nil, fmt.Errorf("record version %d, want 1", h[0])
	}
	clen := int(binary.BigEndian.Uint16(h[4:]))
	n := clen + int(h[6])
	if cap(*buf) < n {
		*buf = make([]byte, n)
	}
	b := (*buf)[:n]
	if _, err = io.ReadFull(br, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, nil, err
	}
	return h[1], binary.BigEndian.Uint16(h[2:]), b[:clen], nil
}
