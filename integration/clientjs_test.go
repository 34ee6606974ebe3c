//go:build unix

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestStardustJSPages loads the README's pages, as they are, in Chromium,
// each from a site that Stardust serves itself (--document-root).
//
// The Perl Stardust page, with an old jQuery and $.ev.loop, works with
// stardust.js in place of jquery.ev.js: messages posted with the synopsis's
// curl command reach its handlers by type, "*" takes the others, a function
// in place of the handlers replaces the dispatcher and gets the whole array,
// and $.ev.stop() stops the loop. jQuery 1.3 itself is not on npm (the
// jquery package starts at 1.5.1), so the page runs with the two jQuery
// builds closest to it that npm has, 1.2.6 and 1.4.4pre, both shipped in the
// sizzle@1.0.0 package that integration/clients pins in its lock file.
//
// The example page shows what each of its clients received.
func TestStardustJSPages(t *testing.T) {
	chromium := requireProgram(t, "chromium", "chromium")
	curl := requireProgram(t, "curl", "curl")
	requireNode(t) // node_modules holds the jQuery builds
	perlPage := readmeBlock(t, "html", "$.ev.loop('/comet/channel/foo/'")
	examplePage := readmeBlock(t, "html", `Stardust.loop("/comet/channel/news/stream/"`)
	browser := startChromium(t, chromium)
	// site starts Stardust on a site of these files; it returns the API's URL.
	site := func(files map[string]string) string {
		dir := sharedTempDir(t)
		for name, content := range files {
			writeFile(t, filepath.Join(dir, name), content)
		}
		return startStardust(t, "--document-root", dir)
	}

	for version, src := range map[string]string{
		"1.2.6": "node_modules/sizzle/speed/frameworks/jquery.js",
		"1.4.4": "node_modules/sizzle/test/jquery.js",
	} {
		t.Run("Perl page with jQuery "+version, func(t *testing.T) {
			base := site(map[string]string{
				"index.html": perlPage,
				"jquery.js":  readFile(t, filepath.Join(clientsDir(t), src)),
			})
			api := newCometClient(t, strings.TrimSuffix(base, "/comet"))
			tab := openPage(t, browser, strings.TrimSuffix(base, "/comet")+"/", "out")
			got := evalJS[string](t, tab, `jQuery.fn.jquery + " " + typeof $.ev.loop + " " + typeof $.ev.stop`)
			if !strings.HasPrefix(got, version) || !strings.HasSuffix(got, " function function") {
				t.Fatalf("jQuery version, $.ev.loop, $.ev.stop: %q", got)
			}
			api.waitSubscriber(t, "foo", "")
			// The Perl synopsis's command, as it is (but for the address).
			runCurl(t, curl, "-d", `m={ "type": "TestMessage", "data": [3, 2, 1] }`, base+"/channel/foo")
			runCurl(t, curl, "-d", `m={"type":"Other"}`, "-d", `m={"type":"TestMessage","data":[1]}`, base+"/channel/foo")
			tab.waitItems(t, "test:3,2,1", "other:Other", "test:1")

			// A function replaces the dispatcher: it gets the array.
			tab.eval(t, `$.ev.loop('/comet/channel/foo/' + uniqueId, function (events) {
				$('#out').append('<li class="batch">' + events.length + '</li>');
			})`)
			time.Sleep(200 * time.Millisecond) // the new poll replaces the old one
			runCurl(t, curl, "-d", `m={"type":"A"}`, "-d", `m={"type":"B"}`, base+"/channel/foo")
			tab.waitItems(t, "test:3,2,1", "other:Other", "test:1", "batch:2")

			tab.eval(t, `$.ev.stop()`)
			time.Sleep(200 * time.Millisecond)
			runCurl(t, curl, "-d", `m={"type":"TestMessage","data":[0]}`, base+"/channel/foo")
			time.Sleep(time.Second)
			if items := tab.items(t); len(items) != 4 {
				t.Errorf("after $.ev.stop() the page still got messages: %q", items)
			}
		})
	}

	t.Run("example page", func(t *testing.T) {
		base := site(map[string]string{"index.html": examplePage})
		api := newCometClient(t, strings.TrimSuffix(base, "/comet"))
		tab := openPage(t, browser, strings.TrimSuffix(base, "/comet")+"/", "out")
		lines := func() string { return evalJS[string](t, tab, `document.getElementById("out").textContent`) }
		waitUntil(t, "the page's own publish, the Bayeux line and the echo", func() (bool, string) {
			out := lines()
			return strings.Contains(out, "published, ok: true\n") && strings.Contains(out, "/chat/lobby: hi\n") &&
				strings.Contains(out, `echo: {"ping":1}`+"\n"), out
		})
		waitUntil(t, "two subscribers on news", func() (bool, string) {
			infos, raw := channelInfo(t, api, "news")
			return len(infos) == 1 && infos[0].Subscribers.total() == 2, raw
		})
		runCurl(t, curl, "-d", `m={"type":"greeting","from":"curl"}`, base+"/channel/news")
		waitUntil(t, "the greeting in the loop and the events", func() (bool, string) {
			out := lines()
			return strings.Contains(out, "loop: greeting from curl\n") && strings.Contains(out, "events: greeting\n"), out
		})
	})
}

