//! `--io uring`: client I/O on a per-worker io_uring. End to end against
//! real redis-server and memcached processes (pipelines, multi-key requests,
//! replies larger than a socket buffer), the ring's counters, syscalls per
//! request at pipeline 1 with 50 clients (the proxy's own counters, against
//! the epoll path in the same test), and the fallback to epoll with its log
//! line when io_uring is refused. These tests pass `--io` themselves, so
//! they are the same under CI's `NCPROXY_TEST_IO=uring` pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nc_harness::{
    free_port, memcache, resp_cmd, Memcached, Ncproxy, PoolConfig, ProxyProcess, RawConn,
    RedisServer,
};

const WAIT: Duration = Duration::from_secs(10);

fn ncproxy_bin() -> PathBuf {
    nc_harness::ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"))
}

/// A redis pool on a fresh port over `servers` (named s1, s2...), and its port.
fn redis_pool(name: &str, servers: &[RedisServer]) -> (PoolConfig, u16) {
    let port = free_port().expect("free port");
    let mut pool = PoolConfig::redis(name, port);
    for (i, server) in servers.iter().enumerate() {
        pool = pool.server(server.addr(), 1, Some(&format!("s{}", i + 1)));
    }
    (pool, port)
}

fn start_with(binary: &Path, yaml: &str, args: &[&str]) -> ProxyProcess {
    Ncproxy::start(binary, yaml, args).expect("ncproxy starts")
}

fn stats(proxy: &ProxyProcess) -> serde_json::Value {
    let text = proxy.stats_json().expect("stats");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("stats JSON ({e}): {text}"))
}

fn top(stats: &serde_json::Value, field: &str) -> Option<u64> {
    stats.get(field).and_then(serde_json::Value::as_u64)
}

/// Sums a server field over every server of `pool`.
fn server_sum(stats: &serde_json::Value, pool: &str, field: &str) -> u64 {
    stats[pool]
        .as_object()
        .expect("pool object")
        .values()
        .filter_map(|server| server.get(field).and_then(serde_json::Value::as_u64))
        .sum()
}

fn cmd(conn: &mut RawConn, args: &[&[u8]]) -> Vec<u8> {
    conn.send(&resp_cmd(args)).expect("send");
    conn.read_exact_reply_bytes(WAIT).expect("reply")
}

