//! Differential tests: the same byte streams go to nutcracker (the oracle) and
//! to ncproxy, and must get identical bytes back, including whether and when
//! the connection is closed.
//!
//! Each test starts a [`Pair`]: two separate but identically configured
//! backend sets (3 real redis-servers each) behind nutcracker and ncproxy with
//! the same pool config. Servers carry explicit names (`127.0.0.1:P:1 s1`), so
//! key placement is identical although the ports differ, and at the end of a
//! test the backends of both sides must hold the same keys.
//!
//! Every case is a list of commands, sent three ways to each proxy:
//! - **whole**: all bytes in one write, then read until every command has a
//!   reply or the proxy closed, plus a short grace period that catches extra
//!   bytes or a late close;
//! - **paced**: one byte per write with a tiny pause (large commands: the
//!   first and last bytes one at a time, the middle in odd-sized pieces), and
//!   at each command boundary a wait for that command's reply or the close.
//!   The outcome records after which command the proxy closed;
//! - **half-close**: all bytes in one write followed by a write shutdown
//!   (FIN); the proxy must answer what it got and then close.
//!
//! `NCPROXY_BIN=/usr/sbin/nutcracker cargo test --test differential` runs the
//! oracle on both sides (validates the tests themselves); `NC_DIFF_SHOW=1`
//! prints what the oracle answered to every case (with `--nocapture`).

use nc_harness::{
    count_replies, diff_bytes, escape_bytes, ncproxy_bin, resp_cmd, Fill, ListenAddr, Ncproxy,
    Nutcracker, PoolConfig, ProxyProcess, RawConn, RedisServer,
};
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

/// `cmd!("SET", key, value)`: a RESP multibulk from anything `AsRef<[u8]>`.
macro_rules! cmd {
    ($($a:expr),+ $(,)?) => {
        resp_cmd(&[$(AsRef::<[u8]>::as_ref(&$a)),+])
    };
}

/// What the oracle is expected to do with a case (checks the test itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A complete reply for every command, connection left open.
    Open,
    /// The connection is closed (replies before it are compared, not fixed).
    Closes,
    /// The last command is incomplete: every other one is answered and the
    /// connection stays open (closes after a half-close).
    Partial,
}

/// What one proxy did with one case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    bytes: Vec<u8>,
    closed: bool,
    /// Paced mode: index of the command after (or during) which the proxy
    /// was seen to close.
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
    backends: Vec<RedisServer>,
}

/// nutcracker and ncproxy, each with its own identically configured backends.
struct Pair {
    reference: Side,
    subject: Side,
    cases: usize,
}

/// How a side is wired.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wiring {
    /// TCP listener, TCP backends.
    Tcp,
    /// Unix socket listener, unix socket backends.
    Unix,
}

fn pool_for(
    backends: &[RedisServer],
    wiring: Wiring,
    opts: &dyn Fn(PoolConfig) -> PoolConfig,
) -> String {
    let port = nc_harness::free_port().expect("free port");
    let mut pool = PoolConfig::redis("diff", port)
        .hash("fnv1a_64")
        .distribution("ketama");
    if wiring == Wiring::Unix {
        pool = pool.listen("{dir}/proxy.sock 0600");
    }
    for (i, b) in backends.iter().enumerate() {
        let name = format!("s{}", i + 1);
        pool = match wiring {
            Wiring::Tcp => pool.server(b.addr(), 1, Some(&name)),
            Wiring::Unix => pool.server(
                b.unix_socket().expect("unix socket").display(),
                1,
                Some(&name),
            ),
        };
    }
    opts(pool).render()
}

fn backends(args: &[&str], wiring: Wiring) -> Vec<RedisServer> {
    (0..BACKENDS)
        .map(|_| match wiring {
            Wiring::Tcp => RedisServer::start_with(args),
            Wiring::Unix => RedisServer::start_unix(args),
        })
        .map(|r| r.expect("start redis-server"))
        .collect()
}

impl Pair {
    fn start() -> Pair {
        Self::start_with(&|p| p, &[])
    }

    /// `opts` adjusts the pool (hash, auth, db...); `backend_args` go to
    /// every redis-server.
    fn start_with(opts: &dyn Fn(PoolConfig) -> PoolConfig, backend_args: &[&str]) -> Pair {
        Self::start_wired(opts, backend_args, Wiring::Tcp)
    }

    fn start_wired(
        opts: &dyn Fn(PoolConfig) -> PoolConfig,
        backend_args: &[&str],
        wiring: Wiring,
    ) -> Pair {
        Self::start_custom(&|b| pool_for(b, wiring, opts), backend_args, wiring)
    }

    /// `render` writes the whole YAML for one side's backends.
    fn start_custom(
        render: &dyn Fn(&[RedisServer]) -> String,
        backend_args: &[&str],
        wiring: Wiring,
    ) -> Pair {
        let ref_backends = backends(backend_args, wiring);
        let subj_backends = backends(backend_args, wiring);
        let ref_proxy = Nutcracker::start(&render(&ref_backends))
            .expect("start nutcracker (apt-get install nutcracker)");
        let bin = ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"));
        let subj_proxy = Ncproxy::start(&bin, &render(&subj_backends), &[]).expect("start ncproxy");
        Pair {
            reference: Side {
                proxy: ref_proxy,
                backends: ref_backends,
            },
            subject: Side {
                proxy: subj_proxy,
                backends: subj_backends,
            },
            cases: 0,
        }
    }

