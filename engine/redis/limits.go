package redis

import (
	"context"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/server"
)

// The shared limits (server.SharedLimiter): counts and token buckets in
// Redis, so that every process on the same Redis and prefix P enforces one
// limit. Keys, besides those of scripts.go:
//
//	P la:ADDR        zset: session id -> when it was admitted or last found alive (ms): sessions from ADDR
//	P lu:USER        zset: the same for the sessions of USER
//	P lt:KEY         hash: t tokens, l last refill (ms): a token bucket ("sessions:ADDR", "channels:ADDR")
//
// A removed or expired session is not taken out of these counts by the
// scripts that remove it: when a count is at its cap, the ids admitted (or
// found alive) more than limitGrace ago are looked up, 128 at a time, and
// those with no session any more are dropped. Time is Redis's (TIME), so
// that the processes' clocks do not matter. Every key expires when unused:
// a bucket once full again, a count a day after its last admission.

var _ server.SharedLimiter = (*Engine)(nil)

// limitGrace: an id admitted this recently is counted even though its
// session is not there yet (it is being created).
const limitGrace = 2000 // ms

// bucketLua refills the token bucket at key (rate a second, up to burst)
// to now, and saves it with the tokens t.
const bucketLua = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function refill(key, rate, burst, now)
  local v = redis.call('HMGET', key, 't', 'l')
  local t, l = tonumber(v[1]), tonumber(v[2])
  if not t then return burst end
  if now > l then t = math.min(burst, t + (now - l) * rate / 1000) end
  return t
end
local function save(key, t, rate, burst, now)
  redis.call('HSET', key, 't', tostring(t), 'l', now)
  redis.call('PEXPIRE', key, math.ceil((burst - t) * 1000 / rate) + 1000)
end
`

// scriptAdmit: ARGV P, id, addr, user, address max, rate, burst, user max.
// Returns a server.Admission.
var scriptAdmit = rueidis.NewLuaScript(bucketLua + `
local P, id, addr, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local amax, rate, burst, umax = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local now = now_ms()
local akey, ukey, bkey = P..'la:'..addr, P..'lu:'..user, P..'lt:sessions:'..addr
local byAddr, byUser = addr ~= '' and amax > 0, user ~= '' and umax > 0
if byAddr and redis.call('ZSCORE', akey, id) or byUser and redis.call('ZSCORE', ukey, id) then
  return 0
end
local tokens
if addr ~= '' and rate > 0 then
  tokens = refill(bkey, rate, burst, now)
  if tokens < 1 then return 1 end
end
local function room(key, max)
  if redis.call('ZCARD', key) < max then return true end
  if ARGV[9] == '1' then return false end -- the sessions live in other shards: the caller looks (shard_limits.go)
  local ids = redis.call('ZRANGEBYSCORE', key, '-inf', now - ` + strconv.Itoa(limitGrace) + `, 'LIMIT', 0, 128)
  for _, m in ipairs(ids) do
    if redis.call('EXISTS', P..'s:'..m) == 0 then
      redis.call('ZREM', key, m)
    else
      redis.call('ZADD', key, 'XX', now, m)
    end
  end
  return redis.call('ZCARD', key) < max
end
if byAddr and not room(akey, amax) then return 2 end
if byUser and not room(ukey, umax) then return 3 end
if tokens then save(bkey, tokens - 1, rate, burst, now) end
for _, k in ipairs({byAddr and akey or false, byUser and ukey or false}) do
  if k then
    redis.call('ZADD', k, now, id)
    redis.call('PEXPIRE', k, 86400000)
  end
end
return 0
`)

// scriptTake: ARGV P, key, n, rate, burst. Takes up to n whole tokens
// (gives -n back when n < 0) and returns how many it took.
var scriptTake = rueidis.NewLuaScript(bucketLua + `
local key = ARGV[1]..'lt:'..ARGV[2]
local n, rate, burst = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_ms()
local t = refill(key, rate, burst, now)
local took = 0
if n >= 0 then
  took = math.min(n, math.max(0, math.floor(t)))
  t = t - took
else
  t = math.min(burst, t - n)
end
save(key, t, rate, burst, now)
return took
`)

// AdmitSession implements server.SharedLimiter.
func (e *Engine) AdmitSession(ctx context.Context, id, addr, user string, q server.SessionQuota) (server.Admission, error) {
	return e.admit(ctx, id, addr, user, q, false)
}

// admit runs scriptAdmit; elsewhere (a shard of a Sharded, whose sessions
// live in their home shards) it does not look whether the sessions
// counted still exist: a count at its cap refuses, and the caller looks.
func (e *Engine) admit(ctx context.Context, id, addr, user string, q server.SessionQuota, elsewhere bool) (server.Admission, error) {
	n, err := e.execInt(ctx, scriptAdmit, id, addr, user, strconv.Itoa(q.AddressMax),
		strconv.FormatFloat(q.AddressRate, 'g', -1, 64), strconv.Itoa(q.AddressBurst), strconv.Itoa(q.UserMax), argBool(elsewhere))
	return server.Admission(n), err
}

// TakeTokens implements server.SharedLimiter.
func (e *Engine) TakeTokens(ctx context.Context, key string, n int, rate float64, burst int) (int, error) {
	if rate <= 0 {
		return n, nil
	}
	took, err := e.execInt(ctx, scriptTake, key, strconv.Itoa(n), strconv.FormatFloat(rate, 'g', -1, 64), strconv.Itoa(burst))
	return int(took), err
}
