package server

import (
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Issue 10, item 5: the Stardust API under the same rules as Bayeux.

// do sends a request with an optional X-Forwarded-For and basic auth.
func do(t *testing.T, method, u, body, xff, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, u, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	return roundTrip(t, http.DefaultClient, req)
}

// roundTrip sends req with hc and returns the status and body.
func roundTrip(t *testing.T, hc *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func TestStardustAllowFrom(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	// The default: loopback only; the forwarded address is the one checked.
	_, ts := testServer(t, Options{TrustedProxies: trusted})
	m := "m=" + url.QueryEscape(`{"a":1}`)
	if code, body := do(t, "POST", ts.URL+"/comet/channel/foo", m, "", "", ""); code != 200 {
		t.Errorf("from loopback: %d %s", code, body)
	}
	code, body := do(t, "POST", ts.URL+"/comet/channel/foo", m, "198.51.100.7", "", "")
	if code != 403 || !strings.Contains(body, "not allowed from 198.51.100.7") {
		t.Errorf("from a forwarded address: %d %s", code, body)
	}
	// Reading is not publishing.
	if code, _ := do(t, "GET", ts.URL+"/comet/channel/foo", "", "198.51.100.7", "", ""); code != 200 {
		t.Errorf("read from a forwarded address: %d", code)
	}
	// A configured network.
	_, ts2 := testServer(t, Options{TrustedProxies: trusted, AllowFrom: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
	if code, body := do(t, "POST", ts2.URL+"/comet/channel/foo", m, "198.51.100.7", "", ""); code != 200 {
		t.Errorf("from an allowed network: %d %s", code, body)
	}
	if code, _ := do(t, "POST", ts2.URL+"/comet/channel/foo", m, "", "", ""); code != 403 {
		t.Errorf("loopback not in allow_from: %d", code)
	}
}

func TestStardustPublishBasicAuth(t *testing.T) {
	hash, _ := HashPassword("s3cret")
	_, ts := testServer(t, Options{PublishUser: "pub", PublishPassHash: hash})
	m := "m=" + url.QueryEscape(`{"a":1}`)
	// The error says what is wrong: no credentials, or wrong ones (a wrong
	// password once read "publishing needs HTTP basic auth").
	for _, tc := range []struct {
		user, pass string
		want       int
		says       string
	}{{"", "", 401, "needs HTTP basic auth"}, {"pub", "wrong", 401, "wrong user name or password"},
		{"other", "s3cret", 401, "wrong user name or password"}, {"pub", "s3cret", 200, ""}} {
		code, body := do(t, "POST", ts.URL+"/comet/channel/foo", m, "", tc.user, tc.pass)
		if code != tc.want || !strings.Contains(body, tc.says) {
			t.Errorf("%s/%s: %d %s, want %d saying %q", tc.user, tc.pass, code, body, tc.want, tc.says)
		}
	}
}

func TestStardustUnderBayeuxACL(t *testing.T) {
	acl, err := RulesACL([]ACLRule{{Channel: "/stardust/**", Subscribe: []string{"authenticated"}, Publish: []string{"authenticated"}}})
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := HashPassword("s3cret")
	s, ts := testServer(t, Options{PollTimeout: 100 * time.Millisecond, PublishUser: "pub", PublishPassHash: hash, Hub: HubOptions{HistorySize: 5},
		Bayeux: &BayeuxOptions{MessageACL: acl}})
	m := "m=" + url.QueryEscape(`{"secret":1}`)
	// The authenticated publisher may publish; nobody anonymous may read.
	if code, body := do(t, "POST", ts.URL+"/comet/channel/foo", m, "", "pub", "s3cret"); code != 200 {
		t.Fatalf("authenticated publish: %d %s", code, body)
	}
	for _, u := range []string{"/comet/channel/foo", "/comet/channel/foo/stream/1.2", "/comet/channel/foo/events", "/comet/channel/bar+foo"} {
		code, body := do(t, "GET", ts.URL+u, "", "", "", "")
		if code != 403 || strings.Contains(body, "secret") {
			t.Errorf("anonymous GET %s: %d %s", u, code, body)
		}
	}
	if clientOf(s.hub, "1.2") != nil {
		t.Error("a refused stream registered a client")
	}
	// With the credentials, reads are allowed too.
	if code, body := do(t, "GET", ts.URL+"/comet/channel/foo", "", "", "pub", "s3cret"); code != 200 || !strings.Contains(body, "secret") {
		t.Errorf("authenticated read: %d %s", code, body)
	}
	// A channel the rules leave open stays open.
	acl2, _ := RulesACL([]ACLRule{{Channel: "/stardust/private/**", Subscribe: []string{"authenticated"}, Publish: []string{"authenticated"}}})
	_, ts2 := testServer(t, Options{Bayeux: &BayeuxOptions{MessageACL: acl2}})
	if code, body := do(t, "POST", ts2.URL+"/comet/channel/open", m, "", "", ""); code != 200 {
		t.Errorf("open channel: %d %s", code, body)
	}
}
