//! A pool as one worker sees it: its config, its router, and this worker's
//! connections to each server (created on first use, `server_connections`
//! of them used round-robin). `PoolHandle` is the current version of a pool,
//! swapped by a reload. Routing lives in `router`; server health (failure
//! counts, ejections), which all workers share so that they eject a server
//! together as nutcracker's single loop does, lives in `health`; the
//! active health checks (`health_check_interval`) in `check`. A
//! `redis_cluster` pool routes by slot instead, through `cluster`, to nodes
//! it discovers at run time.

pub(crate) mod check;
pub(crate) mod cluster;
pub(crate) mod health;
pub(crate) mod router;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use nc_protocol::Limits;

use bytes::Bytes;
use nc_config::ServerAddr;

use crate::conn::server::{ClusterNode, Route, ServerConn, ServerCtx};
use crate::conn::WorkerCtx;
use crate::dialect::Dialect;
use crate::io::chain::SendOpts;
use crate::stats::{PoolStats, WorkerStats};
use cluster::ClusterWorker;
use health::{Ejection, PoolShared};
use router::Router;

/// One server (or cluster node) on this worker: its context and its
/// `server_connections` connections.
pub(crate) struct ServerSlot {
    ctx: Rc<ServerCtx>,
    /// `server_connections` connections, used round-robin.
    conns: RefCell<Vec<Option<Rc<ServerConn>>>>,
    next: Cell<usize>,
}

impl ServerSlot {
    /// A live connection, connecting if needed.
    pub(crate) fn conn(&self) -> Rc<ServerConn> {
        let mut conns = self.conns.borrow_mut();
        let i = self.next.get() % conns.len();
        self.next.set(i.wrapping_add(1));
        match &conns[i] {
            Some(conn) if !conn.is_dead() => conn.clone(),
            _ => {
                let conn = ServerConn::spawn(self.ctx.clone());
                conns[i] = Some(conn.clone());
                conn
            }
        }
    }

    /// The server left the pool: its connections close once idle.
    pub(crate) fn retire(&self) {
        for conn in self.conns.borrow_mut().drain(..).flatten() {
            conn.retire();
        }
    }
}

/// What every server slot of a pool on this worker shares.
pub(crate) struct NodeTemplate {
    pool_name: String,
    dialect: Rc<Dialect>,
    limits: Limits,
    send: SendOpts,
    pool_stats: Arc<PoolStats>,
    conns: Arc<WorkerStats>,
    shared: Arc<PoolShared>,
    ejection: Rc<Ejection>,
    server_connections: usize,
}

impl NodeTemplate {
    /// A slot for a server of the config (`server_index`) or a cluster node.
    fn slot_at(
        &self,
        name: String,
        addr: ServerAddr,
        server_index: usize,
        node: Option<ClusterNode>,
    ) -> ServerSlot {
        ServerSlot {
            ctx: Rc::new(ServerCtx {
                pool_name: self.pool_name.clone(),
                name,
                addr,
                dialect: self.dialect.clone(),
                limits: self.limits,
                send: self.send,
                pool_stats: self.pool_stats.clone(),
                conns: self.conns.clone(),
                server_index,
                shared: self.shared.clone(),
                ejection: self.ejection.clone(),
                node,
            }),
            conns: RefCell::new(vec![None; self.server_connections]),
            next: Cell::new(0),
        }
    }

    /// A slot for a cluster node.
    pub(crate) fn slot(
        &self,
        name: String,
        addr: ServerAddr,
        node: Option<ClusterNode>,
    ) -> ServerSlot {
        self.slot_at(name, addr, 0, node)
    }
}

/// Where a pool's requests go.
enum Backends {
    /// nutcracker's pools: the configured servers, by hash and continuum.
    Static {
        router: Router,
        servers: Vec<ServerSlot>,
    },
    /// `distribution: redis_cluster`: nodes by slot.
    Cluster(Rc<ClusterWorker>),
}

/// Where one request goes: a server (or node) index and its route.
pub(crate) struct Target {
    pub(crate) server: usize,
    pub(crate) route: Route,
}

