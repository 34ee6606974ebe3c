package redis

import "github.com/redis/rueidis"

// The engine's data, under a key prefix P (default "stardust:"):
//
//	P seq            global message sequence (INCR); stream ids are "<seq>-0"
//	P epoch          random id written once: a new one means Redis lost its data
//	P sessions       zset: session id -> expiry deadline (ms)
//	P s:ID           hash: k kind, r remote, t timeout ms, c committed cursor, e epoch at creation,
//	                 n active subscriptions, w watermark (see scriptFetch), v version of the subscriptions
//	                 (from P vseq: unique, so that a process may keep a list it read), a:NAME attributes
//	P s:ID:subs      hash: pattern -> "start:seen" (global seq at subscribe, highest stream offset fetched),
//	                 or "start:seen:until" after an unsubscribe, until what was queued before it is committed
//	P s:ID:sl        zset (all scores 0): the patterns of s:ID:subs, read in chunks in name order
//	P gone           zset: "G KIND" -> G, removed sessions whose subscriptions are still being dropped
//	P g:G:subs, :sl  a removed session's s:ID:subs and s:ID:sl, renamed, emptied a chunk at a time
//	P stats          hash: k:KIND sessions by kind, subs subscriptions, trimmed histories dropped for bytes,
//	                 c:KIND the copies among them of sessions of another shard (shard.go; cp 1 in their s:ID)
//	P d:ID           stream: messages delivered to this session alone
//	P st:PATTERN     stream: messages for a subscribed pattern (exact channel or /*, /**), capped by the queue bounds
//	P sm:PATTERN     hash: o offset counter, b bytes in st:, n subscriptions, k:KIND subscriptions by kind
//	P pq             zset: pattern -> seq of the last message in its st: stream (swept once the stream expired)
//	P h:CHANNEL      stream: history, capped at the history size; fields m payload, s its size
//	P hb             zset: channel kept -> last publish (ms), oldest trimmed first: the channels MaxChannels
//	                 counts, those with history and those made by CreateChannels (channels.go) with none yet
//	P hs             hash: channel -> bytes of its history
//	P hl             hash: channel -> "seq:time µs" of the newest message no longer kept (gap notices, api.go)
//	P hbytes         bytes of all histories
//	P ch             zset: channel in use -> last used (ms)
//	P chl            zset (all scores 0): the same channels, listed by name a chunk at a time
//	P nodes          zset: node id -> heartbeat deadline (ms)
//	P conns:NODE     hash: address -> held connections counted by that node
//	P jc:CHANNEL     hash: user -> their sessions counted on a join_leave channel (presence.go)
//	P js:ID          hash: u user, i info, c:CHANNEL for each channel the session is counted on
//	P jss, P jsw     zset (all scores 0) of the sessions with a js: record; where SweepMembers stopped
//
// Pub/sub topics: P n:PATTERN carries "SEQ OFFSET PAYLOAD" of each message
// appended to st:PATTERN (so that a process mirrors its sessions' queues
// without reading them, mirror.go); P ctl carries "KIND NODE ID" session
// notices (r: a poll started, x: removed, e: expired, d: subscriptions
// changed or a message delivered, a: an attribute set, f: a mirror
// folded, see scriptFold). A publish is one script whatever the audience: it appends to
// the streams of the d+1 patterns that can match a channel of depth d and
// have subscribers, and publishes once on each.
//
// No script's work grows with what a client did beyond what it returns:
// a session's subscriptions are read a chunk at a time (fetchChunk,
// listChunk) over several calls, a removed session's are dropped a chunk at
// a time (drainChunk) by the remove and then by the sweeps, and every loop
// over streams or channels has a fixed bound. Redis runs one script at a
// time: a script that ran for a second would stall every client.

// Script results that are not data: an unknown session.
const unknownSession = -1

// Results of scriptPublish and scriptSubscribe past a limit.
const (
	tooManyChannels      = -1
	tooManySubscriptions = -3
	channelBudget        = -4 // scriptCreateChannels: more new channels than its budget
	// lostNumbers: scriptPublish or scriptDeliver found the sequence below
	// the highest number the caller has seen (ARGV hw): Redis lost data,
	// and the next number would name a message the caller knows.
	lostNumbers = -5
)

