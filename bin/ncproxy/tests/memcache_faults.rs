//! Fault injection against ncproxy on a memcache pool: real memcached are
//! killed, stopped (SIGSTOP past `timeout`) and restarted while pipelines are
//! in flight; clients disconnect mid-pipeline or never read. Plus the noreply
//! desync hazard (reference/memcache.md §1.5): a FAKE backend and a real
//! memcached answer some `noreply` requests with an error line, and that line
//! must never become the reply of the next request.
//!
//! Pool: three memcached (`s1 s2 s3`, ketama over md5, `timeout: 400`);
//! keys of each server are found by writing through the proxy and asking the
//! memcached directly. Only `s2` is faulted. Requests are `set k_i` + `get
//! k_i` pairs with unique values, so reply `i` is checked against request
//! `i`: a reply that went to the wrong request, out of order, twice or never
//! is caught. Each test prints
//! `integrity: sent=N replies=N checked=N mismatches=0 lost=0` (run with
//! `--nocapture`) and asserts `mismatches == 0 && lost == 0`.
//!
//! A faulted request may get nutcracker's error replies (`SERVER_ERROR
//! <strerror>`): `Connection refused`, `Connection reset by peer`,
//! `unknown` (server EOF), `Broken pipe`, and for a stall `Connection timed
//! out`. A `get` on the faulted server may also miss (the restarted cache is
//! empty; a set whose connection timed out may or may not have landed).
//!
//! `NCPROXY_BIN=/usr/sbin/nutcracker cargo test -p ncproxy-cli --test
//! memcache_faults` runs the fault tests against the oracle; the noreply
//! desync tests then fail (nutcracker desyncs, which is what they catch).

use nc_harness::memcache::{get, mc_reply_len, storage, McConn};
use nc_harness::{escape_bytes, ncproxy_bin, Memcached, Ncproxy, Nutcracker, PoolConfig};
use nc_harness::{ProxyProcess, RawConn};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[path = "support/polling.rs"]
mod polling;

const FAULTED: usize = 1;
const IO: Duration = Duration::from_secs(10);
const TIMEOUT_MS: u64 = 400;
const DEATH: &[&str] = &[
    "SERVER_ERROR Connection refused",
    "SERVER_ERROR Connection reset by peer",
    "SERVER_ERROR unknown",
    "SERVER_ERROR Broken pipe",
];
const STALL: &[&str] = &["SERVER_ERROR Connection timed out"];

