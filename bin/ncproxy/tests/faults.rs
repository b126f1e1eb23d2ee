//! Fault injection against ncproxy: real redis-servers are killed, stopped,
//! restarted and filled up while pipelines are in flight, and clients
//! misbehave (disconnect mid-pipeline, never read, send one byte at a time,
//! sit idle by the ten thousand).
//!
//! Every test uses a pool of three real backends (`s1 s2 s3`, ketama over
//! fnv1a_64 with `hash_tag: "{}"`), and the hash tag of each backend is found
//! by writing through the proxy and asking the backends. Only one backend is
//! faulted; the other two must keep serving during and after the fault.
//!
//! Requests are `SET k_i v_i` + `GET k_i` pairs with unique values, so a
//! reply delivered to the wrong request, out of order, twice or not at all is
//! caught: reply `i` is checked against request `i` (see
//! `support/faults.rs`). Each test prints
//! `integrity: sent=N replies=N checked=N mismatches=0 lost=0` (run with
//! `--nocapture`) and asserts `mismatches == 0 && lost == 0`.
//!
//! Error replies a faulted request may get are nutcracker's
//! (`-ERR <strerror>`, reference/twemproxy.md §5.6): a server EOF gives
//! `-ERR unknown`, a reset `-ERR Connection reset by peer`, a refused
//! reconnect `-ERR Connection refused`, a timeout `-ERR Connection timed
//! out`, an `-OOM` reply `-ERR Invalid argument`.
//!
//! `NCPROXY_BIN=/usr/sbin/nutcracker cargo test --test faults` runs the
//! tests against the oracle (validates their expectations; `--workers` is
//! then left out, and `client_that_never_reads_is_closed` fails there since
//! nutcracker has no `client_output_limit`).

#[path = "support/faults.rs"]
mod support;

use nc_harness::{ncproxy_bin, Ncproxy, Nutcracker, PoolConfig, ProxyProcess, RedisServer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use support::{
    assert_serving, check, cmd, connect, discover_tags, raise_nofile, run_pipeline, set_get_pairs,
    vm_rss_kib, Fault, Integrity, Json, Req, RunOpts, Want, OK,
};

/// The backend every test faults (index into the three).
const FAULTED: usize = 1;
/// The backends that must keep serving.
const HEALTHY: [usize; 2] = [0, 2];
const ALL: [usize; 3] = [0, 1, 2];

/// What a request on a connection that died may get.
const DEATH_ERRORS: &[&str] = &[
    "ERR unknown",
    "ERR Connection reset by peer",
    "ERR Connection refused",
    "ERR Broken pipe",
];

/// Three backends behind ncproxy.
struct Rig {
    backends: Vec<RedisServer>,
    proxy: ProxyProcess,
    tags: Vec<String>,
}

impl Rig {
    /// `args[i]` go to backend `i`; `opts` adjusts the pool.
    fn start(workers: usize, args: [&[&str]; 3], opts: &dyn Fn(PoolConfig) -> PoolConfig) -> Rig {
        let backends: Vec<RedisServer> = args
            .iter()
            .map(|a| RedisServer::start_with(a).expect("start redis-server"))
            .collect();
        let yaml = pool_yaml(&backends, opts);
        let bin = ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"));
        let w = workers.to_string();
        let proxy = Ncproxy::start(&bin, &yaml, &workers_flag(&w)).expect("start ncproxy");
        let tags = discover_tags(&proxy, &backends);
        Rig {
            backends,
            proxy,
            tags,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    /// Fresh pairs on the healthy shards must all be answered correctly.
    #[track_caller]
    fn assert_healthy_shards(&self, prefix: &str) -> Integrity {
        let reqs = set_get_pairs(prefix, &self.tags, &HEALTHY, 100, None, &|_, _| 24);
        assert_serving(self.addr(), &reqs, prefix)
    }
}

/// `--workers N`, left out when `NCPROXY_BIN` replaces ncproxy (nutcracker
/// has no such flag).
fn workers_flag(n: &str) -> Vec<&str> {
    if std::env::var_os("NCPROXY_BIN").is_some_and(|v| !v.is_empty()) {
        Vec::new()
    } else {
        vec!["--workers", n]
    }
}

fn pool_yaml(backends: &[RedisServer], opts: &dyn Fn(PoolConfig) -> PoolConfig) -> String {
    let port = nc_harness::free_port().expect("free port");
    let mut pool = PoolConfig::redis("faults", port)
        .hash("fnv1a_64")
        .distribution("ketama")
        .hash_tag("{}");
    for (i, b) in backends.iter().enumerate() {
        pool = pool.server(b.addr(), 1, Some(&format!("s{}", i + 1)));
    }
    opts(pool).render()
}

/// Commands `backend` has processed so far (`INFO stats`).
fn processed(backend: &RedisServer) -> Option<usize> {
    let info = backend.cmd(&[b"INFO", b"stats"]).ok()?;
    let text = String::from_utf8_lossy(&info);
    text.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))?
        .trim()
        .parse()
        .ok()
}

/// Polls `check` (bounded) until it holds; false on timeout.
fn eventually_true(cap: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + cap;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_micros(500));
    }
    true
}