// chLua keeps the channels in use: P ch by last use (for the sweep) and
// P chl by name (for listing them a chunk at a time).
const chLua = `
local function use_channel(P, ch, now)
  redis.call('ZADD', P..'ch', now, ch)
  redis.call('ZADD', P..'chl', 0, ch) -- always: P ch may come from a version without P chl
end
local function forget_channel(P, ch)
  redis.call('ZREM', P..'ch', ch)
  redis.call('ZREM', P..'chl', ch)
  redis.call('HDEL', P..'hl', ch)
end
`

// historyLua is what the scripts share about history: its size in bytes,
// and dropping a channel's whole history (for its timeout or for the
// bytes bound). A channel with exact subscribers stays in use.
const historyLua = chLua + `
local function entry_size(f)
  for i = 1, #f, 2 do if f[i] == 's' then return tonumber(f[i+1]) end end
  return #(f[2] or '')
end
-- lost_entry records a history entry {id, fields} as the newest lost.
local function lost_entry(P, ch, e)
  local payload = ''
  for i = 1, #e[2], 2 do if e[2][i] == 'm' then payload = e[2][i+1] end end
  -- The wire form (cache.go) ends with its time: "t":N} or "t":N,"r":true}.
  local t = string.match(payload, '"t":(%d+)}$') or string.match(payload, '"t":(%d+),"r":true}$') or '0'
  redis.call('HSET', P..'hl', ch, string.match(e[1], '^(%d+)')..':'..t)
end
-- drop_history returns the bytes dropped: 0 for a channel made by
-- CreateChannels that has no history yet.
local function drop_history(P, ch)
  local b = tonumber(redis.call('HGET', P..'hs', ch) or '0')
  local last = redis.call('XREVRANGE', P..'h:'..ch, '+', '-', 'COUNT', 1)[1]
  if last then lost_entry(P, ch, last) end
  redis.call('UNLINK', P..'h:'..ch)
  redis.call('HDEL', P..'hs', ch)
  redis.call('ZREM', P..'hb', ch)
  redis.call('DECRBY', P..'hbytes', b)
  if tonumber(redis.call('HGET', P..'sm:'..ch, 'n') or '0') <= 0 then forget_channel(P, ch) end
  return b
end
local function trim_history(P, maxbytes, limit)
  local n = 0
  while n < limit and tonumber(redis.call('GET', P..'hbytes') or '0') > maxbytes do
    local oldest = redis.call('ZRANGE', P..'hb', 0, 0)[1]
    if not oldest then
      redis.call('SET', P..'hbytes', 0)
      break
    end
    -- Only a history counts as trimmed, not a channel that had none yet.
    if drop_history(P, oldest) > 0 then redis.call('HINCRBY', P..'stats', 'trimmed', 1) end
    n = n + 1
  end
  return n
end
`

