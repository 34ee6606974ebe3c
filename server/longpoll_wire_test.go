package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// What a held connection reads and writes (longpoll.go, takeover.Conn.ServeNext),
// compared with net/http's holding of the same polls (plainServer): the
// standard library's behaviour is the specification.

// smuggledPublish is a whole publish request, to send as the body of a
// poll: served as a request of its own, it would publish to channel b.
var smuggledPublish = func() string {
	body := `m={"smuggled":true}`
	return "POST /comet/channel/b HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}()

// wireServer starts the server held (TakeoverListener) or plain.
func wireServer(t *testing.T, held bool, opts Options) (*Server, *http.Server, string) {
	t.Helper()
	if held {
		return takeoverServer(t, opts, nil, nil)
	}
	return plainServer(t, opts)
}

// waitPolled waits until the client id polls: for the held server, on its
// connection (taken over), for the plain one in net/http.
func waitPolled(t *testing.T, s *Server, srv *http.Server, held bool, id string) {
	t.Helper()
	if held {
		waitTakenOver(t, s, srv, 1)
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for !polling(s.Hub(), id) {
		if time.Now().After(deadline) {
			t.Fatalf("%s does not poll", id)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// readOrClosed reads an answer and says what a test compares of it: its
// status line, its Connection headers as sent, its length, and what its
// body is (whether it holds messages, whose times differ from one run to
// the next); or "closed".
func readOrClosed(rc *rawConn) string {
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	tp := textproto.NewReader(rc.r)
	line, err := tp.ReadLine()
	if err != nil {
		return "closed"
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return line + " (a bad header)"
	}
	if strings.HasPrefix(line, "HTTP/1.1 1") { // 100 Continue: the answer follows
		return line + ", " + readOrClosed(rc)
	}
	var body []byte
	if n, err := strconv.Atoi(h.Get("Content-Length")); err == nil {
		body = make([]byte, n)
		_, err = io.ReadFull(rc.r, body)
	} else {
		body, err = io.ReadAll(rc.r)
	}
	if err != nil {
		return line + " (a short body)"
	}
	kind := string(body)
	switch {
	case strings.Contains(kind, `"n":`):
		kind = "messages"
	case strings.Contains(kind, "Stardust COMET Server"):
		kind = "info"
	case strings.HasPrefix(kind, "/**/cb(") && strings.Contains(kind, `"/meta/connect","successful":true`):
		kind = "a connect's answer" // its clientId differs from one run to the next
	case len(kind) > 80:
		kind = kind[:80] + "..."
	default:
		kind += " (" + h.Get("Content-Length") + " bytes)"
	}
	return fmt.Sprintf("%s Connection=%q %s", line, h["Connection"], kind)
}

// endOf tells whether the server closed the connection ("closed") or left
// it open ("open", nothing came within a second), once every answer is
// read.
func endOf(rc *rawConn) string {
	_ = rc.c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := rc.r.ReadByte()
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "open"
	case err != nil:
		return "closed"
	}
	return "more bytes"
}

// A poll that carries a body must not have that body served as the
// connection's next request: through a front that keeps its upstream
// connections (nginx's keepalive), that would be a request smuggled in by
// its client, served as the front's (issue 17, point 1). net/http reads
// and discards what is left of a body (up to 256 KiB, else it closes the
// connection after the answer); a held poll must do the same.
func TestHeldPollBodyIsNotARequest(t *testing.T) {
	n := strconv.Itoa(len(smuggledPublish))
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggledPublish), smuggledPublish)
	large := strings.Repeat("x", 300<<10) + smuggledPublish  // read whole: 256 KiB here, the rest by net/http
	larger := strings.Repeat("x", 600<<10) + smuggledPublish // net/http closes the connection instead
	for _, tc := range []struct {
		name, proto, header, body string
		atOnce                    bool // answered at once: a body over 256 KiB (bodyRead)
		closes                    bool // and the connection closed after the answer
	}{
		{"Content-Length", "HTTP/1.1", "Content-Length: " + n + "\r\n", smuggledPublish, false, false},
		{"chunked", "HTTP/1.1", "Transfer-Encoding: chunked\r\n", chunked, false, false},
		{"two equal Content-Lengths", "HTTP/1.1", "Content-Length: " + n + "\r\nContent-Length: " + n + "\r\n", smuggledPublish, false, false},
		{"Content-Length and chunked", "HTTP/1.1", "Content-Length: " + n + "\r\nTransfer-Encoding: chunked\r\n", chunked, false, false},
		{"HTTP/1.0 keep-alive", "HTTP/1.0", "Connection: keep-alive\r\nContent-Length: " + n + "\r\n", smuggledPublish, false, false},
		{"Expect: 100-continue", "HTTP/1.1", "Expect: 100-continue\r\nContent-Length: " + n + "\r\n", smuggledPublish, false, false},
		{"HTTP/1.0 Expect: 100-continue", "HTTP/1.0", "Connection: keep-alive\r\nExpect: 100-continue\r\nContent-Length: " + n + "\r\n", smuggledPublish, false, false},
		{"over 256 KiB", "HTTP/1.1", "Content-Length: " + strconv.Itoa(len(large)) + "\r\n", large, true, false},
		{"over 512 KiB", "HTTP/1.1", "Content-Length: " + strconv.Itoa(len(larger)) + "\r\n", larger, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [2]string
			for i, held := range []bool{false, true} {
				s, srv, addr := wireServer(t, held, Options{PollTimeout: 10 * time.Second})
				rc := dialRaw(t, addr)
				// Sent meanwhile: a server that closes stops reading it.
				go io.WriteString(rc.c, "GET /comet/channel/a/stream/sm1 "+tc.proto+"\r\nHost: x\r\n"+tc.header+"\r\n"+tc.body)
				if !tc.atOnce {
					waitPolled(t, s, srv, held, "sm1")
					publishA(t, s, `{"n":1}`)
				}
				var first, second string
				first, second, got[i] = afterSmuggling(t, s, rc, held)
				if !strings.Contains(first, "200") || tc.closes != (second == "closed") || !tc.closes && !strings.HasSuffix(second, " info") {
					t.Errorf("held %v: answers %q", held, got[i])
				}
			}
			if got[0] != got[1] {
				t.Errorf("held: %q, net/http: %q", got[1], got[0])
			}
		})
	}
}

// afterSmuggling reads the answer to a request that carried
// smuggledPublish as its body, sends another request and reads its answer,
// and fails the test if the body was published; both reads, and them
// together for comparing with the other server.
func afterSmuggling(t *testing.T, s *Server, rc *rawConn, held bool) (first, second, both string) {
	t.Helper()
	first = readOrClosed(rc)
	rc.send("GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n")
	second = readOrClosed(rc)
	time.Sleep(50 * time.Millisecond)
	if h, _ := s.Hub().History("/stardust/b", 0); len(h) > 0 {
		t.Errorf("held %v: the body was served as a request: it published %s", held, h[0].Data)
	}
	return first, second, first + " | " + second
}

// A client that half-closes its connection (shutdown(SHUT_WR)) after its
// poll is answered at once as net/http answers it: its background read
// sees the end, cancels the request's context, and the poll ends with what
// it has; then the connection is closed.
func TestHeldPollHalfClosedClient(t *testing.T) {
	for _, next := range []bool{false, true} {
		t.Run(fmt.Sprintf("next poll %v", next), func(t *testing.T) {
			var got [2]string
			for i, held := range []bool{false, true} {
				s, srv, addr := wireServer(t, held, Options{PollTimeout: 10 * time.Second})
				rc := dialRaw(t, addr)
				if next {
					rc.send(pollGet("hc1", "HTTP/1.1", ""))
					waitPolled(t, s, srv, held, "hc1")
					publishA(t, s, `{"n":0}`)
					rc.read()
				}
				rc.send(pollGet("hc1", "HTTP/1.1", ""))
				waitPolled(t, s, srv, held, "hc1")
				start := time.Now()
				if err := rc.c.(*net.TCPConn).CloseWrite(); err != nil {
					t.Fatal(err)
				}
				got[i] = readOrClosed(rc)
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("held %v: answered after %s", held, took)
				}
				got[i] += " | " + endOf(rc)
			}
			if got[0] != got[1] {
				t.Errorf("held: %q, net/http: %q", got[1], got[0])
			}
		})
	}
}

