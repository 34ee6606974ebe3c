package redis

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"
)

// flushInterval is how often the flusher writes the cursors its mirrors
// moved (one HSET for all of them): after a SIGKILL, what was committed in
// the last interval is delivered again (with the ack extension, the
// client's next connect commits it).
const flushInterval = 200 * time.Millisecond

// handoverWait bounds how long a process that takes a session over waits
// for the process that mirrored it to fold its cursor ("f" notice): past
// it (that process died), it reads what that process last flushed.
const handoverWait = time.Second

// flushChunk is how many sessions one HSET or fold call writes.
const flushChunk = 500

// flusher writes the mirrors' cursors every flushInterval, folds the
// stale and idle ones, and folds them all when the engine closes.
func (e *Engine) flusher(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.Background(), e.opts.Timeout)
			e.flushDirty(cctx)
			if e.foldAll(cctx, true) == nil { // else the others settle what it flushed
				_ = e.client.Do(cctx, e.client.B().Del().Key(e.p+"cur:"+e.node).Build()).Error()
			}
			_ = e.client.Do(cctx, e.client.B().Del().Key(e.p+"conns:"+e.node).Build()).Error() // conns.go
			cancel()
			return
		case <-t.C:
			cctx, cancel := e.call(ctx)
			e.flushDirty(cctx)
			_ = e.foldAll(cctx, false)
			e.flushConns(cctx) // conns.go
			cancel()
		}
	}
}

// value is a mirror's cursor and seen offsets, for a fold (s.mu held).
func (m *mirror) value() string {
	var b strings.Builder
	b.WriteString(strconv.FormatUint(m.c, 10))
	for p, sub := range m.subs {
		b.WriteByte(' ')
		b.WriteString(p)
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(sub.seen, 10))
	}
	return b.String()
}

// flushDirty writes the cursors that moved since the last flush to P
// cur:NODE: one script (GET and HSET) per flushChunk sessions, whatever
// they are, and none when no session is mirrored. It also checks the
// epoch: a Redis that lost its data under live connections is noticed
// within an interval, and the mirrors are dropped.
func (e *Engine) flushDirty(ctx context.Context) {
	s := &e.mir
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	var dirty []*mirror
	var kv []string
	for id, m := range s.byID {
		if m.dirty && !m.stale {
			m.dirty = false
			dirty = append(dirty, m)
			kv = append(kv, id, strconv.FormatUint(m.c, 10))
		}
	}
	mirrored := len(s.byID) > 0
	s.mu.Unlock()
	e.mu.Lock()
	epoch := e.epoch
	e.mu.Unlock()
	for i := 0; mirrored && (i == 0 || i < len(kv)); i += 2 * flushChunk {
		chunk := kv[i:min(len(kv), i+2*flushChunk)]
		n, err := e.execInt(ctx, scriptFlush, append([]string{e.node, epoch}, chunk...)...)
		if err != nil || n == 0 {
			s.mu.Lock()
			for _, m := range dirty {
				m.dirty = true // again next time
			}
			s.mu.Unlock()
			if n == 0 && err == nil {
				// Lost data drops the mirrors; an epoch written since
				// the last look (the first session) is only noted.
				e.checkEpoch(ctx) // pubsub.go
			}
			return
		}
	}
}

