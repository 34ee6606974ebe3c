//go:build unix

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowser drives the live demo page (examples/demo/live.html, served by
// `stardust --demo` at {base}/demo/) in headless Chromium from Debian, as a
// person would: choose a transport, click subscribe, read #log, type and click
// publish. Go publishes and reads the channels over the HTTP API on the side.
//
//   - LongPolling, ServerSentEvents: two messages published from Go show in
//     #log, in order, stamped with _ch and _ts, over fetch() long polls and
//     over an EventSource.
//   - PublishFromPage: text typed in the page and published by its form is in
//     the channel history, stamped, and comes back to the page's subscription.
//   - ResumeAfterReload: after a reload, an EventSource opened with
//     ?lastEventId= gets what was published while no page listened.
//   - SSEReconnect: when the server ends an event stream, the browser's own
//     reconnect (with Last-Event-ID) gets what was published in the gap.
//
// The page must throw no uncaught exception. With -artifacts, a screenshot of
// the page goes to the artifact directory (go test -artifacts -outputdir DIR);
// otherwise it is deleted with the test.
func TestBrowser(t *testing.T) {
	chromium := requireProgram(t, "chromium", "chromium")
	base := startStardust(t, "--demo")
	api := newCometClient(t, strings.TrimSuffix(base, "/comet"))
	browser := startChromium(t, chromium)

	t.Run("LongPolling", func(t *testing.T) {
		tab := openDemoPage(t, browser, base)
		tab.subscribe(t, "demo", "long polling")
		api.waitSubscriber(t, "demo", "") // the page's first poll registered it
		// The page polled "demo" from its start: clicking start stopped that
		// poll and began another with the same id. A message answered on the
		// stopped one in between is lost (a long poll has no ack), so let
		// the page's new poll reach the server first.
		time.Sleep(500 * time.Millisecond)
		publishChat(t, api, "demo", "first by long polling")
		publishChat(t, api, "demo", "second by long polling")
		checkChatLines(t, tab.waitLog(t, 2), "demo", "first by long polling", "second by long polling")
		if state := tab.state(t); !strings.HasPrefix(state, "polling as ") {
			t.Errorf("#state = %q, want \"polling as ID\" after a poll answered", state)
		}
		tab.screenshot(t, "demo-long-polling.png")
	})

	t.Run("ServerSentEvents", func(t *testing.T) {
		tab := openDemoPage(t, browser, base)
		tab.subscribe(t, "demo_sse", "Server-Sent Events")
		api.waitSubscriber(t, "demo_sse", "")
		publishChat(t, api, "demo_sse", "first by SSE")
		publishChat(t, api, "demo_sse", "second by SSE")
		checkChatLines(t, tab.waitLog(t, 2), "demo_sse", "first by SSE", "second by SSE")
		if state := tab.state(t); state != "streaming" {
			t.Errorf("#state = %q, want \"streaming\"", state)
		}
	})

	t.Run("PublishFromPage", func(t *testing.T) {
		const channel, text = "demo_page", "typed and sent from the page"
		tab := openDemoPage(t, browser, base)
		tab.subscribe(t, channel, "Server-Sent Events")
		api.waitSubscriber(t, channel, "")
		tab.run(t, "type the message and click publish",
			chromedp.Clear(chromedp.ID("text")),
			chromedp.SendKeys(chromedp.ID("text"), text),
			chromedp.Click(chromedp.ID("send")))

		// The server stored it, stamped, in the channel history...
		var stored map[string]any
		waitUntil(t, "the page's message in the history of "+channel, func() (bool, string) {
			infos, raw := channelInfo(t, api, channel)
			if len(infos) == 1 && len(infos[0].Messages) > 0 {
				stored = infos[0].Messages[len(infos[0].Messages)-1]
				return true, ""
			}
			return false, raw
		})
		checkChat(t, "history", stored, channel, text)
		if ts, _ := stored["_ts"].(float64); math.Abs(ts-float64(time.Now().UnixMilli())/1000) > 60 {
			t.Errorf("history: _ts = %v, not within a minute of now", stored["_ts"])
		}
		// ...and the page's own subscription shows the same stored copy.
		lines := tab.waitLog(t, 1)
		checkChatLines(t, lines, channel, text)
		if len(lines) == 1 && lines[0]["_ts"] != stored["_ts"] {
			t.Errorf("#log shows _ts %v, the history %v: not the same message", lines[0]["_ts"], stored["_ts"])
		}
	})

	t.Run("ResumeAfterReload", func(t *testing.T) {
		// A browser sends Last-Event-ID only on its own reconnects. A page that
		// is reloaded must pass the last id it saw itself, as ?lastEventId=.
		const channel = "demo_reload"
		tab := openDemoPage(t, browser, base)
		openSSE := `(function (url) {
			window.resume = window.resume || [];
			var es = new EventSource(url);
			es.onmessage = function (e) { window.resume.push({id: e.lastEventId, text: JSON.parse(e.data).text}); };
		})(base + "/channel/` + channel + `/events%s")`
		tab.eval(t, fmt.Sprintf(openSSE, ""))
		api.waitSubscriber(t, channel, "")
		publishChat(t, api, channel, "one")
		got := tab.waitResume(t, 1)
		lastID := got[0].ID
		if got[0].Text != "one" || lastID == "" {
			t.Fatalf("first event %+v, want text one with an id", got[0])
		}

		tab.run(t, "reload the page", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("log")))
		waitNoSubscriber(t, api, channel) // the reload ended the stream
		for _, text := range []string{"two", "three"} {
			if n := publishChat(t, api, channel, text); n != 0 {
				t.Fatalf("published %q to %d recipients, want 0 while the page is not subscribed", text, n)
			}
		}
		tab.eval(t, fmt.Sprintf(openSSE, "?lastEventId="+url.QueryEscape(lastID)))
		api.waitSubscriber(t, channel, "")
		publishChat(t, api, channel, "four") // live again after the replay
		got = tab.waitResume(t, 3)
		var texts []string
		prev, _ := strconv.ParseUint(lastID, 10, 64)
		for _, e := range got {
			texts = append(texts, e.Text)
			id, err := strconv.ParseUint(e.ID, 10, 64)
			if err != nil || id <= prev {
				t.Errorf("event %+v: id not a number above the previous %d", e, prev)
			}
			prev = id
		}
		if strings.Join(texts, ",") != "two,three,four" {
			t.Errorf("after the reload with lastEventId=%s the page got %q, want two, three (replayed), four (live)", lastID, texts)
		}
	})

	t.Run("SSEReconnect", func(t *testing.T) {
		// A server whose event streams end after 2 s: the browser's EventSource
		// reconnects by itself after the retry the stream set (2 s), sending
		// Last-Event-ID. A message published in that gap, when nothing listens,
		// must still reach the page, replayed from the channel history.
		const channel = "demo_reconnect"
		cfg := filepath.Join(t.TempDir(), "stardust.toml")
		writeFile(t, cfg, "[comet]\nsse_max_duration = \"2s\"\n")
		base := startStardust(t, "--demo", "--config", cfg)
		api := newCometClient(t, strings.TrimSuffix(base, "/comet"))
		tab := openDemoPage(t, browser, base)
		tab.subscribe(t, channel, "Server-Sent Events")
		api.waitSubscriber(t, channel, "")
		publishChat(t, api, channel, "before the gap")
		tab.waitLog(t, 1)

		want := []string{"before the gap"}
		inGap := false
		for attempt := 1; attempt <= 3 && !inGap; attempt++ {
			// The stream ends within 2 s; onerror then shows "reconnecting".
			waitUntil(t, "the page to see its stream end", func() (bool, string) {
				s := tab.state(t)
				return s == "reconnecting", "#state " + strconv.Quote(s)
			})
			text := fmt.Sprintf("published in gap %d", attempt)
			inGap = publishChat(t, api, channel, text) == 0
			want = append(want, text)
			if !inGap { // the browser was back first: delivered live, try again
				t.Logf("attempt %d: the browser had reconnected before the publish", attempt)
				tab.waitLog(t, len(want))
				waitUntil(t, "the stream to be open again", func() (bool, string) {
					s := tab.state(t)
					return s == "streaming", "#state " + strconv.Quote(s)
				})
			}
		}
		if !inGap {
			t.Fatal("could not publish while the browser was reconnecting in 3 attempts")
		}
		tab.waitLog(t, len(want)) // replayed on the reconnect
		api.waitSubscriber(t, channel, "")
		publishChat(t, api, channel, "after the gap")
		want = append(want, "after the gap")
		checkChatLines(t, tab.waitLog(t, len(want)), channel, want...)
	})
}

