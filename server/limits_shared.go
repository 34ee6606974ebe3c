package server

import (
	"context"
	"errors"
	"fmt"
)

// SharedLimiter is an optional capability of an Engine, found by type
// assertion: it keeps the session limits (per address and per user) and
// the token buckets of the address limits for every process that shares
// the engine, so that N processes allow what one does, not N times as
// much. An engine that every process has its own of (the memory engine)
// has no need of it: the hub then counts in this process (limits.go).
// Methods are safe for concurrent use, and each is atomic in the engine.
type SharedLimiter interface {
	// AdmitSession counts session id, about to be created, from address
	// addr ("" none) of user ("" none) against q, and reports which limit
	// refuses it (AdmitOK if none, and then it is counted). A session
	// counted already is admitted again without counting twice. Sessions
	// the engine no longer has stop counting (looked at when a count is
	// at its cap), so that a session removed or expired by any process,
	// or never created, gives its place back.
	AdmitSession(ctx context.Context, id, addr, user string, q SessionQuota) (Admission, error)
	// TakeTokens takes up to n tokens (at most what there is, maybe none)
	// from the token bucket named key, which earns rate tokens a second up
	// to burst, and returns how many it took; a negative n gives -n back.
	TakeTokens(ctx context.Context, key string, n int, rate float64, burst int) (int, error)
}

// SessionQuota is the limits AdmitSession checks; zero: no limit.
type SessionQuota struct {
	AddressMax   int     // sessions from one address at once
	AddressRate  float64 // new sessions a second from one address
	AddressBurst int     // bucket size of AddressRate
	UserMax      int     // sessions of one user at once
}

// Admission is AdmitSession's answer: admitted, or which limit refused.
type Admission int

// The answers of AdmitSession.
const (
	AdmitOK          Admission = iota
	AdmitAddressRate           // AddressRate: no token left
	AdmitAddressMax            // AddressMax sessions from the address already
	AdmitUserMax               // UserMax sessions of the user already
)

// admitShared is admitSession with the engine's counts.
func (h *Hub) admitShared(c *Client) error {
	l := h.limits
	if !l.limited() {
		return nil
	}
	user := c.s.Attrs[AttrUser]
	if c.s.Remote == "" && user == "" { // a local client: nothing to count
		return nil
	}
	q := SessionQuota{AddressMax: l.maxSessions, AddressRate: l.rate, AddressBurst: int(l.burst), UserMax: l.maxUser}
	ectx, ecancel := h.call(context.Background())
	defer ecancel()
	a, err := h.shared.AdmitSession(ectx, c.s.ID, c.s.Remote, user, q)
	switch {
	case err != nil:
		return h.failed(err)
	case a == AdmitAddressRate:
		return addressRateError(l.rate, c.s.Remote)
	case a == AdmitAddressMax:
		return addressCapError(l.maxSessions, c.s.Remote)
	case a == AdmitUserMax:
		return userCapError(l.maxUser, user)
	}
	return nil
}

// prepareChannelsShared is prepareChannels with the address's bucket kept
// in the engine: a request that adds no channel costs no more than
// without the limit; one that does takes tokens, creates with that budget,
// and gives back what it did not use.
func (h *Hub) prepareChannelsShared(cc ChannelCreator, addr string, names []string) (int, error) {
	ctx, cancel := h.call(context.Background())
	defer cancel()
	added, err := cc.CreateChannels(ctx, names, 0)
	if !errors.Is(err, ErrChannelBudget) {
		return added, err
	}
	key, rate, burst := "channels:"+addr, h.newChannels.rate, int(h.newChannels.burst)
	took, err := h.shared.TakeTokens(ctx, key, len(names), rate, burst)
	if err != nil {
		return 0, err
	}
	if took > 0 {
		added, err = cc.CreateChannels(ctx, names, took)
		if err != nil {
			added = 0
		}
		if back := took - added; back > 0 {
			if _, rerr := h.shared.TakeTokens(ctx, key, -back, rate, burst); rerr != nil && err == nil {
				err = rerr
			}
		}
		return added, err
	}
	return 0, fmt.Errorf("%w: no token left", ErrChannelBudget)
}