// foldAll folds the stale mirrors, those unwatched for their grace and,
// when all is set (Close), every one.
func (e *Engine) foldAll(ctx context.Context, all bool) error {
	s := &e.mir
	s.mu.Lock()
	ids := make([]string, 0, len(s.byID))
	for id := range s.byID {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	e.mu.Lock()
	watched := make(map[string]bool, len(ids))
	for _, id := range ids {
		watched[id] = len(e.watchers[id]) > 0
	}
	e.mu.Unlock()
	now := time.Now()
	var fold []*mirror
	s.mu.Lock()
	for id, st := range s.polls {
		if !st.held && now.Sub(st.at) > mirrorGrace && s.byID[id] == nil {
			delete(s.polls, id)
		}
	}
	for _, id := range ids {
		m := s.byID[id]
		switch {
		case m == nil:
			continue
		case watched[id]:
			m.idle = time.Time{}
		case m.idle.IsZero():
			m.idle = now
		}
		if !m.stale && (all || !m.idle.IsZero() && now.Sub(m.idle) > graceOf(m)) {
			s.markStale(m)
		}
		if m.stale {
			fold = append(fold, m)
		}
	}
	s.mu.Unlock()
	return e.fold(ctx, fold, false)
}

// foldOne folds one stale mirror, before its session is read from Redis.
func (e *Engine) foldOne(ctx context.Context, m *mirror, notice bool) error {
	return e.fold(ctx, []*mirror{m}, notice)
}

// fold writes stale mirrors' cursors into their sessions (scriptFold) and
// forgets them; with notice, it tells the others (a handover). A mirror
// folded meanwhile by another call is skipped; one that fails stays, to be
// folded by the next fetch or flush.
func (e *Engine) fold(ctx context.Context, ms []*mirror, notice bool) error {
	s := &e.mir
	s.flushMu.RLock()
	defer s.flushMu.RUnlock()
	for len(ms) > 0 {
		chunk := ms[:min(len(ms), flushChunk)]
		ms = ms[len(chunk):]
		var held []*mirror
		args := []string{e.node, argBool(notice)}
		for _, m := range chunk {
			m.fold.Lock() // a second fold of m waits, then finds it gone
			held = append(held, m)
			s.mu.Lock()
			if s.byID[m.id] == m {
				args = append(args, m.id, m.value())
			}
			s.mu.Unlock()
		}
		var err error
		if len(args) > 2 {
			_, err = e.exec(ctx, scriptFold, args...)
		}
		s.mu.Lock()
		for _, m := range held {
			if err == nil && s.byID[m.id] == m {
				delete(s.byID, m.id)
			}
		}
		s.mu.Unlock()
		for _, m := range held {
			m.fold.Unlock()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// handover runs when a poll of a session started in another process ("r"
// notice): this process's mirror of it is folded at once, and the notice
// "f" tells that process it may read the cursor.
func (e *Engine) handover(id string) {
	s := &e.mir
	s.mu.Lock()
	s.pollElsewhere(id)
	s.spoilLoads(id) // a load here now would start a mirror the other process does not wait for
	m := s.byID[id]
	if m != nil {
		s.markStale(m)
	}
	s.mu.Unlock()
	if m == nil {
		return
	}
	go func() {
		ctx, cancel := e.call(context.Background())
		defer cancel()
		if err := e.foldOne(ctx, m, true); err != nil {
			e.opts.Log.WithError(err).Debug("redis engine: folding a session handed over")
		}
	}()
}

// folded: a process folded a session ("f" notice); wake who waits for it.
func (e *Engine) folded(id string) {
	s := &e.mir
	s.mu.Lock()
	for _, ch := range s.waits[id] {
		close(ch)
	}
	delete(s.waits, id)
	s.mu.Unlock()
}

// expectFold registers for the "f" notice of a session; the caller then
// reads its owner and, if another process, waits (awaitFold).
func (e *Engine) expectFold(id string) chan struct{} {
	ch := make(chan struct{})
	s := &e.mir
	s.mu.Lock()
	s.waits[id] = append(s.waits[id], ch)
	s.mu.Unlock()
	return ch
}

// unexpectFold drops a registration that was not used up.
func (e *Engine) unexpectFold(id string, ch chan struct{}) {
	s := &e.mir
	s.mu.Lock()
	dropFrom(s.waits, id, ch)
	s.mu.Unlock()
}

// dropFrom removes x from the list of m under key, and the key with its
// last one.
func dropFrom[T comparable](m map[string][]T, key string, x T) {
	list := m[key]
	if i := slices.Index(list, x); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(m, key)
	} else {
		m[key] = list
	}
}

// awaitFold waits until owner, another process that mirrors the session,
// has folded it: this process is about to read it from Redis. It gives up
// at once if owner's heartbeat is gone (it died: what it flushed is
// settled by the read), else after handoverWait.
func (e *Engine) awaitFold(ctx context.Context, owner string, ch chan struct{}) {
	score, err := e.client.Do(ctx, e.client.B().Zscore().Key(e.p+"nodes").Member(owner).Build()).AsFloat64()
	if err == nil && int64(score) < time.Now().UnixMilli() {
		return
	}
	select {
	case <-ch:
	case <-time.After(handoverWait):
	case <-ctx.Done():
	}
}

// Touch implements server.Engine. The sessions this process mirrors, whose
// timeouts it knows, are touched together in one ZADD, each once per part
// of its timeout (mirror.go); the others by a script per chunk.
func (e *Engine) Touch(ctx context.Context, ids ...string) error {
	ids, due, touched := e.untouched(ids)
	for chunk := range slices.Chunk(due, 2*listChunk) {
		cmd := e.client.B().Zadd().Key(e.p + "sessions").Xx().ScoreMember()
		for i := 0; i < len(chunk); i += 2 {
			score, _ := strconv.ParseFloat(chunk[i], 64)
			cmd = cmd.ScoreMember(score, chunk[i+1])
		}
		cctx, cancel := e.call(ctx)
		err := e.client.Do(cctx, cmd.Build()).Error()
		cancel()
		if err != nil {
			return fail(err)
		}
	}
	touched()
	if len(ids) == 0 {
		return nil
	}
	now := nowMS()
	for chunk := range slices.Chunk(ids, listChunk) { // a script per chunk: each stays short
		if _, err := e.exec(ctx, scriptTouch, append([]string{now}, chunk...)...); err != nil {
			return err
		}
	}
	return nil
}
