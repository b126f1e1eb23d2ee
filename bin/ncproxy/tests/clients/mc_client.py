#!/usr/bin/env python3
"""Real memcached client libraries against ADDR (ncproxy, or memcached itself).

Usage: mc_client.py HOST:PORT

Classic text protocol through pymemcache (every command, noreply=True and
False); meta protocol through meta-memcache (mg/ms/md/ma with q flags and mn
fences as that library sends them). Prints one line per check group and
finally `mc_client: ALL OK <n> checks`; exits 1 on the first failure (with
the reason), 2 if a library is missing.
"""

import sys
import time

try:
    from pymemcache.client.base import Client
except ImportError as e:  # pragma: no cover
    print(f"mc_client: pymemcache missing ({e}); pip install pymemcache", file=sys.stderr)
    sys.exit(2)
try:
    from meta_memcache import CacheClient, ServerAddress, connection_pool_factory_builder
except ImportError as e:  # pragma: no cover
    print(f"mc_client: meta-memcache missing ({e}); pip install meta-memcache", file=sys.stderr)
    sys.exit(2)

CHECKS = 0


def check(what, got, want):
    global CHECKS
    CHECKS += 1
    if got != want:
        print(f"mc_client: FAIL {what}: got {got!r}, want {want!r}", file=sys.stderr)
        sys.exit(1)


def classic(host, port):
    c = Client((host, port), connect_timeout=5, timeout=5, default_noreply=False)
    for noreply in (False, True):
        p = f"pyc:{int(noreply)}:"
        r = c.set(p + "a", b"alpha", noreply=noreply)
        check(f"set noreply={noreply}", r, True)
        check("get", c.get(p + "a"), b"alpha")
        r = c.add(p + "a", b"x", noreply=noreply)
        check("add existing", r, True if noreply else False)
        r = c.add(p + "b", b"beta", noreply=noreply)
        check("add new", r, True)
        r = c.replace(p + "b", b"BETA", noreply=noreply)
        check("replace", r, True)
        r = c.replace(p + "missing", b"x", noreply=noreply)
        check("replace missing", r, True if noreply else False)
        check("append", c.append(p + "b", b"-app", noreply=noreply), True)
        check("prepend", c.prepend(p + "b", b"pre-", noreply=noreply), True)
        check("get after append/prepend", c.get(p + "b"), b"pre-BETA-app")
        c.set(p + "n", b"10", noreply=noreply)
        r = c.incr(p + "n", 5, noreply=noreply)
        check("incr", r, None if noreply else 15)
        r = c.decr(p + "n", 3, noreply=noreply)
        check("decr", r, None if noreply else 12)
        check("get counter", c.get(p + "n"), b"12")
        if not noreply:
            check("incr missing", c.incr(p + "nokey", 1), None)
        r = c.touch(p + "a", 1000, noreply=noreply)
        check("touch", r, True)
        val, cas = c.gets(p + "a")
        check("gets value", val, b"alpha")
        r = c.cas(p + "a", b"alpha2", cas, noreply=noreply)
        check("cas ok", r, True)
        check("get after cas", c.get(p + "a"), b"alpha2")
        if not noreply:
            check("cas stale", c.cas(p + "a", b"alpha3", cas), False)
        many = {f"{p}m{i}": f"v{i}".encode() for i in range(60)}
        check("set_many", c.set_many(many, noreply=noreply), [])
        got = c.get_many(list(many) + [p + "missing1", p + "missing2"])
        check("get_many", got, many)
        got = c.gets_many([p + "m1", p + "m2", p + "missing1"])
        check("gets_many keys", sorted(got), [p + "m1", p + "m2"])
        check("gets_many value", got[p + "m1"][0], b"v1")
        r = c.delete(p + "b", noreply=noreply)
        check("delete", r, True)
        check("get deleted", c.get(p + "b"), None)
        if not noreply:
            check("delete missing", c.delete(p + "b"), False)
        check("delete_many", c.delete_many([f"{p}m{i}" for i in range(10)], noreply=noreply), True)
        check("get_many after delete_many", c.get_many([f"{p}m{i}" for i in range(10)]), {})
    # gat / gats: pymemcache 4.0 has no method for them, so its raw_command
    # (same connection, its own reply reader).
    c.set("pyc:gat", b"g")
    check("gat", c.raw_command(b"gat 1000 pyc:gat", b"END\r\n"), b"VALUE pyc:gat 0 1\r\ng\r\n")
    r = c.raw_command(b"gats 1000 pyc:gat pyc:gat-missing", b"END\r\n")
    check("gats", r.startswith(b"VALUE pyc:gat 0 1 ") and r.endswith(b"\r\ng\r\n"), True)
    check("gat missing", c.raw_command(b"gat 10 pyc:gat-missing", b"END\r\n"), b"")
    check("get after gat", c.get("pyc:gat"), b"g")
    # Keys spread over the servers (the Rust side checks the backends).
    for i in range(30):
        c.set(f"pyc:spread:{i}", f"s{i}".encode())
    check("spread read back", c.get_many([f"pyc:spread:{i}" for i in range(30)]),
          {f"pyc:spread:{i}": f"s{i}".encode() for i in range(30)})
    v = c.version()
    check("version is bytes", isinstance(v, bytes) and len(v) > 0, True)
    st = c.stats()
    check("stats is a non-empty dict", isinstance(st, dict) and len(st) > 0, True)
    check("verbosity", c.raw_command(b"verbosity 0", b"\r\n"), b"OK")
    # flush_all last (it empties every server), then the pool is usable.
    c.set("pyc:flush", b"f")
    check("flush_all", c.flush_all(noreply=False), True)
    check("get after flush_all", c.get("pyc:flush"), None)
    c.set("pyc:flush", b"f")
    check("flush_all noreply", c.flush_all(noreply=True), True)
    check("get after flush_all noreply", c.get("pyc:flush"), None)
    for i in range(30):
        c.set(f"pyc:spread:{i}", f"s{i}".encode())
    c.close()
    print("mc_client: pymemcache ok")


