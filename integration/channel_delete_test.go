//go:build unix

package integration

import (
	"strings"
	"testing"
	"time"
)

// TestReadmeChannelDelete runs the docs' DELETE snippet against a real
// process: the held poll of the channel gets the notice, and the channel's
// history is gone.
func TestReadmeChannelDelete(t *testing.T) {
	t.Parallel()
	base := startStardust(t, "--timeout", "10s")
	c := newCometClient(t, strings.TrimSuffix(base, "/comet"))
	c.publish(t, "foo", `{"n":1}`)
	if r := <-c.startPoll("foo", "d1", 15*time.Second); r.err != nil { // registers d1, with the history
		t.Fatal(r.err)
	}
	held := c.startPoll("foo", "d1", 15*time.Second)
	c.waitSubscriber(t, "foo", "d1")
	out := runScript(t, readmeShBlock(t, "# delete channel foo"), time.Minute, "STARDUST="+base)
	if out != `{"ok":true,"channels":["foo"],"unsubscribed":1,"history":1}`+"\n" {
		t.Errorf("the docs' DELETE answered %s", out)
	}
	r := <-held
	if r.err != nil || !strings.Contains(string(r.body), `"type":"stardust.channel_deleted"`) {
		t.Errorf("the held poll got %d %s (%v), want the notice", r.status, r.body, r.err)
	}
	_, body, err := c.request("GET", "/comet/channel/foo", nil, 5*time.Second)
	if err != nil || !strings.Contains(string(body), `"messages":[]`) {
		t.Errorf("the channel after DELETE: %s (%v)", body, err)
	}
}