// HTTP/1.0 and Connection: close, for the poll that takes its connection
// over and for the next polls served there: the status line's protocol,
// the Connection header and whether the connection stays open are
// net/http's.
func TestHeldPollAnswersAsNetHTTP(t *testing.T) {
	poll := func(proto, extra string) string { return pollGet("v1", proto, extra) }
	info := "GET /comet/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
	for _, tc := range []struct {
		name  string
		steps []string
	}{
		{"HTTP/1.0", []string{poll("HTTP/1.0", "")}},
		{"HTTP/1.0 keep-alive", []string{poll("HTTP/1.0", "Connection: keep-alive\r\n"), info}},
		{"HTTP/1.0 keep-alive twice", []string{poll("HTTP/1.0", "Connection: keep-alive\r\n"), poll("HTTP/1.0", "Connection: Keep-Alive\r\n"), info}},
		{"HTTP/1.1 close", []string{poll("HTTP/1.1", "Connection: close\r\n")}},
		{"next HTTP/1.0", []string{poll("HTTP/1.1", ""), poll("HTTP/1.0", "")}},
		{"next HTTP/1.0 keep-alive", []string{poll("HTTP/1.1", ""), poll("HTTP/1.0", "Connection: keep-alive\r\n"), info}},
		{"next HTTP/1.1 close", []string{poll("HTTP/1.1", ""), poll("HTTP/1.1", "Connection: close\r\n")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [2]string
			for i, held := range []bool{false, true} {
				s, srv, addr := wireServer(t, held, Options{PollTimeout: 10 * time.Second})
				rc := dialRaw(t, addr)
				var answers []string
				for j, step := range tc.steps {
					rc.send(step)
					if strings.Contains(step, "/stream/") {
						waitPolled(t, s, srv, held, "v1")
						publishA(t, s, fmt.Sprintf(`{"n":%d}`, j))
					}
					answers = append(answers, readOrClosed(rc))
				}
				answers = append(answers, endOf(rc))
				got[i] = strings.Join(answers, " | ")
			}
			if got[0] != got[1] {
				t.Errorf("held:\n%s\nnet/http:\n%s", got[1], got[0])
			}
		})
	}
}

