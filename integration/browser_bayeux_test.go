//go:build unix

package integration

// Faye's browser client in headless Chromium against the real program: the
// browser keeps the BAYEUX_BROWSER cookie the session is bound to, over
// WebSocket (which Faye opens before its handshake's answer has set the
// cookie) and over long-polling.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

const fayePage = `<!doctype html>
<meta charset="utf-8">
<title>faye</title>
<script src="faye-browser-min.js"></script>
<script>
window.got = [];
var client = new Faye.Client(location.origin + "/comet/bayeux");
if (location.search.indexOf("lp") >= 0) client.disable("websocket");
client.subscribe("/stardust/" + location.hash.slice(1), function (m) { window.got.push(m); })
  .then(function () { window.subscribed = true; }, function (e) { window.subErr = String(e && e.message || e); });
</script>
<p id="ready">ready</p>
`

func TestFayeInChromium(t *testing.T) {
	t.Parallel()
	chromium := requireProgram(t, "chromium", "chromium")
	site := t.TempDir()
	js, err := os.ReadFile(filepath.Join(clientsDir(t), "node_modules", "faye", "client", "faye-browser-min.js"))
	if err != nil {
		missingDependency(t, "faye's browser client (cd integration/clients && npm ci): "+err.Error())
	}
	writeFile(t, filepath.Join(site, "faye-browser-min.js"), string(js))
	writeFile(t, filepath.Join(site, "faye.html"), fayePage)
	base := startStardust(t, "--document-root", site)
	api := newCometClient(t, strings.TrimSuffix(base, "/comet"))
	browser := startChromium(t, chromium)
	for _, tc := range []struct{ name, query, channel string }{
		{"websocket", "", "faye_ws"},
		{"long-polling", "?lp", "faye_lp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := chromedp.NewContext(browser)
			defer cancel()
			runWithWatchdog(t, "open a tab", ctx, cancel)
			tab := &demoTab{ctx: ctx}
			page := strings.TrimSuffix(base, "/comet") + "/faye.html" + tc.query + "#" + tc.channel
			tab.run(t, "load "+page, chromedp.Navigate(page), chromedp.WaitVisible(chromedp.ID("ready")))
			waitUntil(t, "Faye to subscribe", func() (bool, string) {
				ok := evalJS[bool](t, tab, "window.subscribed === true")
				return ok, evalJS[string](t, tab, "String(window.subErr)")
			})
			api.waitSubscriber(t, tc.channel, "")
			publishChat(t, api, tc.channel, "to faye in chromium")
			waitUntil(t, "the message in the page", func() (bool, string) {
				got := evalJS[string](t, tab, "JSON.stringify(window.got)")
				return strings.Contains(got, "to faye in chromium"), got
			})
			cookie := evalJS[string](t, tab, "document.cookie")
			if strings.Contains(cookie, "BAYEUX_BROWSER") {
				t.Errorf("the browser cookie is readable from the page (not HttpOnly): %q", cookie)
			}
		})
	}
}
