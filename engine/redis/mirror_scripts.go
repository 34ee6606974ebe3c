package redis

import "github.com/redis/rueidis"

// The mirrors' data (see mirror.go), under the same prefix P:
//
//	P s:ID           field o: the process (node) that mirrors the session, whose
//	                 P cur:NODE may hold a newer cursor than the field c
//	P cur:NODE       hash: session id -> cursor, as that process last flushed it
//	                 (one HSET for all its sessions)
//
// A process that mirrors a session keeps its cursor in memory and writes it
// to P cur:NODE every flushInterval; it folds it into P s:ID (c, and each
// subscription's seen offset) and clears o when it lets the session go. Any
// script that reads a session's cursor for another process first settles
// what an owner that may have died had flushed (settle).

// mirrorLua is what the mirror scripts share: applying a mirror's cursor
// and seen offsets to a session (both only grow), and settling what
// another owner flushed. A fold knows each stream's seen offset; a flushed
// value is the cursor alone (one HSET of short values per interval), and
// the offsets are then those of the streams' last entries up to the
// cursor, which were answered since they were committed (a message
// answered but not committed and then dropped from its stream is reported
// as dropped: only after a SIGKILL).
const mirrorLua = subLua + `
local function apply(P, id, s, v)
  local it = string.gmatch(v, '%S+')
  local c = tonumber(it() or '0')
  local cur = tonumber(redis.call('HGET', s, 'c') or '-1')
  if cur < 0 then return end
  if c > cur then
    redis.call('HSET', s, 'c', c)
    redis.call('XTRIM', P..'d:'..id, 'MINID', (c + 1)..'-0')
  end
  local subs = s..':subs'
  local marks = {}
  for p in it do table.insert(marks, {p, tonumber(it() or '0')}) end
  if #marks == 0 and c > cur then
    for _, p in ipairs(redis.call('ZRANGE', s..':sl', 0, 127)) do -- a mirror has at most 128
      local e = redis.call('XREVRANGE', P..'st:'..p, c..'-0', '-', 'COUNT', 1)[1]
      if e then table.insert(marks, {p, tonumber(e[2][4])}) end
    end
  end
  for _, po in ipairs(marks) do
    local pos = redis.call('HGET', subs, po[1])
    if pos then
      local start, seen, untilSeq = parse(pos)
      if po[2] > seen then redis.call('HSET', subs, po[1], position(start, po[2], untilSeq)) end
    end
  end
end
local function settle(P, id, s, o, node)
  if not o or o == node then return end
  local v = redis.call('HGET', P..'cur:'..o, id)
  if v then
    apply(P, id, s, v)
    redis.call('HDEL', P..'cur:'..o, id)
  end
  redis.call('HDEL', s, 'o')
end
`

// scriptLoad reads what a process needs to mirror a session it watches, and
// records it as the owner: {1, cursor, HGETALL of s:ID, then per pattern
// {pattern, start, seen, last offset, {seq, payload, offset, size}...}};
// {0} when the session is not mirrored now (over maxsubs subscriptions, a
// message delivered to it alone after the cursor, an unsubscribe with
// messages pending, more than limit entries waiting in a stream, or drops
// not yet reported: the Redis fetch deals with those); {-1} for an unknown
// session. ARGV: P, id, node, limit, maxsubs.
var scriptLoad = rueidis.NewLuaScript(mirrorLua + `
local P, id, node, limit, maxsubs = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local s = P..'s:'..id
local h = redis.call('HGETALL', s)
local f = {}
for i = 1, #h, 2 do f[h[i]] = h[i+1] end
if not f.k or f.e ~= redis.call('GET', P..'epoch') then return {-1} end
if tonumber(f.n or '0') > maxsubs then return {0} end
local c = tonumber(f.c or '0')
if f.o and f.o ~= node then
  settle(P, id, s, f.o, node)
  c = tonumber(redis.call('HGET', s, 'c'))
end
if #redis.call('XRANGE', P..'d:'..id, '('..c..'-0', '+', 'COUNT', 1) > 0 then return {0} end
local pats = redis.call('ZRANGE', s..':sl', 0, maxsubs)
if #pats > maxsubs then return {0} end
local out = {1, c, h}
if #pats > 0 then
  local pos = redis.call('HMGET', s..':subs', unpack(pats))
  for i, p in ipairs(pats) do
    if not pos[i] or not active(pos[i]) then return {0} end
    local start, seen = parse(pos[i])
    local last = tonumber(redis.call('HGET', P..'sm:'..p, 'o') or '0')
    local entries = redis.call('XRANGE', P..'st:'..p, '('..math.max(c, start)..'-0', '+', 'COUNT', limit + 1)
    if #entries > limit then return {0} end
    if #entries > 0 then
      if tonumber(entries[1][2][4]) > seen + 1 then return {0} end
    elseif last > seen then
      return {0}
    end
    local list = {}
    for _, e in ipairs(entries) do
      table.insert(list, string.sub(e[1], 1, -3))
      table.insert(list, e[2][2])
      table.insert(list, e[2][4])
      table.insert(list, e[2][6])
    end
    table.insert(out, {p, start, seen, last, list})
  end
end
if f.o ~= node then redis.call('HSET', s, 'o', node) end
return out
`)

// scriptFold writes what this process committed for sessions it lets go
// (pairs of id and value, as in P cur:NODE), clears it as their owner and,
// when ARGV[3] is "1", tells the others ("f NODE ID" on ctl): a process
// taking a session over waits for that before it reads the cursor.
var scriptFold = rueidis.NewLuaScript(mirrorLua + `
local P, node, notice = ARGV[1], ARGV[2], ARGV[3]
for i = 4, #ARGV, 2 do
  local id, v = ARGV[i], ARGV[i+1]
  local s = P..'s:'..id
  apply(P, id, s, v)
  if redis.call('HGET', s, 'o') == node then redis.call('HDEL', s, 'o') end
  redis.call('HDEL', P..'cur:'..node, id)
  if notice == '1' then redis.call('PUBLISH', P..'ctl', 'f '..node..' '..id) end
end
return 1
`)

// scriptFlush writes the cursors this process's mirrors moved (pairs of
// id and cursor from ARGV[4]) to P cur:NODE in one HSET, unless the epoch
// is not the one the mirrors were read in (ARGV[3]): then Redis lost its
// data (a FLUSHALL tells no connection) and it returns 0. The field "_"
// has a value longer than hash-max-listpack-value, so that the hash is a
// hash table from its first write: as a listpack (up to 512 fields in
// Debian's configuration) each field written costs a scan of the others,
// and 500 sessions' flush cost Redis more than their deliveries. The key
// outlives a process that died by a day, for the others to settle it.
var scriptFlush = rueidis.NewLuaScript(`
local P, node, epoch = ARGV[1], ARGV[2], ARGV[3]
if redis.call('GET', P..'epoch') ~= epoch then return 0 end
if #ARGV > 3 then
  local key = P..'cur:'..node
  redis.call('HSET', key, '_', string.rep('-', 80), unpack(ARGV, 4))
  redis.call('PEXPIRE', key, 86400000)
end
return 1
`)
