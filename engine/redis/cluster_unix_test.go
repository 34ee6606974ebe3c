//go:build unix

package redis_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// TestClusterHungMaster: the master of the site's slot hangs (SIGSTOP: its
// connections stay open and it answers nothing) and the Cluster promotes
// its replica. The engine's pub/sub connection, on the hung node, is not
// cut by the node and brings nothing; rueidis's keep-alive (a PING on an
// idle connection, given up after the engine's timeout) ends it, and the
// engine moves to the new master: held polls are woken by what is
// published there, while the old master still hangs.
func TestClusterHungMaster(t *testing.T) {
	c := redistest.StartCluster(t)
	e := openCluster(t, c, "hung:", server.Limits{HistorySize: 10})
	master, _ := c.SlotNodes(t, e.Prefix())
	lostSessions(t, e)
	master.Pause()
	defer master.Resume()
	promoted := c.WaitSlotMaster(t, e.Prefix(), master)
	heldPollCarriesOn(t, e, promoted, time.Now(), "the hung node")
}

// heldPollCarriesOn publishes until the slot's new master promoted (seen
// at at) takes publishes, within 10 s of at, then checks that a watch of
// the /public reader "pub" is woken by a publish there within 10 s: the
// engine's pub/sub connection left the old master (the node named by old)
// for it.
func heldPollCarriesOn(t *testing.T, e *redis.Engine, promoted *redistest.Server, at time.Time, old string) {
	t.Helper()
	var err error
	for time.Since(at) < 10*time.Second { // publishes work again there
		if _, err = e.Publish(ctx, &server.Message{Channel: "/public", Data: []byte(`{"public":0}`)}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("publishing on the promoted master %s: %v", promoted.Addr, err)
	}
	wakes, stop := watchWakes(e, "pub")
	defer stop()
	drain := time.After(200 * time.Millisecond)
	for done := false; !done; {
		select {
		case <-wakes:
		case <-drain:
			done = true
		}
	}
	// Publish until a publish wakes the watch (each try 1 s apart): the
	// engine must have moved its pub/sub connection to the new master. A
	// publish may still fail now and then while a partition lasts: rueidis
	// takes its slot map from the first node that answers, the cut-off
	// master's stale one among them, and a call that meets only that for
	// its whole timeout is refused (docs/scaling.md); it is tried again.
	deadline := time.Now().Add(10 * time.Second)
	refused := 0
	for n := 1; ; n++ {
		if _, err := e.Publish(ctx, &server.Message{Channel: "/public", Data: []byte(`{"public":1}`)}); err != nil {
			refused++
			t.Logf("try %d: publish refused: %v", n, err)
		} else {
			select {
			case <-wakes:
				t.Logf("a publish woke the watch %v after the promotion was seen (try %d)", time.Since(at).Round(time.Millisecond), n)
				return
			case <-time.After(time.Second):
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no publish on the new master %s woke a held poll within 10 s (%d of %d refused): the pub/sub connection stayed on %s", promoted.Addr, refused, n, old)
		}
	}
}

// TestClusterPartitionedMaster: the master of the site's slot is cut off
// the cluster bus (a partition) while the engine still reaches it. The
// other masters promote its replica; the old master, missing them, answers
// CLUSTERDOWN to every command but keeps its connections. The engine's
// pub/sub connection, on that node, must leave it for the new master, so
// that held polls are woken by what is published there while the
// partition lasts. It stayed before (only MOVED made it move).
func TestClusterPartitionedMaster(t *testing.T) {
	c := redistest.StartPartitionableCluster(t)
	e := openCluster(t, c, "part:", server.Limits{HistorySize: 10})
	master, _ := c.SlotNodes(t, e.Prefix())
	lostSessions(t, e)
	c.Partition(t, master)
	defer c.Heal(t, master)
	promoted := c.WaitSlotMaster(t, e.Prefix(), master)
	at := time.Now()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(master.Try("EXISTS", "x"), "CLUSTERDOWN"); {
		if time.Now().After(deadline) {
			t.Fatalf("the partitioned master %s does not answer CLUSTERDOWN within 10 s: %s", master.Addr, master.Try("EXISTS", "x"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	heldPollCarriesOn(t, e, promoted, at, "the partitioned node")
}
