//! Shared-nothing workers: each thread runs a single-threaded tokio runtime
//! with its own listener per pool (SO_REUSEPORT on the same port when there
//! are several workers) and its own connections to every backend. Nothing is
//! shared between workers on the request path.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use nc_config::{Config, Listen};
use nc_protocol::Limits;
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Weak;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, UnixListener};

use tokio::sync::watch;

use crate::client;
use crate::log;
use crate::pool::{Pool, PoolHealth};
use crate::stats::{PoolStats, WorkerStats};
use crate::stream::Stream;
use crate::StartError;

/// A bound listener, not yet registered with a runtime.
pub(crate) enum BoundListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Binds a pool's listener. `reuseport` lets every worker bind the same port.
pub(crate) fn bind(
    listen: &Listen,
    backlog: u32,
    reuseport: bool,
) -> Result<BoundListener, StartError> {
    match listen {
        Listen::Tcp { addr, text, .. } => {
            let fail = |fd: i32, err: std::io::Error| StartError::Bind {
                what: format!("p {fd}"),
                addr: text.clone(),
                err,
            };
            let socket = Socket::new(
                Domain::for_address(*addr),
                Type::STREAM,
                Some(Protocol::TCP),
            )
            .map_err(|e| fail(-1, e))?;
            let fd = socket.as_raw_fd();
            socket.set_reuse_address(true).map_err(|e| fail(fd, e))?;
            if reuseport {
                socket.set_reuse_port(true).map_err(|e| fail(fd, e))?;
            }
            socket.bind(&(*addr).into()).map_err(|e| fail(fd, e))?;
            socket
                .listen(backlog.min(i32::MAX as u32) as i32)
                .map_err(|e| fail(fd, e))?;
            socket.set_nonblocking(true).map_err(|e| fail(fd, e))?;
            Ok(BoundListener::Tcp(socket.into()))
        }
        Listen::Unix { path, perm, text } => {
            let fail = |err: std::io::Error| StartError::Bind {
                what: "p".to_string(),
                addr: text.clone(),
                err,
            };
            // nutcracker unlinks a stale socket file before binding.
            let _ = std::fs::remove_file(path);
            let listener = std::os::unix::net::UnixListener::bind(path).map_err(fail)?;
            if let Some(perm) = perm {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(*perm))
                    .map_err(fail)?;
            }
            listener.set_nonblocking(true).map_err(fail)?;
            Ok(BoundListener::Unix(listener))
        }
    }
}

impl BoundListener {
    pub(crate) fn try_clone(&self) -> std::io::Result<BoundListener> {
        Ok(match self {
            BoundListener::Tcp(l) => BoundListener::Tcp(l.try_clone()?),
            BoundListener::Unix(l) => BoundListener::Unix(l.try_clone()?),
        })
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            BoundListener::Tcp(l) => l.local_addr().ok(),
            BoundListener::Unix(_) => None,
        }
    }
}

/// What the process tells its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    /// Stop accepting; let every client finish the requests it already sent.
    Drain,
    /// Stop now, dropping every connection.
    Stop,
}

/// Client admission shared by all workers (checked per connection, never
/// per request): nutcracker's descriptor-based cap on all clients.
pub(crate) struct Admission {
    /// RLIMIT_NOFILE minus what servers and listeners need (nutcracker §5.9).
    pub(crate) max_clients: usize,
    pub(crate) clients: AtomicUsize,
}

/// What the workers share for one pool: its `client_connections` count and
/// its servers' health. Both change per connection or per failure, never per
/// request.
pub(crate) struct PoolShared {
    /// `client_connections`; 0 = unlimited.
    client_limit: usize,
    clients: AtomicUsize,
    pub(crate) health: PoolHealth,
}

impl PoolShared {
    pub(crate) fn new(pool: &nc_config::Pool) -> PoolShared {
        PoolShared {
            client_limit: pool.client_connections_configured as usize,
            clients: AtomicUsize::new(0),
            health: PoolHealth::new(pool.servers.len()),
        }
    }
}

impl Admission {
    pub(crate) fn new(config: &Config, workers: usize) -> Admission {
        let nofile = open_file_limit();
        // Every worker has its own server connections and listeners.
        let reserved: usize = config
            .pools
            .iter()
            .map(|p| (p.server_connections as usize * p.servers.len() + 1) * workers)
            .sum::<usize>()
            + 32;
        Admission {
            max_clients: nofile.saturating_sub(reserved),
            clients: AtomicUsize::new(0),
        }
    }

