//! A pool as one worker sees it: its config, the distribution continuum, and
//! this worker's connections to each server. Routing a key is a hash and a
//! binary search; the chosen server connection is created on first use.
//! Server health (failure counts, ejections) is shared by all workers, so
//! they eject a server together, as nutcracker's single loop does.

use std::cell::{Cell, RefCell};

use std::rc::Rc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nc_hashkit::{Continuum, ServerSpec};
use nc_protocol::Limits;

use crate::chain::SendOpts;
use crate::log;
use crate::server::{ServerConn, ServerCtx};
use crate::stats::{PoolStats, WorkerStats};
use crate::worker::PoolShared;

/// A server's health (nutcracker's failure_count and next_retry), shared by
/// the workers. Failures are counted per server, not per connection.
#[derive(Default)]
pub(crate) struct ServerHealth {
    failures: AtomicU32,
    /// Until when the server is ejected, on `ejection_clock_us`; 0 = never was.
    ejected_until_us: AtomicU64,
}

/// The health of one pool's servers, shared by the workers.
pub(crate) struct PoolHealth {
    servers: Vec<ServerHealth>,
    /// Ejections so far: a worker rebuilds its continuum when this moves.
    ejections: AtomicU64,
}

impl PoolHealth {
    pub(crate) fn new(servers: usize) -> PoolHealth {
        PoolHealth {
            servers: (0..servers).map(|_| ServerHealth::default()).collect(),
            ejections: AtomicU64::new(0),
        }
    }

    pub(crate) fn server(&self, index: usize) -> &ServerHealth {
        &self.servers[index]
    }
}

/// Microseconds on a monotonic clock all workers share (ejection deadlines).
fn ejection_clock_us() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_micros() as u64
}

/// This worker's view of ejections: the policy, and when its continuum must
/// be rebuilt next.
pub(crate) struct Ejection {
    /// `auto_eject_hosts`: (server_failure_limit, server_retry_timeout).
    policy: Option<(u32, Duration)>,
    /// The next end of an ejection, on `ejection_clock_us`.
    next_rebuild_us: Cell<Option<u64>>,
    /// The pool's `ejections` count that the continuum reflects.
    seen_ejections: Cell<u64>,
}

impl ServerHealth {
    /// Any good reply resets the failure count (nutcracker's server_ok). The
    /// load keeps the line shared between workers while the count is 0.
    #[inline]
    pub(crate) fn ok(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }
}

