//! Shared helpers of the fault-injection tests (`tests/faults.rs`) and the
//! failure differential (`tests/failure_differential.rs`).
//!
//! - [`run_pipeline`]: a pipelined client. A writer thread sends the requests
//!   while the calling thread reads and frames the replies (with deadlines), so
//!   a fault can be injected while a long pipeline is in flight.
//! - [`Req`] / [`Want`] / [`check`]: every request carries what its reply must
//!   be (unique values: `SET k_i v_i` then `GET k_i` must return `v_i`), and
//!   [`check`] compares reply `i` with request `i`, which proves "exactly one
//!   reply per request, in order, and the right one".
//! - [`Integrity`]: the per-test counts printed as
//!   `integrity: sent=N replies=N checked=N mismatches=0 lost=0`.
//! - [`Json`]: a minimal order-preserving JSON reader for the stats documents
//!   (the test crate has no serde_json).
//! - [`discover_tags`]: which hash tag lands on which backend, found by
//!   writing through the proxy and asking every backend for its keys.
//! - [`vm_rss_kib`], [`raise_nofile`]: /proc and `prlimit(1)` helpers (the test
//!   crate has no `libc` dependency).

#![allow(dead_code)]

use nc_harness::{escape_bytes, reply_len, resp_cmd, ProxyProcess, RedisServer};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// `cmd!("SET", key, value)`: a RESP multibulk from anything `AsRef<[u8]>`.
macro_rules! cmd {
    ($($a:expr),+ $(,)?) => {
        nc_harness::resp_cmd(&[$(AsRef::<[u8]>::as_ref(&$a)),+])
    };
}
pub(crate) use cmd;

/// `$<len>\r\n<v>\r\n`.
pub(crate) fn bulk(v: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", v.len()).into_bytes();
    out.extend_from_slice(v);
    out.extend_from_slice(b"\r\n");
    out
}

pub(crate) const OK: &[u8] = b"+OK\r\n";
pub(crate) const NIL: &[u8] = b"$-1\r\n";

// ---------------------------------------------------------------------------
// Expected replies

/// What the reply to one request must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Want {
    /// Exactly these bytes.
    Exact(Vec<u8>),
    /// A request to the faulted shard while the fault may or may not have hit
    /// it yet: these bytes, or one of the allowed error replies.
    OrErr(Vec<u8>),
    /// A `GET` on the faulted shard of the value that request #`set` of the
    /// same pipeline wrote: the value, or an allowed error; a nil reply only
    /// if that `SET` did not answer `+OK` (a write acknowledged with `+OK`
    /// must not be lost).
    GetAfter { set: usize, value: Vec<u8> },
    /// One of the allowed error replies.
    Err,
}

/// One request of a pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) bytes: Vec<u8>,
    pub(crate) want: Want,
    /// The backend index the request is routed to.
    pub(crate) shard: usize,
}

/// How requests to the faulted shard are expected to fare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Correct replies or allowed errors (the fault hits during the pipeline).
    Maybe,
    /// Allowed errors only (the shard is down or stalled for the whole run).
    Always,
}

/// `n_pairs` pairs `SET {tag}:<prefix>:<i> <unique value>` + `GET` of it,
/// pair `i` on `shards[i % shards.len()]`. Values are `value_len(i)` bytes
/// (at least the unique prefix). `faulted`: a shard and how it fails.
pub(crate) fn set_get_pairs(
    prefix: &str,
    tags: &[String],
    shards: &[usize],
    n_pairs: usize,
    faulted: Option<(usize, Fault)>,
    value_len: &dyn Fn(usize, usize) -> usize,
) -> Vec<Req> {
    let mut out = Vec::with_capacity(n_pairs * 2);
    for i in 0..n_pairs {
        let shard = shards[i % shards.len()];
        let key = format!("{{{}}}:{prefix}:{i}", tags[shard]);
        let value = unique_value(prefix, i, value_len(i, shard));
        let fault = faulted.and_then(|(s, f)| (s == shard).then_some(f));
        let set_index = out.len();
        let (set_want, get_want) = match fault {
            None => (Want::Exact(OK.to_vec()), Want::Exact(bulk(&value))),
            Some(Fault::Maybe) => (
                Want::OrErr(OK.to_vec()),
                Want::GetAfter {
                    set: set_index,
                    value: value.clone(),
                },
            ),
            Some(Fault::Always) => (Want::Err, Want::Err),
        };
        out.push(Req {
            bytes: cmd!("SET", key, value),
            want: set_want,
            shard,
        });
        out.push(Req {
            bytes: cmd!("GET", key),
            want: get_want,
            shard,
        });
    }
    out
}

