package redis

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/server"
)

// The shared session limits of a sharded site (server.SharedLimiter): an
// address's count and token bucket live in the shard of the address's
// hash, a user's count in the shard of the user's, each one for the
// whole site. Their sessions live in their homes, other shards: the
// script there cannot look whether a counted session still exists, so it
// refuses at the cap, and AdmitSession looks in the homes of the sessions
// counted longest ago, drops those gone, and asks once more.

// AdmitSession implements server.SharedLimiter: the address first (its
// count and bucket), then the user; a refusal by the user takes the
// session back off the address's count.
func (s *Sharded) AdmitSession(ctx context.Context, id, addr, user string, q server.SessionQuota) (server.Admission, error) {
	n := len(s.shards)
	byAddr := addr != "" && (q.AddressMax > 0 || q.AddressRate > 0)
	at := s.shards[pick("addr:"+addr, n)] // the address's counts
	if byAddr {
		qa := q
		qa.UserMax = 0
		a, err := s.admitIn(ctx, at, id, addr, "", qa)
		if err != nil || a != server.AdmitOK {
			return a, err
		}
	}
	if user == "" || q.UserMax <= 0 {
		return server.AdmitOK, nil
	}
	a, err := s.admitIn(ctx, s.shards[pick("user:"+user, n)], id, "", user, server.SessionQuota{UserMax: q.UserMax})
	if (err != nil || a != server.AdmitOK) && byAddr && q.AddressMax > 0 {
		cctx, cancel := at.call(ctx)
		_ = at.client.Do(cctx, at.client.B().Zrem().Key(at.p+"la:"+addr).Member(id).Build()).Error()
		cancel()
	}
	return a, err
}

// admitIn admits the session in shard e; a count at its cap is looked
// through once (forget) before the answer stands.
func (s *Sharded) admitIn(ctx context.Context, e *Engine, id, addr, user string, q server.SessionQuota) (server.Admission, error) {
	for try := 0; ; try++ {
		a, err := e.admit(ctx, id, addr, user, q, true)
		if err != nil || try > 0 || (a != server.AdmitAddressMax && a != server.AdmitUserMax) {
			return a, err
		}
		key := e.p + "la:" + addr
		if a == server.AdmitUserMax {
			key = e.p + "lu:" + user
		}
		if dropped, err := s.forget(ctx, e, key); err != nil || !dropped {
			return a, err
		}
	}
}

// forget looks up, in their homes, the sessions of the count at key (in
// shard e) admitted or found alive longest ago, limitGrace or more ago
// (128 at most): it drops those that are gone, marks the others found
// alive now, and reports whether it dropped any.
func (s *Sharded) forget(ctx context.Context, e *Engine, key string) (bool, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	now := time.Now().UnixMilli()
	ids, err := e.client.Do(cctx, e.client.B().Zrangebyscore().Key(key).Min("-inf").
		Max(strconv.FormatInt(now-limitGrace, 10)).Limit(0, 128).Build()).AsStrSlice()
	if err != nil || len(ids) == 0 {
		return false, fail(err)
	}
	byHome := map[int][]string{}
	for _, id := range ids {
		h := s.home(id)
		byHome[h] = append(byHome[h], id)
	}
	var gone, alive []string
	for k, group := range byHome {
		h := s.shards[k]
		cmds := make([]rueidis.Completed, len(group))
		for i, id := range group {
			cmds[i] = h.client.B().Exists().Key(h.p + "s:" + id).Build()
		}
		for i, r := range h.client.DoMulti(cctx, cmds...) {
			n, err := r.AsInt64()
			if err != nil {
				return false, fail(err)
			}
			if n == 0 {
				gone = append(gone, group[i])
			} else {
				alive = append(alive, group[i])
			}
		}
	}
	if len(gone) > 0 {
		if err := e.client.Do(cctx, e.client.B().Zrem().Key(key).Member(gone...).Build()).Error(); err != nil {
			return false, fail(err)
		}
	}
	if len(alive) > 0 {
		cmd := e.client.B().Zadd().Key(key).Xx().ScoreMember()
		for _, id := range alive {
			cmd = cmd.ScoreMember(float64(now), id)
		}
		if err := e.client.Do(cctx, cmd.Build()).Error(); err != nil {
			return false, fail(err)
		}
	}
	return len(gone) > 0, nil
}
