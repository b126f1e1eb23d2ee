//! Request headers where ncproxy deliberately differs from nutcracker (README,
//! "Differences from nutcracker"): lengths over the limits, lengths that
//! nutcracker's 32-bit counters wrap, and an empty length in a key position.
//! nutcracker forwards or buffers these (observed on Debian's 0.5.0: Redis
//! then answers a protocol error and drops that server connection); ncproxy
//! closes the client at the header, sends nothing to the backend, and keeps
//! the server connection other clients share. Real redis-server backend.

use std::time::{Duration, Instant};

use nc_harness::{free_port, resp_cmd, Ncproxy, PoolConfig, ProxyProcess, RawConn, RedisServer};

const WAIT: Duration = Duration::from_secs(5);

fn start(backend: &RedisServer) -> ProxyProcess {
    let yaml = PoolConfig::redis("limits", free_port().expect("free port"))
        .server(backend.addr(), 1, Some("s1"))
        .render();
    let bin = nc_harness::ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"));
    Ncproxy::start(&bin, &yaml, &["--workers", "1"]).expect("ncproxy starts")
}

fn cmd(conn: &mut RawConn, args: &[&[u8]]) -> Vec<u8> {
    conn.send(&resp_cmd(args)).expect("send");
    conn.read_exact_reply_bytes(WAIT).expect("reply")
}

/// The id Redis gives the proxy's server connection (the one client that is
/// not asking).
fn proxy_connection_id(backend: &RedisServer) -> String {
    let list = backend.cmd(&[b"CLIENT", b"LIST"]).expect("CLIENT LIST");
    let list = String::from_utf8_lossy(&list).into_owned();
    let ids: Vec<&str> = list
        .lines()
        .filter(|l| !l.contains("cmd=client"))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .collect();
    assert_eq!(ids.len(), 1, "one proxy connection expected:\n{list}");
    ids[0].to_string()
}

/// Sends `header` (never its payload) and expects the connection closed with
/// no reply, well before any payload could have been awaited.
fn closes_at_header(proxy: &ProxyProcess, name: &str, header: &[u8]) {
    let mut conn = proxy.connect().expect("connect");
    conn.send(header).expect("send");
    let start = Instant::now();
    let got = conn.read_until_eof_or_idle(WAIT, WAIT);
    assert!(
        conn.saw_close(),
        "{name}: connection left open after {:?}",
        start.elapsed()
    );
    assert!(got.is_empty(), "{name}: unexpected reply {got:?}");
}

#[test]
fn oversized_and_wrapped_lengths_close_at_the_header() {
    let backend = RedisServer::start().expect("redis-server starts");
    let proxy = start(&backend);
    let mut conn = proxy.connect().expect("connect");
    assert_eq!(cmd(&mut conn, &[b"SET", b"lim:k", b"before"]), b"+OK\r\n");
    let server_conn = proxy_connection_id(&backend);

    let cases: [(&str, &[u8]); 6] = [
        (
            "value over 512 MiB",
            b"*3\r\n$3\r\nSET\r\n$5\r\nlim:k\r\n$536870913\r\n",
        ),
        ("key over 512 MiB", b"*2\r\n$3\r\nGET\r\n$536870913\r\n"),
        ("array over 1048576 arguments", b"*1048577\r\n$3\r\nGET\r\n"),
        (
            "bulk length that wraps 32 bits to 1",
            b"*3\r\n$3\r\nSET\r\n$5\r\nlim:k\r\n$4294967297\r\nx\r\n",
        ),
        (
            "array length that wraps 32 bits to 2",
            b"*4294967298\r\n$3\r\nGET\r\n$5\r\nlim:k\r\n",
        ),
        (
            "empty length in a key position",
            b"*2\r\n$3\r\nGET\r\n$\r\n\r\n",
        ),
    ];
    for (name, header) in cases {
        closes_at_header(&proxy, name, header);
    }

    // Nothing reached the backend: the value is untouched and the proxy's
    // server connection is the same one (Redis drops a connection that sends
    // it a protocol error).
    assert_eq!(cmd(&mut conn, &[b"GET", b"lim:k"]), b"$6\r\nbefore\r\n");
    assert_eq!(proxy_connection_id(&backend), server_conn);
}

#[test]
fn an_explicit_empty_key_is_served() {
    let backend = RedisServer::start().expect("redis-server starts");
    let proxy = start(&backend);
    let mut conn = proxy.connect().expect("connect");
    // An explicit zero-length key is a key.
    assert_eq!(cmd(&mut conn, &[b"SET", b"", b"empty"]), b"+OK\r\n");
    assert_eq!(cmd(&mut conn, &[b"GET", b""]), b"$5\r\nempty\r\n");
}
