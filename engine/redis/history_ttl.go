package redis

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/server"
)

// History TTL ([[channels]] history_ttl, server.HistoryRule.TTL): the
// history stream's ids are sequence numbers, not times, so expiry reads
// each entry's time from its payload (which ends with it, see cache.go).
// It is done when the history is read, not by the publish script: a
// publish costs the same with or without a TTL, and a reader (History,
// recovery) never gets an expired message. Expired entries are dropped
// from the head, at most expireChunk per call, with their bytes, and
// recorded as lost for gap notices; the rest of a long expired history
// goes at the next read, and History filters by time meanwhile.

const expireChunk = 100

// scriptExpireHistory drops up to ARGV[4] entries of channel ARGV[2]'s
// history older than ARGV[3] (µs since the epoch) and returns how many.
var scriptExpireHistory = rueidis.NewLuaScript(historyLua + `
local P, ch, cutoff, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local h = P..'h:'..ch
local n, delta = 0, 0
while n < limit do
  local first = redis.call('XRANGE', h, '-', '+', 'COUNT', 1)[1]
  if not first then break end
  local payload = ''
  for i = 1, #first[2], 2 do if first[2][i] == 'm' then payload = first[2][i+1] end end
  local t = tonumber(string.match(payload, '"t":(%d+)}$') or string.match(payload, '"t":(%d+),"r":true}$') or '0')
  if t >= cutoff then break end
  redis.call('XDEL', h, first[1])
  lost_entry(P, ch, first)
  delta = delta - entry_size(first[2])
  n = n + 1
end
if n > 0 then
  redis.call('HINCRBY', P..'hs', ch, delta)
  redis.call('INCRBY', P..'hbytes', delta)
end
return n
`)

// expireHistory drops channel's expired history, when a rule gives it a
// TTL, and returns the cutoff (zero: none).
func (e *Engine) expireHistory(ctx context.Context, channel string) (time.Time, error) {
	segs, err := server.ParseChannel(channel, false)
	if err != nil {
		return time.Time{}, err
	}
	ttl := e.opts.Limits.HistoryTTLFor(segs)
	if ttl <= 0 {
		return time.Time{}, nil
	}
	cutoff := time.Now().Add(-ttl)
	_, err = e.execInt(ctx, scriptExpireHistory, channel, strconv.FormatInt(cutoff.UnixMicro(), 10), strconv.Itoa(expireChunk))
	return cutoff, err
}
