package takeover

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The HTTP/1.x wire of a connection taken over: reading the header of the
// next request, deciding whether it is one to serve here, and writing an
// answer with a Content-Length, each as net/http does (README.md lists
// where and why they differ). FuzzServedHereRequest and FuzzHeldAnswer
// compare them with net/http, request side and response side.

// getMethod and postMethod begin every request served on a connection
// taken over: a GET (a Stardust poll, a Bayeux callback-polling connect) or
// a POST with a small body of known length (a Bayeux long-polling connect).
var getMethod, postMethod = []byte("GET "), []byte("POST ")

// maxNextBody is the largest body of a POST served on a connection taken
// over, read whole before the request is served (a Bayeux connect is some
// 200 bytes); a larger one goes back to net/http.
const maxNextBody = 16 << 10

// mayBeServed reports whether b, the first bytes of a request, may begin a
// GET or a POST: the only methods served on a connection taken over.
func mayBeServed(b []byte) bool {
	return bytes.HasPrefix(b, getMethod[:min(len(b), len(getMethod))]) ||
		bytes.HasPrefix(b, postMethod[:min(len(b), len(postMethod))])
}

// headerEnd is the length of the request header at the start of b, up to
// and with the empty line that ends it; -1 while it has not ended. It
// looks from from on (a caller that reads more passes where it was).
func headerEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			return i + 2
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			return i + 3
		}
	}
	return -1
}

// requestReader reads a request from a header in memory.
type requestReader struct {
	src bytes.Reader
	br  *bufio.Reader
}

var requestReaders = sync.Pool{New: func() any {
	rr := &requestReader{}
	rr.br = bufio.NewReaderSize(&rr.src, 512)
	return rr
}}

// parseRequest parses a whole request header (headerEnd long); nil if
// net/http would not read it as it is.
func parseRequest(header []byte) *http.Request {
	rr := requestReaders.Get().(*requestReader)
	defer requestReaders.Put(rr)
	rr.src.Reset(header)
	rr.br.Reset(&rr.src)
	r, err := http.ReadRequest(rr.br)
	if err != nil || rr.br.Buffered() > 0 || rr.src.Len() > 0 {
		return nil
	}
	return r
}

// nextRequest is the request whose whole header is header, what the client
// sent next on a connection taken over, when it is one to serve there: a
// GET of path on host (the first request's), without a body or an upgrade,
// or a POST of it whose body has a Content-Length of at most maxNextBody
// (no Transfer-Encoding, no Expect), with a header net/http would accept.
// nil hands it back to net/http: any doubt does. The request ends with its
// header and its ContentLength bytes of body (withBody reads them before it
// is served): what follows is the next request (FuzzServedHereRequest
// compares where each ends with net/http).
func nextRequest(header []byte, path, host string) *http.Request {
	if !bytes.HasPrefix(header, getMethod) && !bytes.HasPrefix(header, postMethod) {
		return nil
	}
	if r := parseRequest(header); r != nil && servable(r, path, host) {
		return r
	}
	return nil
}

// servable reports whether r is a request nextRequest serves.
func servable(r *http.Request, path, host string) bool {
	if r.ProtoMajor != 1 || r.URL.Host != "" || r.URL.Path != path || len(r.TransferEncoding) > 0 {
		return false
	}
	switch r.Method {
	case http.MethodGet:
		if r.ContentLength != 0 || r.Body != http.NoBody {
			return false
		}
	case http.MethodPost:
		if r.ContentLength < 0 || r.ContentLength > maxNextBody {
			return false
		}
	default:
		return false
	}
	// http.ReadRequest took the Host header out, into r.Host (net/http
	// checked the first request's).
	if r.Host != host || r.Host == "" && r.ProtoMinor > 0 {
		return false
	}
	if r.Header["Upgrade"] != nil || r.Header["Expect"] != nil {
		return false
	}
	for k, vs := range r.Header {
		if !validHeaderName(k) {
			return false
		}
		for _, v := range vs {
			if !validHeaderValue(v) {
				return false
			}
		}
	}
	return true
}

