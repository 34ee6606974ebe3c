package server

import (
	"net/http"
	"net/textproto"
	"strings"
)

// Checks of the names and ids every long poll carries, as byte loops: they
// run on every request, where regular expressions cost a few percent of the
// server's CPU. names_test.go holds them to the regular expressions they
// replace.

// isStardustName reports whether s is a Stardust channel name: one or more
// letters, digits and underscores (ASCII), as `^\w+$`.
func isStardustName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isWordByte(s[i]) {
			return false
		}
	}
	return true
}

// isStreamID reports whether s is a client id given in a URL: 1 to 128
// letters, digits, dots, - and _, as `^[\w.-]{1,128}$`.
func isStreamID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isWordByte(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// isBrowserValue reports whether s has the form of a browser cookie value
// we issue (browser.go): 64 lower-case hex digits, as `^[0-9a-f]{64}$`.
func isBrowserValue(s string) bool {
	if len(s) != 2*browserRandLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// maxCookiesScanned is how many cookies browserCookieOf reads itself; a request
// with more goes through net/http's own parser, which also enforces its
// limit on the number of cookies.
const maxCookiesScanned = 64

// browserCookieOf returns the request's browser cookie value, "" if none
// valid: the first BAYEUX_BROWSER cookie whose value has the right form and
// passes ok, read as r.CookiesNamed reads cookies, without its allocations.
func browserCookieOf(r *http.Request, ok func(string) bool) string {
	lines := r.Header["Cookie"]
	n := 0
	for _, line := range lines {
		n += strings.Count(line, ";") + 1
	}
	if n > maxCookiesScanned {
		for _, c := range r.CookiesNamed(BrowserCookie) {
			if isBrowserValue(c.Value) && ok(c.Value) {
				return c.Value
			}
		}
		return ""
	}
	for _, line := range lines {
		line = textproto.TrimString(line)
		var part string
		for len(line) > 0 {
			part, line, _ = strings.Cut(line, ";")
			part = textproto.TrimString(part)
			name, val, _ := strings.Cut(part, "=")
			if textproto.TrimString(name) != BrowserCookie {
				continue
			}
			if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			if isBrowserValue(val) && ok(val) {
				return val
			}
		}
	}
	return ""
}
