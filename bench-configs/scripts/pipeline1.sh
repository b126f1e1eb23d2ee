#!/usr/bin/env bash
# pipeline1.sh: redis-benchmark through nutcracker and ncproxy's I/O paths
# and wait modes, side by side. A benchmark script, not a test.
#
#   bench-configs/scripts/pipeline1.sh                 # after cargo build --release
#   ROUNDS=5 bench-configs/scripts/pipeline1.sh
#   EXTRA_CONFIGS='adaptive-1w=--wait adaptive --workers 1' \
#     bench-configs/scripts/pipeline1.sh
#   # another build against this one (an A/B of a change), GET only:
#   CONFIGS='nutcracker uring' TESTS=get \
#     EXTRA_CONFIGS='before=@/tmp/before/release/ncproxy --io uring' \
#     bench-configs/scripts/pipeline1.sh
#
# It starts two redis-servers and, on the same pool, nutcracker and one
# ncproxy per config: default (epoll, --wait sleep), --io uring, --wait
# adaptive, --busy-poll 200 (CONFIGS picks among these; nutcracker is always
# run, as the reference), plus EXTRA_CONFIGS (NAME=FLAGS, separated by ';';
# FLAGS starting with @PATH run the ncproxy binary at PATH). All run at once;
# one at a time is loaded. Each round runs, for -P 1 then -P 16, every target
# in turn (the order rotates from round to round):
#   redis-benchmark -c 50 -n 500000 -t set,get -P <p> -q     (TESTS: -t)
# and records requests/s, the target's CPU time (utime + stime from
# /proc/<pid>/stat) and its read + write syscalls (syscr + syscw from
# /proc/<pid>/io) over the run. It prints, per config and pipeline, the
# median and range over ROUNDS of the requests/s ratio to nutcracker's in
# the same round (SET and GET), CPU µs per request and syscalls per request,
# then each ncproxy's wait counters (what --wait adaptive decided).
# Every redis-benchmark run is bounded by RUN_TIMEOUT seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-500000}
CLIENTS=${CLIENTS:-50}
PIPELINES=${PIPELINES:-"1 16"}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
BUSY_POLL_US=${BUSY_POLL_US:-200}
EXTRA_CONFIGS=${EXTRA_CONFIGS:-}
CONFIGS=${CONFIGS:-"default uring adaptive busy-poll"}
TESTS=${TESTS:-set,get}
work=$(mktemp -d /tmp/pipeline1.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 124' TERM INT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "pipeline1: nothing listens on port $1" >&2
  exit 1
}
r1=$(port); r2=$(port)
for p in "$r1" "$r2"; do
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --loglevel warning >/dev/null &
  pids+=($!)
done
pool() {
  cat <<YAML
bench:
  listen: 127.0.0.1:$1
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
}

declare -A builtin=([default]="" [uring]="--io uring" [adaptive]="--wait adaptive"
  [busy-poll]="--busy-poll $BUSY_POLL_US")
names=(nutcracker)
flags=("")
for c in $CONFIGS; do
  [[ $c == nutcracker ]] && continue
  [[ -v "builtin[$c]" ]] || { echo "pipeline1: CONFIGS: unknown config '$c'" >&2; exit 2; }
  names+=("$c")
  flags+=("${builtin[$c]}")
done
IFS=';' read -r -a extras <<< "$EXTRA_CONFIGS"
for e in "${extras[@]}"; do
  [[ -z "${e// }" ]] && continue
  names+=("${e%%=*}")
  flags+=("${e#*=}")
done
declare -A target_port target_pid target_stats
for i in "${!names[@]}"; do
  name=${names[$i]}
  p=$(port); s=$(port)
  pool "$p" > "$work/$name.yml"
  if [[ $name == nutcracker ]]; then
    nutcracker -c "$work/$name.yml" -s "$s" -a 127.0.0.1 -o "$work/$name.log" &
  else
    binary=$BIN/ncproxy
    config_flags=${flags[$i]}
    if [[ $config_flags == @* ]]; then
      read -r binary config_flags <<< "${config_flags#@}"
    fi
    [[ -x $binary ]] || { echo "pipeline1: $name: no ncproxy binary at $binary" >&2; exit 2; }
    # shellcheck disable=SC2086
    "$binary" -c "$work/$name.yml" -s "$s" -a 127.0.0.1 -o "$work/$name.log" $config_flags &
  fi
  target_pid[$name]=$!
  target_port[$name]=$p
  target_stats[$name]=$s
  pids+=($!)
