//! Failure differential: nutcracker (the oracle) and ncproxy get the same
//! byte streams while backends fail, and must answer with the same bytes
//! (including whether the connection closed), on the same schedule.
//!
//! Same structure as `differential.rs`: two separate, identically configured
//! backend sets behind the two proxies, servers with explicit names
//! (`127.0.0.1:P:1 s1`) so placement is identical although ports differ.
//! Each step runs on both proxies at the same time (one thread each), so
//! timers (request timeout, ejection retry) run on the same schedule.
//!
//! - `slow_script_times_out`: a busy `EVAL` longer than `timeout: 400`
//!   followed by pipelined GETs on the same and another shard;
//! - `backend_down_refused`: a server whose port has nothing listening;
//! - `killed_backend_with_requests_in_flight`: SIGSTOP, requests forwarded,
//!   SIGKILL;
//! - `ejection_and_remap`: `auto_eject_hosts` with one dead server: refused,
//!   ejected (keys remap), retried after `server_retry_timeout`, ejected again;
//! - `ejection_is_shared_by_workers`: the same with four workers: failures are
//!   counted across them and every worker routes around the ejected server;
//! - `stats_json_layout_and_counters`: nutcracker's keys appear in ncproxy's
//!   stats JSON in the same order and nesting (ncproxy adds only its
//!   send-path, TLS and health-check fields) and the counters agree after the same traffic;
//! - `describe_stats_text`: `-D` output.
//!
//! `NCPROXY_BIN=/usr/sbin/nutcracker cargo test --test failure_differential`
//! runs the oracle on both sides (except `--workers`, which only ncproxy has).

#[path = "support/faults.rs"]
mod support;

use nc_harness::{
    count_replies, diff_bytes, escape_bytes, ncproxy_bin, Ncproxy, Nutcracker, PoolConfig,
    ProxyProcess, RawConn, RedisServer,
};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};
use support::{cmd, Json};

/// Longest wait for a missing reply.
const REPLY_IDLE: Duration = Duration::from_secs(3);
/// Grace period after the last reply, for extra bytes or a late close.
const GRACE: Duration = Duration::from_millis(60);
const CASE_CAP: Duration = Duration::from_secs(20);

/// A server slot in the pool: a real backend, or a port nothing listens on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Live,
    Dead,
}

struct Side {
    proxy: ProxyProcess,
    /// One per slot; `None` for a dead slot.
    backends: Vec<Option<RedisServer>>,
}

struct Pair {
    reference: Side,
    subject: Side,
}

/// What a proxy did with one case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    bytes: Vec<u8>,
    closed: bool,
}

fn render(
    slots: &[Slot],
    backends: &[Option<RedisServer>],
    dead_port: u16,
    opts: &dyn Fn(PoolConfig) -> PoolConfig,
) -> String {
    let port = nc_harness::free_port().expect("free port");
    let mut pool = PoolConfig::redis("fdiff", port)
        .hash("fnv1a_64")
        .distribution("ketama");
    for (i, (slot, b)) in slots.iter().zip(backends).enumerate() {
        let name = format!("s{}", i + 1);
        let addr = match (slot, b) {
            (Slot::Live, Some(b)) => b.addr().to_string(),
            _ => format!("127.0.0.1:{dead_port}"),
        };
        pool = pool.server(addr, 1, Some(&name));
    }
    opts(pool).render()
}

fn side_backends(slots: &[Slot]) -> Vec<Option<RedisServer>> {
    slots
        .iter()
        .map(|s| match s {
            Slot::Live => Some(RedisServer::start().expect("start redis-server")),
            Slot::Dead => None,
        })
        .collect()
}

impl Pair {
    /// `common` flags go to both proxies, `ncproxy_only` to ncproxy.
    fn start(
        slots: &[Slot],
        opts: &dyn Fn(PoolConfig) -> PoolConfig,
        common: &[&str],
        ncproxy_only: &[&str],
    ) -> Pair {
        // A reserved port nobody listens on: connecting is refused.
        let dead_port = nc_harness::free_port().expect("free port");
        let rb = side_backends(slots);
        let sb = side_backends(slots);
        let reference = Nutcracker::start_with(&render(slots, &rb, dead_port, opts), common)
            .expect("start nutcracker (apt-get install nutcracker)");
        let bin = ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"));
        let mut args: Vec<&str> = common.to_vec();
        if std::env::var_os("NCPROXY_BIN").is_none() {
            args.extend_from_slice(ncproxy_only);
        }
        let subject = Ncproxy::start(&bin, &render(slots, &sb, dead_port, opts), &args)
            .expect("start ncproxy");
        Pair {
            reference: Side {
                proxy: reference,
                backends: rb,
            },
            subject: Side {
                proxy: subject,
                backends: sb,
            },
        }
    }

