package enginetest

import (
	"testing"

	"github.com/stardust-go/stardust/server"
)

// The engine's optional capabilities (server.Deliverer and the others): a
// test that needs one the engine does not have is skipped, saying which.

// capability is e as the optional interface C, or skips the test.
func capability[C any](t *testing.T, e server.Engine) C {
	t.Helper()
	c, ok := e.(C)
	if !ok {
		t.Skipf("the engine is no %T", (*C)(nil))
	}
	return c
}

func statsOf(t *testing.T, e server.Engine) (server.EngineStats, error) {
	t.Helper()
	return capability[server.StatsReporter](t, e).Stats(ctx)
}

func audienceOf(t *testing.T, e server.Engine, channel string) (map[string]int, error) {
	t.Helper()
	return capability[server.AudienceCounter](t, e).Audience(ctx, channel)
}

func delivererOf(t *testing.T, e server.Engine) server.Deliverer {
	return capability[server.Deliverer](t, e)
}

func connCounterOf(t *testing.T, e server.Engine) server.ConnectionCounter {
	return capability[server.ConnectionCounter](t, e)
}