// ---------------------------------------------------------------------------

/// SIGKILL a backend while `clients` pipelines of 10 000 requests each are
/// in flight.
fn kill_mid_pipeline(workers: usize, clients: usize) {
    let name = format!("kill_backend_mid_pipeline workers={workers} clients={clients}");
    let mut rig = Rig::start(workers, [&[], &[], &[]], &|p| p);
    const PAIRS: usize = 5_000; // 10 000 requests per client
    let plans: Vec<Vec<Req>> = (0..clients)
        .map(|c| {
            set_get_pairs(
                &format!("kill{c}"),
                &rig.tags,
                &ALL,
                PAIRS,
                Some((FAULTED, Fault::Maybe)),
                &|_, _| 32,
            )
        })
        .collect();
    let progress = AtomicUsize::new(0);
    // Paced writes keep the pipeline in flight for a while.
    let opts = RunOpts {
        batch: 500,
        pause: Duration::from_millis(2),
        ..RunOpts::default()
    };
    let addr = rig.addr();
    let mut killed_at = None;
    let runs = thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|plan| {
                let (opts, progress) = (&opts, &progress);
                s.spawn(move || run_pipeline(addr, plan, opts, Some(progress)))
            })
            .collect();
        // Once the backend has served a fifth of its share: SIGSTOP it so
        // the requests that keep coming pile up in flight (written to its
        // socket, unanswered), then SIGKILL it with them outstanding. Its own
        // counter, not the clients' replies: on `--io uring` replies can lag
        // the requests enough that, by a fifth of the replies, the backend
        // had already answered everything.
        let share = clients * PAIRS * 2 / ALL.len();
        let hit = eventually_true(Duration::from_secs(20), || {
            processed(&rig.backends[FAULTED]).is_some_and(|n| n >= share / 5)
        });
        killed_at = Some(progress.load(Ordering::Relaxed));
        rig.backends[FAULTED].pause().expect("SIGSTOP");
        thread::sleep(Duration::from_millis(30));
        rig.backends[FAULTED].stop();
        assert!(hit, "the pipeline did not progress before the kill");
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread panicked"))
            .collect::<Vec<_>>()
    });
    let mut total = Integrity::default();
    for (plan, run) in plans.iter().zip(&runs) {
        let it = check(plan, run, DEATH_ERRORS);
        total.merge(&it);
        assert!(
            !run.closed && run.write_error.is_none(),
            "[{name}] the proxy closed a client connection (closed={}, write error {:?})",
            run.closed,
            run.write_error
        );
    }
    total.print(&name);
    println!(
        "  kill after {} replies of {}; ok replies from the killed shard before it died: {}",
        killed_at.unwrap_or(0),
        clients * PAIRS * 2,
        total.ok_on(FAULTED)
    );
    total.assert_clean(&name);
    assert!(
        total.errors_on(FAULTED) > 0,
        "[{name}] no request to the killed backend got an error: the kill did not hit the \
         pipeline"
    );
    assert!(
        total.errors.keys().any(|e| e != "ERR Connection refused"),
        "[{name}] no in-flight request failed with the connection (only refused reconnects: \
         {:?})",
        total.errors
    );
    for s in HEALTHY {
        assert_eq!(total.errors_on(s), 0, "[{name}] a healthy shard got errors");
    }
    // Afterwards: the healthy shards serve, and the dead one gets one
    // `-ERR Connection refused` per request, in order.
    rig.assert_healthy_shards("kill-after");
    let reqs = set_get_pairs(
        "kill-dead",
        &rig.tags,
        &ALL,
        60,
        Some((FAULTED, Fault::Always)),
        &|_, _| 16,
    );
    let run = run_pipeline(addr, &reqs, &RunOpts::default(), None);
    let it = check(&reqs, &run, &["ERR Connection refused"]);
    it.print(&format!("{name} (after the kill)"));
    it.assert_clean(&name);
}