    /// Sends `cmds` in one write to both proxies at once and compares the
    /// full byte streams and the close. Returns the oracle's outcome and the
    /// time each side took for its first reply.
    #[track_caller]
    fn case(&self, name: &str, cmds: &[Vec<u8>]) -> (Outcome, [Duration; 2]) {
        let bytes = cmds.concat();
        let ra = self.reference.proxy.addr();
        let sa = self.subject.proxy.addr();
        let ((r, rt), (s, st)) = thread::scope(|scope| {
            let h = scope.spawn(|| run_case(ra, &bytes, cmds.len()));
            let s = run_case(sa, &bytes, cmds.len());
            (h.join().expect("reference runner"), s)
        });
        if std::env::var_os("NC_DIFF_SHOW").is_some() {
            eprintln!(
                "case `{name}`: nutcracker closed={} first reply after {rt:?} \"{}\"",
                r.closed,
                escape_bytes(&r.bytes[..r.bytes.len().min(400)])
            );
        }
        if r != s {
            let mut msg = format!(
                "case `{name}`: nutcracker and ncproxy differ\n  closed: nutcracker={} ncproxy={}\n",
                r.closed, s.closed
            );
            if let Some(d) = diff_bytes(&r.bytes, &s.bytes, 80) {
                msg.push_str(&format!("  reply bytes: {d}\n"));
            }
            msg.push_str(&format!(
                "  nutcracker: \"{}\"\n  ncproxy:    \"{}\"\n  request: \"{}\"",
                escape_bytes(&r.bytes[..r.bytes.len().min(600)]),
                escape_bytes(&s.bytes[..s.bytes.len().min(600)]),
                escape_bytes(&bytes[..bytes.len().min(600)])
            ));
            panic!("{msg}");
        }
        (r, [rt, st])
    }
}

/// One write, then read until `n` replies or the close, plus a grace period.
/// Also returns when the first reply byte arrived.
fn run_case(addr: std::net::SocketAddr, bytes: &[u8], n: usize) -> (Outcome, Duration) {
    let mut c = RawConn::connect(addr).expect("connect to proxy");
    let t0 = Instant::now();
    let _ = c.send(bytes); // a failed write means "closed"
    let mut first = None;
    let deadline = t0 + CASE_CAP;
    let mut out = Vec::new();
    loop {
        let have = count_replies(c.buffered()).map(|(k, _)| k).unwrap_or(0);
        if have >= n || c.saw_close() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match c.read_some(REPLY_IDLE.min(left)) {
            Ok(nc_harness::Fill::Data(_)) => {
                if first.is_none() {
                    first = Some(t0.elapsed());
                }
            }
            _ => break,
        }
    }
    out.extend(c.take_buffered());
    if !c.saw_close() {
        out.extend(c.read_until_eof_or_idle(GRACE, GRACE * 4));
    }
    let closed = c.saw_close() || c.is_closed();
    out.extend(c.take_buffered());
    (Outcome { bytes: out, closed }, first.unwrap_or_default())
}

/// Writes `n` keys through both proxies and returns, per slot, the keys that
/// landed there (identical on both sides, checked). Dead slots get none.
fn keys_by_slot(p: &Pair, prefix: &str, n: usize) -> Vec<Vec<String>> {
    let keys: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{prefix}:{:x}:{i}",
                (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            )
        })
        .collect();
    let sets: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| cmd!("SET", k, format!("{k}-v")))
        .collect();
    p.case("seed keys", &sets);
    let by_side = |side: &Side| -> Vec<Vec<String>> {
        side.backends
            .iter()
            .map(|b| match b {
                None => Vec::new(),
                Some(b) => {
                    let mut ks: Vec<String> = b
                        .keys(0)
                        .expect("KEYS")
                        .into_iter()
                        .map(|k| String::from_utf8(k).expect("ascii key"))
                        .filter(|k| keys.contains(k))
                        .collect();
                    ks.sort();
                    ks
                }
            })
            .collect()
    };
    let r = by_side(&p.reference);
    let s = by_side(&p.subject);
    assert_eq!(r, s, "key placement differs between nutcracker and ncproxy");
    r
}