fn subject(yaml: &str) -> ProxyProcess {
    Ncproxy::start(&ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy")), yaml, &[])
        .expect("start ncproxy with a memcache pool")
}

struct Rig {
    backends: Vec<Memcached>,
    proxy: ProxyProcess,
    /// Key prefixes (`f<shard>`-style) known to live on each backend.
    keys: Vec<Vec<String>>,
}

impl Rig {
    fn start() -> Rig {
        let backends: Vec<Memcached> = (0..3)
            .map(|_| Memcached::start().expect("start memcached"))
            .collect();
        let port = nc_harness::free_port().expect("free port");
        let mut pool = PoolConfig::memcache("mcfault", port)
            .hash("md5")
            .distribution("ketama")
            .timeout(TIMEOUT_MS);
        for (i, b) in backends.iter().enumerate() {
            pool = pool.server(b.addr(), 1, Some(&format!("s{}", i + 1)));
        }
        let proxy = subject(&pool.render());
        let mut rig = Rig {
            backends,
            proxy,
            keys: Vec::new(),
        };
        rig.keys = rig.discover(40);
        rig
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    /// `n` keys per backend (written through the proxy, found directly).
    fn discover(&self, n: usize) -> Vec<Vec<String>> {
        let mut c = McConn::connect(self.addr()).expect("connect proxy");
        let mut out = vec![Vec::new(); self.backends.len()];
        for i in 0..5000 {
            if out.iter().all(|v: &Vec<String>| v.len() >= n) {
                break;
            }
            let k = format!("fk{i}");
            assert_eq!(
                c.call(&storage("set", k.as_bytes(), 0, 0, b"d", false), IO)
                    .expect("discovery set"),
                b"STORED\r\n"
            );
            for (bi, b) in self.backends.iter().enumerate() {
                if nc_harness::memcache::backend_get(b.addr(), k.as_bytes())
                    .expect("get")
                    .is_some()
                    && out[bi].len() < n
                {
                    out[bi].push(k.clone());
                }
            }
        }
        assert!(out.iter().all(|v| v.len() >= n), "key discovery failed");
        out
    }

    /// Set/get pairs cycling over the three backends' keys, unique values.
    fn pairs(&self, tag: &str, n: usize) -> Vec<Req> {
        let mut reqs = Vec::new();
        for i in 0..n {
            let shard = i % 3;
            let key = &self.keys[shard][(i / 3) % self.keys[shard].len()];
            let val = format!("{tag}-{i}-{}", "v".repeat(i % 50)).into_bytes();
            reqs.push(Req {
                bytes: storage("set", key.as_bytes(), 0, 0, &val, false),
                want: b"STORED\r\n".to_vec(),
                shard,
                is_get: false,
            });
            let mut want = format!("VALUE {key} 0 {}\r\n", val.len()).into_bytes();
            want.extend_from_slice(&val);
            want.extend_from_slice(b"\r\nEND\r\n");
            reqs.push(Req {
                bytes: get(&[key.as_bytes()]),
                want,
                shard,
                is_get: true,
            });
        }
        reqs
    }
}

#[derive(Clone)]
struct Req {
    bytes: Vec<u8>,
    want: Vec<u8>,
    shard: usize,
    is_get: bool,
}

#[derive(Default, Debug)]
struct Integrity {
    sent: usize,
    replies: usize,
    checked: usize,
    mismatches: usize,
    lost: usize,
    errors: HashMap<String, usize>,
    examples: Vec<String>,
}

impl Integrity {
    fn print(&self, test: &str) {
        println!(
            "integrity: sent={} replies={} checked={} mismatches={} lost={}  [{test}] errors={:?}",
            self.sent, self.replies, self.checked, self.mismatches, self.lost, self.errors
        );
    }

    #[track_caller]
    fn assert_clean(&self, test: &str) {
        self.print(test);
        assert!(
            self.mismatches == 0 && self.lost == 0,
            "[{test}] integrity violated: sent={} replies={} checked={} mismatches={} lost={}\n  {}",
            self.sent,
            self.replies,
            self.checked,
            self.mismatches,
            self.lost,
            self.examples.join("\n  ")
        );
    }
}

/// Checks reply `i` against request `i`: exact, or (on the faulted shard)
/// one of `allowed` errors, or for a get on the faulted shard a miss.
fn check(reqs: &[Req], sent: usize, replies: &[Vec<u8>], allowed: &[&str]) -> Integrity {
    check_on(reqs, sent, replies, allowed, Some(FAULTED))
}

/// [`check`] with the errors allowed on `faulted` (`None`: on any shard).
fn check_on(
    reqs: &[Req],
    sent: usize,
    replies: &[Vec<u8>],
    allowed: &[&str],
    faulted: Option<usize>,
) -> Integrity {
    let mut it = Integrity {
        sent,
        replies: replies.len(),
        ..Default::default()
    };
    for (i, r) in replies.iter().enumerate() {
        it.checked += 1;
        let Some(req) = reqs.get(i) else {
            it.mismatches += 1;
            it.examples
                .push(format!("extra reply #{i}: \"{}\"", escape_bytes(r)));
            continue;
        };
        let text = String::from_utf8_lossy(r.strip_suffix(b"\r\n").unwrap_or(r)).into_owned();
        let on_faulted = faulted.is_none_or(|f| f == req.shard);
        let ok = *r == req.want
            || (on_faulted && allowed.contains(&text.as_str()))
            || (on_faulted && req.is_get && r == b"END\r\n");
        if allowed.contains(&text.as_str()) || text.starts_with("SERVER_ERROR") {
            *it.errors.entry(text.clone()).or_default() += 1;
        }
        if !ok {
            it.mismatches += 1;
            if it.examples.len() < 8 {
                it.examples.push(format!(
                    "reply #{i} (shard {}) to \"{}\": want \"{}\", got \"{}\"",
                    req.shard,
                    escape_bytes(&req.bytes[..req.bytes.len().min(60)]),
                    escape_bytes(&req.want[..req.want.len().min(60)]),
                    escape_bytes(&r[..r.len().min(80)])
                ));
            }
        }
    }
    it.lost = sent.saturating_sub(replies.len());
    it
}

/// Sends `reqs` on one connection from a writer thread (calling `at(i)`
/// before request `i` is written, for fault injection) while reading
/// replies; returns (requests written, replies).
fn run_pipeline(
    addr: SocketAddr,
    reqs: &[Req],
    at: &(dyn Fn(usize) + Sync),
    cap: Duration,
) -> (usize, Vec<Vec<u8>>) {
    let s = TcpStream::connect(addr).expect("connect proxy");
    s.set_nodelay(true).unwrap();
    let mut w = s.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut sent = 0;
            for (i, r) in reqs.iter().enumerate() {
                at(i);
                if w.write_all(&r.bytes).is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        });
        let mut replies = Vec::new();
        let mut buf = Vec::new();
        let mut r = s;
        let deadline = Instant::now() + cap;
        let mut tmp = vec![0u8; 65536];
        while replies.len() < reqs.len() && Instant::now() < deadline {
            r.set_read_timeout(Some(Duration::from_millis(3000)))
                .unwrap();
            match r.read(&mut tmp) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            while let Ok(Some(n)) = mc_reply_len(&buf) {
                replies.push(buf.drain(..n).collect());
            }
        }
        (writer.join().expect("writer"), replies)
    })
}

