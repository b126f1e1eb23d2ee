//! Memcache commands ncproxy adds beyond nutcracker (nutcracker closes the
//! connection on all of them): `gat`/`gats`, `flush_all`, `verbosity`,
//! `version` and `stats` answered by the proxy, and the meta commands
//! `mg ms md ma mn me` (base64 keys, opaque `O`, `k`, quiet `q`).
//!
//! ncproxy only; expected values come from memcached semantics, and where
//! possible memcached itself is the oracle: the same command sequence is
//! sent to one standalone memcached and its reply bytes must equal ncproxy's.
//! Routing is checked by asking every memcached directly which one holds a
//! key: a meta or gat request must go to the server a classic `set` of the
//! same key goes to (for base64 keys: of the decoded key).
//!
//! `NC_MC_EXT_DIRECT=1` points every test at a single memcached instead of
//! ncproxy (one "backend", the target itself): that validates the tests'
//! expectations against memcached (routing checks are then trivial).

use nc_harness::memcache::{backend_get, get, storage, McConn};
use nc_harness::{escape_bytes, ncproxy_bin, Memcached, Ncproxy, PoolConfig, ProxyProcess};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

const IO: Duration = Duration::from_secs(10);

/// ncproxy in front of three memcached (or, in direct mode, one memcached).
struct Rig {
    backends: Vec<Memcached>,
    proxy: Option<ProxyProcess>,
    /// A separate memcached used as the oracle for reply bytes.
    oracle: Memcached,
}

impl Rig {
    fn start() -> Rig {
        Self::start_with(1000)
    }

    fn start_with(timeout_ms: u64) -> Rig {
        let oracle = Memcached::start().expect("start memcached");
        if std::env::var_os("NC_MC_EXT_DIRECT").is_some() {
            return Rig {
                backends: vec![Memcached::start().expect("start memcached")],
                proxy: None,
                oracle,
            };
        }
        let backends: Vec<Memcached> = (0..3)
            .map(|_| Memcached::start().expect("start memcached"))
            .collect();
        let port = nc_harness::free_port().expect("free port");
        let mut pool = PoolConfig::memcache("mcext", port)
            .hash("fnv1a_64")
            .distribution("ketama")
            .timeout(timeout_ms);
        for (i, b) in backends.iter().enumerate() {
            pool = pool.server(b.addr(), 1, Some(&format!("s{}", i + 1)));
        }
        let proxy = Ncproxy::start(
            &ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy")),
            &pool.render(),
            &[],
        )
        .expect("start ncproxy with a memcache pool");
        Rig {
            backends,
            proxy: Some(proxy),
            oracle,
        }
    }

    fn addr(&self) -> SocketAddr {
        match &self.proxy {
            Some(p) => p.addr(),
            None => self.backends[0].addr(),
        }
    }

    fn conn(&self) -> McConn {
        McConn::connect(self.addr()).expect("connect")
    }

    /// Which backend holds `key` (asked directly); `None` = none.
    fn holder(&self, key: &[u8]) -> Option<usize> {
        let at: Vec<usize> = (0..self.backends.len())
            .filter(|&i| {
                backend_get(self.backends[i].addr(), key)
                    .expect("get")
                    .is_some()
            })
            .collect();
        assert!(at.len() <= 1, "key on several backends: {at:?}");
        at.first().copied()
    }

    /// Where a classic `set` of `key` through the proxy lands.
    fn classic_holder(&self, key: &[u8]) -> usize {
        let mut c = self.conn();
        assert_eq!(
            c.call(&storage("set", key, 0, 0, b"probe", false), IO)
                .unwrap(),
            b"STORED\r\n"
        );
        let h = self.holder(key).expect("classic set landed nowhere");
        assert_eq!(c.call(&del(key), IO).unwrap(), b"DELETED\r\n");
        h
    }

