package redis

import "github.com/redis/rueidis"

// The engine's data, under a key prefix P (default "stardust:"):
//
//	P seq            global message sequence (INCR); stream ids are "<seq>-0"
//	P epoch          random id written once: a new one means Redis lost its data
//	P sessions       zset: session id -> expiry deadline (ms)
//	P s:ID           hash: k kind, r remote, t timeout ms, c committed cursor, a:NAME attributes
//	P s:ID:subs      hash: pattern -> "start:seen" (global seq at subscribe, highest stream offset fetched),
//	                 or "start:seen:until" after an unsubscribe, until what was queued before it is committed
//	P stats          hash: k:KIND sessions by kind, subs subscriptions
//	P d:ID           stream: messages delivered to this session alone
//	P st:PATTERN     stream: messages for a subscribed pattern (exact channel or /*, /**), capped by the queue bounds
//	P sm:PATTERN     hash: o offset counter, b bytes in st:, n subscriptions, k:KIND subscriptions by kind
//	P h:CHANNEL      stream: history, capped at the history size
//	P ch             zset: channel in use -> last used (ms)
//	P nodes          zset: node id -> heartbeat deadline (ms)
//	P conns:NODE     hash: address -> held connections counted by that node
//
// Pub/sub topics: P n:PATTERN carries the seq of each message appended to
// st:PATTERN; P ctl carries "KIND NODE ID" session notices (r: a poll
// started, x: removed, e: expired, d: subscriptions changed or a message
// delivered). A publish is one script whatever the audience: it appends to
// the streams of the d+1 patterns that can match a channel of depth d and
// have subscribers, and publishes once on each.

// Script results that are not data: an unknown session.
const unknownSession = -1

var scriptPublish = rueidis.NewLuaScript(`
local P, ch, payload = ARGV[1], ARGV[2], ARGV[3]
local now, hist, qmax, qbytes, retain = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local seq = redis.call('INCR', P..'seq')
local id = seq..'-0'
local size = #payload
if hist > 0 then
  redis.call('XADD', P..'h:'..ch, 'MAXLEN', hist, id, 'm', payload)
  redis.call('ZADD', P..'ch', now, ch)
end
local n = 0
for i = 9, #ARGV do
  local p = ARGV[i]
  local meta = P..'sm:'..p
  local subs = tonumber(redis.call('HGET', meta, 'n') or '0')
  if subs > 0 then
    local st = P..'st:'..p
    local off = redis.call('HINCRBY', meta, 'o', 1)
    redis.call('XADD', st, id, 'm', payload, 'o', off, 's', size)
    local bytes = redis.call('HINCRBY', meta, 'b', size)
    local len = redis.call('XLEN', st)
    while len > 1 and (len > qmax or bytes > qbytes) do
      local first = redis.call('XRANGE', st, '-', '+', 'COUNT', 1)[1]
      redis.call('XDEL', st, first[1])
      bytes = redis.call('HINCRBY', meta, 'b', -tonumber(first[2][6]))
      len = len - 1
    end
    redis.call('PEXPIRE', st, retain)
    n = n + subs
    redis.call('PUBLISH', P..'n:'..p, seq)
    if i == 9 then redis.call('ZADD', P..'ch', now, ch) end
  end
end
return {seq, n}
`)

var scriptCreate = rueidis.NewLuaScript(`
local P, id, kind, remote, timeout, now, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local s = P..'s:'..id
if redis.call('EXISTS', s) == 1 then return 0 end
if redis.call('ZCARD', P..'sessions') >= max then return -2 end
if redis.call('EXISTS', P..'epoch') == 0 then redis.call('SET', P..'epoch', ARGV[8]) end
redis.call('HSET', s, 'k', kind, 'r', remote, 't', timeout, 'c', redis.call('GET', P..'seq') or '0')
for i = 9, #ARGV, 2 do redis.call('HSET', s, 'a:'..ARGV[i], ARGV[i+1]) end
local deadline = '+inf'
if timeout > 0 then deadline = now + timeout end
redis.call('ZADD', P..'sessions', deadline, id)
redis.call('HINCRBY', P..'stats', 'k:'..kind, 1)
return 1
`)

