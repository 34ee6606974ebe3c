//go:build unix

package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stardust-go/stardust/internal/tokentest"
)

// presenceKey is the API key of TestBrowserPresenceCluster's processes.
const presenceKey = "presence-test-key-0123456789abcdef"

// TestBrowserPresenceCluster: three processes behind conf/nginx/cluster.conf
// on a real redis-server, and Chromium with two users in two tabs each, on
// docs/stardust-js.md's presence page as it is. Every tab lists both users
// once; a tab closing keeps its user, the last one closing sends one leave;
// the server API's disconnect, through nginx, ends both tabs of one user
// within a second and leaves the other user alone, also after a SIGKILL of a
// process that served a tab, whose own user's leave then comes from the
// sweep of the survivors, once.
func TestBrowserPresenceCluster(t *testing.T) {
	chromium := requireProgram(t, "chromium", "chromium")
	page := readmeBlock(t, "html", `chat.presence("/chat/room")`)
	cl := startClusterWith(t, clusterSetup{
		config: fmt.Sprintf("\n[auth]\ntoken_hmac_secret = %q\n\n[api]\nkey = %q\n\n[bayeux]\nconnect_timeout = \"3s\"\n\n"+
			"[[channels]]\npattern = \"/chat/**\"\npresence = true\njoin_leave = true\nhistory_size = 200\n", tokentest.Secret, presenceKey),
		site: map[string]string{"room.html": page},
	})
	browser := startChromium(t, chromium)
	web := "http://" + cl.web
	open := func(user string) *demoTab {
		tab := openPage(t, browser, web+"/room.html?token="+tokentest.User(user, time.Hour), "log")
		waitUntil(t, user+"'s tab connected", func() (bool, string) {
			s := evalJS[string](t, tab, `chat.state + " " + chat.transport`)
			return s == "connected websocket", s
		})
		return tab
	}
	users := func(tab *demoTab) string {
		return evalJS[string](t, tab, `Array.from(document.querySelectorAll("#users li")).map(function (li) { return li.textContent; }).join(",")`)
	}
	waitUsers := func(want string, tabs ...*demoTab) {
		t.Helper()
		for _, tab := range tabs {
			waitUntil(t, "the tab to list "+want, func() (bool, string) {
				got := users(tab)
				return got == want, got
			})
		}
	}
	var seen int // events checked so far
	events := func(want ...string) {
		t.Helper()
		var got []string
		within(t, 15*time.Second, "the join/leave events "+strings.Join(want, ", "), func() (bool, string) {
			got = roomEvents(t, web)[seen:]
			return len(got) >= len(want), strings.Join(got, ", ")
		})
		time.Sleep(time.Second) // nothing more comes
		got = roomEvents(t, web)[seen:]
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Fatalf("join/leave events: %q, want %q", got, want)
		}
		seen += len(got)
	}
	sessions := func(want int) {
		t.Helper()
		within(t, 15*time.Second, fmt.Sprintf("%d sessions on the room", want), func() (bool, string) {
			out := presenceAPI(t, web, "presence_stats", `{"channel":"/chat/room"}`)
			return out["clients"] == float64(want), fmt.Sprint(out)
		})
	}

	ann1, ann2 := open("ann"), open("ann")
	bob1, bob2 := open("bob"), open("bob")
	waitUsers("ann,bob", ann1, ann2, bob1, bob2)
	events("join ann", "join bob")
	if out := presenceAPI(t, web, "presence_stats", `{"channel":"/chat/room"}`); fmt.Sprint(out) != "map[clients:4 users:2]" {
		t.Errorf("presence_stats: %v", out)
	}

	// A tab closing keeps its user; the last one sends one leave.
	closeTab(t, ann1)
	sessions(3)
	events()
	closeTab(t, ann2)
	events("leave ann")
	waitUsers("bob", bob1, bob2)
	if log := tabLog(t, bob1); strings.Count(log, "leave ann") != 1 || strings.Count(log, "join") > 2 {
		t.Errorf("bob's tab's log:\n%s", log)
	}

	// disconnect, through nginx: both of ann's tabs end, bob's stay.
	ann3, ann4 := open("ann"), open("ann")
	events("join ann")
	disconnectUser(t, web, "ann", []*demoTab{ann3, ann4}, []*demoTab{bob1, bob2})
	events("leave ann")

	// A SIGKILL of a process that holds a tab: cat, whose only session it
	// serves, leaves by the sweep of the others; the tabs move on.
	ann5, ann6 := open("ann"), open("ann")
	events("join ann")
	victim := -1
	for i := range cl.addrs {
		if n, _ := presenceAPI(t, "http://"+cl.addrs[i], "info", `{}`)["polls_held"].(float64); n > 0 && victim < 0 {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatal("no process holds a tab's WebSocket")
	}
	catOn(t, cl.addrs[victim])
	events("join cat")
	if err := cl.nodes[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	events("leave cat")
	sessions(4)
	for _, tab := range []*demoTab{ann5, ann6, bob1, bob2} {
		waitUntil(t, "the tabs connected again", func() (bool, string) {
			s := evalJS[string](t, tab, `chat.state`)
			return s == "connected", s
		})
	}
	disconnectUser(t, web, "bob", []*demoTab{bob1, bob2}, []*demoTab{ann5, ann6})
	events("leave bob")
	waitUsers("ann", ann5, ann6)
}

// presenceAPI calls the server API's method at base (nginx or one process).
func presenceAPI(t *testing.T, base, method, body string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/comet/api/"+method, strings.NewReader(body))
	req.Header.Set("X-API-Key", presenceKey)
	c := &http.Client{Timeout: browserWait}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s", method, resp.Status, raw)
	}
	return out
}