// scriptPublish returns {seq, reached, then the candidate's index from 1
// and the offset of each stream it appended to}, or {tooManyChannels, 0},
// or {lostNumbers, 0}. Each of
// its loops has a fixed bound: the candidates (at most 257 for a channel
// name of 512 bytes), the entries trimmed per stream (64; each publish adds
// one) and the histories dropped for bytes (16; the sweep drops the rest).
var scriptPublish = rueidis.NewLuaScript(historyLua + `
local P, ch, payload = ARGV[1], ARGV[2], ARGV[3]
local now, hist, qmax, qbytes, retain = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local maxch, maxbytes, hw = tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local new = hist > 0 and redis.call('ZADD', P..'hb', now, ch) == 1
if new and redis.call('ZCARD', P..'hb') > maxch then
  redis.call('ZREM', P..'hb', ch)
  return {-1, 0}
end
local seq = redis.call('INCR', P..'seq')
if seq <= hw then -- Redis lost numbers the caller has seen: none is handed out again
  redis.call('DECR', P..'seq')
  if new then redis.call('ZREM', P..'hb', ch) end
  return {-5, 0}
end
local id = seq..'-0'
local size = #payload
if hist > 0 then
  local h = P..'h:'..ch
  redis.call('XADD', h, id, 'm', payload, 's', size)
  local len, k, delta = redis.call('XLEN', h), 0, size
  while len > hist and k < 64 do
    local first = redis.call('XRANGE', h, '-', '+', 'COUNT', 1)[1]
    redis.call('XDEL', h, first[1])
    lost_entry(P, ch, first)
    delta = delta - entry_size(first[2])
    len, k = len - 1, k + 1
  end
  redis.call('HINCRBY', P..'hs', ch, delta)
  if redis.call('INCRBY', P..'hbytes', delta) > maxbytes then trim_history(P, maxbytes, 16) end
end
local n, used = 0, hist > 0
local out = {seq, 0}
for i = 12, #ARGV do
  local p = ARGV[i]
  local meta = P..'sm:'..p
  local subs = tonumber(redis.call('HGET', meta, 'n') or '0')
  if subs > 0 then
    local st = P..'st:'..p
    local off = redis.call('HINCRBY', meta, 'o', 1)
    redis.call('XADD', st, id, 'm', payload, 'o', off, 's', size)
    local bytes = redis.call('HINCRBY', meta, 'b', size)
    local len, k = redis.call('XLEN', st), 0
    while len > 1 and (len > qmax or bytes > qbytes) and k < 64 do
      local first = redis.call('XRANGE', st, '-', '+', 'COUNT', 1)[1]
      redis.call('XDEL', st, first[1])
      bytes = redis.call('HINCRBY', meta, 'b', -tonumber(first[2][6]))
      len, k = len - 1, k + 1
    end
    redis.call('PEXPIRE', st, retain)
    redis.call('ZADD', P..'pq', seq, p)
    n = n + subs
    redis.call('PUBLISH', P..'n:'..p, seq..' '..off..' '..payload) -- the mirrors need the message (mirror.go)
    table.insert(out, i - 11)
    table.insert(out, off)
    if i == 12 then used = true end
  end
end
if used then use_channel(P, ch, now) end
out[2] = n
return out
`)

// scriptCreate stores a session with the epoch it belongs to. A missing
// epoch means Redis lost its data (or never had any): a new one is
// written, and the sequence moves past the highest this process has seen
// (ARGV[9]), so that a sequence number never names two messages. A session
// of another epoch (of data Redis lost, or of an older version) is
// removed and replaced.
var scriptCreate = rueidis.NewLuaScript(removeLua + `
local P, id, kind, remote, timeout, now, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local s = P..'s:'..id
local epoch = redis.call('GET', P..'epoch')
if redis.call('EXISTS', s) == 1 then
  if epoch and redis.call('HGET', s, 'e') == epoch then return 0 end
  remove(P, id, tonumber(ARGV[10]))
end
local copy = ARGV[11] == '1' -- a copy of a session of another shard (shard.go): not counted against max
if not copy and redis.call('ZCARD', P..'sessions') >= max then return -2 end
if not epoch then
  epoch = ARGV[8]
  redis.call('SET', P..'epoch', epoch)
  if tonumber(redis.call('GET', P..'seq') or '0') < tonumber(ARGV[9]) then redis.call('SET', P..'seq', ARGV[9]) end
end
redis.call('HSET', s, 'k', kind, 'r', remote, 't', timeout, 'c', redis.call('GET', P..'seq') or '0', 'e', epoch, 'n', 0,
  'v', redis.call('INCR', P..'vseq'))
for i = 12, #ARGV, 2 do redis.call('HSET', s, 'a:'..ARGV[i], ARGV[i+1]) end
local deadline = '+inf'
if timeout > 0 then deadline = now + timeout end
redis.call('ZADD', P..'sessions', deadline, id)
redis.call('HINCRBY', P..'stats', 'k:'..kind, 1)
if copy then
  redis.call('HSET', s, 'cp', 1)
  redis.call('HINCRBY', P..'stats', 'c:'..kind, 1)
end
return 1
`)

// scriptRenew runs when this process finds that Redis lost data without
// losing the epoch (a restart from an older snapshot, a replica promoted
// with lag): a new epoch (unless another process wrote one already) makes
// every older session unknown to Fetch, and the sequence moves past the
// highest this process has seen. It returns the epoch now in force.
var scriptRenew = rueidis.NewLuaScript(`
local P, old, new, hw = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local epoch = redis.call('GET', P..'epoch')
if not epoch or epoch == old then
  epoch = new
  redis.call('SET', P..'epoch', new)
end
if tonumber(redis.call('GET', P..'seq') or '0') < hw then redis.call('SET', P..'seq', hw) end
return epoch
`)

