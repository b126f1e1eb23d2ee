//! Memcache differential tests: the same byte streams go to nutcracker (the
//! oracle) and to ncproxy on a memcache pool (`redis: false`), and must get
//! identical bytes back, including whether and when the connection closes.
//!
//! Each test starts a [`Pair`]: two separate but identically configured sets
//! of 3 real memcached (`-I 1m`, the default item size) behind nutcracker and
//! ncproxy. Servers carry explicit names (`127.0.0.1:P:1 s1`), so key
//! placement is identical although the ports differ, and at the end of each
//! test every backend of one side must hold exactly the keys and values of
//! its twin on the other side (`lru_crawler metadump all` + `get`).
//!
//! Every case is sent three ways (as in `differential.rs`): **whole** (one
//! write), **paced** (one byte per write; at each command boundary a wait for
//! that command's reply unless it is `noreply`/`quit`), **half-close** (one
//! write + FIN). Cas uniques are masked in `VALUE` lines before comparing
//! (two memcached instances need not number items alike); `cas` commands
//! that must succeed use `{cas:KEY}`, replaced per side and per run by the
//! unique that side's proxy returns for `gets KEY` just before the case.
//!
//! Covered: pipelined storage/retrieval/arithmetic/delete/touch mixes, incr
//! and decr edge cases, multi-get across servers with misses, duplicates,
//! 100/1000 keys and 250-byte keys, noreply runs (verified by later gets),
//! binary values, 1 MB and over-size (2 MiB) values pipelined with others,
//! quit, a down server (`SERVER_ERROR Connection refused`, multi-get close),
//! and every malformed or unsupported input nutcracker closes on. Commands
//! ncproxy deliberately adds (`version` answered locally, gat/gats,
//! flush_all, verbosity, stats, meta) are NOT here: see
//! `memcache_extensions.rs`.
//!
//! `NCPROXY_BIN=/usr/sbin/nutcracker cargo test -p ncproxy-cli --test
//! memcache_differential` runs the oracle on both sides (validates the tests
//! themselves); `NC_DIFF_SHOW=1` prints what the oracle answered (with
//! `--nocapture`).

use nc_harness::memcache::{backend_get, count_mc_replies, get, mask_cas, McConn};
use nc_harness::{
    diff_bytes, escape_bytes, lease_port, ncproxy_bin, Fill, ListenAddr, Memcached, Ncproxy,
    Nutcracker, PoolConfig, PortLease, ProxyProcess, RawConn,
};
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

/// Backends per side.
const BACKENDS: usize = 3;
/// Longest wait for a missing reply before the outcome is taken as is.
const REPLY_IDLE: Duration = Duration::from_secs(2);
/// Grace period after the last reply, for extra bytes or a late close.
const GRACE: Duration = Duration::from_millis(40);
/// Upper bound for one case on one proxy.
const CASE_CAP: Duration = Duration::from_secs(30);
/// Pause after each single-byte write in paced mode.
const PACE: Duration = Duration::from_micros(20);
/// Commands longer than this are paced in pieces, not byte by byte.
const BYTEWISE_MAX: usize = 2048;
const IO: Duration = Duration::from_secs(10);

/// What the oracle is expected to do with a case (checks the test itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Every replied command gets a reply, connection left open.
    Open,
    /// The connection is closed (replies before it are compared, not fixed).
    Closes,
    /// Closes, but where nutcracker stops sending races inside nutcracker
    /// (a multi-get with a fragment on a refused server): the replies to
    /// the first `n` commands must be there on both sides, both must close,
    /// and one side's bytes must be a prefix of the other's.
    ClosesSomewhereAfter(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    bytes: Vec<u8>,
    closed: bool,
    closed_after: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Whole,
    Paced,
    HalfClose,
}

struct Side {
    proxy: ProxyProcess,
    backends: Vec<Memcached>,
}

struct Pair {
    reference: Side,
    subject: Side,
    cases: usize,
    /// Every key any case mentioned (checked on every backend at the end).
    keys: std::collections::BTreeSet<Vec<u8>>,
    /// Keeps the port of the `down` server (if any) unused.
    _down: Option<PortLease>,
}

/// How many replies a command gets from memcached (through the oracle):
/// none for `noreply` and `quit`, one otherwise.
fn replies_of(cmd: &[u8]) -> usize {
    let line_end = cmd
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(cmd.len());
    let line = &cmd[..line_end];
    let retrieval = line.starts_with(b"get ") || line.starts_with(b"gets ");
    if line == b"quit" || (line.ends_with(b" noreply") && !retrieval) {
        0
    } else {
        1
    }
}

fn s(v: &str) -> Vec<u8> {
    v.as_bytes().to_vec()
}