/// `<prefix>:v:<i>:` padded with a deterministic pattern to `len` bytes.
pub(crate) fn unique_value(prefix: &str, i: usize, len: usize) -> Vec<u8> {
    let mut v = format!("{prefix}:v:{i}:").into_bytes();
    let mut x = (i as u32).wrapping_mul(2_654_435_761) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        v.push(b'a' + (x % 26) as u8);
    }
    v
}

// ---------------------------------------------------------------------------
// Checking

/// Per-test integrity counts.
#[derive(Debug, Default, Clone)]
pub(crate) struct Integrity {
    /// Requests completely written to the proxy.
    pub(crate) sent: usize,
    /// Complete replies received.
    pub(crate) replies: usize,
    /// Replies compared with their request's expectation.
    pub(crate) checked: usize,
    /// Replies that were not what their request allows (wrong value, wrong
    /// order, an error where none is allowed, an extra reply).
    pub(crate) mismatches: usize,
    /// Requests sent that never got a reply.
    pub(crate) lost: usize,
    /// Error replies by text.
    pub(crate) errors: BTreeMap<String, usize>,
    /// Per shard: (correct non-error replies, error replies).
    pub(crate) by_shard: BTreeMap<usize, (usize, usize)>,
    /// The first few mismatches, described.
    pub(crate) examples: Vec<String>,
}

impl Integrity {
    /// Adds another client's counts.
    pub(crate) fn merge(&mut self, other: &Integrity) {
        self.sent += other.sent;
        self.replies += other.replies;
        self.checked += other.checked;
        self.mismatches += other.mismatches;
        self.lost += other.lost;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, (a, b)) in &other.by_shard {
            let e = self.by_shard.entry(*k).or_default();
            e.0 += a;
            e.1 += b;
        }
        for e in &other.examples {
            if self.examples.len() < 10 {
                self.examples.push(e.clone());
            }
        }
    }

    /// Error replies from `shard`.
    pub(crate) fn errors_on(&self, shard: usize) -> usize {
        self.by_shard.get(&shard).map_or(0, |s| s.1)
    }

    /// Correct (non-error) replies from `shard`.
    pub(crate) fn ok_on(&self, shard: usize) -> usize {
        self.by_shard.get(&shard).map_or(0, |s| s.0)
    }

    /// Prints the line the lead quotes, then the details.
    pub(crate) fn print(&self, test: &str) {
        println!(
            "integrity: sent={} replies={} checked={} mismatches={} lost={}  [{test}] \
             errors={:?} per-shard(ok,err)={:?}",
            self.sent,
            self.replies,
            self.checked,
            self.mismatches,
            self.lost,
            self.errors,
            self.by_shard
        );
    }

    /// Fails the test unless every request got its one right reply.
    #[track_caller]
    pub(crate) fn assert_clean(&self, test: &str) {
        assert!(
            self.mismatches == 0 && self.lost == 0,
            "[{test}] integrity violated: sent={} replies={} checked={} mismatches={} lost={}\n  \
             first mismatches:\n    {}",
            self.sent,
            self.replies,
            self.checked,
            self.mismatches,
            self.lost,
            self.examples.join("\n    ")
        );
    }
}

/// Whether `reply` is an error reply whose text (without `-` and CRLF) is in
/// `allowed`.
fn allowed_error(reply: &[u8], allowed: &[&str]) -> bool {
    error_text(reply).is_some_and(|t| allowed.contains(&t.as_str()))
}

