//go:build unix

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The deployment files of SPEC section 7 run here for real: each under the
// real nginx or apache2, in front of the real stardust, checked through the
// web server the way a browser and a Bayeux client use it.

// webServerSetup is one of the six set-ups of the Stardust documentation's
// CONFIGURATION section: conf/<server>/<name>.conf.
type webServerSetup struct {
	server string // "nginx" or "apache2": the program and the conf/ folder
	name   string // "static", "fastcgi" or "reverse-proxy"
}

func webServerSetups() []webServerSetup {
	var setups []webServerSetup
	for _, server := range []string{"nginx", "apache2"} {
		for _, name := range []string{"static", "fastcgi", "reverse-proxy"} {
			setups = append(setups, webServerSetup{server, name})
		}
	}
	return setups
}

func (s webServerSetup) String() string { return s.server + "/" + s.name }

// file is the deployment file's path relative to the repository root.
func (s webServerSetup) file() string { return filepath.Join("conf", s.server, s.name+".conf") }

// fcgi says whether Stardust sits behind the web server as a FastCGI server.
func (s webServerSetup) fcgi() bool { return s.name == "fastcgi" }

// id names the set-up in channel names, which are [\w]+.
func (s webServerSetup) id() string {
	return s.server + "_" + strings.ReplaceAll(s.name, "-", "_")
}

// debianPackage is the Debian package that installs the set-up's web server.
func (s webServerSetup) debianPackage() string { return s.server }

// Placeholders of SPEC section 7 in the deployment files, and in
// conf/stardust-fcgi.toml.
const (
	placeholderSiteRoot = "/var/www/stardust"
	placeholderHTTP     = "127.0.0.1:5742"
	placeholderFCGI     = "127.0.0.1:5743"
)

// backendPlaceholder is the address Stardust listens on in the set-up.
func (s webServerSetup) backendPlaceholder() string {
	if s.fcgi() {
		return placeholderFCGI
	}
	return placeholderHTTP
}

// clientIP is the address the tests' HTTP client connects from. It differs from
// the 127.0.0.1 the web server connects to Stardust from, so that Stardust's
// log shows whether X-Forwarded-For (or REMOTE_ADDR) carried the client through.
const clientIP = "127.0.0.2"

// idleHold is Stardust's long-poll hold in these tests. Above the 60s that
// nginx and apache2 wait for a silent back end by default, so an idle poll
// that comes back as [] proves the file's own timeout works. -short trades
// that proof for speed.
func idleHold() time.Duration {
	if testing.Short() {
		return 2 * time.Second
	}
	return 65 * time.Second
}

// TestWebServers runs the six set-ups at once. They mostly wait (the idle poll
// takes the whole hold), so they run in goroutines rather than with t.Parallel,
// whose -parallel limit defaults to the number of CPUs and would queue them;
// the whole test waits beside the other parallel ones.
func TestWebServers(t *testing.T) {
	t.Parallel()
	if !haveProgram("nginx") && !haveProgram("apache2") {
		missingDependency(t, "neither nginx nor apache2 found: install the Debian packages nginx and apache2")
	}
	checkClientIP(t)
	bin := stardustBinary(t)
	var wg sync.WaitGroup
	for _, s := range webServerSetups() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(s.String(), func(t *testing.T) {
				server := requireProgram(t, s.server, s.debianPackage())
				runWebServerSetup(t, s, server, bin)
			})
		}()
	}
	wg.Wait()
}

// checkClientIP fails early with a clear reason when the test client cannot
// connect from clientIP.
func checkClientIP(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(clientIP, "0"))
	if err != nil {
		t.Fatalf("cannot bind %s, which the tests connect from to tell the client from the web server: %v", clientIP, err)
	}
	l.Close()
}