fn storage(cmd: &str, key: &str, flags: u32, exp: i64, data: &[u8], noreply: bool) -> Vec<u8> {
    nc_harness::memcache::storage(cmd, key.as_bytes(), flags, exp, data, noreply)
}

fn mget(cmd: &str, keys: &[String]) -> Vec<u8> {
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    nc_harness::memcache::retrieval(cmd, &refs)
}

fn render(backends: &[Memcached], hash: &str, dist: &str, down: Option<SocketAddr>) -> String {
    let port = nc_harness::free_port().expect("free port");
    let mut pool = PoolConfig::memcache("mcdiff", port)
        .hash(hash)
        .distribution(dist)
        .timeout(400);
    for (i, b) in backends.iter().enumerate() {
        pool = pool.server(b.addr(), 1, Some(&format!("s{}", i + 1)));
    }
    if let Some(d) = down {
        pool = pool.server(d, 1, Some("down"));
    }
    pool.render()
}

fn start_backends() -> Vec<Memcached> {
    (0..BACKENDS)
        .map(|_| Memcached::start_with(&["-m", "64"]).expect("start memcached"))
        .collect()
}

impl Pair {
    fn start() -> Pair {
        Self::start_with("md5", "ketama", false)
    }

    /// `with_down`: a 4th server `down` on a port nobody listens on.
    fn start_with(hash: &str, dist: &str, with_down: bool) -> Pair {
        let down = with_down.then(|| lease_port().expect("lease port"));
        let down_addr = down.as_ref().map(|l| l.addr());
        let rb = start_backends();
        let sb = start_backends();
        let rp = Nutcracker::start(&render(&rb, hash, dist, down_addr))
            .expect("start nutcracker (apt-get install nutcracker)");
        let bin = ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"));
        let sp = Ncproxy::start(&bin, &render(&sb, hash, dist, down_addr), &[])
            .expect("start ncproxy with a memcache pool");
        Pair {
            reference: Side {
                proxy: rp,
                backends: rb,
            },
            subject: Side {
                proxy: sp,
                backends: sb,
            },
            cases: 0,
            keys: Default::default(),
            _down: down,
        }
    }

    /// Sends `cmds` to both proxies (whole, paced, half-close) and compares.
    #[track_caller]
    fn case(&mut self, name: &str, expect: Expect, cmds: Vec<Vec<u8>>) {
        self.cases += 1;
        for c in &cmds {
            self.keys.extend(keys_of(c));
        }
        for mode in [Mode::Whole, Mode::Paced, Mode::HalfClose] {
            let (r, s) = self.run_both(mode, &cmds, expect);
            let label = format!("case `{name}` ({mode:?})");
            if std::env::var_os("NC_DIFF_SHOW").is_some() {
                eprintln!(
                    "{label}: nutcracker closed={} after={:?} \"{}\"",
                    r.closed,
                    r.closed_after,
                    escape_bytes(&r.bytes[..r.bytes.len().min(400)])
                );
            }
            check_expectation(&label, expect, mode, &r, &cmds);
            let (rm, sm) = (mask_cas(&r.bytes), mask_cas(&s.bytes));
            if let Expect::ClosesSomewhereAfter(n) = expect {
                let min: usize = cmds[..n].iter().map(|c| replies_of(c)).sum();
                let prefix = rm.starts_with(&sm) || sm.starts_with(&rm);
                if !(s.closed && prefix && count_mc_replies(&s.bytes).0 >= min) {
                    panic!("{}", describe_mismatch(&label, &cmds, &r, &s));
                }
                continue;
            }
            if rm != sm || r.closed != s.closed || r.closed_after != s.closed_after {
                panic!("{}", describe_mismatch(&label, &cmds, &r, &s));
            }
        }
    }

    fn run_both(&self, mode: Mode, cmds: &[Vec<u8>], expect: Expect) -> (Outcome, Outcome) {
        let ra = &self.reference.proxy.listens()[0];
        let sa = &self.subject.proxy.listens()[0];
        thread::scope(|scope| {
            let r = scope.spawn(|| run_case(ra, mode, &resolve(ra, cmds), expect));
            let s = run_case(sa, mode, &resolve(sa, cmds), expect);
            (r.join().expect("reference runner panicked"), s)
        })
    }

    /// Index of the reference backend holding `key` (after a set through
    /// the reference proxy); `None` if no backend has it.
    fn server_of(&self, key: &str) -> Option<usize> {
        let mut c = McConn::from_raw(
            RawConn::connect_listen(&self.reference.proxy.listens()[0]).expect("connect"),
        );
        let r = c
            .call(&storage("set", key, 0, 0, b"probe", false), IO)
            .expect("probe set");
        if r != b"STORED\r\n" {
            return None;
        }
        let at = self.reference.backends.iter().position(|b| {
            backend_get(b.addr(), key.as_bytes())
                .expect("get")
                .is_some()
        });
        c.call(format!("delete {key}\r\n").as_bytes(), IO)
            .expect("probe delete");
        at
    }