/// The text of an error reply (`-ERR x\r\n` → `ERR x`).
pub(crate) fn error_text(reply: &[u8]) -> Option<String> {
    let body = reply.strip_prefix(b"-")?.strip_suffix(b"\r\n")?;
    Some(String::from_utf8_lossy(body).into_owned())
}

/// Checks reply `i` against request `i`. `allowed` are the error texts a
/// faulted request may get (e.g. `"ERR Connection refused"`).
pub(crate) fn check(reqs: &[Req], run: &RunResult, allowed: &[&str]) -> Integrity {
    let replies = &run.replies;
    let mut it = Integrity {
        sent: run.sent,
        replies: replies.len(),
        ..Integrity::default()
    };
    for (i, reply) in replies.iter().enumerate() {
        it.checked += 1;
        let Some(req) = reqs.get(i) else {
            it.mismatches += 1;
            if it.examples.len() < 10 {
                it.examples
                    .push(format!("extra reply #{i}: \"{}\"", short(reply)));
            }
            continue;
        };
        let is_err = error_text(reply).is_some();
        let ok = match &req.want {
            Want::Exact(b) => reply == b,
            Want::OrErr(b) => reply == b || allowed_error(reply, allowed),
            Want::Err => allowed_error(reply, allowed),
            Want::GetAfter { set, value } => {
                let set_acked = replies.get(*set).is_some_and(|r| r == OK);
                *reply == bulk(value)
                    || allowed_error(reply, allowed)
                    || (reply == NIL && !set_acked)
            }
        };
        if is_err {
            *it.errors
                .entry(error_text(reply).unwrap_or_default())
                .or_default() += 1;
        }
        let e = it.by_shard.entry(req.shard).or_default();
        if is_err {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
        if !ok {
            it.mismatches += 1;
            if it.examples.len() < 10 {
                it.examples.push(format!(
                    "reply #{i} (shard {}) to \"{}\": want {:?}, got \"{}\"",
                    req.shard,
                    short(&req.bytes),
                    WantShow(&req.want),
                    short(reply)
                ));
            }
        }
    }
    it.lost = run.sent.min(reqs.len()).saturating_sub(replies.len());
    it
}

fn short(b: &[u8]) -> String {
    let s = escape_bytes(&b[..b.len().min(120)]);
    if b.len() > 120 {
        format!("{s}...({} bytes)", b.len())
    } else {
        s
    }
}

struct WantShow<'a>(&'a Want);

impl fmt::Debug for WantShow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Want::Exact(b) => write!(f, "\"{}\"", short(b)),
            Want::OrErr(b) => write!(f, "\"{}\" or an allowed error", short(b)),
            Want::GetAfter { set, value } => write!(
                f,
                "\"{}\", an allowed error, or nil if request #{set} failed",
                short(&bulk(value))
            ),
            Want::Err => write!(f, "an allowed error"),
        }
    }
}

// ---------------------------------------------------------------------------
// The pipelined client

/// How [`run_pipeline`] writes and how long it waits.
#[derive(Debug, Clone)]
pub(crate) struct RunOpts {
    /// Requests per write (ignored when `byte_at_a_time`).
    pub(crate) batch: usize,
    /// Pause after each write.
    pub(crate) pause: Duration,
    /// One byte per write (TCP_NODELAY is always on).
    pub(crate) byte_at_a_time: bool,
    /// Give up when no byte arrived for this long.
    pub(crate) idle: Duration,
    /// Give up after this long in total.
    pub(crate) cap: Duration,
}

impl Default for RunOpts {
    fn default() -> Self {
        RunOpts {
            batch: 1_000,
            pause: Duration::ZERO,
            byte_at_a_time: false,
            idle: Duration::from_secs(5),
            cap: Duration::from_secs(30),
        }
    }
}

/// What a pipeline run saw.
#[derive(Debug, Default)]
pub(crate) struct RunResult {
    /// The complete replies, in arrival order.
    pub(crate) replies: Vec<Vec<u8>>,
    /// When each reply was complete, since the first write.
    pub(crate) arrival: Vec<Duration>,
    /// Requests completely written.
    pub(crate) sent: usize,
    /// A write error, if the proxy stopped accepting bytes.
    pub(crate) write_error: Option<String>,
    /// The proxy closed the connection.
    pub(crate) closed: bool,
    /// Bytes after the last complete reply (a torn reply), if any.
    pub(crate) tail: Vec<u8>,
    /// Total run time.
    pub(crate) elapsed: Duration,
}