// The same for a Bayeux connect over callback-polling (a GET, like a
// Stardust poll) that carries a body.
func TestHeldBayeuxConnectBodyIsNotARequest(t *testing.T) {
	var got [2]string
	for i, held := range []bool{false, true} {
		s, _, addr := wireServer(t, held, Options{PollTimeout: 500 * time.Millisecond, Bayeux: &BayeuxOptions{}})
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar}
		resp, err := hc.Post("http://"+addr+"/comet/bayeux", "application/json", strings.NewReader(
			`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["callback-polling"],"id":"1"}]`))
		if err != nil {
			t.Fatal(err)
		}
		var hs []struct{ ClientID string }
		if err := json.NewDecoder(resp.Body).Decode(&hs); err != nil || len(hs) != 1 || hs[0].ClientID == "" {
			t.Fatalf("handshake: %v %v", hs, err)
		}
		resp.Body.Close()
		var cookie string
		for _, c := range jar.Cookies(&url.URL{Scheme: "http", Host: addr, Path: "/comet/bayeux"}) {
			cookie += c.Name + "=" + c.Value + "; "
		}
		connect := url.QueryEscape(`[{"channel":"/meta/connect","clientId":"` + hs[0].ClientID + `","connectionType":"callback-polling","id":"2"}]`)
		rc := dialRaw(t, addr)
		rc.send("GET /comet/bayeux?jsonp=cb&message=" + connect + " HTTP/1.1\r\nHost: x\r\nCookie: " + cookie + "\r\n" +
			"Content-Length: " + strconv.Itoa(len(smuggledPublish)) + "\r\n\r\n" + smuggledPublish)
		var first, second string
		first, second, got[i] = afterSmuggling(t, s, rc, held)
		if !strings.HasSuffix(first, " a connect's answer") || !strings.HasSuffix(second, " info") {
			t.Errorf("held %v: answers %q", held, got[i])
		}
	}
	if got[0] != got[1] {
		t.Errorf("held: %q, net/http: %q", got[1], got[0])
	}
}