/// A fresh client gets every pair right, on every shard.
#[track_caller]
fn assert_serving(rig: &Rig, tag: &str) {
    let reqs = rig.pairs(tag, 90);
    let (sent, replies) = run_pipeline(rig.addr(), &reqs, &|_| {}, IO);
    let it = check(&reqs, sent, &replies, &[]);
    it.assert_clean(&format!("{tag} (after the fault, all shards)"));
    assert_eq!(it.replies, reqs.len());
}

#[test]
fn server_killed_mid_pipeline_then_restarted() {
    let mut rig = Rig::start();
    let reqs = rig.pairs("kill", 3000);
    let backends = Mutex::new(&mut rig.backends);
    let (sent, replies) = run_pipeline(
        rig.proxy.addr(),
        &reqs,
        &|i| {
            if i == 1000 {
                backends.lock().unwrap()[FAULTED].stop();
            }
            if i == 2200 {
                backends.lock().unwrap()[FAULTED]
                    .restart()
                    .expect("restart memcached");
            }
        },
        Duration::from_secs(40),
    );
    let it = check(&reqs, sent, &replies, DEATH);
    it.assert_clean("server_killed_mid_pipeline_then_restarted");
    assert!(
        it.errors.keys().any(|k| DEATH.contains(&k.as_str())),
        "the killed server's requests got no error at all: {:?}",
        it.errors
    );
    assert_serving(&rig, "after-restart");
}

#[test]
fn stalled_server_times_out_in_order() {
    let mut rig = Rig::start();
    let reqs = rig.pairs("stall", 60);
    rig.backends[FAULTED].pause().expect("SIGSTOP");
    let t0 = Instant::now();
    let (sent, replies) = run_pipeline(rig.addr(), &reqs, &|_| {}, Duration::from_secs(20));
    let took = t0.elapsed();
    rig.backends[FAULTED].resume().expect("SIGCONT");
    let it = check(&reqs, sent, &replies, STALL);
    it.assert_clean("stalled_server_times_out_in_order");
    let timed_out = it.errors.get(STALL[0]).copied().unwrap_or(0);
    assert!(
        timed_out > 0,
        "no `{}` for the stalled server: {:?}",
        STALL[0],
        it.errors
    );
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS),
        "timeouts came after {took:?}, before the pool's {TIMEOUT_MS} ms"
    );
    // Every request on the stalled server timed out (none was answered).
    for (i, (req, r)) in reqs.iter().zip(&replies).enumerate() {
        if req.shard == FAULTED {
            assert_eq!(
                r.as_slice(),
                b"SERVER_ERROR Connection timed out\r\n",
                "reply #{i} on the stalled server"
            );
        }
    }
    thread::sleep(Duration::from_millis(200));
    assert_serving(&rig, "after-stall");
}

