package redis

import (
	"context"
	"errors"
	"slices"

	"github.com/stardust-go/stardust/server"
)

// Watches of the sharded engine: a session is watched in each of its
// shards. Its home's wakes all count; another shard's WakeMessages and
// WakeReplaced do, not its WakeRemoved: a copy is removed after its
// session's home (RemoveSession, which the home's removal reports).
// Another shard's WakeExpired (its copy expired first, or that shard's
// Redis lost its data) is passed on as WakeMessages: the fetch it causes
// finds the copy gone and expires the whole session in its home
// (Sharded.Fetch; the sweep does the same), which wakes the watchers with
// WakeExpired.

// shardWatch is one Watch of a sharded session: its watch in each shard.
type shardWatch struct {
	id      string
	notify  func(server.Wake)
	stops   map[int]func() // by shard; guarded by Sharded.mu
	stopped bool
}

// Watch implements server.Engine: the session's shards are read from its
// home; each shard's watch is in place before Watch returns, so that no
// message queued afterwards goes unnoticed. A shard added later (by a
// subscription here, or in another process, whose notice wakes this
// watch and so makes the next Fetch look) is watched from then on.
func (s *Sharded) Watch(id string, notify func(server.Wake)) (stop func()) {
	w := &shardWatch{id: id, notify: notify, stops: map[int]func(){}}
	s.mu.Lock()
	s.watches[id] = append(s.watches[id], w)
	s.mu.Unlock()
	h := s.home(id)
	set := []int{h}
	ctx, cancel := s.shards[h].call(context.Background())
	if got, _, err := s.shardsOf(ctx, id); err == nil {
		set = got
	} // else the home's watch says WakeExpired, or its fetch that Redis is away
	cancel()
	for _, k := range set {
		s.watchIn(w, k)
	}
	return func() {
		s.mu.Lock()
		if w.stopped {
			s.mu.Unlock()
			return
		}
		w.stopped = true
		dropFrom(s.watches, id, w) // flush.go
		stops := w.stops
		w.stops = nil
		s.mu.Unlock()
		for _, stop := range stops {
			stop()
		}
	}
}

// watchIn has w watch its session in shard k too, unless it does already.
func (s *Sharded) watchIn(w *shardWatch, k int) {
	s.mu.Lock()
	if w.stopped || w.stops[k] != nil {
		s.mu.Unlock()
		return
	}
	w.stops[k] = func() {} // taken: a concurrent watchIn leaves it
	s.mu.Unlock()
	home := k == s.home(w.id)
	stop := s.shards[k].Watch(w.id, func(why server.Wake) {
		switch {
		case home || why == server.WakeMessages || why == server.WakeReplaced:
			w.notify(why)
		case why == server.WakeExpired:
			w.notify(server.WakeMessages)
		}
	})
	s.mu.Lock()
	if w.stopped {
		s.mu.Unlock()
		stop()
		return
	}
	w.stops[k] = stop
	s.mu.Unlock()
}

// extend has this process's watches of a session watch it in shards too.
func (s *Sharded) extend(id string, shards []int) {
	s.mu.Lock()
	var todo []*shardWatch
	for _, w := range s.watches[id] {
		for _, k := range shards {
			if w.stops[k] == nil {
				todo = append(todo, w)
				break
			}
		}
	}
	s.mu.Unlock()
	for _, w := range todo {
		for _, k := range shards {
			s.watchIn(w, k)
		}
		w.notify(server.WakeMessages) // what came before the watch: fetched now
	}
}

// wake wakes this process's watches of a session with WakeMessages.
func (s *Sharded) wake(id string) {
	s.mu.Lock()
	ws := slices.Clone(s.watches[id])
	s.mu.Unlock()
	for _, w := range ws {
		w.notify(server.WakeMessages)
	}
}

// NotifyPoll implements server.PollNotifier: in every shard of the
// session, so that each shard's mirror of it in another process is handed
// over (folded) before this process reads its cursor there.
func (s *Sharded) NotifyPoll(ctx context.Context, id string) error {
	set, _, err := s.shardsOf(ctx, id)
	if errors.Is(err, server.ErrUnknownClient) {
		set = []int{s.home(id)}
	} else if err != nil {
		return err
	}
	for _, k := range set {
		if err := s.shards[k].NotifyPoll(ctx, id); err != nil {
			return err
		}
	}
	return nil
}
