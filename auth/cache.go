package auth

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/stardust-go/stardust/server"
)

// cache keeps the app's answers for a while, at most size of them (the
// least recently used go first), and collapses concurrent identical
// questions into one call (a small singleflight): 500 long-polling clients
// of one browser session ask the app once, not 500 times. Safe for
// concurrent use.
type cache[V any] struct {
	size int
	now  func() time.Time
	base context.Context

	mu       sync.Mutex
	entries  map[string]*list.Element
	order    *list.List // front: most recently used
	inflight map[string]*flight[V]
}

type cacheEntry[V any] struct {
	key     string
	val     V
	err     error
	expires time.Time
}

// flight is one call in progress; waiters read val and err once done is closed.
type flight[V any] struct {
	done chan struct{}
	val  V
	err  error
}

func newCache[V any](base context.Context, size int, now func() time.Time) *cache[V] {
	return &cache[V]{size: size, now: now, base: base, entries: map[string]*list.Element{},
		order: list.New(), inflight: map[string]*flight[V]{}}
}

// do returns the cached answer for key, or calls fn once for every caller
// asking for key at the same time. fn returns the answer and how long to
// keep it (0: not kept, as for "the app is down"). fn runs on the cache's
// base context (ended when the owner closes), not the first caller's, so
// that a caller who gives up does not fail the others; each caller waits no longer than its own ctx. shared
// tells whether the answer was not this caller's own call.
func (c *cache[V]) do(ctx context.Context, key string, fn func(context.Context) (V, time.Duration, error)) (val V, shared bool, err error) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		ent := e.Value.(*cacheEntry[V])
		if c.now().Before(ent.expires) {
			c.order.MoveToFront(e)
			c.mu.Unlock()
			return ent.val, true, ent.err
		}
		c.order.Remove(e)
		delete(c.entries, key)
	}
	f, ok := c.inflight[key]
	if !ok {
		f = &flight[V]{done: make(chan struct{})}
		c.inflight[key] = f
		go c.call(c.base, key, f, fn)
	}
	c.mu.Unlock()
	select {
	case <-f.done:
		return f.val, ok, f.err
	case <-ctx.Done():
		var zero V
		return zero, ok, fmt.Errorf("%w: gave up waiting for the app's answer: %v", server.ErrAppUnavailable, ctx.Err())
	}
}

func (c *cache[V]) call(ctx context.Context, key string, f *flight[V], fn func(context.Context) (V, time.Duration, error)) {
	val, ttl, err := fn(ctx)
	c.mu.Lock()
	f.val, f.err = val, err
	delete(c.inflight, key)
	if ttl > 0 && c.size > 0 {
		ent := &cacheEntry[V]{key: key, val: val, err: err, expires: c.now().Add(ttl)}
		if e, ok := c.entries[key]; ok {
			e.Value = ent
			c.order.MoveToFront(e)
		} else {
			c.entries[key] = c.order.PushFront(ent)
		}
		for c.order.Len() > c.size {
			last := c.order.Back()
			c.order.Remove(last)
			delete(c.entries, last.Value.(*cacheEntry[V]).key)
		}
	}
	c.mu.Unlock()
	close(f.done)
}

// len is the number of answers kept, expired ones included until they are
// looked up or pushed out.
func (c *cache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.order.Len()
}
