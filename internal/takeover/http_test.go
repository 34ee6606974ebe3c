package takeover

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The wire of a connection taken over (http.go) against net/http, the
// specification: requests read (FuzzServedHereRequest) and answers written
// (FuzzHeldAnswer), byte for byte.

// recorder is a ResponseWriter that keeps the handler's answer, as the
// server's takeoverConn (Conn.Flush) does before it writes it in one piece.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	w.body = append(w.body, p...)
	return len(p), nil
}

func TestHeaderEnd(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", -1}, {"GET / HTTP/1.1\r\n", -1}, {"GET / HTTP/1.1\r\n\r\n", 18}, {"GET / HTTP/1.1\n\n", 16},
		{"GET / HTTP/1.1\r\nA: b\r\n\r\nnext", 24}, {"GET / HTTP/1.1\r\nA: b\r\n\r", -1}, {"\n\n", 2},
	} {
		if got := headerEnd([]byte(tc.in), 0); got != tc.want {
			t.Errorf("headerEnd(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// FuzzServedHereRequest: what the client sends next on a connection
// taken over (nextRequest) is read as net/http reads it. Each
// request served here must be one net/http reads the same way (method,
// path, host, header), and end where net/http ends it: given the bytes of
// the requests served here, then a marker request, net/http must answer
// the same requests and then the marker, no byte of which it took as part
// of a request before (a body, say). A request served here after which
// the connection closes (Connection: close, HTTP/1.0) must be the last
// that net/http answers too. Anything else goes to net/http.
func FuzzServedHereRequest(f *testing.F) {
	poll := "GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, seed := range []string{
		poll,
		poll + poll + "GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /comet/channel/a/stream/f1?since=1 HTTP/1.1\r\nHost: x\r\nCookie: BAYEUX_BROWSER=abc\r\nUser-Agent: t\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.0\r\n\r\n" + poll,
		"GET /comet/channel/a/stream/f1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + poll,
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + poll,
		"GET /comet/channel/a/stream/f1 HTTP/1.1\nHost: x\n\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
		"GET /comet/channel/a/%73tream/f1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" + poll,
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n" + poll,
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n" + poll,
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + poll,
		"GET /comet/channel/a/stream/f1 HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n" + poll,
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + poll,
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n" + poll,
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 1\r\n\r\nG" + poll,
		// POSTs with a body (Bayeux connects), served here once it is read.
		"POST /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]" + poll,
		"POST /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n" + poll,
		"POST /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\n\r\n" + poll,
		"POST /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n[] " + poll,
		"POST /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[]\r\n0\r\n\r\n" + poll,
		"POST /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + poll,
		"POST /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n[]" + poll,
	} {
		f.Add([]byte(seed))
	}
	// net/http's reading, through a server of its own on loopback, which
	// answers with what it read.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, readingOf(r)+bodyOf(r))
	})}
	go func() { _ = srv.Serve(l) }()
	f.Cleanup(func() { _ = srv.Close() })
	const marker = "GET /marker HTTP/1.1\r\nHost: m\r\n\r\n"
	markerReading := readingOf(parseRequest([]byte(marker)))
	f.Fuzz(func(t *testing.T, stream []byte) {
		const path, host = "/comet/channel/a/stream/f1", "x"
		// The requests served here, one after the other, as keep does.
		var here []string
		rest, closes := stream, false
		for len(here) < 4 && !closes {
			end := headerEnd(rest, 0)
			if end < 0 {
				break
			}
			r := nextRequest(rest[:end], path, host)
			if r == nil {
				break
			}
			if r.Method != http.MethodGet && r.Method != http.MethodPost || r.URL.Path != path || r.Host != host {
				t.Fatalf("served here: %s %s on %q", r.Method, r.URL.Path, r.Host)
			}
			tail, _, ok := withBody(r, rest, end)
			if !ok {
				break // its body has not all come: readNext reads on
			}
			here = append(here, readingOf(r)+bodyOf(r))
			_, keep := connectionFor(r, http.Header{}, true)
			closes = !keep
			rest = tail
		}
		if len(here) == 0 {
			return
		}
		served := stream[:len(stream)-len(rest)]
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(append(slices.Clip(served), marker...)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		want := here
		if !closes {
			want = append(want, markerReading)
		}
		for i, w := range want {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%q: net/http did not answer request %d: %v", served, i, err)
			}
			read, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || err != nil {
				t.Fatalf("%q: net/http refused request %d (%s), served here", served, i, resp.Status)
			}
			if string(read) != w {
				t.Fatalf("%q: request %d: net/http read %q, served here as %q", served, i, read, w)
			}
		}
		if closes {
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("%q: net/http kept the connection open after the last request, closed here (%v)", served, err)
			}
		}
	})
}

// bodyOf is what is read of a request's body.
func bodyOf(r *http.Request) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// readingOf is what is read of a request: its method, path, host and
// header (in the wire format of http.Header.Write), byte for byte.
func readingOf(r *http.Request) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n" + r.URL.Path + "\n" + r.Host + "\n")
	_ = r.Header.Write(&b)
	return b.String()
}

