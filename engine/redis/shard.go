package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/server"
)

// Sharding by channel (docs/scaling.md, "Redis Cluster"): a Sharded engine
// is n ordinary engines, one per shard, each under its own prefix with its
// own hash tag, so that each shard is one slot of a Redis Cluster and the
// shards spread over its masters (ShardPrefixes). Every script still runs
// in one shard, on one slot:
//
//   - A channel, and every pattern that can match it, lives in the shard of
//     its first segment: /a/b/c, /a/b/* and /a/** all in shard(a). A
//     publish is one script on one slot, its cost flat in the audience. A
//     pattern has a parent segment always (/* and /** are refused), so no
//     subscription spans shards.
//   - A session has a home shard (by its id) that holds it: created there,
//     its attributes, its own queue (Deliver), poll notices, removal and
//     expiry. On its first subscription in another shard a copy of it
//     (same id, kind, remote, timeout and attributes) is made there, and
//     the home records the shard in a reserved attribute (shardAttr), never
//     shown to callers. Fetch, Touch, SetAttr, RemoveSession and Watch
//     visit the session's shards only.
//   - Each shard numbers its messages; shard k's number q is q*n+k to the
//     outside: unique, increasing per channel. Order is kept per channel
//     (and per shard), not between channels of different shards.
//   - One Fetch answers from one shard, the first of the session's shards
//     with news, rotating, so that the batch's cursor names the shard
//     (cursor mod n) and a Commit, in any process, commits there. When a
//     session has more than one shard, a fetch that found news wakes the
//     session's watches here again, so that the other shards' news follow
//     at once.
//
// Sharded implements every optional capability the single engine does,
// routed by channel (channel shard), session (home shard), or process-wide
// (shard 0, or a hash of the address, user or key); see shard_caps.go.
type Sharded struct {
	shards     []*Engine
	client     rueidis.Client // every shard's
	closed     sync.Once
	prefix     string        // the site's, as given
	maxClients int           // Limits.MaxClients, over all shards
	rot        atomic.Uint64 // where the next fetch starts among a session's shards

	mu      sync.Mutex
	watches map[string][]*shardWatch // this process's watches, by session id

	outMu   sync.Mutex
	outs    map[*server.Message]*server.Message // recent shard messages -> their copies numbered for the site
	outRing [outCopies]*server.Message          // the keys of outs, oldest overwritten
	outNext int
}

// outCopies is how many renumbered messages are kept for sharing: as many
// as the shards' engines keep decoded (msgCache), and more.
const outCopies = 8192

var _ server.Engine = (*Sharded)(nil)

// shardAttr prefixes the reserved attribute that marks, in a session's
// home, a shard holding a copy of it ("\x00shard.3" = "1"). A byte no
// caller's attribute name has: those names come from the server's code.
const shardAttr = "\x00shard."

// NewSharded connects one engine per shard (opts.Shards of them, at least
// 2) under the prefixes of ShardPrefixes. opts.Cluster is the usual
// set-up (each shard a slot of the Cluster); on one Redis the shards are
// only prefixes (for tests: no capacity is gained).
func NewSharded(opts Options) (*Sharded, error) {
	opts.defaults()
	if opts.Shards < 2 {
		return nil, fmt.Errorf("redis engine: %d shards: a sharded engine wants 2 or more (1 is the plain engine)", opts.Shards)
	}
	prefixes, err := ShardPrefixes(opts.Prefix, opts.Shards)
	if err != nil {
		return nil, err
	}
	s := &Sharded{prefix: opts.Prefix, watches: map[string][]*shardWatch{}, outs: map[*server.Message]*server.Message{},
		maxClients: opts.Limits.MaxClients}
	if s.client, err = connect(opts); err != nil { // one client for every shard
		return nil, err
	}
	opts.shared = s.client
	for _, p := range prefixes {
		o := opts
		o.Prefix, o.Shards = p, 0           // on one Redis the braces are only characters
		o.Limits.MaxClients = math.MaxInt32 // the site's bound: CreateSession counts every shard
		e, err := New(o)
		if err != nil {
			_ = s.Close()
			return nil, err
		}
		s.shards = append(s.shards, e)
	}
	return s, nil
}

// Shard returns the engine of shard k, for tests and tools.
func (s *Sharded) Shard(k int) *Engine { return s.shards[k] }

// Shards returns the number of shards.
func (s *Sharded) Shards() int { return len(s.shards) }

// Prefix returns the site's prefix as given (before the shards' tags),
// for a second engine on the same data.
func (s *Sharded) Prefix() string { return s.prefix }

