//go:build unix

package integration

// Issue 17, point 1: a request smuggled through the web server in front,
// inside the body of a held poll.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNoSmugglingThroughAFront runs conf/nginx/reverse-proxy.conf, whose
// upstream keeps its connections to Stardust, in front of Stardust with
// comet.allow_from limited to nginx's own address: an outside client may
// not publish. That client sends a long poll carrying a body, which nginx
// passes on, and the body is a whole publish request. Served as the
// connection's next request (as a held poll that took its connection over
// once did), it would come from nginx's address, without the client's
// X-Forwarded-For, and be allowed. It must not reach the channel's
// subscriber nor its history, and the requests that nginx sends next on its
// kept connections must get their own answers. The same through
// conf/apache2/reverse-proxy.conf, whose mod_proxy keeps its connections
// too.
func TestNoSmugglingThroughAFront(t *testing.T) {
	t.Parallel()
	checkClientIP(t)
	bin := stardustBinary(t)
	for _, server := range []string{"nginx", "apache2"} {
		t.Run(server, func(t *testing.T) {
			program := requireProgram(t, server, server)
			checkNoSmuggling(t, webServerSetup{server, "reverse-proxy"}, program, bin)
		})
	}
}

func checkNoSmuggling(t *testing.T, s webServerSetup, program, bin string) {
	dir := sharedTempDir(t)
	siteRoot := filepath.Join(dir, "site")
	writeFile(t, filepath.Join(siteRoot, "index.html"), "<!doctype html><title>Stardust</title>\n")
	webAddr, backAddr := freeAddr(t), freeAddr(t)
	expectPortsFreed(t, webAddr, backAddr)
	site := rewritePlaceholders(t, s.file(), readFile(t, filepath.Join(repoRoot(t), s.file())),
		webServerListenPlaceholder(s.server), webServerListen(s.server, webAddr),
		placeholderHTTP, backAddr, placeholderSiteRoot, siteRoot)
	web := startWebServer(t, s.server, program, dir, site, webAddr)
	web.waitListening(t, webAddr)
	config := filepath.Join(dir, "stardust.toml")
	writeFile(t, config, "[comet]\nallow_from = [\"127.0.0.1\"]\n") // the front's address, not clientIP's
	const hold = 2 * time.Second
	args := append(stardustCommand(t, s, site, dir, bin, backAddr, hold), "--config", config)
	stardust := startProcess(t, "stardust", dir, args...)
	stardust.waitListening(t, backAddr)
	c := newCometClient(t, "http://"+webAddr)
	c.waitReady(t)

	const channel, marker = "victim", "smuggled"
	if resp, body, err := c.request("POST", "/comet/channel/"+channel, url.Values{"m": {`{"n":1}`}}, 10*time.Second); err != nil ||
		resp.StatusCode != http.StatusForbidden {
		t.Fatalf("the outside client's own publish: %v %v %s (want 403: allow_from)", err, resp, body)
	}
	// A subscriber polls the channel for the whole test.
	received := make(chan string, 1)
	stop := make(chan struct{})
	go func() {
		var all strings.Builder
		for {
			select {
			case <-stop:
				received <- all.String()
				return
			default:
			}
			_, body, _ := c.request("GET", "/comet/channel/"+channel+"/stream/7.1", nil, hold+10*time.Second)
			all.Write(body)
		}
	}()
	c.waitSubscriber(t, channel, "7.1")

	form := "m=" + url.QueryEscape(`{"type":"`+marker+`"}`)
	smuggled := "POST /comet/channel/" + channel + " HTTP/1.1\r\nHost: " + webAddr +
		"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: " + fmt.Sprint(len(form)) + "\r\n\r\n" + form
	attack := "GET /comet/channel/attacker/stream/66.6 HTTP/1.1\r\nHost: " + webAddr +
		"\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", webAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(hold + 20*time.Second))
	if _, err := io.WriteString(conn, attack); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the attacker's poll: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	t.Logf("the attacker's poll: %s %s", resp.Status, body)

	// A smuggled request would be served the moment the poll answered: give
	// it time, then look.
	time.Sleep(time.Second)
	for i := range 20 { // on nginx's kept connections, each its own answer
		resp, body, err := c.request("GET", "/comet/", nil, 10*time.Second)
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "Stardust COMET Server") {
			t.Fatalf("request %d after the attack: %v %v %s", i, err, resp, body)
		}
	}
	if _, body, err := c.request("GET", "/comet/channel/"+channel, nil, 10*time.Second); err != nil || strings.Contains(string(body), marker) {
		t.Errorf("the smuggled publish is in the channel's history: %v %s", err, body)
	}
	close(stop)
	select {
	case got := <-received:
		if strings.Contains(got, marker) {
			t.Errorf("the subscriber received the smuggled publish: %q", got)
		}
	case <-time.After(hold + 15*time.Second):
		t.Fatal("the subscriber's poll did not end")
	}
}
