package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/server"
)

// MaxAnswerBytes bounds what is read of an answer from the app or the key
// server; a longer answer is an error, not a truncated read.
const MaxAnswerBytes = 64 << 10

// DefaultForwardHeaders returns (a fresh copy of) the request headers
// passed on to the app's callbacks when forward_headers is not set: what
// tells the app whose browser is asking.
func DefaultForwardHeaders() []string { return []string{"Cookie", "Authorization"} }

// readBounded reads r whole, refusing more than MaxAnswerBytes.
func readBounded(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxAnswerBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxAnswerBytes {
		return nil, fmt.Errorf("answer longer than %d bytes", MaxAnswerBytes)
	}
	return b, nil
}

// newHTTPClient is the client for the app and the key server: every call
// bounded by timeout, no redirects followed (a call goes to the configured
// URL and nowhere else), no proxy from the environment.
func newHTTPClient(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// callback is one of the app's URLs: connect_url, subscribe_url or publish_url.
type callback struct {
	key     string // the config key, for logs and messages
	url     string
	client  *http.Client
	timeout time.Duration
	forward []string // canonical header names
	log     *logrus.Entry
}

// post sends body as JSON with the forwarded headers of h, and returns the
// status and the (bounded) answer. A failure to get an answer in time wraps
// server.ErrAppUnavailable; the cause is logged, the client sees a short
// message with retry advice.
func (c *callback) post(ctx context.Context, body any, h http.Header) (int, []byte, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(data))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "stardust-auth")
	for _, name := range c.forward {
		for _, v := range h[name] {
			req.Header.Add(name, v)
		}
	}
	start := time.Now()
	resp, err := c.client.Do(req)
	if err == nil {
		var answer []byte
		answer, err = readBounded(resp.Body)
		resp.Body.Close()
		if err == nil {
			return resp.StatusCode, answer, nil
		}
	}
	if c.log != nil {
		c.log.WithError(err).WithFields(logrus.Fields{"key": c.key, "url": c.url, "after": time.Since(start).Round(time.Millisecond)}).
			Warn("auth: the app's callback failed; refused for now")
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return 0, nil, fmt.Errorf("%w: the app did not answer within %s: retry in a few seconds", server.ErrAppUnavailable, c.timeout)
	}
	return 0, nil, fmt.Errorf("%w: the app could not be reached: retry in a few seconds", server.ErrAppUnavailable)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// unexpected is the error for an answer that is neither yes nor no.
func (c *callback) unexpected(status int, why string) error {
	if c.log != nil {
		c.log.WithFields(logrus.Fields{"key": c.key, "url": c.url, "status": status}).Warnf("auth: the app's answer is unusable: %s", why)
	}
	return fmt.Errorf("%w: the app gave an unusable answer (%d): retry in a few seconds", server.ErrAppUnavailable, status)
}

// cacheKey is a digest of the parts (length-prefixed, so that no two
// lists of parts read the same) and of the forwarded headers of h: the same
// question from the same browser session gets the same key, a changed cookie
// a new one.
func (c *callback) cacheKey(h http.Header, parts ...string) string {
	d := sha256.New()
	var n [8]byte
	add := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		d.Write(n[:])
		d.Write([]byte(s))
	}
	for _, p := range parts {
		add(p)
	}
	for _, name := range c.forward {
		vals := h[name]
		add(fmt.Sprint(len(vals)))
		for _, v := range vals {
			add(v)
		}
	}
	return hex.EncodeToString(d.Sum(nil))
}

// forwards reports whether h has any of the forwarded headers.
func (c *callback) forwards(h http.Header) bool {
	for _, name := range c.forward {
		if len(h[name]) > 0 {
			return true
		}
	}
	return false
}

// canonicalHeaders returns the names in canonical form, without duplicates.
func canonicalHeaders(names []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		n = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(n))
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// maxAppMessage bounds the app's refusal message passed on to a client.
const maxAppMessage = 300

// appMessage reads {"error":"…"} from a refusal; "" when there is none.
// The message is cut to maxAppMessage bytes and stripped of control
// characters, since it goes to clients and logs.
func appMessage(answer []byte) string {
	var a struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(answer, &a) != nil {
		return ""
	}
	msg := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return -1
		}
		return r
	}, a.Error)
	if len(msg) > maxAppMessage {
		cut := maxAppMessage
		for cut > 0 && msg[cut]&0xc0 == 0x80 {
			cut--
		}
		msg = msg[:cut]
	}
	return msg
}
