package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/server"
)

// Webhooks across processes (server/webhooks.go): occupancy counted by
// scripts, so that the process whose call makes a channel's count go from
// 0 to 1 or from 1 to 0 is the only one that sees the transition, and the
// outgoing queue in a list that any process may send. (A user's arrivals
// and departures are the Members of presence.go.)
//
//	P wo:s:ID        hash: channel -> user ("" none): the channels session ID is counted on
//	P wo:c:CHANNEL   the sessions on the channel
//	P wq             list: webhook events (JSON) waiting to be sent, oldest first
//	P wl             the sender's lease: the owner's id, expiring
//
// The occupancy keys live occupancyTTL after their last change, so that
// counts a lost event left wrong do not stay for ever; a channel held
// with no change for longer is announced again when it next fills.

const occupancyTTL = 7 * 24 * time.Hour

var (
	_ server.Occupancy    = (*Engine)(nil)
	_ server.WebhookQueue = (*Engine)(nil)
)

// scriptOccupy returns 1 when the session is the channel's first, 0
// otherwise (and for a session that is gone or on the channel already).
var scriptOccupy = rueidis.NewLuaScript(`
local P, id, ch, user, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('HEXISTS', P..'s:'..id, 'k') == 0 then return 0 end
local s = P..'wo:s:'..id
if redis.call('HSETNX', s, ch, user) == 0 then return 0 end
redis.call('PEXPIRE', s, ttl)
local c = P..'wo:c:'..ch
local n = redis.call('INCR', c)
redis.call('PEXPIRE', c, ttl)
if n == 1 then return 1 end
return 0
`)

// scriptVacate returns {channel, user, empty, ...} for each channel the
// session left: those of ARGV[3..], or all of its own (at most its
// subscription limit).
var scriptVacate = rueidis.NewLuaScript(`
local P, id = ARGV[1], ARGV[2]
local s = P..'wo:s:'..id
local chans = {}
for i = 3, #ARGV do chans[#chans + 1] = ARGV[i] end
if #chans == 0 then chans = redis.call('HKEYS', s) end
local out = {}
for _, ch in ipairs(chans) do
  local user = redis.call('HGET', s, ch)
  if user then
    redis.call('HDEL', s, ch)
    local c = P..'wo:c:'..ch
    local empty = '0'
    if redis.call('DECR', c) <= 0 then
      redis.call('DEL', c)
      empty = '1'
    end
    for _, v in ipairs({ch, user, empty}) do out[#out + 1] = v end
  end
end
return out
`)

// scriptWebhookPush returns how many of the events it dropped: those past
// the queue's bound (the newest; the head never moves but by a trim).
var scriptWebhookPush = rueidis.NewLuaScript(`
local P, max = ARGV[1], tonumber(ARGV[2])
local q = P..'wq'
local n = #ARGV - 2
local take = math.max(0, math.min(n, max - redis.call('LLEN', q)))
if take > 0 then redis.call('RPUSH', q, unpack(ARGV, 3, 2 + take)) end
return n - take
`)

// scriptWebhookBatch returns {1, {events}} with the lease taken or
// renewed for ARGV[2], or {0, {}} when another owner holds it.
var scriptWebhookBatch = rueidis.NewLuaScript(`
local P, owner, lease, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local l = P..'wl'
local h = redis.call('GET', l)
if h and h ~= owner then return {0, {}} end
redis.call('SET', l, owner, 'PX', lease)
if n <= 0 then return {1, {}} end
return {1, redis.call('LRANGE', P..'wq', 0, n - 1)}
`)

// scriptWebhookTrim drops the head's ARGV[3] events if ARGV[2] holds the
// lease; it returns 1 if it did.
var scriptWebhookTrim = rueidis.NewLuaScript(`
local P, owner, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('GET', P..'wl') ~= owner then return 0 end
redis.call('LTRIM', P..'wq', n, -1)
return 1
`)

// Occupy implements server.Occupancy.
func (e *Engine) Occupy(ctx context.Context, id, user, channel string) (bool, error) {
	n, err := e.execInt(ctx, scriptOccupy, id, channel, user, strconv.FormatInt(occupancyTTL.Milliseconds(), 10))
	return n == 1, err
}

// Vacate implements server.Occupancy.
func (e *Engine) Vacate(ctx context.Context, id string, channels []string) ([]server.Vacancy, error) {
	r, err := e.exec(ctx, scriptVacate, append([]string{id}, channels...)...)
	if err != nil {
		return nil, err
	}
	v, err := r.AsStrSlice()
	if err != nil {
		return nil, fail(fmt.Errorf("vacate: unexpected answer: %v", err))
	}
	var out []server.Vacancy
	for i := 0; i+2 < len(v); i += 3 {
		out = append(out, server.Vacancy{Channel: v[i], User: v[i+1], Empty: v[i+2] == "1"})
	}
	return out, nil
}

// PushWebhooks implements server.WebhookQueue.
func (e *Engine) PushWebhooks(ctx context.Context, events []string, max int) (int, error) {
	n, err := e.execInt(ctx, scriptWebhookPush, append([]string{strconv.Itoa(max)}, events...)...)
	return int(n), err
}

// WebhookBatch implements server.WebhookQueue.
func (e *Engine) WebhookBatch(ctx context.Context, owner string, lease time.Duration, n int) ([]string, bool, error) {
	r, err := e.exec(ctx, scriptWebhookBatch, owner, strconv.FormatInt(lease.Milliseconds(), 10), strconv.Itoa(n))
	if err != nil {
		return nil, false, err
	}
	v, err := r.ToArray()
	if err != nil || len(v) != 2 {
		return nil, false, fail(fmt.Errorf("webhook batch: unexpected answer: %v", err))
	}
	ok, _ := v[0].AsInt64()
	events, err := v[1].AsStrSlice()
	if err != nil {
		return nil, false, fail(err)
	}
	return events, ok == 1, nil
}

// TrimWebhooks implements server.WebhookQueue.
func (e *Engine) TrimWebhooks(ctx context.Context, owner string, n int) (bool, error) {
	r, err := e.execInt(ctx, scriptWebhookTrim, owner, strconv.Itoa(n))
	return r == 1, err
}

// WebhookQueueLen implements server.WebhookQueue.
func (e *Engine) WebhookQueueLen(ctx context.Context) (int, error) {
	cctx, cancel := e.call(ctx)
	defer cancel()
	n, err := e.client.Do(cctx, e.client.B().Llen().Key(e.p+"wq").Build()).AsInt64()
	return int(n), fail(err)
}