    /// Takes a client slot in `pool`, or refuses.
    fn admit(&self, pool: &PoolShared) -> bool {
        if self.clients.fetch_add(1, Ordering::Relaxed) >= self.max_clients {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let before = pool.clients.fetch_add(1, Ordering::Relaxed);
        if pool.client_limit > 0 && before >= pool.client_limit {
            pool.clients.fetch_sub(1, Ordering::Relaxed);
            self.clients.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn release(&self, pool: &PoolShared) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
        pool.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The soft RLIMIT_NOFILE.
fn open_file_limit() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    match crate::sys::getrlimit_nofile(&mut limit) {
        Ok(()) if limit.rlim_cur != libc::RLIM_INFINITY => limit.rlim_cur as usize,
        _ => usize::MAX,
    }
}

/// Per-worker state every connection of the worker can reach.
pub(crate) struct WorkerCtx {
    pub(crate) admission: Arc<Admission>,
    /// Set on drain: clients stop reading and close after their replies.
    pub(crate) draining: Cell<bool>,
    clients: RefCell<HashMap<u64, Weak<crate::replies::ClientShared>>>,
    next_client: Cell<u64>,
}

impl WorkerCtx {
    /// Registers a client so a drain can wake it; returns its id.
    pub(crate) fn register(&self, client: &Rc<crate::replies::ClientShared>) -> u64 {
        let id = self.next_client.get();
        self.next_client.set(id + 1);
        self.clients.borrow_mut().insert(id, Rc::downgrade(client));
        id
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.clients.borrow_mut().remove(&id);
    }

    fn active_clients(&self) -> usize {
        self.clients.borrow().len()
    }

    fn start_drain(&self) {
        self.draining.set(true);
        let clients: Vec<_> = self
            .clients
            .borrow()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for client in clients {
            client.waker.wake();
        }
    }
}

/// The current version of one pool on this worker. A reload swaps the pool
/// in place; clients pick the new version up between read batches, so their
/// connections survive the reload.
pub(crate) struct PoolHandle {
    current: RefCell<Rc<Pool>>,
    generation: Cell<u64>,
}

impl PoolHandle {
    fn new(pool: Rc<Pool>) -> Rc<PoolHandle> {
        Rc::new(PoolHandle {
            current: RefCell::new(pool),
            generation: Cell::new(0),
        })
    }

    pub(crate) fn current(&self) -> Rc<Pool> {
        self.current.borrow().clone()
    }

    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.get()
    }

    fn replace(&self, pool: Rc<Pool>) {
        *self.current.borrow_mut() = pool;
        self.generation.set(self.generation.get() + 1);
    }
}

/// How one pool of a new configuration is set up on a worker.
pub(crate) struct PoolPlan {
    /// The pool is unchanged: keep the running one at this old index.
    pub(crate) keep: Option<usize>,
    /// The old pool (index) whose listener has the same address, or a new listener.
    pub(crate) listener: Result<usize, BoundListener>,
    pub(crate) stats: Arc<PoolStats>,
    pub(crate) shared: Arc<PoolShared>,
}

/// Messages from the process to a worker, besides start/stop.
pub(crate) enum WorkerMsg {
    Reload {
        config: Arc<Config>,
        pools: Vec<PoolPlan>,
    },
}

/// Everything a worker thread starts with.
pub(crate) struct WorkerSetup {
    pub(crate) config: Arc<Config>,
    pub(crate) pools: Vec<PoolPlan>,
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) limits: Limits,
    pub(crate) admission: Arc<Admission>,
    pub(crate) control: watch::Receiver<(Control, std::time::Duration)>,
    pub(crate) messages: tokio::sync::mpsc::UnboundedReceiver<WorkerMsg>,
    /// `--busy-poll` window; zero: no poller.
    pub(crate) busy_poll: std::time::Duration,
}

/// A pool running on this worker: its handle and its accept loop.
struct Running {
    handle: Rc<PoolHandle>,
    accept: tokio::task::JoinHandle<()>,
}

/// Runs one worker until shutdown. Called on its own thread.
pub(crate) fn run(setup: WorkerSetup) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error(format_args!("worker runtime failed to start: {e}"));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let WorkerSetup {
            config,
            pools,
            stats,
            limits,
            admission,
            mut control,
            mut messages,
            busy_poll,
        } = setup;
        if !busy_poll.is_zero() {
            tokio::task::spawn_local(crate::busy_poll::run(busy_poll));
        }
        let worker = Rc::new(WorkerCtx {
            admission,
            draining: Cell::new(false),
            clients: RefCell::new(HashMap::new()),
            next_client: Cell::new(0),
        });
        let build = |config: &Arc<Config>, plans: Vec<PoolPlan>, mut old: Vec<Option<Running>>| {
            let mut running = Vec::with_capacity(plans.len());
            for (index, plan) in plans.into_iter().enumerate() {
                let kept = plan
                    .keep
                    .and_then(|i| old.get(i).and_then(|r| r.as_ref()))
                    .map(|r| r.handle.current());
                let pool = kept.unwrap_or_else(|| {
                    let pool = Rc::new(Pool::new(
                        Arc::new(config.pools[index].clone()),
                        limits,
                        plan.stats.clone(),
                        stats.clone(),
                        plan.shared.clone(),
                        worker.clone(),
                    ));
                    if pool.config.preconnect {
                        pool.preconnect();
                    }
                    pool
                });
                match plan.listener {
                    Ok(i) => match old.get_mut(i).and_then(Option::take) {
                        Some(entry) => {
                            entry.handle.replace(pool);
                            running.push(entry);
                        }
                        None => log::error(format_args!(
                            "reload lost the listener of pool '{}'",
                            pool.config.name
                        )),
                    },
                    Err(listener) => {
                        stats.curr_connections.incr();
                        stats.total_connections.incr();
                        let handle = PoolHandle::new(pool);
                        let accept =
                            tokio::task::spawn_local(accept_loop(listener, handle.clone()));
                        running.push(Running { handle, accept });
                    }
                }
            }
            // Pools whose listener is gone: stop accepting; their clients finish.
            for entry in old.into_iter().flatten() {
                entry.accept.abort();
                stats.curr_connections.sub(1);
            }
            running
        };
        let mut running = build(&config, pools, Vec::new());
        let grace = loop {
            tokio::select! {
                changed = control.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let (command, grace) = *control.borrow();
                    match command {
                        Control::Run => continue,
                        Control::Drain => break grace,
                        Control::Stop => return,
                    }
                }
                Some(message) = messages.recv() => match message {
                    WorkerMsg::Reload { config, pools } => {
                        let old = std::mem::take(&mut running).into_iter().map(Some).collect();
                        running = build(&config, pools, old);
                    }
                },
            }
        };
        // Drain: no new clients; existing ones finish what they sent.
        for entry in running {
            entry.accept.abort();
        }
        worker.start_drain();
        let deadline = tokio::time::Instant::now() + grace;
        while worker.active_clients() > 0 && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                changed = control.changed() => {
                    if changed.is_err() || control.borrow().0 == Control::Stop {
                        return;
                    }
                }
            }
        }
    });
}

