package server

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// minimalEngine has only the methods every engine needs: a memory engine
// seen through the Engine interface alone, which hides the optional
// capabilities. It notes the calls whose ctx had no deadline.
type minimalEngine struct {
	Engine
	mu         sync.Mutex
	noDeadline []string
}

func (m *minimalEngine) note(name string, ctx context.Context) {
	if _, ok := ctx.Deadline(); !ok {
		m.mu.Lock()
		m.noDeadline = append(m.noDeadline, name)
		m.mu.Unlock()
	}
}

func (m *minimalEngine) CreateSession(ctx context.Context, s Session) error {
	m.note("CreateSession", ctx)
	return m.Engine.CreateSession(ctx, s)
}

func (m *minimalEngine) Session(ctx context.Context, id string) (Session, error) {
	m.note("Session", ctx)
	return m.Engine.Session(ctx, id)
}

func (m *minimalEngine) Subscribe(ctx context.Context, id, pattern string) (bool, error) {
	m.note("Subscribe", ctx)
	return m.Engine.Subscribe(ctx, id, pattern)
}

func (m *minimalEngine) Publish(ctx context.Context, msg *Message) (int, error) {
	m.note("Publish", ctx)
	return m.Engine.Publish(ctx, msg)
}

func (m *minimalEngine) Fetch(ctx context.Context, id string, max int) (Batch, error) {
	m.note("Fetch", ctx)
	return m.Engine.Fetch(ctx, id, max)
}

func (m *minimalEngine) Commit(ctx context.Context, id string, cursor uint64) error {
	m.note("Commit", ctx)
	return m.Engine.Commit(ctx, id, cursor)
}

// TestHubWithMinimalEngine: an engine with only the required methods
// serves polls; the optional capabilities fall back (connections counted
// in this process, zero engine counts) or fail with errors.ErrUnsupported
// (a service's answer, audiences); and every call gets a deadline, as an
// engine that talks to a server must.
func TestHubWithMinimalEngine(t *testing.T) {
	e := &minimalEngine{Engine: NewMemoryEngine(Limits{})}
	var _ Engine = e
	if _, ok := any(e).(Deliverer); ok {
		t.Fatal("minimalEngine should hide Deliverer")
	}
	h := NewHub(HubOptions{Engine: e, EngineTimeout: time.Minute}, testLog())
	defer h.Close()
	c, _, err := h.Register("min", KindStardust, time.Minute, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Subscribe(c, "/m"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Publish(&Message{Channel: "/m", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	b, why := c.Poll(context.Background(), time.Second)
	if why != PollReady || len(b.Messages) != 1 {
		t.Fatalf("poll: %v %d messages", why, len(b.Messages))
	}
	c.Commit(b.Cursor)
	if err := h.Deliver(c, &Message{Channel: "/service/x", Data: []byte(`{}`)}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Deliver without a Deliverer: %v, want errors.ErrUnsupported", err)
	}
	if _, err := h.Audience("/m"); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Audience without an AudienceCounter: %v, want errors.ErrUnsupported", err)
	}
	if ok, err := h.TakeConnection("b", 1); !ok || err != nil {
		t.Fatalf("first connection: %v %v", ok, err)
	}
	if ok, _ := h.TakeConnection("b", 1); ok {
		t.Error("a second connection over the limit of 1 was counted (the hub's own count)")
	}
	h.ReleaseConnection("b")
	if ok, _ := h.TakeConnection("b", 1); !ok {
		t.Error("a released connection was not given back")
	}
	if st, err := h.Stats(); err != nil || st.Clients != 0 {
		t.Errorf("Stats without a StatsReporter: %+v %v, want zero engine counts", st, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.noDeadline) > 0 {
		t.Errorf("engine calls without a deadline: %v", e.noDeadline)
	}
}