    /// `n` keys `prefix:i` that live on reference backend `server`.
    fn keys_on(&self, server: usize, prefix: &str, n: usize) -> Vec<String> {
        let out: Vec<String> = (0..2000)
            .map(|i| format!("{prefix}:{i}"))
            .filter(|k| self.server_of(k) == Some(server))
            .take(n)
            .collect();
        assert_eq!(out.len(), n, "not enough keys on s{}", server + 1);
        out
    }

    /// Keys that the reference proxy cannot store (their server is down).
    fn keys_on_down(&self, prefix: &str, n: usize) -> Vec<String> {
        let mut c = McConn::from_raw(
            RawConn::connect_listen(&self.reference.proxy.listens()[0]).expect("connect"),
        );
        let mut out = Vec::new();
        for i in 0..2000 {
            let k = format!("{prefix}:{i}");
            let r = c
                .call(&storage("set", &k, 0, 0, b"x", false), IO)
                .expect("set");
            if r.starts_with(b"SERVER_ERROR") {
                out.push(k);
            } else {
                c.call(format!("delete {k}\r\n").as_bytes(), IO)
                    .expect("delete");
            }
            if out.len() == n {
                return out;
            }
        }
        panic!("no keys on the down server");
    }

    /// Every backend pair holds the same values for every key the cases
    /// mentioned (asked directly, backend by backend).
    #[track_caller]
    fn assert_same_contents(&self) {
        let keys: Vec<&[u8]> = self.keys.iter().map(|k| k.as_slice()).collect();
        let mut total = 0;
        for (i, (r, s)) in self
            .reference
            .backends
            .iter()
            .zip(&self.subject.backends)
            .enumerate()
        {
            let rd = backend_values(r.addr(), &keys);
            let sd = backend_values(s.addr(), &keys);
            total += rd.iter().filter(|v| v.is_some()).count();
            for (k, (a, b)) in keys.iter().zip(rd.iter().zip(&sd)) {
                let show = |v: &Option<Vec<u8>>| match v {
                    None => "(missing)".to_string(),
                    Some(v) => format!("\"{}\"", escape_bytes(&v[..v.len().min(60)])),
                };
                assert!(
                    a == b,
                    "backend s{} differs for key \"{}\": behind nutcracker {}, behind ncproxy {}",
                    i + 1,
                    escape_bytes(&k[..k.len().min(60)]),
                    show(a),
                    show(b)
                );
            }
        }
        assert!(
            total > 0 || self.cases == 0,
            "no items on any backend: the cases did not reach the servers"
        );
    }
}

