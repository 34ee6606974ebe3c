package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Limits that stop one address from flooding the server without punishing
// the many users an office, a school or a mobile carrier puts behind one
// address:
//
//   - sessions per address (HubOptions.AddressMaxSessions), so that one
//     address cannot take more than a small share of MaxClients;
//   - session creation per address, a token bucket (AddressSessionRate per
//     second, bursts of AddressSessionBurst), so that a flood is slowed
//     long before it reaches the cap;
//   - new channels per address (HubOptions.AddressChannelRate and
//     AddressChannelBurst, a token bucket): a publish or an exact
//     subscription to a channel the engine does not keep yet costs a
//     token, so that one address cannot fill MaxChannels in a moment;
//   - held Bayeux connects per browser (BayeuxOptions.ClientMaxConnections,
//     counted by the BAYEUX_BROWSER cookie through the engine): extra tabs
//     are told to poll ("multiple-clients" advice, as CometD does) instead
//     of being refused.
//
//   - sessions per user (HubOptions.UserMaxSessions), by the user id a
//     handshake's authentication or the application's identity gives
//     (AttrUser), so that one account cannot hold a server's sessions.
//
// With an engine that is a SharedLimiter (Redis), the session limits and
// the new channels per address are kept in the engine, so that every
// process sharing it enforces one count: three processes allow what one
// does (limits_shared.go). Otherwise each process keeps its own. Clients refused for being over
// a limit are told when to retry (Retry-After, Bayeux advice "retry" with an
// interval), never to give up.

// Defaults of the address limits: 200 users behind one address handshake at
// once, 20 more a second after that, and one address holds at most 1% of
// the default MaxClients.
const (
	DefaultAddressMaxSessions  = 1000
	DefaultAddressSessionRate  = 20
	DefaultAddressSessionBurst = 200
	// DefaultUserMaxSessions: a user with a tab open on every device
	// holds a few sessions; a hundred is a script.
	DefaultUserMaxSessions = 100
)

// Defaults of the new channels per address: a page subscribes to a few
// channels that mostly exist, and a site's backend adding a channel per
// user adds far fewer than 100 a second; filling the default MaxChannels
// from one address takes a quarter of an hour.
const (
	DefaultAddressChannelRate  = 100
	DefaultAddressChannelBurst = 1000
)

// retryAfter is what clients over a limit are told to wait.
const retryAfter = 5 * time.Second

// errOverLimit wraps ErrTooMany: the client should retry later.
var errOverLimit = fmt.Errorf("%w: over the limit for this address", ErrTooMany)

// addrLimits counts sessions and creations per address, and sessions per
// user. The zero limits mean none.
type addrLimits struct {
	maxSessions int
	rate        float64 // tokens a second
	burst       float64
	maxUser     int // sessions of one user (AttrUser)

	mu     sync.Mutex
	addrs  map[string]*addrState
	owner  map[string]string              // session id -> its address
	users  map[string]map[string]struct{} // user -> its session ids
	uowner map[string]string              // session id -> its user
}

type addrState struct {
	ids map[string]struct{}
	tokenBucket
}

// tokenBucket is one address's bucket: tokens, refilled at a rate up to a
// burst.
type tokenBucket struct {
	tokens float64
	last   time.Time
}

// refill adds the tokens earned since the last refill.
func (b *tokenBucket) refill(now time.Time, rate, burst float64) {
	if now.After(b.last) { // callers race: a now taken earlier adds nothing
		b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
		b.last = now
	}
}

// full reports whether the bucket would be full at now.
func (b *tokenBucket) full(now time.Time, rate, burst float64) bool {
	return rate <= 0 || b.tokens+now.Sub(b.last).Seconds()*rate >= burst
}

func newAddrLimits(maxSessions int, rate float64, burst, maxUser int) *addrLimits {
	return &addrLimits{maxSessions: maxSessions, rate: rate, burst: float64(burst), maxUser: maxUser,
		addrs: map[string]*addrState{}, owner: map[string]string{},
		users: map[string]map[string]struct{}{}, uowner: map[string]string{}}
}

func (l *addrLimits) limited() bool {
	return l != nil && (l.maxSessions > 0 || l.rate > 0 || l.maxUser > 0)
}