// scriptMaster reads what checkEpoch compares: the epoch, the sequence,
// the server's run_id and where that server's sequence began, which it
// records the first time any process asks on that server (a new master
// after a failover, a restart): {epoch or false, seq, run_id, base}. A
// check by a process that saw numbers past base finds out that Redis lost
// them even after another process, which never saw them, has published
// past them on the new master.
var scriptMaster = rueidis.NewLuaScript(`
local P = ARGV[1]
local id = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
local seq = redis.call('GET', P..'seq') or '0'
local rec = redis.call('GET', P..'master')
local base
if rec then
  local rid, b = string.match(rec, '^(%w+) (%d+)$')
  if rid == id then base = b end
end
if not base then
  base = seq
  redis.call('SET', P..'master', id..' '..seq)
end
return {redis.call('GET', P..'epoch'), seq, id, base}
`)

// subLua is what the scripts share about subscriptions: whether one is
// still active (not unsubscribed with messages pending), its position, and
// dropping one from a pattern's counts. A pattern no one subscribes to any
// more keeps its stream for a while (what was queued before the
// unsubscribe is still fetched from it), then it expires.
const subLua = `
local function active(pos)
  local _, colons = string.gsub(pos, ':', '')
  return colons == 1
end
local function parse(pos)
  local a, b, c = string.match(pos, '^(%d+):(%d+):?(%d*)$')
  return tonumber(a), tonumber(b), tonumber(c)
end
local function position(start, seen, untilSeq)
  if untilSeq then return start..':'..seen..':'..untilSeq end
  return start..':'..seen
end
local function drop_sub(P, p, kind)
  local meta = P..'sm:'..p
  redis.call('HINCRBY', meta, 'k:'..kind, -1)
  if redis.call('HINCRBY', meta, 'n', -1) <= 0 then
    redis.call('PEXPIRE', meta, ` + retainMS + `)
    redis.call('PEXPIRE', P..'st:'..p, ` + retainMS + `)
  end
end
`

// removeLua forgets one session at once (its keys, its counts, its
// queue) and drops its subscriptions from the patterns' counts a chunk
// at a time: its subscription keys are renamed into the graveyard (P
// gone), which drain empties. Until then a publish may count a removed
// session in its audience; it never queues anything for it.
const removeLua = subLua + `
local function drain(P, member, budget)
  local g, kind = string.match(member, '^(%d+) (.*)$')
  local gk = P..'g:'..g
  local pats = redis.call('ZRANGE', gk..':sl', 0, budget - 1)
  for _, p in ipairs(pats) do
    local pos = redis.call('HGET', gk..':subs', p)
    if pos and active(pos) then drop_sub(P, p, kind) end
  end
  if #pats > 0 then
    redis.call('HDEL', gk..':subs', unpack(pats))
    redis.call('ZREM', gk..':sl', unpack(pats))
  end
  if #pats < budget then
    redis.call('UNLINK', gk..':subs', gk..':sl')
    redis.call('ZREM', P..'gone', member)
  end
  return #pats
end
local function remove(P, id, budget)
  local s = P..'s:'..id
  local kind, n, o, cp = unpack(redis.call('HMGET', s, 'k', 'n', 'o', 'cp'))
  if not kind then
    redis.call('ZREM', P..'sessions', id)
    return 0
  end
  if o then redis.call('HDEL', P..'cur:'..o, id) end -- its owner's flushed cursor (mirror.go)
  local subs, sl = s..':subs', s..':sl'
  if not n then
    -- Written by a version before subscriptions were indexed: one pass.
    local all = redis.call('HGETALL', subs)
    for i = 1, #all, 2 do
      if active(all[i+1]) then
        drop_sub(P, all[i], kind)
        redis.call('HINCRBY', P..'stats', 'subs', -1)
      end
    end
    redis.call('UNLINK', subs)
  else
    if tonumber(n) ~= 0 then redis.call('HINCRBY', P..'stats', 'subs', 0 - tonumber(n)) end
    if redis.call('EXISTS', sl) == 1 then
      local g = redis.call('INCR', P..'gseq')
      local member = g..' '..kind
      redis.call('RENAME', sl, P..'g:'..g..':sl')
      if redis.call('EXISTS', subs) == 1 then redis.call('RENAME', subs, P..'g:'..g..':subs') end
      redis.call('ZADD', P..'gone', g, member)
      if budget > 0 then drain(P, member, budget) end
    else
      redis.call('UNLINK', subs)
    end
  end
  redis.call('UNLINK', s, P..'d:'..id)
  redis.call('ZREM', P..'sessions', id)
  redis.call('HINCRBY', P..'stats', 'k:'..kind, -1)
  if cp then redis.call('HINCRBY', P..'stats', 'c:'..kind, -1) end -- a shard's copy (shard.go)
  return 1
end
`

