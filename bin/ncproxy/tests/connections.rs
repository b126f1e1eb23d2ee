//! Server connection management: `server_connections` > 1, `preconnect`, and
//! host names resolved at each (re)connect. Real redis-server backends on
//! loopback; every wait is bounded.

use std::thread::sleep;
use std::time::{Duration, Instant};

use nc_harness::{free_port, resp_cmd, Ncproxy, PoolConfig, ProxyProcess, RawConn, RedisServer};

const WAIT: Duration = Duration::from_secs(5);

fn start(yaml: &str) -> ProxyProcess {
    let bin = nc_harness::ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"));
    Ncproxy::start(&bin, yaml, &["--workers", "1"]).expect("ncproxy starts")
}

fn cmd(conn: &mut RawConn, args: &[&[u8]]) -> Vec<u8> {
    conn.send(&resp_cmd(args)).expect("send");
    conn.read_exact_reply_bytes(WAIT).expect("reply")
}

/// Connections the backend sees, not counting the one asking.
fn backend_clients(server: &RedisServer) -> usize {
    let list = server.cmd(&[b"CLIENT", b"LIST"]).expect("CLIENT LIST");
    String::from_utf8_lossy(&list)
        .lines()
        .filter(|l| l.contains("addr="))
        .count()
        - 1
}

/// `"server_connections":N` of server `name` in the stats JSON.
fn stats_server_connections(proxy: &ProxyProcess, name: &str) -> Option<u64> {
    let json = proxy.stats_json().ok()?;
    let at = json.find(&format!("\"{name}\": {{"))?;
    let rest = &json[at..];
    let field = rest.find("\"server_connections\":")? + "\"server_connections\":".len();
    rest[field..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if check() {
            return true;
        }
        sleep(Duration::from_millis(20));
    }
    check()
}

#[test]
fn server_connections_are_used_round_robin() {
    let backend = RedisServer::start().unwrap();
    let pool = PoolConfig::redis("alpha", free_port().unwrap())
        .server(backend.addr(), 1, Some("s1"))
        .server_connections(3);
    let proxy = start(&pool.render());
    assert_eq!(
        backend_clients(&backend),
        0,
        "no connection before the first request"
    );
    let mut conn = proxy.connect().unwrap();
    for i in 0..30 {
        let key = format!("rr:{i}");
        assert_eq!(cmd(&mut conn, &[b"SET", key.as_bytes(), b"v"]), b"+OK\r\n");
        assert_eq!(cmd(&mut conn, &[b"GET", key.as_bytes()]), b"$1\r\nv\r\n");
    }
    assert_eq!(
        backend_clients(&backend),
        3,
        "three server connections in use"
    );
    assert!(eventually(
        || stats_server_connections(&proxy, "s1") == Some(3)
    ));
}

#[test]
fn preconnect_connects_before_any_request() {
    let backends = [RedisServer::start().unwrap(), RedisServer::start().unwrap()];
    let mut pool = PoolConfig::redis("alpha", free_port().unwrap()).preconnect(true);
    for (i, b) in backends.iter().enumerate() {
        pool = pool.server(b.addr(), 1, Some(&format!("s{}", i + 1)));
    }
    let proxy = start(&pool.render());
    for (i, b) in backends.iter().enumerate() {
        assert!(
            eventually(|| backend_clients(b) == 1),
            "backend {i} has the preconnected connection"
        );
        assert!(eventually(|| stats_server_connections(
            &proxy,
            &format!("s{}", i + 1)
        ) == Some(1)));
    }
}

#[test]
fn host_names_are_resolved_at_each_connect() {
    let mut backend = RedisServer::start().unwrap();
    let pool = PoolConfig::redis("alpha", free_port().unwrap()).server(
        format!("localhost:{}", backend.port()),
        1,
        Some("s1"),
    );
    let proxy = start(&pool.render());
    let mut conn = proxy.connect().unwrap();
    assert_eq!(cmd(&mut conn, &[b"SET", b"dns:k", b"1"]), b"+OK\r\n");
    // The backend goes away: requests fail; it comes back on the same port: they work.
    backend.stop();
    let reply = cmd(&mut conn, &[b"GET", b"dns:k"]);
    assert!(
        reply.starts_with(b"-ERR "),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    backend.restart().unwrap();
    assert!(eventually(
        || cmd(&mut conn, &[b"SET", b"dns:k", b"2"]) == b"+OK\r\n"
    ));
    assert_eq!(cmd(&mut conn, &[b"GET", b"dns:k"]), b"$1\r\n2\r\n");
}