    /// Sends `cmds` to both proxies (whole, paced, half-close) and compares.
    #[track_caller]
    fn case(&mut self, name: &str, expect: Expect, cmds: Vec<Vec<u8>>) {
        self.case_on(0, name, expect, cmds);
    }

    /// [`case`](Self::case) on the `pool`th listen address (config order).
    #[track_caller]
    fn case_on(&mut self, pool: usize, name: &str, expect: Expect, cmds: Vec<Vec<u8>>) {
        self.cases += 1;
        for mode in [Mode::Whole, Mode::Paced, Mode::HalfClose] {
            let (r, s) = self.run_both(pool, mode, &cmds, expect);
            let label = format!("case `{name}` ({mode:?})");
            if std::env::var_os("NC_DIFF_SHOW").is_some() {
                eprintln!(
                    "{label}: nutcracker closed={} after={:?} \"{}\"",
                    r.closed,
                    r.closed_after,
                    escape_bytes(&r.bytes[..r.bytes.len().min(300)])
                );
            }
            check_expectation(&label, expect, mode, &r, cmds.len());
            if r != s {
                panic!("{}", describe_mismatch(&label, &cmds, &r, &s));
            }
        }
    }

    fn run_both(
        &self,
        pool: usize,
        mode: Mode,
        cmds: &[Vec<u8>],
        expect: Expect,
    ) -> (Outcome, Outcome) {
        let ra = &self.reference.proxy.listens()[pool];
        let sa = &self.subject.proxy.listens()[pool];
        thread::scope(|scope| {
            let r = scope.spawn(|| run_case(ra, mode, cmds, expect));
            let s = run_case(sa, mode, cmds, expect);
            (r.join().expect("reference runner panicked"), s)
        })
    }

    /// Both sides' backends must hold the same keys, backend by backend.
    #[track_caller]
    fn assert_same_placement(&self, db: u32) {
        let mut total = 0;
        for (i, (r, s)) in self
            .reference
            .backends
            .iter()
            .zip(&self.subject.backends)
            .enumerate()
        {
            let mut rk = r.keys(db).expect("KEYS on reference backend");
            let mut sk = s.keys(db).expect("KEYS on subject backend");
            rk.sort();
            sk.sort();
            total += rk.len();
            if rk != sk {
                let only_r: Vec<String> = rk
                    .iter()
                    .filter(|k| !sk.contains(k))
                    .take(5)
                    .map(|k| escape_bytes(&k[..k.len().min(60)]))
                    .collect();
                let only_s: Vec<String> = sk
                    .iter()
                    .filter(|k| !rk.contains(k))
                    .take(5)
                    .map(|k| escape_bytes(&k[..k.len().min(60)]))
                    .collect();
                panic!(
                    "backend s{} (db {db}) differs: nutcracker side has {} keys, ncproxy side {}; \
                     only behind nutcracker: {only_r:?}; only behind ncproxy: {only_s:?}",
                    i + 1,
                    rk.len(),
                    sk.len()
                );
            }
        }
        assert!(
            total > 0 || self.cases == 0,
            "no keys in db {db} on any backend: the cases did not reach the servers"
        );
    }
}

#[track_caller]
fn check_expectation(label: &str, expect: Expect, mode: Mode, r: &Outcome, ncmds: usize) {
    match expect {
        Expect::Open | Expect::Partial => {
            let ncmds = if expect == Expect::Partial {
                ncmds - 1
            } else {
                ncmds
            };
            let n = count_replies(&r.bytes).map(|(n, _)| n).unwrap_or(0);
            // After a half-close the proxy closes once it has answered.
            let closed_ok = r.closed == (mode == Mode::HalfClose);
            assert!(
                closed_ok && n == ncmds,
                "{label}: nutcracker (the oracle) was expected to answer all {ncmds} commands \
                 and keep the connection open, but it sent {n} replies, closed={}: \"{}\"",
                r.closed,
                escape_bytes(&r.bytes[..r.bytes.len().min(400)])
            );
        }
        Expect::Closes => assert!(
            r.closed,
            "{label}: nutcracker (the oracle) was expected to close the connection but did not: \
             \"{}\"",
            escape_bytes(&r.bytes[..r.bytes.len().min(400)])
        ),
    }
}

