package server

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// The regular expressions the byte loops of names.go replace, and the
// cookie reading browserCookieOf replaces: the loops must agree with them.
var (
	refStardustName = regexp.MustCompile(`^\w+$`)
	refStreamID     = regexp.MustCompile(`^[\w.-]{1,128}$`)
	refBrowserValue = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

func refBrowserOf(r *http.Request) string {
	for _, c := range r.CookiesNamed(BrowserCookie) {
		if refBrowserValue.MatchString(c.Value) {
			return c.Value
		}
	}
	return ""
}

func checkNames(t *testing.T, s string) {
	t.Helper()
	if got, want := isStardustName(s), refStardustName.MatchString(s); got != want {
		t.Errorf("isStardustName(%q) = %v, want %v", s, got, want)
	}
	if got, want := isStreamID(s), refStreamID.MatchString(s); got != want {
		t.Errorf("isStreamID(%q) = %v, want %v", s, got, want)
	}
	if got, want := isBrowserValue(s), refBrowserValue.MatchString(s); got != want {
		t.Errorf("isBrowserValue(%q) = %v, want %v", s, got, want)
	}
	r := &http.Request{Header: http.Header{"Cookie": strings.Split(s, "\n")}}
	if got, want := browserCookieOf(r, func(string) bool { return true }), refBrowserOf(r); got != want {
		t.Errorf("browserCookieOf(Cookie: %q) = %q, want %q", s, got, want)
	}
}

var nameSamples = []string{
	"", "a", "foo_Bar9", "a-b", "a.b", "é", "a b", "a\n", "x+y", "..", "-",
	strings.Repeat("a", 128), strings.Repeat("a", 129), strings.Repeat("z", 300),
	benchBrowser, strings.ToUpper(benchBrowser), benchBrowser[1:], benchBrowser + "0",
	BrowserCookie + "=" + benchBrowser,
	"a=b; " + BrowserCookie + "=" + benchBrowser + "; c=d",
	BrowserCookie + `="` + benchBrowser + `"`,
	BrowserCookie + "=bad; " + BrowserCookie + "=" + benchBrowser,
	" " + BrowserCookie + " = " + benchBrowser,
	BrowserCookie + " =" + benchBrowser + " ;",
	"x=1\n" + BrowserCookie + "=" + benchBrowser,
	strings.Repeat("a=b;", 70) + BrowserCookie + "=" + benchBrowser,
	strings.Repeat("a=b;", 4000) + BrowserCookie + "=" + benchBrowser,
}

func TestNameChecksMatchRegexps(t *testing.T) {
	for _, s := range nameSamples {
		checkNames(t, s)
	}
}

// FuzzNameChecks holds the byte loops of names.go to the regular
// expressions and the cookie parsing they replace.
func FuzzNameChecks(f *testing.F) {
	for _, s := range nameSamples {
		f.Add(s)
	}
	f.Fuzz(checkNames)
}
