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

// TestDemoPages drives the pages of `stardust --demo` in headless Chromium as
// a newcomer would, and saves a screenshot of each (see screenshot):
//
//   - Chat: two pages chat over Bayeux (WebSocket) with each other and with
//     the in-process reply bot: join notices, lines both ways, the bot's
//     answers to both, a private question to the bot's service that the
//     other page never sees, and a leave notice.
//   - Live: the curl commands the page shows, run as they are in a shell,
//     reach the page at once; the colour command changes its colour.
//   - Status: the live counts move by themselves: a chat page and the bot
//     are counted, and messages per second rise while messages flow.
//   - Index: links to the three pages.
func TestDemoPages(t *testing.T) {
	t.Parallel()
	chromium := requireProgram(t, "chromium", "chromium")
	requireProgram(t, "curl", "curl")
	base := startStardust(t, "--demo")
	api := newCometClient(t, strings.TrimSuffix(base, "/comet"))
	browser := startChromium(t, chromium)

	t.Run("Chat", func(t *testing.T) {
		alice := openPage(t, browser, base+"/demo/chat.html", "messages")
		bob := openPage(t, browser, base+"/demo/chat.html", "messages")
		alice.joinChat(t, "alice")
		bob.joinChat(t, "bob")
		alice.waitChat(t, chatLine{Kind: "notice", Text: "bob joined"})
		bob.waitChat(t, chatLine{Kind: "bot", User: "Autobot", Text: "Welcome, bob! Say something and I will answer."})

		alice.say(t, "hello bob")
		bob.waitChat(t, chatLine{User: "alice", Text: "hello bob"})
		for _, tab := range []*demoTab{alice, bob} {
			tab.waitChat(t, chatLine{Kind: "bot", User: "Autobot", Text: "I got your message, alice"})
		}
		bob.say(t, "hi alice, and hi bot")
		alice.waitChat(t, chatLine{User: "bob", Text: "hi alice, and hi bot"})
		alice.waitChat(t, chatLine{Kind: "bot", User: "Autobot", Text: "I got your message, bob"})

		alice.say(t, "/bot psst, only you")
		alice.waitChatPrefix(t, chatLine{Kind: "bot private", User: "Autobot → alice", Text: `You said "psst, only you" to me alone.`})
		alice.screenshot(t, "chat.png")
		bob.click(t, "leave")
		alice.waitChat(t, chatLine{Kind: "notice", Text: "bob left"})
		for _, l := range bob.chat(t) {
			if strings.Contains(l.Text, "psst") {
				t.Errorf("bob saw alice's private line to the bot: %+v", l)
			}
		}
	})

	t.Run("Live", func(t *testing.T) {
		const channel = "curl_demo"
		tab := openPage(t, browser, base+"/demo/live.html?channel="+channel, "log")
		api.waitSubscriber(t, channel, "")
		url := base + "/channel/" + channel
		run := func(id string) string {
			t.Helper()
			cmd := evalJS[string](t, tab, `document.getElementById(`+strconv.Quote(id)+`).textContent`)
			if !strings.HasPrefix(cmd, "curl ") || !strings.HasSuffix(cmd, " "+url) {
				t.Fatalf("#%s shows %q, want a curl command for %s", id, cmd, url)
			}
			ctx, cancel := context.WithTimeout(context.Background(), browserWait)
			defer cancel()
			out, err := exec.CommandContext(ctx, "sh", "-c", cmd).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", cmd, err, out)
			}
			return string(out)
		}
		if out := run("cmd-hello"); !strings.Contains(out, `"ok":true`) {
			t.Errorf("the hello command printed %s", out)
		}
		tab.waitLogTexts(t, "chat:Hello from curl")
		run("cmd-two")
		tab.waitLogTexts(t, "chat:Hello from curl", "TestMessage:", "chat:and a second one")
		tab.screenshot(t, "live.png")
		run("cmd-color")
		waitUntil(t, "the page's colour to change", func() (bool, string) {
			bg := evalJS[string](t, tab, `getComputedStyle(document.body).backgroundColor`)
			return bg == "rgb(255, 228, 181)", "background " + bg
		})
		if out := run("cmd-history"); !strings.Contains(out, "Hello from curl") || !strings.Contains(out, `"color":"#ffe4b5"`) {
			t.Errorf("the history command printed %s", out)
		}
	})

	t.Run("QuickStart", func(t *testing.T) {
		// The README's quick start: make run (which is --demo), then its
		// curl lines, as they are but for this server's address.
		if run := readmeBlock(t, "sh", "make run"); run != "make run\n" {
			t.Errorf("the quick start runs %q", run)
		}
		if mk := readFile(t, filepath.Join(repoRoot(t), "Makefile")); !regexp.MustCompile(`(?m)^run:.*\n\t.*cmd/stardust --demo$`).MatchString(mk) {
			t.Error("make run does not start cmd/stardust with --demo")
		}
		tab := openPage(t, browser, base+"/demo/live.html", "log")
		api.waitSubscriber(t, "demo", "")
		for _, line := range strings.Split(strings.TrimSpace(readmeBlock(t, "sh", "channel/demo")), "\n") {
			line = strings.ReplaceAll(line, "http://127.0.0.1:5742/comet", base)
			if out, err := exec.Command("sh", "-c", line).CombinedOutput(); err != nil || !strings.Contains(string(out), `"ok":true`) {
				t.Fatalf("%s: %v\n%s", line, err, out)
			}
		}
		tab.waitLogTexts(t, "chat:Hello from curl", "color:")
		waitUntil(t, "the page's colour to change", func() (bool, string) {
			bg := evalJS[string](t, tab, `getComputedStyle(document.body).backgroundColor`)
			return bg == "rgb(255, 228, 181)", "background " + bg
		})
	})

	t.Run("Status", func(t *testing.T) {
		chat := openPage(t, browser, base+"/demo/chat.html", "messages")
		chat.joinChat(t, "carol")
		tab := openPage(t, browser, base+"/demo/status.html", "clients")
		number := func(id string) float64 {
			v, _ := strconv.ParseFloat(evalJS[string](t, tab, `document.getElementById(`+strconv.Quote(id)+`).textContent`), 64)
			return v
		}
		deadline := time.Now().Add(4 * browserWait)
		for n := 0; ; n++ { // a message every 100 ms until the page shows a rate
			publishChat(t, api, "status_demo", fmt.Sprint("tick ", n))
			if number("rate") > 0 && number("kind-bayeux") >= 1 && number("kind-local") >= 1 && number("polls") >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the status page did not show the chat page, the bot and a message rate: %s",
					evalJS[string](t, tab, `document.querySelector("main").innerText`))
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got := evalJS[string](t, tab, `document.getElementById("updated").textContent`); got != "live" {
			t.Errorf("#updated = %q, want live", got)
		}
		tab.screenshot(t, "status.png")
	})

	t.Run("Phone", func(t *testing.T) {
		// Readable on a phone: nothing wider than a 390 px screen.
		for _, page := range []string{"", "chat.html", "live.html", "status.html"} {
			tab := openPage(t, browser, base+"/demo/"+page, "top")
			tab.run(t, "a phone's screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)))
			waitUntil(t, "the page to fit "+page, func() (bool, string) {
				w := evalJS[int](t, tab, `document.documentElement.scrollWidth`)
				return w <= 390, fmt.Sprintf("%s is %d px wide", page, w)
			})
			if page == "live.html" {
				tab.screenshot(t, "live-phone.png")
			}
		}
	})

	t.Run("Index", func(t *testing.T) {
		tab := openPage(t, browser, base+"/demo/", "go-chat")
		for id, page := range map[string]string{"go-chat": "chat.html", "go-live": "live.html", "go-status": "status.html"} {
			if href := evalJS[string](t, tab, `document.getElementById(`+strconv.Quote(id)+`).href`); href != base+"/demo/"+page {
				t.Errorf("#%s links to %s, want %s", id, href, base+"/demo/"+page)
			}
		}
		waitUntil(t, "the footer to show the versions", func() (bool, string) {
			v := evalJS[string](t, tab, `document.getElementById("version").textContent`)
			return strings.Contains(v, "stardust.js "), v
		})
		tab.screenshot(t, "index.png")
	})
}

