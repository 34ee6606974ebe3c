package fcgi

import (
	"maps"
	"net/http/cgi"
	"net/url"
	"strings"
	"testing"

	"github.com/stardust-go/stardust/internal/fcgitest"
)

const backend = "127.0.0.1:5743"

// mappingCase is one request as a web server describes it in params, and the
// URL and Host the handler must see.
type mappingCase struct {
	name    string
	params  map[string]string
	path    string
	rawPath string // "" when the path needs no special escaping
	query   string
	host    string
}

// with returns a copy of p with changes applied; an empty value deletes.
func with(p map[string]string, kv ...string) map[string]string {
	q := maps.Clone(p)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			delete(q, kv[i])
		} else {
			q[kv[i]] = kv[i+1]
		}
	}
	return q
}

func mappingCases() []mappingCase {
	const stream = "/comet/channel/foo/stream/1.2"
	ngx := fcgitest.NginxParams
	split := fcgitest.NginxSplitParams
	apache := fcgitest.ApacheParams
	return []mappingCase{
		{name: "nginx fastcgi_params", params: ngx("GET", stream+"?callback=cb&x=%20y"),
			path: stream, query: "callback=cb&x=%20y", host: "localhost"},
		{name: "nginx no query", params: ngx("GET", stream),
			path: stream, host: "localhost"},
		{name: "nginx escaped slash kept raw", params: ngx("GET", "/comet/channel/a%2Fb/stream/1"),
			path: "/comet/channel/a/b/stream/1", rawPath: "/comet/channel/a%2Fb/stream/1", host: "localhost"},
		{name: "nginx double slash stays a path", params: ngx("GET", "//comet/channel/foo"),
			path: "//comet/channel/foo", host: "localhost"},
		{name: "nginx split_path_info", params: split("GET", stream+"?x=1", "/comet"),
			path: stream, query: "x=1", host: "localhost"},
		{name: "nginx split_path_info, no REQUEST_URI",
			params: with(split("GET", stream+"?x=1", "/comet"), "REQUEST_URI", ""),
			path:   stream, query: "x=1", host: "localhost"},
		{name: "no REQUEST_URI, decoded path with % ? #",
			params: with(ngx("GET", "/x"), "REQUEST_URI", "", "SCRIPT_NAME", "/comet",
				"PATH_INFO", "/channel/100%?#x", "QUERY_STRING", "a=1"),
			path: "/comet/channel/100%?#x", query: "a=1", host: "localhost"},
		{name: "no REQUEST_URI, control byte in query",
			params: with(ngx("GET", "/x"), "REQUEST_URI", "", "QUERY_STRING", "a=\x01"),
			path:   "/x", query: "a=%01", host: "localhost"},
		{name: "REQUEST_URI with a bad escape falls back",
			params: with(ngx("GET", "/x"), "REQUEST_URI", "/comet/%zz", "SCRIPT_NAME", "/comet/%zz"),
			path:   "/comet/%zz", host: "localhost"},
		{name: "no path params at all",
			params: map[string]string{"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1"},
			path:   "/"},
		{name: "apache ProxyPass", params: apache("GET", stream+"?x=1", backend),
			path: stream, query: "x=1", host: "localhost"},
		{name: "apache proxy-fcgi-pathinfo",
			params: with(apache("GET", stream+"?x=1", backend), "SCRIPT_NAME", "", "PATH_INFO", stream),
			path:   stream, query: "x=1", host: "localhost"},
		{name: "apache absolute-form target",
			params: apache("GET", "http://localhost"+stream+"?x=1", backend),
			path:   stream, query: "x=1", host: "localhost"},
		{name: "apache CGIVar REQUEST_URI current-uri",
			params: with(apache("GET", stream+"?x=1", backend), "REQUEST_URI", stream),
			path:   stream, query: "x=1", host: "localhost"},
		{name: "OPTIONS *", params: with(apache("OPTIONS", "*", backend), "SCRIPT_NAME", ""),
			path: "/", host: "localhost"},
		{name: "Host with ? (nginx lets it through)", params: with(ngx("GET", stream+"?x=1"), "HTTP_HOST", "h?x"),
			path: stream, query: "x=1", host: "h?x"},
		{name: "Host with a bad escape", params: with(ngx("GET", stream), "HTTP_HOST", "a%zz"),
			path: stream, host: "a%zz"},
		{name: "no Host, double slash", params: with(ngx("GET", "//comet/x?y"), "HTTP_HOST", ""),
			path: "//comet/x", query: "y"},
		{name: "query with #", params: ngx("GET", "/comet/x?a=1#f%zz"),
			path: "/comet/x", query: "a=1#f%zz", host: "localhost"},
	}
}

