package redis_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
)

// After Redis lost data, sequence numbers are handed out again: a message
// this process decoded and cached under a number must never answer for
// another message of the same number. These tests publish on /secret, make
// Redis lose it in each way it can, publish on /public, and check that a
// /public subscriber gets its own message, that the sequence does not name
// two messages, and that sessions of the lost data are treated as lost.

var ctx = context.Background()

// lostSetup is an engine with a /public reader ("pub") and a /secret
// reader ("sec"), both of which have fetched and committed what there was.
func lostSetup(t *testing.T, srv *redistest.Server, url string) (*redis.Engine, rueidis.Client) {
	t.Helper()
	admin := adminOf(t, srv)
	e := open(t, url, "lost:", server.Limits{HistorySize: 10})
	lostSessions(t, e)
	return e, admin
}

// lostSessions makes the /public reader "pub" and the /secret reader "sec".
func lostSessions(t *testing.T, e server.Engine) {
	t.Helper()
	for id, ch := range map[string]string{"pub": "/public", "sec": "/secret"} {
		if err := e.CreateSession(ctx, server.Session{ID: id, Kind: server.KindBayeux, Timeout: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Subscribe(ctx, id, ch); err != nil {
			t.Fatal(err)
		}
	}
}

func adminOf(t *testing.T, srv *redistest.Server) rueidis.Client {
	t.Helper()
	admin, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	return admin
}

func publishOn(t *testing.T, e server.Engine, channel, data string) *server.Message {
	t.Helper()
	m := &server.Message{Channel: channel, Data: json.RawMessage(data)}
	if _, err := e.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	return m
}

// readAll fetches and commits a session's messages.
func readAll(t *testing.T, e server.Engine, id string) ([]*server.Message, error) {
	t.Helper()
	b, err := e.Fetch(ctx, id, 0)
	if err != nil {
		return nil, err
	}
	if err := e.Commit(ctx, id, b.Cursor); err != nil {
		t.Fatal(err)
	}
	return b.Messages, nil
}

// checkPublic publishes on /public after the loss and checks what a
// /public reader gets: its own message only, under a number never used.
func checkPublic(t *testing.T, e server.Engine, secret *server.Message) {
	t.Helper()
	if err := e.CreateSession(ctx, server.Session{ID: "pub2", Kind: server.KindBayeux, Timeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Subscribe(ctx, "pub2", "/public"); err != nil {
		t.Fatal(err)
	}
	m := publishOn(t, e, "/public", `{"public":2}`)
	same := true // one sequence, or (a sharded site) /public and /secret numbered by one shard
	if sp, ok := e.(server.SequenceSpaces); ok {
		same = sp.SameSpace(m.Seq, secret.Seq)
	}
	if m.Seq <= secret.Seq && same || m.Seq == secret.Seq {
		t.Errorf("the /public message after the loss has seq %d; the lost /secret one had %d: a number names two messages", m.Seq, secret.Seq)
	}
	for _, id := range []string{"pub", "pub2"} {
		msgs, err := readAll(t, e, id)
		for _, got := range msgs {
			if got.Channel != "/public" || string(got.Data) != `{"public":2}` {
				t.Errorf("%s, subscribed to /public, got %s %s (seq %d)", id, got.Channel, got.Data, got.Seq)
			}
		}
		if id == "pub2" && (err != nil || len(msgs) != 1) {
			t.Errorf("a new /public reader got %d messages, %v; want its one", len(msgs), err)
		}
	}
}

// TestNoForeignMessageAfterFlush: FLUSHALL under a running engine (its
// connections stay up; nothing tells it).
func TestNoForeignMessageAfterFlush(t *testing.T) {
	srv := redistest.Start(t)
	e, admin := lostSetup(t, srv, srv.URL)
	checkPublic(t, e, flushUnder(t, e, admin))
}

// flushUnder publishes on /secret and reads it ("sec"), then empties
// Redis (FLUSHALL) under the engine: the /public reader "pub" must then
// be unknown. It returns the /secret message.
func flushUnder(t *testing.T, e server.Engine, admin rueidis.Client) *server.Message {
	t.Helper()
	secret := publishRead(t, e, "/secret", `{"secret":1}`, "sec")
	if err := admin.Do(ctx, admin.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Fetch(ctx, "pub", 0); !errors.Is(err, server.ErrUnknownClient) {
		t.Errorf("Fetch of a session Redis lost: %v; want ErrUnknownClient", err)
	}
	return secret
}

// TestNoForeignMessageAfterOlderSnapshot: Redis is SIGKILLed and starts
// again from a snapshot older than its last messages. The epoch key is in
// the snapshot; only the run id and the sequence going back tell.
func TestNoForeignMessageAfterOlderSnapshot(t *testing.T) {
	srv := redistest.Start(t)
	e, admin := lostSetup(t, srv, srv.URL)
	publishRead(t, e, "/public", `{"public":1}`, "pub")
	if err := admin.Do(ctx, admin.B().Save().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	loseSecret(t, e, "from the older snapshot", func() { srv.Restart(0) })
}

// TestNoForeignMessageAfterFailover: a replica that missed the last
// messages is promoted, and the engine's address now leads to it (as
// Sentinel or a virtual address would). The epoch key is on the replica;
// the run id and the sequence going back tell.
func TestNoForeignMessageAfterFailover(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	proxy := redistest.StartProxy(t, master)
	e, admin := lostSetup(t, master, proxy.URL)
	publishRead(t, e, "/public", `{"public":1}`, "pub")
	if n, err := admin.Do(ctx, admin.B().Wait().Numreplicas(1).Timeout(5000).Build()).AsInt64(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d, %v", n, err)
	}
	// The replica stops following (the lag), and is promoted.
	radmin := adminOf(t, replica)
	if err := radmin.Do(ctx, radmin.B().Replicaof().No().One().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	loseSecret(t, e, "on the lagging replica", func() {
		master.Stop()
		proxy.Switch(replica)
	})
}

// loseSecret publishes on /secret and reads it ("sec"), runs restart
// (after which Redis has lost that message: what, in the errors) while the
// /public reader "pub" is watched, and checks that the engine saw the loss:
// "pub" is unknown and starts again, and a new /public message is no
// number of the lost one.
func loseSecret(t *testing.T, e server.Engine, what string, restart func()) {
	t.Helper()
	secret := publishRead(t, e, "/secret", `{"secret":1}`, "sec")
	restartAndWait(t, e, "pub", restart)
	if _, err := e.Fetch(ctx, "pub", 0); !errors.Is(err, server.ErrUnknownClient) {
		t.Errorf("Fetch of a session %s: %v; want ErrUnknownClient (its cursor went back)", what, err)
	}
	startAgain(t, e, "pub")
	checkPublic(t, e, secret)
}

// startAgain checks that a session of data Redis lost is unknown to every
// call that looks it up, and that its client can start again under the
// same id (a Stardust stream id is the client's choice).
func startAgain(t *testing.T, e server.Engine, id string) {
	t.Helper()
	if _, err := e.Session(ctx, id); !errors.Is(err, server.ErrUnknownClient) {
		t.Errorf("Session(%s) of the lost data: %v; want ErrUnknownClient", id, err)
	}
	if err := e.CreateSession(ctx, server.Session{ID: id, Kind: server.KindBayeux, Timeout: time.Hour}); err != nil {
		t.Fatalf("CreateSession(%s) again: %v; want a new session in its place", id, err)
	}
	if _, err := e.Subscribe(ctx, id, "/public"); err != nil {
		t.Fatal(err)
	}
	if b, err := e.Fetch(ctx, id, 0); err != nil || len(b.Messages) != 0 {
		t.Errorf("Fetch of the new %s: %d messages, %v; want none", id, len(b.Messages), err)
	}
}

// watchWakes watches session id; its wakes come on the channel (those
// beyond 16 not yet read are dropped).
func watchWakes(e server.Engine, id string) (chan server.Wake, func()) {
	wakes := make(chan server.Wake, 16)
	return wakes, e.Watch(id, func(w server.Wake) {
		select {
		case wakes <- w:
		default:
		}
	})
}

// restartAndWait runs restart (Redis goes away and comes back) while
// session id is watched, and returns once the engine has reconnected and
// looked at what Redis has: it then wakes every watch.
func restartAndWait(t *testing.T, e server.Engine, id string, restart func()) {
	t.Helper()
	wakes, stop := watchWakes(e, id)
	defer stop()
	time.Sleep(100 * time.Millisecond)
	for len(wakes) > 0 {
		<-wakes
	}
	restart()
	select {
	case <-wakes:
	case <-time.After(15 * time.Second):
		t.Fatal("the engine did not reconnect within 15 s")
	}
	// The wake says the pub/sub connection is back. The client's pipelined
	// connections (several) find out only when next used: the first call on
	// each may fail once, as a request would get one 503. Use them all up
	// before the test's own calls.
	for ok, deadline := 0, time.Now().Add(10*time.Second); ok < 16; {
		if _, err := e.Channels(ctx, "/"); err != nil {
			ok = 0
			if time.Now().After(deadline) {
				t.Fatalf("the engine still fails after its reconnection: %v", err)
			}
			continue
		}
		ok++
	}
}

// TestNoForeignMessageAfterFlushWatched: FLUSHALL while "pub" is mirrored
// (a watched session is served from memory, so no fetch reads Redis): the
// flusher's epoch check finds out within an interval or two, and the
// session is lost as in TestNoForeignMessageAfterFlush.
func TestNoForeignMessageAfterFlushWatched(t *testing.T) {
	srv := redistest.Start(t)
	admin := adminOf(t, srv)
	e := openFirst(t, srv.URL, "lost:", server.Limits{HistorySize: 10})
	lostSessions(t, e)
	stop := e.Watch("pub", func(server.Wake) {})
	defer stop()
	publishOn(t, e, "/public", `{"public":1}`)
	if msgs := fetchUntil(t, e, "pub", 1).Messages; len(msgs) != 1 { // mirror_test.go
		t.Fatalf("pub read %d", len(msgs))
	}
	secret := publishRead(t, e, "/secret", `{"secret":1}`, "sec")
	if err := admin.Do(ctx, admin.B().Flushall().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	awaitUnknown(t, e, "pub", 5*time.Second, "Fetch of a mirrored session Redis lost (within a few flushes)")
	stop()
	checkPublic(t, e, secret)
}

// TestLossSeenAfterAnotherProcessPublished: two processes share a Redis
// that restarts from an older snapshot. One (a) had published and read the
// message Redis lost; the other (b) never saw its number. b publishes
// first on the restarted Redis, before a's pub/sub connection is back to
// check: b's message takes the lost number (b cannot know it), and moves
// the sequence up to what a has seen. a must still find out that Redis
// lost data, so that its sessions start again; it did not before (the
// check compared the sequence after b's publish), and a's reader of the
// lost data read on past a number that now names another message.
func TestLossSeenAfterAnotherProcessPublished(t *testing.T) {
	srv := redistest.Start(t)
	a, admin := lostSetup(t, srv, srv.URL)
	b := open(t, srv.URL, "lost:", server.Limits{HistorySize: 10})
	publishRead(t, a, "/public", `{"public":1}`, "pub")
	if err := admin.Do(ctx, admin.B().Save().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	secret := publishRead(t, a, "/secret", `{"secret":1}`, "sec")
	release := redis.HoldReconnect(a)
	srv.Restart(0)
	failures, backAt := publishThrough(t, b, time.Now())
	if backAt.IsZero() {
		t.Fatalf("b could not publish after the restart (%d failures)", failures)
	}
	release()
	awaitUnknown(t, a, "sec", 10*time.Second, fmt.Sprintf("a's reader of the lost /secret message (seq %d) after b published first", secret.Seq))
}

// awaitUnknown waits, within d, until a Fetch of session id fails with
// ErrUnknownClient: the engine found that Redis lost the session's data.
func awaitUnknown(t *testing.T, e server.Engine, id string, d time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		_, err := e.Fetch(ctx, id, 0)
		if errors.Is(err, server.ErrUnknownClient) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v; want ErrUnknownClient (Redis lost data) within %v", what, err, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// publishRead publishes data on channel and checks that the session
// reader reads it, and nothing else. It returns the message.
func publishRead(t *testing.T, e server.Engine, channel, data, reader string) *server.Message {
	t.Helper()
	m := publishOn(t, e, channel, data)
	if msgs, err := readAll(t, e, reader); err != nil || len(msgs) != 1 {
		t.Fatalf("%s read %d, %v", reader, len(msgs), err)
	}
	return m
}
