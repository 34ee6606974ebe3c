package server_test

import (
	"testing"

	"github.com/stardust-go/stardust/server"
	"github.com/stardust-go/stardust/server/enginetest"
)

func TestMemoryEngineConformance(t *testing.T) {
	enginetest.Run(t, enginetest.Factory{Open: func(t *testing.T, l server.Limits) server.Engine {
		return server.NewMemoryEngine(l)
	}})
}