// roomEvents are the joins and leaves kept in /chat/room's history, as
// "join ann".
func roomEvents(t *testing.T, web string) []string {
	t.Helper()
	out := presenceAPI(t, web, "history", `{"channel":"/chat/room","limit":1000}`)
	list, _ := out["messages"].([]any)
	var got []string
	for _, m := range list {
		data, _ := m.(map[string]any)["data"].(map[string]any)
		if typ, _ := data["type"].(string); strings.HasPrefix(typ, "stardust.") {
			got = append(got, strings.TrimPrefix(typ, "stardust.")+" "+fmt.Sprint(data["user"]))
		}
	}
	return got
}

func tabLog(t *testing.T, tab *demoTab) string {
	return evalJS[string](t, tab, `document.getElementById("log").textContent`)
}

// closeTab closes a tab as a person does: the page goes away.
func closeTab(t *testing.T, tab *demoTab) {
	t.Helper()
	if err := chromedp.Cancel(tab.ctx); err != nil {
		t.Fatalf("closing a tab: %v", err)
	}
}

// disconnectUser calls disconnect for user through nginx and checks that
// each of the user's tabs has stopped within a second (the page's
// ondisconnect ran, no reconnecting), and that the others' have not.
func disconnectUser(t *testing.T, web, user string, ended, kept []*demoTab) {
	t.Helper()
	start := time.Now()
	if out := presenceAPI(t, web, "disconnect", `{"user":"`+user+`"}`); out["clients"] != float64(len(ended)) {
		t.Errorf("disconnect %s: %v, want %d clients", user, out, len(ended))
	}
	for _, tab := range ended {
		for !strings.Contains(tabLog(t, tab), "disconnected by the server") || evalJS[string](t, tab, `chat.state`) != "disconnected" {
			if time.Since(start) > time.Second {
				t.Fatalf("%s's tab not ended within a second of disconnect: %s, log:\n%s", user, evalJS[string](t, tab, `chat.state`), tabLog(t, tab))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("disconnect of %s: both tabs ended %v after the call", user, time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second)
	for _, tab := range ended {
		if s := evalJS[string](t, tab, `chat.state`); s != "disconnected" {
			t.Errorf("%s's tab came back: %s", user, s)
		}
	}
	for _, tab := range kept {
		if s := evalJS[string](t, tab, `chat.state`); s != "connected" || strings.Contains(tabLog(t, tab), "disconnected by the server") {
			t.Errorf("another user's tab after disconnect of %s: %s, log:\n%s", user, s, tabLog(t, tab))
		}
	}
}

// catOn starts user cat's session on the process at addr alone, subscribed
// to the room, with a connect held there.
func catOn(t *testing.T, addr string) {
	t.Helper()
	b := newBayeuxHTTP(t)
	hs := b.post(t, addr, map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"},
		"ext": map[string]any{"token": tokentest.User("cat", time.Hour)}})
	id, _ := hs[0]["clientId"].(string)
	if id == "" {
		t.Fatalf("cat's handshake: %v", hs)
	}
	if r := b.post(t, addr, map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/chat/room"}); r[0]["successful"] != true {
		t.Fatalf("cat's subscribe: %v", r)
	}
	// The first connect, answered at once; then one held there until the
	// process dies.
	b.post(t, addr, map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"})
	go func() {
		body := `[{"channel":"/meta/connect","clientId":"` + id + `","connectionType":"long-polling"}]`
		if resp, err := b.client.Post("http://"+addr+"/comet/bayeux", "application/json", strings.NewReader(body)); err == nil {
			resp.Body.Close()
		}
	}()
}
