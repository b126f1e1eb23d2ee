#!/usr/bin/env bash
# gate-proof.sh: does the baseline gate hold on this machine's noise, and does
# it catch a real slowdown? A benchmark script, not a test.
#
#   bench-configs/scripts/gate-proof.sh            # after cargo build --release
#   RUNS=10 DUTY=0.2 bench-configs/scripts/gate-proof.sh
#
# It starts two redis-servers and the ncproxy binary itself (so it knows the
# proxy's pid). Every comparison records its own baseline right before the
# new run (`ncbench run --json base-i.json`, TRIALS trials each), because on a
# shared machine the load of the other tenants drifts by 2x over minutes: a
# baseline recorded once, minutes earlier, measures that drift, not the
# change. Then
#   1. RUNS pairs of the same build: every failed baseline check of the
#      second run against the first is a false alarm;
#   2. RUNS pairs where the second run has throttle.py SIGSTOP the proxy for
#      DUTY of every 10 ms (a CPU-limited proxy, as cpulimit makes one):
#      every failed throughput check is a detection. The measured slowdown
#      (median ops/s ratio new / base of those pairs) is printed next to it.
# Thresholds: throughput drop 10 %, p99 increase 50 %, 95 % intervals.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
RUNS=${RUNS:-10}
DUTY=${DUTY:-0.2}
TRIALS=${TRIALS:-5}
work=$(mktemp -d /tmp/gate-proof.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
r1=$(port); r2=$(port); pp=$(port); sp=$(port)
for p in "$r1" "$r2"; do
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --loglevel warning >/dev/null &
  pids+=($!)
done
cat > "$work/pool.yml" <<YAML
bench:
  listen: 127.0.0.1:$pp
  hash: fnv1a_64
  distribution: ketama
  redis: true
  timeout: 2000
  server_connections: 1
  auto_eject_hosts: false
  preconnect: true
  servers:
    - 127.0.0.1:$r1:1 s0
    - 127.0.0.1:$r2:1 s1
YAML
"$BIN/ncproxy" -c "$work/pool.yml" -s "$sp" -a 127.0.0.1 -o "$work/ncproxy.log" &
proxy=$!
pids+=($proxy)
sleep 1

cat > "$work/gate.toml" <<TOML
name = "gate-proof"
description = "the same build against a baseline, then a CPU-limited proxy"
[run]
duration = "1s"
warmup = "300ms"
trials = $TRIALS
[backends]
kind = "external"
addresses = ["127.0.0.1:$r1", "127.0.0.1:$r2"]
[[target]]
kind = "external"
label = "ncproxy"
address = "127.0.0.1:$pp"
stats = "127.0.0.1:$sp"
[workload]
connections = 50
pipeline = 16
keys = 10000
[baseline]
max_throughput_drop = "10%"
max_p99_increase = "50%"
confidence = 0.95
TOML

run() { # name [extra args]
  local name=$1; shift
  set +e
  "$BIN/ncbench" run "$work/gate.toml" --progress quiet --json "$work/$name.json" "$@" > "$work/$name.txt" 2>&1
  local rc=$?
  set -e
  echo "$rc"
}

summary() { # json -> "ops-verdict p99-verdict ratio [lo,hi]"
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
checks = {c["metric"]: c for c in (r.get("baseline") or {}).get("checks", [])}
ops, p99 = checks.get("ops_per_sec", {}), checks.get("latency_us_p99", {})
iv = ops.get("ratio_interval") or {}
print(ops.get("verdict", "?"), p99.get("verdict", "?"),
      "%.3f" % (1 + (ops.get("change") or 0)),
      "[%.3f, %.3f]" % (iv.get("low", float("nan")), iv.get("high", float("nan"))))
PY
}

false_alarms=0; inconclusive_same=0
for i in $(seq 1 "$RUNS"); do
  run "base-$i" >/dev/null
  rc=$(run "same-$i" --baseline "$work/base-$i.json")
  s=$(summary "$work/same-$i.json")
  echo "same build $i: exit $rc, ops/p99 verdicts and ops ratio: $s"
  if [ "$rc" = 1 ]; then false_alarms=$((false_alarms + 1)); fi
  case "$s" in *inconclusive*) inconclusive_same=$((inconclusive_same + 1));; esac
done

detected=0; ratios=()
for i in $(seq 1 "$RUNS"); do
  run "sbase-$i" >/dev/null
  python3 bench-configs/scripts/throttle.py "$proxy" "$DUTY" 0.01 &
  throttle=$!
  sleep 0.3
  rc=$(run "slow-$i" --baseline "$work/sbase-$i.json")
  kill "$throttle" 2>/dev/null || true
  wait "$throttle" 2>/dev/null || true
  s=$(summary "$work/slow-$i.json")
  echo "throttled $i: exit $rc, ops/p99 verdicts and ops ratio: $s"
  case "$s" in fail*) detected=$((detected + 1));; esac
  ratios+=("$(echo "$s" | awk '{print $3}')")
done

median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
echo
echo "false alarms (same build, any baseline check failed): $false_alarms of $RUNS (inconclusive: $inconclusive_same)"
echo "detected (throttled proxy, DUTY=$DUTY, throughput check failed): $detected of $RUNS; measured ops ratio median $median"
echo "results in $work"
