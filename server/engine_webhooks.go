package server

import (
	"context"
	"sync"
	"time"
)

// The engine's part of webhooks (webhooks.go): deciding each event once and
// keeping the outgoing queue where every process can send it. Both are
// optional capabilities of an Engine, found by type assertion; an engine
// without them (the memory engine) gets localWebhooks, which keeps both in
// this process. The Redis engine has both (engine/redis/webhooks.go), so
// that with several processes each event is decided by exactly one of them
// and a process that dies leaves its queued events to the others.

// Occupancy counts the sessions on each channel (the names and patterns
// clients subscribe to), so that a channel's first arrival and last
// departure are seen once whichever process they happen on. (A user's are
// the engine's Members, joinleave.go.)
type Occupancy interface {
	// Occupy records session id (of user; "" none, kept for Vacate) on
	// channel. It reports whether the channel had no session before. It
	// records nothing, and reports false, for a session the engine no
	// longer has or that is on the channel already.
	Occupy(ctx context.Context, id, user, channel string) (first bool, err error)
	// Vacate takes session id off channels (none: off every channel it is
	// on) and returns what that changed.
	Vacate(ctx context.Context, id string, channels []string) ([]Vacancy, error)
}

// Vacancy is one channel a session left, as Vacate reports it.
type Vacancy struct {
	Channel string
	User    string // the session's user as Occupy recorded it; "" none
	Empty   bool   // no session is left on the channel
}

// WebhookQueue is the outgoing queue of webhook events (each an encoded
// JSON object), shared by every process that may send it. One process at
// a time sends: the holder of a lease that WebhookBatch takes and renews.
type WebhookQueue interface {
	// PushWebhooks appends events unless the queue holds max already: it
	// returns how many it dropped for that (the newest: the head, which a
	// sender may be posting, never changes under it).
	PushWebhooks(ctx context.Context, events []string, max int) (dropped int, err error)
	// WebhookBatch takes the sender's lease for owner for lease (or renews
	// it when owner holds it) and returns up to n events from the head of
	// the queue; ok is false, with no events, when another owner holds it.
	WebhookBatch(ctx context.Context, owner string, lease time.Duration, n int) (events []string, ok bool, err error)
	// TrimWebhooks drops the first n events if owner still holds the lease
	// (the events it was given were sent); it reports whether it did.
	TrimWebhooks(ctx context.Context, owner string, n int) (bool, error)
	// WebhookQueueLen returns how many events wait.
	WebhookQueueLen(ctx context.Context) (int, error)
}

// localWebhooks keeps occupancy and the queue in this process, for an
// engine that is not shared. The session check of Occupy asks the engine.
type localWebhooks struct {
	engine Engine

	mu     sync.Mutex
	chans  map[string]int               // sessions by channel
	sess   map[string]map[string]string // session id -> channel -> user
	queue  []string
	holder string
	until  time.Time
}

var (
	_ Occupancy    = (*localWebhooks)(nil)
	_ WebhookQueue = (*localWebhooks)(nil)
)

func newLocalWebhooks(e Engine) *localWebhooks {
	return &localWebhooks{engine: e, chans: map[string]int{}, sess: map[string]map[string]string{}}
}

// Occupy implements Occupancy.
func (l *localWebhooks) Occupy(ctx context.Context, id, user, channel string) (bool, error) {
	if _, err := l.engine.Session(ctx, id); err != nil {
		return false, nil // gone already: its disconnect came first
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	on := l.sess[id]
	if on == nil {
		on = map[string]string{}
		l.sess[id] = on
	}
	if _, had := on[channel]; had {
		return false, nil
	}
	on[channel] = user
	l.chans[channel]++
	return l.chans[channel] == 1, nil
}

// Vacate implements Occupancy.
func (l *localWebhooks) Vacate(_ context.Context, id string, channels []string) ([]Vacancy, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	on := l.sess[id]
	if len(channels) == 0 {
		for ch := range on {
			channels = append(channels, ch)
		}
	}
	var out []Vacancy
	for _, ch := range channels {
		user, had := on[ch]
		if !had {
			continue
		}
		delete(on, ch)
		l.chans[ch]--
		v := Vacancy{Channel: ch, User: user, Empty: l.chans[ch] == 0}
		if v.Empty {
			delete(l.chans, ch)
		}
		out = append(out, v)
	}
	if len(on) == 0 {
		delete(l.sess, id)
	}
	return out, nil
}

// PushWebhooks implements WebhookQueue.
func (l *localWebhooks) PushWebhooks(_ context.Context, events []string, limit int) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	room := max(0, limit-len(l.queue))
	if room >= len(events) {
		l.queue = append(l.queue, events...)
		return 0, nil
	}
	l.queue = append(l.queue, events[:room]...)
	return len(events) - room, nil
}

// WebhookBatch implements WebhookQueue.
func (l *localWebhooks) WebhookBatch(_ context.Context, owner string, lease time.Duration, n int) ([]string, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.holder != owner && now.Before(l.until) {
		return nil, false, nil
	}
	l.holder, l.until = owner, now.Add(lease)
	return append([]string(nil), l.queue[:min(n, len(l.queue))]...), true, nil
}

// TrimWebhooks implements WebhookQueue.
func (l *localWebhooks) TrimWebhooks(_ context.Context, owner string, n int) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder != owner {
		return false, nil
	}
	l.queue = l.queue[min(n, len(l.queue)):]
	return true, nil
}

// WebhookQueueLen implements WebhookQueue.
func (l *localWebhooks) WebhookQueueLen(context.Context) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue), nil
}