// browserWait bounds each browser action and each wait for the page or the
// server to show something.
const browserWait = 5 * time.Second

// startChromium starts headless Chromium with a fresh profile, only for this
// test, and returns the context of its first tab. It is closed at cleanup.
func startChromium(t *testing.T, path string) context.Context {
	t.Helper()
	out := &syncBuffer{}
	profile := t.TempDir() // removed after the browser has stopped: cleanups run last-in first-out
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.UserDataDir(profile),
		// Headless, as root, and nothing that reaches outside the machine:
		// without the background-networking flags Chromium keeps trying to
		// reach Google's hosts.
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // the tests run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Only loopback: no name resolves, so nothing but 127.0.0.1 is reached.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(900, 700),
		chromedp.CombinedOutput(out),
	)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	stop := func() {
		cancelBrowser()
		cancelAlloc()
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("chromium printed:\n%s", tail(out.String(), 60))
		}
	})
	// The first Run starts the browser and ties it to the context it gets, so
	// it has no timeout of its own: a watchdog stops the browser instead.
	runWithWatchdog(t, "start chromium", browser, stop)
	return browser
}

// runWithWatchdog runs no action on ctx, which starts its browser or opens its
// tab, and stops it and fails the test if that takes longer than startTimeout.
func runWithWatchdog(t *testing.T, what string, ctx context.Context, stop func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(startTimeout):
		stop()
		t.Fatalf("%s: not done after %v", what, startTimeout)
	}
}

