package fcgi

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/fcgitest"
)

// fakeConn is a net.Conn that reads a fixed byte stream and records writes.
type fakeConn struct {
	r io.Reader
	w bytes.Buffer
}

func (c *fakeConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *fakeConn) Write(p []byte) (int, error)      { return c.w.Write(p) }
func (c *fakeConn) Close() error                     { return nil }
func (c *fakeConn) LocalAddr() net.Addr              { return &net.UnixAddr{Name: "fake", Net: "unix"} }
func (c *fakeConn) RemoteAddr() net.Addr             { return &net.UnixAddr{Net: "unix"} }
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// record encodes one record with the given padding.
func record(typ byte, id uint16, content []byte, pad int) []byte {
	b := []byte{1, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), byte(pad), 0}
	b = append(b, content...)
	return append(b, make([]byte, pad)...)
}

// records splits content into records of at most size bytes.
func records(typ byte, id uint16, content []byte, size int) []byte {
	var b []byte
	for len(content) > 0 {
		n := min(size, len(content))
		b = append(b, record(typ, id, content[:n], 3)...)
		content = content[n:]
	}
	return append(b, record(typ, id, nil, 0)...)
}

type rec struct {
	typ     byte
	id      uint16
	content []byte
}

// parseRecords splits a record stream, failing on a malformed one.
func parseRecords(t *testing.T, b []byte) []rec {
	t.Helper()
	var out []rec
	for len(b) > 0 {
		if len(b) < headerLen || b[0] != 1 {
			t.Fatalf("bad record header % x", b[:min(len(b), headerLen)])
		}
		clen := int(binary.BigEndian.Uint16(b[4:]))
		n := headerLen + clen + int(b[6])
		if n > len(b) {
			t.Fatalf("record of %d bytes, %d left", n, len(b))
		}
		out = append(out, rec{b[1], binary.BigEndian.Uint16(b[2:]), b[headerLen : headerLen+clen]})
		b = b[n:]
	}
	return out
}

// readThrough feeds in to a tracked conn and returns what net/http/fcgi
// would read from it.
func readThrough(t *testing.T, f *Front, in []byte) ([]byte, *conn) {
	t.Helper()
	nc, err := f.track(&fakeConn{r: bytes.NewReader(in)})
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(nc)
	if err != nil && err != io.ErrUnexpectedEOF && err != errBadVersion && err != errParamsTooLarge {
		t.Fatalf("read: %v", err)
	}
	return out, nc.(*conn)
}

func TestConnRewritesStraddlingParams(t *testing.T) {
	f := New(http.NotFoundHandler(), nil)
	params := fcgitest.NginxParams("GET", "/comet/channel/foo?x=1")
	in := record(recBeginRequest, 7, []byte{0, 1, 0, 0, 0, 0, 0, 0}, 0)
	in = append(in, records(recParams, 7, fcgitest.EncodePairs(params), 5)...)
	stdin := record(5, 7, nil, 0)
	in = append(in, stdin...)

	out, c := readThrough(t, f, in)
	recs := parseRecords(t, out)
	var raw []byte
	for _, r := range recs {
		if r.typ == recParams {
			raw = append(raw, r.content...)
		}
	}
	m, n := decodePairs(raw)
	if n != len(raw) {
		t.Fatalf("rewritten params: %d of %d bytes decode", n, len(raw))
	}
	if m["REQUEST_URI"] != "/comet/channel/foo?x=1" || m["HTTP_HOST"] != "localhost" || m[tokenParam] == "" {
		t.Errorf("rewritten params: %q", m)
	}
	last := recs[len(recs)-1]
	if last.typ != 5 || len(last.content) != 0 || recs[len(recs)-2].typ != recParams || len(recs[len(recs)-2].content) != 0 {
		t.Errorf("stream must end with empty PARAMS then STDIN, got %v", recs[len(recs)-2:])
	}
	f.mu.Lock()
	r := c.reqs[7]
	f.mu.Unlock()
	if r == nil || r.url.Path != "/comet/channel/foo" || r.url.RawQuery != "x=1" {
		t.Fatalf("request state %+v", r)
	}
	c.Close()
	if len(f.reqs) != 0 || len(f.conns) != 0 {
		t.Errorf("state left after close: %d requests, %d conns", len(f.reqs), len(f.conns))
	}
}