#[test]
fn client_disconnect_mid_pipeline() {
    let rig = Rig::start();
    let reqs = rig.pairs("drop", 2000);
    let bytes: Vec<u8> = reqs.iter().flat_map(|r| r.bytes.clone()).collect();
    for round in 0..20 {
        let mut c = RawConn::connect(rig.addr()).expect("connect");
        let cut = bytes.len() * (round + 1) / 23;
        let _ = c.send(&bytes[..cut]);
        if round % 2 == 0 {
            let _ = c.read_some(Duration::from_millis(5));
        }
        drop(c);
    }
    // Requests of different connections have no order between them, and
    // these tests reuse keys: a dead client's SET still being read could
    // land between the next client's SET and GET of the same key. Once the
    // proxy has closed every dead client, all it read of them is queued
    // ahead of anything new.
    let closed = polling::eventually(Duration::from_secs(10), || {
        rig.proxy
            .stats_json()
            .is_ok_and(|json| polling::stat(&json, "mcfault", None, "client_connections") == 0)
    });
    assert!(closed, "the proxy closes the disconnected clients");
    // Right after, the abandoned requests may still occupy the servers: a
    // proxy error (e.g. nutcracker's `Connection timed out`) is allowed on
    // any shard, a wrong or missing reply is not.
    let reqs = rig.pairs("right-after-disconnects", 90);
    let (sent, replies) = run_pipeline(rig.addr(), &reqs, &|_| {}, IO);
    let allowed: Vec<&str> = DEATH.iter().chain(STALL).copied().collect();
    check_on(&reqs, sent, &replies, &allowed, None).assert_clean("right-after-disconnects");
    // Once the backlog drained, everything is served again.
    let t0 = Instant::now();
    loop {
        let reqs = rig.pairs("drained", 90);
        let (sent, replies) = run_pipeline(rig.addr(), &reqs, &|_| {}, IO);
        if check(&reqs, sent, &replies, &[]).mismatches == 0
            || t0.elapsed() > Duration::from_secs(10)
        {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    assert_serving(&rig, "after-disconnects");
}

#[test]
fn client_that_never_reads() {
    let rig = Rig::start();
    let big = vec![b'x'; 100_000];
    let key = rig.keys[FAULTED][0].clone();
    let mut c = McConn::connect(rig.addr()).expect("connect");
    assert_eq!(
        c.call(&storage("set", key.as_bytes(), 0, 0, &big, false), IO)
            .unwrap(),
        b"STORED\r\n"
    );
    // Never reads: the writer stops when the socket stops taking bytes.
    let s = TcpStream::connect(rig.addr()).expect("connect");
    s.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut w = s.try_clone().unwrap();
    let sleeper = thread::spawn(move || {
        let one = get(&[key.as_bytes()]);
        let t0 = Instant::now();
        let mut n = 0;
        // 400 x 100 kB is far more than the socket buffers hold, so the
        // proxy is left holding replies, yet little enough that the shared
        // server connection drains it well inside the pool's timeout.
        while t0.elapsed() < Duration::from_secs(3) && n < 400 {
            if w.write_all(&one).is_err() {
                break;
            }
            n += 1;
        }
        n
    });
    thread::sleep(Duration::from_millis(300));
    // Meanwhile other clients are served, on every shard.
    assert_serving(&rig, "beside-a-non-reader");
    let n = sleeper.join().unwrap();
    println!("never-reading client wrote {n} gets of a 100 kB value");
    drop(s);
    assert_serving(&rig, "after-non-reader");
}

// ---------------------------------------------------------------------------
// noreply desync

/// A FAKE memcached (not memcached!): a TcpListener thread that answers
/// enough of the text protocol for these tests. Like real memcached does for
/// some noreply requests (§1.5), it answers `set ... noreply` and
/// `decr ... noreply` with an error line, although it stores the set.
struct FakeMemcached {
    addr: SocketAddr,
}

impl FakeMemcached {
    fn start(seed: &[(&str, &str)]) -> FakeMemcached {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind fake memcached");
        let addr = l.local_addr().unwrap();
        let store: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = Arc::new(Mutex::new(
            seed.iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        ));
        thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { break };
                let store = store.clone();
                thread::spawn(move || fake_conn(c, &store));
            }
        });
        FakeMemcached { addr }
    }
}

