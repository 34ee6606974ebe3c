//go:build unix

package integration

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/internal/webhooktest"
	"github.com/stardust-go/stardust/server"
)

// TestReadmeWebhooks runs the docs' [webhooks] block (its url pointed at a
// receiver that checks every signature) in two stardust processes on one
// real redis-server: a channel with a subscriber on each is occupied once;
// the process holding one subscriber is SIGKILLed while the app is down,
// and the other sends what was queued and, once that subscriber timed
// out, its client_disconnected: each event once. The docs' openssl line
// computes the signature the server sends.
func TestReadmeWebhooks(t *testing.T) {
	block, secret := readmeTOMLKey(t, "[webhooks] block", "secret", func(b string) bool { return strings.HasPrefix(b, "[webhooks]") })
	rcv := webhooktest.New(t, secret)
	srv := redistest.Start(t)
	block = regexp.MustCompile(`url = "[^"]+"`).ReplaceAllString(block, `url = "`+rcv.URL+`"`)
	// A short POST timeout makes a short lease: the dead process's lease
	// runs out in 7s.
	cfg := block + "timeout = \"1s\"\n[engine]\ntype = \"redis\"\nredis_url = \"" + srv.URL + "\"\n[comet]\nclient_timeout = \"3s\"\n"
	path := filepath.Join(t.TempDir(), "stardust.toml")
	writeFile(t, path, cfg)
	bin := stardustBinary(t)
	var nodes []*process
	var clients []*cometClient
	for i := range 2 {
		addr := freeAddr(t)
		p := startProcess(t, fmt.Sprint("node", i), t.TempDir(), bin, "--config", path, "--listen", addr, "--timeout", "20s")
		p.waitListening(t, addr)
		nodes = append(nodes, p)
		clients = append(clients, newCometClient(t, "http://"+addr))
	}
	rcv.FailNext(1 << 30) // the app is down: events wait in Redis
	polls := []<-chan pollResult{clients[0].startPoll("room", "p0", 30*time.Second)}
	clients[0].waitSubscriber(t, "room", "p0")
	polls = append(polls, clients[1].startPoll("room", "p1", 30*time.Second))
	time.Sleep(500 * time.Millisecond)
	deadline := time.Now().Add(10 * time.Second)
	for srv.Do(t, "LLEN", "stardust:wq") != "1" {
		if time.Now().After(deadline) {
			t.Fatalf("queue in Redis: %s events, want 1 (channel_occupied)", srv.Do(t, "LLEN", "stardust:wq"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := nodes[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-polls[0]
	rcv.FailNext(0) // the app is back
	want := "[channel_occupied /stardust/room client_disconnected]"
	got := rcv.Wait(2, 40*time.Second)
	time.Sleep(2 * time.Second) // a second copy would come by now
	if got = rcv.Sorted(); fmt.Sprint(got) != want {
		t.Errorf("events: %v, want %s", got, want)
	}
	for _, e := range rcv.Events() {
		if e.Name == "client_disconnected" && e.ClientID != "p0" {
			t.Errorf("client_disconnected of %q, want p0 (the dead node's)", e.ClientID)
		}
	}
	rcv.Check(t)
	clients[1].publish(t, "room", `{"end":1}`) // lets p1's poll go
	<-polls[1]

	// The docs' example body is what the receiver reads.
	var example struct {
		TimeMS int64               `json:"time_ms"`
		Events []webhooktest.Event `json:"events"`
	}
	if err := json.Unmarshal([]byte(readmeBlock(t, "json", `"time_ms"`)), &example); err != nil || example.TimeMS == 0 || len(example.Events) == 0 {
		t.Errorf("the docs' example body: %v %+v", err, example)
	}
	for _, e := range example.Events {
		if !slices.Contains(server.WebhookEvents, e.Name) || e.ID == "" {
			t.Errorf("the docs' example event %+v", e)
		}
	}

	body := `{"time_ms":1,"events":[]}`
	out := runScript(t, readmeShBlock(t, "# the signature of a webhook body"), time.Minute,
		"BODY="+body, "STARDUST_WEBHOOK_SECRET="+secret)
	if want := server.WebhookSignature(secret, []byte(body)); strings.TrimSpace(out) != want {
		t.Errorf("the docs' openssl line gives %q, want %q", out, want)
	}
}

// readmeTOMLKey returns the last ```toml block of the docs that match
// accepts, and the quoted value of its key (what the docs' commands then
// use, such as an API key), failing the test when there is none.
func readmeTOMLKey(t *testing.T, what, key string, match func(string) bool) (block, value string) {
	t.Helper()
	for _, b := range readmeBlocks(t, "toml") {
		if match(b) {
			block = b
		}
	}
	v := regexp.MustCompile(`(?m)^` + key + ` = "([^"]+)"`).FindStringSubmatch(block)
	if v == nil {
		t.Fatalf("the docs have no %s with a %s", what, key)
	}
	return block, v[1]
}