#[test]
fn kill_backend_mid_pipeline_one_worker() {
    kill_mid_pipeline(1, 1);
}

#[test]
fn kill_backend_mid_pipeline_two_workers() {
    kill_mid_pipeline(2, 4);
}

/// SIGSTOP a backend with `timeout: 300`: its requests time out after
/// ~300 ms, the other shards keep serving; after SIGCONT it serves again.
fn stalled_backend(workers: usize) {
    let name = &format!("stalled_backend_times_out workers={workers}");
    let mut rig = Rig::start(workers, [&[], &[], &[]], &|p| p.timeout(300));
    let addr = rig.addr();
    rig.backends[FAULTED].pause().expect("SIGSTOP");
    let stalled = set_get_pairs(
        "stall",
        &rig.tags,
        &ALL,
        60,
        Some((FAULTED, Fault::Always)),
        &|_, _| 24,
    );
    let others = set_get_pairs("stall-other", &rig.tags, &HEALTHY, 200, None, &|_, _| 24);
    let (run, other_run) = thread::scope(|s| {
        let h = s.spawn(|| run_pipeline(addr, &stalled, &RunOpts::default(), None));
        // Another client on the healthy shards, while the backend is stopped.
        thread::sleep(Duration::from_millis(20));
        let o = run_pipeline(addr, &others, &RunOpts::default(), None);
        (h.join().expect("client thread"), o)
    });
    // Still stopped here: the other client finished without it.
    assert!(rig.backends[FAULTED].is_running());
    rig.backends[FAULTED].resume().expect("SIGCONT");

    let it = check(&stalled, &run, &["ERR Connection timed out"]);
    let other = check(&others, &other_run, &[]);
    it.print(name);
    other.print(&format!("{name} (healthy shards, concurrent)"));
    it.assert_clean(name);
    other.assert_clean(name);
    let on_stalled = stalled.iter().filter(|r| r.shard == FAULTED).count();
    assert_eq!(
        it.errors_on(FAULTED),
        on_stalled,
        "every request to the stalled backend must time out"
    );
    // The first reply of the stalled shard: about one timeout after sending.
    let first = stalled
        .iter()
        .position(|r| r.shard == FAULTED)
        .expect("a stalled request");
    let t = run.arrival[first];
    println!(
        "  first timeout reply after {t:?}; healthy-shard client done in {:?}",
        other_run.elapsed
    );
    assert!(
        t >= Duration::from_millis(250) && t <= Duration::from_secs(3),
        "the timeout reply came after {t:?}, expected ~300 ms (250 ms..3 s)"
    );
    assert!(
        other_run.elapsed < Duration::from_secs(2),
        "the healthy shards were slow while one backend was stopped: {:?}",
        other_run.elapsed
    );
    // Resumed: every shard serves again (fresh keys: the stalled SETs may
    // still run on the resumed server).
    let reqs = set_get_pairs("stall-after", &rig.tags, &ALL, 100, None, &|_, _| 24);
    let after = assert_serving(addr, &reqs, name);
    after.print(&format!("{name} (after SIGCONT)"));
}