/// Waits until a backend answers PING (a busy script blocks it).
fn wait_idle(b: &RedisServer) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = b.cmd(&[b"PING"]) {
            if r == b"+PONG\r\n" {
                return;
            }
        }
        assert!(Instant::now() < deadline, "backend still busy after 15 s");
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------

/// A busy EVAL (> 1 s) with `timeout: 400`, followed by pipelined GETs on the
/// same shard and another: the EVAL and everything queued behind it on the
/// same server connection get `-ERR Connection timed out`, the others their
/// values.
#[test]
fn slow_script_times_out() {
    let slots = [Slot::Live; 3];
    let p = Pair::start(&slots, &|c| c.timeout(400), &[], &[]);
    let by = keys_by_slot(&p, "eval", 30);
    assert!(by.iter().all(|k| k.len() >= 3), "keys not spread: {by:?}");
    let (slow, other) = (&by[0], &by[1]);
    // ~1.2 s of Lua on this kind of machine (well under the 5 s busy limit).
    let script = "local i=0 while i<250000000 do i=i+1 end return 1";
    let cmds = vec![
        cmd!("EVAL", script, "1", slow[0]),
        cmd!("GET", slow[1]),
        cmd!("GET", other[0]),
        cmd!("GET", slow[2]),
        cmd!("GET", other[1]),
        cmd!("SET", other[2], "after-timeout"),
        cmd!("GET", other[2]),
    ];
    let (r, [rt, st]) = p.case("slow EVAL then GETs", &cmds);
    let want = b"-ERR Connection timed out\r\n";
    assert!(
        r.bytes.starts_with(want),
        "nutcracker (the oracle) did not time out the EVAL: \"{}\"",
        escape_bytes(&r.bytes)
    );
    println!("  first reply: nutcracker after {rt:?}, ncproxy after {st:?}");
    assert!(
        st >= Duration::from_millis(350) && st < Duration::from_secs(3),
        "ncproxy answered the slow EVAL after {st:?}, expected ~400 ms"
    );
    // While the scripts still run (~0.8 s left): a new server connection to
    // the busy backend times out again; the other shard answers.
    p.case(
        "busy backend, new connection",
        &[cmd!("GET", slow[1]), cmd!("GET", other[0])],
    );
    // After the scripts end, the shard serves again on a new connection.
    for side in [&p.reference, &p.subject] {
        wait_idle(side.backends[0].as_ref().expect("live"));
    }
    p.case(
        "after the script",
        &[
            cmd!("GET", slow[1]),
            cmd!("GET", other[0]),
            cmd!("GET", slow[0]),
            cmd!("GET", other[2]),
        ],
    );
}

