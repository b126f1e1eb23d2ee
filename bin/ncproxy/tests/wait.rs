//! `--wait adaptive` against real redis-servers: it serves like the default,
//! under load it spins and work arrives while it spins (`wait_spin_hits`),
//! its spinning stays within `--wait-cap`, and once the load stops it blocks
//! and the process uses (almost) no CPU, measured from `/proc/<pid>/stat`
//! over an idle second. Every load is bounded in requests and time.
//!
//! The wakeup cost is set with `NCPROXY_WAIT_WAKEUP_NS` (200 µs) rather
//! than measured, so that spinning is worth it by the rule on any machine:
//! the tests check what the rule does, not this machine's wakeup cost.

use std::path::PathBuf;
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use nc_harness::{free_port, resp_cmd, Ncproxy, PoolConfig, ProxyProcess, RawConn, RedisServer};

#[path = "support/polling.rs"]
mod polling;
use polling::{cpu_ticks, eventually, top_stat};

const WAIT: Duration = Duration::from_secs(5);

/// Sets the wakeup-cost override once, before any test starts a process
/// (every test calls this first, so no other thread reads the environment
/// while it is written).
fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| std::env::set_var("NCPROXY_WAIT_WAKEUP_NS", "200000"));
}

fn ncproxy_bin() -> PathBuf {
    nc_harness::ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"))
}

fn backends() -> [RedisServer; 2] {
    [
        RedisServer::start().expect("redis-server"),
        RedisServer::start().expect("redis-server"),
    ]
}

fn pool(servers: &[RedisServer]) -> PoolConfig {
    PoolConfig::redis("alpha", free_port().unwrap())
        .server(servers[0].addr(), 1, Some("s1"))
        .server(servers[1].addr(), 1, Some("s2"))
        .preconnect(true)
}

fn start(servers: &[RedisServer], args: &[&str]) -> ProxyProcess {
    Ncproxy::start(&ncproxy_bin(), &pool(servers).render(), args).expect("ncproxy starts")
}

fn stat(proxy: &ProxyProcess, field: &str) -> u64 {
    top_stat(&proxy.stats_json().expect("stats"), field)
}

/// `clients` threads, each on its own connection, doing `rounds` of SET
/// then GET of its own keys, one request at a time (pipeline 1); every reply
/// is checked. Returns how long it took.
fn closed_loop_load(proxy: &ProxyProcess, clients: usize, rounds: usize) -> Duration {
    let addr = proxy.addr();
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            thread::spawn(move || {
                let mut conn = RawConn::connect(addr).expect("connect");
                for i in 0..rounds {
                    let key = format!("wait:{c}:{}", i % 50);
                    let value = format!("v{i}");
                    conn.send(&resp_cmd(&[b"SET", key.as_bytes(), value.as_bytes()]))
                        .unwrap();
                    assert_eq!(conn.read_exact_reply_bytes(WAIT).unwrap(), b"+OK\r\n");
                    conn.send(&resp_cmd(&[b"GET", key.as_bytes()])).unwrap();
                    let want = format!("${}\r\n{value}\r\n", value.len());
                    assert_eq!(
                        conn.read_exact_reply_bytes(WAIT).unwrap(),
                        want.as_bytes(),
                        "client {c} round {i}"
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("load thread");
    }
    started.elapsed()
}

#[test]
fn adaptive_mode_serves_pipelines_and_multi_key_commands() {
    setup();
    let servers = backends();
    let proxy = start(&servers, &["--workers", "2", "--wait", "adaptive"]);
    let mut conn = proxy.connect().unwrap();
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.extend(resp_cmd(&[
            b"SET",
            format!("p:{i}").as_bytes(),
            format!("{i}").as_bytes(),
        ]));
    }
    batch.extend(resp_cmd(&[b"MGET", b"p:1", b"p:199", b"p:none"]));
    conn.send(&batch).unwrap();
    let replies = conn.read_replies(201, WAIT).unwrap();
    assert!(replies[..200].iter().all(|r| r == b"+OK\r\n"));
    assert_eq!(replies[200], b"*3\r\n$1\r\n1\r\n$3\r\n199\r\n$-1\r\n");
    closed_loop_load(&proxy, 4, 200);
    let json = proxy.stats_json().unwrap();
    assert_eq!(top_stat(&json, "wait_wakeup_ns"), 200_000, "{json}");
}

#[test]
fn under_load_it_spins_and_work_arrives_while_it_spins() {
    setup();
    let servers = backends();
    let proxy = start(
        &servers,
        &["--workers", "1", "--wait", "adaptive", "--wait-cap", "100"],
    );
    assert_eq!(stat(&proxy, "wait_spins"), 0, "no spin before any traffic");
    closed_loop_load(&proxy, 4, 1500);
    let json = proxy.stats_json().unwrap();
    let (spins, hits, parks) = (
        top_stat(&json, "wait_spins"),
        top_stat(&json, "wait_spin_hits"),
        top_stat(&json, "wait_parks"),
    );
    println!("  12,000 requests: {spins} spins, {hits} hits, {parks} parks");
    assert!(
        spins > 50,
        "a loaded worker spun only {spins} times: {json}"
    );
    // Spins also end when the CPU turns out to be shared (the test's own
    // threads and the redis-servers share it), so not every spin is a hit.
    assert!(
        hits * 4 > spins,
        "work arrived in only {hits} of {spins} spins: {json}"
    );
    assert!(top_stat(&json, "wait_gap_ns") < 200_000, "{json}");
}

#[test]
fn spinning_stays_within_its_cpu_share() {
    setup();
    let servers = backends();
    let proxy = start(
        &servers,
        &["--workers", "1", "--wait", "adaptive", "--wait-cap", "5"],
    );
    let took = closed_loop_load(&proxy, 4, 1500);
    let spun_us = stat(&proxy, "wait_spin_us");
    let took_us = took.as_micros() as u64;
    println!("  spun {spun_us} µs in {took_us} µs of load (cap 5%)");
    assert!(stat(&proxy, "wait_spins") > 0, "it never spun");
    // The share is kept over 100 ms windows; one spin may overrun by at
    // most the wakeup cost. Twice the cap, plus two windows' worth, bounds it.
    assert!(
        spun_us <= took_us / 10 + 10_000,
        "spun {spun_us} µs in {took_us} µs with a 5% cap"
    );
}

#[test]
fn when_the_load_stops_it_blocks_and_uses_no_cpu() {
    setup();
    let servers = backends();
    let proxy = start(
        &servers,
        &["--workers", "2", "--wait", "adaptive", "--wait-cap", "100"],
    );
    closed_loop_load(&proxy, 4, 1000);
    assert!(stat(&proxy, "wait_spins") > 0, "it never spun under load");
    // Give the last spins and the stats read time to end.
    thread::sleep(Duration::from_millis(100));
    let parks = stat(&proxy, "wait_parks");
    let before = cpu_ticks(proxy.pid());
    thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(proxy.pid()) - before;
    // Clock ticks are 10 ms: a spinning worker would use about 100 per second.
    println!("  idle second: {used} ticks of CPU");
    assert!(used <= 5, "an idle adaptive proxy used {used} ticks in 1 s");
    assert!(parks > 0, "it never blocked");
    // Traffic after the idle stretch is served as before.
    let mut conn = proxy.connect().unwrap();
    conn.send(&resp_cmd(&[b"GET", b"wait:0:1"])).unwrap();
    assert!(eventually(WAIT, || conn
        .read_exact_reply_bytes(WAIT)
        .is_ok()));
}