#[test]
fn stalled_backend_times_out_one_worker() {
    stalled_backend(1);
}

#[test]
fn stalled_backend_times_out_two_workers() {
    stalled_backend(2);
}

/// Kill a backend, check its requests fail and the others serve, start a new
/// redis-server on the same port, and check it serves again.
#[test]
fn restarted_backend_serves_again() {
    let name = "restarted_backend_serves_again";
    let mut rig = Rig::start(1, [&[], &[], &[]], &|p| p);
    let addr = rig.addr();
    let before = set_get_pairs("rs-before", &rig.tags, &ALL, 100, None, &|_, _| 24);
    let mut total = assert_serving(addr, &before, name);
    let port = rig.backends[FAULTED].port();
    rig.backends[FAULTED].stop();
    // Let the proxy see the EOF of its idle connection.
    thread::sleep(Duration::from_millis(50));
    let down = set_get_pairs(
        "rs-down",
        &rig.tags,
        &ALL,
        60,
        Some((FAULTED, Fault::Always)),
        &|_, _| 24,
    );
    let run = run_pipeline(addr, &down, &RunOpts::default(), None);
    let it = check(&down, &run, DEATH_ERRORS);
    it.print(&format!("{name} (backend down)"));
    it.assert_clean(name);
    total.merge(&it);

    rig.backends[FAULTED]
        .restart()
        .expect("restart redis-server");
    assert_eq!(
        rig.backends[FAULTED].port(),
        port,
        "restarted on another port"
    );
    // The first request after the restart must already succeed: the proxy
    // reconnects lazily on the next request, as nutcracker does.
    let after = set_get_pairs(
        "rs-after",
        &rig.tags,
        &[FAULTED, 0, 2],
        150,
        None,
        &|_, _| 24,
    );
    let run = run_pipeline(addr, &after, &RunOpts::default(), None);
    let it = check(&after, &run, &[]);
    it.print(&format!("{name} (after restart)"));
    total.merge(&it);
    total.print(name);
    it.assert_clean(&format!("{name} (after restart)"));
    assert!(it.ok_on(FAULTED) >= 100);
}