func TestPublicURL(t *testing.T) {
	for _, tc := range mappingCases() {
		t.Run(tc.name, func(t *testing.T) {
			u := publicURL(tc.params)
			if u.Path != tc.path || u.RawQuery != tc.query {
				t.Errorf("path %q query %q, want %q %q", u.Path, u.RawQuery, tc.path, tc.query)
			}
			if tc.rawPath != "" && u.EscapedPath() != tc.rawPath {
				t.Errorf("escaped path %q, want %q", u.EscapedPath(), tc.rawPath)
			}
		})
	}
}

func TestDecodePairs(t *testing.T) {
	long := strings.Repeat("v", 300)
	enc := fcgitest.EncodePairs(map[string]string{"A": "1", "LONG": long, "E": ""})
	m, n := decodePairs(enc)
	if n != len(enc) || m["A"] != "1" || m["LONG"] != long || len(m) != 3 {
		t.Fatalf("decoded %d of %d bytes: %v", n, len(enc), m)
	}
	// A truncated last pair is dropped, as net/http/fcgi does.
	m, n = decodePairs(append(enc, 3, 5, 'K'))
	if n != len(enc) || len(m) != 3 {
		t.Fatalf("truncated: decoded %d of %d bytes: %v", n, len(enc), m)
	}
	// Later pairs override earlier ones.
	m, _ = decodePairs(append(appendPair(nil, "K", "old"), appendPair(nil, "K", "new")...))
	if m["K"] != "new" {
		t.Fatalf("K = %q, want new", m["K"])
	}
}

// rewritten returns the params RequestFromMap sees after the Front's pairs.
func rewritten(p map[string]string) (map[string]string, *url.URL) {
	u := publicURL(p)
	q := maps.Clone(p)
	q["REQUEST_URI"] = cgiRequestURI(u)
	if h := q["HTTP_HOST"]; h == "" || !hostParses(h) {
		q["HTTP_HOST"] = placeholderHost
	}
	return q, u
}

// FuzzPublicURL checks that the public URL always has a rooted path that
// survives a round trip through its RequestURI, and that RequestFromMap
// never fails on the rewritten params.
func FuzzPublicURL(f *testing.F) {
	for _, tc := range mappingCases() {
		p := tc.params
		f.Add(p["REQUEST_URI"], p["SCRIPT_NAME"], p["PATH_INFO"], p["QUERY_STRING"], p["HTTP_HOST"])
	}
	f.Fuzz(func(t *testing.T, requestURI, scriptName, pathInfo, query, host string) {
		p := map[string]string{
			"REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1",
			"REQUEST_URI": requestURI, "SCRIPT_NAME": scriptName, "PATH_INFO": pathInfo,
			"QUERY_STRING": query, "HTTP_HOST": host,
		}
		q, u := rewritten(p)
		if !strings.HasPrefix(u.Path, "/") {
			t.Fatalf("path %q is not rooted", u.Path)
		}
		v, err := url.ParseRequestURI(u.RequestURI())
		if err != nil || v.Path != u.Path || v.RawQuery != u.RawQuery {
			t.Fatalf("RequestURI %q does not round-trip (%v): %q %q", u.RequestURI(), err, v.Path, v.RawQuery)
		}
		if _, err := cgi.RequestFromMap(q); err != nil {
			t.Fatalf("RequestFromMap(%q): %v", q, err)
		}
	})
}