// Close closes every shard's engine, then their client.
func (s *Sharded) Close() error {
	s.closed.Do(func() {
		for _, e := range s.shards {
			_ = e.Close()
		}
		s.client.Close()
	})
	return nil
}

// public returns a session as callers see it: without the shard marks.
func public(sess server.Session) server.Session {
	for k := range sess.Attrs {
		if strings.HasPrefix(k, shardAttr) {
			attrs := make(map[string]string, len(sess.Attrs))
			for k, v := range sess.Attrs {
				if !strings.HasPrefix(k, shardAttr) {
					attrs[k] = v
				}
			}
			sess.Attrs = attrs
			break
		}
	}
	return sess
}

// shardsOf returns a session's shards, its home first, and the session
// (with its marks), read from its home: ErrUnknownClient if it has none.
func (s *Sharded) shardsOf(ctx context.Context, id string) ([]int, server.Session, error) {
	h := s.home(id)
	sess, err := s.shards[h].Session(ctx, id)
	if err != nil {
		return nil, sess, err
	}
	out := []int{h}
	for k := range sess.Attrs {
		if n, ok := strings.CutPrefix(k, shardAttr); ok {
			if i, err := strconv.Atoi(n); err == nil && i >= 0 && i < len(s.shards) && i != h {
				out = append(out, i)
			}
		}
	}
	slices.Sort(out[1:])
	return out, sess, nil
}

// CreateSession implements server.Engine: in the session's home, once the
// sessions of every shard (a command each) are counted under MaxClients.
// The count and the creation are not one atomic step: processes creating
// sessions at once near the bound may pass it by as many. A shard that
// does not answer (its master failing over) is left out of the count, so
// that it stops only the sessions whose home it is.
func (s *Sharded) CreateSession(ctx context.Context, sess server.Session) error {
	total := 0
	for _, n := range eachShard(s, func(e *Engine) int {
		n, _ := e.sessionCount(ctx)
		return n
	}) {
		total += n
	}
	if total >= s.maxClients {
		return fmt.Errorf("%w: %d sessions", server.ErrTooManyClients, s.maxClients)
	}
	return s.shards[s.home(sess.ID)].CreateSession(ctx, public(sess))
}

// sessionCount returns the sessions this shard is the home of: all it
// holds but the copies (a pipeline of the two commands of stats it needs).
func (e *Engine) sessionCount(ctx context.Context) (int, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	res := e.client.DoMulti(cctx,
		e.client.B().Zcard().Key(e.p+"sessions").Build(),
		e.client.B().Hgetall().Key(e.p+"stats").Build())
	n, err := res[0].AsInt64()
	if err != nil {
		return 0, fail(err)
	}
	counts, err := res[1].AsStrMap()
	if err != nil {
		return 0, fail(err)
	}
	for _, c := range copyCounts(counts) {
		n -= int64(c)
	}
	return int(n), nil
}

// copyCounts returns, from a shard's stats hash, the copies of sessions of
// other shards it holds, by kind (c:KIND).
func copyCounts(stats map[string]string) map[string]int {
	out := map[string]int{}
	for k, v := range stats {
		if kind, ok := strings.CutPrefix(k, "c:"); ok {
			out[kind], _ = strconv.Atoi(v)
		}
	}
	return out
}

// Session implements server.Engine.
func (s *Sharded) Session(ctx context.Context, id string) (server.Session, error) {
	sess, err := s.shards[s.home(id)].Session(ctx, id)
	return public(sess), err
}

// Touch implements server.Engine: in every shard, which each ignore the
// ids they do not hold, so that a session's copies expire with it.
func (s *Sharded) Touch(ctx context.Context, ids ...string) error {
	var errs []error
	for _, e := range s.shards {
		errs = append(errs, e.Touch(ctx, ids...))
	}
	return errors.Join(errs...)
}

// SetAttr implements server.Engine: in the home, then in each copy (whose
// attributes Presence reports).
func (s *Sharded) SetAttr(ctx context.Context, id, key, value string) error {
	if strings.HasPrefix(key, shardAttr) {
		return fmt.Errorf("redis engine: attribute %q is reserved", key)
	}
	set, _, err := s.shardsOf(ctx, id)
	if err != nil {
		return err
	}
	for i, k := range set {
		if err := s.shards[k].setAttr(ctx, id, key, value, i == 0); err != nil && (i == 0 || !errors.Is(err, server.ErrUnknownClient)) {
			return err
		}
	}
	return nil
}