func runWebServerSetup(t *testing.T, s webServerSetup, server, bin string) {
	dir := sharedTempDir(t)
	siteRoot := filepath.Join(dir, "site")
	marker := "static page of " + s.String()
	writeFile(t, filepath.Join(siteRoot, "index.html"), "<!doctype html><title>Stardust</title><p>"+marker+"</p>\n")

	webAddr, backAddr := freeAddr(t), freeAddr(t)
	expectPortsFreed(t, webAddr, backAddr)

	site := readFile(t, filepath.Join(repoRoot(t), s.file()))
	site = rewritePlaceholders(t, s.file(), site,
		webServerListenPlaceholder(s.server), webServerListen(s.server, webAddr),
		s.backendPlaceholder(), backAddr,
		placeholderSiteRoot, siteRoot)

	// The web server starts first so that it stops last: Stardust, stopped
	// first, answers every request it holds, which lets the web server's
	// workers finish at once instead of waiting on a silent back end.
	web := startWebServer(t, s.server, server, dir, site, webAddr)
	web.waitListening(t, webAddr)
	hold := idleHold()
	args := withTOML(t, dir, "metrics.toml", stardustCommand(t, s, site, dir, bin, backAddr, hold), metricsAllowFromTOML)
	stardust := startProcess(t, "stardust", dir, args...)
	stardust.waitListening(t, backAddr)

	c := newCometClient(t, "http://"+webAddr)
	c.waitReady(t)
	idle := c.startIdlePoll(s.id(), hold)
	var idleWS *idleWebSocket
	if !s.fcgi() {
		idleWS = startIdleWebSocket(webAddr, hold)
	}

	t.Run("static-page", func(t *testing.T) { c.checkStaticPage(t, marker) })
	t.Run("info", func(t *testing.T) { c.checkInfo(t) })
	t.Run("publish-to-waiting-poll", func(t *testing.T) { c.checkPublishToWaitingPoll(t, "pub_"+s.id()) })
	t.Run("sse-unbuffered", func(t *testing.T) { c.checkSSEUnbuffered(t, "sse_"+s.id()) })
	t.Run("x-forwarded-for", func(t *testing.T) { checkClientSeen(t, c, stardust, "pub_"+s.id()) })
	t.Run("metrics-refused", func(t *testing.T) { checkMetricsRefused(t, c) })
	t.Run("bayeux", func(t *testing.T) { checkBayeux(t, s, c.base) })
	t.Run("bayeux-cookieless", func(t *testing.T) { checkCookielessBayeux(t, requireProgram(t, "curl", "curl"), c.base+"/comet") })
	t.Run("idle-long-poll", func(t *testing.T) { idle.check(t, hold) })
	if idleWS != nil {
		t.Run("idle-websocket", func(t *testing.T) { idleWS.check(t, hold) })
	}
	if s.fcgi() {
		t.Run("stardust-js-no-websocket", func(t *testing.T) { checkNoWebSocketTried(t, siteRoot, "http://"+webAddr) })
	}
}

// checkNoWebSocketTried: behind FastCGI, which cannot carry a WebSocket,
// stardust.js's Bayeux client learns from the handshake that the server
// offers none and never opens one (a page would log it as failed), and
// long-polls.
func checkNoWebSocketTried(t *testing.T, siteRoot, web string) {
	chromium := requireProgram(t, "chromium", "chromium")
	writeFile(t, filepath.Join(siteRoot, "sockets.html"), `<!doctype html>
<title>sockets</title>
<p id="ready">ready</p>
<script>
  var sockets = 0, Native = window.WebSocket;
  window.WebSocket = function (url, protocols) { sockets++; return new Native(url, protocols); };
</script>
<script src="/comet/js/stardust.js"></script>
<script>
  var chat = Stardust.bayeux("/comet/bayeux");
  chat.subscribe("/chat/fcgi", function () {});
</script>
`)
	tab := openPage(t, startChromium(t, chromium), web+"/sockets.html", "ready")
	waitUntil(t, "the Bayeux client connected", func() (bool, string) {
		got := evalJS[string](t, tab, `sockets + " " + chat.transport + " " + chat.state`)
		return got == "0 long-polling connected", got
	})
}

