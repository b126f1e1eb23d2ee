//! TLS on both sides with real processes: redis-server with `--tls-port` and
//! certificates made at test time (nc_harness::TestPki, rcgen), redis-cli
//! `--tls` and the `redis` crate (rustls) as real clients through ncproxy,
//! a plain pool beside the TLS one, batching across TLS (send counters),
//! refusals with a clear log line (plain client on a TLS listener, wrong
//! CA, expired certificate, missing client certificate), and certificates
//! re-read on SIGUSR1 without dropping an established TLS client.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nc_harness::{
    free_port, resp_cmd, Ncproxy, PoolConfig, ProxyProcess, RawConn, RedisServer, TestPki, TlsConn,
};

#[path = "support/polling.rs"]
mod polling;
use polling::{eventually, stat};

const WAIT: Duration = Duration::from_secs(5);
const SIGUSR1: i32 = 10;

fn ncproxy_bin() -> PathBuf {
    nc_harness::ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"))
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A pool whose listener speaks TLS with `pki`'s server certificate.
fn tls_listener(pool: PoolConfig, pki: &TestPki) -> PoolConfig {
    pool.extra("tls_cert", &path(&pki.cert))
        .extra("tls_key", &path(&pki.key))
}

/// `pool` reaching its servers over TLS, trusting `ca`.
fn tls_backends(pool: PoolConfig, ca: &std::path::Path) -> PoolConfig {
    pool.extra("server_tls", "true")
        .extra("server_tls_ca", &path(ca))
}

fn start(yaml: &str) -> ProxyProcess {
    Ncproxy::start(&ncproxy_bin(), yaml, &[]).expect("ncproxy starts")
}

fn tls_client(proxy_port: u16, pki: &TestPki, client_cert: bool) -> std::io::Result<TlsConn> {
    TlsConn::connect(
        ([127, 0, 0, 1], proxy_port).into(),
        pki.client_config(client_cert).unwrap(),
        "localhost",
    )
}

fn redis_cli(port: u16, pki: &TestPki, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", &path(&pki.ca), "-h", "127.0.0.1"])
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli runs (apt-get install redis-tools)");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn tls_both_sides_beside_a_plain_pool_with_real_clients() {
    let pki = TestPki::generate().unwrap();
    let backend = RedisServer::start_tls(&pki, false, &[]).unwrap();
    let tls_port = free_port().unwrap();
    let plain_port = free_port().unwrap();
    let secure = tls_backends(
        tls_listener(PoolConfig::redis("secure", tls_port), &pki),
        &pki.ca,
    )
    .server(backend.tls_addr().unwrap(), 1, Some("s1"));
    let per_message = free_port().unwrap();
    let secure_pm = tls_backends(
        tls_listener(PoolConfig::redis("secure_pm", per_message), &pki),
        &pki.ca,
    )
    .extra("send_mode", "per_message")
    .server(backend.tls_addr().unwrap(), 1, Some("s1"));
    let plain = PoolConfig::redis("plain", plain_port).server(backend.addr(), 1, Some("s1"));
    let proxy = start(&format!(
        "{}{}{}",
        secure.render(),
        secure_pm.render(),
        plain.render()
    ));

    // redis-cli --tls through ncproxy; the plain pool reads the same key.
    assert_eq!(
        redis_cli(tls_port, &pki, &["SET", "tls:k", "v1"]).trim(),
        "OK"
    );
    assert_eq!(redis_cli(tls_port, &pki, &["GET", "tls:k"]).trim(), "v1");
    let mut raw = RawConn::connect(("127.0.0.1", plain_port)).unwrap();
    raw.send(&resp_cmd(&[b"GET", b"tls:k"])).unwrap();
    assert_eq!(raw.read_exact_reply_bytes(WAIT).unwrap(), b"$2\r\nv1\r\n");

    // The redis crate (rustls) as a client library.
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{tls_port}/"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&pki.ca).unwrap()),
        },
    )
    .unwrap();
    let mut con = client.get_connection().unwrap();
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.set(format!("lib:{i}"), i).ignore();
    }
    pipe.query::<()>(&mut con).unwrap();
    let keys: Vec<String> = (0..100).map(|i| format!("lib:{i}")).collect();
    let values: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut con).unwrap();
    assert_eq!(values, (0..100).collect::<Vec<i64>>());
    assert_eq!(
        backend.cmd(&[b"GET", b"lib:42"]).unwrap(),
        b"$2\r\n42\r\n",
        "the key is on the backend"
    );

    // Batching across TLS: 64 pipelined requests in one write go to the
    // server in far fewer TLS flushes; per_message flushes once per request.
    let pipeline: Vec<u8> = (0..64)
        .flat_map(|i| resp_cmd(&[b"SET", format!("p:{i}").as_bytes(), b"x"]))
        .collect();
    for port in [tls_port, per_message] {
        let mut conn = tls_client(port, &pki, false).unwrap();
        conn.send(&pipeline).unwrap();
        let replies = conn.read_replies(64, WAIT).unwrap();
        assert_eq!(replies, b"+OK\r\n".repeat(64));
    }
    // A 2 MiB value both ways: records over many short writes and reads.
    let big: Vec<u8> = (0..2 << 20).map(|i| (i % 251) as u8).collect();
    let mut conn = tls_client(tls_port, &pki, false).unwrap();
    assert_eq!(conn.cmd(&[b"SET", b"big", &big]).unwrap(), b"+OK\r\n");
    let got = conn.cmd(&[b"GET", b"big"]).unwrap();
    assert_eq!(&got[got.len() - big.len() - 2..got.len() - 2], &big[..]);

    let json = proxy.stats_json().unwrap();
    let flushes = |pool| stat(&json, pool, Some("s1"), "send_tls_flushes");
    let requests = |pool| stat(&json, pool, Some("s1"), "requests");
    assert_eq!(requests("secure_pm"), 64, "{json}");
    assert_eq!(flushes("secure_pm"), 64, "one flush per message: {json}");
    assert!(
        flushes("secure") * 4 <= requests("secure"),
        "batched: {} flushes for {} requests: {json}",
        flushes("secure"),
        requests("secure")
    );
    assert!(stat(&json, "secure", Some("s1"), "send_tls_plain_bytes") > 0);
    assert!(stat(&json, "secure", None, "client_send_tls_flushes") > 0);
    assert_eq!(stat(&json, "plain", Some("s1"), "send_tls_flushes"), 0);
}