// RemoveSession implements server.Engine: from its home first (whose
// removal wakes the watchers with WakeRemoved: a fetch then finds no
// session, not a missing copy), then from its other shards. A copy whose
// shard does not answer is left to expire.
func (s *Sharded) RemoveSession(ctx context.Context, id string) (bool, error) {
	set, _, err := s.shardsOf(ctx, id)
	if errors.Is(err, server.ErrUnknownClient) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	ok, err := s.shards[set[0]].RemoveSession(ctx, id)
	if err != nil {
		return ok, err
	}
	var errs []error
	for _, k := range set[1:] {
		_, err := s.shards[k].RemoveSession(ctx, id)
		errs = append(errs, err)
	}
	return ok, errors.Join(errs...)
}

// Sweep implements server.Engine: each shard's sweep. A session expired
// in its home is reported; its copies expire by themselves (Touch keeps
// their deadlines with the home's). A copy that expired first (a missed
// touch) makes the whole session expire, so that it never goes on with
// the subscriptions of a shard silently lost.
func (s *Sharded) Sweep(ctx context.Context, now time.Time) ([]server.Session, error) {
	var out []server.Session
	var errs []error
	for k, e := range s.shards {
		gone, err := e.Sweep(ctx, now)
		errs = append(errs, err)
		for _, sess := range gone {
			if h := s.home(sess.ID); h == k {
				out = append(out, sess)
			} else if ok, err := s.shards[h].expireSession(ctx, sess.ID); err != nil {
				errs = append(errs, err)
			} else if ok {
				out = append(out, sess)
			}
		}
	}
	return out, errors.Join(errs...)
}

// Subscribe implements server.Engine: in the pattern's shard, where a
// copy of the session is made first if it has none.
func (s *Sharded) Subscribe(ctx context.Context, id, pattern string) (bool, error) {
	if _, err := server.ParseChannel(pattern, true); err != nil {
		return false, err
	}
	k, h := s.channelShard(pattern), s.home(id)
	if k == h {
		return s.shards[h].Subscribe(ctx, id, pattern)
	}
	sess, err := s.ensureIn(ctx, id, k)
	if err != nil {
		return false, err
	}
	added, err := s.shards[k].Subscribe(ctx, id, pattern)
	if errors.Is(err, server.ErrUnknownClient) {
		// The copy is gone (expired on its own, removed by hand): again.
		if err := s.addShard(ctx, sess, k); err != nil {
			return false, err
		}
		added, err = s.shards[k].Subscribe(ctx, id, pattern)
	}
	return added, err
}

// ensureIn makes sure the session has a copy in shard k (not its home),
// and returns it as its home has it.
func (s *Sharded) ensureIn(ctx context.Context, id string, k int) (server.Session, error) {
	set, sess, err := s.shardsOf(ctx, id)
	if err != nil {
		return sess, err
	}
	if !slices.Contains(set, k) {
		err = s.addShard(ctx, sess, k)
	}
	return sess, err
}

// addShard makes a copy of the session in shard k, marks it in the home,
// and has every watch of the session, here and in the other processes
// (by a "d" notice of the home: their next fetch watches the new shard),
// watch it there too.
func (s *Sharded) addShard(ctx context.Context, sess server.Session, k int) error {
	h := s.home(sess.ID)
	if err := s.shards[k].createSession(ctx, public(sess), true); err != nil && !errors.Is(err, server.ErrExists) {
		return err
	}
	if err := s.shards[h].SetAttr(ctx, sess.ID, shardAttr+strconv.Itoa(k), "1"); err != nil {
		return err
	}
	s.extend(sess.ID, []int{k})
	return s.shards[h].subsChanged(ctx, sess.ID)
}

// Unsubscribe implements server.Engine.
func (s *Sharded) Unsubscribe(ctx context.Context, id, pattern string) (bool, error) {
	k, h := s.channelShard(pattern), s.home(id)
	ok, err := s.shards[k].Unsubscribe(ctx, id, pattern)
	if k != h && errors.Is(err, server.ErrUnknownClient) {
		if _, err := s.shards[h].Session(ctx, id); err != nil {
			return false, err
		}
		return false, nil // no copy there: no subscription there
	}
	return ok, err
}

// Subscriptions implements server.Engine: those of every shard, merged.
func (s *Sharded) Subscriptions(ctx context.Context, id string) ([]string, error) {
	set, _, err := s.shardsOf(ctx, id)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, k := range set {
		subs, err := s.shards[k].Subscriptions(ctx, id)
		if err != nil && (i == 0 || !errors.Is(err, server.ErrUnknownClient)) {
			return nil, err
		}
		out = append(out, subs...)
	}
	slices.Sort(out)
	return out, nil
}

