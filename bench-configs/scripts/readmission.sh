#!/usr/bin/env bash
# readmission.sh: after a dead backend comes back, how long until ncproxy
# routes requests to it again, with and without active health checks?
# A benchmark script, not a test.
#
#   bench-configs/scripts/readmission.sh      # after cargo build [--release] -p ncproxy-cli
#   REPEATS=7 BIN=target/debug bench-configs/scripts/readmission.sh
#
# Two redis-servers (s0, s1) behind the ncproxy binary (one worker), pool
# with auto_eject_hosts: true, server_failure_limit: 1,
# server_retry_timeout: 2000, in two configurations:
#   health  health_check_interval: 50 (an ejected server comes back when a
#           PING to it succeeds);
#   retry   no health checks (an ejected server is tried again, on traffic,
#           server_retry_timeout after its ejection, and ejected again while
#           it is still down).
# A poller sends GET K through the proxy every POLL_MS (K is a key ketama
# puts on s1; s0 holds a marker value under K, so a reply says who served
# it: the marker is s0, while s1 is ejected; a nil is s1, restarted empty).
# Each repeat: SIGKILL s1; the poller's requests make the proxy eject it
# (health: the checks do too); after a random 0.5-2.5 s (seeded) s1 starts
# again on its port. Its recovery is the first moment it answers PING
# directly; the re-admission is the first reply from s1 through the proxy
# after that. Printed: each repeat's time from recovery to re-admission and
# the median per configuration. Every repeat gives up after 10 s; the whole
# script takes about REPEATS x 2 x 3.5 s.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release}
if [[ ! -x "$BIN/ncproxy" && -x target/debug/ncproxy ]]; then BIN=target/debug; fi
export NCPROXY="$BIN/ncproxy" REPEATS=${REPEATS:-5} POLL_MS=${POLL_MS:-2} SEED=${SEED:-15}
[[ -x "$NCPROXY" ]] || { echo "no ncproxy binary in $BIN (cargo build --release -p ncproxy-cli)" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "redis-server is not on PATH" >&2; exit 2; }
echo "ncproxy: $NCPROXY ($("$NCPROXY" -V 2>&1 | head -1)), $(redis-server --version | cut -d' ' -f1-3)"
exec python3 - <<'PY'
import os, random, socket, statistics, subprocess, sys, tempfile, time

NCPROXY = os.environ["NCPROXY"]
REPEATS = int(os.environ["REPEATS"])
POLL = int(os.environ["POLL_MS"]) / 1000.0
rng = random.Random(int(os.environ["SEED"]))
work = tempfile.mkdtemp(prefix="readmission.")
children = []

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def resp(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out

class Conn:
    """A blocking RESP connection that reads exactly one simple reply."""
    def __init__(self, port, timeout=1.0):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
    def line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("closed")
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l
    def cmd(self, *args):
        self.s.sendall(resp(*args))
        l = self.line()
        if l[:1] == b"$" and int(l[1:]) >= 0:
            n = int(l[1:])
            while len(self.buf) < n + 2:
                d = self.s.recv(65536)
                if not d:
                    raise ConnectionError("closed")
                self.buf += d
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        return l  # +OK, -ERR ..., $-1, :n
    def close(self):
        self.s.close()

def redis(port):
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--daemonize", "no",
                          "--loglevel", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children.append(p)
    return p

def pings(port):
    try:
        c = Conn(port, 0.2); r = c.cmd("PING"); c.close(); return r == b"+PONG"
    except OSError:
        return False

def wait_up(port, within=10.0):
    end = time.monotonic() + within
    while time.monotonic() < end:
        if pings(port):
            return time.monotonic()
        time.sleep(0.001)
    raise SystemExit(f"port {port} did not come up")

def kill(p):
    p.kill(); p.wait()

def run(label, health_ms):
    p0, p1, pp = free_port(), free_port(), free_port()
    s0, s1 = redis(p0), redis(p1)
    wait_up(p0); wait_up(p1)
    conf = os.path.join(work, f"{label}.yml")
    with open(conf, "w") as f:
        f.write(f"""bench:
  listen: 127.0.0.1:{pp}
  hash: fnv1a_64
  distribution: ketama
  redis: true
  timeout: 500
  server_connections: 1
  auto_eject_hosts: true
  server_failure_limit: 1
  server_retry_timeout: 2000
  preconnect: true
""" + (f"  health_check_interval: {health_ms}\n" if health_ms else "") + f"""  servers:
    - 127.0.0.1:{p0}:1 s0
    - 127.0.0.1:{p1}:1 s1
""")
    proxy = subprocess.Popen([NCPROXY, "-c", conf, "-s", str(free_port()), "-a", "127.0.0.1",
                              "--workers", "1", "-o", os.path.join(work, f"{label}.log")])
    children.append(proxy)
    wait_up(pp)
    # A key that ketama puts on s1: set candidates through the proxy, find one on s1.
    c = Conn(pp)
    d1 = Conn(p1)
    key = None
    for i in range(200):
        k = f"readmit:{i}"
        c.cmd("SET", k, "x")
        if d1.cmd("EXISTS", k) == b":1":
            key = k
            break
    d1.close()
    if key is None:
        raise SystemExit("no key of s1 found")
    Conn(p0).cmd("SET", key, "s0")
    times, notes = [], []
    for rep in range(REPEATS):
        kill(s1)
        down = rng.uniform(0.5, 2.5)
        restart_at = time.monotonic() + down
        saw_s0 = False
        up_at = None
        deadline = restart_at + 10.0
        readmitted = None
        while time.monotonic() < deadline:
            now = time.monotonic()
            if up_at is None and now >= restart_at:
                s1 = redis(p1)
                up_at = wait_up(p1)
            try:
                r = c.cmd("GET", key)
            except OSError:
                c = Conn(pp)
                continue
            if r == b"s0":
                saw_s0 = True
            elif up_at is not None and not r.startswith(b"-"):
                readmitted = time.monotonic()
                break
            time.sleep(POLL)
        if readmitted is None:
            notes.append(f"repeat {rep + 1}: not re-admitted within 10 s")
            continue
        if not saw_s0:
            notes.append(f"repeat {rep + 1}: s1 was never ejected (no reply from s0)")
        times.append((readmitted - up_at) * 1000.0)
        time.sleep(0.2)
    c.close()
    for p in (proxy, s0, s1):
        kill(p)
    return times, notes

try:
    results = []
    for label, health in (("health", 50), ("retry", 0)):
        results.append((label, health) + run(label, health))
    print(f"time from a backend's recovery to its re-admission (ms), {REPEATS} repeats each, poll every {POLL * 1000:.0f} ms:")
    for label, health, times, notes in results:
        what = (f"health_check_interval: {health}, server_retry_timeout: 2000" if health
                else "no health checks, server_retry_timeout: 2000")
        med = f"{statistics.median(times):7.1f}" if times else "    n/a"
        each = " ".join(f"{t:.1f}" for t in times)
        print(f"  {label:6} ({what}): median {med}  each: {each}")
        for n in notes:
            print(f"    note: {n}")
finally:
    for p in children:
        if p.poll() is None:
            p.kill()
            p.wait()
PY
