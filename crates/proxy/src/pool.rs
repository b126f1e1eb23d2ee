//! A pool as one worker sees it: its config, the distribution continuum, and
//! this worker's connections to each server. Routing a key is a hash and a
//! binary search; the chosen server connection is created on first use.

use std::cell::{Cell, RefCell};

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

use nc_hashkit::{Continuum, ServerSpec};
use nc_protocol::Limits;

use crate::chain::SendOpts;
use crate::log;
use crate::server::{ServerConn, ServerCtx};
use crate::stats::{PoolStats, WorkerStats};
use crate::worker::PoolAdmission;

/// A server's health as this worker sees it (nutcracker's failure_count and
/// next_retry; failures are counted per server, not per connection).
#[derive(Default)]
pub(crate) struct ServerHealth {
    failures: Cell<u32>,
    ejected_until: Cell<Option<Instant>>,
}

/// Ejection settings and the shared "rebuild the continuum at" time.
pub(crate) struct Ejection {
    /// `auto_eject_hosts`: (server_failure_limit, server_retry_timeout).
    policy: Option<(u32, Duration)>,
    next_rebuild: Cell<Option<Instant>>,
}

impl ServerHealth {
    /// Any good reply resets the failure count (nutcracker's server_ok).
    #[inline]
    pub(crate) fn ok(&self) {
        if self.failures.get() != 0 {
            self.failures.set(0);
        }
    }
}

/// Records one failure of a server connection (nutcracker's server_failure):
/// with auto_eject_hosts, the server is ejected after `server_failure_limit`
/// consecutive failures and the continuum is rebuilt without it.
pub(crate) fn server_failure(ctx: &ServerCtx) {
    let Some((limit, retry)) = ctx.ejection.policy else {
        return;
    };
    let failures = ctx.health.failures.get() + 1;
    if failures < limit {
        ctx.health.failures.set(failures);
        return;
    }
    ctx.health.failures.set(0);
    let now = Instant::now();
    ctx.health.ejected_until.set(Some(now + retry));
    let usec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    ctx.stats().server_ejected_at.set(usec);
    ctx.pool_stats.server_ejects.incr();
    ctx.ejection.next_rebuild.set(Some(now));
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
    pub(crate) admission: Arc<PoolAdmission>,
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
        admission: Arc<PoolAdmission>,
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
            next_rebuild: Cell::new(None),
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
                    health: Rc::new(ServerHealth::default()),
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
            admission,
            worker,
            continuum,
            ejection,
            servers,
        }
    }

    /// Rebuilds the continuum when an ejection started or ended.
    #[inline]
    fn refresh(&self) {
        if let Some(at) = self.ejection.next_rebuild.get() {
            if Instant::now() >= at {
                self.rebuild();
            }
        }
    }

    #[cold]
    fn rebuild(&self) {
        let now = Instant::now();
        let mut next: Option<Instant> = None;
        let live: Vec<bool> = self
            .servers
            .iter()
            .map(|slot| match slot.ctx.health.ejected_until.get() {
                Some(until) if until > now => {
                    next = Some(next.map_or(until, |n| n.min(until)));
                    false
                }
                Some(_) => {
                    slot.ctx.health.ejected_until.set(None);
                    true
                }
                None => true,
            })
            .collect();
        *self.continuum.borrow_mut() = build_continuum(&self.config, &live);
        self.ejection.next_rebuild.set(next);
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
