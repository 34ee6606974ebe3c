package server

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Issue 17, point 7: only BAYEUX_BROWSER values this server issued count,
// on every process sharing its engine; any other value is no cookie, and a
// new one is issued.
func TestBrowserCookieIssuedHere(t *testing.T) {
	shared := NewMemoryEngine(Limits{HistorySize: 10})
	var hub *Hub // the first node's
	node := func(e Engine) string {
		bo := BayeuxOptions{}
		opts := Options{PollTimeout: time.Second, Bayeux: &bo}
		opts.Hub.Engine = e
		s, ts := testServer(t, opts)
		if hub == nil {
			hub = s.hub
		}
		return ts.URL + "/comet/bayeux"
	}
	// handshake handshakes at u presenting cookie ("" none) and returns the
	// cookie the answer set ("" none) and the session.
	handshake := func(u, cookie string) (set, id string) {
		t.Helper()
		req, _ := http.NewRequest("POST", u, strings.NewReader(
			`[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]`))
		req.Header.Set("Content-Type", "application/json")
		if cookie != "" {
			req.Header.Set("Cookie", BrowserCookie+"="+cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		_, rest, _ := strings.Cut(string(body), `"clientId":"`)
		id, _, _ = strings.Cut(rest, `"`)
		for _, c := range resp.Cookies() {
			if c.Name == BrowserCookie {
				set = c.Value
			}
		}
		return set, id
	}
	a, b, other := node(shared), node(shared), node(nil)
	issued, _ := handshake(a, "")
	if !isBrowserValue(issued) {
		t.Fatalf("issued cookie %q", issued)
	}
	for name, u := range map[string]string{"the node that issued it": a, "another node on its engine": b} {
		if set, _ := handshake(u, issued); set != "" {
			t.Errorf("%s refused its cookie: issued %s", name, set)
		}
	}
	forged := []string{
		strings.Repeat("0", 64),
		issued[:32] + strings.Repeat("0", 32), // a real random part, a made-up MAC
		strings.Repeat("0", 32) + issued[32:], // a real MAC, another random part
		"0123456789abcdef0123456789abcdef",    // the form of the values issued before
	}
	for _, v := range forged {
		set, id := handshake(a, v)
		if set == "" || set == v {
			t.Errorf("forged cookie %q accepted (Set-Cookie %q)", v, set)
		}
		if c := clientOf(hub, id); c == nil || c.Attr(AttrBrowser) == v {
			t.Errorf("forged cookie %q: a session bound to it", v)
		}
	}
	if set, _ := handshake(other, issued); set == "" {
		t.Error("a server on another engine accepted a cookie it did not issue")
	}
}

// A session attribute that is not a firstUse value, or one whose cookie is
// not of our form, never lets a cookie in (and never panics).
func TestFirstUseValuesParsed(t *testing.T) {
	b := newBX(t, BayeuxOptions{})
	b.handshake() // b has a cookie
	id := b.handshake()
	c := clientOf(b.s.hub, id)
	for _, v := range []string{"~", "~@", "~x@1", "~@notanumber", "~" + benchBrowser, "-x"} {
		if err := c.SetAttr(AttrBrowser, v); err != nil {
			t.Fatal(err)
		}
		wantError(t, b.post(connectMsg(id, 0))[0], "402:")
	}
}

// A mintKey remembers values it verified; what it remembers never makes a
// value verify that would not by its MAC: not a value that differs from a
// remembered one in its last digit, nor one of the same slot.
func TestMintKeyRemembersOnlyVerifiedValues(t *testing.T) {
	k := newMintKey([]byte("0123456789abcdef0123456789abcdef"))
	r := "0000000000001" + strings.Repeat("7", browserRandLen-13)
	v := r + k.sign(r)
	if !isBrowserValue(v) || !k.verify(v) {
		t.Fatalf("issued value %q does not verify", v)
	}
	if k.seen[seenSlot(v)].Load() == nil {
		t.Fatal("a verified value is not remembered")
	}
	if !k.verify(v) {
		t.Fatal("a remembered value does not verify")
	}
	last := byte('0')
	if v[len(v)-1] == '0' {
		last = '1'
	}
	for _, forged := range []string{
		v[:len(v)-1] + string(last),                              // its MAC's last digit changed
		v[:browserRandLen] + strings.Repeat("0", browserRandLen), // same slot, made-up MAC
		"1" + v[1:], // same slot, another signed part
	} {
		if seenSlot(forged) != seenSlot(v) {
			t.Fatalf("%q is not in %q's slot", forged, v)
		}
		if k.verify(forged) {
			t.Errorf("forged %q verified", forged)
		}
	}
	if !k.verify(v) {
		t.Error("the remembered value was lost to a forged one")
	}
	if other := newMintKey([]byte("another key, another cache......")); other.verify(v) {
		t.Error("another key verified a value it did not sign")
	}
}

func BenchmarkMintKeyVerify(b *testing.B) {
	k := newMintKey([]byte("0123456789abcdef0123456789abcdef"))
	r := "0000000000001" + strings.Repeat("7", browserRandLen-13)
	v := r + k.sign(r)
	b.ReportAllocs()
	for b.Loop() {
		if !k.verify(v) {
			b.Fatal("no")
		}
	}
}