// stardustCommand is the Stardust command line from the deployment file's
// header, so that the documented flags are the ones tested. A config file under
// /etc/stardust/ is taken from conf/ with its placeholder rewritten. The hold
// is added last, as a flag overrides the file.
func stardustCommand(t *testing.T, s webServerSetup, site, dir, bin, backAddr string, hold time.Duration) []string {
	t.Helper()
	cmds := headerCommands(site, "stardust")
	// The check of the web server's capacity is not how Stardust starts.
	cmds = slices.DeleteFunc(cmds, func(c []string) bool { return slices.Contains(c, "--check-proxy") })
	if len(cmds) != 1 {
		t.Fatalf("%s: want one \"#   stardust ...\" command in the header, found %d", s.file(), len(cmds))
	}
	args := slices.Clone(cmds[0][1:])
	for i, a := range args {
		if !strings.HasPrefix(a, "/etc/stardust/") {
			continue
		}
		name := filepath.Base(a)
		text := readFile(t, filepath.Join(repoRoot(t), "conf", name))
		text = rewritePlaceholders(t, filepath.Join("conf", name), text, s.backendPlaceholder(), backAddr)
		args[i] = filepath.Join(dir, name)
		writeFile(t, args[i], text)
	}
	return append(append([]string{bin}, args...), "--timeout", hold.String())
}

// webServerListenPlaceholder is how the deployment files say "port 80".
func webServerListenPlaceholder(server string) string {
	if server == "nginx" {
		return "listen 80;"
	}
	return "<VirtualHost *:80>"
}

func webServerListen(server, addr string) string {
	if server == "nginx" {
		return "listen " + addr + ";"
	}
	_, port, _ := net.SplitHostPort(addr)
	return "<VirtualHost *:" + port + ">"
}

// startWebServer writes a minimal main configuration around the site file, as
// a Debian install has one around sites-enabled/, and starts the web server in
// the foreground.
func startWebServer(t *testing.T, server, program, dir, site, addr string) *process {
	t.Helper()
	confDir := filepath.Join(dir, server)
	writeFile(t, filepath.Join(confDir, "site.conf"), site)
	var p *process
	switch server {
	case "nginx":
		if err := os.MkdirAll(filepath.Join(confDir, "tmp"), 0o755); err != nil {
			t.Fatal(err)
		}
		// Site files include fastcgi_params relative to the main
		// configuration, as /etc/nginx/fastcgi_params on Debian.
		writeFile(t, filepath.Join(confDir, "fastcgi_params"), readFile(t, "/etc/nginx/fastcgi_params"))
		main := filepath.Join(confDir, "nginx.conf")
		user, group := workerUser(t)
		writeFile(t, main, nginxMainConfig(confDir, user, group))
		p = startProcess(t, "nginx", dir, program, "-p", confDir, "-c", main, "-g", "daemon off;")
	case "apache2":
		modules := apacheModules(t, site)
		main := filepath.Join(confDir, "apache2.conf")
		user, group := workerUser(t)
		writeFile(t, main, apacheMainConfig(confDir, addr, user, group, modules))
		p = startProcess(t, "apache2", dir, program, "-f", main, "-DFOREGROUND")
	default:
		t.Fatalf("unknown web server %q", server)
	}
	// Registered after startProcess, so it runs before the process is stopped.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s error log:\n%s", server, tailFile(filepath.Join(confDir, "error.log"), 8192))
		}
	})
	return p
}

// nginxMainConfig is nginx.conf for one test: Debian's stock http settings
// that matter here (gzip is on), plus compression of JSON and event streams
// as an operator may add, so that the site file has to turn it off for
// /comet. Temporary files stay in the test's directory.
func nginxMainConfig(dir, user, group string) string {
	var b strings.Builder
	if user != "" {
		fmt.Fprintf(&b, "user %s %s;\n", user, group)
	}
	fmt.Fprintf(&b, `worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events {
    worker_connections 512;
}
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    gzip on;
    gzip_proxied any;
    gzip_types text/plain application/json text/event-stream;
    include %[1]s/site.conf;
}
`, dir)
	return b.String()
}

