package enginetest

import (
	"fmt"
	"testing"

	"github.com/stardust-go/stardust/server"
)

// testPresence: an engine that implements server.Presence lists the
// sessions a message on a channel would reach, by name or pattern, from
// every process sharing it; a session leaves the list when it
// unsubscribes or is removed, whichever process does it. Engines without
// the capability skip it.
func testPresence(t *testing.T, f Factory) {
	l := server.Limits{}
	e1 := open(t, f, l)
	p1, ok := e1.(server.Presence)
	if !ok {
		t.Skip("the engine has no server.Presence")
	}
	e2 := f.peer(t, e1, l)
	if e2 != e1 {
		t.Cleanup(func() { _ = e2.Close() })
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
