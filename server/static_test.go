package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStaticFiles(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "index.html"), []byte("<h1>home</h1>"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "css"), 0o755))
	must(os.WriteFile(filepath.Join(root, "css", "site.css"), []byte("body{}"), 0o644))
	must(os.MkdirAll(filepath.Join(root, "empty"), 0o755))
	must(os.WriteFile(filepath.Join(root, ".secret"), []byte("no"), 0o644))
	outside := filepath.Join(filepath.Dir(root), "outside.txt")
	must(os.WriteFile(outside, []byte("escaped"), 0o644))
	t.Cleanup(func() { os.Remove(outside) })

	_, ts := testServer(t, Options{DocumentRoot: root, TypeExpires: map[string]time.Duration{"text/css": time.Hour}})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		path, want string
		status     int
	}{
		{"/", "<h1>home</h1>", 200},
		{"/index.html", "<h1>home</h1>", 200},
		{"/css/site.css", "body{}", 200},
		{"/css", "", 301},
		{"/empty/", "", 404},
		{"/.secret", "", 404},
		{"/../outside.txt", "", 404},
		{"/%2e%2e/outside.txt", "", 404},
		{"/css/..%2f..%2foutside.txt", "", 404},
		{"/nothing", "", 404},
		{"/comet/", "Stardust COMET Server", 200},
		{"/comet/nothing", `"status":404`, 404},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			req, _ := http.NewRequest("GET", ts.URL+tt.path, nil)
			req.URL.Opaque = tt.path // send the path exactly as written
			c := http.DefaultClient  // follows mux's redirect to the cleaned path
			if tt.status == 301 {
				c = client
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := new(bytes.Buffer)
			_, _ = buf.ReadFrom(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, buf)
			}
			if strings.Contains(buf.String(), "escaped") {
				t.Fatal("served a file outside the document root")
			}
			if tt.want != "" && !strings.Contains(buf.String(), tt.want) {
				t.Errorf("body %q does not contain %q", buf, tt.want)
			}
		})
	}
	resp, err := http.Get(ts.URL + "/css/site.css")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Cache-Control") != "max-age=3600" || resp.Header.Get("Expires") == "" {
		t.Errorf("type_expires not applied: %v", resp.Header)
	}
	if resp, _ := http.Get(ts.URL + "/index.html"); resp.Header.Get("Expires") != "" {
		t.Errorf("Expires set on a type without a rule")
	}
}

func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		name, remote, xff, want string
	}{
		{"no header", "192.0.2.1:5000", "", "192.0.2.1"},
		{"untrusted peer's header ignored", "192.0.2.1:5000", "198.51.100.7", "192.0.2.1"},
		{"trusted proxy", "127.0.0.1:5000", "198.51.100.7", "198.51.100.7"},
		{"chain of trusted proxies", "127.0.0.1:5000", "198.51.100.7, 10.1.2.3", "198.51.100.7"},
		{"spoofed left entry ignored", "127.0.0.1:5000", "6.6.6.6, 198.51.100.7", "198.51.100.7"},
		{"garbage stops the walk", "127.0.0.1:5000", "198.51.100.7, junk", "127.0.0.1"},
		{"all trusted", "127.0.0.1:5000", "10.0.0.1", "10.0.0.1"},
		{"ipv6 peer", "[::1]:5000", "198.51.100.7", "::1"},
		{"fcgi style remote", "127.0.0.1", "198.51.100.7", "198.51.100.7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			if tt.xff != "" {
				r.Header.Set("X-Forwarded-For", tt.xff)
			}
			if got := ClientIP(r, trusted); got != tt.want {
				t.Errorf("ClientIP = %q, want %q", got, tt.want)
			}
		})
	}
}