// scriptRemove removes a session and publishes the ctl notice ARGV[5]
// ("x" removed, "e" expired: Engine.removeAs).
var scriptRemove = rueidis.NewLuaScript(removeLua + `
local P, id, node, budget, notice = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local r = remove(P, id, budget)
if r == 1 then redis.call('PUBLISH', P..'ctl', notice..' '..node..' '..id) end
return r
`)

// scriptSweep returns {more, id, kind, id, kind...}: it removes up to 100
// expired sessions, drops up to a budget of removed sessions'
// subscriptions, dead nodes with their connection counts, up to 100
// channels unused for the channel timeout with no exact subscriber, and up
// to 100 histories past the bytes bound. more says that work is left. Any
// node may run it at any time: each step is atomic, and a second sweeper
// finds nothing left to do.
var scriptSweep = rueidis.NewLuaScript(removeLua + historyLua + `
local P, now, node, chTimeout, beat = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local maxbytes, budget = tonumber(ARGV[6]), tonumber(ARGV[7])
redis.call('ZADD', P..'nodes', now + beat, node)
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', P..'nodes', '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('DEL', P..'conns:'..dead)
  redis.call('ZREM', P..'nodes', dead)
end
local out = {'0'}
local expired = redis.call('ZRANGEBYSCORE', P..'sessions', '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  local kind = redis.call('HGET', P..'s:'..id, 'k') or ''
  if remove(P, id, 0) == 1 then
    redis.call('PUBLISH', P..'ctl', 'e '..node..' '..id)
    table.insert(out, id)
    table.insert(out, kind)
  end
end
local left = budget
for _, member in ipairs(redis.call('ZRANGE', P..'gone', 0, 15)) do
  if left <= 0 then break end
  left = left - drain(P, member, left)
end
local idle = redis.call('ZRANGEBYSCORE', P..'ch', '-inf', now - chTimeout, 'LIMIT', 0, 100)
for _, ch in ipairs(idle) do
  if tonumber(redis.call('HGET', P..'sm:'..ch, 'n') or '0') <= 0 then
    drop_history(P, ch)
    forget_channel(P, ch)
  else
    redis.call('ZADD', P..'ch', now, ch) -- in use: look again a timeout later
  end
end
local trimmed = trim_history(P, maxbytes, 100)
-- Streams expire in about the order of their last message: the index's
-- oldest entries go first, up to the first stream still there.
local stale = 0
for _, p in ipairs(redis.call('ZRANGE', P..'pq', 0, 99)) do
  if redis.call('EXISTS', P..'st:'..p) == 1 then break end
  redis.call('ZREM', P..'pq', p)
  stale = stale + 1
end
if #expired == 100 or #idle == 100 or trimmed == 100 or stale == 100 or redis.call('ZCARD', P..'gone') > 0 then out[1] = '1' end
return out
`)

var scriptTouch = rueidis.NewLuaScript(`
local P, now = ARGV[1], tonumber(ARGV[2])
for i = 3, #ARGV do
  local t = tonumber(redis.call('HGET', P..'s:'..ARGV[i], 't') or '-1')
  if t > 0 then redis.call('ZADD', P..'sessions', 'XX', now + t, ARGV[i]) end
end
return 1
`)