// readmeBlock returns the one fenced code block in lang that contains
// marker, of all of README.md and docs/*.md (readDocs).
func readmeBlock(t *testing.T, lang, marker string) string {
	t.Helper()
	readme := readDocs(t)
	var found []string
	for _, part := range strings.Split(readme, "\n```"+lang+"\n")[1:] {
		block, _, ok := strings.Cut(part, "\n```\n")
		if ok && strings.Contains(block, marker) {
			found = append(found, block+"\n")
		}
	}
	if len(found) != 1 {
		t.Fatalf("README.md and docs/*.md have %d %s blocks with %q, want 1", len(found), lang, marker)
	}
	return found[0]
}

func runCurl(t *testing.T, curl string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserWait)
	defer cancel()
	out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--fail-with-body"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %q: %v\n%s", args, err, out)
	}
	return string(out)
}

func (tab *demoTab) items(t *testing.T) []string {
	t.Helper()
	return evalJS[[]string](t, tab, `Array.from(document.querySelectorAll("#out li"), function (li) { return li.className + ":" + li.textContent; })`)
}

func (tab *demoTab) waitItems(t *testing.T, want ...string) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%q in #out", want), func() (bool, string) {
		items := tab.items(t)
		return strings.Join(items, "|") == strings.Join(want, "|"), fmt.Sprintf("%q", items)
	})
}

// bayeuxScenario runs stardust.js's Bayeux client in a page: subscribe with
// a wildcard, two publishes sent as one batch, a Stardust API publish
// (Stardust.publish) reaching the Bayeux subscriber, the echo service,
// unsubscribe, disconnect. It counts the requests or frames that carried
// messages other than connects.
const bayeuxScenario = `(async function () {
  var out = { states: [], got: [], sends: 0 };
  var fetch0 = window.fetch;
  window.fetch = function (url, opts) {
    if (String(url).indexOf("/bayeux") >= 0 && opts && opts.body && opts.body.indexOf("/meta/connect") < 0) out.sends++;
    return fetch0.apply(this, arguments);
  };
  var send0 = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    if (data.indexOf("/meta/connect") < 0) out.sends++;
    return send0.apply(this, arguments);
  };
  function until(cond) {
    return new Promise(function (resolve, reject) {
      var n = 0, timer = setInterval(function () {
        if (cond()) { clearInterval(timer); resolve(); }
        else if (++n > 100) { clearInterval(timer); reject(new Error("timed out: " + JSON.stringify(out))); }
      }, 50);
    });
  }
  var c = Stardust.bayeux(base + "/bayeux", { onstate: function (s) { out.states.push(s); } });
  var listener = function (data, m) { out.got.push(m.channel + " " + JSON.stringify(data)); };
  await c.subscribe("/stardust/*", listener);
  var before = out.sends, acks = [];
  c.batch(function () {
    acks.push(c.publish("/stardust/js_a", { n: 1 }));
    acks.push(c.publish("/stardust/js_b", { n: 2 }));
  });
  await Promise.all(acks);
  out.batchSends = out.sends - before;
  out.stardust = await Stardust.publish("js_c", { type: "x", n: 3 });
  await until(function () { return out.got.length >= 3; });
  out.echo = await c.call("echo", { hello: "service" });
  await c.unsubscribe("/stardust/*", listener);
  await c.publish("/stardust/js_d", { n: 4 });
  await new Promise(function (r) { setTimeout(r, 500); });
  out.transport = c.transport;
  await c.disconnect();
  out.final = c.state;
  window.fetch = fetch0;
  WebSocket.prototype.send = send0;
  return JSON.stringify(out);
})()`