    /// Six keys whose classic placement covers every backend equally
    /// (key `i` on backend `i % backends`).
    fn spread_keys(&self, prefix: &str) -> Vec<(Vec<u8>, usize)> {
        let n = self.backends.len();
        let mut per: Vec<Vec<Vec<u8>>> = vec![Vec::new(); n];
        for i in 0..2000 {
            let k = format!("{prefix}{i}").into_bytes();
            let h = self.classic_holder(&k);
            if per[h].len() < 6 / n {
                per[h].push(k);
            }
            if per.iter().all(|v| v.len() == 6 / n) {
                break;
            }
        }
        assert!(
            per.iter().all(|v| v.len() == 6 / n),
            "could not spread keys"
        );
        (0..6).map(|i| (per[i % n][i / n].clone(), i % n)).collect()
    }

    /// Sends `req` to the oracle memcached and to the proxy, returns both
    /// byte streams (reading `n` replies from each).
    fn both(&self, req: &[u8], n: usize) -> (Vec<u8>, Vec<u8>) {
        let mut o = McConn::connect(self.oracle.addr()).expect("connect oracle");
        let mut p = self.conn();
        o.send(req).unwrap();
        p.send(req).unwrap();
        let a = o.replies(n, IO).expect("oracle replies").concat();
        let b = p
            .replies(n, IO)
            .unwrap_or_else(|e| panic!("replies to \"{}\": {e}", escape_bytes(req)))
            .concat();
        let extra = p.drain(Duration::from_millis(100), Duration::from_secs(1));
        assert!(
            extra.is_empty(),
            "extra bytes after the replies to \"{}\": \"{}\"",
            escape_bytes(req),
            escape_bytes(&extra)
        );
        (a, b)
    }

    /// [`both`](Self::both) and assert equal.
    #[track_caller]
    fn same_as_memcached(&self, what: &str, req: &[u8], n: usize) {
        let (a, b) = self.both(req, n);
        assert!(
            a == b,
            "{what}: ncproxy differs from memcached\n  request:   \"{}\"\n  memcached: \"{}\"\n  ncproxy:   \"{}\"",
            escape_bytes(req),
            escape_bytes(&a),
            escape_bytes(&b)
        );
    }
}

fn del(key: &[u8]) -> Vec<u8> {
    let mut v = b"delete ".to_vec();
    v.extend_from_slice(key);
    v.extend_from_slice(b"\r\n");
    v
}

fn line(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = parts.join(&b' ');
    v.extend_from_slice(b"\r\n");
    v
}

fn b64(data: &[u8]) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63]);
        out.push(T[(n >> 12) as usize & 63]);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63]
        } else {
            b'='
        });
    }
    out
}

/// The remaining TTL memcached reports for `key` (`mg key t` directly).
fn ttl_on(addr: SocketAddr, key: &[u8]) -> Option<i64> {
    let mut c = McConn::connect(addr).expect("connect");
    let r = c.call(&line(&[b"mg", key, b"t"]), IO).unwrap();
    let s = String::from_utf8_lossy(&r).into_owned();
    s.split_whitespace()
        .find_map(|t| t.strip_prefix('t'))
        .and_then(|t| t.parse().ok())
}

/// VALUE blocks of a retrieval reply as (key, rest of header, data).
fn blocks(r: &[u8]) -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while r[pos..].starts_with(b"VALUE ") {
        let nl = pos + r[pos..].windows(2).position(|w| w == b"\r\n").unwrap();
        let hdr = String::from_utf8_lossy(&r[pos..nl]).into_owned();
        let toks: Vec<&str> = hdr.split(' ').collect();
        let n: usize = toks[3].parse().unwrap();
        out.push((
            toks[1].to_string(),
            toks[2..].join(" "),
            r[nl + 2..nl + 2 + n].to_vec(),
        ));
        pos = nl + 2 + n + 2;
    }
    assert_eq!(&r[pos..], b"END\r\n", "reply must end with one END");
    out.sort();
    out
}

// ---------------------------------------------------------------------------