// demoTab is a browser tab showing the demo page of one Stardust server.
type demoTab struct {
	ctx     context.Context
	mu      sync.Mutex
	console []chromedp.ConsoleMessage // what the page wrote to the console, and its uncaught exceptions
}

// openDemoPage opens the live page, {base}/demo/live.html, in a new tab.
func openDemoPage(t *testing.T, browser context.Context, base string) *demoTab {
	t.Helper()
	return openPage(t, browser, base+"/demo/live.html", "log")
}

// openPage opens url in a new tab, closed at cleanup, waits until the
// element with id waitFor is visible, and fails the test if the page throws
// an uncaught exception meanwhile.
func openPage(t *testing.T, browser context.Context, url, waitFor string) *demoTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	runWithWatchdog(t, "open a tab", ctx, cancel)
	tab := &demoTab{ctx: ctx}
	messages := chromedp.Console(ctx) // subscribed from here on, before the page loads
	go func() {
		for m, err := range messages {
			if err != nil {
				return // the tab closed
			}
			tab.mu.Lock()
			tab.console = append(tab.console, m)
			tab.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		tab.mu.Lock()
		defer tab.mu.Unlock()
		for _, m := range tab.console {
			if m.Type == chromedp.ConsoleException {
				t.Errorf("the page threw: %s %s:%d", m.Text, m.URL, m.Line)
			} else if t.Failed() {
				t.Logf("page console %s: %s", m.Type, m.Text)
			}
		}
	})
	tab.run(t, "load "+url, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.ID(waitFor)))
	return tab
}

// run runs actions in the tab within browserWait.
func (tab *demoTab) run(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// evalJS evaluates a JavaScript expression in the page within browserWait.
func evalJS[T any](t *testing.T, tab *demoTab, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %.200s: %v", expr, err)
	}
	return v
}

func (tab *demoTab) eval(t *testing.T, expr string) {
	t.Helper()
	evalJS[chromedp.Void](t, tab, expr)
}

// subscribe fills in the channel, picks the transport by the label a person
// reads in the list, and clicks subscribe.
func (tab *demoTab) subscribe(t *testing.T, channel, transport string) {
	t.Helper()
	label, _ := json.Marshal(transport)
	options := evalJS[string](t, tab, `(function (label) {
		var sel = document.getElementById("transport");
		var opt = Array.from(sel.options).find(function (o) { return o.textContent.trim() === label; });
		if (!opt) return Array.from(sel.options, function (o) { return o.textContent; }).join(" | ");
		sel.value = opt.value;
		sel.dispatchEvent(new Event("change", { bubbles: true }));
		return "";
	})(`+string(label)+`)`)
	if options != "" {
		t.Fatalf("the page has no transport %q in its list, only: %s", transport, options)
	}
	tab.run(t, "subscribe to "+channel+" by "+transport,
		chromedp.SetValue(chromedp.ID("channel"), channel),
		chromedp.Click(chromedp.ID("start")))
}

// state is the text of #state ("idle", "polling as ID", "streaming"...).
func (tab *demoTab) state(t *testing.T) string {
	t.Helper()
	return evalJS[string](t, tab, `document.getElementById("state").textContent`)
}

// waitLog waits until #log has at least n lines and returns them all, each
// decoded from the JSON the page shows.
func (tab *demoTab) waitLog(t *testing.T, n int) []map[string]any {
	t.Helper()
	var lines []string
	waitUntil(t, fmt.Sprintf("%d lines in #log", n), func() (bool, string) {
		lines = evalJS[[]string](t, tab, `Array.from(document.querySelectorAll("#log > div"), function (d) { return d.textContent; })`)
		return len(lines) >= n, fmt.Sprintf("#log %q, #state %q", lines, tab.state(t))
	})
	msgs := make([]map[string]any, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &msgs[i]); err != nil {
			t.Fatalf("#log line %d is not a JSON object: %q: %v", i+1, l, err)
		}
	}
	return msgs
}