type bayeuxOutcome struct {
	States     []string
	Got        []string
	BatchSends int
	Stardust   struct{ OK bool }
	Echo       map[string]string
	Transport  string
	Final      string
}

// TestStardustJSBayeux: stardust.js's Bayeux client speaks WebSocket to a
// server that accepts it, and falls back to long-polling when the server
// refuses the WebSocket upgrade, with the same behaviour either way.
func TestStardustJSBayeux(t *testing.T) {
	t.Parallel()
	chromium := requireProgram(t, "chromium", "chromium")
	browser := startChromium(t, chromium)
	noWS := filepath.Join(t.TempDir(), "no-websocket.toml")
	writeFile(t, noWS, "[bayeux]\nwebsocket = false\n")
	for _, tc := range []struct {
		name, transport string
		args            []string
	}{
		{"websocket", "websocket", []string{"--demo"}},
		{"refused websocket", "long-polling", []string{"--demo", "--config", noWS}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := startStardust(t, tc.args...)
			tab := openPage(t, browser, base+"/demo/", "go-chat")
			ctx, cancel := context.WithTimeout(tab.ctx, 4*browserWait)
			defer cancel()
			raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](bayeuxScenario, chromedp.EvalAwaitPromise))
			if err != nil {
				t.Fatalf("the scenario failed in the page: %v", err)
			}
			var got bayeuxOutcome
			if err := json.Unmarshal([]byte(raw), &got); err != nil {
				t.Fatalf("%v: %s", err, raw)
			}
			if got.Transport != tc.transport {
				t.Errorf("transport %q, want %q", got.Transport, tc.transport)
			}
			want := `/stardust/js_a {"n":1}|/stardust/js_b {"n":2}|/stardust/js_c {"n":3,"type":"x"}`
			if joined := strings.Join(got.Got, "|"); joined != want {
				t.Errorf("received %q, want the two Bayeux publishes, the Stardust one, and nothing after unsubscribe", got.Got)
			}
			if got.BatchSends != 1 {
				t.Errorf("two publishes in a batch went out in %d requests or frames, want 1", got.BatchSends)
			}
			if !got.Stardust.OK || got.Echo["hello"] != "service" {
				t.Errorf("Stardust.publish answered %+v, the echo service %v", got.Stardust, got.Echo)
			}
			if got.Final != "disconnected" || strings.Join(got.States, ",") != "handshaking,connected,disconnected" {
				t.Errorf("states %q, final %q", got.States, got.Final)
			}
		})
	}
}