#[test]
fn gat_and_gats_route_split_and_apply_exptime() {
    let rig = Rig::start();
    let keys = rig.spread_keys("gat");
    let mut c = rig.conn();
    for (k, _) in &keys {
        assert_eq!(
            c.call(&storage("set", k, 9, 0, k, false), IO).unwrap(),
            b"STORED\r\n"
        );
    }
    // Multi-key gat across every server, with a miss and a duplicate.
    let mut req: Vec<&[u8]> = vec![b"gat", b"1000"];
    req.extend(keys.iter().map(|(k, _)| k.as_slice()));
    req.push(b"gat-missing");
    req.push(keys[0].0.as_slice());
    let r = c.call(&line(&req), IO).unwrap();
    let mut want: Vec<(String, String, Vec<u8>)> = keys
        .iter()
        .chain(std::iter::once(&keys[0]))
        .map(|(k, _)| {
            let ks = String::from_utf8_lossy(k).into_owned();
            (ks, format!("9 {}", k.len()), k.clone())
        })
        .collect();
    want.sort();
    assert_eq!(blocks(&r), want, "gat reply: \"{}\"", escape_bytes(&r));
    // The exptime was applied on the server that holds each key.
    for (k, h) in &keys {
        let t = ttl_on(rig.backends[*h].addr(), k);
        assert!(
            matches!(t, Some(990..=1000)),
            "ttl of {} after gat 1000: {t:?}",
            String::from_utf8_lossy(k)
        );
        assert_eq!(rig.holder(k), Some(*h), "gat moved a key?");
    }
    // gats: same, with a cas unique (5th token), and exptime 0 = no expiry.
    let mut req: Vec<&[u8]> = vec![b"gats", b"0"];
    req.extend(keys.iter().map(|(k, _)| k.as_slice()));
    let r = c.call(&line(&req), IO).unwrap();
    let got = blocks(&r);
    assert_eq!(got.len(), keys.len(), "gats: \"{}\"", escape_bytes(&r));
    for (_, hdr, _) in &got {
        assert_eq!(hdr.split(' ').count(), 3, "gats header without cas: {hdr}");
    }
    for (k, h) in &keys {
        assert_eq!(ttl_on(rig.backends[*h].addr(), k), Some(-1));
    }
    // Single key, and byte-identical to memcached for a one-server case.
    let mut o = McConn::connect(rig.oracle.addr()).unwrap();
    o.call(&storage("set", &keys[1].0, 9, 0, &keys[1].0, false), IO)
        .unwrap();
    rig.same_as_memcached(
        "gat single",
        &line(&[b"gat", b"500", &keys[1].0, b"gat-missing"]),
        1,
    );
    // Expiry really happens: gat 1 then the key is gone after ~2 s.
    let (k, h) = &keys[2];
    assert!(c
        .call(&line(&[b"gat", b"1", k]), IO)
        .unwrap()
        .starts_with(b"VALUE "));
    thread::sleep(Duration::from_millis(2100));
    assert_eq!(c.call(&get(&[k]), IO).unwrap(), b"END\r\n");
    assert_eq!(backend_get(rig.backends[*h].addr(), k).unwrap(), None);
}