// debianApacheModules are the modules a fresh Debian apache2 install enables.
func debianApacheModules() []string {
	return []string{"access_compat", "alias", "auth_basic", "authn_core", "authn_file",
		"authz_core", "authz_host", "authz_user", "autoindex", "deflate", "dir", "env",
		"filter", "mime", "mpm_event", "negotiation", "reqtimeout", "setenvif", "status"}
}

// apacheModules is what apache2 loads for a site: Debian's default modules
// plus those the site's header tells the reader to a2enmod, with their
// dependencies as a2enmod resolves them, in the alphabetical order of Debian's
// "IncludeOptional mods-enabled/*.load".
func apacheModules(t *testing.T, site string) []string {
	t.Helper()
	cmds := headerCommands(site, "a2enmod")
	if len(cmds) != 1 {
		t.Fatalf("want one \"#   a2enmod ...\" command in the site's header, found %d", len(cmds))
	}
	want := append(debianApacheModules(), cmds[0][1:]...)
	seen := map[string]bool{}
	for len(want) > 0 && len(seen) < 200 {
		m := want[0]
		want = want[1:]
		if seen[m] {
			continue
		}
		seen[m] = true
		load := readFile(t, filepath.Join("/etc/apache2/mods-available", m+".load"))
		for _, line := range strings.Split(load, "\n") {
			if deps, ok := strings.CutPrefix(line, "# Depends:"); ok {
				want = append(want, strings.Fields(deps)...)
			}
		}
	}
	var mods []string
	for m := range seen {
		mods = append(mods, m)
	}
	sort.Strings(mods)
	return mods
}

// apacheMainConfig is apache2.conf for one test, shaped like Debian's: the
// root directory denied, modules from mods-available, and compression of
// JSON and event streams as an operator may add, so that the site file has
// to turn it off for /comet. No Timeout: the compiled-in 60s applies.
func apacheMainConfig(dir, addr, user, group string, modules []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `ServerRoot /etc/apache2
ServerName 127.0.0.1
DefaultRuntimeDir %[1]s
PidFile %[1]s/apache2.pid
ErrorLog %[1]s/error.log
LogLevel warn
Listen %[2]s
`, dir, addr)
	if user != "" {
		fmt.Fprintf(&b, "User %s\nGroup %s\n", user, group)
	}
	for _, m := range modules {
		fmt.Fprintf(&b, "Include mods-available/%s.load\n", m)
	}
	for _, m := range modules {
		fmt.Fprintf(&b, "IncludeOptional mods-available/%s.conf\n", m)
	}
	fmt.Fprintf(&b, `LogFormat "%%h %%l %%u %%t \"%%r\" %%>s %%O" common
CustomLog %[1]s/access.log common
<Directory />
    Options FollowSymLinks
    AllowOverride None
    Require all denied
</Directory>
AddOutputFilterByType DEFLATE application/json text/event-stream
Include %[1]s/site.conf
`, dir)
	return b.String()
}

// tailFile returns up to the last n bytes of a file, or why it cannot.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func (c *cometClient) checkStaticPage(t *testing.T, marker string) {
	resp, body, err := c.request("GET", "/", nil, 10*time.Second)
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), marker) {
		t.Fatalf("GET /: want 200 with the site's index.html, got %s:\n%s", resp.Status, body)
	}
}

func (c *cometClient) checkInfo(t *testing.T) {
	resp, body, err := c.request("GET", "/comet/", nil, 10*time.Second)
	if err != nil {
		t.Fatalf("GET /comet/: %v", err)
	}
	var info struct{ Name string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &info) != nil || info.Name != "Stardust COMET Server" {
		t.Fatalf("GET /comet/: want 200 with the info object, got %s:\n%s", resp.Status, body)
	}
	checkNotCompressed(t, resp)
}