type resumeEvent struct{ ID, Text string }

// waitResume waits until the EventSource of ResumeAfterReload has received n
// events since the page was loaded.
func (tab *demoTab) waitResume(t *testing.T, n int) []resumeEvent {
	t.Helper()
	var got []resumeEvent
	waitUntil(t, fmt.Sprintf("%d events", n), func() (bool, string) {
		got = evalJS[[]resumeEvent](t, tab, `(window.resume || []).map(function (e) { return {ID: e.id, Text: e.text}; })`)
		return len(got) >= n, fmt.Sprintf("events %+v", got)
	})
	return got
}

// screenshotsEnv names a directory that screenshots are also saved in, to
// refresh the README's pictures: STARDUST_SCREENSHOTS=$PWD/docs/screenshots.
const screenshotsEnv = "STARDUST_SCREENSHOTS"

// screenshot saves a PNG of the tab in the test's artifact directory (and in
// $STARDUST_SCREENSHOTS when set).
func (tab *demoTab) screenshot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.ctx, browserWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // the whole page, not only the window
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	dirs := []string{t.ArtifactDir()}
	if dir := os.Getenv(screenshotsEnv); dir != "" {
		dirs = append(dirs, dir)
	}
	for _, dir := range dirs {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
}

// waitUntil calls check until it reports done, failing the test with its last
// description after browserWait.
func waitUntil(t *testing.T, what string, check func() (done bool, last string)) {
	t.Helper()
	within(t, browserWait, what, check)
}

// within waits up to d for check to be done, looking every 20 ms.
func within(t *testing.T, d time.Duration, what string, check func() (done bool, last string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		done, last := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %v; last seen: %s", what, d, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publishChat publishes {"type":"chat","text":text} as the form parameter m,
// as the page does, and returns how many subscribers it reached.
func publishChat(t *testing.T, api *cometClient, channel, text string) int {
	t.Helper()
	m, _ := json.Marshal(map[string]string{"type": "chat", "text": text})
	resp, body, err := api.request("POST", "/comet/channel/"+channel, url.Values{"m": {string(m)}}, browserWait)
	if err != nil {
		t.Fatalf("publish to %s: %v", channel, err)
	}
	var res struct {
		OK         bool
		Recipients int
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &res) != nil || !res.OK {
		t.Fatalf("publish to %s: %s %s", channel, resp.Status, body)
	}
	return res.Recipients
}

type channelState struct {
	Name        string
	Messages    []map[string]any
	Subscribers audience
}

// channelInfo reads GET {base}/channel/NAME; nil if it failed (the raw answer
// says why).
func channelInfo(t *testing.T, api *cometClient, channel string) ([]channelState, string) {
	t.Helper()
	resp, body, err := api.request("GET", "/comet/channel/"+channel, nil, browserWait)
	if err != nil {
		return nil, err.Error()
	}
	var infos []channelState
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &infos) != nil {
		return nil, resp.Status + " " + string(body)
	}
	return infos, string(body)
}

// waitNoSubscriber waits until nothing streams channel any more.
func waitNoSubscriber(t *testing.T, api *cometClient, channel string) {
	t.Helper()
	waitUntil(t, "no subscriber on "+channel, func() (bool, string) {
		infos, raw := channelInfo(t, api, channel)
		return len(infos) == 1 && infos[0].Subscribers.total() == 0, raw
	})
}

// checkChatLines checks that the page showed exactly the chat messages texts,
// in order, each stamped with its channel and a time.
func checkChatLines(t *testing.T, lines []map[string]any, channel string, texts ...string) {
	t.Helper()
	if len(lines) != len(texts) {
		t.Errorf("#log has %d lines, want %d (%q): %v", len(lines), len(texts), texts, lines)
		return
	}
	for i, l := range lines {
		checkChat(t, fmt.Sprintf("#log line %d", i+1), l, channel, texts[i])
	}
}

func checkChat(t *testing.T, where string, m map[string]any, channel, text string) {
	t.Helper()
	ts, isNumber := m["_ts"].(float64)
	if m["type"] != "chat" || m["text"] != text || m["_ch"] != channel || !isNumber || ts <= 0 {
		t.Errorf("%s = %v, want type chat, text %q, _ch %q and a _ts", where, m, text, channel)
	}
}