#[test]
fn plain_client_on_a_tls_listener_is_refused_with_a_log_line() {
    let pki = TestPki::generate().unwrap();
    let backend = RedisServer::start().unwrap();
    let port = free_port().unwrap();
    let pool =
        tls_listener(PoolConfig::redis("secure", port), &pki).server(backend.addr(), 1, Some("s1"));
    let proxy = start(&pool.render());
    let mut raw = RawConn::connect(("127.0.0.1", port)).unwrap();
    raw.send(&resp_cmd(&[b"PING"])).unwrap();
    assert!(
        raw.read_exact_reply_bytes(Duration::from_secs(2)).is_err(),
        "a plaintext client gets no reply"
    );
    assert!(
        eventually(WAIT, || proxy
            .log()
            .contains("(a plaintext client on a TLS listener?)")),
        "{}",
        proxy.log()
    );
    assert!(proxy.log().contains("TLS handshake with client 127.0.0.1:"));
    // A TLS client on the same listener is served.
    let mut conn = tls_client(port, &pki, false).unwrap();
    assert_eq!(conn.cmd(&[b"PING"]).unwrap(), b"+PONG\r\n");
}

#[test]
fn wrong_ca_and_expired_certificates_are_refused_with_a_log_line() {
    let pki = TestPki::generate().unwrap();
    let stranger = TestPki::generate().unwrap();
    let expired = TestPki::expired().unwrap();
    let good = RedisServer::start_tls(&pki, false, &[]).unwrap();
    let old = RedisServer::start_tls(&expired, false, &[]).unwrap();
    let (p1, p2, p3) = (
        free_port().unwrap(),
        free_port().unwrap(),
        free_port().unwrap(),
    );
    // Trusts the wrong CA for the good server.
    let wrong_ca = tls_backends(PoolConfig::redis("wrong_ca", p1), &stranger.ca).server(
        good.tls_addr().unwrap(),
        1,
        Some("s1"),
    );
    // Trusts the right CA, but the server's certificate has expired.
    let stale = tls_backends(PoolConfig::redis("stale", p2), &expired.ca).server(
        old.tls_addr().unwrap(),
        1,
        Some("s1"),
    );
    // Clients must present a certificate signed by pki's CA.
    let mutual = tls_listener(PoolConfig::redis("mutual", p3), &pki)
        .extra("tls_client_ca", &path(&pki.ca))
        .server(good.addr(), 1, Some("s1"));
    let proxy = start(&format!(
        "{}{}{}",
        wrong_ca.render(),
        stale.render(),
        mutual.render()
    ));

    for (port, pool) in [(p1, "wrong_ca"), (p2, "stale")] {
        let mut raw = RawConn::connect(("127.0.0.1", port)).unwrap();
        raw.send(&resp_cmd(&[b"GET", b"k"])).unwrap();
        assert_eq!(
            raw.read_exact_reply_bytes(WAIT).unwrap(),
            b"-ERR Protocol error\r\n",
            "{pool}"
        );
    }
    let log = proxy.log();
    assert!(
        log.contains("TLS handshake with server 's1' in pool 'wrong_ca' failed: invalid peer certificate: UnknownIssuer"),
        "{log}"
    );
    assert!(
        log.contains("TLS handshake with server 's1' in pool 'stale' failed: invalid peer certificate: certificate expired"),
        "{log}"
    );

    // Client certificates: required, and verified against tls_client_ca.
    let mut with_cert = tls_client(p3, &pki, true).unwrap();
    assert_eq!(with_cert.cmd(&[b"PING"]).unwrap(), b"+PONG\r\n");
    let refused = tls_client(p3, &pki, false).and_then(|mut c| c.cmd(&[b"PING"]));
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let foreign = tls_client(p3, &stranger, true);
    assert!(foreign.is_err(), "a client trusting another CA fails");
    assert!(
        eventually(WAIT, || proxy
            .log()
            .contains("on pool 'mutual' failed: peer sent no certificates")),
        "{}",
        proxy.log()
    );
}

