//! Active health checks and `auto_eject_drop: false`, against real
//! redis-servers that are stopped and restarted: a failing check ejects a
//! server before any client request fails, an ejected server returns only
//! after a check succeeds (not when `server_retry_timeout` passes), checks
//! are counted in the stats; with `auto_eject_drop: false` an ejected
//! server's keys fail fast with the usual error instead of moving, where
//! nutcracker (the oracle, which always remaps) and ncproxy's default move
//! them to the other server.

use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nc_harness::{
    free_port, resp_cmd, Ncproxy, Nutcracker, PoolConfig, ProxyProcess, RawConn, RedisServer,
};

#[path = "support/polling.rs"]
mod polling;
use polling::eventually;

const WAIT: Duration = Duration::from_secs(5);

fn ncproxy_bin() -> PathBuf {
    nc_harness::ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"))
}

fn cmd(conn: &mut RawConn, args: &[&[u8]]) -> Vec<u8> {
    conn.send(&resp_cmd(args)).expect("send");
    conn.read_exact_reply_bytes(WAIT).expect("reply")
}

/// `field` of pool `pool` (server `server` when given) in the proxy's stats.
fn stat(proxy: &ProxyProcess, pool: &str, server: Option<&str>, field: &str) -> u64 {
    polling::stat(&proxy.stats_json().unwrap(), pool, server, field)
}

/// Two backends behind a pool that ejects after one failure.
fn ejecting_pool(port: u16, servers: &[RedisServer], retry_ms: u64) -> PoolConfig {
    PoolConfig::redis("alpha", port)
        .auto_eject(1, retry_ms)
        .timeout(500)
        .server(servers[0].addr(), 1, Some("s1"))
        .server(servers[1].addr(), 1, Some("s2"))
}

/// Keys (of `candidates`) that the proxy placed on `server`.
fn keys_on(proxy_port: u16, server: &RedisServer, count: usize) -> Vec<String> {
    let mut conn = RawConn::connect(("127.0.0.1", proxy_port)).unwrap();
    for i in 0..200 {
        assert_eq!(
            cmd(&mut conn, &[b"SET", format!("k{i}").as_bytes(), b"v"]),
            b"+OK\r\n"
        );
    }
    let mut keys: Vec<String> = server
        .keys(0)
        .unwrap()
        .into_iter()
        .map(|k| String::from_utf8(k).unwrap())
        .collect();
    keys.sort();
    keys.truncate(count);
    assert_eq!(keys.len(), count, "{count} keys on the server");
    keys
}

#[test]
fn a_failing_check_ejects_and_only_a_passing_check_readmits() {
    let mut servers = vec![RedisServer::start().unwrap(), RedisServer::start().unwrap()];
    let port = free_port().unwrap();
    // server_retry_timeout 100 ms: without checks s1 would be retried
    // (and fail requests again) every 100 ms.
    let pool = ejecting_pool(port, &servers, 100).extra("health_check_interval", "50");
    // Placement is found through a proxy without checks, so that the proxy
    // under test has no connection to s1 whose EOF could eject it.
    let s1_keys = {
        let probe_port = free_port().unwrap();
        let probe = ejecting_pool(probe_port, &servers, 100);
        let _probe = Ncproxy::start(&ncproxy_bin(), &probe.render(), &[]).unwrap();
        keys_on(probe_port, &servers[0], 5)
    };
    let proxy = Ncproxy::start(&ncproxy_bin(), &pool.render(), &[]).unwrap();

    servers[0].stop();
    let stopped = Instant::now();
    assert!(
        eventually(WAIT, || stat(&proxy, "alpha", None, "server_ejects") == 1),
        "a failing check ejects s1: {}",
        proxy.log()
    );
    assert_eq!(
        stat(&proxy, "alpha", Some("s1"), "server_err"),
        0,
        "no client request failed"
    );
    assert!(stat(&proxy, "alpha", Some("s1"), "health_check_failures") >= 1);
    assert!(proxy
        .log()
        .contains("server 's1' in pool 'alpha' ejected until a health check succeeds"));
    eprintln!(
        "ejected {} ms after the stop",
        stopped.elapsed().as_millis()
    );

    // Long past server_retry_timeout, s1's keys are still served by s2:
    // no request is sent to the dead server to find out.
    let mut conn = RawConn::connect(("127.0.0.1", port)).unwrap();
    for round in 0..5 {
        sleep(Duration::from_millis(100));
        for key in &s1_keys {
            assert_eq!(
                cmd(&mut conn, &[b"GET", key.as_bytes()]),
                b"$-1\r\n",
                "round {round}"
            );
        }
    }
    assert_eq!(stat(&proxy, "alpha", None, "server_readmits"), 0);

    servers[0].restart().unwrap();
    let restarted = Instant::now();
    assert!(
        eventually(WAIT, || stat(&proxy, "alpha", None, "server_readmits") == 1),
        "a passing check re-admits s1: {}",
        proxy.log()
    );
    eprintln!(
        "with health checks (50 ms): re-admitted {} ms after the restart",
        restarted.elapsed().as_millis()
    );
    assert!(proxy
        .log()
        .contains("server 's1' in pool 'alpha' re-admitted after a successful health check"));
    // s1 owns its keys again (its data is gone: no persistence).
    assert_eq!(
        cmd(&mut conn, &[b"SET", s1_keys[0].as_bytes(), b"back"]),
        b"+OK\r\n"
    );
    assert_eq!(
        servers[0].cmd(&[b"GET", s1_keys[0].as_bytes()]).unwrap(),
        b"$4\r\nback\r\n"
    );
    assert!(stat(&proxy, "alpha", Some("s2"), "health_checks") >= 10);
}

