package redis

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stardust-go/stardust/server"
)

// The optional capabilities of the sharded engine (shard.go), each routed
// as the single engine's data it reads lives: by channel (the channel's
// shard), by session (its home), or process-wide (shard 0, or a hash of
// the address or key). Counts are summed over the shards.

var (
	_ server.Deliverer         = (*Sharded)(nil)
	_ server.AudienceCounter   = (*Sharded)(nil)
	_ server.ConnectionCounter = (*Sharded)(nil)
	_ server.PollNotifier      = (*Sharded)(nil)
	_ server.StatsReporter     = (*Sharded)(nil)
	_ server.ChannelCreator    = (*Sharded)(nil)
	_ server.UserIndex         = (*Sharded)(nil)
	_ server.DisconnectMarker  = (*Sharded)(nil)
	_ server.HistoryRemover    = (*Sharded)(nil)
	_ server.HistoryLoss       = (*Sharded)(nil)
	_ server.ProcessCounter    = (*Sharded)(nil)
	_ server.SharedLimiter     = (*Sharded)(nil)
	_ server.Presence          = (*Sharded)(nil)
	_ server.Members           = (*Sharded)(nil)
	_ server.SecretSharer      = (*Sharded)(nil)
	_ server.Occupancy         = (*Sharded)(nil)
	_ server.WebhookQueue      = (*Sharded)(nil)
)

// Deliver implements server.Deliverer: the session's own queue, in its
// home.
func (s *Sharded) Deliver(ctx context.Context, id string, m *server.Message) error {
	k := s.home(id)
	c := renumber(m, 0)
	if err := s.shards[k].Deliver(ctx, id, c); err != nil {
		return err
	}
	m.Seq, m.Time = s.outSeq(k, c.Seq), c.Time
	return nil
}

// Audience implements server.AudienceCounter: in the channel's shard,
// which holds every subscription that can match it.
func (s *Sharded) Audience(ctx context.Context, channel string) (map[string]int, error) {
	return s.shards[s.channelShard(channel)].Audience(ctx, channel)
}

// TakeConnection implements server.ConnectionCounter: an address's count
// lives in the shard of its hash.
func (s *Sharded) TakeConnection(ctx context.Context, addr string, limit int) (bool, error) {
	return s.shards[pick(addr, len(s.shards))].TakeConnection(ctx, addr, limit)
}

// ReleaseConnection implements server.ConnectionCounter.
func (s *Sharded) ReleaseConnection(ctx context.Context, addr string) error {
	return s.shards[pick(addr, len(s.shards))].ReleaseConnection(ctx, addr)
}

// Stats implements server.StatsReporter: summed over the shards, a
// session counted once (its copies, c:KIND in each shard's stats, not).
// A shard that does not answer (its master failing over) is left out: it
// fails only when none answers, so that the health check (which reads
// Stats) keeps the processes in service for the other shards' clients.
func (s *Sharded) Stats(ctx context.Context) (server.EngineStats, error) {
	type answer struct {
		st     server.EngineStats
		copies map[string]int
		err    error
	}
	answers := eachShard(s, func(e *Engine) answer {
		st, copies, err := e.stats(ctx)
		return answer{st, copies, err}
	})
	out := server.EngineStats{ClientsByKind: map[string]int{}}
	var errs []error
	for _, a := range answers {
		st, copies := a.st, a.copies
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		out.Clients += st.Clients
		for kind, n := range st.ClientsByKind {
			out.ClientsByKind[kind] += n
		}
		for kind, n := range copies {
			out.Clients -= n
			out.ClientsByKind[kind] -= n
		}
		out.Channels += st.Channels
		out.Subscriptions += st.Subscriptions
		out.HistoryBytes += st.HistoryBytes
		out.HistoryTrimmed += st.HistoryTrimmed
	}
	for kind, n := range out.ClientsByKind {
		if n <= 0 {
			delete(out.ClientsByKind, kind)
		}
	}
	if len(errs) == len(s.shards) {
		return server.EngineStats{}, errors.Join(errs...)
	}
	return out, nil
}

// eachShard calls f for every shard at once (a shard whose master fails
// over makes its call wait; the others answer meanwhile) and returns the
// answers in shard order.
func eachShard[T any](s *Sharded, f func(*Engine) T) []T {
	out := make([]T, len(s.shards))
	var wg sync.WaitGroup
	for k, e := range s.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[k] = f(e)
		}()
	}
	wg.Wait()
	return out
}

