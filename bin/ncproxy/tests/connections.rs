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

/// A loopback listener that never accepts, its accept queue filled so that
/// further SYNs are dropped: a connect to it hangs, as to a dead host.
fn black_hole() -> (socket2::Socket, u16, Vec<std::net::TcpStream>) {
    use socket2::{Domain, Socket, Type};
    let port = free_port().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut queued = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => queued.push(s),
            Err(_) => return (socket, port, queued),
        }
    }
    panic!("the accept queue of a listen(0) socket never filled");
}

#[test]
fn timeout_covers_a_connect_that_hangs() {
    let (_hole, port, _queued) = black_hole();
    let pool = |name: &str| {
        PoolConfig::redis(name, free_port().unwrap())
            .server(format!("127.0.0.1:{port}"), 1, Some("s1"))
            .timeout(300)
    };
    let nutcracker =
        nc_harness::Nutcracker::start(&pool("alpha").render()).expect("nutcracker starts");
    let ncproxy = start(&pool("alpha").render());
    for proxy in [&nutcracker, &ncproxy] {
        let mut conn = proxy.connect().unwrap();
        let started = Instant::now();
        let reply = cmd(&mut conn, &[b"GET", b"hole:k"]);
        let took = started.elapsed();
        assert_eq!(
            reply,
            b"-ERR Connection timed out\r\n",
            "{:?}: {}",
            proxy.kind(),
            String::from_utf8_lossy(&reply)
        );
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(3),
            "{:?} took {took:?}",
            proxy.kind()
        );
    }
    assert!(eventually(|| ncproxy
        .stats_json()
        .is_ok_and(|j| j.contains("\"server_timedout\":1"))));
}