// subLua is what the scripts share about subscriptions: whether one is
// still active (not unsubscribed with messages pending), and dropping one
// from a pattern's counts. A pattern no one subscribes to any more keeps its
// stream for a while (what was queued before the unsubscribe is still
// fetched from it), then it expires.
const subLua = `
local function active(pos)
  local _, colons = string.gsub(pos, ':', '')
  return colons == 1
end
local function drop_sub(P, p, kind)
  local meta = P..'sm:'..p
  redis.call('HINCRBY', meta, 'k:'..kind, -1)
  redis.call('HINCRBY', P..'stats', 'subs', -1)
  if redis.call('HINCRBY', meta, 'n', -1) <= 0 then
    redis.call('PEXPIRE', meta, ` + retainMS + `)
    redis.call('PEXPIRE', P..'st:'..p, ` + retainMS + `)
  end
end
`

// removeLua forgets one session: its subscriptions (with the per-pattern
// counts and streams no one needs any more), its queue and its keys.
const removeLua = subLua + `
local function remove(P, id)
  local s = P..'s:'..id
  local kind = redis.call('HGET', s, 'k')
  if not kind then
    redis.call('ZREM', P..'sessions', id)
    return 0
  end
  local subs = redis.call('HGETALL', s..':subs')
  for i = 1, #subs, 2 do
    if active(subs[i+1]) then drop_sub(P, subs[i], kind) end
  end
  redis.call('DEL', s, s..':subs', P..'d:'..id)
  redis.call('ZREM', P..'sessions', id)
  redis.call('HINCRBY', P..'stats', 'k:'..kind, -1)
  return 1
end
`

var scriptRemove = rueidis.NewLuaScript(removeLua + `
local P, id, node = ARGV[1], ARGV[2], ARGV[3]
local r = remove(P, id)
if r == 1 then redis.call('PUBLISH', P..'ctl', 'x '..node..' '..id) end
return r
`)