/// Records one failure of a server connection (nutcracker's server_failure):
/// with auto_eject_hosts, the server is ejected after `server_failure_limit`
/// consecutive failures, counted across workers, and every worker rebuilds
/// its continuum without it.
pub(crate) fn server_failure(ctx: &ServerCtx) {
    let Some((limit, retry)) = ctx.ejection.policy else {
        return;
    };
    let health = ctx.health();
    let failures = health.failures.fetch_add(1, Ordering::Relaxed) + 1;
    if failures < limit {
        return;
    }
    // Of failures racing past the limit, the one whose count is still current
    // ejects; a reply in between (count reset) cancels the ejection.
    if health
        .failures
        .compare_exchange(failures, 0, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let until = ejection_clock_us() + retry.as_micros() as u64;
    health.ejected_until_us.store(until, Ordering::Relaxed);
    // Release: a worker that sees the new count also sees the deadline.
    ctx.shared.health.ejections.fetch_add(1, Ordering::Release);
    let usec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    ctx.stats().server_ejected_at.set(usec);
    ctx.pool_stats.server_ejects.incr();
    log::notice(format_args!(
        "server '{}' in pool '{}' ejected for {} msec",
        ctx.name,
        ctx.pool_name,
        retry.as_millis()
    ));
}

/// The pool's continuum over the servers marked live.
fn build_continuum(config: &nc_config::Pool, live: &[bool]) -> Continuum {
    let specs: Vec<ServerSpec<'_>> = config
        .servers
        .iter()
        .map(|s| ServerSpec {
            name: s.name.as_bytes(),
            weight: s.weight,
        })
        .collect();
    Continuum::build(config.distribution, &specs, live)
}

pub(crate) struct ServerSlot {
    ctx: Rc<ServerCtx>,
    /// `server_connections` connections, used round-robin.
    conns: RefCell<Vec<Option<Rc<ServerConn>>>>,
    next: Cell<usize>,
}

pub(crate) struct Pool {
    pub(crate) config: Arc<nc_config::Pool>,
    pub(crate) limits: Limits,
    pub(crate) send: SendOpts,
    pub(crate) timeout: Option<Duration>,
    /// Bytes of unsent replies one client may accumulate (0 = unlimited).
    pub(crate) client_output_limit: usize,
    pub(crate) stats: Arc<PoolStats>,
    pub(crate) conns: Arc<WorkerStats>,
    pub(crate) shared: Arc<PoolShared>,
    pub(crate) worker: Rc<crate::worker::WorkerCtx>,
    continuum: RefCell<Continuum>,
    ejection: Rc<Ejection>,
    servers: Vec<ServerSlot>,
}

impl Pool {
    pub(crate) fn new(
        config: Arc<nc_config::Pool>,
        limits: Limits,
        stats: Arc<PoolStats>,
        conns: Arc<WorkerStats>,
        shared: Arc<PoolShared>,
        worker: Rc<crate::worker::WorkerCtx>,
    ) -> Pool {
        let send = SendOpts::from_pool(&config);
        let live = vec![true; config.servers.len()];
        let continuum = RefCell::new(build_continuum(&config, &live));
        let ejection = Rc::new(Ejection {
            policy: config.auto_eject_hosts.then(|| {
                (
                    config.server_failure_limit.max(1),
                    Duration::from_millis(config.server_retry_timeout_ms),
                )
            }),
            next_rebuild_us: Cell::new(None),
            seen_ejections: Cell::new(0),
        });
        let servers = config
            .servers
            .iter()
            .enumerate()
            .map(|(server_index, server)| ServerSlot {
                ctx: Rc::new(ServerCtx {
                    pool_name: config.name.clone(),
                    name: server.name.clone(),
                    addr: server.addr.clone(),
                    redis_auth: config.redis_auth.clone(),
                    redis_db: config.redis_db,
                    limits,
                    send,
                    pool_stats: stats.clone(),
                    conns: conns.clone(),
                    server_index,
                    shared: shared.clone(),
                    ejection: ejection.clone(),
                }),
                conns: RefCell::new(vec![None; config.server_connections.max(1) as usize]),
                next: Cell::new(0),
            })
            .collect();
        Pool {
            timeout: config.timeout_ms.map(Duration::from_millis),
            client_output_limit: config.client_output_limit,
            config,
            limits,
            send,
            stats,
            conns,
            shared,
            worker,
            continuum,
            ejection,
            servers,
        }
    }

    /// Rebuilds the continuum when an ejection started (on any worker) or
    /// ended.
    #[inline]
    fn refresh(&self) {
        if self.ejection.policy.is_none() {
            return;
        }
        let ejections = self.shared.health.ejections.load(Ordering::Acquire);
        let ended = self
            .ejection
            .next_rebuild_us
            .get()
            .is_some_and(|at| ejection_clock_us() >= at);
        if ended || ejections != self.ejection.seen_ejections.get() {
            self.rebuild(ejections);
        }
    }

    #[cold]
    fn rebuild(&self, ejections: u64) {
        let now = ejection_clock_us();
        let mut next: Option<u64> = None;
        let live: Vec<bool> = self
            .shared
            .health
            .servers
            .iter()
            .map(|health| {
                let until = health.ejected_until_us.load(Ordering::Relaxed);
                if until > now {
                    next = Some(next.map_or(until, |n| n.min(until)));
                }
                until <= now
            })
            .collect();
        *self.continuum.borrow_mut() = build_continuum(&self.config, &live);
        self.ejection.next_rebuild_us.set(next);
        self.ejection.seen_ejections.set(ejections);
    }

    pub(crate) fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// The server index for a key, or None when no server is live.
    #[inline]
    pub(crate) fn route(&self, key: &[u8]) -> Option<usize> {
        self.refresh();
        let tag = self.config.hash_tag;
        self.continuum
            .borrow()
            .server_for_key(self.config.hash, tag, key)
    }

    /// A live connection to server `index`, connecting if needed.
    pub(crate) fn conn(&self, index: usize) -> Rc<ServerConn> {
        let slot = &self.servers[index];
        let mut conns = slot.conns.borrow_mut();
        let i = slot.next.get() % conns.len();
        slot.next.set(i.wrapping_add(1));
        match &conns[i] {
            Some(conn) if !conn.is_dead() => conn.clone(),
            _ => {
                let conn = ServerConn::spawn(slot.ctx.clone());
                conns[i] = Some(conn.clone());
                conn
            }
        }
    }

    /// Opens one connection per server now (`preconnect: true`).
    pub(crate) fn preconnect(&self) {
        for index in 0..self.servers.len() {
            let _ = self.conn(index);
        }
    }
}