def meta(host, port):
    pool = connection_pool_factory_builder(connection_timeout=5, recv_timeout=5)
    mc = CacheClient.cache_client_from_servers([ServerAddress(host, port)], pool)
    check("meta set", mc.set("pym:a", b"meta-a", ttl=1000), True)
    check("meta get", mc.get("pym:a"), b"meta-a")
    check("meta get miss", mc.get("pym:missing"), None)
    check("meta set noreply", mc.set("pym:nr", b"nr", ttl=1000, no_reply=True), True)
    check("meta get after noreply", mc.get("pym:nr"), b"nr")
    keys = [f"pym:m{i}" for i in range(40)]
    for i, k in enumerate(keys):
        if i % 3:
            mc.set(k, f"mv{i}".encode(), ttl=1000)
    got = mc.multi_get(keys)
    want = {}
    for i, k in enumerate(keys):
        want[k] = f"mv{i}".encode() if i % 3 else None
    check("meta multi_get", {k.key: v for k, v in got.items()}, want)
    val, cas = mc.get_cas("pym:a")
    check("meta get_cas", val, b"meta-a")
    check("meta set cas ok", mc.set("pym:a", b"meta-a2", ttl=1000, cas_token=cas), True)
    check("meta set cas stale", mc.set("pym:a", b"meta-a3", ttl=1000, cas_token=cas), False)
    check("meta get after cas", mc.get("pym:a"), b"meta-a2")
    check("meta delta_initialize", mc.delta_initialize("pym:cnt", 1, 10, 1000), True)
    check("meta delta", mc.delta("pym:cnt", 5), True)
    check("meta delta_and_get", mc.delta_and_get("pym:cnt", 1), 16)
    check("meta touch", mc.touch("pym:a", 1000), True)
    check("meta delete", mc.delete("pym:a"), True)
    check("meta get deleted", mc.get("pym:a"), None)
    check("meta delete missing", mc.delete("pym:a"), False)
    # A key that needs base64 (non-ascii / spaces) and a long one.
    for k in ["pym:ünï cödé", "pym:" + "x" * 300]:
        check(f"meta set {k[:12]}", mc.set(k, b"enc", ttl=1000), True)
        check(f"meta get {k[:12]}", mc.get(k), b"enc")
    print("mc_client: meta-memcache ok")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    host, port = sys.argv[1].rsplit(":", 1)
    port = int(port)
    t0 = time.time()
    classic(host, port)
    meta(host, port)
    print(f"mc_client: ALL OK {CHECKS} checks in {time.time() - t0:.2f}s")


if __name__ == "__main__":
    main()