// scriptSetAttr tells the other processes ("a NODE ID" on ctl): one that
// mirrors the session reads its attributes again (mirror.go).
var scriptSetAttr = rueidis.NewLuaScript(`
local P, id, key, value, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local s = P..'s:'..id
if redis.call('EXISTS', s) == 0 then return -1 end
if value == '' then redis.call('HDEL', s, 'a:'..key) else redis.call('HSET', s, 'a:'..key, value) end
redis.call('PUBLISH', P..'ctl', 'a '..node..' '..id)
return 1
`)

// scriptSubscribe returns 1 (new), 0 (had it), -1 (unknown session) or
// tooManySubscriptions.
var scriptSubscribe = rueidis.NewLuaScript(subLua + chLua + `
local P, id, pattern, node, now, exact, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local s = P..'s:'..id
local kind, n = unpack(redis.call('HMGET', s, 'k', 'n'))
if not kind then return -1 end
local pos = redis.call('HGET', s..':subs', pattern)
if pos and active(pos) then return 0 end
if tonumber(n or '0') >= max then return -3 end
local meta = P..'sm:'..pattern
local off = redis.call('HGET', meta, 'o') or '0'
redis.call('HSET', s..':subs', pattern, (redis.call('GET', P..'seq') or '0')..':'..off)
redis.call('ZADD', s..':sl', 0, pattern)
redis.call('HINCRBY', s, 'n', 1)
redis.call('HSET', s, 'v', redis.call('INCR', P..'vseq'))
redis.call('HINCRBY', meta, 'n', 1)
redis.call('PERSIST', meta)
redis.call('HINCRBY', meta, 'k:'..kind, 1)
redis.call('HINCRBY', P..'stats', 'subs', 1)
if exact == '1' then use_channel(P, pattern, now) end
redis.call('PUBLISH', P..'ctl', 'd '..node..' '..id)
return 1
`)

var scriptUnsubscribe = rueidis.NewLuaScript(subLua + `
local P, id, pattern, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local s = P..'s:'..id
local kind = redis.call('HGET', s, 'k')
if not kind then return -1 end
local pos = redis.call('HGET', s..':subs', pattern)
if not pos or not active(pos) then return 0 end
redis.call('HSET', s..':subs', pattern, pos..':'..(redis.call('GET', P..'seq') or '0'))
redis.call('HINCRBY', s, 'n', -1)
redis.call('HSET', s, 'v', redis.call('INCR', P..'vseq'))
redis.call('HINCRBY', P..'stats', 'subs', -1)
drop_sub(P, pattern, kind)
redis.call('PUBLISH', P..'ctl', 'd '..node..' '..id) -- a process that mirrors it reads it again
return 1
`)

// scriptList returns {next, pattern...}: the active subscriptions among
// the next chunk of a session's patterns in name order after ARGV[3] (a
// ZRANGEBYLEX bound), and where the next chunk starts ("" when done); or
// {-1} for an unknown session.
var scriptList = rueidis.NewLuaScript(subLua + `
local P, id, from, K = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local s = P..'s:'..id
if redis.call('EXISTS', s) == 0 then return {-1} end
local pats = redis.call('ZRANGEBYLEX', s..':sl', from, '+', 'LIMIT', 0, K + 1)
local out = {''}
if #pats > K then
  table.remove(pats)
  out[1] = pats[K]
end
if #pats == 0 then return out end
local pos = redis.call('HMGET', s..':subs', unpack(pats))
for i, p in ipairs(pats) do
  if pos[i] and active(pos[i]) then table.insert(out, p) end
end
return out
`)

var scriptDeliver = rueidis.NewLuaScript(`
local P, id, payload, qmax, node, hw = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
if redis.call('EXISTS', P..'s:'..id) == 0 then return -1 end
local seq = redis.call('INCR', P..'seq')
if seq <= hw then -- as in scriptPublish
  redis.call('DECR', P..'seq')
  return -5
end
redis.call('XADD', P..'d:'..id, 'MAXLEN', qmax, seq..'-0', 'm', payload)
redis.call('PUBLISH', P..'ctl', 'd '..node..' '..id)
return seq
`)

