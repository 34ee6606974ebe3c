package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// DELETE {base}/channel/NAME (or NAME+NAME…), allowed to whoever may
// publish through the Stardust API (comet.allow_from, comet.auth_user, the
// ACL), deletes channels: every session subscribed to the channel by name
// gets the notice {"type":"stardust.channel_deleted","channel":NAME} and
// is unsubscribed from it, then the channel's history is dropped (the
// notice with it). Sessions subscribed by a pattern (/stardust/**) get the
// notice and keep their pattern. With a shared engine the subscribers of
// every process are reached: they are found through Presence and
// unsubscribed in the engine. A Stardust poll or SSE stream names its
// channels in its URL, so one that polls the channel again subscribes
// again, to a new empty channel: the notice tells the page to stop.

// ChannelDeleted is the type of the notice a deleted channel's
// subscribers get.
const ChannelDeleted = "stardust.channel_deleted"

// channelDeletedBody answers a DELETE.
type channelDeletedBody struct {
	OK           bool     `json:"ok"`
	Channels     []string `json:"channels"`
	Unsubscribed int      `json:"unsubscribed"` // sessions unsubscribed, over all channels
	History      int      `json:"history"`      // channels whose history was dropped
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	names, full, ok := s.publishChannels(w, r)
	if !ok {
		return
	}
	out, err := s.deleteChannels(names, full)
	writeResult(w, out, err)
}

// deleteChannels deletes the channels full (Stardust names names).
func (s *Server) deleteChannels(names, full []string) (any, error) {
	out := channelDeletedBody{OK: true, Channels: names}
	for i, ch := range full {
		n, had, err := s.deleteChannel(ch, names[i])
		if err != nil {
			return nil, err
		}
		out.Unsubscribed += n
		if had {
			out.History++
		}
	}
	return out, nil
}

// deleteChannel sends the notice to the channel's subscribers, unsubscribes
// those subscribed by name and drops its history. It returns how many it
// unsubscribed and whether there was history.
func (s *Server) deleteChannel(channel, name string) (int, bool, error) {
	p, ok := s.hub.engine.(Presence)
	hr, ok2 := s.hub.engine.(HistoryRemover)
	if !ok || !ok2 {
		return 0, false, fmt.Errorf("deleting a channel: %w", errNoCapability)
	}
	ctx, cancel := s.hub.call(context.Background())
	defer cancel()
	present, err := p.Present(ctx, channel)
	if err != nil {
		return 0, false, s.hub.failed(err)
	}
	kept, err := s.hub.engine.History(ctx, channel, 0) // before the notice joins it
	if err != nil {
		return 0, false, s.hub.failed(err)
	}
	if len(present) > 0 {
		data, _ := json.Marshal(map[string]string{"type": ChannelDeleted, "channel": name})
		if _, err := s.hub.Publish(&Message{Channel: channel, Data: data}); err != nil {
			return 0, false, err
		}
	}
	n := 0
	for _, ss := range present {
		subs, err := s.hub.engine.Subscriptions(ctx, ss.ID)
		if errors.Is(err, ErrUnknownClient) || !slices.Contains(subs, channel) {
			continue
		}
		if err != nil {
			return n, false, s.hub.failed(err)
		}
		removed, err := s.hub.Unsubscribe(&Client{hub: s.hub, s: ss, added: true}, channel)
		if err != nil {
			return n, false, err
		}
		if removed {
			n++
		}
	}
	if _, err := hr.RemoveHistory(ctx, channel); err != nil {
		return n, false, s.hub.failed(err)
	}
	return n, len(kept) > 0, nil
}