#[test]
fn flush_all_and_verbosity_broadcast() {
    let rig = Rig::start();
    let keys = rig.spread_keys("fl");
    let mut c = rig.conn();
    let fill = |c: &mut McConn| {
        for (k, _) in &keys {
            assert_eq!(
                c.call(&storage("set", k, 0, 0, b"x", false), IO).unwrap(),
                b"STORED\r\n"
            );
        }
    };
    let all_gone = |what: &str| {
        for (k, h) in &keys {
            assert_eq!(
                backend_get(rig.backends[*h].addr(), k).unwrap(),
                None,
                "{what}: {} still on backend {h}",
                String::from_utf8_lossy(k)
            );
        }
    };
    fill(&mut c);
    assert_eq!(c.call(b"flush_all\r\n", IO).unwrap(), b"OK\r\n");
    all_gone("flush_all");
    fill(&mut c);
    assert_eq!(c.call(b"flush_all 0\r\n", IO).unwrap(), b"OK\r\n");
    all_gone("flush_all 0");
    fill(&mut c);
    // noreply: no reply at all; the next request gets its own.
    c.send(b"flush_all noreply\r\nflush_all 0 noreply\r\n")
        .unwrap();
    assert_eq!(c.call(&get(&[&keys[0].0]), IO).unwrap(), b"END\r\n");
    all_gone("flush_all noreply");
    // A delay: the items are still there now.
    fill(&mut c);
    assert_eq!(c.call(b"flush_all 100\r\n", IO).unwrap(), b"OK\r\n");
    for (k, h) in &keys {
        assert!(
            backend_get(rig.backends[*h].addr(), k).unwrap().is_some(),
            "flush_all 100 flushed at once"
        );
    }
    // Pipelined: one OK each, in order.
    c.send(b"flush_all\r\nverbosity 1\r\nverbosity 0 noreply\r\nverbosity 0\r\nversion\r\n")
        .unwrap();
    let r = c.replies(4, IO).unwrap();
    assert_eq!(
        &r[..3],
        &[b"OK\r\n".to_vec(), b"OK\r\n".to_vec(), b"OK\r\n".to_vec()]
    );
    assert!(r[3].starts_with(b"VERSION "));
    all_gone("pipelined flush_all");
    // memcached itself answers the same bytes.
    rig.same_as_memcached("verbosity", b"verbosity 1\r\nflush_all\r\n", 2);
    let extra = c.drain(Duration::from_millis(100), Duration::from_secs(1));
    assert!(extra.is_empty(), "extra: \"{}\"", escape_bytes(&extra));
}

#[test]
fn version_and_stats_answered() {
    let rig = Rig::start();
    let mut c = rig.conn();
    c.send(b"version\r\nversion\r\n").unwrap();
    for _ in 0..2 {
        let v = c.reply(IO).unwrap();
        assert!(
            v.starts_with(b"VERSION ")
                && v.len() > 10
                && v.iter().filter(|&&b| b == b'\n').count() == 1,
            "version reply: \"{}\"",
            escape_bytes(&v)
        );
    }
    let s = c.call(b"stats\r\n", IO).unwrap();
    let text = String::from_utf8_lossy(&s).into_owned();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(lines.len() > 2, "stats: {text}");
    assert_eq!(lines[lines.len() - 2], "END", "stats: {text}");
    assert_eq!(lines[lines.len() - 1], "");
    for l in &lines[..lines.len() - 2] {
        let t: Vec<&str> = l.splitn(3, ' ').collect();
        assert!(
            t.len() == 3 && t[0] == "STAT" && !t[1].is_empty() && !t[2].is_empty(),
            "bad stats line \"{l}\""
        );
    }
    // Still usable afterwards.
    assert_eq!(
        c.call(&storage("set", b"after-stats", 0, 0, b"1", false), IO)
            .unwrap(),
        b"STORED\r\n"
    );
}