// chatLine is one line of the chat page's #messages: its class, the user
// shown in bold, and the text after it.
type chatLine struct{ Kind, User, Text string }

func (tab *demoTab) chat(t *testing.T) []chatLine {
	t.Helper()
	return evalJS[[]chatLine](t, tab, `Array.from(document.querySelectorAll("#messages li"), function (li) {
		var u = li.querySelector(".user");
		return {Kind: li.className, User: u ? u.textContent : "", Text: li.lastChild.textContent};
	})`)
}

func (tab *demoTab) waitChat(t *testing.T, want chatLine) {
	t.Helper()
	tab.waitChatMatch(t, fmt.Sprintf("%+v", want), func(l chatLine) bool { return l == want })
}

func (tab *demoTab) waitChatPrefix(t *testing.T, want chatLine) {
	t.Helper()
	tab.waitChatMatch(t, fmt.Sprintf("%+v...", want), func(l chatLine) bool {
		return l.Kind == want.Kind && l.User == want.User && strings.HasPrefix(l.Text, want.Text)
	})
}

func (tab *demoTab) waitChatMatch(t *testing.T, what string, match func(chatLine) bool) {
	t.Helper()
	waitUntil(t, "the chat line "+what, func() (bool, string) {
		lines := tab.chat(t)
		for _, l := range lines {
			if match(l) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", lines)
	})
}

// joinChat types a name, clicks join, and waits until the page is connected
// over WebSocket.
func (tab *demoTab) joinChat(t *testing.T, name string) {
	t.Helper()
	tab.run(t, "join the chat as "+name,
		chromedp.SetValue(chromedp.ID("name"), name),
		chromedp.Click(chromedp.ID("join")))
	waitUntil(t, name+" to be in the room", func() (bool, string) {
		who := evalJS[string](t, tab, `document.getElementById("who").textContent + " / " + document.getElementById("transport").textContent`)
		return who == "You are "+name+" / websocket", who
	})
}

func (tab *demoTab) say(t *testing.T, text string) {
	t.Helper()
	tab.run(t, "say "+text,
		chromedp.SetValue(chromedp.ID("say"), text),
		chromedp.Click(chromedp.ID("send")))
}

func (tab *demoTab) click(t *testing.T, id string) {
	t.Helper()
	tab.run(t, "click #"+id, chromedp.Click(chromedp.ID(id)))
}

// waitLogTexts waits until the live page's #log shows messages of these
// "type:text" in this order, among others.
func (tab *demoTab) waitLogTexts(t *testing.T, want ...string) {
	t.Helper()
	waitUntil(t, fmt.Sprintf("%q in #log", want), func() (bool, string) {
		lines := evalJS[[]string](t, tab, `Array.from(document.querySelectorAll("#log > div"), function (d) { return d.textContent; })`)
		next := 0
		for _, l := range lines {
			var m struct{ Type, Text string }
			if json.Unmarshal([]byte(l), &m) == nil && next < len(want) && m.Type+":"+m.Text == want[next] {
				next++
			}
		}
		return next == len(want), fmt.Sprintf("%q", lines)
	})
}

// TestReadmeQuotesExamples: code the docs show is code the tests run, as it
// is (less its indent in the file): the Go of ExampleStart of
// examples/autobot (go test runs it), and the stardust.js code for tokens,
// the script of examples/php/app.html (TestBrowserPHPApp runs it).
func TestReadmeQuotesExamples(t *testing.T) {
	t.Parallel()
	for _, q := range []struct{ file, from, to, indent, lang, marker string }{
		{"examples/autobot/example_test.go", "func ExampleStart() {\n", "\t// Output:", "\t", "go", "autobot.Start("},
		{"examples/php/app.html", "<script>\n", "</script>", "  ", "js", "const token = "},
	} {
		src := readFile(t, filepath.Join(repoRoot(t), filepath.FromSlash(q.file)))
		_, body, _ := strings.Cut(src, q.from)
		body, _, _ = strings.Cut(body, q.to)
		var lines []string
		for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
			lines = append(lines, strings.TrimPrefix(l, q.indent))
		}
		if got, want := readmeBlock(t, q.lang, q.marker), strings.Join(lines, "\n")+"\n"; got != want {
			t.Errorf("the docs' %s block with %q is not the code of %s:\n%s\nwant:\n%s", q.lang, q.marker, q.file, got, want)
		}
	}
}
