package fcgitest

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

// rec encodes one record, with 3 bytes of padding to exercise skipping it.
func rec(typ byte, id uint16, content string) []byte {
	b := []byte{1, typ, byte(id >> 8), byte(id), byte(len(content) >> 8), byte(len(content)), 3, 0}
	return append(append(b, content...), 0, 0, 0)
}

func end(id uint16, protocolStatus byte) []byte {
	return rec(typeEndRequest, id, string([]byte{0, 0, 0, 0, protocolStatus, 0, 0, 0}))
}

// stdout splits s into STDOUT records of at most n bytes, then the empty one.
func stdout(id uint16, s string, n int) []byte {
	var b []byte
	for len(s) > 0 {
		k := min(n, len(s))
		b = append(b, rec(typeStdout, id, s[:k])...)
		s = s[k:]
	}
	return append(b, rec(typeStdout, id, "")...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestReadResponse(t *testing.T) {
	goStyle := "Status: 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope"
	tests := []struct {
		name      string
		in        []byte
		status    string
		header    string // "Key: value" expected, if any
		body      string
		stderr    string
		headerErr bool // reading the headers fails
		bodyErr   error
	}{
		{name: "net/http/fcgi style", in: cat(stdout(1, goStyle, 1000), end(1, 0)),
			status: "404 Not Found", header: "Content-Type: text/plain", body: "nope"},
		{name: "one byte per record", in: cat(stdout(1, goStyle, 1), end(1, 0)),
			status: "404 Not Found", body: "nope"},
		{name: "no Status header", in: cat(stdout(1, "X-A: b\n\nhi", 100), end(1, 0)),
			status: "200 OK", header: "X-A: b", body: "hi"},
		{name: "Location means 302", in: cat(stdout(1, "Location: /x\r\n\r\n", 100), end(1, 0)),
			status: "302 Found", header: "Location: /x"},
		{name: "bare status code", in: cat(stdout(1, "Status: 418\r\n\r\n", 100), end(1, 0)),
			status: "418 I'm a teapot"},
		{name: "stderr kept as trailer", in: cat(rec(typeStderr, 1, "oops "), stdout(1, "Status: 500\r\n\r\n", 100),
			rec(typeStderr, 1, "again"), end(1, 0)),
			status: "500 Internal Server Error", stderr: "oops again"},
		{name: "unknown role", in: end(1, 3), headerErr: true},
		{name: "connection ends before END_REQUEST", in: rec(typeStdout, 1, "Status: 200\r\n\r\npart"),
			status: "200 OK", body: "part", bodyErr: io.ErrUnexpectedEOF},
		{name: "record for another request", in: cat(stdout(1, "\r\n", 10), rec(typeStdout, 2, "x")),
			status: "200 OK", bodyErr: errAny},
		{name: "bad Status", in: cat(stdout(1, "Status: OK\r\n\r\n", 100), end(1, 0)), headerErr: true},
		{name: "bad version", in: []byte{2, 6, 0, 1, 0, 0, 0, 0}, headerErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := readResponse(bufio.NewReader(bytes.NewReader(tc.in)), 1, nil)
			if tc.headerErr {
				if err == nil {
					t.Fatalf("no error; status %s", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			if !sameErr(err, tc.bodyErr) {
				t.Fatalf("body error %v, want %v", err, tc.bodyErr)
			}
			if resp.Status != tc.status || string(b) != tc.body {
				t.Errorf("got %q %q, want %q %q", resp.Status, b, tc.status, tc.body)
			}
			if k, v, ok := strings.Cut(tc.header, ": "); ok && resp.Header.Get(k) != v {
				t.Errorf("header %s = %q, want %q", k, resp.Header.Get(k), v)
			}
			if resp.Header.Get("Status") != "" {
				t.Error("Status left in the header")
			}
			if tc.bodyErr == nil && resp.Trailer.Get(StderrTrailer) != tc.stderr {
				t.Errorf("stderr %q, want %q", resp.Trailer.Get(StderrTrailer), tc.stderr)
			}
		})
	}
}

var errAny = errors.New("any error")

func sameErr(err, want error) bool {
	if want == errAny {
		return err != nil
	}
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

func TestEncodePairs(t *testing.T) {
	b := EncodePairs(map[string]string{"K": strings.Repeat("v", 127), "L": strings.Repeat("w", 128)})
	// K: 1-byte name length, 1-byte value length (127).
	if b[0] != 1 || b[1] != 127 || b[2] != 'K' {
		t.Fatalf("K pair starts % x", b[:3])
	}
	// L: 1-byte name length, 4-byte value length with the top bit set.
	l := b[2+1+127:]
	if !bytes.Equal(l[:6], []byte{1, 0x80, 0, 0, 128, 'L'}) {
		t.Fatalf("L pair starts % x", l[:6])
	}
}

// TestSend checks the records Send writes: BEGIN_REQUEST, PARAMS records of
// at most RecordSize bytes padded to 8, the empty PARAMS, STDIN, empty STDIN.
func TestSend(t *testing.T) {
	client, server := net.Pipe()
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	c := NewConn(client)
	c.RecordSize = 10
	params := map[string]string{"REQUEST_METHOD": "GET", "LONG": strings.Repeat("x", 200)}
	if err := c.Send(258, true, params, strings.NewReader("body")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	br := bufio.NewReader(bytes.NewReader(<-got))
	var buf, pairs []byte
	var types []byte
	for {
		typ, id, content, err := readRecord(br, &buf)
		if err != nil {
			break
		}
		if id != 258 {
			t.Fatalf("record id %d", id)
		}
		if len(content) > 10 {
			t.Fatalf("record of %d bytes, RecordSize is 10", len(content))
		}
		switch {
		case typ == typeBeginRequest && !bytes.Equal(content, []byte{0, roleResponder, flagKeepConn, 0, 0, 0, 0, 0}):
			t.Fatalf("BEGIN_REQUEST body % x", content)
		case typ == typeParams:
			pairs = append(pairs, content...)
		case typ == typeStdin && len(content) > 0 && string(content) != "body":
			t.Fatalf("STDIN %q", content)
		}
		if len(types) == 0 || types[len(types)-1] != typ || len(content) == 0 {
			types = append(types, typ)
		}
	}
	want := []byte{typeBeginRequest, typeParams, typeParams, typeStdin, typeStdin}
	if !bytes.Equal(types, want) {
		t.Errorf("record sequence %v, want %v", types, want)
	}
	if !bytes.Equal(pairs, EncodePairs(params)) {
		t.Error("params do not round-trip")
	}
}

func TestSplitAddr(t *testing.T) {
	if n, a := SplitAddr("unix:/run/s.sock"); n != "unix" || a != "/run/s.sock" {
		t.Errorf("got %s %s", n, a)
	}
	if n, a := SplitAddr("127.0.0.1:5743"); n != "tcp" || a != "127.0.0.1:5743" {
		t.Errorf("got %s %s", n, a)
	}
}

// FuzzReadResponse feeds arbitrary bytes as an application's output: the
// client must not panic, and must end with an error or FCGI_END_REQUEST.
func FuzzReadResponse(f *testing.F) {
	f.Add(cat(stdout(1, "Status: 200 OK\r\nA: b\r\n\r\nbody", 7), rec(typeStderr, 1, "e"), end(1, 0)))
	f.Add(cat(stdout(1, "Location: /x\n\n", 100), end(1, 0)))
	f.Add(end(1, 3))
	f.Fuzz(func(t *testing.T, in []byte) {
		resp, err := readResponse(bufio.NewReader(bytes.NewReader(in)), 1, nil)
		if err != nil {
			return
		}
		if resp.StatusCode < 100 || resp.StatusCode > 999 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		io.ReadAll(resp.Body)
		resp.Body.Close()
	})
}
