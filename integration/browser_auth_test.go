//go:build unix

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/internal/tokentest"
)

// TestBrowserPHPApp: the PHP app of examples/php (Debian's php-fpm) behind
// the nginx of conf/nginx/static.conf, with a location for PHP added, logs
// a user in with its own PHP session; its page uses stardust.js with the
// token option. Chromium, logged in as 42, receives on its own inbox by
// long polling, SSE and Bayeux over a WebSocket, and is refused user 43's:
//
//   - tokens: the app signs HS256 tokens with hash_hmac, the {user} rules decide;
//   - callbacks: Stardust has no token key and asks the app's connect.php
//     and subscribe.php, which answer from the PHP session whose cookie
//     Stardust forwards.
func TestBrowserPHPApp(t *testing.T) {
	t.Parallel()
	chromium := requireProgram(t, "chromium", "chromium")
	browser := startChromium(t, chromium)
	// (Subtest names end up in temporary paths, which php-fpm's
	// configuration cannot hold if they have "=".)
	t.Run("static", func(t *testing.T) { checkPHPApp(t, browser, 1) })
	t.Run("cluster", func(t *testing.T) { checkPHPApp(t, browser, 3) })
}

// checkPHPApp runs the page with tokens and with callbacks, on one node
// (static.conf) or three sharing a redis-server (cluster.conf).
func checkPHPApp(t *testing.T, browser context.Context, nodes int) {
	t.Run("tokens", func(t *testing.T) {
		web, back := startPHPApp(t, nodes, func(string) string {
			// As the README's example: the app publishes as "publisher" (s3cret).
			return fmt.Sprintf(`[auth]
token_hmac_secret = %q

[comet]
auth_user = "publisher"
auth_pass = "$2a$10$hf/N6p.nxU90/iMJEom2Veeary5antGBCijP4a9/SRzrUH2k9f8Wa"

[[bayeux.acl]]
channel = "/stardust/inbox_{user}"
subscribe = ["user:{user}"]
publish = ["user:publisher"]
`, tokentest.Secret)
		})
		checkPHPPage(t, browser, web, back, "Authorization", "Bearer "+tokentest.User("42", time.Minute))
	})
	t.Run("callbacks", func(t *testing.T) {
		web, back := startPHPApp(t, nodes, func(web string) string {
			return fmt.Sprintf("[comet]\nauth_user = \"publisher\"\nauth_pass = \"$2a$10$hf/N6p.nxU90/iMJEom2Veeary5antGBCijP4a9/SRzrUH2k9f8Wa\"\n\n[auth]\nconnect_url = \"http://%[1]s/connect.php\"\nsubscribe_url = \"http://%[1]s/subscribe.php\"\n", web)
		})
		// The Go side reads the channel info as 42 too: with its PHP session.
		jar, _ := cookiejar.New(nil)
		hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := hc.Get("http://" + web + "/login.php?user=42")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var session string
		for _, c := range resp.Cookies() {
			if c.Name == "PHPSESSID" {
				session = c.Name + "=" + c.Value
			}
		}
		if session == "" {
			t.Fatalf("login.php set no PHP session cookie: %v", resp.Header)
		}
		checkPHPPage(t, browser, web, back, "Cookie", session)
	})
}

// startPHPApp starts php-fpm with examples/php, nginx with a PHP location
// added to static.conf (one stardust) or cluster.conf (three, on a
// redis-server), and stardust with the configuration config returns for the
// web server's address; it returns the web server's address and the first
// stardust's.
func startPHPApp(t *testing.T, nodes int, config func(web string) string) (web, back string) {
	t.Helper()
	nginx := requireProgram(t, "nginx", "nginx")
	phpFPM := phpFPMProgram(t)
	bin := stardustBinary(t)
	dir := sharedTempDir(t)
	siteRoot := filepath.Join(dir, "site")
	if err := copyTree(filepath.Join(repoRoot(t), "examples", "php"), siteRoot); err != nil {
		t.Fatal(err)
	}
	webAddr, phpAddr := freeAddr(t), freeAddr(t)
	backs := []string{freeAddr(t)}
	conf, placeholders := "static.conf", []string{"127.0.0.1:5742", backs[0]}
	if nodes == 3 {
		backs = append(backs, freeAddr(t), freeAddr(t))
		conf, placeholders = "cluster.conf", []string{"127.0.0.1:5742", backs[0], "127.0.0.1:5752", backs[1], "127.0.0.1:5762", backs[2]}
	}

	// php-fpm, as Debian's php8.2-fpm pool, on a loopback port.
	sessions := filepath.Join(dir, "sessions")
	if err := os.MkdirAll(sessions, 0o777); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(sessions, 0o777)
	pool := fmt.Sprintf("[global]\npid = %[1]s/php-fpm.pid\nerror_log = %[1]s/php-fpm.log\ndaemonize = no\n\n[www]\nlisten = %[2]s\npm = static\npm.max_children = 4\nclear_env = yes\nenv[STARDUST_SECRET] = %[3]s\nphp_admin_value[session.save_path] = %[4]s\ncatch_workers_output = yes\n",
		dir, phpAddr, tokentest.Secret, sessions)
	if user, group := workerUser(t); user != "" {
		pool += fmt.Sprintf("user = %s\ngroup = %s\n", user, group)
	}
	writeFile(t, filepath.Join(dir, "php-fpm.conf"), pool)
	php := startProcess(t, "php-fpm", dir, phpFPM, "-n", "-y", filepath.Join(dir, "php-fpm.conf"), "-F")
	php.waitListening(t, phpAddr)

	// nginx: the site file as shipped, with PHP passed to php-fpm.
	site := readFile(t, filepath.Join(repoRoot(t), "conf", "nginx", conf))
	site = rewritePlaceholders(t, "conf/nginx/"+conf, site, append(placeholders,
		webServerListenPlaceholder("nginx"), webServerListen("nginx", webAddr),
		placeholderSiteRoot, siteRoot,
		"    location /comet {", "    location ~ \\.php$ {\n        include fastcgi_params;\n        fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n        fastcgi_pass "+phpAddr+";\n    }\n\n    location /comet {")...)
	nginxProc := startWebServer(t, "nginx", nginx, dir, site, webAddr)
	nginxProc.waitListening(t, webAddr)

	text := config(webAddr)
	if nodes > 1 {
		text += fmt.Sprintf("\n[engine]\ntype = \"redis\"\nredis_url = %q\n", redistest.Start(t).URL)
	}
	cfg := filepath.Join(dir, "stardust.toml")
	writeFile(t, cfg, text)
	for i, addr := range backs {
		p := startProcess(t, fmt.Sprintf("stardust%d", i+1), dir, bin, "--config", cfg, "--listen", addr, "--log-level", "warn")
		p.waitListening(t, addr)
	}
	return webAddr, backs[0]
}