/// A server whose port has nothing listening: `-ERR Connection refused` for
/// its keys, in order with the other servers' replies.
#[test]
fn backend_down_refused() {
    let slots = [Slot::Live, Slot::Dead, Slot::Live];
    let p = Pair::start(&slots, &|c| c, &[], &[]);
    let mut cmds = Vec::new();
    for i in 0..30 {
        let k = format!(
            "down:{:x}:{i}",
            (i as u64 + 7).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        cmds.push(cmd!("SET", k, format!("v{i}")));
        cmds.push(cmd!("GET", k));
        cmds.push(cmd!("INCR", format!("{k}:n")));
    }
    let (r, _) = p.case("pipeline over a dead server", &cmds);
    let refused = r
        .bytes
        .windows(b"-ERR Connection refused\r\n".len())
        .filter(|w| *w == b"-ERR Connection refused\r\n")
        .count();
    assert!(
        refused > 0 && !r.closed,
        "nutcracker (the oracle) refused nothing or closed: \"{}\"",
        escape_bytes(&r.bytes[..r.bytes.len().min(400)])
    );
    p.case(
        "multi-key commands touching a dead server",
        &[
            cmd!("DEL", "down:a", "down:b", "down:c", "down:d", "down:e"),
            cmd!("MSET", "down:a", "1", "down:b", "2", "down:c", "3", "down:d", "4"),
            cmd!("TOUCH", "down:a", "down:b", "down:c", "down:d"),
        ],
    );
    // An MGET with a failed fragment closes the client connection.
    let (r, _) = p.case(
        "mget touching a dead server",
        &[
            cmd!("MGET", "down:a", "down:b", "down:c", "down:d", "down:e"),
            cmd!("GET", "down:a"),
        ],
    );
    assert!(
        r.closed,
        "nutcracker (the oracle) kept the MGET connection open"
    );
}

/// A backend killed (SIGSTOP, then SIGKILL) with requests in flight: they
/// fail with the connection (`-ERR Connection reset by peer`: the killed
/// server had unread bytes), in order with the other shards' replies; the
/// next requests are refused.
#[test]
fn killed_backend_with_requests_in_flight() {
    let slots = [Slot::Live; 3];
    let mut p = Pair::start(&slots, &|c| c, &[], &[]);
    let by = keys_by_slot(&p, "kill", 30);
    assert!(by.iter().all(|k| k.len() >= 3), "keys not spread: {by:?}");
    let (doomed, a, b) = (&by[1], &by[0], &by[2]);
    for side in [&mut p.reference, &mut p.subject] {
        side.backends[1]
            .as_mut()
            .expect("live")
            .pause()
            .expect("SIGSTOP");
    }
    let cmds = [
        cmd!("GET", a[0]),
        cmd!("GET", doomed[0]),
        cmd!("SET", b[0], "kept"),
        cmd!("SET", doomed[1], "lost"),
        cmd!("GET", b[0]),
        cmd!("GET", doomed[2]),
        cmd!("GET", a[1]),
    ];
    let bytes = cmds.concat();
    let ra = p.reference.proxy.addr();
    let sa = p.subject.proxy.addr();
    let mut rc = RawConn::connect(ra).expect("connect");
    let mut sc = RawConn::connect(sa).expect("connect");
    rc.send(&bytes).expect("send");
    sc.send(&bytes).expect("send");
    // Both proxies forward everything to the stopped server, then it dies.
    thread::sleep(Duration::from_millis(200));
    for side in [&mut p.reference, &mut p.subject] {
        side.backends[1].as_mut().expect("live").stop();
    }
    let collect = |c: &mut RawConn| {
        let mut out = c.read_replies_or_eof(cmds.len(), REPLY_IDLE, CASE_CAP);
        out.extend(c.read_until_eof_or_idle(GRACE, GRACE * 4));
        Outcome {
            bytes: out,
            closed: c.saw_close() || c.is_closed(),
        }
    };
    let (r, s) = (collect(&mut rc), collect(&mut sc));
    if std::env::var_os("NC_DIFF_SHOW").is_some() {
        eprintln!(
            "killed in flight: nutcracker \"{}\"",
            escape_bytes(&r.bytes)
        );
    }
    assert_eq!(
        count_replies(&r.bytes).map(|(n, _)| n).unwrap_or(0),
        cmds.len(),
        "nutcracker (the oracle) did not answer every request: \"{}\"",
        escape_bytes(&r.bytes)
    );
    assert!(
        r == s,
        "killed backend with requests in flight: nutcracker and ncproxy differ\n  \
         nutcracker (closed={}): \"{}\"\n  ncproxy (closed={}):    \"{}\"",
        r.closed,
        escape_bytes(&r.bytes),
        s.closed,
        escape_bytes(&s.bytes)
    );
    p.case(
        "after the kill",
        &[
            cmd!("GET", doomed[0]),
            cmd!("GET", a[0]),
            cmd!("GET", doomed[1]),
        ],
    );
}

/// Keys (of `n` candidates) that a pool with the same server names places on
/// slot `dead`, found with a throwaway nutcracker without ejection.
fn keys_on_dead_slot(slots: &[Slot], prefix: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let dead_port = nc_harness::free_port().expect("free port");
    let backends = side_backends(slots);
    let probe =
        Nutcracker::start(&render(slots, &backends, dead_port, &|c| c)).expect("start nutcracker");
    let keys: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{prefix}:{:x}",
                (i as u64 + 3).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            )
        })
        .collect();
    let mut c = probe.connect().expect("connect");
    let req: Vec<u8> = keys.iter().flat_map(|k| cmd!("GET", k)).collect();
    c.send(&req).expect("send");
    let replies = c
        .read_replies(n, Duration::from_secs(10))
        .expect("probe replies");
    let (mut dead, mut live) = (Vec::new(), Vec::new());
    for (k, r) in keys.into_iter().zip(replies) {
        if r == b"-ERR Connection refused\r\n" {
            dead.push(k);
        } else {
            live.push(k);
        }
    }
    (dead, live)
}