// admit counts a new session id from addr of user ("" none), or says why
// not; added says whether it counted it (not when the id is counted
// already: a concurrent request is creating it). exists is asked, when addr
// or user is at its cap, which of its sessions still exist (others may have
// been removed by another process); it must not be called with l.mu held.
func (l *addrLimits) admit(id, addr, user string, now time.Time, exists func(id string) bool) (added bool, err error) {
	if !l.limited() || addr == "" && user == "" {
		return false, nil
	}
	pruned := map[string]bool{} // "a" and "u": the set was checked against the engine
	for {
		l.mu.Lock()
		_, ok := l.owner[id]
		if _, uok := l.uowner[id]; ok || uok {
			l.mu.Unlock()
			return false, nil
		}
		var st *addrState
		if addr != "" && (l.maxSessions > 0 || l.rate > 0) {
			st = l.addrs[addr]
			if st == nil {
				st = &addrState{ids: map[string]struct{}{}, tokenBucket: tokenBucket{tokens: l.burst, last: now}}
				l.addrs[addr] = st
			}
			if l.rate > 0 {
				st.refill(now, l.rate, l.burst)
				if st.tokens < 1 {
					l.mu.Unlock()
					return false, addressRateError(l.rate, addr)
				}
			}
		}
		var full map[string]struct{}
		which := ""
		switch {
		case st != nil && l.maxSessions > 0 && len(st.ids) >= l.maxSessions:
			full, which = st.ids, "a"
		case user != "" && l.maxUser > 0 && len(l.users[user]) >= l.maxUser:
			full, which = l.users[user], "u"
		}
		if full != nil {
			if pruned[which] {
				l.mu.Unlock()
				if which == "a" {
					return false, addressCapError(l.maxSessions, addr)
				}
				return false, userCapError(l.maxUser, user)
			}
			pruned[which] = true
			ids := make([]string, 0, len(full))
			for id := range full {
				ids = append(ids, id)
			}
			l.mu.Unlock()
			for _, id := range ids {
				if !exists(id) {
					l.gone(id)
				}
			}
			continue
		}
		if st != nil {
			if l.rate > 0 {
				st.tokens--
			}
			st.ids[id] = struct{}{}
			l.owner[id] = addr
		}
		if user != "" && l.maxUser > 0 {
			if l.users[user] == nil {
				l.users[user] = map[string]struct{}{}
			}
			l.users[user][id] = struct{}{}
			l.uowner[id] = user
		}
		l.mu.Unlock()
		return true, nil
	}
}

// The errors of the session limits, the same from this process's count and
// from the engine's (limits_shared.go).
func addressRateError(rate float64, addr string) error {
	return fmt.Errorf("%w: more than %g new sessions a second from %s", errOverLimit, rate, addr)
}

func addressCapError(limit int, addr string) error {
	return fmt.Errorf("%w: %d sessions from %s", errOverLimit, limit, addr)
}

func userCapError(limit int, user string) error {
	return fmt.Errorf("%w: over the limit for this user: %d sessions of %q (comet.user_max_sessions)", ErrTooMany, limit, user)
}

// gone forgets a session that was removed or never created.
func (l *addrLimits) gone(id string) {
	if !l.limited() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if addr, ok := l.owner[id]; ok {
		delete(l.owner, id)
		if st := l.addrs[addr]; st != nil {
			delete(st.ids, id)
		}
	}
	if user, ok := l.uowner[id]; ok {
		delete(l.uowner, id)
		delete(l.users[user], id)
		if len(l.users[user]) == 0 {
			delete(l.users, user)
		}
	}
}

// prune forgets addresses with no session whose bucket is full again, so
// that the table holds only addresses in use.
func (l *addrLimits) prune(now time.Time) {
	if !l.limited() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for addr, st := range l.addrs {
		if len(st.ids) == 0 && st.full(now, l.rate, l.burst) {
			delete(l.addrs, addr)
		}
	}
}

// sessions reports how many sessions addr holds, for tests.
func (l *addrLimits) sessions(addr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.addrs[addr]; st != nil {
		return len(st.ids)
	}
	return 0
}

// addrRate is a token bucket per address (rate 0: no limit), for the new
// channels an address adds. The table holds only addresses whose bucket is
// not full.
type addrRate struct {
	rate, burst float64

	mu      sync.Mutex
	buckets map[string]*tokenBucket
}

func newAddrRate(rate float64, burst int) *addrRate {
	if burst <= 0 {
		rate = 0 // no burst (-1 in the config): no limit, as no rate
	}
	return &addrRate{rate: rate, burst: float64(burst), buckets: map[string]*tokenBucket{}}
}