// Publish implements server.Engine: one script in the channel's shard.
// The shard's engine keeps its own copy of the message (its number is the
// shard's); m gets the site's number.
func (s *Sharded) Publish(ctx context.Context, m *server.Message) (int, error) {
	if _, err := server.ParseChannel(m.Channel, false); err != nil {
		return 0, err
	}
	k := s.channelShard(m.Channel)
	c := renumber(m, 0)
	n, err := s.shards[k].Publish(ctx, c)
	if err != nil {
		return n, err
	}
	m.Seq, m.Time = s.outSeq(k, c.Seq), c.Time
	return n, nil
}

// renumber returns a copy of m numbered seq (without its encodings).
func renumber(m *server.Message, seq uint64) *server.Message {
	return &server.Message{Channel: m.Channel, Data: m.Data, ID: m.ID, ClientID: m.ClientID, Ext: m.Ext,
		Seq: seq, Time: m.Time, Reply: m.Reply, Presence: m.Presence}
}

// outside returns a shard's messages with the site's numbers: copies, the
// shard's engine sharing its own between sessions (numbered its way). A
// recent message's copy is made once and shared in turn, so that its
// encodings are too (server.Message).
func (s *Sharded) outside(k int, msgs []*server.Message) []*server.Message {
	if len(msgs) == 0 {
		return msgs
	}
	out := make([]*server.Message, len(msgs))
	s.outMu.Lock()
	defer s.outMu.Unlock()
	for i, m := range msgs {
		c := s.outs[m]
		if c == nil {
			c = renumber(m, s.outSeq(k, m.Seq))
			if old := s.outRing[s.outNext]; old != nil {
				delete(s.outs, old)
			}
			s.outs[m], s.outRing[s.outNext] = c, m
			s.outNext = (s.outNext + 1) % len(s.outRing)
		}
		out[i] = c
	}
	return out
}

// Fetch implements server.Engine: the batch of the first of the session's
// shards with news (messages or drops), starting at a rotating shard.
func (s *Sharded) Fetch(ctx context.Context, id string, max int) (server.Batch, error) {
	set, _, err := s.shardsOf(ctx, id)
	if err != nil {
		return server.Batch{}, err
	}
	if len(set) > 1 {
		s.extend(id, set[1:]) // a shard added by another process
	}
	start := int(s.rot.Add(1) % uint64(len(set)))
	for i := range set {
		k := set[(start+i)%len(set)]
		b, err := s.shards[k].Fetch(ctx, id, max)
		if err != nil {
			if k != set[0] && errors.Is(err, server.ErrUnknownClient) {
				// Its copy there is gone (expired first, or that shard's
				// Redis lost its data): the whole session ends, so that its
				// client starts again rather than miss that shard's messages.
				_, _ = s.shards[set[0]].expireSession(ctx, id)
			}
			return server.Batch{}, err
		}
		if len(b.Messages) > 0 || b.Dropped > 0 {
			b.Messages = s.outside(k, b.Messages)
			b.Cursor = s.outSeq(k, b.Cursor)
			if len(set) > 1 {
				s.wake(id) // the other shards' news: fetched next
			}
			return b, nil
		}
	}
	return server.Batch{}, nil
}

// Commit implements server.Engine: in the shard the cursor names.
func (s *Sharded) Commit(ctx context.Context, id string, cursor uint64) error {
	if cursor == 0 {
		return nil
	}
	n := uint64(len(s.shards))
	return s.shards[cursor%n].Commit(ctx, id, cursor/n)
}

// History implements server.Engine: from the channel's shard.
func (s *Sharded) History(ctx context.Context, channel string, after uint64) ([]*server.Message, error) {
	k := s.channelShard(channel)
	msgs, err := s.shards[k].History(ctx, channel, s.inSeq(k, after))
	return s.outside(k, msgs), err
}

// Channels implements server.Engine: every shard's, merged in order.
func (s *Sharded) Channels(ctx context.Context, prefix string) ([]string, error) {
	out := []string{}
	for _, e := range s.shards {
		names, err := e.Channels(ctx, prefix)
		if err != nil {
			return nil, err
		}
		out = append(out, names...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// subsChanged tells the other processes that a session's subscriptions
// changed (a "d" notice): their watches of it read them again and wake.
func (e *Engine) subsChanged(ctx context.Context, id string) error {
	return e.notice(ctx, "d", id)
}