// TestStardustJSHandshakeExt: the Bayeux client sends options.ext with its
// handshake; a server that refuses it (advice reconnect "none") makes
// subscribe fail with the server's error and the client stop, instead of
// retrying for ever; the right credentials get in.
func TestStardustJSHandshakeExt(t *testing.T) {
	t.Parallel()
	chromium := requireProgram(t, "chromium", "chromium")
	cfg := filepath.Join(t.TempDir(), "secret.toml")
	writeFile(t, cfg, "[bayeux.auth]\nmode = \"secret\"\nsecret = \"s3cret\"\n")
	base := startStardust(t, "--demo", "--config", cfg)
	browser := startChromium(t, chromium)
	tab := openPage(t, browser, base+"/demo/", "go-chat")
	ctx, cancel := context.WithTimeout(tab.ctx, 4*browserWait)
	defer cancel()
	got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async function () {
		var out = [];
		var wrong = Stardust.bayeux(base + "/bayeux", { ext: { secret: "guess" } });
		try {
			await wrong.subscribe("/chat/demo", function () {});
			out.push("wrong secret: subscribed");
		} catch (err) {
			out.push("wrong secret: " + err.message + " (" + wrong.state + ")");
		}
		var right = Stardust.bayeux(base + "/bayeux", { ext: { secret: "s3cret" } });
		await right.subscribe("/chat/demo", function () {});
		out.push("right secret: " + right.state);
		await right.disconnect();
		return out.join("\n");
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^wrong secret: handshake refused: 403:[^\n]* \(disconnected\)\nright secret: connected$`).MatchString(got) {
		t.Errorf("the page reported:\n%s", got)
	}
}

// TestStardustJSRecovers: every client of stardust.js gets messages again,
// with nothing done by the page, after the server restarts: the long-poll
// loop and the EventSource stream by retrying, the Bayeux clients (over
// WebSocket and over long-polling) by handshaking again when the new server
// does not know them (402) and subscribing again.
func TestStardustJSRecovers(t *testing.T) {
	t.Parallel()
	chromium := requireProgram(t, "chromium", "chromium")
	bin := stardustBinary(t)
	addr := freeAddr(t)
	base := "http://" + addr + "/comet"
	start := func() *process {
		p := startProcess(t, "stardust", t.TempDir(), bin, "--listen", addr, "--log-level", "warn", "--demo")
		p.waitListening(t, addr)
		return p
	}
	server := start()
	api := newCometClient(t, "http://"+addr)
	browser := startChromium(t, chromium)
	tab := openPage(t, browser, base+"/demo/", "go-chat")
	tab.eval(t, `(function () {
		window.got = { loop: [], events: [], websocket: [], longpolling: [] };
		var push = function (list) { return function (m) { got[list].push(m.n); }; };
		Stardust.loop(base + "/channel/restart/stream/" + Stardust.id(), { "*": push("loop") });
		Stardust.events("restart", { "*": push("events") });
		window.ws = Stardust.bayeux(base + "/bayeux");
		ws.subscribe("/stardust/restart", function (d) { got.websocket.push(d.n); });
		window.lp = Stardust.bayeux(base + "/bayeux", { transports: ["long-polling"] });
		lp.subscribe("/stardust/restart", function (d) { got.longpolling.push(d.n); });
	})()`)
	// every publishes n, n+1... until each client has one at least from. It
	// keeps publishing because a client that is not registered yet would
	// miss a single message.
	every := func(from int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for n := from; ; n++ {
			api.publish(t, "restart", `{"type":"n","n":`+strconv.Itoa(n)+`}`)
			got := evalJS[map[string][]int](t, tab, `got`)
			missing := []string{}
			for _, k := range []string{"loop", "events", "websocket", "longpolling"} {
				if len(got[k]) == 0 || got[k][len(got[k])-1] < from {
					missing = append(missing, k)
				}
			}
			if len(missing) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %v, %v had no message from %d on: %v", within, missing, from, got)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	every(1, 4*browserWait)
	if tr := evalJS[string](t, tab, `ws.transport + " " + lp.transport`); tr != "websocket long-polling" {
		t.Fatalf("transports %q, want websocket long-polling", tr)
	}
	ids := evalJS[string](t, tab, `ws.clientId + " " + lp.clientId`)
	server.stop(t)
	time.Sleep(time.Second) // the clients find the server gone and retry
	start()
	every(1000, 40*time.Second) // the backoff is capped at 15 s
	if state := evalJS[string](t, tab, `ws.state + " " + ws.transport + " " + lp.state + " " + lp.transport`); state != "connected websocket connected long-polling" {
		t.Errorf("after the restart: %q", state)
	}
	if now := evalJS[string](t, tab, `ws.clientId + " " + lp.clientId`); now == ids || strings.Contains(now, "null") {
		t.Errorf("Bayeux client ids %q before the restart, %q after: want new sessions from a new handshake", ids, now)
	}
}

// TestStardustJSUnit runs the unit tests of stardust.js in Node (dispatch,
// backoff with jitter, stop, $.ev, publish, channel patterns), which fake
// the network and timers where the browser tests cannot.
func TestStardustJSUnit(t *testing.T) {
	t.Parallel()
	node := requireProgram(t, "node", "nodejs")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "server/js/stardust.test.mjs")
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "\n# fail 0\n") {
		t.Fatalf("node --test server/js/stardust.test.mjs: %v\n%s", err, out)
	}
}