#[test]
fn uring_serves_redis_and_memcached_end_to_end() {
    let servers: Vec<RedisServer> = (0..2)
        .map(|_| RedisServer::start().expect("redis-server starts"))
        .collect();
    let mc = Memcached::start().expect("memcached starts");
    let (redis, redis_port) = redis_pool("alpha", &servers);
    let cache_port = free_port().expect("free port");
    let cache = PoolConfig::memcache("beta", cache_port).server(mc.addr(), 1, Some("m1"));
    let yaml = format!("{}{}", redis.render(), cache.render());
    let proxy = start_with(&ncproxy_bin(), &yaml, &["--io", "uring", "--workers", "1"]);
    let mut conn = RawConn::connect(("127.0.0.1", redis_port)).expect("connect");

    assert_eq!(cmd(&mut conn, &[b"SET", b"k1", b"v1"]), b"+OK\r\n");
    assert_eq!(cmd(&mut conn, &[b"GET", b"k1"]), b"$2\r\nv1\r\n");
    // A multi-key request split across both servers, coalesced in order.
    for i in 0..20 {
        let key = format!("key{i}");
        assert_eq!(
            cmd(&mut conn, &[b"SET", key.as_bytes(), key.as_bytes()]),
            b"+OK\r\n"
        );
    }
    let keys: Vec<String> = (0..20).map(|i| format!("key{i}")).collect();
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(keys.iter().map(|k| k.as_bytes()));
    let mut expected = b"*20\r\n".to_vec();
    for key in &keys {
        expected.extend(format!("${}\r\n{key}\r\n", key.len()).as_bytes());
    }
    assert_eq!(cmd(&mut conn, &mget), expected);

    // A pipeline far larger than one receive (16 KiB), answered in order.
    let mut pipeline: Vec<u8> = Vec::new();
    let mut want: Vec<u8> = Vec::new();
    for i in 0..3000 {
        let value = format!("value-{i:06}");
        pipeline.extend(resp_cmd(&[
            b"SET",
            format!("p{i}").as_bytes(),
            value.as_bytes(),
        ]));
        pipeline.extend(resp_cmd(&[b"GET", format!("p{i}").as_bytes()]));
        want.extend(b"+OK\r\n");
        want.extend(format!("${}\r\n{value}\r\n", value.len()).as_bytes());
    }
    conn.send(&pipeline).expect("send pipeline");
    let got = conn
        .read_exact_bytes(want.len(), WAIT)
        .expect("pipeline replies");
    assert!(got == want, "pipelined replies differ or are out of order");

    // A reply much larger than the socket buffers: sent in several parts.
    let big = vec![b'x'; 4 << 20];
    assert_eq!(cmd(&mut conn, &[b"SET", b"big", &big]), b"+OK\r\n");
    let reply = cmd(&mut conn, &[b"GET", b"big"]);
    assert_eq!(reply.len(), big.len() + 12, "$4194304\\r\\n...\\r\\n");
    assert!(reply.starts_with(b"$4194304\r\n") && reply[10..10 + big.len()] == big[..]);

    // A malformed request closes the connection, as on the epoll path.
    conn.send(b"*1\r\n$4\r\nGETT\r\n").expect("send");
    let rest = conn.read_until_eof_or_idle(Duration::from_millis(500), WAIT);
    assert!(conn.saw_close(), "closed after a bad request, got {rest:?}");

    // memcached through the same ring.
    let mut mconn = RawConn::connect(("127.0.0.1", cache_port)).expect("connect");
    mconn.send(&memcache::set(b"mk", b"hello")).expect("send");
    assert_eq!(mconn.read_line(WAIT).expect("reply"), b"STORED\r\n");
    mconn.send(&memcache::get(&[b"mk"])).expect("send");
    let want = memcache::value_reply(b"mk", 0, Some(b"hello"));
    assert_eq!(
        mconn.read_exact_bytes(want.len(), WAIT).expect("reply"),
        want
    );

    let s = stats(&proxy);
    let (submits, sqes, cqes) = (
        top(&s, "uring_submits").expect("uring_submits in the stats"),
        top(&s, "uring_sqes").expect("uring_sqes"),
        top(&s, "uring_cqes").expect("uring_cqes"),
    );
    // An enter may submit nothing: it runs the ring's completions when the
    // task-run flag says they wait for one.
    assert!(submits > 0 && sqes > 0 && cqes > 0, "{s}");
    // Replies went out as SQEs, not as send syscalls; the counters of the
    // reply path (buffers, bytes) still count them.
    assert_eq!(s["alpha"]["client_send_syscalls"].as_u64(), Some(0), "{s}");
    assert!(s["alpha"]["client_send_bytes"].as_u64().unwrap_or(0) > big.len() as u64);
    assert!(s["beta"]["client_send_iovecs"].as_u64().unwrap_or(0) >= 2);
    assert!(!proxy.log().contains("falling back"), "{}", proxy.log());
}