/// A listener registered with this worker's runtime.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn register(bound: BoundListener) -> std::io::Result<Listener> {
        Ok(match bound {
            BoundListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)?),
            BoundListener::Unix(l) => Listener::Unix(UnixListener::from_std(l)?),
        })
    }

    async fn accept(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Listener::Tcp(l) => Stream::Tcp(l.accept().await?.0),
            Listener::Unix(l) => Stream::Unix(l.accept().await?.0),
        })
    }
}

async fn accept_loop(listener: BoundListener, handle: Rc<PoolHandle>) {
    let listener = match Listener::register(listener) {
        Ok(l) => l,
        Err(e) => {
            log::error(format_args!(
                "listen on pool '{}' failed: {e}",
                handle.current().config.name
            ));
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let pool = handle.current();
                if !pool.worker.admission.admit(&pool.shared) {
                    // Over the limit: accept, then close at once (nutcracker §5.9).
                    drop(stream);
                    continue;
                }
                if let Stream::Tcp(tcp) = &stream {
                    let _ = tcp.set_nodelay(true);
                    if pool.config.tcpkeepalive {
                        let _ = SockRef::from(tcp).set_tcp_keepalive(&TcpKeepalive::new());
                    }
                }
                tokio::task::spawn_local(client::serve(stream, handle.clone()));
            }
            Err(e) => accept_failed(&handle.current(), e).await,
        }
    }
}

/// Logs an accept failure; out of descriptors, it backs off instead of spinning.
async fn accept_failed(pool: &Pool, err: std::io::Error) {
    log::error(format_args!(
        "accept on p for pool '{}' failed: {err}",
        pool.config.name
    ));
    if matches!(err.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
