//! The load driver: N connections spread over T threads, each thread a
//! current-thread tokio runtime, every connection one task.
//!
//! Hot-path rules (the driver must never be the bottleneck):
//! - Requests are encoded into a reusable write buffer and go out in one
//!   `write` per batch; replies are scanned in place in a reusable read buffer.
//! - One clock read per batch of replies, not per reply: replies that arrive in
//!   the same read arrived together.
//! - Sockets are driven through `AsyncFd` so that a short read can clear the
//!   readiness flag without a wasted `EAGAIN` read.
//! - Counters and histograms are per thread (`Rc<RefCell<_>>`), merged at the end;
//!   the only shared write per batch is one relaxed atomic add for progress.
//!
//! Closed loop: each connection keeps `pipeline` requests in flight; latency is
//! measured from the moment a request is issued. Open loop: request `k` of a
//! connection is *due* at a fixed time from a schedule at the configured rate,
//! and latency is measured from that due time, not from when it was written,
//! so queueing in the system (and in the driver) is counted (coordinated-omission
//! safe). A pacer OS thread per driver thread wakes connections when requests
//! fall due, because tokio timers have millisecond resolution.
//!
//! memcache `set_noreply`: a noreply set has no reply, so it takes a slot of
//! the in-flight window only until the write that carries it completes; then
//! it counts as done (in `ops` and ops/s, at that moment) and never enters
//! the latency histograms, which hold only requests that have a reply.
//!
//! With `[placement] generator`, each driver thread pins itself at its start
//! (its pacer inherits that), and every thread reports where it may run.
//!
//! TLS (`DriveSpec::tls`): each connection does its handshake with
//! tokio-rustls before the clock starts (and again on reconnect), then keeps
//! the same socket loop: a batch is handed to rustls in one call and its
//! records go out in one `writev` (`tls::TlsConn`); a read decrypts all the
//! ciphertext one syscall brought. The proxy's send syscalls per request are
//! counted by the proxy (over TLS as in plaintext).
use crate::affinity::{self, CpuList};
use crate::config::{Length, LoopMode, Protocol, Workload};
use crate::error::{BenchError, Result};
use crate::stats::ThreadStats;
use crate::timeline::Timeline;
use crate::tls::{ReadOutcome, TlsClient, TlsConn};
use crate::workload::{check, check_memcache, Expect, Generator, Keyspace, Op, Verdict};
use crate::{memcache, resp};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::io::Interest;
use tokio::sync::Notify;

/// Everything the driver needs for one measured run of one cell.
#[derive(Debug, Clone)]
pub struct DriveSpec {
    /// Connections go round-robin over these addresses.
    pub addrs: Vec<SocketAddr>,
    pub connections: u32,
    pub pipeline: u32,
    pub mode: LoopMode,
    /// Total requests per second (open loop).
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub length: Length,
    /// Replies still missing this long after sending stopped are lost.
    pub timeout: Duration,
    /// Hard stop for request-count runs.
    pub time_limit: Duration,
    pub threads: usize,
    pub workload: Workload,
    pub keyspace: Arc<Keyspace>,
    pub seed: u64,
    /// CPUs every driver thread pins itself to (`None` = not pinned).
    pub cpus: Option<CpuList>,
    /// Length of one interval of the time series.
    pub interval: Duration,
    /// `direct` to a Redis Cluster: route by slot (connection c talks to
    /// `addrs[c % addrs.len()]` and sends only keys of that master's slots).
    pub route: Option<SlotRoute>,
    /// Over TLS: how to verify each of `addrs` (same order; empty: plaintext).
    pub tls: Vec<TlsClient>,
}

/// How a cluster-aware `direct` load routes keys by slot.
#[derive(Debug, Clone)]
pub struct SlotRoute {
    /// Per slot: the index in `DriveSpec::addrs` of its master.
    pub owners: Arc<Vec<u16>>,
    /// Per key of the keyspace: the slot of its value key and of its
    /// counter key.
    pub key_slots: Arc<Vec<(u16, u16)>>,
}

/// Default driver threads: one per generator CPU when the generator is pinned,
/// else half the cores (the proxy and the backends need the rest on the same
/// machine); at least one, at most one per connection.
pub fn auto_threads(connections: u32, generator: Option<&CpuList>) -> usize {
    let n = match generator {
        Some(cpus) => cpus.len(),
        None => {
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            cores / 2
        }
    };
    n.max(1).min(connections as usize)
}

