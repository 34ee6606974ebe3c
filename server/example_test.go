package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/stardust-go/stardust/server"
)

// quiet is a logger for the examples: a real program passes its own.
func quiet() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return logrus.NewEntry(l)
}

// Embedding: the server is an http.Handler. Serve it with net/http (here
// httptest, on a free port), publish through the Stardust API and read
// the channel back.
func ExampleNew() {
	srv := server.New(server.Options{Base: "/comet", Hub: server.HubOptions{HistorySize: 10}}, quiet())
	defer srv.Close()
	web := httptest.NewServer(srv) // or http.ListenAndServe("127.0.0.1:8080", srv)
	defer web.Close()

	resp, err := http.Post(web.URL+"/comet/channel/news", "application/json", strings.NewReader(`{"text":"hello"}`))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	resp, err = http.Get(web.URL + "/comet/channel/news")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var info []struct {
		Name     string
		Messages []map[string]any
	}
	_ = json.NewDecoder(resp.Body).Decode(&info)
	fmt.Println(info[0].Name, len(info[0].Messages), info[0].Messages[0]["text"])
	// Output: news 1 hello
}

// A local client: code in the same process that subscribes and publishes
// with no HTTP, no handshake and no ACL (the POE reply-bot). Its handler
// runs on a goroutine of its own, one message at a time.
func ExampleHub_NewLocalClient() {
	srv := server.New(server.Options{}, quiet())
	defer srv.Close()
	got := make(chan *server.Message, 1)
	bot, err := srv.Hub().NewLocalClient("bot", func(m *server.Message) { got <- m })
	if err != nil {
		panic(err)
	}
	defer bot.Close()
	_ = bot.Subscribe("/chat/**") // a pattern: every channel under /chat

	// Any publish reaches it: here the in-process one, with no client.
	_, _ = srv.Hub().Publish(&server.Message{Channel: "/chat/room1", Data: json.RawMessage(`{"text":"hi"}`)})
	m := <-got
	fmt.Println(m.Channel, string(m.Data))
	// Output: /chat/room1 {"text":"hi"}
}

// A service: a Bayeux publish to /service/NAME calls it, and what it
// returns goes to the caller alone, on its next connect.
func ExampleService() {
	upper := func(c *server.Client, m *server.BayeuxMessage) (any, error) {
		var in struct{ Text string }
		if err := json.Unmarshal(m.Data, &in); err != nil {
			return nil, errors.New("want {\"text\":…}")
		}
		return map[string]string{"text": strings.ToUpper(in.Text)}, nil
	}
	srv := server.New(server.Options{Bayeux: &server.BayeuxOptions{
		Services: map[string]server.Service{"upper": upper},
	}}, quiet())
	defer srv.Close()
	web := httptest.NewServer(srv)
	defer web.Close()

	b := newBayeux(web.URL + "/comet/bayeux")
	id := b.post(map[string]any{"channel": "/meta/handshake", "version": "1.0",
		"supportedConnectionTypes": []string{"long-polling"}})[0]["clientId"]
	b.post(map[string]any{"channel": "/service/upper", "clientId": id, "data": map[string]string{"text": "hello"}})
	for _, m := range b.post(map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling"}) {
		if m["channel"] == "/service/upper" {
			fmt.Println(m["data"])
		}
	}
	// Output: map[text:HELLO]
}

// A custom ACL: every Bayeux message, the handshake included, passes the
// MessageACL first; an error refuses it with 403. ChainACL runs several,
// the configuration file's (RulesACL, HandshakeAuth) and your own.
func ExampleChainACL() {
	tokenOnHandshake := func(c *server.Client, m *server.BayeuxMessage) error {
		if m.Channel == "/meta/handshake" && m.ExtString("token") != "s3cret" {
			return errors.New("bad token")
		}
		return nil
	}
	noAdmin := func(c *server.Client, m *server.BayeuxMessage) error {
		for _, ch := range append([]string{m.Channel}, m.Subscriptions...) { // a publish, or a subscribe
			if strings.HasPrefix(ch, "/admin/") {
				return errors.New("admins only")
			}
		}
		return nil
	}
	srv := server.New(server.Options{Bayeux: &server.BayeuxOptions{
		MessageACL: server.ChainACL(tokenOnHandshake, noAdmin),
	}}, quiet())
	defer srv.Close()
	web := httptest.NewServer(srv)
	defer web.Close()

	hs := map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}}
	fmt.Println(newBayeux(web.URL + "/comet/bayeux").post(hs)[0]["error"])
	hs["ext"] = map[string]string{"token": "s3cret"}
	b := newBayeux(web.URL + "/comet/bayeux")
	id := b.post(hs)[0]["clientId"]
	fmt.Println(b.post(map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/admin/log"})[0]["error"])
	fmt.Println(b.post(map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/news"})[0]["successful"])
	// Output:
	// 403:handshake:forbidden: bad token
	// 403:/admin/log:forbidden: admins only
	// true
}

// bayeux posts Bayeux messages as a browser would, keeping its cookies.
type bayeux struct {
	url string
	hc  *http.Client
}

func newBayeux(url string) *bayeux {
	jar, _ := cookiejar.New(nil)
	return &bayeux{url: url, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

func (b *bayeux) post(msg map[string]any) []map[string]any {
	body, _ := json.Marshal([]any{msg})
	resp, err := b.hc.Post(b.url, "application/json", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var out []map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return out
}
