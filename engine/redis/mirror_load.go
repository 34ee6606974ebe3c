package redis

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stardust-go/stardust/server"
)

// Loading a mirror (mirror.go): one script reads the session, its
// subscriptions and what waits in their streams, and the mirror starts
// caught up with what pub/sub brought meanwhile, unless something that
// read may not show happened in between (a loading spoiled).

// load reads a session's mirror from Redis (scriptLoad) and starts it,
// caught up with the messages its topics brought meanwhile. It returns
// nil when the session is not mirrored now: the next fetch reads Redis,
// the one after tries again.
func (e *Engine) load(ctx context.Context, id string) (*mirror, error) {
	s := &e.mir
	s.mu.Lock()
	gen, old := s.gen, s.byID[id]
	mark := &loading{} // before the script: what happens from here on spoils it
	s.loads[id] = append(s.loads[id], mark)
	hook := s.loadRead
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		dropFrom(s.loads, id, mark) // flush.go
		s.mu.Unlock()
	}()
	if old != nil {
		if !old.stale {
			return old, nil
		}
		if err := e.foldOne(ctx, old, false); err != nil { // Redis must have its cursor first
			return nil, err
		}
	}
	live := map[string]bool{} // topics subscribed before the script runs
	e.mu.Lock()
	for p, t := range e.topics {
		if t.live {
			live[p] = true
		}
	}
	e.mu.Unlock()
	r, err := e.exec(ctx, scriptLoad, id, e.node, strconv.Itoa(mirrorLimit), strconv.Itoa(fetchChunk))
	if err != nil {
		return nil, err
	}
	if hook != nil {
		hook(id)
	}
	vals, err := r.ToArray()
	if err != nil || len(vals) == 0 {
		return nil, fail(errors.New("load: unexpected answer"))
	}
	if code, _ := vals[0].AsInt64(); code != 1 || len(vals) < 3 {
		s.mu.Lock()
		s.skip[id] = true
		s.mu.Unlock()
		if code < 0 {
			return nil, unknown(id)
		}
		return nil, nil
	}
	m := &mirror{id: id, subs: map[string]*msub{}}
	c, _ := vals[1].AsInt64()
	m.c = uint64(c)
	kv, _ := vals[2].AsStrSlice()
	fields := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		fields[kv[i]] = kv[i+1]
	}
	m.sess, m.sessOK = sessionOf(id, fields)
	e.mu.Lock()
	if e.epoch == "" {
		e.epoch = fields["e"] // the epoch now (scriptLoad checked): the flusher's check needs it
	}
	e.mu.Unlock()
	var loaded []qent
	for _, v := range vals[3:] {
		a, err := v.ToArray()
		if err != nil || len(a) != 5 {
			return nil, fail(errors.New("load: bad pattern entry"))
		}
		p, _ := a[0].ToString()
		start, _ := a[1].AsInt64()
		seen, _ := a[2].AsInt64()
		last, _ := a[3].AsInt64()
		list, _ := a[4].AsStrSlice()
		sub := &msub{start: uint64(start), seen: seen, last: last}
		m.subs[p] = sub
		m.patterns = append(m.patterns, p)
		for i := 0; i+3 < len(list); i += 4 {
			seq, _ := strconv.ParseUint(list[i], 10, 64)
			off, _ := strconv.ParseInt(list[i+2], 10, 64)
			size, _ := strconv.Atoi(list[i+3])
			msg, err := e.cache.get(seq, list[i+1])
			if err != nil {
				continue // as the Redis fetch: skip what does not decode
			}
			loaded = append(loaded, qent{seq: seq, msg: msg, size: size, p: p, off: off})
			sub.n++
			sub.bytes += size
		}
	}
	slices.Sort(m.patterns)
	slices.SortStableFunc(loaded, func(a, b qent) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	for _, q := range loaded { // one entry per message, whatever streams carried it
		if n := len(m.queue); n > 0 && m.queue[n-1].seq == q.seq {
			m.queue[n-1].more = append(m.queue[n-1].more, pmark{q.p, q.off})
			continue
		}
		m.queue = append(m.queue, q)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.byID[id]; old != nil { // loaded meanwhile by another fetch
		if !old.stale {
			return old, nil
		}
		s.skip[id] = true // its fold clears the owner this load wrote
		return nil, nil
	}
	ok := s.gen == gen && !mark.stale
	if mark.attrs {
		m.sessOK = false // read again by the next Session
	}
	for p, sub := range m.subs {
		if !ok || !live[p] || sub.n > s.qmax || sub.bytes > s.qbytes {
			ok = false
			break
		}
		if f := s.feeds[p]; f != nil && f.last > sub.last {
			ok = s.catchUp(e, m, p, f.last)
		}
	}
	if !ok || m.stale {
		// Redis records this process as the owner: a fold undoes it.
		m.stale = true
		s.byID[id] = m
		s.skip[id] = true
		return nil, nil
	}
	for p := range m.subs {
		f := s.feeds[p]
		if f == nil {
			f = &feed{last: -1, mirrors: map[*mirror]struct{}{}}
			s.feeds[p] = f
		}
		f.mirrors[m] = struct{}{}
	}
	s.byID[id] = m
	delete(s.skip, id)
	return m, nil
}

// sessionOf makes a Session of a session hash's fields (HGETALL); false
// when it has no kind (none, or removed).
func sessionOf(id string, m map[string]string) (server.Session, bool) {
	kind, ok := m["k"]
	if !ok {
		return server.Session{}, false
	}
	ms, _ := strconv.ParseInt(m["t"], 10, 64)
	s := server.Session{ID: id, Kind: kind, Remote: m["r"], Timeout: time.Duration(ms) * time.Millisecond}
	for k, v := range m {
		if name, ok := strings.CutPrefix(k, "a:"); ok {
			if s.Attrs == nil {
				s.Attrs = map[string]string{}
			}
			s.Attrs[name] = v
		}
	}
	return s, true
}