/// A running drive. Poll [`DriveHandle::completed`] for progress, then `join`.
pub struct DriveHandle {
    pub t0: Instant,
    pub warm_end: Instant,
    /// End of the measured window when known in advance (duration runs).
    pub end: Option<Instant>,
    threads: Vec<std::thread::JoinHandle<std::result::Result<ThreadStats, String>>>,
    progress: Arc<Vec<AtomicU64>>,
    abort: Arc<AtomicBool>,
    cpus_seen: Arc<Mutex<Vec<String>>>,
}

/// What a finished drive measured.
#[derive(Debug, Clone)]
pub struct DriveOutcome {
    pub stats: ThreadStats,
    /// Length of the measured window.
    pub window: Duration,
    /// Each driver thread's `Cpus_allowed_list`, read at its start.
    pub cpus_observed: Vec<String>,
}

impl DriveHandle {
    /// Replies received so far (all phases), for progress display.
    pub fn completed(&self) -> u64 {
        self.progress
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    /// Whether every driver thread has finished (request-count runs end by themselves).
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Asks every connection to stop sending now.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
    }

    pub fn join(self) -> Result<DriveOutcome> {
        let mut total = ThreadStats::default();
        let mut first_err = None;
        for t in self.threads {
            match t.join() {
                Ok(Ok(s)) => total.merge(&s),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert("a driver thread panicked".to_string());
                }
            }
        }
        if let Some(e) = first_err {
            return Err(BenchError::setup(e));
        }
        let warm_ns = (self.warm_end - self.t0).as_nanos() as u64;
        let window = match self.end {
            Some(end) => end - self.warm_end,
            None => Duration::from_nanos(total.last_reply_ns.saturating_sub(warm_ns).max(1)),
        };
        let cpus_observed = std::mem::take(&mut *self.cpus_seen.lock().unwrap());
        Ok(DriveOutcome {
            stats: total,
            window,
            cpus_observed,
        })
    }
}

/// Per-connection plan, fixed before the start.
#[derive(Clone, Copy)]
struct Plan {
    warm_ns: u64,
    /// Sending stops at this time (duration runs) or after `quota` measured requests.
    end_ns: Option<u64>,
    quota: Option<u64>,
    hard_stop_ns: u64,
    timeout_ns: u64,
    pipeline: usize,
    /// Open loop: first due time and spacing of this connection's schedule.
    open: Option<(f64, f64)>,
}

