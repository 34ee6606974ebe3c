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
//   - held Bayeux connects per browser (BayeuxOptions.ClientMaxConnections,
//     counted by the BAYEUX_BROWSER cookie through the engine): extra tabs
//     are told to poll ("multiple-clients" advice, as CometD does) instead
//     of being refused.
//
// The address limits are kept by each process: with several processes
// sharing an engine, each enforces its own. Clients refused for being over
// a limit are told when to retry (Retry-After, Bayeux advice "retry" with an
// interval), never to give up.

// Defaults of the address limits: 200 users behind one address handshake at
// once, 20 more a second after that, and one address holds at most 1% of
// the default MaxClients.
const (
	DefaultAddressMaxSessions  = 1000
	DefaultAddressSessionRate  = 20
	DefaultAddressSessionBurst = 200
)

// retryAfter is what clients over a limit are told to wait.
const retryAfter = 5 * time.Second

// errOverLimit wraps ErrTooMany: the client should retry later.
var errOverLimit = fmt.Errorf("%w: over the limit for this address", ErrTooMany)

// addrLimits counts sessions and creations per address. The zero limits
// mean none.
type addrLimits struct {
	maxSessions int
	rate        float64 // tokens a second
	burst       float64

	mu    sync.Mutex
	addrs map[string]*addrState
	owner map[string]string // session id -> its address
}

type addrState struct {
	ids    map[string]struct{}
	tokens float64
	last   time.Time
}

func newAddrLimits(maxSessions int, rate float64, burst int) *addrLimits {
	return &addrLimits{maxSessions: maxSessions, rate: rate, burst: float64(burst),
		addrs: map[string]*addrState{}, owner: map[string]string{}}
}

func (l *addrLimits) limited() bool { return l != nil && (l.maxSessions > 0 || l.rate > 0) }

// admit counts a new session id from addr, or says why not; added says
// whether it counted it (not when the id is counted already: a concurrent
// request is creating it). exists is asked, when addr is at its cap, which of
// its sessions still exist (others may have been removed by another
// process); it must not be called with l.mu held.
func (l *addrLimits) admit(id, addr string, now time.Time, exists func(id string) bool) (added bool, err error) {
	if !l.limited() || addr == "" {
		return false, nil
	}
	for attempt := 0; ; attempt++ {
		l.mu.Lock()
		if _, ok := l.owner[id]; ok {
			l.mu.Unlock()
			return false, nil
		}
		st := l.addrs[addr]
		if st == nil {
			st = &addrState{ids: map[string]struct{}{}, tokens: l.burst, last: now}
			l.addrs[addr] = st
		}
		if l.rate > 0 {
			if now.After(st.last) { // callers race: a now taken earlier adds nothing
				st.tokens = min(l.burst, st.tokens+now.Sub(st.last).Seconds()*l.rate)
				st.last = now
			}
			if st.tokens < 1 {
				l.mu.Unlock()
				return false, fmt.Errorf("%w: more than %g new sessions a second from %s", errOverLimit, l.rate, addr)
			}
		}
		if l.maxSessions > 0 && len(st.ids) >= l.maxSessions {
			if attempt > 0 {
				l.mu.Unlock()
				return false, fmt.Errorf("%w: %d sessions from %s", errOverLimit, l.maxSessions, addr)
			}
			ids := make([]string, 0, len(st.ids))
			for id := range st.ids {
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
		if l.rate > 0 {
			st.tokens--
		}
		st.ids[id] = struct{}{}
		l.owner[id] = addr
		l.mu.Unlock()
		return true, nil
	}
}

// gone forgets a session that was removed or never created.
func (l *addrLimits) gone(id string) {
	if !l.limited() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	addr, ok := l.owner[id]
	if !ok {
		return
	}
	delete(l.owner, id)
	if st := l.addrs[addr]; st != nil {
		delete(st.ids, id)
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
		if len(st.ids) == 0 && (l.rate <= 0 || st.tokens+now.Sub(st.last).Seconds()*l.rate >= l.burst) {
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

// admitSession is Hub.Add's check of the address limits; added says
// whether the session was counted (to forget if it is not created).
func (h *Hub) admitSession(c *Client) (added bool, err error) {
	return h.limits.admit(c.s.ID, c.s.Remote, time.Now(), func(id string) bool {
		_, err := h.engine.Session(context.Background(), id)
		return !errors.Is(err, ErrUnknownClient)
	})
}

// overLimit reports whether err says the client should come back later.
func overLimit(err error) bool {
	return errors.Is(err, ErrTooMany) || errors.Is(err, ErrTooManyClients) || errors.Is(err, ErrClosed) ||
		errors.Is(err, ErrEngine)
}

// setRetryAfter tells an HTTP client refused for a limit when to come back.
func setRetryAfter(h http.Header, err error) {
	if overLimit(err) {
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