/// Fill a backend (`maxmemory 2mb`, `noeviction`) until it answers `-OOM`:
/// nutcracker closes the server connection on `-OOM` and the request gets
/// `-ERR Invalid argument`; ncproxy must answer one error per request, in
/// order, never pass `-OOM` through, and keep the other shards serving.
#[test]
fn backend_out_of_memory() {
    let name = "backend_out_of_memory";
    let oom: &[&str] = &["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"];
    let rig = Rig::start(1, [&[], oom, &[]], &|p| p);
    let addr = rig.addr();
    let mut total = Integrity::default();
    let mut stored = None;
    let mut rounds = 0;
    // Rounds of 150 pairs with 20 KiB values on the small backend, until it
    // refuses writes (about 2 MB; bounded to 10 rounds = 10 MB).
    while total.errors_on(FAULTED) == 0 && rounds < 10 {
        let reqs = set_get_pairs(
            &format!("oom{rounds}"),
            &rig.tags,
            &ALL,
            150,
            Some((FAULTED, Fault::Maybe)),
            &|_, shard| if shard == FAULTED { 20 * 1024 } else { 32 },
        );
        let run = run_pipeline(addr, &reqs, &RunOpts::default(), None);
        let it = check(&reqs, &run, &["ERR Invalid argument"]);
        it.assert_clean(&format!("{name} round {rounds}"));
        if stored.is_none() {
            // A value the full backend still holds (reads work under OOM):
            // a SET answered +OK whose GET returned the value.
            stored = (0..reqs.len())
                .step_by(2)
                .find(|&i| {
                    reqs[i].shard == FAULTED
                        && run.replies[i] == OK
                        && matches!(&reqs[i + 1].want, Want::GetAfter { value, .. }
                            if run.replies[i + 1] == support::bulk(value))
                })
                .map(|i| reqs[i + 1].clone());
        }
        total.merge(&it);
        rounds += 1;
    }
    total.print(name);
    assert!(
        total.errors_on(FAULTED) > 0,
        "[{name}] the 2 MB backend never refused a write through the proxy"
    );
    assert!(
        total.errors.keys().all(|e| e == "ERR Invalid argument"),
        "[{name}] unexpected error replies: {:?}",
        total.errors
    );
    for s in HEALTHY {
        assert_eq!(total.errors_on(s), 0, "[{name}] a healthy shard got errors");
    }
    // The full backend answers -OOM itself (the fault is real).
    let direct = rig.backends[FAULTED]
        .cmd(&[b"SET", b"direct-probe", &[b'x'; 20 * 1024]])
        .expect("direct SET");
    assert!(
        direct.starts_with(b"-OOM"),
        "the backend is not out of memory: {}",
        nc_harness::escape_bytes(&direct)
    );
    // After: the healthy shards serve; reads on the full one still work.
    rig.assert_healthy_shards("oom-after");
    if let Some(get) = stored {
        let Want::GetAfter { value, .. } = &get.want else {
            unreachable!()
        };
        let mut c = rig.proxy.connect().expect("connect");
        c.send(&get.bytes).expect("send GET");
        let r = c
            .read_exact_reply_bytes(Duration::from_secs(5))
            .expect("GET reply");
        assert_eq!(
            r,
            support::bulk(value),
            "[{name}] a value stored before the OOM cannot be read back"
        );
    }
}

/// A client sends 5000 requests, reads 100 replies and disconnects; the
/// replies still in flight must be swallowed, so a new client on the same
/// proxy (same server connections) gets exactly its own replies.
#[test]
fn client_disconnects_mid_pipeline() {
    let name = "client_disconnects_mid_pipeline";
    let rig = Rig::start(1, [&[], &[], &[]], &|p| p);
    let addr = rig.addr();
    let mut total = Integrity::default();
    for round in 0..3 {
        // 2500 pairs with 512-byte values: plenty of reply bytes in flight.
        let quitter = set_get_pairs(
            &format!("quit{round}"),
            &rig.tags,
            &ALL,
            2_500,
            None,
            &|_, _| 512,
        );
        let mut s = connect(addr);
        let bytes: Vec<u8> = quitter.iter().flat_map(|r| r.bytes.clone()).collect();
        s.write_all(&bytes).expect("write 5000 requests");
        // Read exactly 100 replies, checking them, then vanish.
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        let mut got = 0;
        let mut pos = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        while got < 100 && Instant::now() < deadline {
            match s.read(&mut tmp) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                Err(_) => {}
            }
            while got < 100 {
                match nc_harness::reply_len(&buf[pos..]) {
                    Ok(Some(n)) => {
                        let Want::Exact(want) = &quitter[got].want else {
                            unreachable!()
                        };
                        assert_eq!(
                            &buf[pos..pos + n],
                            &want[..],
                            "[{name}] reply #{got} before the disconnect"
                        );
                        pos += n;
                        got += 1;
                    }
                    _ => break,
                }
            }
        }
        assert_eq!(got, 100, "[{name}] the first 100 replies did not arrive");
        drop(s);
        // At once, a new client with new unique keys.
        let fresh = set_get_pairs(
            &format!("fresh{round}"),
            &rig.tags,
            &ALL,
            1_000,
            None,
            &|_, _| 64,
        );
        let run = run_pipeline(addr, &fresh, &RunOpts::default(), None);
        let it = check(&fresh, &run, &[]);
        it.assert_clean(&format!("{name} round {round}"));
        total.merge(&it);
    }
    total.print(name);
    total.assert_clean(name);
}

