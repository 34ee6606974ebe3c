package redis_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stardust-go/stardust/engine/redis"
	"github.com/stardust-go/stardust/internal/redistest"
	"github.com/stardust-go/stardust/server"
	"github.com/stardust-go/stardust/server/enginetest"
)

var prefixes atomic.Int64

// open returns a Redis engine on srv under a key prefix of its own, so
// that the suite's cases share one server without seeing each other.
func open(t *testing.T, url, prefix string, l server.Limits) *redis.Engine {
	t.Helper()
	return openWith(t, redis.Options{URL: url, Prefix: prefix, Limits: l})
}

// openFirst is open with MirrorFromFirstPoll: every watch mirrors its
// session at once, so that the mirrors' tests need no second poll.
func openFirst(t *testing.T, url, prefix string, l server.Limits) *redis.Engine {
	t.Helper()
	return openWith(t, redis.Options{URL: url, Prefix: prefix, Limits: l, MirrorFromFirstPoll: true})
}

// await receives from ch, failing the test (what: the event awaited) if
// nothing comes within 5 s.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not within 5 s", what)
	}
	var zero T // not reached: Fatalf ends the test
	return zero
}

// openWith opens an engine of o with mirrors on and a 2 s timeout, closed
// when the test ends (Close may be called before: it is safe twice).
func openWith(t *testing.T, o redis.Options) *redis.Engine {
	t.Helper()
	o.Timeout, o.Mirror = 2*time.Second, true
	e, err := redis.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	enginetest.Run(t, enginetest.Factory{
		Open: func(t *testing.T, l server.Limits) server.Engine {
			return open(t, srv.URL, fmt.Sprintf("t%d:", prefixes.Add(1)), l)
		},
		Peer: func(t *testing.T, e server.Engine, l server.Limits) server.Engine {
			return open(t, srv.URL, e.(*redis.Engine).Prefix(), l)
		},
	})
}
