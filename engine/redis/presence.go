package redis

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/server"
)

// Presence across processes: a set of session ids per subscription
// pattern ("pm:PATTERN"), added to when a session newly subscribes (one
// more round trip, not on the repeated subscribes of Stardust polls). As
// the user index, it is not kept exact by the scripts: Present reads every
// listed session and drops the ids that are gone or no longer subscribed
// to the pattern, so a session leaves presence when it unsubscribes, is
// removed or expires, on whatever process. A set expires presenceTTL after
// its last addition or its last read that found someone.

const presenceTTL = 24 * time.Hour

var _ server.Presence = (*Engine)(nil)

func (e *Engine) presenceKey(pattern string) string { return e.p + "pm:" + pattern }

// indexPresence lists session id under pattern.
func (e *Engine) indexPresence(ctx context.Context, id, pattern string) error {
	return e.addToIndex(ctx, e.presenceKey(pattern), id, presenceTTL)
}

// Present implements server.Presence.
func (e *Engine) Present(ctx context.Context, channel string) ([]server.Session, error) {
	if _, err := server.ParseChannel(channel, false); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []server.Session
	for _, pattern := range candidates(channel) {
		key := e.presenceKey(pattern)
		cctx, cancel := e.call(ctx)
		ids, err := e.client.Do(cctx, e.client.B().Smembers().Key(key).Build()).AsStrSlice()
		cancel()
		if err != nil {
			return nil, fail(err)
		}
		var stale []string
		live := false
		for _, id := range ids {
			s, err := e.Session(ctx, id)
			if err != nil && !errors.Is(err, server.ErrUnknownClient) {
				return nil, err
			}
			var subs []string
			if err == nil {
				if subs, err = e.Subscriptions(ctx, id); err != nil && !errors.Is(err, server.ErrUnknownClient) {
					return nil, err
				}
			}
			if err != nil || !slices.Contains(subs, pattern) {
				stale = append(stale, id)
				continue
			}
			live = true
			if !seen[id] {
				seen[id] = true
				out = append(out, s)
			}
		}
		if err := e.tidyPresence(ctx, key, stale, live); err != nil {
			return nil, err
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// tidyPresence drops the stale ids from a pattern's set and, when someone
// was found, keeps the set for another presenceTTL.
func (e *Engine) tidyPresence(ctx context.Context, key string, stale []string, live bool) error {
	cctx, cancel := e.call(ctx)
	defer cancel()
	if len(stale) > 0 {
		if err := e.client.Do(cctx, e.client.B().Srem().Key(key).Member(stale...).Build()).Error(); err != nil {
			return fail(err)
		}
	}
	if live {
		return fail(e.client.Do(cctx, e.client.B().Expire().Key(key).Seconds(int64(presenceTTL/time.Second)).Build()).Error())
	}
	return nil
}

// Members across processes (server.Members): per join_leave channel a
// hash of user -> sessions counted ("jc:CHANNEL"), per session what it is
// counted in ("js:ID": u its user, i its info, c:CHANNEL for each
// channel), and the sessions with such a record ("jss", all scores 0,
// walked by the sweep from "jsw"). Each call is one script: the 0->1 and
// 1->0 transitions of a user's count are seen by exactly one caller,
// whatever the process, and that caller announces them. A session
// removed by a process that died before it called Gone is found by
// SweepMembers, which checks membersSweep sessions per call.

// Sessions looked at per script call: by SweepMembers, and by Gone (each
// may be counted on up to Limits.MaxSubscriptions channels).
const (
	membersSweep = 50
	goneChunk    = 16
)

var _ server.Members = (*Engine)(nil)

// membersLua is what the member scripts share: taking one session of a
// user off a channel, and a whole session that went.
const membersLua = `
local function uncount(P, ch, u, i, out)
  local k = P..'jc:'..ch
  if redis.call('HINCRBY', k, u, -1) <= 0 then
    redis.call('HDEL', k, u)
    table.insert(out, ch)
    table.insert(out, u)
    table.insert(out, i)
  end
end
local function gone(P, id, out)
  local js = P..'js:'..id
  if redis.call('EXISTS', P..'s:'..id) == 1 then return end
  local all = redis.call('HGETALL', js)
  local u, i = '', ''
  for n = 1, #all, 2 do
    if all[n] == 'u' then u = all[n+1] elseif all[n] == 'i' then i = all[n+1] end
  end
  for n = 1, #all, 2 do
    local ch = string.match(all[n], '^c:(.*)$')
    if ch then uncount(P, ch, u, i, out) end
  end
  redis.call('DEL', js)
  redis.call('ZREM', P..'jss', id)
end
`

// scriptJoin returns 1 when the user had no session counted on the
// channel, 0 otherwise (counted already, or no such session).
var scriptJoin = rueidis.NewLuaScript(`
local P, ch, id, user, info = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if redis.call('EXISTS', P..'s:'..id) == 0 then return 0 end
local js = P..'js:'..id
if redis.call('HSETNX', js, 'c:'..ch, 1) == 0 then return 0 end
redis.call('HSETNX', js, 'u', user)
redis.call('HSETNX', js, 'i', info)
redis.call('ZADD', P..'jss', 0, id)
local u = redis.call('HGET', js, 'u')
if redis.call('HINCRBY', P..'jc:'..ch, u, 1) == 1 then return 1 end
return 0
`)

// scriptLeave returns {channel, user, info} when the session was its
// user's last on the channel, else {}.
var scriptLeave = rueidis.NewLuaScript(membersLua + `
local P, ch, id = ARGV[1], ARGV[2], ARGV[3]
local js = P..'js:'..id
if redis.call('HDEL', js, 'c:'..ch) == 0 then return {} end
local u, i = unpack(redis.call('HMGET', js, 'u', 'i'))
local out = {}
uncount(P, ch, u or '', i or '', out)
if redis.call('HLEN', js) <= 2 then
  redis.call('DEL', js)
  redis.call('ZREM', P..'jss', id)
end
return out
`)

// scriptGone returns {channel, user, info...}, the users the sessions
// named (gone from Redis) were the last of.
var scriptGone = rueidis.NewLuaScript(membersLua + `
local P = ARGV[1]
local out = {}
for n = 2, #ARGV do gone(P, ARGV[n], out) end
return out
`)

// scriptSweepMembers looks at the next ARGV[2] sessions with a record
// after where the last call stopped, as scriptGone for those gone.
var scriptSweepMembers = rueidis.NewLuaScript(membersLua + `
local P, n = ARGV[1], tonumber(ARGV[2])
local from = redis.call('GET', P..'jsw') or ''
local bound = '-'
if from ~= '' then bound = '('..from end
local ids = redis.call('ZRANGEBYLEX', P..'jss', bound, '+', 'LIMIT', 0, n)
local out = {}
for _, id in ipairs(ids) do gone(P, id, out) end
if #ids < n then redis.call('DEL', P..'jsw') else redis.call('SET', P..'jsw', ids[#ids]) end
return out
`)

// Join implements server.Members.
func (e *Engine) Join(ctx context.Context, channel, id, user string, info json.RawMessage) (bool, error) {
	n, err := e.execInt(ctx, scriptJoin, channel, id, user, string(info))
	return n == 1, err
}

// Leave implements server.Members.
func (e *Engine) Leave(ctx context.Context, channel, id string) (server.Member, bool, error) {
	ms, err := e.members(ctx, scriptLeave, channel, id)
	if err != nil || len(ms) == 0 {
		return server.Member{}, false, err
	}
	return ms[0], true, nil
}

// Gone implements server.Members: goneChunk sessions per script call.
func (e *Engine) Gone(ctx context.Context, ids ...string) ([]server.Member, error) {
	var out []server.Member
	for chunk := range slices.Chunk(ids, goneChunk) {
		ms, err := e.members(ctx, scriptGone, chunk...)
		if err != nil {
			return out, err
		}
		out = append(out, ms...)
	}
	return out, nil
}

// SweepMembers implements server.Members.
func (e *Engine) SweepMembers(ctx context.Context) ([]server.Member, error) {
	return e.members(ctx, scriptSweepMembers, strconv.Itoa(membersSweep))
}

// members runs a script that answers {channel, user, info...}.
func (e *Engine) members(ctx context.Context, s *rueidis.Lua, args ...string) ([]server.Member, error) {
	r, err := e.exec(ctx, s, args...)
	if err != nil {
		return nil, err
	}
	vals, err := r.AsStrSlice()
	if err != nil && !rueidis.IsRedisNil(err) {
		return nil, fail(err)
	}
	var out []server.Member
	for i := 0; i+2 < len(vals); i += 3 {
		m := server.Member{Channel: vals[i], User: vals[i+1]}
		if vals[i+2] != "" {
			m.Info = json.RawMessage(vals[i+2])
		}
		out = append(out, m)
	}
	return out, nil
}