/// A client that never reads its replies: with `client_output_limit:
/// 1048576` ncproxy must close it within a bounded time, its memory must stay
/// bounded, and other clients must not notice.
#[test]
fn client_that_never_reads_is_closed() {
    let name = "client_that_never_reads_is_closed";
    let rig = Rig::start(1, [&[], &[], &[]], &|p| {
        p.extra("client_output_limit", "1048576")
    });
    let addr = rig.addr();
    let pid = rig.proxy.pid();
    let big_key = format!("{{{}}}:big", rig.tags[FAULTED]);
    let big = support::unique_value("big", 0, 100 * 1024);
    let mut c = rig.proxy.connect().expect("connect");
    c.send(&cmd!("SET", big_key, big)).expect("SET big");
    assert_eq!(
        c.read_exact_reply_bytes(Duration::from_secs(5))
            .expect("+OK"),
        OK
    );
    let rss_before = vm_rss_kib(pid).unwrap_or(0);
    let stop = AtomicBool::new(false);
    let mut max_rss = rss_before;
    let mut gets = 0usize;
    let mut closed_after = None;
    let mut close_error = String::new();
    let t0 = Instant::now();
    let other = thread::scope(|s| {
        // Another client keeps working on every shard meanwhile.
        let h = s.spawn(|| {
            let mut total = Integrity::default();
            let mut round = 0;
            while !stop.load(Ordering::Relaxed) && round < 200 {
                let reqs = set_get_pairs(
                    &format!("bystander{round}"),
                    &rig.tags,
                    &ALL,
                    30,
                    None,
                    &|_, _| 24,
                );
                let run = run_pipeline(addr, &reqs, &RunOpts::default(), None);
                total.merge(&check(&reqs, &run, &[]));
                round += 1;
            }
            total
        });
        let mut hog = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        hog.set_nodelay(true).unwrap();
        hog.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let get = cmd!("GET", big_key);
        // GETs as fast as the proxy takes them, at most 2000 (200 MB of
        // replies); after that one more every 20 ms (a write is how a client
        // that never reads notices the close), for at most 15 s in total.
        // `off` is how much of the current GET is written.
        let mut off = 0;
        let mut loops = 0u64;
        while t0.elapsed() < Duration::from_secs(15) {
            loops += 1;
            if gets >= 2_000 && off == 0 {
                thread::sleep(Duration::from_millis(20));
            }
            match hog.write(&get[off..]) {
                Ok(n) => {
                    off += n;
                    if off == get.len() {
                        off = 0;
                        gets += 1;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    closed_after = Some(t0.elapsed());
                    close_error = e.to_string();
                    break;
                }
            }
            if loops % 16 == 0 {
                if let Some(r) = vm_rss_kib(pid) {
                    max_rss = max_rss.max(r);
                }
            }
        }
        if let Some(r) = vm_rss_kib(pid) {
            max_rss = max_rss.max(r);
        }
        stop.store(true, Ordering::Relaxed);
        h.join().expect("bystander thread")
    });
    other.print(&format!("{name} (bystander client)"));
    println!(
        "  hog: {gets} GETs of 100 KiB sent; closed after {closed_after:?} ({close_error}); \
         ncproxy VmRSS before={rss_before} KiB max={max_rss} KiB"
    );
    other.assert_clean(name);
    assert!(
        closed_after.is_some(),
        "[{name}] ncproxy did not close a client that never reads ({gets} GETs of 100 KiB \
         written in {:?})",
        t0.elapsed()
    );
    assert!(
        max_rss < 64 * 1024,
        "[{name}] ncproxy VmRSS reached {max_rss} KiB (limit 64 MiB)"
    );
    // And afterwards.
    let after = rig.assert_healthy_shards("hog-after");
    after.print(&format!("{name} (after)"));
}

/// A 200-request pipeline written one byte per write (TCP_NODELAY).
#[test]
fn one_byte_at_a_time() {
    let name = "one_byte_at_a_time";
    let rig = Rig::start(1, [&[], &[], &[]], &|p| p);
    let reqs = set_get_pairs("byte", &rig.tags, &ALL, 100, None, &|i, _| 8 + i % 40);
    let opts = RunOpts {
        byte_at_a_time: true,
        ..RunOpts::default()
    };
    let run = run_pipeline(rig.addr(), &reqs, &opts, None);
    let it = check(&reqs, &run, &[]);
    it.print(name);
    println!(
        "  {} bytes in {} writes, {:?}",
        reqs.iter().map(|r| r.bytes.len()).sum::<usize>(),
        reqs.iter().map(|r| r.bytes.len()).sum::<usize>(),
        run.elapsed
    );
    it.assert_clean(name);
    assert_eq!(it.replies, 200);
}

/// 10 000 idle client connections to ncproxy and to nutcracker (same
/// config): all accepted, a sample answers PING; VmRSS is reported.
#[test]
fn ten_thousand_idle_connections() {
    const CONNS: usize = 10_000;
    let soft = raise_nofile(30_000).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        soft >= (CONNS + 500) as u64,
        "RLIMIT_NOFILE is {soft}; this test needs {} (the hard limit is too low: raise it \
         with `ulimit -Hn` before running the tests)",
        CONNS + 500
    );
    let backends: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start().expect("start redis-server"))
        .collect();
    let yaml = pool_yaml(&backends, &|p| p);
    let bin = ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"));
    let mut rss = Vec::new();
    for kind in ["ncproxy", "nutcracker"] {
        let proxy = match kind {
            "ncproxy" => {
                let mut args = workers_flag("1");
                args.extend(["-i", "100"]);
                Ncproxy::start(&bin, &yaml, &args)
            }
            _ => Nutcracker::start_with(&yaml, &["-i", "100"]),
        }
        .unwrap_or_else(|e| panic!("start {kind}: {e}"));
        let base = vm_rss_kib(proxy.pid()).unwrap_or(0);
        let addr = proxy.addr();
        let t0 = Instant::now();
        let mut conns = Vec::with_capacity(CONNS);
        for i in 0..CONNS {
            let c = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("{kind}: connection #{i} failed: {e}"));
            conns.push(c);
        }
        let connect_time = t0.elapsed();
        // Every connection accepted: the gauge reaches CONNS.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut gauge = None;
        while Instant::now() < deadline {
            gauge = proxy
                .stats_json()
                .ok()
                .and_then(|t| Json::parse(&t).ok())
                .and_then(|j| {
                    j.get("faults")
                        .and_then(|p| p.get("client_connections"))
                        .and_then(Json::num)
                });
            if gauge == Some(CONNS as i64) {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            gauge,
            Some(CONNS as i64),
            "{kind}: client_connections gauge after {CONNS} connects"
        );
        // A sample answers (every 50th: 200 connections), and is not closed.
        let mut answered = 0;
        for c in conns.iter_mut().step_by(50) {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(b"*1\r\n$4\r\nPING\r\n")
                .unwrap_or_else(|e| panic!("{kind}: PING write: {e}"));
            let mut r = [0u8; 7];
            c.read_exact(&mut r)
                .unwrap_or_else(|e| panic!("{kind}: PING reply: {e}"));
            assert_eq!(&r, b"+PONG\r\n", "{kind}: PING reply");
            answered += 1;
        }
        let kib = vm_rss_kib(proxy.pid()).unwrap_or(0);
        println!(
            "  {kind}: {CONNS} connections in {connect_time:?}, {answered} sampled PINGs \
             answered, VmRSS {base} KiB idle -> {kib} KiB with {CONNS} clients"
        );
        rss.push(kib);
        drop(conns);
        drop(proxy);
    }
    println!(
        "rss_idle_10k: ncproxy={} KiB nutcracker={} KiB",
        rss[0], rss[1]
    );
    assert!(
        rss[0] < 512 * 1024,
        "ncproxy VmRSS with {CONNS} idle clients: {} KiB",
        rss[0]
    );
}