#[test]
fn without_checks_a_server_is_retried_blindly_after_the_retry_timeout() {
    let mut servers = vec![RedisServer::start().unwrap(), RedisServer::start().unwrap()];
    let port = free_port().unwrap();
    let proxy = Ncproxy::start(
        &ncproxy_bin(),
        &ejecting_pool(port, &servers, 300).render(),
        &[],
    )
    .unwrap();
    let s1_keys = keys_on(port, &servers[0], 1);
    let key = s1_keys[0].as_bytes();
    servers[0].stop();
    // The open connection's EOF ejects s1.
    assert!(eventually(WAIT, || stat(
        &proxy,
        "alpha",
        None,
        "server_ejects"
    ) >= 1));
    let mut conn = RawConn::connect(("127.0.0.1", port)).unwrap();
    sleep(Duration::from_millis(400));
    // The retry timeout passed: the dead server is back in the ring and the
    // next request for its key fails again.
    assert!(
        cmd(&mut conn, &[b"GET", key]).starts_with(b"-ERR"),
        "a blind retry fails"
    );
    assert!(stat(&proxy, "alpha", None, "server_ejects") >= 2);
    servers[0].restart().unwrap();
    let restarted = Instant::now();
    // Re-admission: the first request after the current ejection ends
    // goes to s1 again (seen by the key landing there).
    assert!(eventually(WAIT, || {
        cmd(&mut conn, &[b"SET", key, b"x"]);
        servers[0]
            .cmd(&[b"GET", key])
            .is_ok_and(|r| r == b"$1\r\nx\r\n")
    }));
    eprintln!(
        "without health checks (retry 300 ms): served again {} ms after the restart",
        restarted.elapsed().as_millis()
    );
}

#[test]
fn auto_eject_drop_false_fails_the_ejected_servers_keys_fast() {
    let mut servers = vec![RedisServer::start().unwrap(), RedisServer::start().unwrap()];
    let (keep_port, drop_port, oracle_port) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    let keep = ejecting_pool(keep_port, &servers, 30_000).extra("auto_eject_drop", "false");
    let mut dropping = ejecting_pool(drop_port, &servers, 30_000);
    dropping.name = "beta".to_string();
    let proxy = Ncproxy::start(
        &ncproxy_bin(),
        &format!("{}{}", keep.render(), dropping.render()),
        &[],
    )
    .unwrap();
    let mut oracle_pool = ejecting_pool(oracle_port, &servers, 30_000);
    oracle_pool.name = "gamma".to_string();
    let oracle = Nutcracker::start(&oracle_pool.render()).expect("nutcracker starts");
    let s1_keys = keys_on(keep_port, &servers[0], 3);
    let s2_key = keys_on(keep_port, &servers[1], 1).remove(0);
    servers[0].stop();

    // The open connection's EOF ejects s1.
    assert!(eventually(WAIT, || stat(
        &proxy,
        "alpha",
        None,
        "server_ejects"
    ) >= 1));
    let failures = |p: &ProxyProcess| stat(p, "alpha", Some("s1"), "server_err");
    let before = failures(&proxy);
    let mut keep_conn = RawConn::connect(("127.0.0.1", keep_port)).unwrap();
    // Ejected, still in the ring: its keys fail at once, without a connect.
    for key in &s1_keys {
        let started = Instant::now();
        assert_eq!(
            cmd(&mut keep_conn, &[b"GET", key.as_bytes()]),
            b"-ERR Connection refused\r\n"
        );
        assert!(started.elapsed() < Duration::from_millis(200));
    }
    assert_eq!(failures(&proxy), before, "no connect was tried");
    assert_eq!(
        cmd(&mut keep_conn, &[b"GET", s2_key.as_bytes()]),
        b"$1\r\nv\r\n",
        "other keys are served"
    );

    // ncproxy's default and nutcracker move the keys to s2 instead.
    for (port, what) in [
        (drop_port, "ncproxy default"),
        (oracle.addr().port(), "nutcracker"),
    ] {
        let mut conn = RawConn::connect(("127.0.0.1", port)).unwrap();
        assert!(
            cmd(&mut conn, &[b"GET", s1_keys[0].as_bytes()]).starts_with(b"-ERR"),
            "{what}"
        );
        for key in &s1_keys {
            assert_eq!(
                cmd(&mut conn, &[b"GET", key.as_bytes()]),
                b"$-1\r\n",
                "{what} remaps"
            );
        }
    }
}
