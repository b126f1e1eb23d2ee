//! Reply differential with a FAKE backend: replies a real Redis never sends
//! (fault injection, so a canned-reply server stands in for redis-server).
//! nutcracker and ncproxy each sit in front of their own fake; a client asks
//! both `GET k:<n>` and the fake answers with canned bytes `n`: valid RESP2,
//! RESP3, the quirks nutcracker lets through (`$-0`, `*-`, `$-2` inside an
//! array, unchecked element lines) and seeded mutations of them. What the
//! client gets back, and whether it is closed, must match byte for byte:
//! a passed-through reply, `-ERR Invalid argument` when the proxy gives up
//! on the server, or `-ERR Connection timed out` (`timeout: 300`) when it
//! waits for bytes that never come.
//!
//! Lengths over ncproxy's limits are left out: closing at the header is a
//! documented difference (README, "Bounded request headers"). So are RESP3
//! types, the other documented difference: they are checked on their own,
//! nutcracker failing the request and ncproxy passing the reply through.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use nc_harness::{
    escape_bytes, ncproxy_bin, Fill, Ncproxy, Nutcracker, PoolConfig, ProxyProcess, RawConn,
    SplitMix64,
};

/// The FAKE backend: answers every `GET k:<n>` with `replies[n]`, on every
/// connection, until the test process ends (its threads are detached and
/// only ever block on loopback sockets).
fn canned_backend(replies: Arc<Vec<Vec<u8>>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake backend");
    let addr = listener.local_addr().expect("fake backend address");
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let replies = Arc::clone(&replies);
            thread::spawn(move || serve(conn, &replies));
        }
    });
    addr
}

fn serve(mut conn: TcpStream, replies: &[Vec<u8>]) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some((index, used)) = next_get(&buf) {
            buf.drain(..used);
            let reply = replies
                .get(index)
                .map_or(&b"+unknown\r\n"[..], Vec::as_slice);
            if conn.write_all(reply).is_err() {
                return;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `*2\r\n$3\r\nGET\r\n$L\r\nk:<n>\r\n` at the start of `buf`: `n` and the
/// bytes used. Both proxies forward the client's bytes as they are.
fn next_get(buf: &[u8]) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(buf).ok()?;
    let rest = text.strip_prefix("*2\r\n$3\r\nGET\r\n$")?;
    let (len, rest) = rest.split_once("\r\n")?;
    let len: usize = len.parse().ok()?;
    let key = rest.get(..len)?;
    rest.get(len..len + 2).filter(|&crlf| crlf == "\r\n")?;
    let index = key.strip_prefix("k:")?.parse().ok()?;
    Some((index, buf.len() - rest.len() + len + 2))
}

/// Hand-picked replies, each a class where nutcracker's parser has a rule.
fn fixed_replies() -> Vec<Vec<u8>> {
    let cases: [&[u8]; 26] = [
        b"+OK\r\n",
        b"-ERR x\r\n",
        b":12\r\n",
        b":-5\r\n",
        b":\r\n",
        b"$3\r\nabc\r\n",
        b"$-1\r\n",
        b"$-0\r\n",
        b"$-x y\r\n",
        b"*-1\r\n",
        b"*-\r\n",
        b"*0\r\n",
        b"*2\r\n$1\r\na\r\n$-1\r\n",
        b"*2\r\n$1\r\na\r\n$-2\r\nxy\r\n",
        b"*1\r\n$1-\r\n",
        b"*3\r\n:\r\n-e\r\n:x y\r\n",
        b"*2\r\n*1\r\n:1\r\n+s\r\n",
        b"+a\nb\r\n",
        b"$3\r\nbc\r\n",
        b":-5\r$",
        b"*-1\r^",
        b":1x\r\n",
        b"$\r\n",
        b"*\r\n",
        b"$3\r\nab",
        b"*2\r\n:1\r\n",
    ];
    cases.iter().map(|c| c.to_vec()).collect()
}

/// One mutation of a valid reply: a byte replaced, dropped or inserted, a
/// length rewritten, a truncation, or a second reply appended.
fn mutated(rng: &mut SplitMix64, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    let at = rng.below(b.len());
    match rng.below(6) {
        0 => b[at] = b"\r\n*$:+-0123456789 x"[rng.below(19)],
        1 => {
            b.remove(at);
        }
        2 => b.insert(at, b"\r\n*$:+-0123456789"[rng.below(17)]),
        3 => b.truncate(at.max(1)),
        4 => {
            let heads: Vec<usize> = (0..b.len())
                .filter(|&i| matches!(b[i], b'*' | b'$' | b':'))
                .collect();
            let head = match heads.len() {
                0 => return b,
                n => heads[rng.below(n)],
            };
            if let Some(cr) = b[head..].iter().position(|&c| c == b'\r') {
                let with: &[u8] =
                    [&b"0"[..], b"-1", b"-2", b"1", b"2", b"+1", b"", b"x", b"01"][rng.below(9)];
                b.splice(head + 1..head + cr, with.iter().copied());
            }
        }
        _ => b.extend_from_slice(base),
    }
    b
}

/// What a client got: the bytes, and whether the proxy closed it.
type Outcome = (Vec<u8>, bool);

/// Asks `GET k:<index>` and reads until the proxy closes, or is quiet for
/// 100 ms after it has sent something, or for 1.5 s before (longer than
/// `timeout: 300`, so a stalled reply shows as the proxy's timeout error).
fn ask(proxy: &ProxyProcess, index: usize) -> Outcome {
    let mut conn: RawConn = proxy.connect().expect("connect");
    let key = format!("k:{index}");
    conn.send(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes())
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let quiet = if conn.buffered().is_empty() {
            Duration::from_millis(1500)
        } else {
            Duration::from_millis(100)
        };
        let wait = quiet.min(deadline.saturating_duration_since(Instant::now()));
        match conn.read_some(wait) {
            Ok(Fill::Data(_)) if !wait.is_zero() => continue,
            _ => break,
        }
    }
    let closed = conn.is_closed();
    (conn.take_buffered(), closed)
}

