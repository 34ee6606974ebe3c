package redis

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// Held connections per address (TakeConnection): each process counts its
// own in memory and, with the mirrors' cursors, writes them to P
// conns:NODE and reads the other processes' counts of the addresses it
// knows, in one script per flushInterval (scriptConns). Only the first
// connection of an address in this process reads Redis at once. A Bayeux
// connect used to cost two scripts (take and release), that is, more Redis
// work than its delivery. The price: a connection taken in another process
// is seen here up to two flush intervals late, so two processes may each
// let one more in meanwhile.

// connIdle is how long an address without connections here is still
// followed (its others' counts read each interval).
const connIdle = 10 * time.Second

// connSet is this process's counts.
type connSet struct {
	mu    sync.Mutex
	m     map[string]*connCount
	dirty map[string]bool
}

type connCount struct {
	local   int // held here
	written int // local as last written to Redis (a connect and its release between two flushes write nothing)
	others  int // held in the other live processes, as last read
	used    time.Time
}

// TakeConnection implements server.Engine.
func (e *Engine) TakeConnection(ctx context.Context, addr string, limit int) (bool, error) {
	cs := &e.conns
	cs.mu.Lock()
	c := cs.m[addr]
	cs.mu.Unlock()
	if c == nil {
		others, err := e.syncConns(ctx, nil, []string{addr})
		if err != nil {
			return false, err
		}
		cs.mu.Lock()
		if c = cs.m[addr]; c == nil {
			c = &connCount{others: others[0]}
			cs.m[addr] = c
		}
		cs.mu.Unlock()
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	c.used = time.Now()
	if limit > 0 && c.local+c.others >= limit {
		return false, nil
	}
	c.local++
	cs.dirty[addr] = true
	return true, nil
}

// ReleaseConnection implements server.Engine.
func (e *Engine) ReleaseConnection(ctx context.Context, addr string) error {
	cs := &e.conns
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c := cs.m[addr]; c != nil && c.local > 0 {
		c.local--
		c.used = time.Now()
		cs.dirty[addr] = true
	}
	return nil
}

// flushConns writes the counts that changed and reads the others' counts
// of every address followed (one script per connChunk addresses).
func (e *Engine) flushConns(ctx context.Context) {
	cs := &e.conns
	now := time.Now()
	cs.mu.Lock()
	var writes, reads []string
	for addr, c := range cs.m {
		if cs.dirty[addr] && c.local != c.written {
			writes = append(writes, addr, strconv.Itoa(c.local))
		}
		if c.local == 0 && now.Sub(c.used) > connIdle && !cs.dirty[addr] {
			delete(cs.m, addr)
			continue
		}
		reads = append(reads, addr)
	}
	clear(cs.dirty)
	cs.mu.Unlock()
	for len(writes) > 0 || len(reads) > 0 {
		w := writes[:min(len(writes), 2*connChunk)]
		r := reads[:min(len(reads), connChunk)]
		writes, reads = writes[len(w):], reads[len(r):]
		others, err := e.syncConns(ctx, w, r)
		cs.mu.Lock()
		if err != nil {
			for i := 0; i < len(w); i += 2 {
				cs.dirty[w[i]] = true // again next time
			}
			for i := 0; i < len(writes); i += 2 {
				cs.dirty[writes[i]] = true
			}
			cs.mu.Unlock()
			return
		}
		for i, addr := range r {
			if c := cs.m[addr]; c != nil {
				c.others = others[i]
			}
		}
		for i := 0; i < len(w); i += 2 {
			if c := cs.m[w[i]]; c != nil {
				c.written, _ = strconv.Atoi(w[i+1])
			}
		}
		cs.mu.Unlock()
	}
}

// connChunk is how many addresses one scriptConns call reads.
const connChunk = 1000

// syncConns runs scriptConns: writes (pairs of address and count), then
// the others' counts of reads.
func (e *Engine) syncConns(ctx context.Context, writes, reads []string) ([]int, error) {
	args := []string{e.node, nowMS(), strconv.FormatInt(heartbeat.Milliseconds(), 10), strconv.Itoa(len(writes) / 2)}
	args = append(append(args, writes...), reads...)
	r, err := e.exec(ctx, scriptConns, args...)
	if err != nil {
		return nil, err
	}
	vals, err := r.AsIntSlice()
	if err != nil || len(vals) != len(reads) {
		return nil, fail(err)
	}
	out := make([]int, len(vals))
	for i, v := range vals {
		out[i] = int(v)
	}
	return out, nil
}

// scriptConns records this process as alive, writes its counts (ARGV[6]
// on: ARGV[5] pairs of address and count, 0 deleting) and returns, for
// each address after them, the sum of the other live processes' counts.
var scriptConns = rueidis.NewLuaScript(`
local P, node, now, beat, nw = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZADD', P..'nodes', 'GT', now + beat, node)
local key = P..'conns:'..node
local set, del = {}, {}
for i = 6, 5 + 2 * nw, 2 do
  if tonumber(ARGV[i+1]) > 0 then
    table.insert(set, ARGV[i])
    table.insert(set, ARGV[i+1])
  else
    table.insert(del, ARGV[i])
  end
end
if #set > 0 then redis.call('HSET', key, unpack(set)) end
if #del > 0 then redis.call('HDEL', key, unpack(del)) end
local reads = {}
for i = 6 + 2 * nw, #ARGV do table.insert(reads, ARGV[i]) end
local out = {}
for i = 1, #reads do out[i] = 0 end
if #reads > 0 then
  for _, n in ipairs(redis.call('ZRANGEBYSCORE', P..'nodes', now, '+inf')) do
    if n ~= node then
      local v = redis.call('HMGET', P..'conns:'..n, unpack(reads))
      for i = 1, #reads do out[i] = out[i] + tonumber(v[i] or '0') end
    end
  end
end
return out
`)
