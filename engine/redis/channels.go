package redis

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"

	"github.com/stardust-go/stardust/server"
)

// maxCreate bounds the names of one CreateChannels call, so that its
// script stays short: the hub passes the channels of one request, at most
// server.MaxChannelsPerRequest (64).
const maxCreate = 1000

var _ server.ChannelCreator = (*Engine)(nil)

// CreateChannels implements server.ChannelCreator with one script, all or
// none. The channels it counts are those MaxChannels counts for Publish:
// the channels kept in P hb (those with history, and those made here that
// have none yet). A channel made here that never gets a publish is swept
// like any idle channel after the channel timeout (P ch), and leaves P hb
// with it.
func (e *Engine) CreateChannels(ctx context.Context, names []string, budget int) (int, error) {
	if len(names) > maxCreate {
		return 0, fmt.Errorf("%w: %d channels in one CreateChannels call, over %d", server.ErrTooLarge, len(names), maxCreate)
	}
	max := e.opts.Limits.MaxChannels
	args := make([]string, 0, 3+len(names))
	args = append(args, nowMS(), strconv.Itoa(budget), strconv.Itoa(max))
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if _, err := server.ParseChannel(name, false); err != nil {
			return 0, err
		}
		if !seen[name] { // a name given twice counts once
			seen[name] = true
			args = append(args, name)
		}
	}
	if len(seen) == 0 {
		return 0, nil
	}
	n, err := e.execInt(ctx, scriptCreateChannels, args...)
	switch {
	case err != nil:
		return 0, err
	case n == channelBudget:
		return 0, fmt.Errorf("%w: at most %d", server.ErrChannelBudget, budget)
	case n == tooManyChannels:
		return 0, fmt.Errorf("%w: %d channels kept", server.ErrTooManyChannels, max)
	}
	return int(n), nil
}

// scriptCreateChannels returns how many of the channels ARGV[5:] it added
// to P hb (marking them all used now in P ch), or channelBudget when more
// than ARGV[3] would be added (negative: no bound), or tooManyChannels
// when P hb would hold more than ARGV[4]; then it changes nothing. Its
// work is two commands per name (at most maxCreate). A channel kept
// already keeps its place in P hb, which orders histories by their last
// publish for the bytes bound: only a publish moves it.
var scriptCreateChannels = rueidis.NewLuaScript(chLua + `
local P, now, budget, maxch = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local new = {}
for i = 5, #ARGV do
  if not redis.call('ZSCORE', P..'hb', ARGV[i]) then table.insert(new, ARGV[i]) end
end
if budget >= 0 and #new > budget then return ` + strconv.Itoa(channelBudget) + ` end
if #new > 0 and redis.call('ZCARD', P..'hb') + #new > maxch then return ` + strconv.Itoa(tooManyChannels) + ` end
for _, ch in ipairs(new) do redis.call('ZADD', P..'hb', now, ch) end
for i = 5, #ARGV do use_channel(P, ARGV[i], now) end
return #new
`)