fn fake_conn(mut c: TcpStream, store: &Mutex<HashMap<Vec<u8>, Vec<u8>>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 65536];
    loop {
        let Some(nl) = buf.windows(2).position(|w| w == b"\r\n") else {
            match c.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    continue;
                }
            }
        };
        let line: Vec<u8> = buf[..nl].to_vec();
        let toks: Vec<&[u8]> = line
            .split(|&b| b == b' ')
            .filter(|t| !t.is_empty())
            .collect();
        let noreply = toks.last() == Some(&&b"noreply"[..]);
        let mut consumed = nl + 2;
        let out: Vec<u8> = match toks.first().copied().unwrap_or(b"") {
            b"get" | b"gets" => {
                let st = store.lock().unwrap();
                let mut o = Vec::new();
                for k in &toks[1..] {
                    if let Some(v) = st.get(*k) {
                        o.extend_from_slice(b"VALUE ");
                        o.extend_from_slice(k);
                        o.extend_from_slice(format!(" 0 {}", v.len()).as_bytes());
                        if toks[0] == b"gets" {
                            o.extend_from_slice(b" 1");
                        }
                        o.extend_from_slice(b"\r\n");
                        o.extend_from_slice(v);
                        o.extend_from_slice(b"\r\n");
                    }
                }
                o.extend_from_slice(b"END\r\n");
                o
            }
            b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
                let n: usize = std::str::from_utf8(toks.get(4).copied().unwrap_or(b"0"))
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                while buf.len() < consumed + n + 2 {
                    match c.read(&mut tmp) {
                        Ok(0) | Err(_) => return,
                        Ok(m) => buf.extend_from_slice(&tmp[..m]),
                    }
                }
                let data = buf[consumed..consumed + n].to_vec();
                consumed += n + 2;
                store.lock().unwrap().insert(toks[1].to_vec(), data);
                if noreply {
                    b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n".to_vec()
                } else {
                    b"STORED\r\n".to_vec()
                }
            }
            b"decr" | b"incr" => {
                b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n".to_vec()
            }
            b"delete" => {
                let had = store.lock().unwrap().remove(toks[1]).is_some();
                match (noreply, had) {
                    (true, _) => Vec::new(),
                    (false, true) => b"DELETED\r\n".to_vec(),
                    (false, false) => b"NOT_FOUND\r\n".to_vec(),
                }
            }
            b"touch" if noreply => Vec::new(),
            b"touch" => b"TOUCHED\r\n".to_vec(),
            b"version" => b"VERSION 1.6.18\r\n".to_vec(),
            b"mn" => b"MN\r\n".to_vec(),
            _ => b"ERROR\r\n".to_vec(),
        };
        buf.drain(..consumed);
        if !out.is_empty() && c.write_all(&out).is_err() {
            return;
        }
    }
}

fn single_server_pool(addr: SocketAddr) -> String {
    let port = nc_harness::free_port().expect("free port");
    PoolConfig::memcache("mcnoreply", port)
        .hash("md5")
        .distribution("ketama")
        .timeout(1000)
        .server_connections(1)
        .server(addr, 1, Some("only"))
        .render()
}

/// The pipeline and the reply each replied request must get.
fn desync_pipeline() -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    bytes.extend(b"decr k 1 noreply\r\n");
    bytes.extend(get(&[b"k2"]));
    want.push(b"VALUE k2 0 2\r\nv2\r\nEND\r\n".to_vec());
    bytes.extend(storage("set", b"k3", 0, 0, b"x", true));
    bytes.extend(get(&[b"k3"]));
    want.push(b"VALUE k3 0 1\r\nx\r\nEND\r\n".to_vec());
    bytes.extend(b"decr k 1 noreply\r\n");
    bytes.extend(b"decr k 2 noreply\r\n");
    bytes.extend(storage("set", b"k4", 0, 0, b"v4", false));
    want.push(b"STORED\r\n".to_vec());
    bytes.extend(get(&[b"k4", b"k2"]));
    want.push(b"VALUE k4 0 2\r\nv4\r\nVALUE k2 0 2\r\nv2\r\nEND\r\n".to_vec());
    bytes.extend(b"delete k3\r\n");
    want.push(b"DELETED\r\n".to_vec());
    bytes.extend(get(&[b"k3"]));
    want.push(b"END\r\n".to_vec());
    (bytes, want)
}