// available returns the whole tokens addr has, or -1 for no limit.
func (l *addrRate) available(addr string, now time.Time) int {
	if l.rate <= 0 || addr == "" {
		return -1
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[addr]
	if b == nil {
		return int(l.burst)
	}
	b.refill(now, l.rate, l.burst)
	return max(0, int(b.tokens)) // overdrawn: none (never -1, no limit)
}

// take spends n tokens of addr (concurrent requests may overdraw a little:
// the debt is paid back before its next new channel).
func (l *addrRate) take(addr string, n int, now time.Time) {
	if l.rate <= 0 || addr == "" || n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[addr]
	if b == nil {
		b = &tokenBucket{tokens: l.burst, last: now}
		l.buckets[addr] = b
	}
	b.refill(now, l.rate, l.burst)
	b.tokens -= float64(n)
}

// prune forgets the addresses whose bucket is full again.
func (l *addrRate) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for addr, b := range l.buckets {
		if b.full(now, l.rate, l.burst) {
			delete(l.buckets, addr)
		}
	}
}

// prepareChannels makes the engine keep the named channels (no wildcards)
// before a publish or subscription for a client at addr ("": not counted
// per address), all or none, charging addr's bucket for those it adds. It
// fails with ErrChannelBudget when addr has added too many lately and with
// ErrTooManyChannels when the engine keeps MaxChannels already. With an
// engine that is no ChannelCreator it does nothing.
func (h *Hub) prepareChannels(addr string, names []string) error {
	cc, ok := h.engine.(ChannelCreator)
	if !ok {
		return nil
	}
	now := time.Now()
	var added int
	var err error
	if h.shared != nil && h.newChannels.rate > 0 && addr != "" {
		added, err = h.prepareChannelsShared(cc, addr, names)
	} else {
		ctx, cancel := h.call(context.Background())
		added, err = cc.CreateChannels(ctx, names, h.newChannels.available(addr, now))
		cancel()
	}
	switch {
	case errors.Is(err, ErrChannelBudget):
		return fmt.Errorf("%w: at most %g a second from one address (comet.address_channel_rate)",
			ErrChannelBudget, h.newChannels.rate)
	case errors.Is(err, ErrTooManyChannels):
		return h.tooManyChannels()
	case err != nil:
		return h.failed(err)
	}
	if h.shared == nil {
		h.newChannels.take(addr, added, now)
	}
	return nil
}

// tooManySubscriptions and tooManyChannels are the errors clients see,
// naming the limit and its setting whatever the engine said.
func (h *Hub) tooManySubscriptions() error {
	return fmt.Errorf("%w: at most %d per client (comet.max_subscriptions)",
		ErrTooManySubscriptions, h.elimits.MaxSubscriptions)
}

func (h *Hub) tooManyChannels() error {
	return fmt.Errorf("%w: the server keeps at most %d (comet.max_channels)", ErrTooManyChannels, h.elimits.MaxChannels)
}

// admitSession is Hub.Add's check of the address limits; added says
// whether the session was counted (to forget if it is not created).
func (h *Hub) admitSession(c *Client) (added bool, err error) {
	if h.shared != nil {
		return false, h.admitShared(c)
	}
	return h.limits.admit(c.s.ID, c.s.Remote, c.s.Attrs[AttrUser], time.Now(), func(id string) bool {
		ctx, cancel := h.call(context.Background())
		_, err := h.engine.Session(ctx, id)
		cancel()
		return !errors.Is(err, ErrUnknownClient)
	})
}

// overLimit reports whether err says the client should come back later.
func overLimit(err error) bool {
	// An app that does not answer its callbacks in time is a limit of the
	// same kind: refused for now, with Retry-After (503) or retry advice.
	return errors.Is(err, ErrTooMany) || errors.Is(err, ErrTooManyClients) || errors.Is(err, ErrClosed) ||
		errors.Is(err, ErrEngine) || errors.Is(err, ErrAppUnavailable)
}

// setRetryAfter tells an HTTP client refused for a limit when to come back.
func setRetryAfter(h http.Header, err error) {
	if overLimit(err) || errors.Is(err, ErrChannelBudget) {
		h.Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
	}
}

// multipleClientsAdvice is the advice for a connect from a browser that
// already holds its share of connects: answered at once, it is told to
// poll after an interval instead of holding (CometD's "multiple-clients").
func (b *Bayeux) multipleClientsAdvice() *bayeuxAdvice {
	return &bayeuxAdvice{Reconnect: "retry", Interval: b.opts.MultiClientInterval.Milliseconds(),
		Timeout: b.limits.pollTimeout.Milliseconds(), MultipleClients: true}
}

// orDefault is v, or def when v is zero, or zero (no limit) when v is negative.
func orDefault[T int | float64](v, def T) T {
	switch {
	case v < 0:
		return 0
	case v == 0:
		return def
	}
	return v
}