/// Connects everything, then starts the clock. Returns once load is flowing.
pub fn start(spec: DriveSpec) -> Result<DriveHandle> {
    if spec.addrs.is_empty() {
        return Err(BenchError::setup("no address to send load to"));
    }
    if !spec.tls.is_empty() && spec.tls.len() != spec.addrs.len() {
        return Err(BenchError::setup("one TLS client per address is needed"));
    }
    let threads = spec.threads.clamp(1, spec.connections as usize);
    let conns = spec.connections as usize;
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..threads).map(|_| AtomicU64::new(0)).collect());
    let abort = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(Barrier::new(threads + 1));
    let t0_slot: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let go = Arc::new(Barrier::new(threads + 1));
    let failed = Arc::new(Mutex::new(None::<String>));
    let cpus_seen = Arc::new(Mutex::new(Vec::with_capacity(threads)));

    let warm_ns = spec.warmup.as_nanos() as u64;
    let (end_ns, total_quota) = match spec.length {
        Length::Duration(d) => (Some(warm_ns + d.as_nanos() as u64), None),
        Length::Requests(n) => (None, Some(n)),
    };
    let hard_stop_ns = warm_ns + spec.time_limit.as_nanos() as u64;

    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        // Connections c with c % threads == t live on thread t.
        let mine: Vec<usize> = (t..conns).step_by(threads).collect();
        let spec = spec.clone();
        let progress = progress.clone();
        let abort = abort.clone();
        let connected = connected.clone();
        let go = go.clone();
        let t0_slot = t0_slot.clone();
        let failed = failed.clone();
        let cpus_seen = cpus_seen.clone();
        let h = std::thread::Builder::new()
            .name(format!("ncbench-drv{t}"))
            .spawn(move || {
                // Before the runtime: everything this thread starts inherits the mask.
                if let Some(cpus) = &spec.cpus {
                    if let Err(e) = affinity::pin_current_thread(cpus) {
                        *failed.lock().unwrap() =
                            Some(format!("cannot pin a driver thread to CPUs {cpus}: {e}"));
                        connected.wait();
                        go.wait();
                        return Err("pin".into());
                    }
                }
                cpus_seen
                    .lock()
                    .unwrap()
                    .push(affinity::cpus_allowed_of_this_thread());
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        *failed.lock().unwrap() = Some(format!("cannot start a runtime: {e}"));
                        connected.wait();
                        go.wait();
                        return Err("runtime".into());
                    }
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    // Connect every connection of this thread before the clock starts.
                    let mut socks = Vec::with_capacity(mine.len());
                    for &c in &mine {
                        let addr = spec.addrs[c % spec.addrs.len()];
                        match connect(addr, spec.tls.get(c % spec.addrs.len())).await {
                            Ok(s) => socks.push(s),
                            Err(e) => {
                                *failed.lock().unwrap() =
                                    Some(format!("cannot connect to {addr}: {e}"));
                                break;
                            }
                        }
                    }
                    connected.wait();
                    go.wait();
                    if failed.lock().unwrap().is_some() {
                        return Err("connect failed".to_string());
                    }
                    let t0 = t0_slot.lock().unwrap().expect("t0 set before go");
                    let stats = Rc::new(RefCell::new(ThreadStats {
                        timeline: Timeline::new(spec.interval, spec.warmup),
                        ..ThreadStats::default()
                    }));
                    let n_mine = mine.len() as u64;
                    let thread_rate = spec
                        .rate
                        .map(|r| r * n_mine as f64 / spec.connections as f64);
                    let notifies: Vec<Arc<Notify>> =
                        mine.iter().map(|_| Arc::new(Notify::new())).collect();
                    let pacer_stop = Arc::new(AtomicBool::new(false));
                    let pacer = match (spec.mode, thread_rate) {
                        (LoopMode::Open, Some(rt_rate)) => {
                            let n = notifies.clone();
                            let stop = pacer_stop.clone();
                            Some(std::thread::spawn(move || pace(t0, rt_rate, n, stop)))
                        }
                        _ => None,
                    };
                    let mut tasks = Vec::new();
                    for (j, (&c, sock)) in mine.iter().zip(socks).enumerate() {
                        let quota = total_quota.map(|q| {
                            let base = q / spec.connections as u64;
                            base + u64::from((c as u64) < q % spec.connections as u64)
                        });
                        let open = thread_rate.map(|r| {
                            let step = 1e9 / r;
                            (j as f64 * step, n_mine as f64 * step)
                        });
                        let plan = Plan {
                            warm_ns,
                            end_ns,
                            quota,
                            hard_stop_ns,
                            timeout_ns: spec.timeout.as_nanos() as u64,
                            pipeline: spec.pipeline as usize,
                            open: if spec.mode == LoopMode::Open {
                                open
                            } else {
                                None
                            },
                        };
                        let mut gen = Generator::new(
                            spec.keyspace.clone(),
                            &spec.workload,
                            spec.seed,
                            c as u32,
                            spec.connections,
                        );
                        if let Some(route) = &spec.route {
                            let node = (c % spec.addrs.len()) as u16;
                            let mine = |slot: u16| route.owners[usize::from(slot)] == node;
                            gen.only_keys(
                                Arc::new(route.key_slots.iter().map(|s| mine(s.0)).collect()),
                                Arc::new(route.key_slots.iter().map(|s| mine(s.1)).collect()),
                            );
                        }
                        let conn = Conn {
                            addr: spec.addrs[c % spec.addrs.len()],
                            plan,
                            t0,
                            gen,
                            ks: spec.keyspace.clone(),
                            stats: stats.clone(),
                            progress: progress.clone(),
                            thread: t,
                            abort: abort.clone(),
                            notify: notifies[j].clone(),
                            scratch: Vec::new(),
                            noreply: NoReply::default(),
                            tls: spec.tls.get(c % spec.addrs.len()).cloned(),
                        };
                        tasks.push(tokio::task::spawn_local(conn.run(sock)));
                    }
                    for task in tasks {
                        let _ = task.await;
                    }
                    pacer_stop.store(true, Ordering::Relaxed);
                    if let Some(p) = pacer {
                        let _ = p.join();
                    }
                    let s = stats.borrow().clone();
                    Ok(s)
                })
            })
            .map_err(|e| BenchError::setup(format!("cannot spawn a driver thread: {e}")))?;
        handles.push(h);
    }
    connected.wait();
    let t0 = Instant::now();
    *t0_slot.lock().unwrap() = Some(t0);
    go.wait();
    // Not `if let` on the lock itself: its guard would live through the
    // joins while the driver threads still take the lock.
    let failure = failed.lock().unwrap().clone();
    if let Some(e) = failure {
        for h in handles {
            let _ = h.join();
        }
        return Err(BenchError::setup(e));
    }
    Ok(DriveHandle {
        t0,
        warm_end: t0 + spec.warmup,
        end: end_ns.map(|e| t0 + Duration::from_nanos(e)),
        threads: handles,
        progress,
        abort,
        cpus_seen,
    })
}

