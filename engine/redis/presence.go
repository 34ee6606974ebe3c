package redis

import (
	"context"
	"errors"
	"slices"
	"sort"
	"time"

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
