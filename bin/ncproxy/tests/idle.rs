//! Idle clients parked without a task (`conn::idle`), against real
//! redis-servers: many idle clients park (at once when their worker is
//! crowded, else after an idle sweep), then all send requests and get the
//! right replies in order; parked clients closed by their peer (FIN or RST)
//! are cleaned up with the stats right; a parked client keeps its AUTH; a
//! client with a request in flight is never parked; unix-socket clients
//! park too; a drain closes parked clients. Every wait is bounded.

use std::net::TcpStream;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use nc_harness::{free_port, resp_cmd, Ncproxy, PoolConfig, ProxyProcess, RawConn, RedisServer};

#[path = "support/polling.rs"]
mod polling;
use polling::{eventually, stat, top_stat};

const WAIT: Duration = Duration::from_secs(5);
/// Two idle sweeps and some slack: a client inactive this long is parked.
const SWEPT: Duration = Duration::from_secs(4);
const SIGTERM: i32 = 15;

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
}

/// Parking is the epoll path's (a client on the `--io uring` ring keeps its
/// receive armed instead), so these tests choose epoll in every CI pass.
fn start(yaml: &str, args: &[&str]) -> ProxyProcess {
    let args: Vec<&str> = args.iter().copied().chain(["--io=epoll"]).collect();
    Ncproxy::start(&ncproxy_bin(), yaml, &args).expect("ncproxy starts")
}

fn top(proxy: &ProxyProcess, field: &str) -> u64 {
    top_stat(&proxy.stats_json().expect("stats"), field)
}

fn clients(proxy: &ProxyProcess) -> u64 {
    stat(
        &proxy.stats_json().expect("stats"),
        "alpha",
        None,
        "client_connections",
    )
}

/// `client_eof` and `client_err` once the harness's readiness probe (a
/// connect and close) is counted.
fn closed_so_far(proxy: &ProxyProcess) -> (u64, u64) {
    // The probe connected and closed before start returned; give the proxy
    // time to accept and count it.
    thread::sleep(Duration::from_millis(300));
    assert!(eventually(WAIT, || clients(proxy) == 0));
    let json = proxy.stats_json().expect("stats");
    (
        stat(&json, "alpha", None, "client_eof"),
        stat(&json, "alpha", None, "client_err"),
    )
}

fn cmd(conn: &mut RawConn, args: &[&[u8]]) -> Vec<u8> {
    conn.send(&resp_cmd(args)).expect("send");
    conn.read_exact_reply_bytes(WAIT).expect("reply")
}

fn bulk(value: &str) -> Vec<u8> {
    format!("${}\r\n{value}\r\n", value.len()).into_bytes()
}

#[test]
fn many_idle_clients_park_then_all_get_their_replies_in_order() {
    let servers = backends();
    let proxy = start(&pool(&servers).render(), &["--workers", "2"]);
    let (eof0, _) = closed_so_far(&proxy);
    const N: usize = 200;
    let mut conns: Vec<RawConn> = (0..N).map(|_| proxy.connect().expect("connect")).collect();
    // Past 32 client tasks a worker parks new clients that send nothing at
    // once; the rest park after an idle sweep.
    assert!(
        eventually(SWEPT, || top(&proxy, "clients_parked") == N as u64),
        "parked: {} of {N}",
        top(&proxy, "clients_parked")
    );
    assert_eq!(
        clients(&proxy),
        N as u64,
        "parked clients are still clients"
    );
    // Every client sends a pipeline of its own; replies come back in order.
    for (c, conn) in conns.iter_mut().enumerate() {
        let mut batch = Vec::new();
        for i in 0..5 {
            let key = format!("idle:{c}:{i}");
            batch.extend(resp_cmd(&[
                b"SET",
                key.as_bytes(),
                format!("{c}-{i}").as_bytes(),
            ]));
            batch.extend(resp_cmd(&[b"GET", key.as_bytes()]));
        }
        batch.extend(resp_cmd(&[b"INCR", format!("idle:n:{c}").as_bytes()]));
        conn.send(&batch).unwrap();
    }
    for (c, conn) in conns.iter_mut().enumerate() {
        let replies = conn.read_replies(11, WAIT).expect("replies");
        for i in 0..5 {
            assert_eq!(replies[2 * i], b"+OK\r\n", "client {c}");
            assert_eq!(replies[2 * i + 1], bulk(&format!("{c}-{i}")), "client {c}");
        }
        assert_eq!(replies[10], b":1\r\n", "client {c}");
    }
    let json = proxy.stats_json().unwrap();
    assert!(top_stat(&json, "client_resumes") >= N as u64, "{json}");
    assert!(top_stat(&json, "clients_parked") < N as u64, "{json}");
    // Idle again: parked again, and still served.
    assert!(eventually(SWEPT, || top(&proxy, "clients_parked") == N as u64));
    assert_eq!(cmd(&mut conns[7], &[b"GET", b"idle:7:4"]), bulk("7-4"));
    drop(conns);
    assert!(
        eventually(WAIT, || clients(&proxy) == 0
            && top(&proxy, "clients_parked") == 0),
        "clients {} parked {} after all closed",
        clients(&proxy),
        top(&proxy, "clients_parked")
    );
    let json = proxy.stats_json().unwrap();
    assert_eq!(
        stat(&json, "alpha", None, "client_eof") - eof0,
        N as u64,
        "{json}"
    );
}