/// `auto_eject_hosts: true, server_failure_limit: 1, server_retry_timeout:
/// 2000` with one dead server: the first request to it is refused and ejects
/// it, its keys then remap to live servers, and after the retry timeout the
/// server is tried again (refused again, ejected again).
#[test]
fn ejection_and_remap() {
    let slots = [Slot::Live, Slot::Dead, Slot::Live];
    let (dead, live) = keys_on_dead_slot(&slots, "ej", 40);
    assert!(
        dead.len() >= 3 && live.len() >= 3,
        "dead={dead:?} live={live:?}"
    );
    let p = Pair::start(&slots, &|c| c.auto_eject(1, 2000), &["-i", "100"], &[]);
    let t0 = Instant::now();
    let (r, _) = p.case("first request to the dead server", &[cmd!("GET", dead[0])]);
    assert_eq!(
        r.bytes, b"-ERR Connection refused\r\n",
        "nutcracker (the oracle): first request to the dead server"
    );
    let remapped = [
        cmd!("SET", dead[0], "v0"),
        cmd!("GET", dead[0]),
        cmd!("SET", dead[1], "v1"),
        cmd!("GET", dead[1]),
        cmd!("INCR", dead[2]),
        cmd!("GET", live[0]),
        cmd!("SET", live[1], "w1"),
        cmd!("GET", live[1]),
    ];
    let (r, _) = p.case("after ejection: keys remap", &remapped);
    assert!(
        !r.bytes.windows(4).any(|w| w == b"-ERR"),
        "nutcracker (the oracle) did not remap: \"{}\"",
        escape_bytes(&r.bytes)
    );
    p.case(
        "still ejected",
        &[
            cmd!("GET", dead[0]),
            cmd!("GET", dead[1]),
            cmd!("GET", dead[2]),
        ],
    );
    // Past the retry timeout (2000 ms after the ejection): tried again.
    let retry_at = Duration::from_millis(2_400);
    thread::sleep(retry_at.saturating_sub(t0.elapsed()));
    let (r, _) = p.case("after the retry timeout", &[cmd!("GET", dead[0])]);
    assert_eq!(
        r.bytes, b"-ERR Connection refused\r\n",
        "nutcracker (the oracle): retried server"
    );
    p.case(
        "ejected again: keys remap again",
        &[
            cmd!("GET", dead[0]),
            cmd!("GET", dead[1]),
            cmd!("GET", live[1]),
        ],
    );
    // Both count two ejections of s2.
    thread::sleep(Duration::from_millis(400));
    let ejects = |side: &Side| {
        let j = Json::parse(&side.proxy.stats_json().expect("stats")).expect("stats JSON");
        let pool = j.get("fdiff").expect("pool in stats");
        (
            pool.get("server_ejects").and_then(Json::num),
            pool.get("s2")
                .and_then(|s| s.get("server_ejected_at"))
                .and_then(Json::num)
                .map(|t| t > 0),
        )
    };
    let (r, s) = (ejects(&p.reference), ejects(&p.subject));
    println!("  server_ejects / ejected_at set: nutcracker={r:?} ncproxy={s:?}");
    assert_eq!(r, (Some(2), Some(true)), "nutcracker (the oracle) stats");
    assert_eq!(s, r, "ncproxy's ejection stats differ from nutcracker's");
}

