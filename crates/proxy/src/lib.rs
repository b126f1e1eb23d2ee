//! ncproxy: a twemproxy (nutcracker 0.5.0) compatible proxy for Redis and
//! memcached pools.
//!
//! Layout, top to bottom (each layer uses only the ones below it):
//! - [`start`] binds every listener, starts the workers and the stats server,
//!   and returns a [`RunningProxy`] handle (used by the binary and by ncbench
//!   in-process); `reload` swaps pools without dropping clients.
//! - `worker`: one thread and one single-threaded runtime per worker, each
//!   with its own listeners and backend connections (shared-nothing);
//!   `worker::listen` binds, accepts and admits clients.
//! - `pool`: one pool as a worker sees it: `router` (hash + continuum),
//!   `health` (failure counts, ejections and client counts shared by the
//!   workers), and the server connection slots.
//! - `dialect`: the protocol seam (Redis, memcache): parsing, splitting,
//!   coalescing, reply classes, error replies, handshakes.
//! - `conn`: the connection tasks: `client`, `server`, and `replies` (a
//!   client's in-order reply queue and fragment coalescing).
//! - `io`: the send chain (twemproxy's `msg_send_chain`), streams and their
//!   readiness loops, raw syscalls and the io_uring client path of
//!   `--io uring` (the only unsafe code), `--busy-poll`, `--wait adaptive`.
//! - `stats`, `stats_server`: single-writer counters and the JSON endpoint.
//! - `log`, `errno`: nutcracker-style log lines and error texts.
#![deny(unsafe_code)]

mod conn;
mod dialect;
mod errno;
mod io;
pub mod log;
mod pool;
pub mod stats;
mod stats_server;
mod worker;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use nc_config::Config;
use nc_protocol::Limits;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

pub use io::chain::{SendOpts, IOV_MAX_LIMIT};
pub use io::tls::TlsLoadError;
use stats::{PoolStats, WorkerStats};

/// How to run: everything that comes from the command line rather than the YAML.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads (0 = one per core). `1` gives nutcracker's single loop.
    pub workers: usize,
    /// Stats server address and port; `None` disables the stats server.
    pub stats_addr: Option<(String, u16)>,
    /// nutcracker's `-i`; ncproxy's stats are live, so it only bounds staleness.
    pub stats_interval_ms: u64,
    /// nutcracker's `-m`; ncproxy has no mbufs but keeps its key length limit.
    pub mbuf_size: usize,
    /// Serve Prometheus text at `http://ADDR:PORT/metrics` (ADDR as the stats server).
    pub prometheus: Option<(String, u16)>,
    /// `--busy-poll`: how long a worker keeps polling after activity before
    /// it blocks; zero (the default) blocks at once, as nutcracker does.
    pub busy_poll: Duration,
    /// `--wait`: what a worker does when it runs out of work (block at
    /// once, or spin first when that pays; see `io::wait`).
    pub wait: nc_config::cli::WaitMode,
    /// `--wait-cap`: the most CPU, in percent of a worker thread, that
    /// adaptive waiting may spend spinning.
    pub wait_cap_percent: u8,
    /// `--io`: client socket I/O on epoll (the default) or on a per-worker
    /// io_uring; uring falls back to epoll, with a log line, where the
    /// kernel does not offer it.
    pub io: nc_config::cli::IoMode,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: 0,
            stats_addr: Some(("0.0.0.0".to_string(), 22222)),
            stats_interval_ms: 30_000,
            mbuf_size: nc_protocol::DEFAULT_MBUF_SIZE,
            prometheus: None,
            busy_poll: Duration::ZERO,
            wait: nc_config::cli::WaitMode::Sleep,
            wait_cap_percent: nc_config::cli::DEFAULT_WAIT_CAP_PERCENT,
            io: nc_config::cli::IoMode::Epoll,
        }
    }
}

/// Why the proxy could not start. Display matches nutcracker's log text.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bind on {what} to addr '{addr}' failed: {}", strip_os_error(.err))]
    Bind {
        what: String,
        addr: String,
        err: std::io::Error,
    },
    #[error("bind on m to stats server addr '{addr}' failed: {}", strip_os_error(.err))]
    StatsBind { addr: String, err: std::io::Error },
    #[error("bind on prometheus addr '{addr}' failed: {}", strip_os_error(.err))]
    PrometheusBind { addr: String, err: std::io::Error },
    #[error("failed to start a worker thread: {0}")]
    Thread(std::io::Error),
    /// A TLS PEM file of a pool could not be used.
    #[error("{0}")]
    Tls(#[from] io::tls::TlsLoadError),
}