/// Connects (TCP_NODELAY) with timeouts.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_nodelay(true).expect("TCP_NODELAY");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    s
}

/// Sends `reqs` on a new connection to `addr` from a writer thread while this
/// thread reads the replies. `progress` (if given) is incremented per reply,
/// so another thread can inject a fault after some replies.
pub(crate) fn run_pipeline(
    addr: SocketAddr,
    reqs: &[Req],
    opts: &RunOpts,
    progress: Option<&AtomicUsize>,
) -> RunResult {
    let stream = connect(addr);
    run_on(stream, reqs, opts, progress)
}

/// [`run_pipeline`] on an existing connection.
pub(crate) fn run_on(
    stream: TcpStream,
    reqs: &[Req],
    opts: &RunOpts,
    progress: Option<&AtomicUsize>,
) -> RunResult {
    let mut writer = stream.try_clone().expect("clone stream");
    let mut reader = stream;
    let start = Instant::now();
    let sent = AtomicUsize::new(0);
    let mut out = RunResult::default();
    let write_error = thread::scope(|s| {
        let sent = &sent;
        let w = s.spawn(move || -> Option<String> {
            if opts.byte_at_a_time {
                for r in reqs {
                    for b in &r.bytes {
                        if let Err(e) = writer.write_all(std::slice::from_ref(b)) {
                            return Some(e.to_string());
                        }
                        if !opts.pause.is_zero() {
                            thread::sleep(opts.pause);
                        }
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                for chunk in reqs.chunks(opts.batch.max(1)) {
                    let bytes: Vec<u8> = chunk.iter().flat_map(|r| r.bytes.clone()).collect();
                    if let Err(e) = writer.write_all(&bytes) {
                        return Some(e.to_string());
                    }
                    sent.fetch_add(chunk.len(), Ordering::Relaxed);
                    if !opts.pause.is_zero() {
                        thread::sleep(opts.pause);
                    }
                }
            }
            None
        });
        read_replies(&mut reader, reqs.len(), opts, start, progress, &mut out);
        // The reader gave up or is done: unblock a writer stuck on a proxy
        // that stopped reading.
        if !w.is_finished() {
            let _ = reader.shutdown(std::net::Shutdown::Both);
        }
        w.join().expect("writer thread panicked")
    });
    out.sent = sent.load(Ordering::Relaxed);
    out.write_error = write_error;
    out.elapsed = start.elapsed();
    out
}

fn read_replies(
    reader: &mut TcpStream,
    want: usize,
    opts: &RunOpts,
    start: Instant,
    progress: Option<&AtomicUsize>,
    out: &mut RunResult,
) {
    let deadline = start + opts.cap;
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut pos = 0;
    let mut tmp = vec![0u8; 1 << 16];
    let mut last_data = Instant::now();
    while out.replies.len() < want {
        // Frame every complete reply in the buffer.
        loop {
            match reply_len(&buf[pos..]) {
                Ok(Some(n)) => {
                    out.replies.push(buf[pos..pos + n].to_vec());
                    out.arrival.push(start.elapsed());
                    pos += n;
                    if let Some(p) = progress {
                        p.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Not RESP: record the rest as one bogus "reply" so it
                    // counts as a mismatch, and stop.
                    out.replies.push(buf[pos..].to_vec());
                    out.tail = format!("invalid RESP: {e}").into_bytes();
                    return;
                }
            }
        }
        if pos > (1 << 20) {
            buf.drain(..pos);
            pos = 0;
        }
        if out.replies.len() >= want {
            break;
        }
        let now = Instant::now();
        if now >= deadline || now.duration_since(last_data) >= opts.idle {
            break;
        }
        let wait = (deadline - now).min(Duration::from_millis(50));
        let _ = reader.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        match reader.read(&mut tmp) {
            Ok(0) => {
                out.closed = true;
                break;
            }
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                last_data = Instant::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => {
                out.closed = true;
                break;
            }
        }
    }
    out.tail = buf[pos..].to_vec();
}

/// Runs `reqs` (all `Exact`) on a fresh connection and asserts that every
/// reply is right; returns the counts.
#[track_caller]
pub(crate) fn assert_serving(addr: SocketAddr, reqs: &[Req], what: &str) -> Integrity {
    let run = run_pipeline(addr, reqs, &RunOpts::default(), None);
    let it = check(reqs, &run, &[]);
    it.assert_clean(what);
    it
}

// ---------------------------------------------------------------------------
// Placement

/// For each backend (by index), a hash tag whose keys land on it: keys
/// `{<tag>}:...` are written through `proxy` (pool with `hash_tag: "{}"`) and
/// the backends are asked which ones they hold. Panics if some backend gets
/// none of 128 candidate tags.
pub(crate) fn discover_tags(proxy: &ProxyProcess, backends: &[RedisServer]) -> Vec<String> {
    // Varied tags: fnv1a_64 over short similar strings ("t1", "t2", ...)
    // clusters on one ketama point range.
    let candidates: Vec<String> = (1..=128u64)
        .map(|i| format!("tag-{:016x}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
        .collect();
    let mut c = proxy.connect().expect("connect to proxy");
    let mut req = Vec::new();
    for t in &candidates {
        req.extend(resp_cmd(&[
            b"SET",
            format!("{{{t}}}:probe").as_bytes(),
            b"1",
        ]));
    }
    c.send(&req).expect("send probes");
    let replies = c
        .read_replies(candidates.len(), Duration::from_secs(10))
        .expect("probe replies");
    assert!(
        replies.iter().all(|r| r == OK),
        "probe SETs failed: {:?}",
        replies.iter().map(|r| escape_bytes(r)).collect::<Vec<_>>()
    );
    backends
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let keys = b.keys(0).expect("KEYS on backend");
            candidates
                .iter()
                .find(|t| keys.contains(&format!("{{{t}}}:probe").into_bytes()))
                .unwrap_or_else(|| panic!("no probe tag landed on backend #{i}"))
                .clone()
        })
        .collect()
}

// ---------------------------------------------------------------------------
// /proc and rlimits

/// VmRSS of `pid` in KiB.
pub(crate) fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// (soft, hard) RLIMIT_NOFILE of this process, from /proc/self/limits.
pub(crate) fn nofile_limits() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    let mut it = line["Max open files".len()..].split_whitespace();
    let parse = |v: Option<&str>| -> Option<u64> {
        match v? {
            "unlimited" => Some(u64::MAX),
            n => n.parse().ok(),
        }
    };
    Some((parse(it.next())?, parse(it.next())?))
}

/// Raises this process's soft RLIMIT_NOFILE to `min(hard, want)` with
/// `prlimit(1)` (util-linux; no `libc` dependency in this crate). Children
/// started afterwards inherit it. Returns the new soft limit.
pub(crate) fn raise_nofile(want: u64) -> Result<u64, String> {
    let (soft, hard) = nofile_limits().ok_or("cannot read /proc/self/limits")?;
    let target = want.min(hard);
    if soft >= target {
        return Ok(soft);
    }
    let hard_s = if hard == u64::MAX {
        "unlimited".to_string()
    } else {
        hard.to_string()
    };
    let out = std::process::Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={target}:{hard_s}"))
        .output()
        .map_err(|e| {
            format!(
                "running prlimit(1) failed ({e}); the test needs RLIMIT_NOFILE >= {want} \
                 (raise it with `ulimit -n`, or add `libc` to ncproxy-cli's dev-dependencies \
                 and call setrlimit)"
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "prlimit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let (soft, _) = nofile_limits().ok_or("cannot read /proc/self/limits")?;
    Ok(soft)
}

// ---------------------------------------------------------------------------
// Minimal JSON

/// A JSON value; objects keep their key order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Obj(Vec<(String, Json)>),
    Arr(Vec<Json>),
    Str(String),
    /// The number's text as written.
    Num(String),
    Bool(bool),
    Null,
}

impl Json {
    /// Parses one document (trailing whitespace allowed).
    pub(crate) fn parse(text: &str) -> Result<Json, String> {
        let b = text.as_bytes();
        let mut p = 0;
        let v = value(b, &mut p)?;
        ws(b, &mut p);
        if p != b.len() {
            return Err(format!("trailing bytes at {p}"));
        }
        Ok(v)
    }

    /// The member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A number member as i64.
    pub(crate) fn num(&self) -> Option<i64> {
        match self {
            Json::Num(n) => n.parse().ok(),
            _ => None,
        }
    }

    /// Every key path (`pool/server/requests`) in document order.
    pub(crate) fn key_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(v: &Json, prefix: &str, out: &mut Vec<String>) {
            if let Json::Obj(m) = v {
                for (k, v) in m {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}/{k}")
                    };
                    out.push(path.clone());
                    walk(v, &path, out);
                }
            }
        }
        walk(self, "", &mut out);
        out
    }
}

fn ws(b: &[u8], p: &mut usize) {
    while *p < b.len() && b[*p].is_ascii_whitespace() {
        *p += 1;
    }
}

fn value(b: &[u8], p: &mut usize) -> Result<Json, String> {
    ws(b, p);
    match b.get(*p) {
        Some(b'{') => {
            *p += 1;
            let mut m = Vec::new();
            ws(b, p);
            if b.get(*p) == Some(&b'}') {
                *p += 1;
                return Ok(Json::Obj(m));
            }
            loop {
                ws(b, p);
                let Json::Str(k) = string(b, p)? else {
                    unreachable!()
                };
                ws(b, p);
                if b.get(*p) != Some(&b':') {
                    return Err(format!("expected ':' at {p}"));
                }
                *p += 1;
                let v = value(b, p)?;
                m.push((k, v));
                ws(b, p);
                match b.get(*p) {
                    Some(b',') => *p += 1,
                    Some(b'}') => {
                        *p += 1;
                        return Ok(Json::Obj(m));
                    }
                    _ => return Err(format!("expected ',' or '}}' at {p}")),
                }
            }
        }
        Some(b'[') => {
            *p += 1;
            let mut a = Vec::new();
            ws(b, p);
            if b.get(*p) == Some(&b']') {
                *p += 1;
                return Ok(Json::Arr(a));
            }
            loop {
                a.push(value(b, p)?);
                ws(b, p);
                match b.get(*p) {
                    Some(b',') => *p += 1,
                    Some(b']') => {
                        *p += 1;
                        return Ok(Json::Arr(a));
                    }
                    _ => return Err(format!("expected ',' or ']' at {p}")),
                }
            }
        }
        Some(b'"') => string(b, p),
        Some(b't') if b[*p..].starts_with(b"true") => {
            *p += 4;
            Ok(Json::Bool(true))
        }
        Some(b'f') if b[*p..].starts_with(b"false") => {
            *p += 5;
            Ok(Json::Bool(false))
        }
        Some(b'n') if b[*p..].starts_with(b"null") => {
            *p += 4;
            Ok(Json::Null)
        }
        Some(c) if c.is_ascii_digit() || *c == b'-' => {
            let s = *p;
            *p += 1;
            while *p < b.len() && matches!(b[*p], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') {
                *p += 1;
            }
            Ok(Json::Num(String::from_utf8_lossy(&b[s..*p]).into_owned()))
        }
        _ => Err(format!("unexpected byte at {p}")),
    }
}

fn string(b: &[u8], p: &mut usize) -> Result<Json, String> {
    if b.get(*p) != Some(&b'"') {
        return Err(format!("expected '\"' at {p}"));
    }
    *p += 1;
    let mut s = Vec::new();
    while let Some(&c) = b.get(*p) {
        *p += 1;
        match c {
            b'"' => return Ok(Json::Str(String::from_utf8_lossy(&s).into_owned())),
            b'\\' => {
                let e = *b.get(*p).ok_or("truncated escape")?;
                *p += 1;
                s.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    other => other,
                });
            }
            _ => s.push(c),
        }
    }
    Err("unterminated string".into())
}