fn start_pair(replies: &Arc<Vec<Vec<u8>>>) -> (ProxyProcess, ProxyProcess) {
    let yaml = |backend: std::net::SocketAddr| {
        PoolConfig::redis("fake", nc_harness::free_port().expect("free port"))
            .timeout(300)
            .server(backend, 1, Some("s1"))
            .render()
    };
    let reference = Nutcracker::start(&yaml(canned_backend(Arc::clone(replies))))
        .expect("nutcracker starts (apt-get install nutcracker)");
    let bin = ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"));
    let subject = Ncproxy::start(&bin, &yaml(canned_backend(Arc::clone(replies))), &[])
        .expect("ncproxy starts");
    (reference, subject)
}

/// RESP3 replies: nutcracker closes the server connection, ncproxy passes
/// them through (README, "Differences from nutcracker").
const RESP3: [&[u8]; 6] = [
    b"_\r\n",
    b",1.5\r\n",
    b"%1\r\n+a\r\n:1\r\n",
    b"*2\r\n,1.5\r\n#t\r\n",
    b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
    b"=8\r\ntxt:a\r\nb\r\n",
];

#[test]
fn resp3_replies_pass_through_where_nutcracker_fails_them() {
    let replies = Arc::new(RESP3.iter().map(|r| r.to_vec()).collect::<Vec<_>>());
    let (reference, subject) = start_pair(&replies);
    for (index, reply) in RESP3.iter().enumerate() {
        let (nutcracker, ncproxy) = thread::scope(|s| {
            let nutcracker = s.spawn(|| ask(&reference, index));
            (
                nutcracker.join().expect("nutcracker side"),
                ask(&subject, index),
            )
        });
        let shown = escape_bytes(reply);
        assert_eq!(
            nutcracker,
            (b"-ERR Invalid argument\r\n".to_vec(), false),
            "nutcracker on \"{shown}\""
        );
        assert_eq!(ncproxy, (reply.to_vec(), false), "ncproxy on \"{shown}\"");
    }
}

#[test]
fn misbehaving_server_replies_match_nutcracker() {
    let fixed = fixed_replies();
    let mut rng = SplitMix64(0x5EED_0FF5);
    let mut replies = fixed.clone();
    for _ in 0..40 {
        let base = &fixed[rng.below(17)];
        replies.push(mutated(&mut rng, base));
    }
    let replies = Arc::new(replies);
    let (reference, subject) = start_pair(&replies);
    let (mut passed_through, mut invalid, mut timed_out) = (0, 0, 0);
    for (index, reply) in replies.iter().enumerate() {
        let (expected, got) = thread::scope(|s| {
            let expected = s.spawn(|| ask(&reference, index));
            let got = ask(&subject, index);
            (expected.join().expect("nutcracker side"), got)
        });
        assert_eq!(
            expected,
            got,
            "canned reply {index} \"{}\": nutcracker got \"{}\" (closed {}), ncproxy \"{}\" (closed {})",
            escape_bytes(reply),
            escape_bytes(&expected.0),
            expected.1,
            escape_bytes(&got.0),
            got.1
        );
        match got.0.as_slice() {
            b"-ERR Invalid argument\r\n" => invalid += 1,
            b"-ERR Connection timed out\r\n" => timed_out += 1,
            _ => passed_through += 1,
        }
    }
    // Every way of answering was exercised.
    assert!(
        passed_through > 0 && invalid > 0 && timed_out > 0,
        "passed through {passed_through}, invalid {invalid}, timed out {timed_out}"
    );
    println!(
        "reply differential: {} canned replies identical ({passed_through} passed through, {invalid} invalid, {timed_out} timed out)",
        replies.len()
    );
}