fn strip_os_error(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => errno::strerror(code),
        None => err.to_string(),
    }
}

/// A running proxy: its workers, stats server and counters.
pub struct RunningProxy {
    control: watch::Sender<(worker::Control, Duration)>,
    messages: Vec<mpsc::UnboundedSender<worker::WorkerMsg>>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<stats_server::StatsSource>,
    config: Arc<Config>,
    /// Per pool: the client count and server health the workers share.
    shared: Vec<Arc<pool::health::PoolShared>>,
    limits: Limits,
    listen_addrs: Vec<Option<SocketAddr>>,
    stats_local_addr: Option<SocketAddr>,
    prometheus_local_addr: Option<SocketAddr>,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Pools kept as they were, connections and counters included.
    pub unchanged: Vec<String>,
    /// Pools rebuilt with new settings (their server connections are new).
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl RunningProxy {
    /// The stats JSON document, as the stats port serves it.
    pub fn stats_json(&self) -> String {
        self.stats.json()
    }

    /// The Prometheus text, as `/metrics` serves it.
    pub fn prometheus_text(&self) -> String {
        self.stats.prometheus()
    }

    /// Each pool's bound TCP address (None for unix sockets), in config order.
    pub fn listen_addrs(&self) -> &[Option<SocketAddr>] {
        &self.listen_addrs
    }

    /// Where the stats server listens, if it runs.
    pub fn stats_addr(&self) -> Option<SocketAddr> {
        self.stats_local_addr
    }

    /// Where the Prometheus endpoint listens, if it runs.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus_local_addr
    }

    /// Switches to `config` without dropping client connections. Unchanged
    /// pools keep their server connections and counters; changed pools are
    /// rebuilt (clients switch to them between read batches); a pool whose
    /// listen address is new gets a new listener. If a new listener cannot
    /// be bound or a pool's TLS files cannot be used, nothing changes and
    /// the error is returned. TLS files are re-read for every pool: new
    /// connections use the new certificates, established ones keep theirs.
    pub fn reload(&mut self, config: Config) -> Result<ReloadSummary, StartError> {
        // Certificates are re-read for every pool, changed or not.
        let tls = load_tls(&config)?;
        let config = Arc::new(config);
        let workers = self.messages.len();
        let old = &self.config;
        let mut summary = ReloadSummary::default();
        // Per new pool: what to keep, and the listener per worker.
        let mut keeps = Vec::new();
        let mut listeners: Vec<Vec<Result<usize, worker::BoundListener>>> =
            (0..workers).map(|_| Vec::new()).collect();
        let mut listen_addrs = Vec::new();
        let mut reused = vec![false; old.pools.len()];
        for pool in &config.pools {
            let same_name = old.pools.iter().position(|p| p.name == pool.name);
            let keep = same_name.filter(|&i| old.pools[i] == *pool);
            match (same_name, keep) {
                (_, Some(_)) => summary.unchanged.push(pool.name.clone()),
                (Some(_), None) => summary.changed.push(pool.name.clone()),
                (None, _) => summary.added.push(pool.name.clone()),
            }
            keeps.push(keep);
            let same_listen = old
                .pools
                .iter()
                .enumerate()
                .position(|(i, p)| !reused[i] && p.listen == pool.listen);
            match same_listen {
                Some(i) => {
                    reused[i] = true;
                    listen_addrs.push(self.listen_addrs[i]);
                    for slot in &mut listeners {
                        slot.push(Ok(i));
                    }
                }
                None => {
                    let bound = bind_for_workers(pool, workers)?;
                    listen_addrs.push(bound.first().and_then(|l| l.local_addr()));
                    for (slot, listener) in listeners.iter_mut().zip(bound) {
                        slot.push(Err(listener));
                    }
                }
            }
        }
        for pool in &old.pools {
            if !config.pools.iter().any(|p| p.name == pool.name) {
                summary.removed.push(pool.name.clone());
            }
        }
        // Counters, client count and server health: carried over for kept
        // pools, new otherwise.
        let old_layout = self
            .stats
            .layout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut layout_pools = Vec::new();
        let mut shared = Vec::new();
        for (index, pool) in config.pools.iter().enumerate() {
            match keeps[index] {
                Some(i) => {
                    layout_pools.push(old_layout.pools[i].clone());
                    shared.push(self.shared[i].clone());
                }
                None => {
                    layout_pools.push(Arc::new(
                        (0..workers)
                            .map(|_| Arc::new(PoolStats::for_pool(pool)))
                            .collect(),
                    ));
                    shared.push(Arc::new(pool::health::PoolShared::new(
                        pool,
                        workers,
                        self.limits,
                    )));
                }
            }
        }
        for (w, (sender, listeners)) in self.messages.iter().zip(listeners).enumerate() {
            let pools = listeners
                .into_iter()
                .enumerate()
                .map(|(index, listener)| worker::PoolPlan {
                    keep: keeps[index],
                    listener,
                    stats: layout_pools[index][w].clone(),
                    all_stats: layout_pools[index].clone(),
                    shared: shared[index].clone(),
                })
                .collect();
            let _ = sender.send(worker::WorkerMsg::Reload {
                config: config.clone(),
                pools,
            });
        }
        for (shared, tls) in shared.iter().zip(tls) {
            shared.tls.set(tls);
        }
        *self.stats.layout.lock().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(stats_server::StatsLayout {
                config: config.clone(),
                pools: layout_pools,
                clusters: shared.iter().map(|s| s.cluster.clone()).collect(),
            });
        self.config = config;
        self.shared = shared;
        self.listen_addrs = listen_addrs;
        Ok(summary)
    }