// withBody gives r, the request whose header ends at end in b, its body:
// the ContentLength bytes after its header, which b must hold (need says
// how long b must be). It returns what follows (pipelined), or ok false
// when b is too short.
func withBody(r *http.Request, b []byte, end int) (rest []byte, need int, ok bool) {
	need = end + int(r.ContentLength)
	if len(b) < need {
		return nil, need, false
	}
	if r.ContentLength > 0 {
		body := &heldBody{}
		body.Reset(bytes.Clone(b[end:need]))
		r.Body = body
	} else {
		r.Body = http.NoBody
	}
	return b[need:], need, true
}

// heldBody is the body of a request read whole (withBody): a reader of
// its copy, and its own Closer (one allocation, not NopCloser's too).
type heldBody struct{ bytes.Reader }

// Close does nothing: the body is in memory.
func (*heldBody) Close() error { return nil }

// validHeaderName: a token (RFC 9110 5.1).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			continue
		}
		return false
	}
	return true
}

// validHeaderValue: no control character but the tab (RFC 9110 5.5).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// connectionFor decides, as net/http's chunkWriter.writeHeader does for an
// answer with a Content-Length, whether the connection is kept after the
// answer to r (keep), and what Connection header the answer carries:
// "close" (HTTP/1.1, closing), "keep-alive" (HTTP/1.0 that asked for it) or
// none. header is the handler's: a Connection header of its is deleted
// where net/http drops it. keepAlives is false once the server is closing.
func connectionFor(r *http.Request, header http.Header, keepAlives bool) (connection string, keep bool) {
	reqConn := r.Header.Get("Connection")
	is11 := r.ProtoAtLeast(1, 1)
	closeAfter := false
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 && hasToken(reqConn, "keep-alive") {
		if _, ok := header["Connection"]; !ok {
			connection = "keep-alive" // even when closing, as net/http
		}
	} else if !is11 || r.Close || hasToken(reqConn, "close") {
		closeAfter = true
	}
	handlerConn := header.Get("Connection")
	if handlerConn == "close" || !keepAlives {
		closeAfter = true
	}
	if closeAfter && (!keepAlives || !hasToken(handlerConn, "close")) {
		delete(header, "Connection")
		if is11 {
			connection = "close"
		}
	}
	return connection, !closeAfter
}

// hasToken is net/http's: whether the comma-separated header value v
// holds token (ASCII, lower case), in any case.
func hasToken(v, token string) bool {
	if len(token) > len(v) || token == "" {
		return false
	}
	for sp := 0; sp <= len(v)-len(token); sp++ {
		if b := v[sp]; b != token[0] && b|0x20 != token[0] {
			continue
		}
		if sp > 0 && !isTokenBoundary(v[sp-1]) {
			continue
		}
		if end := sp + len(token); end != len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		if strings.EqualFold(v[sp:sp+len(token)], token) {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

// appendResponse appends to out the whole answer to r, as net/http writes
// an answer whose handler wrote body in one piece: the status line
// (HTTP/1.0 to an HTTP/1.0 request; status 0 is 200), header, a Date
// unless the handler set one, Content-Length, connection (Connection's
// first result) if any, and the body.
func appendResponse(out []byte, r *http.Request, status int, header http.Header, body []byte, connection string) []byte {
	if status == 0 {
		status = http.StatusOK
	}
	if r.ProtoAtLeast(1, 1) {
		out = append(out, "HTTP/1.1 "...)
	} else {
		out = append(out, "HTTP/1.0 "...)
	}
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(status)...)
	out = append(out, "\r\n"...)
	hw := headerWriter{out}
	_ = header.Write(&hw)
	out = hw.b
	if header.Get("Date") == "" {
		out = append(out, "Date: "...)
		out = time.Now().UTC().AppendFormat(out, http.TimeFormat)
		out = append(out, "\r\n"...)
	}
	out = append(out, "Content-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\n"...)
	if connection != "" {
		out = append(out, "Connection: "...)
		out = append(out, connection...)
		out = append(out, "\r\n"...)
	}
	out = append(out, "\r\n"...)
	return append(out, body...)
}

// headerWriter appends what http.Header.Write writes.
type headerWriter struct{ b []byte }

func (w *headerWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (w *headerWriter) WriteString(s string) (int, error) {
	w.b = append(w.b, s...)
	return len(s), nil
}