fn run_desync(proxy: &ProxyProcess, bytes: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut c = McConn::connect(proxy.addr()).expect("connect");
    c.send(bytes).expect("send");
    let mut out = Vec::new();
    for _ in 0..n {
        match c.reply(Duration::from_secs(3)) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
    }
    // Nothing extra may follow.
    let extra = c.drain(Duration::from_millis(200), Duration::from_secs(1));
    if !extra.is_empty() {
        out.push(extra);
    }
    out
}

fn show(replies: &[Vec<u8>]) -> String {
    replies
        .iter()
        .map(|r| format!("\"{}\"", escape_bytes(r)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn noreply_error_never_reaches_the_next_request_fake_backend() {
    let (bytes, want) = desync_pipeline();
    // nutcracker, for the record (not asserted: it desyncs).
    {
        let fake = FakeMemcached::start(&[("k", "abc"), ("k2", "v2")]);
        let nc = Nutcracker::start(&single_server_pool(fake.addr)).expect("start nutcracker");
        let got = run_desync(&nc, &bytes, want.len());
        println!("nutcracker with the FAKE backend: {}", show(&got));
    }
    let fake = FakeMemcached::start(&[("k", "abc"), ("k2", "v2")]);
    let proxy = subject(&single_server_pool(fake.addr));
    for round in 0..3 {
        let got = run_desync(&proxy, &bytes, want.len());
        assert_eq!(
            got,
            want,
            "round {round}: every replied request must get its own reply\n  got:  {}\n  want: {}",
            show(&got),
            show(&want)
        );
    }
}

fn seeded_memcached() -> Memcached {
    let m = Memcached::start().expect("start memcached");
    let mut d = McConn::connect(m.addr()).expect("connect memcached");
    for (k, v) in [("k", "abc"), ("k2", "v2")] {
        assert_eq!(
            d.call(&storage("set", k.as_bytes(), 0, 0, v.as_bytes(), false), IO)
                .unwrap(),
            b"STORED\r\n"
        );
    }
    m
}

/// Rounds of `hazard`, `get k2`, `set k5 noreply`, `hazard`, `get k5 hz`.
fn hazard_pipeline(hazards: &[&[u8]]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    for i in 0..6 {
        bytes.extend(hazards[i % hazards.len()]);
        bytes.extend(get(&[b"k2"]));
        want.push(b"VALUE k2 0 2\r\nv2\r\nEND\r\n".to_vec());
        let v = format!("n{i}");
        bytes.extend(storage("set", b"k5", 0, 0, v.as_bytes(), true));
        bytes.extend(hazards[(i + 1) % hazards.len()]);
        bytes.extend(get(&[b"k5", b"hz"]));
        want.push(format!("VALUE k5 0 2\r\n{v}\r\nEND\r\n").into_bytes());
    }
    (bytes, want)
}

/// The brief's hazard on real memcached: `decr <non-numeric> 1 noreply`
/// (and `incr`) followed by gets on the same server connection.
#[test]
fn decr_non_numeric_noreply_then_gets_real_memcached() {
    let m = seeded_memcached();
    let hazards: [&[u8]; 2] = [b"decr k 1 noreply\r\n", b"incr k 5 noreply\r\n"];
    let (bytes, want) = hazard_pipeline(&hazards);
    {
        let nc = Nutcracker::start(&single_server_pool(m.addr())).expect("start nutcracker");
        let got = run_desync(&nc, &bytes, want.len());
        println!("nutcracker, decr/incr non-numeric noreply: {}", show(&got));
    }
    let proxy = subject(&single_server_pool(m.addr()));
    let got = run_desync(&proxy, &bytes, want.len());
    assert_eq!(
        got,
        want,
        "every replied request must get its own reply\n  got:  {}\n  want: {}",
        show(&got),
        show(&want)
    );
}

/// Requests nutcracker's grammar accepts (digits only) that memcached
/// 1.6.18 cannot parse: an overflowing exptime or cas unique. memcached
/// answers them although they say noreply (`ERROR` for the data line read
/// as a command; without noreply it even sends two lines, `CLIENT_ERROR
/// bad command line format` + `ERROR`). Whatever ncproxy does (fence,
/// strip noreply and count, refuse the request), no reply may go to the
/// wrong request: the replies must be exactly the wanted ones, or a prefix
/// of them followed by a close.
#[test]
fn unparsable_noreply_never_reaches_the_next_request_real_memcached() {
    let m = seeded_memcached();
    let hazards: [&[u8]; 2] = [
        b"set hz 0 99999999999999999999 2 noreply\r\nzz\r\n",
        b"cas hz 0 0 1 99999999999999999999999 noreply\r\nx\r\n",
    ];
    let mut d = McConn::connect(m.addr()).expect("connect memcached");
    for h in hazards {
        let direct = d.call(h, IO).expect("memcached answers the noreply hazard");
        assert!(
            direct.starts_with(b"ERROR") || direct.starts_with(b"CLIENT_ERROR"),
            "memcached was expected to answer \"{}\" with an error, got \"{}\"",
            escape_bytes(h),
            escape_bytes(&direct)
        );
    }
    let (bytes, want) = hazard_pipeline(&hazards);
    {
        let nc = Nutcracker::start(&single_server_pool(m.addr())).expect("start nutcracker");
        let got = run_desync(&nc, &bytes, want.len());
        println!("nutcracker, unparsable noreply: {}", show(&got));
    }
    let proxy = subject(&single_server_pool(m.addr()));
    let mut c = McConn::connect(proxy.addr()).expect("connect");
    c.send(&bytes).expect("send");
    let mut got = Vec::new();
    while got.len() < want.len() {
        match c.reply(Duration::from_secs(3)) {
            Ok(r) => got.push(r),
            Err(_) => break,
        }
    }
    let extra = c.drain(Duration::from_millis(200), Duration::from_secs(1));
    let closed = c.is_closed();
    println!(
        "ncproxy, unparsable noreply: {} closed={closed}",
        show(&got)
    );
    assert!(
        extra.is_empty(),
        "extra bytes after the replies: \"{}\"",
        escape_bytes(&extra)
    );
    assert!(
        got == want || (closed && want.starts_with(&got)),
        "a reply went to the wrong request\n  got:  {}\n  want: {}",
        show(&got),
        show(&want)
    );
}

/// The replied form of the hazard above: for `set hz 0 <overflow> 2\r\nzz`
/// memcached sends two lines (`CLIENT_ERROR bad command line format`, then
/// `ERROR` for the data read as a command), one more than requests, so the
/// request must not be forwarded at all: ncproxy refuses it as malformed
/// (closing the client, as for any input it cannot proxy) and the replies
/// before it are all correct.
#[test]
fn overflowing_storage_fields_are_refused_not_forwarded() {
    let m = seeded_memcached();
    let mut d = McConn::connect(m.addr()).expect("connect memcached");
    d.send(b"set hz 0 99999999999999999999 2\r\nzz\r\n")
        .unwrap();
    let first = d.reply(IO).expect("memcached answers the line");
    let second = d.reply(IO).expect("and then the data line");
    assert!(
        first.starts_with(b"CLIENT_ERROR") && second.starts_with(b"ERROR"),
        "memcached 1.6 answers twice: \"{}\" \"{}\"",
        escape_bytes(&first),
        escape_bytes(&second)
    );
    let proxy = subject(&single_server_pool(m.addr()));
    for hazard in [
        &b"set hz 0 99999999999999999999 2\r\nzz\r\n"[..],
        b"set hz 4294967296 0 2\r\nzz\r\n",
        b"cas hz 0 0 2 18446744073709551616\r\nzz\r\n",
    ] {
        let mut c = McConn::connect(proxy.addr()).expect("connect");
        let mut bytes = get(&[b"k2"]);
        bytes.extend(hazard);
        bytes.extend(get(&[b"k2"]));
        c.send(&bytes).expect("send");
        let got = c.drain(Duration::from_millis(300), Duration::from_secs(3));
        assert!(c.is_closed(), "closed on \"{}\"", escape_bytes(hazard));
        // Sent in one write, the request before it is dropped with it, as
        // nutcracker drops replies queued ahead of a malformed request.
        assert!(
            got.is_empty() || got == b"VALUE k2 0 2\r\nv2\r\nEND\r\n",
            "after \"{}\": \"{}\"",
            escape_bytes(hazard),
            escape_bytes(&got)
        );
    }
    // Nothing reached memcached: hz was never stored.
    let mut d = McConn::connect(m.addr()).expect("connect memcached");
    assert_eq!(d.call(b"get hz\r\n", IO).unwrap(), b"END\r\n");
}