// wireAnswer is what a client reads of an answer: its status line, its
// header without Date (as sent, its values in order), its body, and
// whether the connection stays open for the next request.
func wireAnswer(br *bufio.Reader) (string, error) {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return "", err
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(h.Get("Content-Length"))
	if err != nil {
		return "", fmt.Errorf("no Content-Length: %v", h)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return "", err
	}
	delete(h, "Date")
	keys := slices.Sorted(maps.Keys(h))
	var b strings.Builder
	b.WriteString(line + "\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %q\n", k, h[k])
	}
	b.WriteString(string(body))
	return b.String(), nil
}

// FuzzHeldAnswer: an answer written on a connection taken over
// (connectionFor, appendResponse, as Conn.Flush writes it) is
// net/http's answer to the same request, from the same handler: the same
// status line (HTTP/1.0 to HTTP/1.0), header (Connection, Content-Length,
// Content-Type; Date aside), body, and the same decision to keep the
// connection or close it after.
func FuzzHeldAnswer(f *testing.F) {
	for _, seed := range []string{
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.1\r\nHost: x\r\nConnection: x\r\nConnection: close\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.0\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n",
		"GET /comet/channel/a/stream/f1 HTTP/1.0\r\nConnection: keep-alivex\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	const body = "[]\n"
	answer := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, body)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { answer(w) })}
	go func() { _ = srv.Serve(l) }()
	f.Cleanup(func() { _ = srv.Close() })
	const next = "GET /next HTTP/1.1\r\nHost: n\r\n\r\n"
	f.Fuzz(func(t *testing.T, header []byte) {
		end := headerEnd(header, 0)
		if end < 0 {
			return
		}
		r := parseRequest(header[:end])
		if r == nil || r.Method != http.MethodGet || r.Body != http.NoBody {
			return // not a poll
		}
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(append(slices.Clip(header[:end]), next...)); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		want, err := wireAnswer(br)
		if err != nil || !strings.HasPrefix(want, "HTTP/1.") || strings.Contains(want, " 400 ") {
			return // net/http refused it: never a poll of a held connection
		}
		_, err = wireAnswer(br)
		netKeeps := err == nil
		rec := &recorder{header: http.Header{}}
		answer(rec)
		connection, keep := connectionFor(r, rec.header, true)
		out := appendResponse(nil, r, rec.status, rec.header, rec.body, connection)
		got, err := wireAnswer(bufio.NewReader(bytes.NewReader(out)))
		if err != nil {
			t.Fatalf("%q: the held answer %q: %v", header[:end], out, err)
		}
		if got != want || keep != netKeeps {
			t.Fatalf("%q:\nheld (keep %v):\n%s\nnet/http (keep %v):\n%s", header[:end], keep, got, netKeeps, want)
		}
	})
}

// What nextRequest leaves to net/http, one reason each: only a GET of the
// first request's path and host, without a body or an upgrade, or a POST
// of it with a small body of one known length, is served
// on a connection taken over (HEAD in particular: net/http writes no body
// to it, which appendResponse does not know).
func TestNextRequestLeavesToNetHTTP(t *testing.T) {
	const path, host = "/comet/channel/a/stream/f1", "x"
	req := func(line, extra string) []byte {
		return []byte(line + "\r\nHost: x\r\n" + extra + "\r\n")
	}
	if nextRequest(req("GET "+path+" HTTP/1.1", ""), path, host) == nil {
		t.Fatal("the next poll itself is not served")
	}
	if r := nextRequest(req("POST "+path+" HTTP/1.1", "Content-Length: 2\r\n"), path, host); r == nil || r.ContentLength != 2 {
		t.Fatal("a POST with a small body (a Bayeux connect) is not served")
	}
	for name, header := range map[string][]byte{
		"HEAD":           req("HEAD "+path+" HTTP/1.1", ""),
		"PUT":            req("PUT "+path+" HTTP/1.1", "Content-Length: 0\r\n"),
		"POST chunked":   req("POST "+path+" HTTP/1.1", "Transfer-Encoding: chunked\r\n"),
		"POST too large": req("POST "+path+" HTTP/1.1", "Content-Length: "+strconv.Itoa(maxNextBody+1)+"\r\n"),
		"POST expect":    req("POST "+path+" HTTP/1.1", "Content-Length: 2\r\nExpect: 100-continue\r\n"),
		"POST two sizes": req("POST "+path+" HTTP/1.1", "Content-Length: 2\r\nContent-Length: 3\r\n"),
		"POST elsewhere": req("POST /comet/ HTTP/1.1", "Content-Length: 2\r\n"),
		"another path":   req("GET /comet/ HTTP/1.1", ""),
		"another host":   []byte("GET " + path + " HTTP/1.1\r\nHost: y\r\n\r\n"),
		"no host 1.1":    []byte("GET " + path + " HTTP/1.1\r\n\r\n"),
		"absolute URL":   req("GET http://x"+path+" HTTP/1.1", ""),
		"a body":         req("GET "+path+" HTTP/1.1", "Content-Length: 1\r\n"),
		"chunked":        req("GET "+path+" HTTP/1.1", "Transfer-Encoding: chunked\r\n"),
		"upgrade":        req("GET "+path+" HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n"),
		"expect":         req("GET "+path+" HTTP/1.1", "Expect: 100-continue\r\n"),
		"control char":   req("GET "+path+" HTTP/1.1", "X: a\x01b\r\n"),
		"HTTP/2 preface": []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
	} {
		if r := nextRequest(header, path, host); r != nil {
			t.Errorf("%s: served on the connection taken over: %s %s", name, r.Method, r.URL)
		}
	}
}
