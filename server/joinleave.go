package server

import (
	"context"
	"encoding/json"
	"time"
)

// Join and leave events on the channels of [[channels]] blocks with
// join_leave = true, with the memory engine: every JoinLeaveInterval the
// server compares the users present on each such channel (Presence) with
// the last look, and publishes {"type":"stardust.join"|"stardust.leave",
// "user","info"} on the channel for each user who came or went. Users, not
// sessions: a second tab of the same user sends nothing, and the user
// leaves when the last of their sessions unsubscribes, disconnects or
// times out. Sessions without a user are not announced. With a shared
// engine every process would announce the same change, so the loop runs
// only on the memory engine (the configuration refuses join_leave with
// Redis).

// JoinLeaveInterval is how often join_leave channels are looked at.
var JoinLeaveInterval = 500 * time.Millisecond

// joinLeaveEvent is the message published on a join or a leave.
type joinLeaveEvent struct {
	Type string          `json:"type"`
	User string          `json:"user"`
	Info json.RawMessage `json:"info,omitempty"`
}

// startJoinLeave runs the loop when a rule asks for it and the engine is
// this process's own.
func (s *Server) startJoinLeave() {
	wanted := false
	for _, r := range s.idh.chans {
		wanted = wanted || r.JoinLeave
	}
	if _, memory := s.hub.engine.(*MemoryEngine); !wanted || !memory {
		return
	}
	go func() {
		t := time.NewTicker(JoinLeaveInterval)
		defer t.Stop()
		seen := map[string]map[string]json.RawMessage{}
		for {
			select {
			case <-s.hub.Done():
				return
			case <-t.C:
				s.joinLeaveTick(seen)
			}
		}
	}()
}

// joinLeaveTick announces the changes since seen (users by channel, with
// their info) and updates it.
func (s *Server) joinLeaveTick(seen map[string]map[string]json.RawMessage) {
	p := s.hub.engine.(Presence)
	names, err := s.hub.Channels("")
	if err != nil {
		return
	}
	looked := map[string]bool{}
	for _, name := range names {
		segs, err := ParseChannel(name, false)
		if err != nil {
			continue
		}
		if r, ok := s.idh.chans.rule(segs); !ok || !r.JoinLeave {
			continue
		}
		list, err := p.Present(context.Background(), name)
		if err != nil {
			continue
		}
		users := map[string]json.RawMessage{}
		for _, ss := range list {
			u := ss.Attrs[AttrUser]
			if u == "" {
				continue
			}
			var id Identity
			if raw := ss.Attrs[AttrIdentity]; raw != "" && json.Unmarshal([]byte(raw), &id) == nil {
				users[u] = id.Info
			} else if _, ok := users[u]; !ok {
				users[u] = nil
			}
		}
		s.announce(name, seen[name], users)
		looked[name] = true
		if len(users) == 0 {
			delete(seen, name)
		} else {
			seen[name] = users
		}
	}
	for name, prev := range seen {
		if !looked[name] { // the channel is gone, and its users with it
			s.announce(name, prev, nil)
			delete(seen, name)
		}
	}
}

// announce publishes on channel a join for each user of now not in before
// and a leave for each user of before not in now.
func (s *Server) announce(channel string, before, now map[string]json.RawMessage) {
	send := func(typ, user string, info json.RawMessage) {
		data, _ := json.Marshal(joinLeaveEvent{Type: typ, User: user, Info: info})
		if _, err := s.hub.Publish(&Message{Channel: channel, Data: data}); err != nil {
			s.log.WithError(err).WithField("channel", channel).Warn("join/leave event not published")
		}
	}
	for u, info := range now {
		if _, had := before[u]; !had {
			send("stardust.join", u, info)
		}
	}
	for u, info := range before {
		if _, still := now[u]; !still {
			send("stardust.leave", u, info)
		}
	}
}