/// Runs `clients` connections, each making `rounds` SET+GET pairs one at a
/// time (pipeline 1), checking every reply.
fn p1_load(port: u16, clients: usize, rounds: usize) {
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            std::thread::spawn(move || {
                let mut conn = RawConn::connect(("127.0.0.1", port)).expect("connect");
                for r in 0..rounds {
                    let key = format!("c{c}:{}", r % 16);
                    let value = format!("v{r}");
                    assert_eq!(
                        cmd(&mut conn, &[b"SET", key.as_bytes(), value.as_bytes()]),
                        b"+OK\r\n"
                    );
                    let want = format!("${}\r\n{value}\r\n", value.len());
                    assert_eq!(cmd(&mut conn, &[b"GET", key.as_bytes()]), want.as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

/// Send syscalls and submits per request the proxy counted during a P1 run.
fn syscalls_per_request(io: &str, servers: &[RedisServer]) -> (f64, serde_json::Value) {
    let (pool, port) = redis_pool("alpha", servers);
    let proxy = start_with(
        &ncproxy_bin(),
        &pool.render(),
        &["--io", io, "--workers", "1"],
    );
    let before = stats(&proxy);
    let (clients, rounds) = (50, 100);
    p1_load(port, clients, rounds);
    let after = stats(&proxy);
    let delta = |f: &dyn Fn(&serde_json::Value) -> u64| f(&after) - f(&before);
    let requests = delta(&|s| server_sum(s, "alpha", "requests"));
    assert_eq!(requests, (clients * rounds * 2) as u64);
    let syscalls = delta(&|s| top(s, "uring_submits").unwrap_or(0))
        + delta(&|s| s["alpha"]["client_send_syscalls"].as_u64().unwrap_or(0))
        + delta(&|s| server_sum(s, "alpha", "send_syscalls"));
    (syscalls as f64 / requests as f64, after)
}

#[test]
fn uring_p1_with_50_clients_costs_well_under_one_syscall_per_request() {
    let servers: Vec<RedisServer> = (0..2)
        .map(|_| RedisServer::start().expect("redis-server starts"))
        .collect();
    let (epoll, epoll_stats) = syscalls_per_request("epoll", &servers);
    let (uring, uring_stats) = syscalls_per_request("uring", &servers);
    eprintln!(
        "send syscalls + submits per request at P1, 50 clients: epoll {epoll:.3}, uring {uring:.3}"
    );
    assert!(
        top(&epoll_stats, "uring_submits").is_none(),
        "epoll stats stay nutcracker's layout: {epoll_stats}"
    );
    // Every reply is its own write on the epoll path.
    assert!(epoll >= 1.0, "epoll: {epoll:.3} per request");
    assert!(uring < 1.0, "uring: {uring:.3} per request: {uring_stats}");
    assert!(uring < epoll / 2.0, "uring {uring:.3} vs epoll {epoll:.3}");
}

#[test]
fn refused_io_uring_falls_back_to_epoll_with_a_log_line() {
    let servers = [RedisServer::start().expect("redis-server starts")];
    let (pool, port) = redis_pool("alpha", &servers);
    // The refusal comes from the proxy's environment; a wrapper sets it for
    // this proxy alone (a set_var would reach the other tests' proxies).
    let dir = tempfile::tempdir().expect("temp dir");
    let wrapper = dir.path().join("ncproxy-refused");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nNCPROXY_TEST_URING_REFUSE=1 exec '{}' \"$@\"\n",
            ncproxy_bin().display()
        ),
    )
    .expect("write wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let proxy = start_with(
        &wrapper,
        &pool.render(),
        &["--io", "uring", "--workers", "2"],
    );
    let mut conn = RawConn::connect(("127.0.0.1", port)).expect("connect");
    assert_eq!(cmd(&mut conn, &[b"SET", b"k", b"v"]), b"+OK\r\n");
    assert_eq!(cmd(&mut conn, &[b"GET", b"k"]), b"$1\r\nv\r\n");
    let log = proxy.log();
    let line =
        "io_uring unavailable (refused by NCPROXY_TEST_URING_REFUSE=1), falling back to epoll";
    assert_eq!(log.matches(line).count(), 1, "one fallback line: {log}");
    let s = stats(&proxy);
    assert!(top(&s, "uring_submits").is_none(), "{s}");
    // Replies are write syscalls again (the second may not be counted yet).
    assert!(
        s["alpha"]["client_send_syscalls"].as_u64().unwrap_or(0) >= 1,
        "{s}"
    );
}