/// A connection's socket and, over TLS, its session.
struct Sock {
    fd: AsyncFd<TcpStream>,
    tls: Option<Box<TlsConn>>,
}

// The one unsafe call of the crate: AsyncFd registration. It lets a short read
// clear the readiness flag (no wasted EAGAIN read per batch), which a tokio
// TcpStream does not offer.
#[allow(unsafe_code)]
async fn connect(addr: SocketAddr, tls: Option<&TlsClient>) -> std::io::Result<Sock> {
    let s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "connect timed out"))??;
    s.set_nodelay(true)?;
    let (s, session) = match tls {
        None => (s, None),
        Some(t) => {
            let (s, session) = t.handshake(s).await?;
            (s, Some(Box::new(session)))
        }
    };
    let s = s.into_std()?;
    s.set_nonblocking(true)?;
    // SAFETY: the AsyncFd takes ownership of the std TcpStream, so its fd is
    // valid, stays open and is the same for the whole life of the AsyncFd.
    let fd = unsafe { AsyncFd::register_with_interest(s, Interest::READABLE | Interest::WRITABLE) }
        .map_err(|e| e.into_parts().1)?;
    Ok(Sock { fd, tls: session })
}

/// One plaintext write of `buf[*pos..]`; whether all of `buf` is out
/// (`false`: the socket is full, readiness cleared).
fn send_plain(fd: &AsyncFd<TcpStream>, buf: &[u8], pos: &mut usize) -> std::io::Result<bool> {
    match fd.try_io(Interest::WRITABLE, |s| (&*s).write(&buf[*pos..])) {
        Ok(n) => {
            *pos += n;
            Ok(*pos == buf.len())
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// One plaintext read appended to `rbuf` at `*rend` (moving the unread part
/// `rbuf[*rstart..*rend]` to the front, or growing, when the buffer is full).
fn read_plain(
    guard: &mut AsyncFdReadyGuard<'_, TcpStream>,
    rbuf: &mut Vec<u8>,
    rstart: &mut usize,
    rend: &mut usize,
) -> ReadOutcome {
    if *rend == rbuf.len() {
        if *rstart > 0 {
            rbuf.copy_within(*rstart..*rend, 0);
            *rend -= *rstart;
            *rstart = 0;
        } else {
            // One reply bigger than the buffer: grow.
            rbuf.resize(rbuf.len() * 2, 0);
        }
    }
    let space = rbuf.len() - *rend;
    let at = *rend;
    match guard.try_io(|s| s.get_ref().read(&mut rbuf[at..])) {
        Err(_would_block) => ReadOutcome::WouldBlock,
        Ok(Ok(0)) => ReadOutcome::Closed,
        Ok(Ok(n)) => {
            if n < space {
                // Drained: skip the EAGAIN read; a new edge re-arms readiness.
                guard.clear_ready();
            }
            *rend += n;
            ReadOutcome::Data(n)
        }
        Ok(Err(e)) => ReadOutcome::Failed(e),
    }
}

/// The pacer of one driver thread: sleeps until the next request of any of the
/// thread's connections falls due and wakes that connection. Due events are
/// evenly spaced at the thread's rate and belong to connections round-robin.
fn pace(t0: Instant, rate: f64, notifies: Vec<Arc<Notify>>, stop: Arc<AtomicBool>) {
    let n = notifies.len() as u64;
    let step_ns = 1e9 / rate;
    // Below this spacing, wake-ups are batched: a sleep cannot be shorter anyway.
    const MIN_TICK: Duration = Duration::from_micros(50);
    let mut m: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = t0 + Duration::from_nanos((m as f64 * step_ns) as u64);
        let now = Instant::now();
        if due > now {
            let wait = due - now;
            if wait > Duration::from_micros(120) && step_ns > 500_000.0 {
                // Low rates: sleep short, then spin the last stretch, so latency
                // targets near a millisecond are not skewed by timer slack.
                std::thread::sleep(wait - Duration::from_micros(80));
                while Instant::now() < due {
                    std::hint::spin_loop();
                }
            } else {
                std::thread::sleep(wait.max(MIN_TICK));
            }
        }
        let now_ns = Instant::now().duration_since(t0).as_nanos() as f64;
        let last = (now_ns / step_ns) as u64;
        if last + 1 - m >= n {
            notifies.iter().for_each(|x| x.notify_one());
        } else {
            for k in m..=last {
                notifies[(k % n) as usize].notify_one();
            }
        }
        m = last + 1;
    }
}

struct Pending {
    exp: Expect,
    /// When the request was due (open loop) or issued (closed loop), ns since t0.
    t_intended: u64,
    /// When it was written, ns since t0.
    t_sent: u64,
}

struct Conn {
    addr: SocketAddr,
    plan: Plan,
    t0: Instant,
    gen: Generator,
    ks: Arc<Keyspace>,
    stats: Rc<RefCell<ThreadStats>>,
    progress: Arc<Vec<AtomicU64>>,
    thread: usize,
    abort: Arc<AtomicBool>,
    notify: Arc<Notify>,
    /// Reused by the memcache multi-get check.
    scratch: Vec<(u32, bool)>,
    noreply: NoReply,
    /// Reconnects do their TLS handshake with this.
    tls: Option<TlsClient>,
}

/// Noreply requests in the write buffer, not yet fully written.
#[derive(Default)]
struct NoReply {
    unwritten: usize,
    /// Of those, the ones issued inside the measured window.
    measured: u64,
}

/// One reply, in the protocol of the run.
enum Parsed<'a> {
    Resp(resp::Reply<'a>),
    Memcache(memcache::Reply<'a>),
}

const READ_BUF: usize = 64 * 1024;

impl Conn {
    #[inline]
    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.plan.warm_ns && self.plan.end_ns.is_none_or(|e| t < e)
    }

    async fn run(mut self, first: Sock) {
        let mut sock = Some(first);
        let mut wbuf: Vec<u8> = Vec::with_capacity(16 * 1024);
        let mut wpos = 0usize;
        let mut rbuf: Vec<u8> = vec![0u8; READ_BUF];
        let (mut rstart, mut rend) = (0usize, 0usize);
        let mut pending: VecDeque<Pending> = VecDeque::with_capacity(self.plan.pipeline);
        let mut keyq: VecDeque<u32> = VecDeque::new();
        let mut measured_sent: u64 = 0;
        let mut next_due: u64 = 0; // open loop: index of the next scheduled request
        let mut stopped_at: Option<u64> = None;
        let mut want_write = false;
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let deadline = tokio::time::sleep_until(far);
        tokio::pin!(deadline);
        let mut deadline_for: u64 = u64::MAX;

        loop {
            let now = self.now_ns();
            // Decide whether sending goes on.
            if stopped_at.is_none() {
                let done = self.abort.load(Ordering::Relaxed)
                    || now >= self.plan.hard_stop_ns
                    || self.plan.end_ns.is_some_and(|e| now >= e)
                    || self.plan.quota.is_some_and(|q| measured_sent >= q);
                if done {
                    stopped_at = Some(now);
                    if let (Some((first, step)), Some(end)) = (self.plan.open, self.plan.end_ns) {
                        // Requests due in the window that never went out: the
                        // system (or the driver) fell behind the schedule.
                        let due_total = ((end as f64 - first) / step).ceil().max(0.0) as u64;
                        let warm_first =
                            ((self.plan.warm_ns as f64 - first) / step).ceil().max(0.0) as u64;
                        let sent_in_window = next_due.saturating_sub(warm_first);
                        let due_in_window = due_total.saturating_sub(warm_first);
                        self.stats.borrow_mut().unsent +=
                            due_in_window.saturating_sub(sent_in_window);
                    }
                }
            }
            if let Some(stop) = stopped_at {
                if pending.is_empty() && wbuf.is_empty() {
                    break;
                }
                if now >= stop + self.plan.timeout_ns || sock.is_none() {
                    self.lose_all(
                        &mut pending,
                        &mut keyq,
                        "replies missing after the run ended",
                    );
                    break;
                }
            }

            // Reconnect after a failure (only while still sending).
            let Some(Sock { fd, tls }) = sock.as_mut() else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                match connect(self.addr, self.tls.as_ref()).await {
                    Ok(s) => sock = Some(s),
                    Err(e) => {
                        self.stats
                            .borrow_mut()
                            .count_conn_error(&format!("connect: {e}"));
                        if self.now_ns() >= self.plan.hard_stop_ns {
                            break;
                        }
                    }
                }
                continue;
            };

            // Issue new requests.
            if stopped_at.is_none() {
                let start_len = wbuf.len();
                match self.plan.open {
                    None => {
                        while pending.len() + self.noreply.unwritten < self.plan.pipeline
                            && self
                                .plan
                                .quota
                                .is_none_or(|q| measured_sent < q || now < self.plan.warm_ns)
                        {
                            let exp = self.gen.next_request(&mut wbuf, &mut keyq);
                            self.issued(&mut pending, exp, now, now);
                            if now >= self.plan.warm_ns {
                                measured_sent += 1;
                            }
                        }
                    }
                    Some((first, step)) => {
                        // Borrow the thread's stats once for the whole batch.
                        let mut st = self.stats.borrow_mut();
                        while pending.len() + self.noreply.unwritten < self.plan.pipeline {
                            let due = (first + next_due as f64 * step) as u64;
                            if due > now || self.plan.end_ns.is_some_and(|e| due >= e) {
                                break;
                            }
                            if self.plan.quota.is_some_and(|q| measured_sent >= q)
                                && due >= self.plan.warm_ns
                            {
                                break;
                            }
                            let exp = self.gen.next_request(&mut wbuf, &mut keyq);
                            if self.ks.expects_reply(&exp) {
                                pending.push_back(Pending {
                                    exp,
                                    t_intended: due,
                                    t_sent: now,
                                });
                            } else {
                                self.noreply.unwritten += 1;
                                self.noreply.measured += u64::from(self.in_window(due));
                            }
                            if due >= self.plan.warm_ns {
                                measured_sent += 1;
                                st.lag.saturating_record((now - due).max(1));
                            }
                            next_due += 1;
                        }
                    }
                }
                if wbuf.len() > start_len && now >= self.plan.warm_ns {
                    self.stats.borrow_mut().bytes_out += (wbuf.len() - start_len) as u64;
                }
            }

            // Write what is pending (one syscall for the whole batch; over
            // TLS one flush of its records), or TLS records rustls queued.
            let fd: &AsyncFd<TcpStream> = fd;
            let tls_pending = tls.as_ref().is_some_and(|t| t.wants_write());
            if (!wbuf.is_empty() || tls_pending) && !want_write {
                let sent = match tls.as_deref_mut() {
                    None => send_plain(fd, &wbuf, &mut wpos),
                    Some(t) => t.send(fd, &wbuf, &mut wpos),
                };
                match sent {
                    Ok(true) => {
                        wbuf.clear();
                        wpos = 0;
                        self.noreply_written();
                    }
                    Ok(false) => want_write = true,
                    Err(e) => {
                        self.conn_failed(
                            &mut sock,
                            &mut pending,
                            &mut keyq,
                            &mut wbuf,
                            &mut wpos,
                            (&mut rstart, &mut rend),
                            format!("write to {}: {e}", self.addr),
                        );
                        want_write = false;
                        continue;
                    }
                }
            }

            // Only noreply requests were out and all are written: nothing will
            // wake us, so issue more (closed loop) after letting others run.
            if pending.is_empty() && wbuf.is_empty() && self.plan.open.is_none() {
                tokio::task::yield_now().await;
                continue;
            }

            // Timer: only needed to end a run or a drain when no reply wakes us.
            let want_deadline = match (stopped_at, self.plan.end_ns) {
                (Some(s), _) => s + self.plan.timeout_ns,
                (None, Some(e)) => e,
                (None, None) => self.plan.hard_stop_ns,
            };
            if want_deadline != deadline_for {
                deadline_for = want_deadline;
                deadline.as_mut().reset(tokio::time::Instant::from_std(
                    self.t0 + Duration::from_nanos(want_deadline),
                ));
            }
            let open_waiting = self.plan.open.is_some() && stopped_at.is_none();

            tokio::select! {
                biased;
                guard = fd.readable() => {
                    let Ok(mut guard) = guard else { continue };
                    let got = match tls.as_deref_mut() {
                        None => read_plain(&mut guard, &mut rbuf, &mut rstart, &mut rend),
                        Some(t) => t.read(&mut guard, &mut rbuf, &mut rstart, &mut rend),
                    };
                    drop(guard);
                    match got {
                        ReadOutcome::WouldBlock => continue,
                        ReadOutcome::Closed => {
                            self.conn_failed(&mut sock, &mut pending, &mut keyq, &mut wbuf, &mut wpos, (&mut rstart, &mut rend), format!("{} closed the connection", self.addr));
                            want_write = false;
                            continue;
                        }
                        ReadOutcome::Data(_) => {
                            let now = self.now_ns();
                            match self.on_replies(&rbuf[rstart..rend], now, &mut pending, &mut keyq) {
                                Ok(used) => {
                                    rstart += used;
                                    if rstart == rend {
                                        rstart = 0;
                                        rend = 0;
                                    }
                                }
                                Err(e) => {
                                    self.conn_failed(&mut sock, &mut pending, &mut keyq, &mut wbuf, &mut wpos, (&mut rstart, &mut rend), format!("bad reply from {}: {e}", self.addr));
                                    self.stats.borrow_mut().mismatches += 1;
                                    want_write = false;
                                    continue;
                                }
                            }
                        }
                        ReadOutcome::Failed(e) => {
                            self.conn_failed(&mut sock, &mut pending, &mut keyq, &mut wbuf, &mut wpos, (&mut rstart, &mut rend), format!("read from {}: {e}", self.addr));
                            want_write = false;
                            continue;
                        }
                    }
                }
                guard = fd.writable(), if want_write => {
                    if let Ok(mut g) = guard {
                        g.retain_ready();
                    }
                    want_write = false;
                    // Retry the write at the top of the loop. If it would block
                    // again, try_io clears readiness and we wait here again.
                }
                _ = self.notify.notified(), if open_waiting => {}
                _ = &mut deadline => {}
            }
        }
    }

    /// Handles every complete reply in `buf`; returns the bytes consumed.
    fn on_replies(
        &mut self,
        buf: &[u8],
        now: u64,
        pending: &mut VecDeque<Pending>,
        keyq: &mut VecDeque<u32>,
    ) -> std::result::Result<usize, String> {
        let mut pos = 0;
        let mut st = self.stats.borrow_mut();
        let mut n_replies = 0u64;
        while pos < buf.len() {
            let parsed = match self.ks.protocol {
                Protocol::Redis => resp::parse(&buf[pos..])
                    .map(|o| o.map(|(r, n)| (Parsed::Resp(r), n)))
                    .map_err(|e| e.to_string()),
                Protocol::Memcache => memcache::parse(&buf[pos..])
                    .map(|o| o.map(|(r, n)| (Parsed::Memcache(r), n)))
                    .map_err(|e| e.to_string()),
            };
            let (reply, used) = match parsed? {
                Some(x) => x,
                None => break,
            };
            let Some(p) = pending.pop_front() else {
                return Err("a reply arrived with no request outstanding".into());
            };
            n_replies += 1;
            let verdict = match &reply {
                Parsed::Resp(r) => check(&self.ks, &p.exp, r, keyq),
                Parsed::Memcache(r) => check_memcache(&self.ks, &p.exp, r, keyq, &mut self.scratch),
            };
            let bucket = st.timeline.at(now);
            bucket.completed += 1;
            bucket
                .latency
                .saturating_record((now - p.t_intended).max(1));
            match verdict {
                Verdict::Ok => {}
                Verdict::Error => bucket.errors += 1,
                Verdict::Mismatch => bucket.mismatches += 1,
            }
            if verdict == Verdict::Error {
                st.count_error(&buf[pos..pos + used]);
            }
            if self.in_window(p.t_intended) {
                st.completed += 1;
                st.ops[p.exp.op as usize] += 1;
                st.bytes_in += used as u64;
                st.latency.saturating_record((now - p.t_intended).max(1));
                st.service.saturating_record((now - p.t_sent).max(1));
                st.last_reply_ns = now;
                match verdict {
                    Verdict::Ok => {}
                    Verdict::Error => {
                        st.errors += 1;
                        if st.first_problem.is_none() {
                            st.first_problem = Some(format!(
                                "{} key {} got error reply: {}",
                                p.exp.op.name(),
                                p.exp.key,
                                String::from_utf8_lossy(&buf[pos..pos + used.min(200)]).trim_end()
                            ));
                        }
                    }
                    Verdict::Mismatch => {
                        st.mismatches += 1;
                        if st.first_problem.is_none() {
                            st.first_problem = Some(format!(
                                "{} key {} got a reply that does not match: {:?}",
                                p.exp.op.name(),
                                p.exp.key,
                                String::from_utf8_lossy(&buf[pos..pos + used.min(120)])
                            ));
                        }
                    }
                }
            } else if verdict == Verdict::Mismatch {
                // Integrity failures count in every phase, warmup included.
                st.mismatches += 1;
            }
            pos += used;
        }
        drop(st);
        self.progress[self.thread].fetch_add(n_replies, Ordering::Relaxed);
        Ok(pos)
    }

    /// Books a request just encoded: it waits for its reply, or (noreply)
    /// until the write that carries it completes.
    #[inline]
    fn issued(&mut self, pending: &mut VecDeque<Pending>, exp: Expect, due: u64, now: u64) {
        if self.ks.expects_reply(&exp) {
            pending.push_back(Pending {
                exp,
                t_intended: due,
                t_sent: now,
            });
        } else {
            self.noreply.unwritten += 1;
            self.noreply.measured += u64::from(self.in_window(due));
        }
    }

    /// The write buffer went out whole: its noreply requests are done.
    fn noreply_written(&mut self) {
        let nr = std::mem::take(&mut self.noreply);
        if nr.unwritten == 0 {
            return;
        }
        if nr.measured > 0 {
            let now = self.now_ns();
            let mut st = self.stats.borrow_mut();
            st.completed += nr.measured;
            st.ops[Op::Set as usize] += nr.measured;
            st.last_reply_ns = now;
        }
        self.progress[self.thread].fetch_add(nr.unwritten as u64, Ordering::Relaxed);
    }

    fn lose_all(&mut self, pending: &mut VecDeque<Pending>, keyq: &mut VecDeque<u32>, why: &str) {
        let unwritten = std::mem::take(&mut self.noreply).measured;
        let mut st = self.stats.borrow_mut();
        let lost = unwritten
            + pending
                .iter()
                .filter(|p| self.in_window(p.t_intended))
                .count() as u64;
        st.lost += lost;
        let now = self.now_ns();
        st.timeline.at(now).lost += pending.len() as u64;
        if lost > 0 && st.first_problem.is_none() {
            st.first_problem = Some(format!("{lost} replies lost from {}: {why}", self.addr));
        }
        pending.clear();
        keyq.clear();
    }

    #[allow(clippy::too_many_arguments)]
    fn conn_failed(
        &mut self,
        sock: &mut Option<Sock>,
        pending: &mut VecDeque<Pending>,
        keyq: &mut VecDeque<u32>,
        wbuf: &mut Vec<u8>,
        wpos: &mut usize,
        r: (&mut usize, &mut usize),
        why: String,
    ) {
        {
            let now = self.now_ns();
            let mut st = self.stats.borrow_mut();
            st.conn_errors += 1;
            st.timeline.at(now).conn_errors += 1;
            st.count_conn_error(&why);
        }
        self.lose_all(pending, keyq, &why);
        *sock = None;
        wbuf.clear();
        *wpos = 0;
        *r.0 = 0;
        *r.1 = 0;
    }
}