/// With several workers, a server's failures are counted across them and an
/// ejection applies to all of them, as in nutcracker's single loop. Every
/// case runs on a new connection, which SO_REUSEPORT hands to any of the four
/// workers, so per-worker counting would show up as a refused request after
/// the ejection (or one too few before it).
#[test]
fn ejection_is_shared_by_workers() {
    let slots = [Slot::Live, Slot::Dead, Slot::Live];
    let (dead, live) = keys_on_dead_slot(&slots, "ejw", 40);
    assert!(
        dead.len() >= 3 && live.len() >= 3,
        "dead={dead:?} live={live:?}"
    );
    let p = Pair::start(
        &slots,
        &|c| c.auto_eject(2, 2000),
        &["-i", "100"],
        &["--workers", "4"],
    );
    let t0 = Instant::now();
    let fail_twice = |when: &str| {
        for (i, key) in dead.iter().take(2).enumerate() {
            let (r, _) = p.case(&format!("{when}: failure {}", i + 1), &[cmd!("GET", key)]);
            assert_eq!(
                r.bytes,
                b"-ERR Connection refused\r\n",
                "nutcracker (the oracle): {when}: failure {}",
                i + 1
            );
        }
    };
    let remapped_everywhere = |when: &str| {
        for i in 0..8 {
            let (r, _) = p.case(
                &format!("{when}: connection {i}"),
                &[cmd!("GET", dead[i % dead.len()]), cmd!("GET", live[0])],
            );
            assert!(
                !r.bytes.windows(4).any(|w| w == b"-ERR"),
                "nutcracker (the oracle) did not remap: \"{}\"",
                escape_bytes(&r.bytes)
            );
        }
    };
    fail_twice("live");
    remapped_everywhere("ejected");
    // Past the retry timeout (2000 ms after the ejection): counted afresh.
    let retry_at = Duration::from_millis(2_400);
    assert!(
        t0.elapsed() < Duration::from_millis(1_900),
        "too slow to test"
    );
    thread::sleep(retry_at.saturating_sub(t0.elapsed()));
    fail_twice("retried");
    remapped_everywhere("ejected again");
    let ejects = |side: &Side| {
        let j = Json::parse(&side.proxy.stats_json().expect("stats")).expect("stats JSON");
        j.get("fdiff")
            .and_then(|pool| pool.get("server_ejects"))
            .and_then(Json::num)
    };
    thread::sleep(Duration::from_millis(400));
    let (r, s) = (ejects(&p.reference), ejects(&p.subject));
    println!("  server_ejects: nutcracker={r:?} ncproxy={s:?}");
    assert_eq!(r, Some(2), "nutcracker (the oracle) stats");
    assert_eq!(s, r, "ncproxy's ejection count differs from nutcracker's");
}

/// ncproxy's extra stats keys: top level (per worker, summed), per pool and
/// per server.
/// Top-level keys ncproxy adds only while a ring runs (`--io uring`, CI's
/// uring pass): all of them or none.
const URING_TOP_KEYS: [&str; 3] = ["uring_submits", "uring_sqes", "uring_cqes"];
const EXTRA_TOP_KEYS: [&str; 9] = [
    "wait_spins",
    "wait_spin_hits",
    "wait_parks",
    "wait_spin_us",
    "wait_wakeup_ns",
    "wait_gap_ns",
    "clients_parked",
    "client_parks",
    "client_resumes",
];
const EXTRA_POOL_KEYS: [&str; 8] = [
    "client_send_syscalls",
    "client_send_iovecs",
    "client_send_bytes",
    "client_send_partial",
    "client_send_tls_flushes",
    "client_send_tls_plain_bytes",
    "tls_handshake_failures",
    "server_readmits",
];
/// Top-level keys ncproxy adds only with `--io uring` (CI's uring pass).
const EXTRA_SERVER_KEYS: [&str; 8] = [
    "send_syscalls",
    "send_iovecs",
    "send_bytes",
    "send_partial",
    "send_tls_flushes",
    "send_tls_plain_bytes",
    "health_checks",
    "health_check_failures",
];

/// Counters compared after the same traffic (cumulative counters and gauges
/// that do not depend on the number of workers or on time).
const POOL_COUNTERS: [&str; 6] = [
    "client_eof",
    "client_err",
    "client_connections",
    "server_ejects",
    "forward_error",
    "fragments",
];
const SERVER_COUNTERS: [&str; 12] = [
    "server_eof",
    "server_err",
    "server_timedout",
    "server_connections",
    "requests",
    "request_bytes",
    "responses",
    "response_bytes",
    "in_queue",
    "in_queue_bytes",
    "out_queue",
    "out_queue_bytes",
];