// A Bayeux long-polling connect is a POST whose body the handler reads to
// its end: its connection is still taken over (the check of its body costs
// one read that meets the end), and what follows is the next request; so
// is one that expected 100-continue.
func TestHeldBayeuxLongPollingConnectTakenOver(t *testing.T) {
	s, srv, addr := takeoverServer(t, Options{PollTimeout: 10 * time.Second, Bayeux: &BayeuxOptions{}}, nil, nil)
	rc := dialRaw(t, addr)
	post := func(body, extra string) string {
		return "POST /comet/bayeux HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nCookie: " + BrowserCookie + "=" + benchBrowser +
			"\r\n" + extra + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	rc.send(post(`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"],"id":"1"}]`, ""))
	_, body := rc.read()
	var hs []struct{ ClientID string }
	if err := json.Unmarshal([]byte(body), &hs); err != nil || len(hs) != 1 || hs[0].ClientID == "" {
		t.Fatalf("handshake: %s", body)
	}
	id := hs[0].ClientID
	rc.send(post(`[{"channel":"/meta/subscribe","clientId":"`+id+`","subscription":"/stardust/a","id":"2"}]`, ""))
	rc.read()
	// The first connect is answered at once (as CometD's); the next are held.
	rc.send(post(`[{"channel":"/meta/connect","clientId":"`+id+`","connectionType":"long-polling","id":"3"}]`, ""))
	rc.read()
	for _, tc := range []struct {
		extra string
		held  int
	}{{"", 1}, {"Expect: 100-continue\r\n", 1}} {
		rc.send(post(`[{"channel":"/meta/connect","clientId":"`+id+`","connectionType":"long-polling","id":"3"}]`, tc.extra) +
			"GET /comet/ HTTP/1.1\r\nHost: x\r\n\r\n")
		// The client is polling a moment before its connection is taken
		// over: wait for both.
		deadline := time.Now().Add(10 * time.Second)
		for !polling(s.Hub(), id) || takeoverCount(srv) != tc.held {
			if time.Now().After(deadline) {
				t.Fatalf("%q: polling %v, %d connects held on their connection, want %d",
					tc.extra, polling(s.Hub(), id), takeoverCount(srv), tc.held)
			}
			time.Sleep(2 * time.Millisecond)
		}
		publishA(t, s, `{"n":1}`)
		resp, body := rc.read()
		if resp.StatusCode == http.StatusContinue { // as the handler read the body
			_, body = rc.read()
		}
		if !strings.Contains(body, `"n":1`) {
			t.Fatalf("%q: connect: %s", tc.extra, body)
		}
		if _, body := rc.read(); !strings.Contains(body, "Stardust COMET Server") {
			t.Fatalf("%q: the request after the connect: %s", tc.extra, body)
		}
	}
}

// A poll whose body never comes is answered once body_timeout has passed
// and the connection closed, held or not: not left waiting for the body
// after its hold (longRequest lifts the read deadline), and the client's
// next bytes are never read as that body.
func TestHeldPollBodyThatNeverComes(t *testing.T) {
	for _, held := range []bool{false, true} {
		_, _, addr := wireServer(t, held, Options{PollTimeout: 300 * time.Millisecond, BodyTimeout: 300 * time.Millisecond})
		rc := dialRaw(t, addr)
		start := time.Now()
		rc.send(pollGet("nb1", "HTTP/1.1", "Content-Length: 10\r\n"))
		got := readOrClosed(rc)
		got += " | " + endOf(rc)
		if !strings.HasPrefix(got, "HTTP/1.1 200 OK Connection=[\"close\"] []") || !strings.HasSuffix(got, " | closed") {
			t.Errorf("held %v: %q, want an empty answer, then the connection closed", held, got)
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("held %v: answered after %s", held, took)
		}
	}
}
