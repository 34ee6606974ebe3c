#!/usr/bin/env bash
# Side by side in one run: the same load (stardust-load) against one stardust
# with the memory engine and one with the Redis engine. Loopback only;
# bounded by DURATION.
#   scripts/compare-engines.sh            (CLIENTS=500 RATE=50 DURATION=20s)
# MODE: the subscribers' transport (poll: Stardust API long polling, bayeux:
# Bayeux long-polling, sse, websocket); CHANNELS: channels the clients are
# spread over. PIN=1 (the default) pins each server to core 0 with
# GOMAXPROCS=1 and the load tool and redis-server to core 1; PIN=0 leaves
# them all free. Each row also gives the Redis commands per delivery (INFO
# commandstats, a script's own commands included) and redis-server's CPU
# per delivery (/proc), counted from SKIP (default 2) seconds after
# publishing started to the end of the run, over the deliveries the servers
# counted meanwhile (stardust_messages_delivered_total); the latency
# percentiles leave out the messages of those SKIP seconds too (each is
# still counted as received, lost or duplicated). PUBLISHERS
# (default 4) concurrent publishers share RATE.
# NODES=N (N > 1) runs, after the two rows, the Redis engine with one
# process and then with N processes on the one Redis, each with its own load
# tool and CLIENTS/N clients (as a load balancer with session affinity
# would spread them), and sums what they delivered.
# QUOTA=P gives each stardust process P % of one core at most (a cgroup's
# CPU quota, cgroup v1 or v2; root): on a machine of few cores, four
# processes of P % then stand for four machines, each as saturated as one
# process alone, so that what four carry can be compared with what one
# does (the load tools and redis-server are not limited).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-500} RATE=${RATE:-50} DURATION=${DURATION:-20s}
MODE=${MODE:-poll} CHANNELS=${CHANNELS:-1} PIN=${PIN:-1} NODES=${NODES:-1} PUBLISHERS=${PUBLISHERS:-4}
export SKIP=${SKIP:-2}
QUOTA=${QUOTA:-}
tmp=$(mktemp -d)
cgroups=()
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  local g
  for g in "${cgroups[@]}"; do rmdir "$g" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
# cgroup: the CPU controller's root, v1 (cpu.cfs_quota_us) or v2 (cpu.max).
cgroot=""
if [ -n "$QUOTA" ]; then
  for d in /sys/fs/cgroup/cpu /sys/fs/cgroup/cpu,cpuacct /sys/fs/cgroup; do
    if [ -w "$d/cpu.cfs_quota_us" ] || { [ -w "$d/cgroup.subtree_control" ] && grep -qw cpu "$d/cgroup.controllers" 2>/dev/null; }; then
      cgroot=$d
      break
    fi
  done
  if [ -z "$cgroot" ]; then
    echo "compare-engines: QUOTA needs a writable cgroup CPU controller (root); none found" >&2
    exit 2
  fi
fi
limit() { # pid: at most QUOTA % of a core, in a cgroup of its own
  [ -n "$QUOTA" ] || return 0
  local g=$cgroot/stardust-compare-$$-$1
  mkdir -p "$g"
  cgroups+=("$g")
  # A 10 ms period: a process that used its share waits at most the
  # rest of 10 ms (100 ms, the default, would add its own latency).
  if [ -e "$g/cpu.cfs_quota_us" ]; then
    echo 10000 >"$g/cpu.cfs_period_us"
    echo $((QUOTA * 100)) >"$g/cpu.cfs_quota_us"
  else
    echo "$((QUOTA * 100)) 10000" >"$g/cpu.max"
  fi
  echo "$1" >"$g/cgroup.procs"
}
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
core() { if [ "$PIN" = 1 ]; then echo taskset -c "$1"; fi; }
$(core 1) "$redis" "$tmp/redis.conf" >"$tmp/redis.log" 2>&1 &
redispid=$!
sleep 0.5
cp cmd/stardust-load/loadtest.toml "$tmp/memory.toml"
{ cat cmd/stardust-load/loadtest.toml; printf '\n[engine]\ntype = "redis"\nredis_url = "redis://127.0.0.1:6391/0"\n'; } >"$tmp/redis.toml"

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
delivered() { curl -s "http://127.0.0.1:$1/comet/metrics" | awk '/^stardust_messages_delivered_total/ {print $2}'; }
rcalls() { # Redis commands so far, INFO and CONFIG left out
  redis-cli -p 6391 INFO commandstats | awk -F'[:=,]' '/^cmdstat_/ && $1 !~ /cmdstat_(info|config)/ {n += $3} END {print n + 0}'
}
load() { # port, clients, output
  local url=http://127.0.0.1:$1/comet
  $(core 1) "$tmp/stardust-load" --url "$url" --mode "$MODE" --clients "$2" --channels "$CHANNELS" \
    --publishers "$PUBLISHERS" --rate "$RATE" --duration "$DURATION" --warmup "${SKIP}s" --json >"$3" 2>"$3.log"
}