/// The stats JSON: nutcracker's key paths appear in ncproxy's document in the
/// same order and nesting, ncproxy adds only its send-path keys, and the
/// counters agree after the same deterministic traffic. The traffic comes in
/// phases, compared after each, so a difference names the traffic that made
/// it.
#[test]
fn stats_json_layout_and_counters() {
    let slots = [Slot::Live, Slot::Dead, Slot::Live];
    let p = Pair::start(&slots, &|c| c, &["-i", "100"], &["--workers", "1"]);
    let mut diffs = Vec::new();

    // Phase 1: a pipeline over all servers (the dead one makes forward
    // errors) and a fragmented MGET.
    let mut cmds = Vec::new();
    for i in 0..20 {
        let k = format!(
            "st:{:x}",
            (i as u64 + 11).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        cmds.push(cmd!("SET", k, format!("value-{i}")));
        cmds.push(cmd!("GET", k));
    }
    cmds.push(cmd!("MGET", "st:a", "st:b"));
    cmds.push(cmd!("PING"));
    p.case("stats traffic", &cmds);
    let (rj, sj) = stats_pair(&p);
    check_layout(&rj, &sj, slots.len());
    let fe = rj
        .get("fdiff")
        .and_then(|p| p.get("forward_error"))
        .and_then(Json::num)
        .unwrap_or(0);
    assert!(fe > 0, "the workload made no forward errors on nutcracker");
    diffs.extend(compare_counters(
        "after a pipeline over live and dead servers",
        &rj,
        &sj,
        slots.len(),
    ));

    // Phase 2: a connection half-closed after one request (client_eof).
    for side in [&p.reference, &p.subject] {
        let mut c = side.proxy.connect().expect("connect");
        c.send(&cmd!("GET", "st:half")).expect("send");
        c.shutdown_write().expect("shutdown");
        let _ = c.read_until_eof_or_idle(Duration::from_secs(2), Duration::from_secs(5));
    }
    let (rj, sj) = stats_pair(&p);
    diffs.extend(compare_counters(
        "after a half-closed connection",
        &rj,
        &sj,
        slots.len(),
    ));

    // Phase 3: a GET forwarded, then an unsupported command in the same
    // write: the proxy closes the client (client_err) while the GET is in
    // flight, and its reply is swallowed when it arrives.
    p.case(
        "closed by the proxy",
        &[cmd!("GET", "st:x"), cmd!("KEYS", "*")],
    );
    let (rj, sj) = stats_pair(&p);
    diffs.extend(compare_counters(
        "after a client closed with a GET in flight (GET st:x + KEYS *)",
        &rj,
        &sj,
        slots.len(),
    ));
    println!(
        "  stats: {} nutcracker keys matched in order in ncproxy's document; forward_error={fe}",
        rj.key_paths().len()
    );
    assert!(
        diffs.is_empty(),
        "stats counters differ after the same traffic:\n  {}",
        diffs.join("\n  ")
    );
}

/// Both proxies' stats after nutcracker's aggregation (`-i 100`) caught up.
fn stats_pair(p: &Pair) -> (Json, Json) {
    thread::sleep(Duration::from_millis(400));
    let rj = Json::parse(&p.reference.proxy.stats_json().expect("stats")).expect("nutcracker JSON");
    let sj = Json::parse(&p.subject.proxy.stats_json().expect("stats")).expect("ncproxy JSON");
    (rj, sj)
}

/// nutcracker's key paths, in order, are ncproxy's minus its extra keys; and
/// every pool and server has all its extra keys.
#[track_caller]
fn check_layout(rj: &Json, sj: &Json, n_servers: usize) {
    let rpaths = rj.key_paths();
    let spaths = sj.key_paths();
    let extra = |path: &str| {
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [k] => EXTRA_TOP_KEYS.contains(k) || URING_TOP_KEYS.contains(k),
            [_pool, k] => EXTRA_POOL_KEYS.contains(k),
            [_pool, _server, k] => EXTRA_SERVER_KEYS.contains(k),
            _ => false,
        }
    };
    let filtered: Vec<&String> = spaths.iter().filter(|p| !extra(p)).collect();
    let rrefs: Vec<&String> = rpaths.iter().collect();
    if filtered != rrefs {
        let first = filtered
            .iter()
            .zip(&rrefs)
            .position(|(a, b)| a != b)
            .unwrap_or(filtered.len().min(rrefs.len()));
        panic!(
            "stats key layout differs at key #{first}: nutcracker {:?}, ncproxy {:?}\n  \
             nutcracker keys: {rpaths:?}\n  ncproxy keys: {spaths:?}",
            rrefs.get(first),
            filtered.get(first)
        );
    }
    let n_pools = rpaths
        .iter()
        .filter(|p| !p.contains('/') && matches!(rj.get(p), Some(Json::Obj(_))))
        .count();
    let extras: Vec<&String> = spaths.iter().filter(|p| extra(p)).collect();
    if std::env::var_os("NCPROXY_BIN").is_some() {
        return; // the oracle on both sides: no extra keys
    }
    let uring = spaths
        .iter()
        .filter(|p| URING_TOP_KEYS.contains(&p.as_str()))
        .count();
    assert!(
        uring == 0 || uring == URING_TOP_KEYS.len(),
        "some uring keys: {spaths:?}"
    );
    assert_eq!(
        extras.len(),
        EXTRA_TOP_KEYS.len()
            + uring
            + EXTRA_POOL_KEYS.len() * n_pools
            + EXTRA_SERVER_KEYS.len() * n_servers,
        "ncproxy's extra stats keys: {extras:?}"
    );
}