// CreateChannels implements server.ChannelCreator, by shard. Atomic only
// for names in one shard: with names in several, a later shard's refusal
// leaves the earlier shards' channels made (kept as a publish would make
// them, swept after the channel timeout); the budget is shared.
// MaxChannels bounds each shard.
func (s *Sharded) CreateChannels(ctx context.Context, names []string, budget int) (int, error) {
	groups := map[int][]string{}
	var order []int
	for _, n := range names {
		k := s.channelShard(n)
		if groups[k] == nil {
			order = append(order, k)
		}
		groups[k] = append(groups[k], n)
	}
	total := 0
	for _, k := range order {
		b := budget
		if budget >= 0 {
			b = budget - total
		}
		n, err := s.shards[k].CreateChannels(ctx, groups[k], b)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// UserSessions implements server.UserIndex: each shard indexes the
// sessions it is the home of (a copy is not indexed, nor listed).
func (s *Sharded) UserSessions(ctx context.Context, user string) ([]server.Session, error) {
	var out []server.Session
	for k, e := range s.shards {
		got, err := e.UserSessions(ctx, user)
		if err != nil {
			return nil, err
		}
		for _, sess := range got {
			if s.home(sess.ID) == k {
				out = append(out, public(sess))
			}
		}
	}
	slices.SortFunc(out, func(a, b server.Session) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// MarkDisconnected implements server.DisconnectMarker, in the home.
func (s *Sharded) MarkDisconnected(ctx context.Context, id string) error {
	return s.shards[s.home(id)].MarkDisconnected(ctx, id)
}

// Disconnected implements server.DisconnectMarker.
func (s *Sharded) Disconnected(ctx context.Context, id string) (bool, error) {
	return s.shards[s.home(id)].Disconnected(ctx, id)
}

// RemoveHistory implements server.HistoryRemover, in the channel's shard.
func (s *Sharded) RemoveHistory(ctx context.Context, channel string) (bool, error) {
	return s.shards[s.channelShard(channel)].RemoveHistory(ctx, channel)
}

// Lost implements server.HistoryLoss, with the site's number.
func (s *Sharded) Lost(ctx context.Context, channel string) (uint64, time.Time, error) {
	k := s.channelShard(channel)
	seq, at, err := s.shards[k].Lost(ctx, channel)
	return s.outSeq(k, seq), at, err
}

// Processes implements server.ProcessCounter: every process sweeps every
// shard, so shard 0 knows them all.
func (s *Sharded) Processes(ctx context.Context) (int, error) {
	return s.shards[0].Processes(ctx)
}

// TakeTokens implements server.SharedLimiter: a bucket lives in the shard
// of its name's hash, one for the whole site.
func (s *Sharded) TakeTokens(ctx context.Context, key string, n int, rate float64, burst int) (int, error) {
	return s.shards[pick(key, len(s.shards))].TakeTokens(ctx, key, n, rate, burst)
}

// Present implements server.Presence, from the channel's shard (its
// copies carry the sessions' attributes, kept by SetAttr).
func (s *Sharded) Present(ctx context.Context, channel string) ([]server.Session, error) {
	got, err := s.shards[s.channelShard(channel)].Present(ctx, channel)
	for i := range got {
		got[i] = public(got[i])
	}
	return got, err
}

// Join implements server.Members, in the channel's shard, where the
// session gets a copy first if it has none (the script counts sessions
// its shard holds).
func (s *Sharded) Join(ctx context.Context, channel, id, user string, info json.RawMessage) (bool, error) {
	k := s.channelShard(channel)
	if k != s.home(id) {
		if _, err := s.ensureIn(ctx, id, k); errors.Is(err, server.ErrUnknownClient) {
			return false, nil
		} else if err != nil {
			return false, err
		}
	}
	return s.shards[k].Join(ctx, channel, id, user, info)
}

// Leave implements server.Members, in the channel's shard.
func (s *Sharded) Leave(ctx context.Context, channel, id string) (server.Member, bool, error) {
	return s.shards[s.channelShard(channel)].Leave(ctx, channel, id)
}

// Gone implements server.Members, in every shard.
func (s *Sharded) Gone(ctx context.Context, ids ...string) ([]server.Member, error) {
	var out []server.Member
	for _, e := range s.shards {
		ms, err := e.Gone(ctx, ids...)
		out = append(out, ms...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// SweepMembers implements server.Members, in every shard.
func (s *Sharded) SweepMembers(ctx context.Context) ([]server.Member, error) {
	var out []server.Member
	var errs []error
	for _, e := range s.shards {
		ms, err := e.SweepMembers(ctx)
		out = append(out, ms...)
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// SharedSecret implements server.SecretSharer, in shard 0.
func (s *Sharded) SharedSecret(ctx context.Context) ([]byte, error) {
	return s.shards[0].SharedSecret(ctx)
}

// Occupy implements server.Occupancy, in the channel's shard.
func (s *Sharded) Occupy(ctx context.Context, id, user, channel string) (bool, error) {
	return s.shards[s.channelShard(channel)].Occupy(ctx, id, user, channel)
}

// Vacate implements server.Occupancy: by the channels' shards, or every
// shard for all of the session's channels.
func (s *Sharded) Vacate(ctx context.Context, id string, channels []string) ([]server.Vacancy, error) {
	groups := map[int][]string{}
	if len(channels) == 0 {
		for k := range s.shards {
			groups[k] = nil
		}
	}
	for _, ch := range channels {
		k := s.channelShard(ch)
		groups[k] = append(groups[k], ch)
	}
	var out []server.Vacancy
	for k := range s.shards {
		chs, ok := groups[k]
		if !ok {
			continue
		}
		v, err := s.shards[k].Vacate(ctx, id, chs)
		out = append(out, v...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// PushWebhooks implements server.WebhookQueue: one queue, in shard 0.
func (s *Sharded) PushWebhooks(ctx context.Context, events []string, max int) (int, error) {
	return s.shards[0].PushWebhooks(ctx, events, max)
}

// WebhookBatch implements server.WebhookQueue.
func (s *Sharded) WebhookBatch(ctx context.Context, owner string, lease time.Duration, n int) ([]string, bool, error) {
	return s.shards[0].WebhookBatch(ctx, owner, lease, n)
}

// TrimWebhooks implements server.WebhookQueue.
func (s *Sharded) TrimWebhooks(ctx context.Context, owner string, n int) (bool, error) {
	return s.shards[0].TrimWebhooks(ctx, owner, n)
}

// WebhookQueueLen implements server.WebhookQueue.
func (s *Sharded) WebhookQueueLen(ctx context.Context) (int, error) {
	return s.shards[0].WebhookQueueLen(ctx)
}