#[test]
fn sigusr1_rereads_certificates_and_keeps_established_tls_clients() {
    let first = TestPki::generate().unwrap();
    let second = TestPki::generate().unwrap();
    let backend = RedisServer::start().unwrap();
    let port = free_port().unwrap();
    // The listener's files are copies that the test replaces.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let pool = PoolConfig::redis("secure", port)
        .extra("tls_cert", &path(&cert))
        .extra("tls_key", &path(&key))
        .server(backend.addr(), 1, Some("s1"));
    let mut proxy = start(&pool.render());
    let mut established = tls_client(port, &first, false).unwrap();
    assert_eq!(established.cmd(&[b"SET", b"r", b"1"]).unwrap(), b"+OK\r\n");

    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    proxy.signal(SIGUSR1).unwrap();
    assert!(
        eventually(WAIT, || proxy.log().contains("unchanged [\"secure\"]")),
        "{}",
        proxy.log()
    );
    // New clients get the new certificate; the old connection goes on.
    let mut renewed = tls_client(port, &second, false).unwrap();
    assert_eq!(renewed.cmd(&[b"GET", b"r"]).unwrap(), b"$1\r\n1\r\n");
    assert!(
        tls_client(port, &first, false).is_err(),
        "old CA no longer matches"
    );
    assert_eq!(established.cmd(&[b"GET", b"r"]).unwrap(), b"$1\r\n1\r\n");

    // A broken key file is rejected and the running certificates stay.
    std::fs::write(&key, "not a key").unwrap();
    proxy.signal(SIGUSR1).unwrap();
    assert!(
        eventually(WAIT, || proxy.log().contains(
            "reload rejected, keeping the running configuration: tls_key"
        )),
        "{}",
        proxy.log()
    );
    let mut still = tls_client(port, &second, false).unwrap();
    assert_eq!(still.cmd(&[b"PING"]).unwrap(), b"+PONG\r\n");
    assert_eq!(established.cmd(&[b"PING"]).unwrap(), b"+PONG\r\n");
}

#[test]
fn unreadable_tls_files_stop_the_start_with_a_message() {
    let port = free_port().unwrap();
    let yaml = PoolConfig::redis("secure", port)
        .extra("tls_cert", "/nonexistent/cert.pem")
        .extra("tls_key", "/nonexistent/key.pem")
        .server("127.0.0.1:6379", 1, None)
        .render();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.yml");
    std::fs::write(&conf, yaml).unwrap();
    let out = Command::new(ncproxy_bin())
        .arg("-c")
        .arg(&conf)
        .args(["-s", &free_port().unwrap().to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(
            "tls_cert '/nonexistent/cert.pem' of pool 'secure': No such file or directory"
        ),
        "{text}"
    );
}