#[test]
fn meta_commands_route_by_key_like_classic_commands() {
    let rig = Rig::start();
    let keys = rig.spread_keys("meta");
    let mut c = rig.conn();
    for (k, h) in &keys {
        let ks = String::from_utf8_lossy(k).into_owned();
        assert_eq!(
            c.call(
                &[line(&[b"ms", k, b"2", b"T0"]), b"mv\r\n".to_vec()].concat(),
                IO
            )
            .unwrap(),
            b"HD\r\n"
        );
        assert_eq!(
            rig.holder(k),
            Some(*h),
            "ms {ks} landed elsewhere than set {ks}"
        );
        assert_eq!(
            c.call(&line(&[b"mg", k, b"v"]), IO).unwrap(),
            b"VA 2\r\nmv\r\n"
        );
        assert_eq!(c.call(&get(&[k]), IO).unwrap(), {
            let mut w = format!("VALUE {ks} 0 2\r\n").into_bytes();
            w.extend_from_slice(b"mv\r\nEND\r\n");
            w
        });
        assert_eq!(c.call(&line(&[b"md", k]), IO).unwrap(), b"HD\r\n");
        assert_eq!(rig.holder(k), None, "md {ks} missed its server");
        // ma creates on the key's server (N autoviv).
        assert_eq!(
            c.call(&line(&[b"ma", k, b"N0", b"J7", b"v"]), IO).unwrap(),
            b"VA 1\r\n7\r\n"
        );
        assert_eq!(rig.holder(k), Some(*h), "ma {ks} landed elsewhere");
        let me = c.call(&line(&[b"me", k]), IO).unwrap();
        assert!(
            me.starts_with(format!("ME {ks} ").as_bytes()),
            "me {ks}: \"{}\"",
            escape_bytes(&me)
        );
        assert_eq!(c.call(&del(k), IO).unwrap(), b"DELETED\r\n");
    }
    assert_eq!(c.call(b"me meta-nokey\r\n", IO).unwrap(), b"EN\r\n");
    // Byte-identical to memcached: flags, opaque, k, misses, errors.
    let seq: &[u8] = b"ms mk1 3 T0 F5 O77 k\r\nabc\r\nmg mk1 s v f k O123 t\r\nmg mk-miss v O9 k\r\n\
ma mk-cnt N0 J5 v O1\r\nma mk-cnt MD D2 v\r\nma mk-nope\r\nmd mk-miss O5\r\n\
ms mk1 1 MA\r\nZ\r\nmg mk1 v\r\nms mk-new 1 ME\r\nq\r\nms mk-new 1 ME\r\nq\r\nmd mk1 k O2\r\nmn\r\n";
    rig.same_as_memcached("meta sequence", seq, 13);
}

#[test]
fn meta_base64_keys_route_by_decoded_key() {
    let rig = Rig::start();
    let keys = rig.spread_keys("b64-");
    let mut c = rig.conn();
    for (k, h) in &keys {
        let ks = String::from_utf8_lossy(k).into_owned();
        let e = b64(k);
        assert_eq!(
            c.call(&storage("set", k, 0, 0, b"classic", false), IO)
                .unwrap(),
            b"STORED\r\n"
        );
        // mg <base64(k)> b v finds the value `set k` stored.
        assert_eq!(
            c.call(&line(&[b"mg", &e, b"b", b"v"]), IO).unwrap(),
            b"VA 7\r\nclassic\r\n",
            "mg {} b v (base64 of {ks})",
            String::from_utf8_lossy(&e)
        );
        // `k` with `b`: whatever memcached answers (1.6.18 returns the
        // decoded key), ncproxy must too.
        let mut o = McConn::connect(rig.oracle.addr()).unwrap();
        o.call(&storage("set", k, 0, 0, b"classic", false), IO)
            .unwrap();
        rig.same_as_memcached("mg b k O", &line(&[b"mg", &e, b"b", b"k", b"O7", b"v"]), 1);
        // ms with b lands where `set k` landed, under the decoded key.
        assert_eq!(
            c.call(
                &[line(&[b"ms", &e, b"2", b"b"]), b"b6\r\n".to_vec()].concat(),
                IO
            )
            .unwrap(),
            b"HD\r\n"
        );
        assert_eq!(rig.holder(k), Some(*h), "ms b {ks} landed elsewhere");
        assert_eq!(
            backend_get(rig.backends[*h].addr(), k).unwrap().as_deref(),
            Some(&b"b6"[..])
        );
        assert_eq!(c.call(&line(&[b"md", &e, b"b"]), IO).unwrap(), b"HD\r\n");
        assert_eq!(rig.holder(k), None);
    }
}