fn describe_mismatch(label: &str, cmds: &[Vec<u8>], r: &Outcome, s: &Outcome) -> String {
    let stream: Vec<u8> = cmds.concat();
    let mut msg = format!(
        "{label}: nutcracker and ncproxy differ\n  closed: nutcracker={} ncproxy={}\n  \
         closed after command #: nutcracker={:?} ncproxy={:?}\n",
        r.closed, s.closed, r.closed_after, s.closed_after
    );
    if let Some(d) = diff_bytes(&r.bytes, &s.bytes, 60) {
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

fn run_case(addr: &ListenAddr, mode: Mode, cmds: &[Vec<u8>], expect: Expect) -> Outcome {
    let mut c = RawConn::connect_listen(addr).expect("connect to proxy");
    let deadline = Instant::now() + CASE_CAP;
    let mut closed_after = None;
    let mut bytes = Vec::new();
    match mode {
        Mode::Whole => {
            let _ = c.send(&cmds.concat()); // a failed write means "closed"
            let n = cmds.len() - usize::from(expect == Expect::Partial);
            bytes = c.read_replies_or_eof(n, REPLY_IDLE, CASE_CAP);
        }
        Mode::HalfClose => {
            if c.send(&cmds.concat()).is_ok() {
                let _ = c.shutdown_write();
            }
            bytes = c.read_until_eof_or_idle(REPLY_IDLE, CASE_CAP);
        }
        Mode::Paced => {
            for (i, one) in cmds.iter().enumerate() {
                let before = count_replies(c.buffered()).map(|(n, _)| n).unwrap_or(0);
                if send_paced(&mut c, one).is_err() {
                    closed_after = Some(i);
                    break;
                }
                // Wait for this command's reply, or the close (an incomplete
                // last command gets only the grace period below).
                if expect == Expect::Partial && i + 1 == cmds.len() {
                    break;
                }
                let wait_end = (Instant::now() + REPLY_IDLE).min(deadline);
                loop {
                    let n = count_replies(c.buffered()).map(|(n, _)| n).unwrap_or(0);
                    if n > before || c.saw_close() {
                        break;
                    }
                    let left = wait_end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match c.read_some(left) {
                        Ok(Fill::Data(_)) => {}
                        Ok(Fill::Closed) | Ok(Fill::Idle) | Err(_) => break,
                    }
                }
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

/// One byte per write for small commands; large ones byte-wise at both ends
/// and in odd-sized pieces in the middle.
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

/// Unique values: every request carries a different one, so a reply that
/// went to the wrong request shows up as a difference.
struct Gen {
    prefix: &'static str,
    n: u64,
}

impl Gen {
    fn new(prefix: &'static str) -> Self {
        Gen { prefix, n: 0 }
    }
    fn val(&mut self) -> String {
        self.n += 1;
        format!("{}-val-{}", self.prefix, self.n)
    }
    fn num(&mut self) -> String {
        self.n += 1;
        (1000 + self.n).to_string()
    }
}

// ---------------------------------------------------------------------------

#[test]
fn pipelined_single_key_commands() {
    let mut p = Pair::start();
    let mut g = Gen::new("a");
    let (v1, v2, v3, v4) = (g.val(), g.val(), g.val(), g.val());
    let (m1, m2, m3) = (g.num(), g.num(), g.num());
    let (f1, f2) = (g.val(), g.val());
    let mix = vec![
        cmd!("SET", "str:1", v1),
        cmd!("GET", "str:1"),
        cmd!("SET", "str:2", v2),
        cmd!("APPEND", "str:2", v3),
        cmd!("GET", "str:2"),
        cmd!("STRLEN", "str:2"),
        cmd!("GETSET", "str:1", v4),
        cmd!("GETRANGE", "str:2", "2", "9"),
        cmd!("SETNX", "str:1", "nope"),
        cmd!("INCR", "cnt:1"),
        cmd!("INCRBY", "cnt:1", "41"),
        cmd!("DECRBY", "cnt:1", "2"),
        cmd!("DECR", "cnt:1"),
        cmd!("INCRBYFLOAT", "flt:1", "1.5"),
        cmd!("GET", "cnt:1"),
        cmd!("EXISTS", "str:1"),
        cmd!("EXISTS", "missing:1"),
        cmd!("EXPIRE", "str:1", "1000"),
        cmd!("TTL", "str:1"),
        cmd!("TTL", "str:2"),
        cmd!("TTL", "missing:1"),
        cmd!("PERSIST", "str:1"),
        cmd!("TTL", "str:1"),
        cmd!("SETEX", "str:3", "500", g.val()),
        cmd!("TTL", "str:3"),
        cmd!("TYPE", "str:3"),
        cmd!("HSET", "hash:1", "f1", f1, "f2", f2),
        cmd!("HGET", "hash:1", "f1"),
        cmd!("HGET", "hash:1", "nofield"),
        cmd!("HMGET", "hash:1", "f2", "zz", "f1"),
        cmd!("HGETALL", "hash:1"),
        cmd!("HINCRBY", "hash:1", "n", "7"),
        cmd!("HLEN", "hash:1"),
        cmd!("HDEL", "hash:1", "f2", "zz"),
        cmd!("HEXISTS", "hash:1", "f1"),
        cmd!("LPUSH", "list:1", g.val(), g.val(), g.val()),
        cmd!("RPUSH", "list:1", g.val()),
        cmd!("LRANGE", "list:1", "0", "-1"),
        cmd!("LLEN", "list:1"),
        cmd!("LINDEX", "list:1", "1"),
        cmd!("RPOP", "list:1"),
        cmd!("LPOP", "list:1"),
        cmd!("LRANGE", "list:1", "0", "-1"),
        cmd!("SADD", "set:1", m1, m2, m3),
        cmd!("SMEMBERS", "set:1"),
        cmd!("SCARD", "set:1"),
        cmd!("SISMEMBER", "set:1", m1),
        cmd!("SREM", "set:1", m2),
        cmd!("SMEMBERS", "set:1"),
        cmd!(
            "ZADD",
            "zset:1",
            "1",
            g.val(),
            "2.5",
            g.val(),
            "-3",
            g.val()
        ),
        cmd!("ZRANGE", "zset:1", "0", "-1", "WITHSCORES"),
        cmd!("ZINCRBY", "zset:1", "10", "a-val-1"),
        cmd!("ZCARD", "zset:1"),
        cmd!("ZREVRANGE", "zset:1", "0", "1"),
        cmd!("ZRANGEBYSCORE", "zset:1", "-inf", "+inf"),
        cmd!("PFADD", "hll:1", "a", "b", "c"),
        cmd!("PFCOUNT", "hll:1"),
        cmd!("SETRANGE", "str:2", "1", g.val()),
        cmd!("GET", "str:2"),
        cmd!("GETDEL", "str:2"),
        cmd!("DEL", "str:3"),
        cmd!("GET", "str:3"),
        cmd!("get", "str:1"),
        cmd!("sEt", "str:4", g.val()),
        cmd!("GeT", "str:4"),
    ];
    // Each command alone, then all of them as one pipeline.
    for (i, c) in mix.iter().enumerate() {
        p.case(&format!("single #{i}"), Expect::Open, vec![c.clone()]);
    }
    p.case("pipelined mix", Expect::Open, mix);
    p.assert_same_placement(0);
}

#[test]
fn wrongtype_and_server_errors_pass_through() {
    let mut p = Pair::start();
    let mut g = Gen::new("w");
    p.case(
        "wrongtype",
        Expect::Open,
        vec![
            cmd!("SET", "wt:s", g.val()),
            cmd!("LPUSH", "wt:s", g.val()),
            cmd!("HGET", "wt:s", "f"),
            cmd!("INCR", "wt:s"),
            cmd!("LPUSH", "wt:l", g.val()),
            cmd!("GET", "wt:l"),
            cmd!("MGET", "wt:l", "wt:s", "wt:none"),
            cmd!("SET", "wt:s"),
            cmd!("SET", "wt:x", g.val(), "EX", "100", "GET"),
            cmd!("SET", "wt:x", g.val(), "BOGUS"),
            cmd!("EXPIRE", "wt:x", "notanumber"),
            cmd!("ZADD", "wt:z", "nan?", "m"),
        ],
    );
    // `-BUSYKEY` starts like `-BUSY` but is an ordinary error: passed
    // through, and the server connection stays up for the requests behind it.
    p.case(
        "busykey is not busy",
        Expect::Open,
        vec![
            cmd!("SET", "wt:r", g.val()),
            cmd!("RESTORE", "wt:r", "0", "not a dump payload"),
            cmd!("GET", "wt:r"),
            cmd!("RESTORE", "wt:r2", "0", "not a dump payload"),
        ],
    );
    p.assert_same_placement(0);
}

#[test]
fn multi_key_commands_across_servers() {
    let mut p = Pair::start();
    let mut g = Gen::new("m");
    let keys: Vec<String> = (0..12).map(|i| format!("mk:{i}")).collect();
    let mut mset = vec![b"MSET".to_vec()];
    for k in &keys[..8] {
        mset.push(k.clone().into_bytes());
        mset.push(g.val().into_bytes());
    }
    let mset_refs: Vec<&[u8]> = mset.iter().map(|v| v.as_slice()).collect();
    let mset = resp_cmd(&mset_refs);
    let all: Vec<&[u8]> = std::iter::once(&b"MGET"[..])
        .chain(keys.iter().map(|k| k.as_bytes()))
        .collect();
    let mget_all = resp_cmd(&all);
    p.case("mset 8 keys", Expect::Open, vec![mset.clone()]);
    p.case(
        "mget with missing keys",
        Expect::Open,
        vec![mget_all.clone()],
    );
    p.case(
        "multi-key mix",
        Expect::Open,
        vec![
            cmd!("MGET", "mk:3", "nokey:1", "mk:0", "mk:3", "nokey:2"),
            cmd!("MGET", "nokey:1", "nokey:2", "nokey:3"),
            cmd!("MGET", "mk:1"),
            cmd!("EXISTS", "mk:0", "mk:1", "nokey:1", "mk:2"),
            cmd!("EXISTS", "nokey:1", "mk:0", "mk:1"),
            cmd!("TOUCH", "mk:0", "mk:1", "nokey:1", "mk:5"),
            cmd!("DEL", "mk:0", "nokey:1", "mk:1"),
            cmd!("UNLINK", "mk:2", "mk:3", "nokey:3", "mk:4"),
            cmd!("TOUCH", "mk:0", "mk:5", "mk:6"),
            mget_all.clone(),
            cmd!("MSET", "mk:0", g.val(), "mk:9", g.val()),
            cmd!("MSET", "mk:10", g.val()),
            cmd!("DEL", "mk:5"),
            mget_all.clone(),
            cmd!("DEL", "nokey:1", "nokey:2"),
            cmd!("UNLINK", "mk:10"),
            cmd!("TOUCH", "nokey:5"),
        ],
    );
    // Many keys in one command, spread over all servers.
    let many: Vec<String> = (0..60).map(|i| format!("many:{i}:{}", i * 7919)).collect();
    let mut args: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
    for k in &many {
        args.push(k.clone().into_bytes());
        args.push(g.val().into_bytes());
    }
    let refs: Vec<&[u8]> = args.iter().map(|v| v.as_slice()).collect();
    let big_mset = resp_cmd(&refs);
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(many.iter().map(|k| k.as_bytes()));
    mget.push(b"nokey:x");
    let big_mget = resp_cmd(&mget);
    let mut del: Vec<&[u8]> = vec![b"DEL"];
    del.extend(many.iter().step_by(2).map(|k| k.as_bytes()));
    let big_del = resp_cmd(&del);
    p.case(
        "60-key mset/mget/del",
        Expect::Open,
        vec![big_mset, big_mget.clone(), big_del, big_mget],
    );
    p.assert_same_placement(0);
}

#[test]
fn eval_and_evalsha() {
    let mut p = Pair::start();
    let mut g = Gen::new("e");
    // sha1("return KEYS[1]")
    let sha = "4a2267357833227dd98abdedb8cf24b15a986445";
    p.case(
        "eval",
        Expect::Open,
        vec![
            cmd!("EVAL", "return KEYS[1]", "1", "ev:k1"),
            cmd!("EVAL", "return {KEYS[1],ARGV[1],3}", "1", "ev:k2", g.val()),
            cmd!(
                "EVAL",
                "return redis.call('SET', KEYS[1], ARGV[1])",
                "1",
                "ev:k3",
                g.val()
            ),
            cmd!("GET", "ev:k3"),
            cmd!("EVAL", "return {KEYS[1],KEYS[2]}", "2", "ev:k1", "ev:k9"),
            cmd!("EVAL", "return redis.error_reply('boom')", "1", "ev:k1"),
            cmd!("EVAL", "return redis.status_reply('fine')", "1", "ev:k1"),
            cmd!("EVAL", "return nil", "1", "ev:k1"),
            cmd!("EVAL", "return 1", "5", "ev:k1"),
            cmd!("EVAL", "this is not lua", "1", "ev:k1"),
            cmd!("EVALSHA", sha, "1", "ev:k1"),
            cmd!("EVALSHA", sha, "1", "ev:k2"),
            cmd!(
                "evalsha",
                "ffffffffffffffffffffffffffffffffffffffff",
                "1",
                "ev:k1"
            ),
        ],
    );
    p.case(
        "eval numkeys 0 closes",
        Expect::Closes,
        vec![cmd!("EVAL", "return 1", "0")],
    );
    p.case(
        "eval numkeys 0 after requests",
        Expect::Closes,
        vec![
            cmd!("SET", "ev:k4", g.val()),
            cmd!("EVAL", "return 1", "1", "ev:k4"),
            cmd!("EVAL", "return 1", "0"),
            cmd!("GET", "ev:k4"),
        ],
    );
    p.case(
        "eval without keys closes",
        Expect::Closes,
        vec![cmd!("EVAL", "return 1", "1")],
    );
    p.case(
        "eval bad numkeys closes",
        Expect::Closes,
        vec![cmd!("EVAL", "return 1", "x", "ev:k1")],
    );
    p.assert_same_placement(0);
}

#[test]
fn ping_quit_and_auth_without_password() {
    let mut p = Pair::start();
    let mut g = Gen::new("q");
    p.case("ping", Expect::Open, vec![cmd!("PING")]);
    p.case(
        "ping pipeline",
        Expect::Open,
        vec![
            cmd!("PING"),
            cmd!("SET", "q:1", g.val()),
            cmd!("ping"),
            cmd!("GET", "q:1"),
            cmd!("PING"),
        ],
    );
    p.case(
        "auth without redis_auth",
        Expect::Open,
        vec![
            cmd!("AUTH", "x"),
            cmd!("GET", "q:1"),
            cmd!("auth", ""),
            cmd!("PING"),
        ],
    );
    p.case("quit alone", Expect::Closes, vec![cmd!("QUIT")]);
    p.case(
        "quit mid-pipeline",
        Expect::Closes,
        vec![
            cmd!("SET", "q:2", g.val()),
            cmd!("GET", "q:2"),
            cmd!("QUIT"),
            cmd!("GET", "q:2"),
            cmd!("SET", "q:3", g.val()),
        ],
    );
    p.case(
        "quit after multi-key",
        Expect::Closes,
        vec![
            cmd!("MSET", "q:4", g.val(), "q:5", g.val(), "q:6", g.val()),
            cmd!("MGET", "q:4", "q:5", "q:6", "q:7"),
            cmd!("quit"),
            cmd!("PING"),
        ],
    );
    p.assert_same_placement(0);
    // QUIT discarded nothing written before it, and nothing after it ran.
    let r = &p.reference.backends;
    let has_q3 = r
        .iter()
        .any(|b| b.cmd(&[b"EXISTS", b"q:3"]).unwrap() == b":1\r\n");
    assert!(!has_q3, "a command after QUIT reached a backend");
}

/// Commands the proxy does not support, and malformed requests: the
/// connection is closed without a reply, and replies still pending for
/// earlier pipelined requests are dropped.
fn unsupported() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("KEYS", cmd!("KEYS", "*")),
        ("INFO", cmd!("INFO")),
        ("SELECT", cmd!("SELECT", "1")),
        ("MULTI", cmd!("MULTI")),
        ("EXEC", cmd!("EXEC")),
        ("WATCH", cmd!("WATCH", "k")),
        ("SUBSCRIBE", cmd!("SUBSCRIBE", "ch")),
        ("PUBLISH", cmd!("PUBLISH", "ch", "m")),
        ("SCAN", cmd!("SCAN", "0")),
        ("ECHO", cmd!("ECHO", "hi")),
        ("RENAME", cmd!("RENAME", "a", "b")),
        ("BLPOP", cmd!("BLPOP", "l", "1")),
        ("FLUSHALL", cmd!("FLUSHALL")),
        ("CONFIG", cmd!("CONFIG", "GET", "save")),
        ("CLIENT", cmd!("CLIENT", "LIST")),
        ("MSETNX", cmd!("MSETNX", "a", "1")),
        ("SCRIPT LOAD", cmd!("SCRIPT", "LOAD", "return 1")),
        ("MOVE", cmd!("MOVE", "k", "1")),
        ("HELLO", cmd!("HELLO", "3")),
        ("DBSIZE", cmd!("DBSIZE")),
        ("COMMAND with args", cmd!("COMMAND", "COUNT")),
        ("unknown command", cmd!("NOSUCHCOMMAND", "k")),
        ("inline PING", b"PING\r\n".to_vec()),
        ("inline GET", b"GET k\r\n".to_vec()),
        ("PING with argument", cmd!("PING", "hello")),
        ("AUTH user pass", cmd!("AUTH", "user", "pass")),
        ("AUTH no args", cmd!("AUTH")),
        ("GET no key", cmd!("GET")),
        ("GET two keys", cmd!("GET", "a", "b")),
        ("HGET missing field", cmd!("HGET", "h")),
        ("LRANGE one arg", cmd!("LRANGE", "l", "0")),
        ("DEL no key", cmd!("DEL")),
        ("MGET no key", cmd!("MGET")),
        ("EXISTS no key", cmd!("EXISTS")),
        ("MSET odd", cmd!("MSET", "a", "1", "b")),
        ("MSET no args", cmd!("MSET")),
        ("QUIT with argument", cmd!("QUIT", "now")),
        ("empty multibulk", b"*0\r\n".to_vec()),
        ("null multibulk", b"*-1\r\n".to_vec()),
        ("status instead of bulk", b"*1\r\n+PING\r\n".to_vec()),
        ("null bulk argument", b"*2\r\n$3\r\nGET\r\n$-1\r\n".to_vec()),
        (
            "bad bulk length",
            b"*2\r\n$3\r\nGET\r\n$x\r\nk\r\n".to_vec(),
        ),
        (
            "bulk too short",
            b"*2\r\n$3\r\nGET\r\n$1\r\nkk\r\n".to_vec(),
        ),
        ("garbage", b"\x00\x01\x02\r\n".to_vec()),
    ]
}

#[test]
fn unsupported_commands_close_alone() {
    let mut p = Pair::start();
    for (name, c) in unsupported() {
        p.case(name, Expect::Closes, vec![c]);
    }
    // The proxies themselves keep serving new connections.
    p.case(
        "still serving",
        Expect::Open,
        vec![cmd!("SET", "u:ok", "1")],
    );
    p.assert_same_placement(0);
}

#[test]
fn unsupported_commands_close_after_pipelined_requests() {
    let mut p = Pair::start();
    let mut g = Gen::new("u");
    for (name, bad) in unsupported() {
        let k = format!("u:{name}");
        p.case(
            &format!("{name} after requests"),
            Expect::Closes,
            vec![
                cmd!("SET", k, g.val()),
                cmd!("INCR", "u:counter"),
                cmd!("MGET", k, "u:counter", "u:none"),
                cmd!("PING"),
                bad,
                cmd!("GET", k),
                cmd!("INCR", "u:counter"),
            ],
        );
    }
    p.assert_same_placement(0);
}

#[test]
fn binary_keys_and_values() {
    let mut p = Pair::start();
    let mut g = Gen::new("b");
    let all: Vec<u8> = (0..=255u8).collect();
    let mut rev = all.clone();
    rev.reverse();
    let crlf_val = format!("line1\r\nline2\r\n$5\r\n*1\r\n{}\r\n", g.val());
    p.case(
        "binary",
        Expect::Open,
        vec![
            cmd!("SET", all, rev),
            cmd!("GET", all),
            cmd!("SET", rev, all),
            cmd!("MGET", all, rev, b"\x00"),
            cmd!("SET", "bin:crlf", crlf_val),
            cmd!("GET", "bin:crlf"),
            cmd!("SET", "bin:\r\nkey\r\n", g.val()),
            cmd!("GET", "bin:\r\nkey\r\n"),
            cmd!("SET", "bin:empty", ""),
            cmd!("GET", "bin:empty"),
            cmd!("STRLEN", "bin:empty"),
            cmd!("SET", "", g.val()),
            cmd!("GET", ""),
            cmd!("MSET", "", g.val(), "bin:e2", ""),
            cmd!("MGET", "", "bin:e2", "bin:empty"),
            cmd!("HSET", "bin:h", all, rev),
            cmd!("HGETALL", "bin:h"),
            cmd!("DEL", "", "bin:e2"),
            cmd!("GET", ""),
            cmd!("SET", "bin:utf8:ключ:鍵", "значение:値"),
            cmd!("GET", "bin:utf8:ключ:鍵"),
        ],
    );
    for b in [0u8, b'\r', b'\n', b'{', b'}', b' ', 0x7f, 0x80, 0xff] {
        let key = vec![b'k', b, b'k'];
        p.case(
            &format!("byte {b:#04x} in key"),
            Expect::Open,
            vec![cmd!("SET", key, vec![b, b, b]), cmd!("GET", key)],
        );
    }
    p.assert_same_placement(0);
}

#[test]
fn large_values_and_long_pipelines() {
    let mut p = Pair::start();
    let mut g = Gen::new("l");
    let mib = |tag: &str| {
        let mut v = format!("{tag}:").into_bytes();
        let mut x: u32 = 0x1234_5678;
        while v.len() < (1 << 20) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v.push((x & 0xff) as u8);
        }
        v
    };
    let (v1, v2) = (mib("one"), mib("two"));
    p.case(
        "1 MiB values",
        Expect::Open,
        vec![
            cmd!("SET", "big:1", v1),
            cmd!("SET", "big:2", v2),
            cmd!("GET", "big:1"),
            cmd!("STRLEN", "big:2"),
            cmd!("MGET", "big:2", "big:none", "big:1"),
            cmd!("APPEND", "big:1", g.val()),
            cmd!("GETRANGE", "big:1", "-20", "-1"),
            cmd!("DEL", "big:1", "big:2"),
        ],
    );
    let mut pipe = Vec::new();
    for i in 0..100 {
        pipe.push(match i % 5 {
            0 => cmd!("SET", format!("pl:{i}"), g.val()),
            1 => cmd!("GET", format!("pl:{}", i - 1)),
            2 => cmd!("INCRBY", "pl:ctr", i.to_string()),
            3 => cmd!("MGET", format!("pl:{}", i - 3), "pl:ctr", format!("pl:{i}")),
            _ => cmd!("LPUSH", format!("pl:l{}", i % 3), g.val()),
        });
    }
    p.case("100-command pipeline", Expect::Open, pipe.clone());
    // A mbuf (16 KiB) worth of tiny commands and more, in one write.
    let mut many = Vec::new();
    for i in 0..2000 {
        many.push(cmd!("SET", format!("t:{}", i % 50), g.val()));
    }
    p.case("2000 small commands", Expect::Open, many);
    // Keys near nutcracker's limit (mbuf data size: 16384 - 48 bytes).
    let long_key = "k".repeat(16_000);
    p.case(
        "16000-byte key",
        Expect::Open,
        vec![cmd!("SET", long_key, g.val()), cmd!("GET", long_key)],
    );
    p.assert_same_placement(0);
}

#[test]
fn oversized_key_closes() {
    let mut p = Pair::start();
    // nutcracker requires a key to fit one mbuf's data area (16336 bytes).
    let ok = "k".repeat(16_335);
    let too_long = "k".repeat(16_336);
    p.case(
        "largest key",
        Expect::Open,
        vec![cmd!("SET", ok, "v"), cmd!("STRLEN", ok)],
    );
    p.case(
        "key one byte too long",
        Expect::Closes,
        vec![cmd!("SET", "ok:1", "v"), cmd!("SET", too_long, "v")],
    );
}

#[test]
fn redis_auth_pool() {
    let opts = |p: PoolConfig| p.redis_auth("s3cr#t pass");
    let mut p = Pair::start_with(&opts, &["--requirepass", "s3cr#t pass"]);
    let mut g = Gen::new("auth");
    p.case(
        "before auth",
        Expect::Open,
        vec![
            cmd!("GET", "a:1"),
            cmd!("SET", "a:1", g.val()),
            cmd!("PING"),
            cmd!("MGET", "a:1", "a:2"),
        ],
    );
    p.case(
        "wrong password",
        Expect::Open,
        vec![
            cmd!("AUTH", "wrong"),
            cmd!("GET", "a:1"),
            cmd!("AUTH", ""),
            cmd!("PING"),
        ],
    );
    p.case(
        "right password",
        Expect::Open,
        vec![
            cmd!("AUTH", "s3cr#t pass"),
            cmd!("SET", "a:1", g.val()),
            cmd!("GET", "a:1"),
            cmd!("MSET", "a:2", g.val(), "a:3", g.val()),
            cmd!("MGET", "a:1", "a:2", "a:3"),
            cmd!("PING"),
        ],
    );
    p.case(
        "right then wrong password",
        Expect::Open,
        vec![
            cmd!("AUTH", "s3cr#t pass"),
            cmd!("GET", "a:1"),
            cmd!("AUTH", "nope"),
            cmd!("GET", "a:1"),
            cmd!("AUTH", "s3cr#t pass"),
            cmd!("GET", "a:1"),
        ],
    );
    p.case(
        "unsupported before auth",
        Expect::Closes,
        vec![cmd!("GET", "a:1"), cmd!("KEYS", "*")],
    );
    p.case("quit before auth", Expect::Closes, vec![cmd!("QUIT")]);
    p.case(
        "auth with two args",
        Expect::Closes,
        vec![cmd!("AUTH", "default", "s3cr#t pass")],
    );
    p.assert_same_placement(0);
}

#[test]
fn redis_db_pool() {
    let opts = |p: PoolConfig| p.redis_db(3);
    let mut p = Pair::start_with(&opts, &[]);
    let mut g = Gen::new("db");
    p.case(
        "redis_db",
        Expect::Open,
        vec![
            cmd!("SET", "d:1", g.val()),
            cmd!("MSET", "d:2", g.val(), "d:3", g.val(), "d:4", g.val()),
            cmd!("MGET", "d:1", "d:2", "d:3", "d:4"),
            cmd!("INCR", "d:5"),
            cmd!("DEL", "d:4"),
        ],
    );
    p.assert_same_placement(3);
    for side in [&p.reference, &p.subject] {
        for b in &side.backends {
            let keys = b.keys(0).expect("KEYS in db 0");
            assert!(
                keys.is_empty(),
                "{} wrote to db 0 despite redis_db: 3",
                side.proxy.kind().label()
            );
        }
    }
}

#[test]
fn unix_socket_listener_and_backends() {
    let mut p = Pair::start_wired(&|p| p, &[], Wiring::Unix);
    let mut g = Gen::new("x");
    p.case(
        "over unix sockets",
        Expect::Open,
        vec![
            cmd!("SET", "ux:1", g.val()),
            cmd!("MSET", "ux:2", g.val(), "ux:3", g.val(), "ux:4", g.val()),
            cmd!("MGET", "ux:1", "ux:2", "ux:3", "ux:4", "ux:5"),
            cmd!("DEL", "ux:1", "ux:3"),
            cmd!("PING"),
        ],
    );
    p.case(
        "unsupported over unix sockets",
        Expect::Closes,
        vec![cmd!("GET", "ux:2"), cmd!("KEYS", "*"), cmd!("GET", "ux:2")],
    );
    p.assert_same_placement(0);
}

#[test]
fn incomplete_requests_wait_for_more_bytes() {
    let mut p = Pair::start();
    let mut g = Gen::new("i");
    let full = cmd!("SET", "inc:1", g.val());
    // Every proper prefix of a command: the proxy answers what is complete
    // and waits (or, after a half-close, closes).
    let next = cmd!("GET", "inc:1");
    for cut in [1, 4, 9, 12, next.len() - 2, next.len() - 1] {
        p.case(
            &format!("GET cut after {cut} bytes"),
            Expect::Partial,
            vec![full.clone(), next[..cut].to_vec()],
        );
    }
}

/// Writes `n` keys through both proxies and returns, per backend, the keys
/// that landed there (identical on both sides, checked).
fn keys_by_backend(p: &mut Pair, n: usize) -> Vec<Vec<String>> {
    let keys: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "fault:{:x}:{i}",
                (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            )
        })
        .collect();
    let sets = keys
        .iter()
        .map(|k| cmd!("SET", k, format!("{k}-v")))
        .collect();
    p.case("seed keys", Expect::Open, sets);
    p.assert_same_placement(0);
    p.reference
        .backends
        .iter()
        .map(|b| {
            let mut ks: Vec<String> = b
                .keys(0)
                .expect("KEYS")
                .into_iter()
                .map(|k| String::from_utf8(k).expect("ascii key"))
                .filter(|k| keys.contains(k))
                .collect();
            ks.sort();
            ks
        })
        .collect()
}

#[test]
fn dead_backend() {
    let mut p = Pair::start();
    let by = keys_by_backend(&mut p, 30);
    assert!(by.iter().all(|ks| ks.len() >= 2), "keys not spread: {by:?}");
    let (dead, live, live2) = (&by[1], &by[0], &by[2]);
    p.reference.backends[1].stop();
    p.subject.backends[1].stop();
    p.case(
        "requests to a dead backend",
        Expect::Open,
        vec![
            cmd!("GET", live[0]),
            cmd!("GET", dead[0]),
            cmd!("SET", dead[1], "x"),
            cmd!("GET", live2[0]),
            cmd!("INCR", dead[0]),
            cmd!("GET", live[1]),
        ],
    );
    p.case(
        "multi-key commands touching a dead backend",
        Expect::Open,
        vec![
            cmd!("DEL", live[0], dead[0], live2[0]),
            cmd!("MSET", live[1], "1", dead[1], "2"),
            cmd!("TOUCH", dead[0], dead[1]),
            cmd!("GET", live[1]),
        ],
    );
    p.case(
        "mget touching a dead backend",
        Expect::Closes,
        vec![
            cmd!("GET", live2[1]),
            cmd!("MGET", live2[1], dead[0]),
            cmd!("GET", live2[1]),
        ],
    );
}

#[test]
fn paused_backend_times_out() {
    let opts = |p: PoolConfig| p.timeout(300);
    let mut p = Pair::start_with(&opts, &[]);
    let by = keys_by_backend(&mut p, 30);
    assert!(by.iter().all(|ks| ks.len() >= 2), "keys not spread: {by:?}");
    let (slow, live) = (&by[2], &by[0]);
    p.reference.backends[2].pause().expect("SIGSTOP");
    p.subject.backends[2].pause().expect("SIGSTOP");
    p.case(
        "timeouts keep reply order",
        Expect::Open,
        vec![
            cmd!("GET", live[0]),
            cmd!("GET", slow[0]),
            cmd!("GET", live[1]),
            cmd!("SET", slow[1], "x"),
            cmd!("GET", live[0]),
        ],
    );
    p.reference.backends[2].resume().expect("SIGCONT");
    p.subject.backends[2].resume().expect("SIGCONT");
    p.case(
        "after resume",
        Expect::Open,
        vec![cmd!("GET", slow[0]), cmd!("GET", live[0])],
    );
}

#[test]
fn several_pools_in_one_config() {
    // Three pools over the same backends: different hashing, a db, and a
    // proxy password (the backends have none: the proxy's backend AUTH
    // fails and its reply is swallowed). Pools are written out of name
    // order (nutcracker sorts them).
    let render = |b: &[RedisServer]| {
        let named = |mut p: PoolConfig| {
            for (i, s) in b.iter().enumerate() {
                p = p.server(s.addr(), 1 + i as u32, Some(&format!("n{}", i + 1)));
            }
            p
        };
        let port = || nc_harness::free_port().expect("free port");
        nc_harness::render_config(&[
            named(
                PoolConfig::redis("zeta", port())
                    .hash("murmur")
                    .distribution("modula"),
            ),
            named(
                PoolConfig::redis("alpha", port())
                    .hash("md5")
                    .hash_tag("{}")
                    .redis_db(1),
            ),
            named(
                PoolConfig::redis("mid", port())
                    .hash("crc32a")
                    .redis_auth("pw"),
            ),
        ])
    };
    let mut p = Pair::start_custom(&render, &[], Wiring::Tcp);
    let mut g = Gen::new("pools");
    for pool in 0..3 {
        let mut cmds = vec![cmd!("GET", "pk:2"), cmd!("AUTH", "pw"), cmd!("PING")];
        cmds.extend([
            cmd!(
                "MSET",
                "pk:{a}:1",
                g.val(),
                "pk:2",
                g.val(),
                "pk:{a}:3",
                g.val()
            ),
            cmd!("MGET", "pk:{a}:1", "pk:2", "pk:{a}:3", "pk:4"),
            cmd!("SET", format!("pool{pool}"), g.val()),
            cmd!("GET", format!("pool{pool}")),
        ]);
        p.case_on(pool, &format!("pool #{pool}"), Expect::Open, cmds);
    }
    p.assert_same_placement(0);
    p.assert_same_placement(1);
}
