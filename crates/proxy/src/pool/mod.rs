//! A pool as one worker sees it: its config, its router, and this worker's
//! connections to each server (created on first use, `server_connections`
//! of them used round-robin). `PoolHandle` is the current version of a pool,
//! swapped by a reload. Routing lives in `router`; server health (failure
//! counts, ejections), which all workers share so that they eject a server
//! together as nutcracker's single loop does, lives in `health`; the
//! active health checks (`health_check_interval`) in `check`.

pub(crate) mod check;
pub(crate) mod health;
pub(crate) mod router;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use nc_protocol::Limits;

use crate::conn::server::{ServerConn, ServerCtx};
use crate::conn::WorkerCtx;
use crate::dialect::Dialect;
use crate::io::chain::SendOpts;
use crate::stats::{PoolStats, WorkerStats};
use health::PoolShared;
use router::Router;

pub(crate) struct ServerSlot {
    ctx: Rc<ServerCtx>,
    /// `server_connections` connections, used round-robin.
    conns: RefCell<Vec<Option<Rc<ServerConn>>>>,
    next: Cell<usize>,
}

pub(crate) struct Pool {
    pub(crate) config: Arc<nc_config::Pool>,
    /// The pool's protocol: how requests are parsed, split and answered.
    pub(crate) dialect: Rc<Dialect>,
    pub(crate) limits: Limits,
    pub(crate) send: SendOpts,
    pub(crate) timeout: Option<Duration>,
    /// Bytes of unsent replies one client may accumulate (0 = unlimited).
    pub(crate) client_output_limit: usize,
    pub(crate) stats: Arc<PoolStats>,
    /// This pool's counters on every worker.
    pub(crate) all_stats: Arc<Vec<Arc<PoolStats>>>,
    pub(crate) conns: Arc<WorkerStats>,
    pub(crate) shared: Arc<PoolShared>,
    pub(crate) worker: Rc<WorkerCtx>,
    router: Router,
    servers: Vec<ServerSlot>,
}

impl Pool {
    pub(crate) fn new(
        config: Arc<nc_config::Pool>,
        limits: Limits,
        stats: Arc<PoolStats>,
        all_stats: Arc<Vec<Arc<PoolStats>>>,
        conns: Arc<WorkerStats>,
        shared: Arc<PoolShared>,
        worker: Rc<WorkerCtx>,
    ) -> Pool {
        let send = SendOpts::from_pool(&config);
        let dialect = Rc::new(Dialect::for_pool(&config));
        let router = Router::new(config.clone(), shared.clone());
        let ejection = router.ejection.clone();
        let servers = config
            .servers
            .iter()
            .enumerate()
            .map(|(server_index, server)| ServerSlot {
                ctx: Rc::new(ServerCtx {
                    pool_name: config.name.clone(),
                    name: server.name.clone(),
                    addr: server.addr.clone(),
                    dialect: dialect.clone(),
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
            dialect,
            limits,
            send,
            stats,
            all_stats,
            conns,
            shared,
            worker,
            router,
            servers,
        }
    }

    pub(crate) fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// The server index for a key, or None when no server is live.
    #[inline]
    pub(crate) fn route(&self, key: &[u8]) -> Option<usize> {
        self.router.route(key)
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

/// The current version of one pool on this worker. A reload swaps the pool
/// in place; clients pick the new version up between read batches, so their
/// connections survive the reload.
pub(crate) struct PoolHandle {
    current: RefCell<Rc<Pool>>,
    generation: Cell<u64>,
}

impl PoolHandle {
    pub(crate) fn new(pool: Rc<Pool>) -> Rc<PoolHandle> {
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

    pub(crate) fn replace(&self, pool: Rc<Pool>) {
        *self.current.borrow_mut() = pool;
        self.generation.set(self.generation.get() + 1);
    }
}