// checkPHPPage logs Chromium in as 42 and checks what its page receives;
// the Go side reads the channel info with the header name: value of 42.
func checkPHPPage(t *testing.T, browser context.Context, webAddr, backAddr, name, value string) {
	t.Helper()
	publish := func(channel, message string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+backAddr+"/comet/channel/"+channel, strings.NewReader(url.Values{"m": {message}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("publisher", "s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("publish to %s: %v %v", channel, resp, err)
		}
		resp.Body.Close()
	}
	tab := openPage(t, browser, "http://"+webAddr+"/login.php?user=42", "app")
	if got := awaitJS(t, tab, `(async () => (await fetch("/token.php")).status + "")()`); got != "200" {
		t.Fatalf("token.php after the login: %s", got)
	}
	if got := awaitJS(t, tab, `listen("42")`); got != "subscribed" {
		t.Fatalf("listen as 42: %s", got)
	}
	waitAudience(t, backAddr, "inbox_42", name, value, "stardust", "sse", "bayeux")
	publish("inbox_42", `{"text":"for 42"}`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		vias := evalJS[string](t, tab, `window.got.map((g) => g.via).sort().join(",")`)
		if vias == "bayeux,events,loop" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page received by %q, want bayeux, events and loop", vias)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := awaitJS(t, tab, `listen("43")`); !strings.HasPrefix(got, "refused: 403:") {
		t.Errorf("listen as 42 to 43's inbox: %s", got)
	}
	if got := awaitJS(t, tab, `(async () => (await fetch("/comet/channel/inbox_43")).status + "")()`); got != "403" {
		t.Errorf("43's inbox read by 42 through nginx: %s", got)
	}
	publish("inbox_43", `{"text":"for 43"}`)
	time.Sleep(500 * time.Millisecond)
	if got := evalJS[string](t, tab, `JSON.stringify(window.got.filter((g) => JSON.stringify(g.m).includes("for 43")))`); got != "[]" {
		t.Errorf("42's page received 43's message: %s", got)
	}
}

// awaitJS evaluates a JavaScript expression whose value is a Promise of a
// string in the page, within browserWait.
func awaitJS(t *testing.T, tab *demoTab, expr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %.200s: %v", expr, err)
	}
	return v
}

// waitAudience waits until channel has a subscriber of each kind, reading
// the channel info with the header name: value (the rules close it to
// anyone but its user).
func waitAudience(t *testing.T, addr, channel, name, value string, kinds ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/comet/channel/"+channel, nil)
		req.Header.Set(name, value)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			last = resp.Status + " " + string(body)
			all := true
			for _, k := range kinds {
				if !strings.Contains(last, `"`+k+`":`) {
					all = false
				}
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("channel %s: want subscribers of kinds %v, last info %s (%v)", channel, kinds, last, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// phpFPMProgram finds Debian's php-fpm, whose name carries the PHP version
// (php-fpm8.2 on bookworm, php-fpm8.4 on trixie); the Debian package
// php-fpm depends on the current one.
func phpFPMProgram(t *testing.T) string {
	t.Helper()
	if p, ok := lookProgram("php-fpm"); ok {
		return p
	}
	if found, _ := filepath.Glob("/usr/sbin/php-fpm[0-9]*"); len(found) > 0 {
		slices.Sort(found)
		return found[len(found)-1]
	}
	return requireProgram(t, "php-fpm", "php-fpm")
}
