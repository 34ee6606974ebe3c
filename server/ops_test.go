package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Issue 17, point 8: {base}/metrics and {base}/stats answer only the
// addresses of MetricsAllowFrom (loopback by default), read as everywhere
// else: X-Forwarded-For from a trusted proxy. The health check stays open to
// load balancers.
func TestMetricsAllowFrom(t *testing.T) {
	proxy := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	metricsOn := &MetricsOptions{Path: "/metrics", HealthPath: "/health"}
	do := func(t *testing.T, url, xff string) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("GET", url, nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, body
	}
	t.Run("default", func(t *testing.T) {
		_, ts := testServer(t, Options{Metrics: metricsOn, TrustedProxies: proxy, PollTimeout: time.Second})
		for _, path := range []string{"/comet/metrics", "/comet/stats"} {
			if code, body := do(t, ts.URL+path, ""); code != http.StatusOK {
				t.Errorf("%s from this machine: %d %s", path, code, body)
			}
			code, body := do(t, ts.URL+path, "198.51.100.7")
			var e errorBody
			if code != http.StatusForbidden || json.Unmarshal(body, &e) != nil || !strings.Contains(e.Error, "metrics.allow_from") {
				t.Errorf("%s from an outside client through the proxy: %d %s, want 403 JSON naming metrics.allow_from", path, code, body)
			}
			// The outside client's own X-Forwarded-For is not believed.
			if code, body := do(t, ts.URL+path, "127.0.0.1, 198.51.100.7"); code != http.StatusForbidden {
				t.Errorf("%s with a forged loopback hop: %d %s, want 403", path, code, body)
			}
		}
		if code, body := do(t, ts.URL+"/comet/health", "198.51.100.7"); code != http.StatusOK {
			t.Errorf("health from outside: %d %s, want 200 (load balancers)", code, body)
		}
	})
	t.Run("monitoring-host", func(t *testing.T) {
		_, ts := testServer(t, Options{Metrics: metricsOn, TrustedProxies: proxy, PollTimeout: time.Second,
			MetricsAllowFrom: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}})
		for _, path := range []string{"/comet/metrics", "/comet/stats"} {
			if code, body := do(t, ts.URL+path, "198.51.100.7"); code != http.StatusOK {
				t.Errorf("%s from the monitoring host: %d %s", path, code, body)
			}
			if code, _ := do(t, ts.URL+path, ""); code != http.StatusForbidden {
				t.Errorf("%s from loopback, not listed: %d, want 403", path, code)
			}
		}
	})
}
