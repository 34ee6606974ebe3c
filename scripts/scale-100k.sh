#!/usr/bin/env bash
# One message to 100,000 held long-poll clients (issue 21, point 5): NODES
# stardust processes (the built binary, Redis engine, each on its own port
# and under its own open-files limit) share one redis-server; the load tool
# (stardust-load) runs its subscribers in PROCS child processes, each from
# its own loopback address (127.0.0.2 and up) and on one of the NODES ports in
# turn, all subscribed to one channel with the Stardust API (long polling).
# Once the server lists every client, the tool waits SETTLE (default HOLD
# + 5 s: every poll answered once and made again, as a process mirrors a
# client from its second poll), publishes ONE message through the first
# process, and counts what each client received. Loopback only; bounded: the load tool is killed
# after LIMIT seconds, and everything started here is stopped on exit.
#   scripts/scale-100k.sh                        (CLIENTS=100000 NODES=6 PROCS=12)
#   CLIENTS=400 NODES=2 PROCS=2 HOLD=2s scripts/scale-100k.sh   (a tiny one)
# RAMP: clients started a second, all together (the machine must keep up:
# each new client costs its process a session in Redis). HOLD: the servers'
# comet.poll_timeout, in whole seconds ("60s"). BIN: a directory with stardust and stardust-load
# already built (default: build them into a temporary one). TIMEOUT: the
# engine's Redis call timeout (10 s: on a saturated machine the default 2 s
# fails calls that Redis would answer, and the clients' retries add load).
# OUT: a file for the summary as JSON as well. Ports: REDIS_PORT, and BASE_PORT to
# BASE_PORT+NODES-1.
# The summary: set-up time, time from the publish to the last client,
# stardust RSS per client (all processes, after set-up and settling, less
# before), Redis memory per client (INFO memory used_memory, the same
# moments), and Redis CPU (INFO cpu), commands (INFO commandstats) and
# stardust CPU (/proc) per delivery from the publish to one second after the
# load tool ended (the fan-out, the clients' next polls, the cursors'
# flushes).
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${CLIENTS:-100000} NODES=${NODES:-6} PROCS=${PROCS:-12} RAMP=${RAMP:-500}
HOLD=${HOLD:-60s} LIMIT=${LIMIT:-540} TIMEOUT=${TIMEOUT:-10s} REDIS_PORT=${REDIS_PORT:-6397} BASE_PORT=${BASE_PORT:-5931}
hold_s=${HOLD%s}
SETTLE=${SETTLE:-$((hold_s + 5))s}
MAXCONN=${MAXCONN:-19000}
tmp=$(mktemp -d)
pids=()
cleanup() {
  local rc=$? p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then # the logs, to see why
    keep=$(mktemp -d /tmp/scale-100k-logs.XXXXXX)
    cp "$tmp"/*.log "$tmp"/*.json "$tmp"/*.toml "$keep"/ 2>/dev/null || true
    echo "scale-100k: failed ($rc); logs kept in $keep" >&2
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "scale-100k: $*" >&2; }

BIN=${BIN:-}
if [ -z "$BIN" ]; then
  BIN=$tmp/bin
  go build -o "$BIN/stardust" ./cmd/stardust
  go build -o "$BIN/stardust-load" ./cmd/stardust-load
fi
redis=$(command -v redis-server || true)
if [ -z "$redis" ]; then
  say "SKIP: redis-server is not installed (apt-get install redis-server)"
  exit 77
fi
if [ $((CLIENTS / NODES)) -ge "$MAXCONN" ] || [ $((CLIENTS / PROCS)) -ge "$(ulimit -Hn)" ]; then
  say "CLIENTS/NODES must stay under MAXCONN=$MAXCONN and CLIENTS/PROCS under the open-files limit $(ulimit -Hn)"
  exit 2
fi

cat >"$tmp/redis.conf" <<CONF
bind 127.0.0.1
port $REDIS_PORT
save ""
appendonly no
dir $tmp
CONF
"$redis" "$tmp/redis.conf" >"$tmp/redis.log" 2>&1 &
redispid=$!
pids+=($redispid)
rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
for _ in $(seq 50); do rcli PING >/dev/null 2>&1 && break; sleep 0.1; done

# The load-test limits (every client comes from loopback), a longer hold,
# room for the sessions (max_clients counts all processes' together),
# the Redis engine, and room for the clients under the open-files limit.
awk -v hold="$HOLD" -v ct="$((hold_s * 3 + 30))s" \
  -v mc="$((CLIENTS * 2 + 1000))" \
  '{print} /^\[comet\]/ {print "poll_timeout = \"" hold "\""; print "client_timeout = \"" ct "\""; print "max_clients = " mc}' \
  cmd/stardust-load/loadtest.toml >"$tmp/stardust.toml"
printf '\n[server]\nmax_connections = %d\nrequest_timeout = "%ds"\n\n[engine]\ntype = "redis"\nredis_url = "redis://127.0.0.1:%d/0"\ntimeout = "%s"\n' \
  "$MAXCONN" $((hold_s + 60)) "$REDIS_PORT" "$TIMEOUT" >>"$tmp/stardust.toml"

urls=() spids=()
for ((i = 0; i < NODES; i++)); do
  port=$((BASE_PORT + i))
  "$BIN/stardust" --config "$tmp/stardust.toml" --listen 127.0.0.1:$port --log-level warn 2>"$tmp/stardust.$i.log" &
  pids+=($!) spids+=($!)
  urls+=("http://127.0.0.1:$port/comet")
done
for u in "${urls[@]}"; do
  for _ in $(seq 100); do curl -sf "$u/" >/dev/null && break; sleep 0.1; done
done

rss() { local t=0 p; for p in "${spids[@]}"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $t; }
hwm() { local t=0 p; for p in "${spids[@]}"; do t=$((t + $(awk '/^VmHWM/ {print $2}' "/proc/$p/status"))); done; echo $t; }
ticks() { local t=0 p; for p in "${spids[@]}"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
rmem() { rcli INFO memory | awk -F: '/^used_memory:/ {print $2+0}'; }
rcpu() { rcli INFO cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f\n", s}'; }
rcalls() { # commands so far, INFO and CONFIG left out
  rcli INFO commandstats | awk -F'[:=,]' '/^cmdstat_/ && $1 !~ /cmdstat_(info|config)/ {n += $3} END {print n + 0}'
}
rss0=$(rss) mem0=$(rmem)
start=$(date +%s.%N)
say "$NODES stardust processes on ports $BASE_PORT-$((BASE_PORT + NODES - 1)), redis-server on $REDIS_PORT; $CLIENTS clients from $PROCS load processes, $RAMP a second"

spread=$(IFS=,; echo "${urls[*]}")
: >"$tmp/load.log"
timeout -k 10 "$LIMIT" "$BIN/stardust-load" --url "${urls[0]}" --urls "$spread" --procs "$PROCS" \
  --clients "$CLIENTS" --channels 1 --publishers 1 --rate 0 --messages 1 --duration 30s \
  --ramp "$RAMP" --setup-timeout "$((LIMIT - 30))s" --settle "$SETTLE" --drain 30s \
  --poll-timeout "$((hold_s + 30))s" --json >"$tmp/load.json" 2>"$tmp/load.log" &
loadpid=$!
pids+=($loadpid)
tail -f "$tmp/load.log" --pid $loadpid >&2 &
# The moment of publishing: memory after set-up, counters from here.
until grep -Eq "settled; publishing|^stardust-load: $CLIENTS clients registered.*publishing$" "$tmp/load.log" 2>/dev/null || ! kill -0 $loadpid 2>/dev/null; do sleep 0.05; done
rss1=$(rss) mem1=$(rmem) t0=$(ticks) r0=$(rcpu) c0=$(rcalls) keys=$(rcli DBSIZE)
rcli INFO commandstats >"$tmp/cmd0"
rc=0
wait $loadpid || rc=$?
sleep 1
t1=$(ticks) r1=$(rcpu) c1=$(rcalls) hwm1=$(hwm) mem2=$(rmem)
rcli INFO commandstats >"$tmp/cmd1"
end=$(date +%s.%N)
if [ ! -s "$tmp/load.json" ]; then
  say "the load tool ended with status $rc and no report; its log:"
  cat "$tmp/load.log" >&2
  for ((i = 0; i < NODES; i++)); do tail -5 "$tmp/stardust.$i.log" >&2; done
  exit 1
fi
python3 - "$tmp/load.json" "$NODES" "$PROCS" "$rss0" "$rss1" "$hwm1" "$mem0" "$mem1" "$mem2" \
  "$((t1 - t0))" "$(getconf CLK_TCK)" "$r0" "$r1" "$c0" "$c1" "$keys" "$start" "$end" "${OUT:-}" "$tmp/cmd0" "$tmp/cmd1" <<'PY'
import json, sys
a = sys.argv
rep = json.load(open(a[1]))
nodes, procs = int(a[2]), int(a[3])
rss0, rss1, hwm1, mem0, mem1, mem2 = map(int, a[4:10])
ticks, hz = int(a[10]), int(a[11])
r0, r1, c0, c1 = float(a[12]), float(a[13]), int(a[14]), int(a[15])
keys, start, end, out = int(a[16]), float(a[17]), float(a[18]), a[19]
def cmdstats(path):  # command -> (calls, usec)
    st = {}
    for line in open(path):
        if line.startswith("cmdstat_"):
            name, rest = line.strip()[8:].split(":", 1)
            f = dict(kv.split("=") for kv in rest.split(","))
            st[name] = (int(f["calls"]), int(f["usec"]))
    return st
c0s, c1s = cmdstats(a[20]), cmdstats(a[21])
bycmd = sorted(((c1s[k][0] - c0s.get(k, (0, 0))[0], k) for k in c1s if k not in ("info", "config")), reverse=True)
n, got = rep["clients"], rep["received"]
lat = rep.get("latency_ms") or {}
per = lambda x: x / got if got else float("nan")
s = {
    "clients": n, "stardust_processes": nodes, "load_processes": procs,
    "received": got, "expected": rep["expected"], "lost": rep["lost"], "duplicates": rep["duplicates"],
    "poll_errors": rep["poll_errors"], "first_error": rep.get("first_error", ""),
    "setup_s": rep["setup_s"], "last_client_ms": lat.get("max"), "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"),
    "stardust_rss_kb_before": rss0, "stardust_rss_kb_held": rss1, "stardust_hwm_kb": hwm1,
    "stardust_rss_kib_per_client": (rss1 - rss0) / n,
    "redis_used_memory_before": mem0, "redis_used_memory_held": mem1, "redis_used_memory_after": mem2,
    "redis_bytes_per_client": (mem1 - mem0) / n, "redis_keys": keys,
    "redis_cpu_s": r1 - r0, "redis_cpu_us_per_delivery": per((r1 - r0) * 1e6),
    "redis_commands": c1 - c0, "redis_commands_per_delivery": per(c1 - c0),
    "stardust_cpu_s": ticks / hz, "stardust_cpu_us_per_delivery": per(ticks / hz * 1e6),
    "wall_s": end - start,
    "redis_commands_by_name": {k: d for d, k in bycmd if d > 0},
}
print(f"{got} of {rep['expected']} received (lost {rep['lost']}, duplicated {rep['duplicates']}, poll errors {rep['poll_errors']}) "
      f"by {n} clients over {nodes} stardust processes")
print(f"set-up {s['setup_s']:.1f} s; one message: p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, last client {s['last_client_ms']} ms")
print(f"stardust RSS {rss0 // 1024} -> {rss1 // 1024} MiB (peak {hwm1 // 1024}): {s['stardust_rss_kib_per_client']:.1f} KiB per client")
print(f"Redis used_memory {mem0 / 2**20:.1f} -> {mem1 / 2**20:.1f} MiB ({keys} keys): {s['redis_bytes_per_client']:.0f} bytes per client")
print(f"publish to the end: Redis CPU {s['redis_cpu_s']:.3f} s ({s['redis_cpu_us_per_delivery']:.2f} us/delivery), "
      f"{s['redis_commands']} commands ({s['redis_commands_per_delivery']:.4f}/delivery); "
      f"stardust CPU {s['stardust_cpu_s']:.2f} s ({s['stardust_cpu_us_per_delivery']:.1f} us/delivery)")
print("Redis commands from the publish on, by name: " + ", ".join(f"{k} {d}" for d, k in bycmd[:8] if d > 0))
print(f"wall {s['wall_s']:.0f} s")
if out:
    json.dump(s, open(out, "w"), indent=2)
sys.exit(0 if got >= rep["expected"] and rep["lost"] == 0 and rep["duplicates"] == 0 else 1)
PY