/// The counters that must agree; returns the differences, labelled.
fn compare_counters(phase: &str, rj: &Json, sj: &Json, n_servers: usize) -> Vec<String> {
    let mut diffs = Vec::new();
    let pool = "fdiff";
    let (rp, sp) = (rj.get(pool).expect("pool"), sj.get(pool).expect("pool"));
    for k in POOL_COUNTERS {
        let (a, b) = (rp.get(k).and_then(Json::num), sp.get(k).and_then(Json::num));
        if a != b {
            diffs.push(format!(
                "[{phase}] {pool}/{k}: nutcracker={a:?} ncproxy={b:?}"
            ));
        }
    }
    for i in 0..n_servers {
        let server = format!("s{}", i + 1);
        let (rs, ss) = (
            rp.get(&server).expect("server"),
            sp.get(&server).expect("server"),
        );
        for k in SERVER_COUNTERS {
            let (a, b) = (rs.get(k).and_then(Json::num), ss.get(k).and_then(Json::num));
            if a != b {
                diffs.push(format!(
                    "[{phase}] {pool}/{server}/{k}: nutcracker={a:?} ncproxy={b:?}"
                ));
            }
        }
    }
    for k in ["service", "version", "source"] {
        if rj.get(k) != sj.get(k) {
            diffs.push(format!(
                "[{phase}] {k}: nutcracker={:?} ncproxy={:?}",
                rj.get(k),
                sj.get(k)
            ));
        }
    }
    diffs
}

/// Runs `bin -D` (bounded) and returns its stderr.
fn describe(bin: &std::path::Path) -> String {
    let mut child = Command::new(bin)
        .arg("-D")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {} -D: {e}", bin.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} -D did not exit within 10 s", bin.display());
        }
        thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    assert!(
        out.status.success(),
        "{} -D exited with {}",
        bin.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `-D`: after the first (banner) line, nutcracker's lines appear
/// identically and in order in ncproxy's output; ncproxy's other lines are
/// marked `[ncproxy]`.
#[test]
fn describe_stats_text() {
    let reference = describe(&Nutcracker::binary().expect("nutcracker must be installed"));
    let subject = describe(&ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy")));
    let r: Vec<&str> = reference.lines().skip(1).collect();
    let s: Vec<&str> = subject.lines().skip(1).collect();
    assert!(
        r.len() > 20,
        "nutcracker -D printed too little:\n{reference}"
    );
    let mut i = 0;
    let mut extra = Vec::new();
    for line in &s {
        if i < r.len() && *line == r[i] {
            i += 1;
        } else {
            extra.push(*line);
        }
    }
    assert_eq!(
        i,
        r.len(),
        "nutcracker's -D line {:?} is missing (or out of order) in ncproxy's output:\n{subject}",
        r.get(i)
    );
    let unmarked: Vec<&&str> = extra.iter().filter(|l| !l.contains("[ncproxy]")).collect();
    assert!(
        unmarked.is_empty(),
        "ncproxy -D lines that are neither nutcracker's nor marked [ncproxy]: {unmarked:?}"
    );
    println!(
        "  -D: {} nutcracker lines matched, {} [ncproxy] lines added",
        r.len(),
        extra.len()
    );
}