// checkNotCompressed fails if the web server compressed a comet response: the
// client asked for gzip (Go's transport does by default), and compression
// holds SSE events back.
func checkNotCompressed(t *testing.T, resp *http.Response) {
	t.Helper()
	if resp.Uncompressed || resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("%s %s came back compressed; /comet must not be", resp.Request.Method, resp.Request.URL.Path)
	}
}

// checkPublishToWaitingPoll publishes while a long poll waits and expects the
// poll to return the message well before the hold ends.
func (c *cometClient) checkPublishToWaitingPoll(t *testing.T, channel string) {
	const id = "123.4"
	poll := c.startPoll(channel, id, idleHold()+30*time.Second)
	c.waitSubscriber(t, channel, id)
	c.publish(t, channel, `{"type":"x","n":1}`)
	var r pollResult
	select {
	case r = <-poll:
	case <-time.After(10 * time.Second):
		t.Fatalf("the waiting poll did not return within 10s of the publish")
	}
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("poll: %v %d %s", r.err, r.status, r.body)
	}
	var msgs []struct {
		Type string
		N    int
		TS   float64 `json:"_ts"`
		Ch   string  `json:"_ch"`
	}
	if err := json.Unmarshal(r.body, &msgs); err != nil || len(msgs) != 1 {
		t.Fatalf("poll: want one message, got %s (%v)", r.body, err)
	}
	if m := msgs[0]; m.Type != "x" || m.N != 1 || m.Ch != channel || m.TS <= 0 {
		t.Errorf("poll: want the published message with _ch and _ts, got %s", r.body)
	}
}

// idlePoll is a long poll on a channel nobody publishes to.
type idlePoll struct {
	channel string
	result  <-chan pollResult
}

func (c *cometClient) startIdlePoll(setupID string, hold time.Duration) *idlePoll {
	channel := "idle_" + setupID
	return &idlePoll{channel: channel, result: c.startPoll(channel, "55.5", hold+30*time.Second)}
}

// check expects the idle poll to end with an empty array from Stardust once
// the hold is over, not with an error from the web server before or after.
func (p *idlePoll) check(t *testing.T, hold time.Duration) {
	var r pollResult
	select {
	case r = <-p.result:
	case <-time.After(hold + 40*time.Second):
		t.Fatalf("idle poll of %s still open %v after the hold of %v", p.channel, 40*time.Second, hold)
	}
	if r.err != nil {
		t.Fatalf("idle poll of %s after %v: %v", p.channel, r.elapsed.Round(time.Millisecond), r.err)
	}
	if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("idle poll of %s after %v: want 200 [] at the hold of %v, got %d:\n%s",
			p.channel, r.elapsed.Round(time.Millisecond), hold, r.status, r.body)
	}
	if r.elapsed < hold-time.Second || r.elapsed > hold+20*time.Second {
		t.Errorf("idle poll of %s ended after %v, want about the hold of %v", p.channel, r.elapsed.Round(time.Millisecond), hold)
	}
}