run() { # name, nodes, config
  local name=$1 nodes=$2 config=$3 pids=() i
  for ((i = 0; i < nodes; i++)); do
    if [ "$PIN" = 1 ]; then
      GOMAXPROCS=1 taskset -c 0 "$tmp/stardust" --listen 127.0.0.1:$((5791 + i)) --log-level warn --config "$config" &
    else
      "$tmp/stardust" --listen 127.0.0.1:$((5791 + i)) --log-level warn --config "$config" &
    fi
    pids+=($!)
    limit $!
  done
  sleep 1
  local loads=()
  for ((i = 0; i < nodes; i++)); do
    load $((5791 + i)) $((CLIENTS / nodes)) "$tmp/$name.$i.json" &
    loads+=($!)
  done
  # Counted from SKIP seconds after publishing started (the clients'
  # set-up, first connects included, is left out) to the end of the run,
  # deliveries from the servers' own counters.
  until [ "$(cat "$tmp/$name".*.json.log 2>/dev/null | grep -c publishing)" -ge "$nodes" ]; do sleep 0.05; done
  sleep "$SKIP"
  local t0=0 r0 c0 d0=0
  for p in "${pids[@]}"; do t0=$((t0 + $(ticks "$p"))); done
  for ((i = 0; i < nodes; i++)); do d0=$((d0 + $(delivered $((5791 + i))))); done
  r0=$(ticks $redispid) c0=$(rcalls)
  wait "${loads[@]}"
  local t1=0 r1 c1 d1=0
  for p in "${pids[@]}"; do t1=$((t1 + $(ticks "$p"))); done
  for ((i = 0; i < nodes; i++)); do d1=$((d1 + $(delivered $((5791 + i))))); done
  r1=$(ticks $redispid) c1=$(rcalls)
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  python3 - "$name" $((t1 - t0)) $((r1 - r0)) $((c1 - c0)) "$(getconf CLK_TCK)" $((d1 - d0)) "$tmp/$name".*.json <<'PY'
import json, sys
name, ticks, rticks, calls, hz, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
rs = [json.load(open(p)) for p in sys.argv[7:]]
skip = __import__("os").environ.get("SKIP", "2")
got = sum(r.get("received") or 0 for r in rs)
exp = sum(r.get("expected") or 0 for r in rs)
lost = sum(r.get("lost") or 0 for r in rs)
dup = sum(r.get("duplicates") or 0 for r in rs)
rate = sum(r.get("delivery_rate") or 0 for r in rs)
lat = rs[0].get("latency_ms") or {}
cpu, rcpu = ticks / hz, rticks / hz
per = lambda x: (x / d) if d else float("nan")
print(f"{name:8s} received {got:>8} of {exp} lost {lost} dup {dup}  {rate:,.0f}/s  "
      f"p50 {lat.get('p50')} ms  p99 {lat.get('p99')} ms  stardust CPU {cpu:.2f} s ({per(cpu * 1e6):.1f} us/delivery)  "
      f"redis-server CPU {rcpu:.2f} s ({per(rcpu * 1e6):.2f} us/delivery)  "
      f"Redis commands {calls} ({per(calls):.3f}/delivery)  (per delivery: {d} counted by the servers after the first {skip} s)")
PY
}
run memory 1 "$tmp/memory.toml"
run redis 1 "$tmp/redis.toml"
if [ "$NODES" -gt 1 ]; then
  run "redis×$NODES" "$NODES" "$tmp/redis.toml"
fi
