package enginetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stardust-go/stardust/server"
)

// peers opens an engine with the default limits and another process's
// on the same state (the same engine for one that serves one process).
func peers(t *testing.T, f Factory) (server.Engine, server.Engine) {
	l := server.Limits{}
	e1 := open(t, f, l)
	e2 := f.peer(t, e1, l)
	if e2 != e1 {
		t.Cleanup(func() { _ = e2.Close() })
	}
	return e1, e2
}

// testPresence: an engine that implements server.Presence lists the
// sessions a message on a channel would reach, by name or pattern, from
// every process sharing it; a session leaves the list when it
// unsubscribes or is removed, whichever process does it. Engines without
// the capability skip it.
func testPresence(t *testing.T, f Factory) {
	e1, e2 := peers(t, f)
	p1, ok := e1.(server.Presence)
	if !ok {
		t.Skip("the engine has no server.Presence")
	}
	p2 := e2.(server.Presence)
	mustCreate(t, e1, "pa", server.KindBayeux)
	mustCreate(t, e2, "pb", server.KindBayeux)
	mustCreate(t, e1, "pc", server.KindStardust)
	mustCreate(t, e2, "pd", server.KindBayeux)
	if err := e1.SetAttr(ctx, "pa", server.AttrUser, "ann"); err != nil {
		t.Fatal(err)
	}
	mustSubscribe(t, e1, "pa", "/pr/room")
	mustSubscribe(t, e2, "pb", "/pr/*")
	mustSubscribe(t, e1, "pc", "/pr/**")
	mustSubscribe(t, e2, "pd", "/pr/other")
	present := func(p server.Presence) string {
		t.Helper()
		list, err := p.Present(ctx, "/pr/room")
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, s := range list {
			out = append(out, s.ID+":"+s.Attrs[server.AttrUser])
		}
		return fmt.Sprint(out)
	}
	for i, p := range []server.Presence{p1, p2} {
		if got := present(p); got != "[pa:ann pb: pc:]" {
			t.Errorf("process %d: presence %s, want [pa:ann pb: pc:]", i+1, got)
		}
	}
	if _, err := e2.Unsubscribe(ctx, "pb", "/pr/*"); err != nil {
		t.Fatal(err)
	}
	if _, err := e2.RemoveSession(ctx, "pa"); err != nil {
		t.Fatal(err)
	}
	for i, p := range []server.Presence{p1, p2} {
		if got := present(p); got != "[pc:]" {
			t.Errorf("process %d after an unsubscribe and a removal: presence %s, want [pc:]", i+1, got)
		}
	}
	if _, err := p1.Present(ctx, "/pr/*"); err == nil {
		t.Error("Present of a pattern: no error")
	}
}

// testMembers: an engine that implements server.Members counts each
// user's sessions on a channel across processes and reports each 0->1
// and 1->0 transition to exactly one caller: two tabs of a user joining
// at once on two processes give one join; the last one leaving (an
// unsubscribe, a removal on the other process, an expiry in a sweep, or a
// removal whose Gone never came) gives one leave, with the info of the
// join. Engines without the capability skip it.
func testMembers(t *testing.T, f Factory) {
	e1, e2 := peers(t, f)
	m1, ok := e1.(server.Members)
	if !ok {
		t.Skip("the engine has no server.Members")
	}
	m2 := e2.(server.Members)
	const room = "/jl/room"
	info := json.RawMessage(`{"name":"Ann"}`)
	for _, id := range []string{"ja1", "ja2", "jb1", "jc1"} {
		mustCreate(t, e1, id, server.KindBayeux)
	}
	// Two tabs of ann join at once, one on each process: one join.
	var wg sync.WaitGroup
	var firsts atomic.Int32
	for i, m := range []server.Members{m1, m2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, err := m.Join(ctx, room, fmt.Sprintf("ja%d", i+1), "ann", info)
			if err != nil {
				t.Error(err)
			}
			if first {
				firsts.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := firsts.Load(); n != 1 {
		t.Fatalf("two tabs of ann joining at once: %d joins, want 1", n)
	}
	if again, err := m1.Join(ctx, room, "ja1", "ann", info); err != nil || again {
		t.Errorf("the same session joining again: %v %v, want false", again, err)
	}
	if first, err := m2.Join(ctx, room, "jb1", "bob", nil); err != nil || !first {
		t.Errorf("bob's first session: %v %v, want true", first, err)
	}
	if first, err := m1.Join(ctx, room, "nosuch", "bob", nil); err != nil || first {
		t.Errorf("an unknown session: %v %v, want false", first, err)
	}
	if first, err := m1.Join(ctx, "/jl/other", "jc1", "cat", nil); err != nil || !first {
		t.Errorf("cat elsewhere: %v %v, want true", first, err)
	}
	// ann's first tab unsubscribes: she stays.
	if _, last, err := m2.Leave(ctx, room, "ja1"); err != nil || last {
		t.Errorf("ann's first tab leaving: %v %v, want not the last", last, err)
	}
	if _, last, err := m2.Leave(ctx, room, "ja1"); err != nil || last {
		t.Errorf("leaving twice: %v %v", last, err)
	}
	// Her second tab is removed by process 1; Gone on process 2 says she left.
	if gone, err := m2.Gone(ctx, "ja2"); err != nil || len(gone) != 0 {
		t.Errorf("Gone of a session still there: %v %v, want nothing", gone, err)
	}
	if _, err := e1.RemoveSession(ctx, "ja2"); err != nil {
		t.Fatal(err)
	}
	gone, err := m2.Gone(ctx, "ja2")
	if err != nil || fmt.Sprint(gone) != fmt.Sprint([]server.Member{{Channel: room, User: "ann", Info: info}}) {
		t.Errorf("Gone of ann's last tab: %v %v", gone, err)
	}
	if again, err := m1.Gone(ctx, "ja2"); err != nil || len(again) != 0 {
		t.Errorf("Gone twice: %v %v, want nothing", again, err)
	}
	// bob expires in a sweep.
	if _, err := e2.Sweep(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if gone, err := m1.Gone(ctx, "jb1"); err != nil || fmt.Sprint(gone) != fmt.Sprint([]server.Member{{Channel: room, User: "bob"}}) {
		t.Errorf("Gone of bob, expired: %v %v", gone, err)
	}
	// cat expired too, and no one called Gone: SweepMembers finds her.
	var swept []server.Member
	for range 5 {
		ms, err := m2.SweepMembers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		swept = append(swept, ms...)
	}
	if want := fmt.Sprint([]server.Member{{Channel: "/jl/other", User: "cat"}}); fmt.Sprint(swept) != want {
		t.Errorf("SweepMembers: %v, want %s", swept, want)
	}
	// All counted out: a new session of ann joins again.
	mustCreate(t, e2, "ja3", server.KindBayeux)
	if first, err := m1.Join(ctx, room, "ja3", "ann", info); err != nil || !first {
		t.Errorf("ann back: %v %v, want a join", first, err)
	}
}
