#!/usr/bin/env bash
# idle-memory.sh: resident memory of ncproxy and nutcracker holding many idle
# clients. A benchmark script, not a test.
#
#   bench-configs/scripts/idle-memory.sh          # after cargo build --release
#   CLIENTS=20000 SETTLE=5 bench-configs/scripts/idle-memory.sh
#
# It starts two redis-servers, then ncproxy and nutcracker with the same pool,
# opens CLIENTS connections to each proxy (one at a time, from a small Python
# holder that sends nothing), waits SETTLE seconds and reads VmRSS from
# /proc/<pid>/status: before the clients (baseline), and with them. It prints
# both proxies' figures and the ratio ncproxy / nutcracker. Every child is
# killed on exit; the whole run is bounded by TIMEOUT seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
CLIENTS=${CLIENTS:-10000}
SETTLE=${SETTLE:-3}
TIMEOUT=${TIMEOUT:-120}
NCPROXY_FLAGS=${NCPROXY_FLAGS:-}
# One descriptor per client in the proxy and in the holder, plus headroom.
ulimit -n $((CLIENTS + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < CLIENTS + 64 )); then
  echo "idle-memory: ulimit -n $(ulimit -n) is too low for $CLIENTS clients" >&2
  exit 2
fi
work=$(mktemp -d /tmp/idle-memory.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 124' TERM INT
# The whole run is bounded: a watchdog ends this shell after TIMEOUT seconds.
( sleep "$TIMEOUT"; echo "idle-memory: timed out after ${TIMEOUT}s" >&2; kill -TERM $$ ) 2>/dev/null &
watchdog=$!
pids+=($watchdog)

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2).close()" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "idle-memory: nothing listens on port $1" >&2
  exit 1
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

r1=$(port); r2=$(port)
for p in "$r1" "$r2"; do
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --loglevel warning >/dev/null &
  pids+=($!)
done
pool() {
  cat <<YAML
idle:
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
np=$(port); ns=$(port); tp=$(port); ts=$(port)
pool "$np" > "$work/ncproxy.yml"
pool "$tp" > "$work/nutcracker.yml"
# shellcheck disable=SC2086
"$BIN/ncproxy" -c "$work/ncproxy.yml" -s "$ns" -a 127.0.0.1 -o "$work/ncproxy.log" $NCPROXY_FLAGS &
ncproxy=$!
pids+=($ncproxy)
nutcracker -c "$work/nutcracker.yml" -s "$ts" -a 127.0.0.1 -o "$work/nutcracker.log" &
nutcracker=$!
pids+=($nutcracker)
wait_port "$r1"; wait_port "$r2"; wait_port "$np"; wait_port "$tp"

# The holder: opens N connections, says how many it holds, then waits for
# stdin to close (or its own deadline) and exits, closing them all.
cat > "$work/hold.py" <<'PY'
import socket, sys, time
port, n, deadline = int(sys.argv[1]), int(sys.argv[2]), time.time() + float(sys.argv[3])
held = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    held.append(s)
# One PING on the first connection shows the proxy serves with all of them open.
held[0].sendall(b"*1\r\n$4\r\nPING\r\n")
assert held[0].recv(64).startswith(b"+PONG"), "proxy did not answer"
print(len(held), flush=True)
while time.time() < deadline and sys.stdin.readline():
    pass
PY

# measure NAME PID PORT: sets BASE and WITH (kB) for that proxy.
measure() {
  local name=$1 pid=$2 port=$3 held
  sleep "$SETTLE"
  BASE=$(rss_kb "$pid")
  coproc HOLD { python3 "$work/hold.py" "$port" "$CLIENTS" "$TIMEOUT"; }
  local holder=$HOLD_PID
  pids+=($holder)
  read -r held <&"${HOLD[0]}"
  if [[ "$held" != "$CLIENTS" ]]; then
    echo "idle-memory: $name: the holder opened ${held:-no} connections" >&2
    exit 1
  fi
  sleep "$SETTLE"
  WITH=$(rss_kb "$pid")
  eval "exec ${HOLD[1]}>&-"
  wait "$holder" 2>/dev/null || true
}
measure ncproxy "$ncproxy" "$np"; nb=$BASE; nw=$WITH
measure nutcracker "$nutcracker" "$tp"; tb=$BASE; tw=$WITH
printf '%-12s %14s %22s %14s\n' proxy "baseline kB" "with $CLIENTS idle kB" "per client B"
printf '%-12s %14s %22s %14s\n' ncproxy "$nb" "$nw" "$(( (nw - nb) * 1024 / CLIENTS ))"
printf '%-12s %14s %22s %14s\n' nutcracker "$tb" "$tw" "$(( (tw - tb) * 1024 / CLIENTS ))"
python3 -c "print('ratio ncproxy / nutcracker with $CLIENTS idle clients: %.2f' % ($nw / $tw))"
kill "$watchdog" 2>/dev/null || true
