package fcgi

import (
	"encoding/binary"
	"net/url"
	"strings"
)

// The web server describes each request in FastCGI params (CGI variables).
// net/http/cgi.RequestFromMap turns them into an *http.Request, but it trusts
// REQUEST_URI blindly, glues HTTP_HOST in front of it before parsing, and
// never sets Request.RequestURI. This file computes the public URL ourselves
// so that the handler sees the same Path/RawQuery as behind the HTTP front.

// publicURL returns the URL the browser asked for, in origin form (Path,
// RawPath, RawQuery only). REQUEST_URI is preferred: nginx ($request_uri) and
// apache2 (the request-line target) both send the original, still-escaped
// URI with its query. When it is absent or not a usable path (apache2 sends
// absolute-form targets as they came; "*" for OPTIONS), SCRIPT_NAME+PATH_INFO
// are used: they are already decoded, so they go into Path as they are.
// The result always has a Path starting with "/".
func publicURL(p map[string]string) *url.URL {
	if u, ok := parseRequestURI(p["REQUEST_URI"]); ok {
		// apache2 with "CGIVar REQUEST_URI current-uri" sends the path
		// without its query; the query is still in QUERY_STRING.
		if u.RawQuery == "" && !u.ForceQuery {
			u.RawQuery = cleanQuery(p["QUERY_STRING"])
		}
		return u
	}
	path := p["SCRIPT_NAME"] + p["PATH_INFO"]
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return &url.URL{Path: path, RawQuery: cleanQuery(p["QUERY_STRING"])}
}

// parseRequestURI parses a request-line target the way net/http does for an
// HTTP request (so "//a" stays a path), accepting origin and absolute form.
func parseRequestURI(s string) (*url.URL, bool) {
	if s == "" || s == "*" {
		return nil, false
	}
	u, err := url.ParseRequestURI(s)
	if err != nil || u.Opaque != "" {
		return nil, false
	}
	if u.Path == "" && u.Host != "" {
		u.Path = "/" // absolute form without a path: "http://host"
	}
	if !strings.HasPrefix(u.Path, "/") {
		return nil, false
	}
	return &url.URL{Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery, ForceQuery: u.ForceQuery}, true
}

// cleanQuery escapes ASCII control bytes, which net/url refuses anywhere in
// a URL; everything else in a raw query is passed on as the client sent it.
func cleanQuery(q string) string {
	if !strings.ContainsFunc(q, isCTL) {
		return q
	}
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		c := q[i]
		if isCTL(rune(c)) {
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isCTL(r rune) bool { return r < ' ' || r == 0x7f }

// hostParses reports whether RequestFromMap can parse "http://"+host+"/".
// nginx lets bytes such as '%', '?' and '@' through in Host; with those
// RequestFromMap either fails (a 500 before any handler runs) or builds a
// URL whose path is not the request's.
func hostParses(host string) bool {
	u, err := url.Parse("http://" + host + "/")
	return err == nil && u.Host == host && u.Path == "/" && u.User == nil
}

// decodePairs decodes FastCGI name-value pairs (1- or 4-byte lengths) the
// way net/http/fcgi does: later names override earlier ones, and decoding
// stops at the first truncated pair. It returns the pairs and how many bytes
// of p were well formed; net/http/fcgi ignores everything after that.
func decodePairs(p []byte) (map[string]string, int) {
	m := make(map[string]string)
	off := 0
	for off < len(p) {
		kl, n1 := readSize(p[off:])
		if n1 == 0 {
			break
		}
		vl, n2 := readSize(p[off+n1:])
		if n2 == 0 {
			break
		}
		start := off + n1 + n2
		if uint64(kl)+uint64(vl) > uint64(len(p)-start) {
			break
		}
		k := string(p[start : start+int(kl)])
		m[k] = string(p[start+int(kl) : start+int(kl)+int(vl)])
		off = start + int(kl) + int(vl)
	}
	return m, off
}

// readSize reads one pair length; n is 0 if p is too short to hold it.
func readSize(p []byte) (size uint32, n int) {
	if len(p) == 0 {
		return 0, 0
	}
	if p[0]&0x80 == 0 {
		return uint32(p[0]), 1
	}
	if len(p) < 4 {
		return 0, 0
	}
	return binary.BigEndian.Uint32(p) &^ (1 << 31), 4
}

// appendPair appends one encoded name-value pair to b.
func appendPair(b []byte, k, v string) []byte {
	b = appendSize(b, len(k))
	b = appendSize(b, len(v))
	b = append(b, k...)
	return append(b, v...)
}

func appendSize(b []byte, n int) []byte {
	if n <= 127 {
		return append(b, byte(n))
	}
	return binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
}

// cgiRequestURI renders u for the REQUEST_URI param that RequestFromMap
// parses as "http://"+host+s. url.Parse would split a '#' in the query off
// as a fragment (and fail on a bad escape after it), so it is escaped here;
// the handler still gets u itself, not this string.
func cgiRequestURI(u *url.URL) string {
	s := u.EscapedPath()
	if u.RawQuery != "" || u.ForceQuery {
		s += "?" + strings.ReplaceAll(u.RawQuery, "#", "%23")
	}
	return s
}