// scriptSweep removes up to a batch of expired sessions, dead nodes with
// their connection counts, and channels unused for the channel timeout
// with no exact subscriber. Any node may run it at any time: each step is
// atomic, and a second sweeper finds nothing left to do.
var scriptSweep = rueidis.NewLuaScript(removeLua + `
local P, now, node, chTimeout, beat = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZADD', P..'nodes', now + beat, node)
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', P..'nodes', '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('DEL', P..'conns:'..dead)
  redis.call('ZREM', P..'nodes', dead)
end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P..'sessions', '-inf', now, 'LIMIT', 0, 500)) do
  local s = P..'s:'..id
  local kind = redis.call('HGET', s, 'k') or ''
  if remove(P, id) == 1 then
    redis.call('PUBLISH', P..'ctl', 'e '..node..' '..id)
    table.insert(out, id)
    table.insert(out, kind)
  end
end
for _, ch in ipairs(redis.call('ZRANGEBYSCORE', P..'ch', '-inf', now - chTimeout, 'LIMIT', 0, 500)) do
  if tonumber(redis.call('HGET', P..'sm:'..ch, 'n') or '0') <= 0 then
    redis.call('DEL', P..'h:'..ch)
    redis.call('ZREM', P..'ch', ch)
  end
end
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

var scriptSetAttr = rueidis.NewLuaScript(`
local P, id, key, value = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local s = P..'s:'..id
if redis.call('EXISTS', s) == 0 then return -1 end
if value == '' then redis.call('HDEL', s, 'a:'..key) else redis.call('HSET', s, 'a:'..key, value) end
return 1
`)

var scriptSubscribe = rueidis.NewLuaScript(subLua + `
local P, id, pattern, node, now, exact = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local s = P..'s:'..id
local kind = redis.call('HGET', s, 'k')
if not kind then return -1 end
local pos = redis.call('HGET', s..':subs', pattern)
if pos and active(pos) then return 0 end
local meta = P..'sm:'..pattern
local off = redis.call('HGET', meta, 'o') or '0'
redis.call('HSET', s..':subs', pattern, (redis.call('GET', P..'seq') or '0')..':'..off)
redis.call('HINCRBY', meta, 'n', 1)
redis.call('PERSIST', meta)
redis.call('HINCRBY', meta, 'k:'..kind, 1)
redis.call('HINCRBY', P..'stats', 'subs', 1)
if exact == '1' then redis.call('ZADD', P..'ch', now, pattern) end
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
drop_sub(P, pattern, kind)
return 1
`)

var scriptDeliver = rueidis.NewLuaScript(`
local P, id, payload, qmax, node = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
if redis.call('EXISTS', P..'s:'..id) == 0 then return -1 end
local seq = redis.call('INCR', P..'seq')
redis.call('XADD', P..'d:'..id, 'MAXLEN', qmax, seq..'-0', 'm', payload)
redis.call('PUBLISH', P..'ctl', 'd '..node..' '..id)
return seq
`)

// scriptFetch returns {dropped, cursor, seq, payload, seq, payload...}: up
// to max messages after the session's committed cursor, merged from its
// subscription streams and its own queue in sequence order, each once. It
// takes nothing; it only records how far each stream has been seen, so
// that a message lost to the queue bounds is reported once.
var scriptFetch = rueidis.NewLuaScript(`
local P, id, max = ARGV[1], ARGV[2], tonumber(ARGV[3])
local s = P..'s:'..id
local c = redis.call('HGET', s, 'c')
if not c then return {-1} end
c = tonumber(c)
local subs = redis.call('HGETALL', s..':subs')
local got, seqs = {}, {}
local dropped = 0
local streams = {}
for i = 1, #subs, 2 do
  local p, pos = subs[i], subs[i+1]
  local parts = {}
  for x in string.gmatch(pos, '[^:]+') do table.insert(parts, tonumber(x)) end
  local start, seen, untilSeq = parts[1], parts[2], parts[3]
  local from = math.max(c, start)
  local last = '+'
  if untilSeq then last = untilSeq..'-0' end
  local entries = {}
  if untilSeq and from >= untilSeq then
    redis.call('HDEL', s..':subs', p) -- all it queued is committed
  else
    entries = redis.call('XRANGE', P..'st:'..p, '('..from..'-0', last, 'COUNT', max)
  end
  local lastOff = tonumber(redis.call('HGET', P..'sm:'..p, 'o') or '0')
  local info = {p = p, start = start, seen = seen, offs = {}, untilSeq = untilSeq}
  if untilSeq and from >= untilSeq then info = nil end
  if not info then
  elseif #entries == 0 then
    if lastOff > seen and not untilSeq then dropped = dropped + lastOff - seen; info.seen = lastOff end
  else
    local firstOff = tonumber(entries[1][2][4])
    if firstOff > seen + 1 then dropped = dropped + firstOff - seen - 1; info.seen = firstOff - 1 end
  end
  for _, e in ipairs(entries) do
    local seq = tonumber(string.sub(e[1], 1, -3))
    if not got[seq] then got[seq] = e[2][2]; table.insert(seqs, seq) end
    table.insert(info.offs, {seq, tonumber(e[2][4])})
  end
  if info then table.insert(streams, info) end
end
for _, e in ipairs(redis.call('XRANGE', P..'d:'..id, '('..c..'-0', '+', 'COUNT', max)) do
  local seq = tonumber(string.sub(e[1], 1, -3))
  if not got[seq] then got[seq] = e[2][2]; table.insert(seqs, seq) end
end
table.sort(seqs)
local cursor = c
local out = {dropped, 0}
for i = 1, math.min(#seqs, max) do
  cursor = seqs[i]
  table.insert(out, seqs[i])
  table.insert(out, got[seqs[i]])
end
out[2] = cursor
for _, info in ipairs(streams) do
  for _, so in ipairs(info.offs) do
    if so[1] <= cursor and so[2] > info.seen then info.seen = so[2] end
  end
  local v = info.start..':'..info.seen
  if info.untilSeq then v = v..':'..info.untilSeq end
  redis.call('HSET', s..':subs', info.p, v)
end
return out
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

var scriptTakeConn = rueidis.NewLuaScript(`
local P, addr, limit, node, now, beat = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
redis.call('ZADD', P..'nodes', 'GT', now + beat, node)
if limit > 0 then
  local total = 0
  for _, n in ipairs(redis.call('ZRANGEBYSCORE', P..'nodes', now, '+inf')) do
    total = total + tonumber(redis.call('HGET', P..'conns:'..n, addr) or '0')
  end
  if total >= limit then return 0 end
end
redis.call('HINCRBY', P..'conns:'..node, addr, 1)
return 1
`)

var scriptReleaseConn = rueidis.NewLuaScript(`
local P, addr, node = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HINCRBY', P..'conns:'..node, addr, -1) <= 0 then redis.call('HDEL', P..'conns:'..node, addr) end
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
