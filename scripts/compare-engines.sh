#!/usr/bin/env bash
# Side by side in one run: the same load (stardust-load, Stardust API long
# polling) against one stardust with the memory engine and one with the Redis
# engine. Each server is pinned to core 0 with GOMAXPROCS=1; the load tool and
# redis-server share core 1. Loopback only; bounded by DURATION.
#   scripts/compare-engines.sh            (CLIENTS=500 RATE=50 DURATION=20s)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-500} RATE=${RATE:-50} DURATION=${DURATION:-20s}
tmp=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
go build -o "$tmp/stardust" ./cmd/stardust
go build -o "$tmp/stardust-load" ./cmd/stardust-load
redis=$(command -v redis-server || echo /usr/bin/redis-server)
cat >"$tmp/redis.conf" <<CONF
bind 127.0.0.1
port 6391
save ""
appendonly no
dir $tmp
CONF
taskset -c 1 "$redis" "$tmp/redis.conf" >"$tmp/redis.log" 2>&1 &
redispid=$!
sleep 0.5
cp cmd/stardust-load/loadtest.toml "$tmp/memory.toml"
{ cat cmd/stardust-load/loadtest.toml; printf '\n[engine]\ntype = "redis"\nredis_url = "redis://127.0.0.1:6391/0"\n'; } >"$tmp/redis.toml"

run() { # name, port, extra stardust args...
  local name=$1 port=$2; shift 2
  GOMAXPROCS=1 taskset -c 0 "$tmp/stardust" --listen 127.0.0.1:$port --log-level warn "$@" &
  local pid=$!
  sleep 1
  local t0 r0; t0=$(awk '{print $14+$15}' /proc/$pid/stat); r0=$(awk '{print $14+$15}' /proc/$redispid/stat)
  taskset -c 1 "$tmp/stardust-load" --url http://127.0.0.1:$port/comet --clients "$CLIENTS" \
    --rate "$RATE" --duration "$DURATION" --pid $pid --json >"$tmp/$name.json"
  local t1 r1; t1=$(awk '{print $14+$15}' /proc/$pid/stat); r1=$(awk '{print $14+$15}' /proc/$redispid/stat)
  kill $pid; wait $pid 2>/dev/null || true
  python3 - "$name" "$tmp/$name.json" $((t1 - t0)) $((r1 - r0)) "$(getconf CLK_TCK)" <<'PY'
import json, sys
name, path, ticks, rticks, hz = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
r = json.load(open(path))
d = r.get("received") or 0
lat = r.get("latency_ms") or {}
cpu = ticks / hz
print(f"{name:7s} delivered {d:>8} of {r.get('expected')} lost {r.get('lost')} dup {r.get('duplicates')}  "
      f"p50 {lat.get('p50')} ms  p99 {lat.get('p99')} ms  server CPU {cpu:.2f} s  "
      f"{(cpu * 1e6 / d) if d else float('nan'):.1f} us/delivery  "
      f"redis-server CPU {rticks / hz:.2f} s ({(rticks / hz * 1e6 / d) if d else float('nan'):.1f} us/delivery)")
PY
}
run memory 5791 --config "$tmp/memory.toml"
run redis 5792 --config "$tmp/redis.toml"
