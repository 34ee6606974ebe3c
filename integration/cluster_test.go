//go:build unix

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/redistest"
)

// cluster is three stardust processes with the Redis engine, sharing one
// real redis-server, behind a real nginx running conf/nginx/cluster.conf
// (round robin, no stickiness), started from the shipped files with only
// their placeholders rewritten.
type cluster struct {
	redis  *redistest.Server // on a Redis Cluster, the master of the site's slot
	prefix string            // the keys' prefix in Redis
	nodes  []*process
	addrs  []string // each node's own address
	web    string   // nginx's address
	api    *cometClient
}

const clusterHold = 5 * time.Second

// clusterSetup is what a test adds to the shipped files.
type clusterSetup struct {
	config string            // TOML appended to conf/stardust-redis.toml
	site   map[string]string // files of the site nginx serves, by name
	// redisCluster runs the nodes on a Redis Cluster of three masters
	// (rediscluster_test.go) rather than one redis-server.
	redisCluster bool
	// redisShards, above 1 with redisCluster, splits the site into that
	// many shards (engine.redis_shards).
	redisShards int
}

func startCluster(t *testing.T) *cluster { return startClusterWith(t, clusterSetup{}) }

func startClusterWith(t *testing.T, setup clusterSetup) *cluster {
	t.Helper()
	nginx := requireProgram(t, "nginx", "nginx")
	cl := &cluster{prefix: "stardust:"}
	if setup.redisCluster {
		cl.redis, cl.prefix, setup.config = onRedisCluster(t, setup.config, setup.redisShards) // rediscluster_test.go
	} else {
		cl.redis = redistest.Start(t)
	}
	bin := stardustBinary(t)
	dir := sharedTempDir(t)
	root := repoRoot(t)

	cfg := rewritePlaceholders(t, "conf/stardust-redis.toml", readFile(t, filepath.Join(root, "conf", "stardust-redis.toml")),
		"redis://127.0.0.1:6379/0", cl.redis.URL)
	cfgPath := filepath.Join(dir, "stardust-redis.toml")
	writeFile(t, cfgPath, cfg+setup.config)
	site := readFile(t, filepath.Join(root, "conf", "nginx", "cluster.conf"))
	// The header's own commands start the nodes: only their addresses change.
	cmds := headerCommands(site, "stardust")
	var starts [][]string
	for _, c := range cmds {
		if strings.Contains(strings.Join(c, " "), "--listen") {
			starts = append(starts, c)
		}
	}
	if len(starts) != 3 {
		t.Fatalf("cluster.conf: want three \"#   stardust --config ... --listen\" lines in the header, found %d", len(starts))
	}
	pairs := []string{}
	for i, words := range starts {
		addr := freeAddr(t)
		cl.addrs = append(cl.addrs, addr)
		args := []string{bin}
		for j := 1; j < len(words); j++ {
			switch {
			case strings.HasPrefix(words[j], "/etc/stardust/"):
				args = append(args, cfgPath)
			case words[j-1] == "--listen":
				pairs = append(pairs, words[j], addr)
				args = append(args, addr)
			default:
				args = append(args, words[j])
			}
		}
		args = append(args, "--timeout", clusterHold.String(), "--log-level", "info")
		p := startProcess(t, fmt.Sprintf("node%d", i+1), dir, args...)
		p.waitListening(t, addr)
		cl.nodes = append(cl.nodes, p)
	}
	siteRoot := filepath.Join(dir, "site")
	writeFile(t, filepath.Join(siteRoot, "index.html"), "<!doctype html><title>cluster</title>\n")
	for name, content := range setup.site {
		writeFile(t, filepath.Join(siteRoot, name), content)
	}
	cl.web = freeAddr(t)
	site = rewritePlaceholders(t, "conf/nginx/cluster.conf", site,
		append(pairs, webServerListenPlaceholder("nginx"), webServerListen("nginx", cl.web), placeholderSiteRoot, siteRoot)...)
	web := startWebServer(t, "nginx", nginx, dir, site, cl.web)
	web.waitListening(t, cl.web)
	cl.api = newCometClient(t, "http://"+cl.web)
	cl.api.waitReady(t)
	return cl
}

// node returns a client of node i alone, bypassing nginx.
func (cl *cluster) node(t *testing.T, i int) *cometClient {
	return newCometClient(t, "http://"+cl.addrs[i])
}

