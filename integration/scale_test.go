//go:build unix

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stardust-go/stardust/internal/testenv"
)

// TestScaleScriptTiny runs scripts/scale-100k.sh (issue 21, point 5) at a
// tiny scale: 400 held long polls over two stardust processes on one real
// redis-server, from two load processes, then one message. The script must
// end by itself, every client must have the message once, and its summary
// must carry the figures BENCHMARKS.md quotes.
func TestScaleScriptTiny(t *testing.T) {
	requireProgram(t, "redis-server", "redis-server")
	requireProgram(t, "redis-cli", "redis-tools")
	requireProgram(t, "python3", "python3")
	out := filepath.Join(t.TempDir(), "scale.json")
	log := runScript(t, "scripts/scale-100k.sh", 2*time.Minute,
		"CLIENTS=400", "NODES=2", "PROCS=2", "RAMP=800", "HOLD=1s", "SETTLE=2s", "LIMIT=60",
		"BASE_PORT="+strconv.Itoa(testenv.FreePorts(t, 2)), "REDIS_PORT="+strconv.Itoa(testenv.FreePorts(t, 1)), "OUT="+out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("no summary: %v\n%s", err, log)
	}
	var s struct {
		Clients, Received, Expected, Lost, Duplicates int64
		StardustProcesses                             int64   `json:"stardust_processes"`
		LastClientMS                                  float64 `json:"last_client_ms"`
		RedisBytesPerClient                           float64 `json:"redis_bytes_per_client"`
		RSSPerClient                                  float64 `json:"stardust_rss_kib_per_client"`
		RedisCommands                                 int64   `json:"redis_commands"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary: %v\n%s", err, b)
	}
	if s.Clients != 400 || s.Received != 400 || s.Expected != 400 || s.Lost != 0 || s.Duplicates != 0 || s.StardustProcesses != 2 {
		t.Errorf("summary %+v, want 400 of 400 received over 2 processes\n%s", s, log)
	}
	// Each client's session lives in Redis (some hundreds of bytes at
	// least); the publish itself is Redis commands; the message took time.
	if s.LastClientMS <= 0 || s.RedisBytesPerClient < 100 || s.RSSPerClient <= 0 || s.RedisCommands < 1 {
		t.Errorf("implausible figures %+v\n%s", s, log)
	}
}