// scriptFetch reads one chunk of the subscriptions of a session that may
// have news, in one of two orders, and returns {cursor, dropped, next,
// mode, seq, then seq, payload, pattern, offset for each entry}:
//
//   - "s": the session's patterns in name order (s:ID:sl), K per call;
//   - "p": the patterns published to since the session's watermark w, in
//     the order of their last message (P pq), K per call (and the ties of
//     one publish together), those the session does not subscribe to
//     skipped.
//
// The first call (ARGV[4] = "") picks the shorter of the two, reads the
// session's own queue and returns the current sequence (seq): when no
// chunk finds anything after the cursor, the caller records it as the
// session's watermark (scriptMark), so that an idle client's next poll
// looks only at what was published since. w means: no stream of the
// session holds a message between the cursor and w.
//
// Each entry comes from a stream after the committed cursor, up to max per
// stream, none past ARGV[7] when it is not 0 (the caller has max messages
// before it already) nor, once the call has read max messages, past the
// max-th oldest of them (so that a call returns a few times max entries,
// not max per stream); next is where the following chunk starts ("" when
// done). A payload already returned by this call is "". It takes nothing;
// it records, for each stream whose messages were lost to the queue bounds,
// that they were reported (in dropped). The caller merges the chunks, keeps
// the oldest max and records with scriptMark how far each stream was
// answered. {-1}: an unknown session, or one of an epoch whose data Redis
// lost.
var scriptFetch = rueidis.NewLuaScript(mirrorLua + `
local P, id, max, mode, from = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local K, bound = tonumber(ARGV[6]), tonumber(ARGV[7])
local s = P..'s:'..id
local head = redis.call('HMGET', s, 'c', 'e', 'w', 'o')
if not head[1] or head[2] ~= redis.call('GET', P..'epoch') then return {-1} end
if mode == '' and head[4] and head[4] ~= ARGV[8] then
  -- A process mirrored it (and may have died): what it flushed first.
  settle(P, id, s, head[4], ARGV[8])
  head[1] = redis.call('HGET', s, 'c')
end
local c = tonumber(head[1])
local subs, sl = s..':subs', s..':sl'
local first, now = mode == '', ''
if first then
  now = redis.call('GET', P..'seq') or '0'
  local w = math.max(c, tonumber(head[3] or '0'))
  mode, from = 's', '-'
  if redis.call('ZCOUNT', P..'pq', '('..w, '+inf') < redis.call('ZCARD', sl) then
    mode, from = 'p', '('..w
  end
end
local out = {c, 0, '', mode, now}
local pats = {}
if mode == 's' then
  pats = redis.call('ZRANGEBYLEX', sl, from, '+', 'LIMIT', 0, K + 1)
  if #pats > K then
    table.remove(pats)
    out[3] = '('..pats[K]
  end
else
  local r = redis.call('ZRANGEBYSCORE', P..'pq', from, '+inf', 'WITHSCORES', 'LIMIT', 0, K + 1)
  local n = #r / 2
  for i = 1, math.min(n, K) do table.insert(pats, r[2*i-1]) end
  if n > K then
    local last = r[2*K]
    if r[2*K+2] ~= last then
      out[3] = '('..last
    else
      -- The chunk ends among the patterns of one publish: leave them all
      -- to the next call, or read them all now if they are all there is.
      local keep = {}
      for i = 1, K do if r[2*i] ~= last then table.insert(keep, r[2*i-1]) end end
      if #keep > 0 then
        pats, out[3] = keep, last
      else
        pats, out[3] = redis.call('ZRANGEBYSCORE', P..'pq', last, last), '('..last
      end
    end
  end
end
-- Once this call has read max messages, later streams need nothing past
-- the max-th oldest: kept in cap, from the distinct sequence numbers read
-- (pool), pruned to the oldest max whenever it reaches twice that. So that
-- a call reads about max messages for each doubling, never max per stream.
local cap, pool = bound, {}
local function note(seq)
  table.insert(pool, tonumber(seq))
  if #pool >= 2 * max then
    table.sort(pool)
    for i = #pool, max + 1, -1 do pool[i] = nil end
    if cap == 0 or pool[max] < cap then cap = pool[max] end
  end
end
local function upto(untilSeq)
  local last = cap
  if untilSeq and (last == 0 or untilSeq < last) then last = untilSeq end
  if last == 0 then return '+', 0 end
  return last..'-0', last
end
local dropped, sent = 0, {}
local function add(seq, payload, p, off)
  if sent[seq] then payload = '' else note(seq) end
  sent[seq] = true
  table.insert(out, seq)
  table.insert(out, payload)
  table.insert(out, p)
  table.insert(out, off)
end
for _, p in ipairs(pats) do
  local pos = redis.call('HGET', subs, p)
  local start, seen, untilSeq
  if pos then start, seen, untilSeq = parse(pos) end
  local after = math.max(c, start or 0)
  if not pos then
    if mode == 's' then redis.call('ZREM', sl, p) end
  elseif untilSeq and after >= untilSeq then
    redis.call('HDEL', subs, p) -- all it queued is committed
    redis.call('ZREM', sl, p)
  else
    local stream = P..'st:'..p
    local last, capped = upto(untilSeq)
    local entries = redis.call('XRANGE', stream, '('..after..'-0', last, 'COUNT', max)
    local newSeen = seen
    if #entries > 0 then
      local firstOff = tonumber(entries[1][2][4])
      if firstOff > seen + 1 then newSeen = firstOff - 1 end
    elseif not untilSeq then
      local lastOff = tonumber(redis.call('HGET', P..'sm:'..p, 'o') or '0')
      -- Nothing after the cursor: what was added since it was seen is lost,
      -- unless it lies past what was read.
      if lastOff > seen and (capped == 0 or #redis.call('XRANGE', stream, '('..after..'-0', '+', 'COUNT', 1) == 0) then
        newSeen = lastOff
      end
    end
    if newSeen > seen then
      dropped = dropped + newSeen - seen
      redis.call('HSET', subs, p, position(start, newSeen, untilSeq))
    end
    for _, e in ipairs(entries) do add(string.sub(e[1], 1, -3), e[2][2], p, e[2][4]) end
  end
end
if first then
  for _, e in ipairs(redis.call('XRANGE', P..'d:'..id, '('..c..'-0', (upto()), 'COUNT', max)) do
    add(string.sub(e[1], 1, -3), e[2][2], '', 0)
  end
end
out[2] = dropped
return out
`)