// pollNumbers polls a stream once and returns the "n" of each message.
func pollNumbers(t *testing.T, c *cometClient, channel, id string) ([]int, error) {
	t.Helper()
	resp, body, err := c.request("GET", "/comet/channel/"+channel+"/stream/"+id, nil, clusterHold+10*time.Second)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("poll: %s %s", resp.Status, body)
	}
	var msgs []struct {
		N    *int   `json:"n"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(body, &msgs); err != nil {
		return nil, fmt.Errorf("poll answer %s: %v", body, err)
	}
	var out []int
	for _, m := range msgs {
		if m.N != nil {
			out = append(out, *m.N)
		}
	}
	return out, nil
}

func TestCluster(t *testing.T) {
	t.Parallel()
	clusterTests(t, startCluster(t))
}

// clusterTests are TestCluster's cases, on one Redis or on a Redis Cluster.
func clusterTests(t *testing.T, cl *cluster) {

	// Each poll of one stream id goes to the next node; a publisher posts
	// through nginx meanwhile. Every message arrives once, in order.
	t.Run("stardust-any-node", func(t *testing.T) {
		const total = 30
		if _, err := pollNumbers(t, cl.node(t, 0), "cl", "7.1"); err != nil { // registers, then holds
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range total {
				cl.api.publish(t, "cl", fmt.Sprintf(`{"n":%d}`, i))
				time.Sleep(15 * time.Millisecond)
			}
		}()
		var got []int
		deadline := time.Now().Add(60 * time.Second)
		for i := 0; len(got) < total && time.Now().Before(deadline); i++ {
			ns, err := pollNumbers(t, cl.node(t, i%3), "cl", "7.1")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ns...)
		}
		<-done
		want := make([]int, total)
		for i := range want {
			want[i] = i
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("received %v, want each of 0..%d once, in order", got, total-1)
		}
	})

	// An SSE stream resumes on another node with Last-Event-ID: one global
	// sequence means the same ids everywhere.
	t.Run("sse-resume-elsewhere", func(t *testing.T) {
		first := openSSE(t, cl.addrs[0], "sr", "", "tab")
		cl.api.waitSubscriber(t, "sr", "tab")
		cl.api.publish(t, "sr", `{"n":1}`)
		id, data := first.next(t)
		if !strings.Contains(data, `"n":1`) {
			t.Fatalf("first stream got %q", data)
		}
		first.close()
		cl.api.publish(t, "sr", `{"n":2}`)
		cl.api.publish(t, "sr", `{"n":3}`)
		second := openSSE(t, cl.addrs[1], "sr", id, "tab")
		defer second.close()
		_, d2 := second.next(t)
		_, d3 := second.next(t)
		if !strings.Contains(d2, `"n":2`) || !strings.Contains(d3, `"n":3`) {
			t.Fatalf("resumed on another node: %q, %q; want 2 then 3", d2, d3)
		}
	})

	// A Bayeux client handshakes on node 1, subscribes on node 2, connects
	// on node 3, and gets a message published on node 1.
	t.Run("bayeux-any-node", func(t *testing.T) {
		b := newBayeuxHTTP(t)
		id := b.handshake(t, cl.addrs[0], false)
		b.call(t, cl.addrs[1], map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/cl/b"})
		b.call(t, cl.addrs[0], map[string]any{"channel": "/cl/b", "clientId": id, "data": map[string]any{"n": 1}})
		data, _ := b.connect(t, cl.addrs[2], id, -1)
		if fmt.Sprint(data) != "[map[n:1]]" {
			t.Fatalf("connect on node 3 got %v", data)
		}
	})

	// CometD's and Faye's own clients through nginx's round robin.
	t.Run("clients", func(t *testing.T) {
		requireNode(t)
		for _, client := range []string{"cometd", "faye"} {
			for _, transport := range []string{"long-polling", "websocket"} {
				t.Run(client+"/"+transport, func(t *testing.T) {
					t.Parallel()
					runScenario(t, "--client", client, "--url", "http://"+cl.web+"/comet/bayeux",
						"--transport", transport, "--scenario", "full", "--timeout-ms", "60000")
				})
			}
		}
		// CometD's own AckExtension against this server's: every message of
		// the scenario comes in numbered, acknowledged batches.
		for _, transport := range []string{"long-polling", "websocket"} {
			t.Run("cometd-ack/"+transport, func(t *testing.T) {
				t.Parallel()
				lines, err := runScenario(t, "--client", "cometd", "--ack", "--url", "http://"+cl.web+"/comet/bayeux",
					"--transport", transport, "--scenario", "full", "--timeout-ms", "60000")
				if err != nil {
					return
				}
				if acks := scenarioSteps(lines, "ack"); len(acks) == 0 || acks[0]["server"] != true {
					t.Errorf("the handshake did not enable acks: %v", acks)
				}
				if len(scenarioSteps(lines, "ack-batch")) == 0 {
					t.Error("no connect reply carried a batch number")
				}
			})
		}
	})

	// With the ack extension, a batch whose reply was lost (the node died
	// before the client read it) comes again from another node, and once
	// acknowledged, never again.
	t.Run("ack-exactly-once", func(t *testing.T) {
		b := newBayeuxHTTP(t)
		id := b.handshake(t, cl.addrs[1], true)
		b.call(t, cl.addrs[1], map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/cl/ack"})
		for i := 1; i <= 3; i++ {
			b.call(t, cl.addrs[2], map[string]any{"channel": "/cl/ack", "clientId": id, "data": map[string]any{"n": i}})
		}
		lost, batch := b.connect(t, cl.addrs[1], id, -1)
		if len(lost) != 3 || batch < 0 {
			t.Fatalf("first batch %v (ext.ack %d)", lost, batch)
		}
		again, batch2 := b.connect(t, cl.addrs[2], id, -1)
		if fmt.Sprint(again) != fmt.Sprint(lost) || batch2 != batch {
			t.Fatalf("unacknowledged batch from another node: %v (ext.ack %d), want %v (%d)", again, batch2, lost, batch)
		}
		b.call(t, cl.addrs[0], map[string]any{"channel": "/cl/ack", "clientId": id, "data": map[string]any{"n": 4}})
		next, _ := b.connect(t, cl.addrs[0], id, batch)
		if fmt.Sprint(next) != "[map[n:4]]" {
			t.Fatalf("after acknowledging batch %d: %v, want only n=4", batch, next)
		}
	})

	// SIGKILL the node a client is polling: what is published meanwhile
	// reaches it through another node, in order; a Bayeux session made on
	// the dead node carries on without a new handshake; nginx routes around
	// the dead node.
	t.Run("kill-a-node", func(t *testing.T) {
		b := newBayeuxHTTP(t)
		bid := b.handshake(t, cl.addrs[0], false)
		b.call(t, cl.addrs[0], map[string]any{"channel": "/meta/subscribe", "clientId": bid, "subscription": "/stardust/kl"})
		if _, err := pollNumbers(t, cl.node(t, 1), "kl", "9.9"); err != nil { // registers the stream id
			t.Fatal(err)
		}
		held := cl.node(t, 0).startPoll("kl", "9.9", clusterHold+10*time.Second)
		waitHeldPolls(t, cl.node(t, 0), 1)
		if err := cl.nodes[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if r := <-held; r.err == nil && r.status == http.StatusOK && len(r.body) > 3 {
			t.Fatalf("the killed node answered: %d %s", r.status, r.body)
		}
		for i := range 5 {
			cl.node(t, 1).publish(t, "kl", fmt.Sprintf(`{"n":%d}`, i))
		}
		got, err := pollNumbers(t, cl.node(t, 2), "kl", "9.9")
		if err != nil || fmt.Sprint(got) != "[0 1 2 3 4]" {
			t.Fatalf("after the kill, another node answered %v (%v), want [0 1 2 3 4]", got, err)
		}
		data, _ := b.connect(t, cl.addrs[2], bid, -1)
		if len(data) != 5 {
			t.Fatalf("the Bayeux session of the dead node got %v on another node, want the 5 messages", data)
		}
		for i := range 6 { // every request through nginx still succeeds
			resp, body, err := cl.api.request("GET", "/comet/", nil, 10*time.Second)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("request %d through nginx after the kill: %v %s", i, err, body)
			}
		}
	})

	// A Bayeux client of the ack extension that keeps to one node is
	// served from that node's memory (its mirror; issue 21): its cursor
	// reaches Redis only in batches. SIGKILL that node right after a
	// delivery: another node honours the client's ack, so nothing comes
	// twice, and nothing is lost.
	t.Run("kill-while-mirrored", func(t *testing.T) {
		b := newBayeuxHTTP(t)
		id := b.handshake(t, cl.addrs[1], true)
		b.call(t, cl.addrs[1], map[string]any{"channel": "/meta/subscribe", "clientId": id, "subscription": "/stardust/km"})
		var got []any
		batch := -1
		for i := range 5 {
			cl.node(t, 2).publish(t, "km", fmt.Sprintf(`{"n":%d}`, i))
			var data []any
			data, batch = b.connectHeld(t, cl.addrs[1], id, batch, clusterHold)
			got = append(got, data...)
		}
		if mirrored := cl.redis.Do(t, "HEXISTS", cl.prefix+"s:"+id, "o"); mirrored != "1" {
			t.Errorf("five connects in a row on one node: the session is not mirrored there (HEXISTS o = %s)", mirrored)
		}
		if err := cl.nodes[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		again, _ := b.connect(t, cl.addrs[2], id, batch) // with the ack of the last batch it got
		got = append(got, again...)
		cl.node(t, 2).publish(t, "km", `{"n":5}`)
		after, _ := b.connectHeld(t, cl.addrs[2], id, batch, clusterHold)
		got = append(got, after...)
		if want := "[map[n:0] map[n:1] map[n:2] map[n:3] map[n:4] map[n:5]]"; fmt.Sprint(got) != want {
			t.Errorf("across the kill the client got %v, want %s: each once", got, want)
		}
	})
}

// waitHeldPolls waits until a node holds n polls ({base}/stats counts the
// node's own; the figure is at most a second old).
func waitHeldPolls(t *testing.T, c *cometClient, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body, err := c.request("GET", "/comet/stats", nil, 5*time.Second)
		var st struct {
			PollsHeld int `json:"polls_held"`
		}
		if err == nil && resp.StatusCode == http.StatusOK && json.Unmarshal(body, &st) == nil && st.PollsHeld >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node never held %d polls: %v %s", n, err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sseStream is an open EventSource-like stream.
type sseStream struct {
	resp *http.Response
	r    *bufio.Reader
}

func openSSE(t *testing.T, addr, channel, lastID, id string) *sseStream {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/comet/channel/"+channel+"/events?id="+id, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE: %s", resp.Status)
	}
	return &sseStream{resp: resp, r: bufio.NewReader(resp.Body)}
}

// next returns the next event's id and data.
func (s *sseStream) next(t *testing.T) (id, data string) {
	t.Helper()
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("SSE stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "" && data != "":
			return id, data
		}
	}
}

func (s *sseStream) close() { s.resp.Body.Close() }

// bayeuxHTTP speaks Bayeux long-polling to any node, keeping cookies as a
// browser does.
type bayeuxHTTP struct {
	client *http.Client
}

func newBayeuxHTTP(t *testing.T) *bayeuxHTTP {
	jar, _ := cookiejar.New(nil)
	return &bayeuxHTTP{client: &http.Client{Jar: jar, Timeout: clusterHold + 15*time.Second}}
}

// post sends msgs as one batch to addr and returns the replies, failing the
// test if there are none.
func (b *bayeuxHTTP) post(t *testing.T, addr string, msgs ...map[string]any) []map[string]any {
	t.Helper()
	out, err := b.tryPost(context.Background(), addr, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tryPost sends msgs as one batch to addr and returns the replies, or why
// there are none. An answer of any status is read as Bayeux: a refusal
// (a 503 with retry advice) has replies too.
func (b *bayeuxHTTP) tryPost(ctx context.Context, addr string, msgs ...map[string]any) ([]map[string]any, error) {
	body, _ := json.Marshal(msgs)
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/comet/bayeux", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST to %s: %w", addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("answer of %s: %s: %w", addr, resp.Status, err)
	}
	var out []map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("answer of %s: %s %s", addr, resp.Status, raw)
	}
	return out, nil
}

// call sends one message and fails the test unless it succeeded.
func (b *bayeuxHTTP) call(t *testing.T, addr string, m map[string]any) map[string]any {
	t.Helper()
	for _, r := range b.post(t, addr, m) {
		if r["channel"] == m["channel"] {
			if r["successful"] != true {
				t.Fatalf("%v on %s: %v", m["channel"], addr, r)
			}
			return r
		}
	}
	t.Fatalf("no reply to %v from %s", m["channel"], addr)
	return nil
}

func (b *bayeuxHTTP) handshake(t *testing.T, addr string, ack bool) string {
	t.Helper()
	m := map[string]any{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": []string{"long-polling"}}
	if ack {
		m["ext"] = map[string]any{"ack": true}
	}
	return b.call(t, addr, m)["clientId"].(string)
}

// connect sends a connect that returns at once (advice timeout 0), with
// ext.ack, and returns the data of the messages it brought and
// its ext.ack (-1 if none).
func (b *bayeuxHTTP) connect(t *testing.T, addr, id string, ack int) ([]any, int) {
	t.Helper()
	return b.connectHeld(t, addr, id, ack, 0)
}

// connectHeld is connect with a hold of up to hold (0: none): a held
// connect is watched by the node, as a browser's are.
func (b *bayeuxHTTP) connectHeld(t *testing.T, addr, id string, ack int, hold time.Duration) ([]any, int) {
	t.Helper()
	m := map[string]any{"channel": "/meta/connect", "clientId": id, "connectionType": "long-polling",
		"advice": map[string]any{"timeout": hold.Milliseconds()}}
	m["ext"] = map[string]any{"ack": ack} // ignored for a client without the extension
	var data []any
	batch := -1
	for _, r := range b.post(t, addr, m) {
		if r["channel"] == "/meta/connect" {
			if r["successful"] != true {
				t.Fatalf("connect on %s: %v", addr, r)
			}
			if ext, ok := r["ext"].(map[string]any); ok {
				if n, ok := ext["ack"].(float64); ok {
					batch = int(n)
				}
			}
			continue
		}
		if _, ok := r["data"]; ok {
			data = append(data, r["data"])
		}
	}
	return data, batch
}