impl Target {
    /// A static pool's server.
    pub(crate) fn server(server: usize) -> Target {
        Target {
            server,
            route: Route::default(),
        }
    }
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
    backends: Backends,
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
        let template = NodeTemplate {
            pool_name: config.name.clone(),
            dialect: dialect.clone(),
            limits,
            send,
            pool_stats: stats.clone(),
            conns: conns.clone(),
            shared: shared.clone(),
            ejection: router.ejection.clone(),
            server_connections: config.server_connections.max(1) as usize,
        };
        let backends = match (&shared.cluster, &config.cluster) {
            (Some(cluster), Some(settings)) => Backends::Cluster(ClusterWorker::new(
                cluster.clone(),
                worker.index,
                settings.read,
                template,
            )),
            _ => Backends::Static {
                servers: config
                    .servers
                    .iter()
                    .enumerate()
                    .map(|(index, server)| {
                        template.slot_at(server.name.clone(), server.addr.clone(), index, None)
                    })
                    .collect(),
                router,
            },
        };
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
            backends,
        }
    }

    pub(crate) fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// The server index for a key, or None when no server is live (static
    /// pools; a cluster pool routes with `target`).
    #[inline]
    pub(crate) fn route(&self, key: &[u8]) -> Option<usize> {
        match &self.backends {
            Backends::Static { router, .. } => router.route(key),
            Backends::Cluster(_) => None,
        }
    }

    /// Where a request with routing key `key` goes, or the reply that says
    /// why it goes nowhere.
    #[inline]
    pub(crate) fn target(&self, key: &[u8], read_only: bool) -> Result<Target, Bytes> {
        match &self.backends {
            Backends::Static { router, .. } => match router.route(key) {
                Some(server) => Ok(Target {
                    server,
                    route: Route::default(),
                }),
                None => Err(self.dialect.wire().error_reply(libc::ECONNREFUSED)),
            },
            Backends::Cluster(_) => {
                self.slot_target(nc_hashkit::cluster_key_slot(key) as usize, read_only)
            }
        }
    }

    /// What a multi-key request's keys are grouped by: the server (static
    /// pools) or the slot (a cluster serves one slot per command).
    #[inline]
    pub(crate) fn split_group(&self, key: &[u8]) -> Option<usize> {
        match &self.backends {
            Backends::Static { router, .. } => router.route(key),
            Backends::Cluster(_) => Some(nc_hashkit::cluster_key_slot(key) as usize),
        }
    }

    /// Where the fragment of split group `group` goes.
    pub(crate) fn group_target(&self, group: usize, read_only: bool) -> Result<Target, Bytes> {
        match &self.backends {
            Backends::Static { .. } => Ok(Target {
                server: group,
                route: Route::default(),
            }),
            Backends::Cluster(_) => self.slot_target(group, read_only),
        }
    }

    fn slot_target(&self, slot: usize, read_only: bool) -> Result<Target, Bytes> {
        let Backends::Cluster(cluster) = &self.backends else {
            return Err(self.dialect.wire().error_reply(libc::ECONNREFUSED));
        };
        let slot = slot as u16;
        cluster.target(slot, read_only, 0).map(|server| Target {
            server,
            route: Route {
                slot,
                read_only,
                ..Route::default()
            },
        })
    }

    /// How many configured servers the pool routes to (0 for a cluster
    /// pool, whose nodes come from its slot map).
    pub(crate) fn static_servers(&self) -> usize {
        match &self.backends {
            Backends::Static { servers, .. } => servers.len(),
            Backends::Cluster(_) => 0,
        }
    }

    /// The context of configured server `index`.
    pub(crate) fn static_server_ctx(&self, index: usize) -> Option<Rc<ServerCtx>> {
        match &self.backends {
            Backends::Static { servers, .. } => servers.get(index).map(|s| s.ctx.clone()),
            Backends::Cluster(_) => None,
        }
    }

    /// Whether this pool routes by Redis Cluster slot.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.backends, Backends::Cluster(_))
    }

    /// A live connection to server (or node) `index`, connecting if needed.
    pub(crate) fn conn(&self, index: usize) -> Rc<ServerConn> {
        match &self.backends {
            Backends::Static { servers, .. } => servers[index].conn(),
            Backends::Cluster(cluster) => cluster.conn(index),
        }
    }

    /// Opens one connection per server now (`preconnect: true`); a cluster
    /// pool connects to the masters of its map.
    pub(crate) fn preconnect(&self) {
        match &self.backends {
            Backends::Static { servers, .. } => {
                for slot in servers {
                    let _ = slot.conn();
                }
            }
            Backends::Cluster(cluster) => cluster.preconnect(),
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