    /// Stops accepting, lets clients finish the requests they already sent
    /// (at most `grace`), then stops everything and waits for it.
    pub fn drain(self, grace: Duration) {
        let _ = self.control.send((worker::Control::Drain, grace));
        self.stop();
    }

    /// Stops every worker (dropping their connections) and waits for them.
    /// After a `drain`, workers finish draining first.
    pub fn stop(mut self) {
        let draining = self.control.borrow().0 == worker::Control::Drain;
        if !draining {
            let _ = self.control.send((worker::Control::Stop, Duration::ZERO));
        }
        let workers = self.messages.len();
        for thread in self.threads.drain(..workers) {
            let _ = thread.join();
        }
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }

    /// Blocks until the workers exit (they run until `stop`).
    pub fn wait(mut self) {
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// One listener per worker for `pool`: worker 0's first, so that a busy
/// port fails with nutcracker's message; the rest share the port
/// (SO_REUSEPORT) or, for unix sockets, the descriptor.
fn bind_for_workers(
    pool: &nc_config::Pool,
    workers: usize,
) -> Result<Vec<worker::BoundListener>, StartError> {
    let reuseport = workers > 1 || pool.reuseport;
    let first = worker::bind(&pool.listen, pool.backlog, reuseport)?;
    let is_unix = matches!(first, worker::BoundListener::Unix(_));
    let mut all = Vec::with_capacity(workers);
    for i in 1..workers {
        let listener = if is_unix {
            first.try_clone()
        } else {
            worker::bind(&pool.listen, pool.backlog, true).map_err(|e| match e {
                StartError::Bind { err, .. } => err,
                other => std::io::Error::other(other.to_string()),
            })
        };
        all.push(listener.map_err(|err| StartError::Bind {
            what: format!("p (worker {i})"),
            addr: pool.listen.text().to_string(),
            err,
        })?);
    }
    all.insert(0, first);
    Ok(all)
}

/// Detaches from the terminal (`-d`). Call before [`start`]: it forks, and
/// only the calling thread survives a fork.
pub fn daemonize() -> std::io::Result<()> {
    io::sys::daemonize()
}

/// Binds everything and starts the workers. Returns once every listener is
/// bound, so a bind failure is reported before anything serves.
pub fn start(config: Config, opts: RunOptions) -> Result<RunningProxy, StartError> {
    std::sync::LazyLock::force(&stats_server::PROCESS_START);
    let config = Arc::new(config);
    let workers = match opts.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    let limits = Limits::for_mbuf_size(opts.mbuf_size);
    let tls = load_tls(&config)?;

    let mut per_worker: Vec<Vec<worker::BoundListener>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut listen_addrs = Vec::new();
    for pool in &config.pools {
        let bound = bind_for_workers(pool, workers)?;
        listen_addrs.push(bound.first().and_then(|l| l.local_addr()));
        for (slot, listener) in per_worker.iter_mut().zip(bound) {
            slot.push(listener);
        }
    }
    let stats_listener = match &opts.stats_addr {
        Some((host, port)) => {
            let text = format!("{host}:{port}");
            Some(bind_stats(host, *port).map_err(|err| StartError::StatsBind { addr: text, err })?)
        }
        None => None,
    };
    let prometheus_listener = match &opts.prometheus {
        Some((host, port)) => {
            let text = format!("{host}:{port}");
            Some(
                bind_stats(host, *port)
                    .map_err(|err| StartError::PrometheusBind { addr: text, err })?,
            )
        }
        None => None,
    };

    let worker_stats: Vec<Arc<WorkerStats>> = (0..workers)
        .map(|_| Arc::new(WorkerStats::default()))
        .collect();
    let pool_stats: Vec<Arc<Vec<Arc<PoolStats>>>> = config
        .pools
        .iter()
        .map(|pool| {
            Arc::new(
                (0..workers)
                    .map(|_| Arc::new(PoolStats::for_pool(pool)))
                    .collect(),
            )
        })
        .collect();
    let shared: Vec<Arc<pool::health::PoolShared>> = config
        .pools
        .iter()
        .map(|p| Arc::new(pool::health::PoolShared::new(p, workers, limits)))
        .collect();
    for (shared, tls) in shared.iter().zip(tls) {
        shared.tls.set(tls);
    }
    let admission = Arc::new(worker::Admission::new(&config, workers));
    // Measured once, before the workers run (a few milliseconds).
    let wakeup = (opts.wait == nc_config::cli::WaitMode::Adaptive).then(io::wait::wakeup_cost);
    // Probed once, so a refusal is one log line, not one per worker.
    let uring = opts.io == nc_config::cli::IoMode::Uring
        && match io::uring::probe() {
            Ok(()) => true,
            Err(reason) => {
                io::uring::log_fallback(&reason);
                false
            }
        };
    let (control, control_rx) = watch::channel((worker::Control::Run, Duration::ZERO));
    let mut messages = Vec::new();
    let mut threads = Vec::new();
    for (w, listeners) in per_worker.into_iter().enumerate() {
        let (sender, receiver) = mpsc::unbounded_channel();
        let pools = listeners
            .into_iter()
            .enumerate()
            .map(|(index, listener)| worker::PoolPlan {
                keep: None,
                listener: Err(listener),
                stats: pool_stats[index][w].clone(),
                all_stats: pool_stats[index].clone(),
                shared: shared[index].clone(),
            })
            .collect();
        let setup = worker::WorkerSetup {
            index: w,
            config: config.clone(),
            pools,
            stats: worker_stats[w].clone(),
            limits,
            admission: admission.clone(),
            control: control_rx.clone(),
            messages: receiver,
            busy_poll: opts.busy_poll,
            wait: wakeup.map(|cost| (opts.wait_cap_percent, cost)),
            health_checks: w == 0,
            uring,
        };
        let thread = std::thread::Builder::new()
            .name(format!("ncproxy-worker-{w}"))
            .spawn(move || worker::run(setup))
            .map_err(StartError::Thread)?;
        messages.push(sender);
        threads.push(thread);
    }

    let source = Arc::new(stats_server::StatsSource {
        layout: std::sync::Mutex::new(Arc::new(stats_server::StatsLayout {
            config: config.clone(),
            pools: pool_stats,
            clusters: shared.iter().map(|s| s.cluster.clone()).collect(),
        })),
        workers: worker_stats,
        started: Instant::now(),
        hostname: hostname(),
    });
    let stats_local_addr = stats_listener.as_ref().and_then(|l| l.local_addr().ok());
    let prometheus_local_addr = prometheus_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok());
    let mut stops = Vec::new();
    if stats_listener.is_some() || prometheus_listener.is_some() {
        let (stop, shutdown) = oneshot::channel();
        let source = source.clone();
        let thread = std::thread::Builder::new()
            .name("ncproxy-stats".to_string())
            .spawn(move || stats_server::run(stats_listener, prometheus_listener, source, shutdown))
            .map_err(StartError::Thread)?;
        stops.push(stop);
        threads.push(thread);
    }
    Ok(RunningProxy {
        control,
        messages,
        stops,
        threads,
        stats: source,
        config,
        shared,
        limits,
        listen_addrs,
        stats_local_addr,
        prometheus_local_addr,
    })
}

/// Every pool's TLS material, read from its PEM files now.
fn load_tls(config: &Config) -> Result<Vec<Option<Arc<io::tls::PoolTls>>>, StartError> {
    config
        .pools
        .iter()
        .map(|pool| io::tls::load(pool).map_err(StartError::from))
        .collect()
}

fn bind_stats(host: &str, port: u16) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// The host name for the stats `source` field.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}
