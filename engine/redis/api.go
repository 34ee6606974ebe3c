package redis

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/server"
)

// What the server API needs of the engine beyond server.Engine: the index
// from users to sessions, for the server API (disconnect,
// subscribe and unsubscribe of every session of a user), and the marks of
// sessions it disconnected. The index is a set of session ids per user,
// added to when a session gets its AttrUser; it is not kept exact by the
// scripts (a removed or expired session stays listed): UserSessions reads
// every listed session and drops the ids that are gone or belong to
// someone else now. The set expires userIndexTTL after its last addition.

const (
	userIndexTTL   = 24 * time.Hour
	disconnectMark = time.Minute
)

var (
	_ server.UserIndex        = (*Engine)(nil)
	_ server.DisconnectMarker = (*Engine)(nil)
)

func (e *Engine) userKey(user string) string { return e.p + "u:" + user }

// indexUser lists session id under user.
func (e *Engine) indexUser(ctx context.Context, id, user string) error {
	if user == "" {
		return nil
	}
	return e.addToIndex(ctx, e.userKey(user), id, userIndexTTL)
}

// addToIndex adds id to the set at key, which then lives ttl: the lazy
// indexes of this file and presence.go, checked when read.
func (e *Engine) addToIndex(ctx context.Context, key, id string, ttl time.Duration) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	for _, r := range e.client.DoMulti(cctx,
		e.client.B().Sadd().Key(key).Member(id).Build(),
		e.client.B().Expire().Key(key).Seconds(int64(ttl/time.Second)).Build()) {
		if err := r.Error(); err != nil {
			return fail(err)
		}
	}
	return nil
}

// UserSessions implements server.UserIndex.
func (e *Engine) UserSessions(ctx context.Context, user string) ([]server.Session, error) {
	cctx, cancel := e.call(ctx)
	ids, err := e.client.Do(cctx, e.client.B().Smembers().Key(e.userKey(user)).Build()).AsStrSlice()
	cancel()
	if err != nil {
		return nil, fail(err)
	}
	var out []server.Session
	var stale []string
	for _, id := range ids {
		s, err := e.Session(ctx, id)
		if err != nil && !errors.Is(err, server.ErrUnknownClient) {
			return nil, err
		}
		if err != nil || s.Attrs[server.AttrUser] != user {
			stale = append(stale, id)
			continue
		}
		out = append(out, s)
	}
	if len(stale) > 0 {
		cctx, cancel := e.call(ctx)
		defer cancel()
		if err := e.client.Do(cctx, e.client.B().Srem().Key(e.userKey(user)).Member(stale...).Build()).Error(); err != nil {
			return nil, fail(err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// MarkDisconnected implements server.DisconnectMarker.
func (e *Engine) MarkDisconnected(ctx context.Context, id string) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	return fail(e.client.Do(cctx, e.client.B().Set().Key(e.p+"kick:"+id).Value("1").
		Px(disconnectMark).Build()).Error())
}

// Disconnected implements server.DisconnectMarker.
func (e *Engine) Disconnected(ctx context.Context, id string) (bool, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	n, err := e.client.Do(cctx, e.client.B().Exists().Key(e.p+"kick:"+id).Build()).AsInt64()
	return n == 1, fail(err)
}

// scriptRemoveHistory drops a channel's history as the sweep does (its
// bytes given back, the channel forgotten if no one subscribes to it) and
// returns 1 if it had any.
var scriptRemoveHistory = rueidis.NewLuaScript(historyLua + `
local P, ch = ARGV[1], ARGV[2]
local had = redis.call('EXISTS', P..'h:'..ch)
drop_history(P, ch)
return had
`)

var _ server.HistoryRemover = (*Engine)(nil)

// RemoveHistory implements server.HistoryRemover.
func (e *Engine) RemoveHistory(ctx context.Context, channel string) (bool, error) {
	n, err := e.execInt(ctx, scriptRemoveHistory, channel)
	return n == 1, err
}

var _ server.HistoryLoss = (*Engine)(nil)

// Lost implements server.HistoryLoss: the scripts record the newest entry
// they drop from a channel's history (see lost_entry in scripts.go).
func (e *Engine) Lost(ctx context.Context, channel string) (uint64, time.Time, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	v, err := e.client.Do(cctx, e.client.B().Hget().Key(e.p+"hl").Field(channel).Build()).ToString()
	if rueidis.IsRedisNil(err) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, fail(err)
	}
	seqText, us, _ := strings.Cut(v, ":")
	seq, _ := strconv.ParseUint(seqText, 10, 64)
	t, _ := strconv.ParseInt(us, 10, 64)
	return seq, time.UnixMicro(t), nil
}

var _ server.ProcessCounter = (*Engine)(nil)

// Processes implements server.ProcessCounter: the nodes whose heartbeat
// (each process's sweep) has not run out.
func (e *Engine) Processes(ctx context.Context) (int, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	n, err := e.client.Do(cctx, e.client.B().Zcount().Key(e.p+"nodes").Min(nowMS()).Max("+inf").Build()).AsInt64()
	return int(n), fail(err)
}