#[test]
fn parked_clients_closed_by_their_peer_are_cleaned_up() {
    let servers = backends();
    let proxy = start(&pool(&servers).render(), &["--workers", "1"]);
    let (eof0, err0) = closed_so_far(&proxy);
    let addr = proxy.addr();
    let mut fins: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut resets: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let mut kept: Vec<RawConn> = (0..10).map(|_| proxy.connect().unwrap()).collect();
    assert!(eventually(SWEPT, || top(&proxy, "clients_parked") == 50));
    for s in resets.drain(..) {
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s); // RST
    }
    fins.clear(); // FIN
    assert!(
        eventually(WAIT, || clients(&proxy) == 10
            && top(&proxy, "clients_parked") == 10),
        "clients {} parked {}",
        clients(&proxy),
        top(&proxy, "clients_parked")
    );
    let json = proxy.stats_json().unwrap();
    let eof = stat(&json, "alpha", None, "client_eof") - eof0;
    let err = stat(&json, "alpha", None, "client_err") - err0;
    assert_eq!(
        (eof, err),
        (20, 20),
        "FINs end as client_eof, RSTs as client_err: {json}"
    );
    for (i, conn) in kept.iter_mut().enumerate() {
        let key = format!("kept:{i}");
        assert_eq!(cmd(conn, &[b"SET", key.as_bytes(), b"x"]), b"+OK\r\n");
    }
}

#[test]
fn a_parked_client_keeps_its_auth() {
    let servers = [
        RedisServer::start_with(&["--requirepass", "sekrit"]).unwrap(),
        RedisServer::start_with(&["--requirepass", "sekrit"]).unwrap(),
    ];
    let yaml = pool(&servers).redis_auth("sekrit").render();
    let proxy = start(&yaml, &["--workers", "1"]);
    let mut authed = proxy.connect().unwrap();
    let mut other = proxy.connect().unwrap();
    assert_eq!(cmd(&mut authed, &[b"AUTH", b"sekrit"]), b"+OK\r\n");
    assert_eq!(cmd(&mut authed, &[b"SET", b"auth:k", b"v"]), b"+OK\r\n");
    let parks = top(&proxy, "client_parks");
    assert!(eventually(SWEPT, || top(&proxy, "clients_parked") == 2));
    assert!(top(&proxy, "client_parks") >= parks + 2);
    assert_eq!(cmd(&mut authed, &[b"GET", b"auth:k"]), bulk("v"));
    let refused = cmd(&mut other, &[b"GET", b"auth:k"]);
    assert!(
        refused.starts_with(b"-NOAUTH"),
        "{:?}",
        String::from_utf8_lossy(&refused)
    );
}

#[test]
fn a_client_with_a_request_in_flight_is_not_parked() {
    let mut servers = backends();
    let yaml = pool(&servers).timeout(20_000).render();
    let proxy = start(&yaml, &["--workers", "1"]);
    let mut idle = proxy.connect().unwrap();
    assert_eq!(cmd(&mut idle, &[b"PING"]), b"+PONG\r\n");
    let mut busy = proxy.connect().unwrap();
    // Keys on both servers, so one GET surely waits for a stopped backend.
    for s in &mut servers {
        s.pause().unwrap();
    }
    busy.send(&resp_cmd(&[b"GET", b"flight:k"])).unwrap();
    assert!(eventually(SWEPT, || top(&proxy, "clients_parked") == 1));
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        top(&proxy, "clients_parked"),
        1,
        "only the idle client parks"
    );
    for s in &mut servers {
        s.resume().unwrap();
    }
    assert_eq!(busy.read_exact_reply_bytes(WAIT).unwrap(), b"$-1\r\n");
    assert_eq!(cmd(&mut idle, &[b"PING"]), b"+PONG\r\n");
}

#[test]
fn unix_socket_clients_park_and_resume() {
    let servers = backends();
    let yaml = pool(&servers).listen("{dir}/ncproxy.sock 0600").render();
    let proxy = start(&yaml, &["--workers", "1"]);
    let listen = proxy.listens()[0].clone();
    let mut conns: Vec<RawConn> = (0..5)
        .map(|_| RawConn::connect_listen(&listen).unwrap())
        .collect();
    assert!(eventually(SWEPT, || top(&proxy, "clients_parked") == 5));
    for (i, conn) in conns.iter_mut().enumerate() {
        let key = format!("unix:{i}");
        assert_eq!(cmd(conn, &[b"SET", key.as_bytes(), b"1"]), b"+OK\r\n");
        assert_eq!(cmd(conn, &[b"INCR", key.as_bytes()]), b":2\r\n");
    }
}

#[test]
fn a_drain_closes_parked_clients() {
    let servers = backends();
    let mut proxy = start(&pool(&servers).render(), &["--workers", "2"]);
    let mut conns: Vec<RawConn> = (0..100).map(|_| proxy.connect().unwrap()).collect();
    assert!(eventually(SWEPT, || top(&proxy, "clients_parked") == 100));
    let started = Instant::now();
    proxy.signal(SIGTERM).unwrap();
    let status = proxy.wait_exit(WAIT).expect("ncproxy exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    for conn in &mut conns {
        assert!(
            eventually(WAIT, || conn.is_closed()),
            "a parked client stayed open"
        );
    }
}