done
wait_port "$r1"; wait_port "$r2"
for name in "${names[@]}"; do wait_port "${target_port[$name]}"; done
echo "pipeline1: redis-benchmark -c $CLIENTS -n $REQUESTS -t $TESTS -P {$PIPELINES}, $ROUNDS rounds"
for i in "${!names[@]}"; do echo "  ${names[$i]}: ${flags[$i]:-(defaults)}"; done

cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
syscalls() { awk '/^syscr:|^syscw:/ { n += $2 } END { print n }' "/proc/$1/io"; }
results="$work/results.tsv"
: > "$results"
n=${#names[@]}
for round in $(seq "$ROUNDS"); do
  for pipeline in $PIPELINES; do
    for k in $(seq 0 $((n - 1))); do
      name=${names[$(( (k + round) % n ))]}
      pid=${target_pid[$name]}
      c0=$(cpu_ticks "$pid"); s0=$(syscalls "$pid")
      out=$(timeout "$RUN_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "${target_port[$name]}" \
        -c "$CLIENTS" -n "$REQUESTS" -t "$TESTS" -P "$pipeline" -q 2>/dev/null | tr '\r' '\n') || {
        echo "pipeline1: redis-benchmark against $name failed or timed out" >&2
        exit 1
      }
      c1=$(cpu_ticks "$pid"); s1=$(syscalls "$pid")
      set_rps=$(awk -F'[: ]+' '/^SET:/ { v = $2 } END { print v }' <<< "$out")
      get_rps=$(awk -F'[: ]+' '/^GET:/ { v = $2 } END { print v }' <<< "$out")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$pipeline" "$name" "${set_rps:-nan}" "${get_rps:-nan}" \
        "$((c1 - c0))" "$((s1 - s0))" >> "$results"
      printf '  round %s -P %-2s %-12s SET %10s GET %10s\n' "$round" "$pipeline" "$name" "$set_rps" "$get_rps"
    done
  done
done

python3 - "$results" "$REQUESTS" "$(getconf CLK_TCK)" "$TESTS" "${names[@]}" <<'PY'
import math, statistics, sys
path, requests, hz, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[5:]
tests = len([t for t in sys.argv[4].split(",") if t])
rows = [l.split('\t') for l in open(path).read().splitlines() if l]
runs = {(int(r[0]), int(r[1]), r[2]): (float(r[3]), float(r[4]), int(r[5]), int(r[6])) for r in rows}
pipelines = sorted({p for _, p, _ in runs})
rounds = sorted({r for r, _, _ in runs})
def span(xs):
    xs = [x for x in xs if not math.isnan(x)]
    if not xs:
        return "-"
    return "%.2f [%.2f-%.2f]" % (statistics.median(xs), min(xs), max(xs))
print()
print("%-12s %3s  %-22s %-22s %12s %12s" % ("config", "-P", "SET / nutcracker", "GET / nutcracker", "CPU us/req", "sys/req"))
for p in pipelines:
    for name in names:
        set_r, get_r, cpu, sys_ = [], [], [], []
        for r in rounds:
            mine, base = runs.get((r, p, name)), runs.get((r, p, "nutcracker"))
            if not mine or not base:
                continue
            set_r.append(mine[0] / base[0])
            get_r.append(mine[1] / base[1])
            # Each test makes `requests` requests.
            cpu.append(mine[2] * 1e6 / hz / (tests * requests))
            sys_.append(mine[3] / (tests * requests))
        if not set_r:
            continue
        print("%-12s %3d  %-22s %-22s %12.2f %12.3f" % (name, p, span(set_r), span(get_r),
              statistics.median(cpu), statistics.median(sys_)))
PY
echo
echo "ncproxy wait counters (top-level stats) after all rounds:"
for name in "${names[@]}"; do
  [[ $name == nutcracker ]] && continue
  python3 - "$name" "${target_stats[$name]}" <<'PY'
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=5)
data = b""
while chunk := s.recv(65536):
    data += chunk
doc = json.loads(data)
keys = ["wait_spins", "wait_spin_hits", "wait_parks", "wait_spin_us", "wait_wakeup_ns", "wait_gap_ns"]
print("  %-12s %s" % (sys.argv[1], " ".join("%s=%s" % (k, doc.get(k, "n/a")) for k in keys)))
PY
done