// scriptMark records, after a fetch, the highest offset answered in each
// stream (pairs of pattern and offset from ARGV[4]): a message lost to the
// queue bounds after it is reported as dropped, one before it is not. And,
// when ARGV[3] is not "", the session's new watermark (see scriptFetch).
// Both only grow, so that fetches of one session in two processes cannot
// undo each other.
var scriptMark = rueidis.NewLuaScript(subLua + `
local P, id, w = ARGV[1], ARGV[2], ARGV[3]
local s = P..'s:'..id
if redis.call('EXISTS', s) == 0 then return -1 end
if w ~= '' and tonumber(w) > tonumber(redis.call('HGET', s, 'w') or '0') then redis.call('HSET', s, 'w', w) end
local subs = s..':subs'
for i = 4, #ARGV, 2 do
  local pos = redis.call('HGET', subs, ARGV[i])
  if pos then
    local start, seen, untilSeq = parse(pos)
    local off = tonumber(ARGV[i+1])
    if off > seen then redis.call('HSET', subs, ARGV[i], position(start, off, untilSeq)) end
  end
end
return 1
`)

var scriptCommit = rueidis.NewLuaScript(`
local P, id, cursor = ARGV[1], ARGV[2], tonumber(ARGV[3])
local s = P..'s:'..id
local c = redis.call('HGET', s, 'c')
if not c then return -1 end
if cursor > tonumber(c) then
  redis.call('HSET', s, 'c', cursor)
  redis.call('XTRIM', P..'d:'..id, 'MINID', (cursor + 1)..'-0')
end
return 1
`)

var scriptAudience = rueidis.NewLuaScript(`
local P = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local kv = redis.call('HGETALL', P..'sm:'..ARGV[i])
  for j = 1, #kv, 2 do
    if string.sub(kv[j], 1, 2) == 'k:' then
      table.insert(out, string.sub(kv[j], 3))
      table.insert(out, kv[j+1])
    end
  end
end
return out
`)