#[test]
fn meta_quiet_mode_matches_memcached() {
    let rig = Rig::start();
    let keys = rig.spread_keys("q");
    let hit = &keys[0].0;
    let setk = &keys[2].0;
    let mut c = rig.conn();
    let mut o = McConn::connect(rig.oracle.addr()).unwrap();
    for conn in [&mut c, &mut o] {
        assert_eq!(
            conn.call(&storage("set", hit, 0, 0, b"hit!", false), IO)
                .unwrap(),
            b"STORED\r\n"
        );
    }
    let mut seq = Vec::new();
    seq.extend(line(&[b"mg", hit, b"v", b"q"]));
    seq.extend(line(&[b"mg", &keys[1].0, b"v", b"q"])); // miss: suppressed
    seq.extend(line(&[b"ms", setk, b"1", b"q"]));
    seq.extend(b"x\r\n"); // stored: HD suppressed
    seq.extend(line(&[b"md", &keys[3].0, b"q"])); // NF: not suppressed
    seq.extend(line(&[b"ms", setk, b"1", b"q", b"ME"]));
    seq.extend(b"y\r\n"); // NS (add on existing): not suppressed
    seq.extend(line(&[b"mg", &keys[4].0, b"v", b"q", b"k", b"O42"])); // miss
    seq.extend(line(&[b"ma", &keys[5].0, b"q"])); // NF
    seq.extend(line(&[b"md", setk, b"q"])); // HD suppressed
    seq.extend(b"mn\r\n");
    // memcached: VA hit, NF, NS, NF, MN.
    rig.same_as_memcached("quiet pipeline", &seq, 5);
    assert_eq!(
        backend_get(rig.backends[keys[2].1].addr(), setk).unwrap(),
        None,
        "quiet md did not take effect"
    );
    // Several mn in a row, and mn alone.
    rig.same_as_memcached("mn mn", b"mn\r\nmn\r\n", 2);
}

#[test]
fn mn_waits_for_a_stalled_server() {
    let mut rig = Rig::start_with(5000);
    let keys = rig.spread_keys("st");
    let (slow, slow_at) = keys
        .iter()
        .find(|(_, h)| *h == rig.backends.len() - 1)
        .unwrap()
        .clone();
    let fast = keys.iter().find(|(_, h)| *h == 0).unwrap().0.clone();
    let mut c = rig.conn();
    for k in [&slow, &fast] {
        assert_eq!(
            c.call(&storage("set", k, 0, 0, b"sv", false), IO).unwrap(),
            b"STORED\r\n"
        );
    }
    let stall = Duration::from_millis(400);
    for quiet in [false, true] {
        rig.backends[slow_at].pause().expect("SIGSTOP");
        let t0 = Instant::now();
        let mut req = Vec::new();
        let q: &[&[u8]] = if quiet { &[b"v", b"q"] } else { &[b"v"] };
        req.extend(line(&[&[b"mg", slow.as_slice()], q].concat()));
        req.extend(line(&[b"mg", b"st-miss-x", b"v", b"q"]));
        req.extend(line(&[&[b"mg", fast.as_slice()], q].concat()));
        req.extend(b"mn\r\n");
        c.send(&req).unwrap();
        // Nothing may arrive while the first request's server is stopped.
        let early = c.raw().read_some(stall);
        let early_bytes = c.raw().buffered().to_vec();
        rig.backends[slow_at].resume().expect("SIGCONT");
        assert!(
            early_bytes.is_empty(),
            "quiet={quiet}: bytes before the stalled server answered ({early:?}): \"{}\"",
            escape_bytes(&early_bytes)
        );
        let r = c.replies(3, IO).unwrap();
        assert!(t0.elapsed() >= stall);
        assert_eq!(r[0], b"VA 2\r\nsv\r\n", "quiet={quiet}");
        assert_eq!(r[1], b"VA 2\r\nsv\r\n", "quiet={quiet}");
        assert_eq!(r[2], b"MN\r\n", "quiet={quiet}: mn must come last");
        let extra = c.drain(Duration::from_millis(100), Duration::from_secs(1));
        assert!(extra.is_empty(), "extra: \"{}\"", escape_bytes(&extra));
    }
}