func TestRecordTracker(t *testing.T) {
	end := record(recEndRequest, 3, make([]byte, 8), 0)
	stream := append(record(6, 3, []byte("Status: 200\r\n\r\nhi"), 6), end...)
	stream = append(stream, record(recEndRequest, 4, make([]byte, 8), 0)...)
	for _, size := range []int{1, 3, 8, 9, len(stream)} {
		var tr recordTracker
		var got []uint16
		for b := stream; len(b) > 0; {
			n := min(size, len(b))
			tr.feed(b[:n], func(id uint16) { got = append(got, id) })
			b = b[n:]
		}
		if len(got) != 2 || got[0] != 3 || got[1] != 4 {
			t.Errorf("pieces of %d: ended %v, want [3 4]", size, got)
		}
	}
}

// FuzzConnRead feeds arbitrary bytes as the web server's side of a
// connection: the conn must not panic, must hand net/http/fcgi a well-formed
// record stream, and must leave no state behind once closed.
func FuzzConnRead(f *testing.F) {
	begin := record(recBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0}, 0)
	for _, tc := range mappingCases() {
		in := append(append([]byte{}, begin...), records(recParams, 1, fcgitest.EncodePairs(tc.params), 100)...)
		f.Add(append(in, record(5, 1, []byte("body"), 4)...))
	}
	f.Add(append(append([]byte{}, begin...), record(recAbortRequest, 1, nil, 0)...))
	f.Add(record(recParams, 9, []byte{0x80, 0, 0, 1, 1}, 0))
	var over []byte // more requests at once than the Limits below allow
	for id := uint16(1); id <= 4; id++ {
		over = append(over, record(recBeginRequest, id, []byte{0, 1, 1, 0, 0, 0, 0, 0}, 0)...)
		over = append(over, records(recParams, id, fcgitest.EncodePairs(fcgitest.NginxParams("GET", "/x")), 100)...)
		over = append(over, record(5, id, []byte("body"), 0)...)
	}
	f.Add(over)
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := NewLimited(http.NotFoundHandler(), nil, Limits{PerConn: 2, Total: 3})
		out, c := readThrough(t, fr, in)
		parseRecords(t, out)
		// Refusals are written whole, ending with FCGI_OVERLOADED.
		for _, r := range parseRecords(t, c.Conn.(*fakeConn).w.Bytes()) {
			if r.typ == recEndRequest && (len(r.content) != 8 || r.content[4] != statusOverloaded) {
				t.Fatalf("refusal of request %d: END_REQUEST % x", r.id, r.content)
			}
		}
		c.Close()
		if len(fr.reqs) != 0 || len(fr.conns) != 0 {
			t.Fatalf("state left after close: %d requests, %d conns", len(fr.reqs), len(fr.conns))
		}
	})
}

// TestClosedConnYieldsNothing: records already buffered when a conn is
// closed (Shutdown closing it as idle) must not reach net/http/fcgi, and
// params of a request without state still get a token (0), so that such a
// request's handler gets a cancelled context rather than one nothing cancels.
func TestClosedConnYieldsNothing(t *testing.T) {
	f := New(http.NotFoundHandler(), nil)
	in := record(recBeginRequest, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0}, 0)
	in = append(in, records(recParams, 1, fcgitest.EncodePairs(fcgitest.NginxParams("GET", "/x")), 100)...)
	nc, err := f.track(&fakeConn{r: bytes.NewReader(in)})
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*conn)
	c.br.Peek(len(in)) // everything buffered, as when it came in one segment
	c.Close()
	if n, err := c.Read(make([]byte, 100)); n != 0 || err == nil {
		t.Fatalf("read %d bytes (%v) from a closed conn", n, err)
	}
	m, _ := decodePairs(f.describe(c, 1, map[string]string{"REQUEST_METHOD": "GET"}))
	if m[tokenParam] != "0" {
		t.Fatalf("token for a request without state: %q, want 0", m[tokenParam])
	}
}