// checkSSEUnbuffered reads an event stream and publishes one message at a time,
// each only after the previous one has arrived: a web server that buffers the
// stream holds the first event back and the test times out.
func (c *cometClient) checkSSEUnbuffered(t *testing.T, channel string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+"/comet/channel/"+channel+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.openStream(req, 10*time.Second)
	if err != nil {
		t.Fatalf("GET events: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("GET events: want 200 text/event-stream, got %s %q:\n%s", resp.Status, resp.Header.Get("Content-Type"), b)
	}
	checkNotCompressed(t, resp)
	lines := readLines(ctx, resp.Body)
	c.waitSubscriber(t, channel, "")
	for n := 1; n <= 3; n++ {
		c.publish(t, channel, fmt.Sprintf(`{"type":"sse","n":%d}`, n))
		want := fmt.Sprintf(`"n":%d`, n)
		if err := waitForLine(lines, 10*time.Second, func(l string) bool {
			return strings.HasPrefix(l, "data:") && strings.Contains(l, want)
		}); err != nil {
			t.Fatalf("event %d of %s: %v", n, channel, err)
		}
	}
}

// checkClientSeen makes a publish through the web server that Stardust
// rejects (400: the message is not JSON), looks for it in Stardust's log,
// which keeps rejected requests, and expects the client's address there, not
// the web server's: the proxy set-ups carry it in X-Forwarded-For, the
// FastCGI ones in REMOTE_ADDR.
func checkClientSeen(t *testing.T, c *cometClient, stardust *process, channel string) {
	resp, body, err := c.request("POST", "/comet/channel/"+channel, url.Values{"m": {"not json"}}, 10*time.Second)
	if err != nil {
		t.Fatalf("publish to %s: %v", channel, err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("publish of a message that is not JSON to %s: %s, want 400\n%s", channel, resp.Status, body)
	}
	path := "path=/comet/channel/" + channel + " "
	deadline := time.Now().Add(5 * time.Second)
	for {
		var lines []string
		for _, l := range strings.Split(stardust.out.String(), "\n") {
			if strings.Contains(l, "msg=request") && strings.Contains(l, path) && strings.Contains(l, "method=POST") &&
				strings.Contains(l, "problem=rejected") {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			for _, l := range lines {
				if !strings.Contains(l, "remote="+clientIP+" ") && !strings.HasSuffix(l, "remote="+clientIP) {
					t.Errorf("Stardust logged the publish without the client address %s:\n%s", clientIP, l)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line for the rejected POST /comet/channel/%s in Stardust's output", channel)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metricsAllowFromTOML is Stardust's metrics.allow_from in TestWebServers:
// the web server's own address only, so that the tests' client (clientIP,
// which is loopback too, as no other address can be bound here) stands for
// an outside client.
const metricsAllowFromTOML = "[metrics]\nallow_from = [\"127.0.0.1\", \"::1\"]\n"

// checkMetricsRefused asks for the operators' endpoints through the web
// server as an outside client, with a forged X-Forwarded-For naming the web
// server's address, and expects 403 JSON naming metrics.allow_from: Stardust
// reads the forwarded client address, not its peer (the web server) nor the
// client's own claim. A client on the listed address gets them.
func checkMetricsRefused(t *testing.T, c *cometClient) {
	get := func(client *http.Client, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", c.base+path, nil)
		req.Header.Set("X-Forwarded-For", "127.0.0.1")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	listed := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, path := range []string{"/comet/metrics", "/comet/stats"} {
		code, body := get(c.client, path)
		var e struct{ Error string }
		if code != http.StatusForbidden || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "metrics.allow_from") {
			t.Errorf("%s from %s (not in metrics.allow_from) through the web server: %d %.200s, want 403 JSON", path, clientIP, code, body)
		}
		if code, body := get(listed, path); code != http.StatusOK {
			t.Errorf("%s from 127.0.0.1 (in metrics.allow_from) through the web server: %d %.200s, want 200", path, code, body)
		}
	}
	if code, body := get(c.client, "/comet/health"); code != http.StatusOK {
		t.Errorf("/comet/health from %s: %d %.200s, want 200 (open to load balancers)", clientIP, code, body)
	}
}

// checkBayeux runs Faye's client end to end through the web server: over
// WebSocket where the set-up can carry one, long-polling behind FastCGI.
// CometD's client goes through the /comet/cometd alias the same way.
func checkBayeux(t *testing.T, s webServerSetup, base string) {
	transport := "websocket"
	if s.fcgi() {
		transport = "long-polling"
	}
	for _, run := range []struct{ client, path string }{{"faye", "/comet/bayeux"}, {"cometd", "/comet/cometd"}} {
		t.Run(run.client, func(t *testing.T) {
			lines, err := runScenario(t, "--client", run.client, "--url", base+run.path, "--transport", transport, "--scenario", "full")
			if err != nil {
				return
			}
			// Faye falls back to long-polling silently when an upgrade fails.
			if tr := scenarioSteps(lines, "transport"); len(tr) != 1 || tr[0]["used"] != transport {
				t.Errorf("transport step %v, want used=%s", tr, transport)
			}
		})
	}
}

// TestWebServerConfigsOnStockDebian drops each deployment file into a copy of
// the stock Debian /etc/nginx or /etc/apache2, following the header's own
// commands (cp, ln, a2enmod, a2ensite with /etc redirected to the copy), and
// asks the web server whether it accepts the result: nginx -t, and apache2 -t
// as apache2ctl configtest runs it.
func TestWebServerConfigsOnStockDebian(t *testing.T) {
	t.Parallel()
	for _, s := range webServerSetups() {
		t.Run(s.String(), func(t *testing.T) {
			t.Parallel()
			program := requireProgram(t, s.server, s.debianPackage())
			etc := filepath.Join("/etc", s.server)
			if _, err := os.Stat(etc); err != nil {
				missingDependency(t, fmt.Sprintf("%s: %v (install the Debian package %s)", etc, err, s.debianPackage()))
			}
			dir := t.TempDir()
			confDir := filepath.Join(dir, s.server)
			if err := copyTree(etc, confDir); err != nil {
				t.Fatal(err)
			}
			site := readFile(t, filepath.Join(repoRoot(t), s.file()))
			var env []string
			if s.server == "apache2" {
				env = apacheStockEnv(t, dir, confDir)
			}
			for _, cmd := range headerCommands(site, "cp", "ln", "a2enmod", "a2ensite") {
				runHeaderCommand(t, cmd, etc, confDir, env)
			}
			var check *exec.Cmd
			if s.server == "nginx" {
				redirectNginxStock(t, dir, confDir, freeAddr(t))
				check = exec.Command(program, "-t", "-p", confDir, "-c", filepath.Join(confDir, "nginx.conf"))
			} else {
				// apache2ctl itself wants root to chown its run directory.
				check = exec.Command("/bin/sh", "-c", `. "$APACHE_CONFDIR/envvars" && exec "$0" -d "$APACHE_CONFDIR" -t`, program)
				check.Env = env
			}
			out, err := check.CombinedOutput()
			if err != nil {
				t.Fatalf("%s rejects %s in a stock Debian layout: %v\n%s", s.server, s.file(), err, out)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, "[warn]") && strings.Contains(line, "stardust") {
					t.Errorf("%s: %s", s.file(), line)
				}
			}
		})
	}
}

// runHeaderCommand runs one command from a file's header in the repository
// root (where its "conf/..." paths point), with etc redirected to the copy.
func runHeaderCommand(t *testing.T, words []string, etc, confDir string, env []string) {
	t.Helper()
	args := make([]string, len(words))
	for i, w := range words {
		args[i] = strings.ReplaceAll(w, etc, confDir)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = repoRoot(t)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("header command %q: %v\n%s", strings.Join(words, " "), err, out)
	}
}

// redirectNginxStock points the copied nginx.conf at the copy and keeps pid,
// logs and temporary files out of /run, /var/log and /var/lib. nginx -t binds
// the listen addresses, so the sites' port 80 becomes addr, a free loopback
// address, the same one for every site so that they still meet as on port 80.
func redirectNginxStock(t *testing.T, dir, confDir, addr string) {
	t.Helper()
	path := filepath.Join(confDir, "nginx.conf")
	text := readFile(t, path)
	text = strings.ReplaceAll(text, "/etc/nginx/", confDir+"/")
	text = strings.ReplaceAll(text, "/run/nginx.pid", dir+"/nginx.pid")
	text = strings.ReplaceAll(text, "/var/log/nginx/", dir+"/")
	text = strings.Replace(text, "http {", fmt.Sprintf(`http {
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;`, dir), 1)
	writeFile(t, path, text)

	sites, err := filepath.Glob(filepath.Join(confDir, "sites-enabled", "*"))
	if err != nil || len(sites) == 0 {
		t.Fatalf("no sites enabled in the copy of /etc/nginx (%v)", err)
	}
	for _, site := range sites {
		text := readFile(t, site) // through the symbolic link
		text = strings.ReplaceAll(text, "listen 80", "listen "+addr)
		// An IPv6 wildcard would bind [::] for real; the IPv4 one stands in.
		text = strings.ReplaceAll(text, "listen [::]:80", "# listen [::]:80")
		if err := os.Remove(site); err != nil {
			t.Fatal(err)
		}
		writeFile(t, site, text)
	}
}

// apacheStockEnv is the environment under which Debian's a2enmod, a2ensite
// and apache2ctl work on the copy instead of /etc/apache2. Its envvars keep
// run, lock and log files in dir.
func apacheStockEnv(t *testing.T, dir, confDir string) []string {
	t.Helper()
	envvars := filepath.Join(confDir, "envvars")
	text := readFile(t, envvars) + fmt.Sprintf(`
export APACHE_PID_FILE=%[1]s/run/apache2.pid
export APACHE_RUN_DIR=%[1]s/run
export APACHE_LOCK_DIR=%[1]s/lock
export APACHE_LOG_DIR=%[1]s/log
`, dir)
	writeFile(t, envvars, text)
	for _, d := range []string{"run", "lock", "log", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return append(os.Environ(),
		"APACHE_CONFDIR="+confDir,
		"APACHE_STATE_DIRECTORY="+filepath.Join(dir, "state"),
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

// idleWebSocket is a Bayeux session over WebSocket whose /meta/connect the
// server holds for the whole hold: the tunnel carries nothing for longer than
// the web server's default 60s, as for any quiet page.
type idleWebSocket struct {
	result <-chan error
}

func startIdleWebSocket(webAddr string, hold time.Duration) *idleWebSocket {
	done := make(chan error, 1)
	go func() { done <- holdWebSocketConnect(webAddr, hold) }()
	return &idleWebSocket{result: done}
}

// check expects a /meta/connect reply that came after the hold.
func (w *idleWebSocket) check(t *testing.T, hold time.Duration) {
	select {
	case err := <-w.result:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3*hold + 60*time.Second):
		t.Fatal("idle WebSocket check did not finish") // its own deadlines should end it first
	}
}

// holdWebSocketConnect handshakes over WebSocket on /comet/bayeux, with the
// Origin a browser would send, then sends /meta/connect until one is held for
// about the hold (the first may be answered at once) and answered on the same,
// still open, tunnel.
func holdWebSocketConnect(webAddr string, hold time.Duration) error {
	d := websocket.Dialer{
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}}).DialContext,
		HandshakeTimeout: 10 * time.Second,
	}
	conn, resp, err := d.Dial("ws://"+webAddr+"/comet/bayeux", http.Header{"Origin": {"http://" + webAddr}})
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		return fmt.Errorf("WebSocket upgrade of /comet/bayeux through the web server: %v %s", err, status)
	}
	defer conn.Close()
	reply, err := bayeuxCall(conn, 10*time.Second, map[string]any{
		"channel": "/meta/handshake", "version": "1.0", "id": "1",
		"supportedConnectionTypes": []string{"websocket"},
	})
	if err != nil {
		return err
	}
	clientID, _ := reply["clientId"].(string)
	if reply["successful"] != true || clientID == "" {
		return fmt.Errorf("handshake over WebSocket: %v", reply)
	}
	for i := 2; i <= 4; i++ {
		start := time.Now()
		reply, err := bayeuxCall(conn, hold+20*time.Second, map[string]any{
			"channel": "/meta/connect", "clientId": clientID, "connectionType": "websocket", "id": fmt.Sprint(i),
		})
		if err != nil {
			return fmt.Errorf("connect %d after %v: %w", i-1, time.Since(start).Round(time.Millisecond), err)
		}
		if reply["successful"] != true {
			return fmt.Errorf("connect %d: %v", i-1, reply)
		}
		if time.Since(start) >= hold-time.Second {
			return nil
		}
	}
	return fmt.Errorf("no /meta/connect was held for the hold of %v", hold)
}