/// The keys a command names (storage/arithmetic/delete/touch: one; get and
/// gets: all). Malformed commands name nothing useful and are skipped.
fn keys_of(cmd: &[u8]) -> Vec<Vec<u8>> {
    let line_end = cmd.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
    let toks: Vec<&[u8]> = cmd[..line_end]
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .collect();
    let ok = |k: &[u8]| !k.is_empty() && k.len() <= 250 && !k.contains(&b'{');
    match toks.first().copied() {
        Some(b"get" | b"gets") => toks[1..]
            .iter()
            .filter(|k| ok(k))
            .map(|k| k.to_vec())
            .collect(),
        Some(
            b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" | b"incr" | b"decr"
            | b"delete" | b"touch",
        ) => toks
            .get(1)
            .filter(|k| ok(k))
            .map(|k| k.to_vec())
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// One memcached's value of each key (`None` = miss), asked directly.
fn backend_values(addr: SocketAddr, keys: &[&[u8]]) -> Vec<Option<Vec<u8>>> {
    let mut c = McConn::connect(addr).expect("connect to memcached");
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(100) {
        let r = c.call(&get(chunk), IO).expect("get from memcached");
        let mut found = std::collections::HashMap::new();
        let mut pos = 0;
        while r[pos..].starts_with(b"VALUE ") {
            let nl = pos
                + r[pos..]
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .expect("line");
            let toks: Vec<&[u8]> = r[pos..nl].split(|&b| b == b' ').collect();
            let n: usize = std::str::from_utf8(toks[3]).unwrap().parse().unwrap();
            found.insert(toks[1].to_vec(), r[nl + 2..nl + 2 + n].to_vec());
            pos = nl + 2 + n + 2;
        }
        out.extend(chunk.iter().map(|k| found.get(*k).cloned()));
    }
    out
}

/// Replaces every `{cas:KEY}` by the cas unique of KEY on this proxy.
fn resolve(addr: &ListenAddr, cmds: &[Vec<u8>]) -> Vec<Vec<u8>> {
    cmds.iter()
        .map(|c| {
            let Some(start) = c.windows(5).position(|w| w == b"{cas:") else {
                return c.clone();
            };
            let end = start + c[start..].iter().position(|&b| b == b'}').expect("}");
            let key = &c[start + 5..end];
            let mut conn = McConn::from_raw(RawConn::connect_listen(addr).expect("connect"));
            let r = conn
                .call(&nc_harness::memcache::retrieval("gets", &[key]), IO)
                .expect("gets for {cas:}");
            let line_end = r.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
            let unique = r[..line_end]
                .split(|&b| b == b' ')
                .nth(4)
                .unwrap_or(b"0")
                .to_vec();
            let mut out = c[..start].to_vec();
            out.extend_from_slice(&unique);
            out.extend_from_slice(&c[end + 1..]);
            out
        })
        .collect()
}

#[track_caller]
fn check_expectation(label: &str, expect: Expect, mode: Mode, r: &Outcome, cmds: &[Vec<u8>]) {
    match expect {
        Expect::Open => {
            let want: usize = cmds.iter().map(|c| replies_of(c)).sum();
            let (n, _) = count_mc_replies(&r.bytes);
            let closed_ok = r.closed == (mode == Mode::HalfClose);
            assert!(
                closed_ok && n == want,
                "{label}: nutcracker (the oracle) was expected to answer {want} commands and \
                 keep the connection open, but it sent {n} replies, closed={}: \"{}\"",
                r.closed,
                escape_bytes(&r.bytes[..r.bytes.len().min(400)])
            );
        }
        Expect::Closes | Expect::ClosesSomewhereAfter(_) => assert!(
            r.closed,
            "{label}: nutcracker (the oracle) was expected to close the connection but did \
             not: \"{}\"",
            escape_bytes(&r.bytes[..r.bytes.len().min(400)])
        ),
    }
}

fn describe_mismatch(label: &str, cmds: &[Vec<u8>], r: &Outcome, s: &Outcome) -> String {
    let stream: Vec<u8> = cmds.concat();
    let mut msg = format!(
        "{label}: nutcracker and ncproxy differ (cas uniques masked)\n  closed: nutcracker={} \
         ncproxy={}\n  closed after command #: nutcracker={:?} ncproxy={:?}\n",
        r.closed, s.closed, r.closed_after, s.closed_after
    );
    if let Some(d) = diff_bytes(&mask_cas(&r.bytes), &mask_cas(&s.bytes), 60) {
        msg.push_str(&format!("  reply bytes: {d}\n"));
    }
    msg.push_str(&format!(
        "  request ({} commands, {} bytes): \"{}\"{}",
        cmds.len(),
        stream.len(),
        escape_bytes(&stream[..stream.len().min(600)]),
        if stream.len() > 600 { "..." } else { "" }
    ));
    msg
}

fn run_case(addr: &ListenAddr, mode: Mode, cmds: &[Vec<u8>], _expect: Expect) -> Outcome {
    let mut c = RawConn::connect_listen(addr).expect("connect to proxy");
    let deadline = Instant::now() + CASE_CAP;
    let mut closed_after = None;
    let mut bytes = Vec::new();
    match mode {
        Mode::Whole => {
            let _ = c.send(&cmds.concat());
            let want: usize = cmds.iter().map(|c| replies_of(c)).sum();
            wait_replies(&mut c, want, deadline);
            bytes.extend(c.take_buffered());
        }
        Mode::HalfClose => {
            if c.send(&cmds.concat()).is_ok() {
                let _ = c.shutdown_write();
            }
            bytes = c.read_until_eof_or_idle(REPLY_IDLE, CASE_CAP);
        }
        Mode::Paced => {
            let mut want = 0;
            for (i, one) in cmds.iter().enumerate() {
                if send_paced(&mut c, one).is_err() {
                    closed_after = Some(i);
                    break;
                }
                want += replies_of(one);
                wait_replies(&mut c, want, deadline);
                if c.saw_close() {
                    closed_after = Some(i);
                    break;
                }
            }
            bytes.extend(c.take_buffered());
        }
    }
    if !c.saw_close() {
        let left = deadline.saturating_duration_since(Instant::now());
        bytes.extend(c.read_until_eof_or_idle(GRACE, left.max(GRACE)));
    }
    let closed = c.saw_close() || c.is_closed();
    bytes.extend(c.take_buffered());
    if closed && mode == Mode::Paced && closed_after.is_none() {
        closed_after = Some(cmds.len());
    }
    Outcome {
        bytes,
        closed,
        closed_after,
    }
}

/// Waits until the buffer holds `want` complete replies, or the peer
/// closes, or nothing arrives for [`REPLY_IDLE`].
fn wait_replies(c: &mut RawConn, want: usize, deadline: Instant) {
    loop {
        if count_mc_replies(c.buffered()).0 >= want || c.saw_close() {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match c.read_some(REPLY_IDLE.min(left)) {
            Ok(Fill::Data(_)) if !left.is_zero() => {}
            _ => return,
        }
    }
}

fn send_paced(c: &mut RawConn, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.len() <= BYTEWISE_MAX {
        return c.send_paced(bytes, 1, PACE);
    }
    let head = 300;
    let tail = 100;
    c.send_paced(&bytes[..head], 1, PACE)?;
    c.send_paced(&bytes[head..bytes.len() - tail], 7919, Duration::ZERO)?;
    c.send_paced(&bytes[bytes.len() - tail..], 1, PACE)
}

// ---------------------------------------------------------------------------

#[test]
fn pipelined_command_mix() {
    let mut p = Pair::start();
    p.case(
        "seed",
        Expect::Open,
        vec![
            storage("set", "cas:1", 0, 0, b"c1", false),
            storage("set", "cas:2", 0, 0, b"c2", false),
        ],
    );
    let mix = vec![
        storage("set", "mix:1", 0, 0, b"v1", false),
        s("get mix:1\r\n"),
        s("gets mix:1\r\n"),
        storage("set", "mix:2", 42, 100000, b"value-two", false),
        s("get mix:2\r\n"),
        storage("add", "mix:2", 0, 0, b"nope", false),
        storage("add", "mix:3", 7, 0, b"added", false),
        storage("replace", "mix:3", 8, 0, b"replaced", false),
        storage("replace", "mix:missing", 0, 0, b"x", false),
        storage("append", "mix:3", 0, 0, b"-app", false),
        storage("prepend", "mix:3", 0, 0, b"pre-", false),
        storage("append", "mix:missing", 0, 0, b"x", false),
        storage("prepend", "mix:missing", 0, 0, b"x", false),
        s("get mix:3\r\n"),
        s("gets cas:1\r\n"),
        s("cas cas:1 5 0 3 {cas:cas:1}\r\nnew\r\n"),
        s("gets cas:1\r\n"),
        s("cas cas:2 0 0 3 999999999\r\nbad\r\n"),
        s("cas cas:missing 0 0 3 1\r\nbad\r\n"),
        storage("set", "n:1", 0, 0, b"10", false),
        s("incr n:1 5\r\n"),
        s("decr n:1 3\r\n"),
        s("incr n:missing 1\r\n"),
        s("decr n:missing 1\r\n"),
        s("get n:1\r\n"),
        s("touch mix:1 100000\r\n"),
        s("touch mix:missing 10\r\n"),
        s("delete mix:1\r\n"),
        s("delete mix:1\r\n"),
        s("get mix:1\r\n"),
        s("get mix:1 mix:2 mix:3 n:1 cas:1 cas:2\r\n"),
        s("gets mix:2 mix:3 cas:2\r\n"),
        storage("set", "mix:4", 0, 0, b"", false),
        s("get mix:4\r\n"),
        s("get  mix:4\r\n"),
        s("get mix:4   mix:3 \r\n"),
        s("delete mix:4  \r\n"),
        s("incr n:1  1  \r\n"),
        // nutcracker takes `noreply` after get keys as one more key.
        s("get mix:2 noreply\r\n"),
    ];
    for (i, c) in mix.iter().enumerate() {
        p.case(&format!("single #{i}"), Expect::Open, vec![c.clone()]);
    }
    p.case("pipelined mix", Expect::Open, mix);
    p.assert_same_contents();
}

#[test]
fn incr_decr_edges() {
    let mut p = Pair::start();
    p.case(
        "incr/decr",
        Expect::Open,
        vec![
            storage("set", "a:num", 0, 0, b"18446744073709551615", false),
            s("incr a:num 1\r\n"),
            s("get a:num\r\n"),
            s("incr a:num 18446744073709551615\r\n"),
            storage("set", "a:small", 0, 0, b"5", false),
            s("decr a:small 10\r\n"),
            s("get a:small\r\n"),
            storage("set", "a:text", 0, 0, b"hello", false),
            s("incr a:text 1\r\n"),
            s("decr a:text 1\r\n"),
            s("incr a:small 18446744073709551616\r\n"),
            s("incr a:small 0\r\n"),
            s("decr a:small 0\r\n"),
            s("incr a:nokey 1\r\n"),
            storage("set", "a:len", 0, 0, b"99", false),
            s("incr a:len 1\r\n"),
            s("get a:len\r\n"),
            storage("set", "a:sp", 0, 0, b"12 ", false),
            s("incr a:sp 1\r\n"),
            s("incr a:small -1\r\n"),
        ],
    );
    p.assert_same_contents();
}

#[test]
fn multi_get_across_servers() {
    let mut p = Pair::start();
    let on: Vec<Vec<String>> = (0..BACKENDS)
        .map(|i| p.keys_on(i, &format!("mg{i}"), 4))
        .collect();
    // Present: the first two of each server; missing: the last two.
    let mut seed = Vec::new();
    for keys in &on {
        for k in &keys[..2] {
            seed.push(storage(
                "set",
                k,
                3,
                0,
                format!("val-of-{k}").as_bytes(),
                false,
            ));
        }
    }
    p.case("seed", Expect::Open, seed);
    let (a, b, c) = (&on[0], &on[1], &on[2]);
    let k = |v: &[&String]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // A missing key before a present key of the same server: nutcracker
    // hands the missing key's slot the next VALUE of that fragment.
    p.case(
        "interleave",
        Expect::Open,
        vec![
            mget("get", &k(&[&a[2], &b[0], &a[0], &c[3], &c[1], &a[1]])),
            mget("get", &k(&[&a[3], &a[2], &b[1], &b[0], &a[1]])),
            mget("gets", &k(&[&c[2], &b[0], &c[0], &a[0]])),
        ],
    );
    p.case(
        "all missing / one server / single key",
        Expect::Open,
        vec![
            mget("get", &k(&[&a[2], &b[2], &c[2]])),
            mget("get", &k(&[&a[0], &a[1], &a[2]])),
            mget("get", &k(&[&b[3]])),
            mget("get", &k(&[&b[0]])),
        ],
    );
    p.case(
        "duplicates",
        Expect::Open,
        vec![
            mget("get", &k(&[&a[0], &a[0], &b[0], &a[0], &b[2], &b[0]])),
            mget("gets", &k(&[&c[0], &c[0], &c[2], &c[2]])),
        ],
    );
    // 100 and 1000 keys, about a third missing.
    let many: Vec<String> = (0..1000).map(|i| format!("many:{i}")).collect();
    let mut seed = Vec::new();
    for (i, key) in many.iter().enumerate() {
        if i % 3 != 0 {
            seed.push(storage(
                "set",
                key,
                i as u32,
                0,
                format!("m{i}").as_bytes(),
                false,
            ));
        }
    }
    p.case("seed many", Expect::Open, seed);
    p.case(
        "100 keys",
        Expect::Open,
        vec![mget("get", &many[..100]), s("get many:1\r\n")],
    );
    p.case(
        "1000 keys",
        Expect::Open,
        vec![mget("get", &many), mget("gets", &many[500..])],
    );
    // Keys of exactly 250 bytes.
    let long: Vec<String> = (0..6).map(|i| format!("{i}{}", "L".repeat(249))).collect();
    p.case(
        "250-byte keys",
        Expect::Open,
        vec![
            storage("set", &long[0], 0, 0, b"l0", false),
            storage("set", &long[2], 0, 0, b"l2", false),
            storage("set", &long[4], 0, 0, b"l4", false),
            mget("get", &long),
            mget("get", &long[4..5]),
            format!("delete {}\r\n", long[2]).into_bytes(),
            mget("gets", &long),
        ],
    );
    p.assert_same_contents();
}

#[test]
fn noreply_runs_take_effect() {
    let mut p = Pair::start();
    p.case(
        "seed",
        Expect::Open,
        vec![
            storage("set", "nr:cas", 0, 0, b"c", false),
            storage("set", "nr:del", 0, 0, b"d", false),
        ],
    );
    p.case(
        "noreply run then gets",
        Expect::Open,
        vec![
            storage("set", "nr:1", 0, 0, b"one", true),
            storage("add", "nr:2", 0, 0, b"two", true),
            storage("add", "nr:1", 0, 0, b"not-added", true),
            storage("replace", "nr:1", 1, 0, b"ONE", true),
            storage("append", "nr:1", 0, 0, b"+a", true),
            storage("prepend", "nr:1", 0, 0, b"p+", true),
            s("cas nr:cas 0 0 4 {cas:nr:cas} noreply\r\ncas!\r\n"),
            storage("set", "nr:n", 0, 0, b"100", true),
            s("incr nr:n 11 noreply\r\n"),
            s("decr nr:n 2 noreply\r\n"),
            s("delete nr:del noreply\r\n"),
            s("touch nr:2 100000 noreply\r\n"),
            s("get nr:1 nr:2 nr:cas nr:n nr:del\r\n"),
            s("get nr:1\r\n"),
            s("delete nr:2 noreply\r\n"),
            s("get nr:2\r\n"),
        ],
    );
    p.case(
        "noreply on missing keys then a reply",
        Expect::Open,
        vec![
            s("incr nr:nokey 1 noreply\r\n"),
            s("delete nr:nokey noreply\r\n"),
            storage("replace", "nr:nokey", 0, 0, b"x", true),
            s("touch nr:nokey 10 noreply\r\n"),
            s("get nr:nokey nr:1\r\n"),
        ],
    );
    p.assert_same_contents();
}

#[test]
fn binary_values() {
    let mut p = Pair::start();
    let all: Vec<u8> = (0..=255u8).collect();
    let mut tricky = b"\r\nEND\r\n".to_vec();
    tricky.extend_from_slice(b"VALUE x 0 1\r\nz\r\nEND\r\nSTORED\r\n\0\n\r");
    p.case(
        "binary",
        Expect::Open,
        vec![
            storage("set", "bin:all", 0, 0, &all, false),
            storage("set", "bin:tricky", 0, 0, &tricky, false),
            storage("set", "bin:crlf", 0, 0, b"\r\n", false),
            storage("set", "bin:end", 0, 0, b"END", false),
            s("get bin:all\r\n"),
            s("get bin:tricky bin:crlf bin:end bin:all\r\n"),
            storage("append", "bin:tricky", 0, 0, b"\r\nEND\r\n", false),
            s("gets bin:tricky bin:crlf\r\n"),
            storage("set", "bin:nr", 0, 0, &all, true),
            s("get bin:nr\r\n"),
        ],
    );
    p.assert_same_contents();
}

#[test]
fn large_values() {
    let mut p = Pair::start();
    let mb: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let two_mib = vec![b'b'; 2 << 20];
    p.case(
        "1 MB value",
        Expect::Open,
        vec![
            storage("set", "big:1", 0, 0, &mb, false),
            s("get big:1\r\n"),
            storage("set", "big:2", 0, 0, b"small", false),
            s("get big:2 big:1 big:none\r\n"),
        ],
    );
    p.case(
        "2 MiB value (over item size) pipelined",
        Expect::Open,
        vec![
            s("get big:2\r\n"),
            storage("set", "big:3", 0, 0, &two_mib, false),
            s("get big:2\r\n"),
            storage("set", "big:4", 0, 0, b"after", false),
            s("get big:4 big:3\r\n"),
        ],
    );
    p.case(
        "2 MiB noreply then replied",
        Expect::Open,
        vec![
            storage("set", "big:5", 0, 0, &two_mib, true),
            s("get big:2 big:5\r\n"),
        ],
    );
    p.assert_same_contents();
}

#[test]
fn quit_ends_the_connection() {
    let mut p = Pair::start();
    p.case(
        "quit",
        Expect::Closes,
        vec![
            storage("set", "q:1", 0, 0, b"x", false),
            s("get q:1\r\n"),
            s("quit\r\n"),
            s("get q:1\r\n"),
            storage("set", "q:2", 0, 0, b"after-quit", false),
        ],
    );
    p.case("quit alone", Expect::Closes, vec![s("quit\r\n")]);
    p.case(
        "noreply then quit",
        Expect::Closes,
        vec![
            storage("set", "q:3", 0, 0, b"nr", true),
            s("quit\r\n"),
            s("delete q:3\r\n"),
        ],
    );
    p.case(
        "quit did not drop earlier writes",
        Expect::Open,
        vec![s("get q:1 q:2 q:3\r\n")],
    );
    p.assert_same_contents();
}

/// Inputs nutcracker closes the client connection on, each after a valid
/// request (whose reply must still be compared) and before another.
#[test]
fn malformed_inputs_close() {
    let mut p = Pair::start();
    let k251 = "k".repeat(251);
    let vectors: Vec<(&str, Vec<u8>)> = vec![
        ("uppercase GET", s("GET mal:1\r\n")),
        ("uppercase SET", s("SET mal:1 0 0 1\r\nx\r\n")),
        ("DELETE", s("DELETE mal:1\r\n")),
        ("get 251-byte key", format!("get {k251}\r\n").into_bytes()),
        (
            "multi-get 251-byte key",
            format!("get a {k251}\r\n").into_bytes(),
        ),
        ("set 251-byte key", storage("set", &k251, 0, 0, b"x", false)),
        (
            "delete 251-byte key",
            format!("delete {k251}\r\n").into_bytes(),
        ),
        ("get no key", s("get\r\n")),
        ("get space no key", s("get \r\n")),
        ("get CR CR", s("get key\r\r")),
        ("add no args", s("add\r\n")),
        ("append missing length", s("append key 0 600\r\n")),
        ("cas missing unique", s("cas key 0 600 5 \r\n")),
        ("decr extra", s("decr key 0 extra\r\n")),
        ("decr no value", s("decr key\r\n")),
        ("delete no key", s("delete \r\n")),
        ("incr non-digit", s("incr key 0notanint\r\n")),
        (
            "data longer than length",
            s("prepend key 0 0 5\r\nvalueextra\r\n"),
        ),
        ("replace ?", s("replace key 0 9 ?\r\n")),
        ("data one byte long", s("set key 0 0 5\r\nvaluee\r\n")),
        ("data no CRLF", s("set key 0 0 2\r\nabXY")),
        ("data LF only", s("set key 0 0 2\r\nab\n")),
        ("touch missing arg", s("touch missingarg\r\n")),
        ("version extra", s("version extra\r\n")),
        ("negative exptime", s("set key 0 -1 1\r\nx\r\n")),
        ("non-digit flags", s("set key abc 0 1\r\nx\r\n")),
        ("non-digit length", s("set key 0 0 1x\r\nx\r\n")),
        ("negative length", s("set key 0 0 -1\r\n")),
        ("touch non-digit", s("touch key 1x\r\n")),
        (
            "storage extra arg",
            s("set key 0 0 1 noreply extra\r\nx\r\n"),
        ),
        ("storage bad noreply", s("set key 0 0 1 norepl\r\nx\r\n")),
        ("legacy delete time", s("delete key 0\r\n")),
        ("delete extra", s("delete key extra\r\n")),
        (
            "binary protocol",
            b"\x80\x00\x00\x03key\x00\x00\x00\x00\x00\x00\x00\x03".to_vec(),
        ),
        ("unknown command", s("foo bar\r\n")),
        ("empty line", s("\r\n")),
        ("leading space upper", s(" GET key\r\n")),
        ("cas no unique", s("cas key 0 0 1\r\nx\r\n")),
        ("incr missing key", s("incr\r\n")),
        ("quit extra", s("quit now\r\n")),
        ("tab separator", s("get\tkey\r\n")),
    ];
    for (name, bad) in vectors {
        p.case(
            name,
            Expect::Closes,
            vec![
                storage("set", "mal:ok", 0, 0, name.as_bytes(), false),
                s("get mal:ok\r\n"),
                bad,
                s("get mal:ok\r\n"),
            ],
        );
    }
    p.assert_same_contents();
}

/// A server that refuses connections: errors for its keys, and a multi-get
/// with a failed fragment closes the client connection.
#[test]
fn down_server() {
    let mut p = Pair::start_with("md5", "ketama", true);
    let down = p.keys_on_down("dn", 2);
    let up0 = p.keys_on(0, "up", 1);
    let up1 = p.keys_on(1, "up", 1);
    p.case(
        "seed",
        Expect::Open,
        vec![
            storage("set", &up0[0], 0, 0, b"u0", false),
            storage("set", &up1[0], 0, 0, b"u1", false),
        ],
    );
    p.case(
        "single-key requests to the down server",
        Expect::Open,
        vec![
            get(&[down[0].as_bytes()]),
            get(&[up0[0].as_bytes()]),
            storage("set", &down[0], 0, 0, b"x", false),
            format!("incr {} 1\r\n", down[1]).into_bytes(),
            format!("delete {}\r\n", down[1]).into_bytes(),
            storage("set", &down[0], 0, 0, b"x", true),
            format!("touch {} 1\r\n", down[0]).into_bytes(),
            get(&[up1[0].as_bytes()]),
        ],
    );
    p.case(
        "multi-get with a down fragment",
        Expect::ClosesSomewhereAfter(1),
        vec![
            get(&[up0[0].as_bytes()]),
            get(&[up0[0].as_bytes(), down[0].as_bytes(), up1[0].as_bytes()]),
            get(&[up1[0].as_bytes()]),
        ],
    );
    // Not compared: `get <down> <down>` (every fragment on the down server)
    // races inside nutcracker itself: after a half-close it sometimes sends
    // `SERVER_ERROR Connection refused` and sometimes closes with no bytes.
    p.assert_same_contents();
}

/// modula over fnv1a_64 (nutcracker's default hash): a small mix, so the
/// differential does not depend on one distribution only.
#[test]
fn modula_pool_mix() {
    let mut p = Pair::start_with("fnv1a_64", "modula", false);
    let keys: Vec<String> = (0..30).map(|i| format!("mod-{i}-{}", i * 7919)).collect();
    let mut cmds: Vec<Vec<u8>> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0)
        .map(|(i, k)| storage("set", k, i as u32, 0, k.as_bytes(), false))
        .collect();
    cmds.push(mget("get", &keys));
    cmds.push(mget("gets", &keys[5..]));
    cmds.push(s("delete mod-1-7919\r\n"));
    cmds.push(mget("get", &keys[..4]));
    p.case("modula mix", Expect::Open, cmds);
    p.assert_same_contents();
}
