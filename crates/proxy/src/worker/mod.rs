//! Shared-nothing workers: each thread runs a single-threaded tokio runtime
//! with its own listener per pool (SO_REUSEPORT on the same port when there
//! are several workers) and its own connections to every backend. Nothing is
//! shared between workers on the request path.

pub(crate) mod listen;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use nc_config::Config;
use nc_protocol::Limits;
use tokio::sync::watch;

use crate::conn::WorkerCtx;
use crate::log;
use crate::pool::health::PoolShared;
use crate::pool::{Pool, PoolHandle};
use crate::stats::{PoolStats, WorkerStats};
pub(crate) use listen::{bind, Admission, BoundListener};

/// What the process tells its workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Control {
    Run,
    /// Stop accepting; let every client finish the requests it already sent.
    Drain,
    /// Stop now, dropping every connection.
    Stop,
}

/// How one pool of a new configuration is set up on a worker.
pub(crate) struct PoolPlan {
    /// The pool is unchanged: keep the running one at this old index.
    pub(crate) keep: Option<usize>,
    /// The old pool (index) whose listener has the same address, or a new listener.
    pub(crate) listener: Result<usize, BoundListener>,
    pub(crate) stats: Arc<PoolStats>,
    /// Every worker's counters of this pool (memcache `stats` sums them).
    pub(crate) all_stats: Arc<Vec<Arc<PoolStats>>>,
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
    /// This worker's number (0-based).
    pub(crate) index: usize,
    pub(crate) config: Arc<Config>,
    pub(crate) pools: Vec<PoolPlan>,
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) limits: Limits,
    pub(crate) admission: Arc<Admission>,
    pub(crate) control: watch::Receiver<(Control, std::time::Duration)>,
    pub(crate) messages: tokio::sync::mpsc::UnboundedReceiver<WorkerMsg>,
    /// `--busy-poll` window; zero: no poller.
    pub(crate) busy_poll: std::time::Duration,
    /// `--wait adaptive`: its `--wait-cap` percent and the wakeup cost;
    /// None: `--wait sleep`.
    pub(crate) wait: Option<(u8, Duration)>,
    /// This worker runs the pools' health checks (worker 0 does).
    pub(crate) health_checks: bool,
    /// `--io uring` (and the probe passed): client I/O on a ring.
    pub(crate) uring: bool,
}

/// A pool running on this worker: its handle and its accept loop.
struct Running {
    handle: Rc<PoolHandle>,
    accept: tokio::task::JoinHandle<()>,
}

/// Runs one worker until shutdown. Called on its own thread.
pub(crate) fn run(setup: WorkerSetup) {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_all();
    let (uring, adaptive) = (setup.uring, setup.wait.is_some());
    if uring || adaptive {
        builder.on_thread_park(move || {
            if uring {
                // One io_uring_enter per loop iteration: everything the
                // clients queued goes in when the worker is about to sleep.
                crate::io::uring::submit_pending();
            }
            if adaptive {
                crate::io::wait::on_park();
            }
        });
    }
    if adaptive {
        // `--wait adaptive` measures each blocked stretch here.
        builder.on_thread_unpark(crate::io::wait::on_unpark);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            log::error(format_args!("worker runtime failed to start: {e}"));
            return;
        }
    };
    let worker = Rc::new(WorkerCtx::new(
        setup.index,
        setup.stats.clone(),
        setup.admission.clone(),
    ));
    let local = tokio::task::LocalSet::new();
    let serving = worker.clone();
    local.block_on(&runtime, async move {
        let worker = serving;
        let WorkerSetup {
            index: _,
            config,
            pools,
            stats,
            limits,
            admission,
            mut control,
            mut messages,
            busy_poll,
            wait,
            health_checks,
            uring,
        } = setup;
        if uring {
            if let Err(reason) = crate::io::uring::install(stats.clone()) {
                crate::io::uring::log_fallback(&reason);
            }
        }
        if !busy_poll.is_zero() {
            tokio::task::spawn_local(crate::io::busy_poll::run(busy_poll));
        }
        if let Some((cap, wakeup)) = wait {
            tokio::task::spawn_local(crate::io::wait::run(wakeup, cap, stats.clone()));
        }
        crate::conn::idle::start(&worker);
        let build = |config: &Arc<Config>, plans: Vec<PoolPlan>, mut old: Vec<Option<Running>>| {
            let mut running = Vec::with_capacity(plans.len());
            for (index, plan) in plans.into_iter().enumerate() {
                let kept = plan
                    .keep
                    .and_then(|i| old.get(i).and_then(|r| r.as_ref()))
                    .map(|r| r.handle.current());
                let is_new = kept.is_none();
                let pool = kept.unwrap_or_else(|| {
                    let pool = Rc::new(Pool::new(
                        Arc::new(config.pools[index].clone()),
                        limits,
                        plan.stats.clone(),
                        plan.all_stats.clone(),
                        stats.clone(),
                        plan.shared.clone(),
                        worker.clone(),
                    ));
                    if pool.config.preconnect {
                        pool.preconnect();
                    }
                    pool
                });
                let checked = (is_new && health_checks).then(|| pool.clone());
                let before = running.len();
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
                        let accept = tokio::task::spawn_local(listen::accept_loop(
                            listener,
                            handle.clone(),
                            admission.clone(),
                        ));
                        running.push(Running { handle, accept });
                    }
                }
                let added = running.get(before).filter(|_| running.len() > before);
                if let (Some(pool), Some(entry)) = (checked, added) {
                    crate::pool::check::spawn(&entry.handle, &pool);
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
    // Parked clients are not tasks: the runtime's end does not close them.
    worker.idle.close_all(&worker);
    // Connections first (their operations are cancelled), then the ring.
    drop(local);
    drop(runtime);
    crate::io::uring::uninstall();
}
