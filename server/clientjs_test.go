package server

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
)

// TestClientJS: {base}/js/stardust.js is the embedded client, as JavaScript
// that the browser may not sniff as anything else, with an ETag that a
// revalidation answers with 304, cached for a year only under the URL of its
// own version.
func TestClientJS(t *testing.T) {
	s, ts := testServer(t, Options{Base: "/comet"})
	if got, want := s.ClientJSURL(), "/comet/js/stardust.js?v="+ClientJSVersion; got != want {
		t.Errorf("ClientJSURL() = %q, want %q", got, want)
	}
	for _, tc := range []struct{ query, cache string }{
		{"", "private, no-cache"},
		{"?v=" + ClientJSVersion, "public, max-age=31536000, immutable"},
		{"?v=0123456789abcdef", "private, no-cache"}, // another version: never cached as if it were that one
	} {
		resp, body := get(t, ts.URL+"/comet/js/stardust.js"+tc.query)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, stardustJS) {
			t.Fatalf("GET stardust.js%s: %s, %d bytes, want 200 and the embedded file", tc.query, resp.Status, len(body))
		}
		h := resp.Header
		if h.Get("Content-Type") != "text/javascript; charset=utf-8" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("stardust.js%s: Content-Type %q, X-Content-Type-Options %q", tc.query, h.Get("Content-Type"), h.Get("X-Content-Type-Options"))
		}
		if h.Get("Cache-Control") != tc.cache {
			t.Errorf("stardust.js%s: Cache-Control %q, want %q", tc.query, h.Get("Cache-Control"), tc.cache)
		}
		if h.Get("ETag") != `"`+ClientJSVersion+`"` {
			t.Errorf("stardust.js%s: ETag %q, want %q", tc.query, h.Get("ETag"), ClientJSVersion)
		}
		// The page gets its browser cookie with the script, before its
		// clients start; never from the answer proxies may cache.
		if cookie := h.Get("Set-Cookie"); strings.HasPrefix(cookie, BrowserCookie+"=") != strings.HasPrefix(tc.cache, "private") {
			t.Errorf("stardust.js%s: Set-Cookie %q with Cache-Control %q", tc.query, cookie, tc.cache)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/comet/js/stardust.js", nil)
	req.Header.Set("If-None-Match", `"`+ClientJSVersion+`"`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation with the ETag: %s, want 304", resp.Status)
	}
	if !bytes.Contains(stardustJS, []byte(`version: "`)) || len(ClientJSVersion) != 16 {
		t.Errorf("the client carries no version, or ClientJSVersion %q is not 16 hex digits", ClientJSVersion)
	}
	if resp, _ := postForm(t, ts.URL+"/comet/js/stardust.js", `{}`); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST stardust.js: %s, want 405", resp.Status)
	}
}
