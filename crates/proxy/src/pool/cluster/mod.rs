//! A `distribution: redis_cluster` pool on one worker: routing by slot to
//! the node that serves it, this worker's connections to every node, and
//! what happens when a node does not serve a request.
//!
//! - MOVED: sent again at once to the named node (registered if new), the
//!   slot is pointed there on this worker, and a topology refresh is asked.
//! - ASK: sent again to the named node with `ASKING` in front, in one
//!   buffer, so one send carries both and nothing can come between them on
//!   the connection; the map is not touched.
//! - At most `MAX_HOPS` redirects per request; then the last error goes to
//!   the client verbatim.
//! - TRYAGAIN, CLUSTERDOWN, MASTERDOWN, READONLY, and requests whose
//!   connection failed before they were written (and read-only ones
//!   written but unanswered): retried by slot after a short backoff while
//!   the request's `timeout` (or `DEFAULT_RETRY_BUDGET`) lasts, then the
//!   node's own error (or the connection's) goes to the client.
//!
//! A redirected or retried request keeps its reply slot in the client's
//! queue, so every client gets its replies in order. Each fragment of a
//! split request holds the keys of one slot, so a redirect moves it whole.

pub(crate) mod topology;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nc_config::{ClusterRead, ServerAddr};
use tokio::time::Instant;

use crate::conn::server::{ClusterHooks, ClusterNode, ServerConn, ServerCtx, ServerReq};
use crate::dialect::cluster::{parse_redirect, ClusterError, NodeAddr, ASKING};
use crate::errno::Errno;
use crate::log;
use topology::{ClusterShared, SlotMap};

use super::{NodeTemplate, ServerSlot};

/// Redirects one request may follow.
const MAX_HOPS: u8 = 5;
/// How long retries last for a request without a deadline (`timeout:`).
const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(5);
/// Backoff of the first retry; doubled each time up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// This worker's copy of the map, and the slots MOVED replies pointed
/// elsewhere since (cleared when a new map arrives).
struct View {
    epoch: u64,
    map: Arc<SlotMap>,
    moved: HashMap<u16, usize>,
}

/// A request waiting to be routed again.
struct Retry {
    due: Instant,
    req: ServerReq,
    /// What the client gets if the retries run out.
    last: Result<Bytes, Errno>,
}

/// Where a routed request goes: a node id.
pub(crate) type NodeId = usize;

/// One cluster pool on one worker.
pub(crate) struct ClusterWorker {
    shared: Arc<ClusterShared>,
    worker: usize,
    read: ClusterRead,
    template: NodeTemplate,
    view: RefCell<View>,
    /// This worker's connections, by node id (created on first use).
    nodes: RefCell<Vec<Option<Rc<ServerSlot>>>>,
    retries: RefCell<VecDeque<Retry>>,
    retry_wake: Rc<tokio::sync::Notify>,
    next_replica: Cell<usize>,
    me: Weak<ClusterWorker>,
}

impl ClusterWorker {
    pub(crate) fn new(
        shared: Arc<ClusterShared>,
        worker: usize,
        read: ClusterRead,
        template: NodeTemplate,
    ) -> Rc<ClusterWorker> {
        let (epoch, map) = shared.map();
        let retry_wake = Rc::new(tokio::sync::Notify::new());
        let cluster = Rc::new_cyclic(|me| ClusterWorker {
            shared,
            worker,
            read,
            template,
            view: RefCell::new(View {
                epoch,
                map,
                moved: HashMap::new(),
            }),
            nodes: RefCell::new(Vec::new()),
            retries: RefCell::new(VecDeque::new()),
            retry_wake: retry_wake.clone(),
            next_replica: Cell::new(0),
            me: me.clone(),
        });
        tokio::task::spawn_local(run_retries(Rc::downgrade(&cluster), retry_wake));
        cluster
    }

    /// Takes the shared map when it changed; drops connections to nodes it
    /// no longer lists.
    #[inline]
    fn sync(&self) {
        let epoch = self.shared.epoch();
        if epoch != self.view.borrow().epoch {
            self.adopt_new_map();
        }
    }

    #[cold]
    fn adopt_new_map(&self) {
        let (epoch, map) = self.shared.map();
        let mut nodes = self.nodes.borrow_mut();
        for (id, slot) in nodes.iter_mut().enumerate() {
            if slot.is_some() && !map.listed.contains(&id) {
                if let Some(slot) = slot.take() {
                    slot.retire();
                }
            }
        }
        *self.view.borrow_mut() = View {
            epoch,
            map,
            moved: HashMap::new(),
        };
    }

    /// The node for a request on `slot`, or the error reply when
    /// `cluster_read: replica` finds no replica.
    pub(crate) fn target(&self, slot: u16, read_only: bool, retries: u8) -> Result<NodeId, Bytes> {
        self.sync();
        let view = self.view.borrow();
        if !view.moved.is_empty() {
            if let Some(&node) = view.moved.get(&slot) {
                return Ok(node);
            }
        }
        let Some(shard) = view.map.shard(slot) else {
            // An unassigned slot: any node answers CLUSTERDOWN, which is retried.
            return Ok(view.map.listed.first().copied().unwrap_or(0));
        };
        if !read_only || self.read == ClusterRead::Master {
            return Ok(shard.master);
        }
        // prefer_replica: after a failure, reads fall back to the master.
        if shard.replicas.is_empty() || (retries > 0 && self.read == ClusterRead::PreferReplica) {
            return match self.read {
                ClusterRead::Replica => Err(Bytes::from(format!(
                    "-ERR no replica serves slot {slot}\r\n"
                ))),
                _ => Ok(shard.master),
            };
        }
        let i = self.next_replica.get();
        self.next_replica.set(i.wrapping_add(1));
        Ok(shard.replicas[i % shard.replicas.len()])
    }

    /// Connects to every master of the map (`preconnect: true`).
    pub(crate) fn preconnect(&self) {
        let masters: Vec<NodeId> = {
            self.sync();
            let view = self.view.borrow();
            view.map.shards.iter().map(|s| s.master).collect()
        };
        for node in masters {
            let _ = self.conn(node);
        }
    }

    /// A connection to `node`, connecting if needed.
    pub(crate) fn conn(&self, node: NodeId) -> Rc<ServerConn> {
        let slot = {
            let mut nodes = self.nodes.borrow_mut();
            if nodes.len() <= node {
                nodes.resize(node + 1, None);
            }
            match &nodes[node] {
                Some(slot) => slot.clone(),
                None => {
                    let slot = Rc::new(self.node_slot(node));
                    nodes[node] = Some(slot.clone());
                    slot
                }
            }
        };
        slot.conn()
    }

    fn node_slot(&self, id: NodeId) -> ServerSlot {
        let node = self.shared.node(id);
        let (name, addr, stats) = match node {
            Some(node) => (
                node.addr.name(),
                ServerAddr::Tcp {
                    host: node.addr.host.clone(),
                    port: node.addr.port,
                },
                node.stats.clone(),
            ),
            // Ids come from the registry, so this is not reached; a stand-in
            // keeps the request failing cleanly if it ever is.
            None => (
                "unknown".to_owned(),
                ServerAddr::Tcp {
                    host: "0.0.0.0".to_owned(),
                    port: 0,
                },
                Arc::new(crate::stats::NodeStats::new(
                    "unknown".to_owned(),
                    self.shared.workers,
                )),
            ),
        };
        let me: Weak<dyn ClusterHooks> = self.me.clone();
        self.template.slot(
            name,
            addr,
            Some(ClusterNode {
                stats,
                worker: self.worker,
                hooks: me,
            }),
        )
    }

    /// Routes `req` by its slot and queues it.
    fn route_again(&self, req: ServerReq) {
        match self.target(req.route.slot, req.route.read_only, req.route.retries) {
            Ok(node) => self.conn(node).enqueue(req),
            Err(reply) => req.answer(Ok(reply)),
        }
    }

    /// Queues `req` to be routed again after a backoff, or answers it with
    /// `last` when its time is up.
    fn retry(
        &self,
        mut req: ServerReq,
        last: Result<Bytes, Errno>,
        stats: &crate::stats::NodeClusterStats,
    ) {
        strip_asking(&mut req);
        let now = Instant::now();
        let until = *req
            .route
            .retry_until
            .get_or_insert_with(|| req.deadline.unwrap_or(now + DEFAULT_RETRY_BUDGET));
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << req.route.retries.min(5))
            .min(MAX_BACKOFF);
        // Leave the next attempt some of the time, not just the backoff.
        if now + backoff * 2 >= until {
            stats.gave_up.incr();
            req.answer(last);
            return;
        }
        req.route.retries = req.route.retries.saturating_add(1);
        self.retries.borrow_mut().push_back(Retry {
            due: now + backoff,
            req,
            last,
        });
        self.retry_wake.notify_one();
    }

    /// Routes again every retry that is due; returns when the next one is.
    fn run_due_retries(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut due = Vec::new();
        let next = {
            let mut retries = self.retries.borrow_mut();
            let mut i = 0;
            while i < retries.len() {
                if retries[i].due <= now {
                    if let Some(retry) = retries.remove(i) {
                        due.push(retry);
                    }
                } else {
                    i += 1;
                }
            }
            retries.iter().map(|r| r.due).min()
        };
        for retry in due {
            if retry.req.is_wanted() {
                self.route_again(retry.req);
            }
        }
        next
    }

    fn node_stats<'a>(&self, from: &'a ServerCtx) -> Option<&'a crate::stats::NodeClusterStats> {
        from.node.as_ref().map(|n| &n.stats.cluster[n.worker])
    }
}

impl Drop for ClusterWorker {
    fn drop(&mut self) {
        // Ends the retry task; queued retries get their last error.
        self.retry_wake.notify_one();
        for retry in self.retries.get_mut().drain(..) {
            retry.req.answer(retry.last);
        }
    }
}

impl ClusterHooks for ClusterWorker {
    fn cluster_error(
        &self,
        mut req: ServerReq,
        error: ClusterError,
        reply: Bytes,
        from: &ServerCtx,
    ) {
        let fallback = crate::stats::NodeClusterStats::default();
        let stats = self.node_stats(from).unwrap_or(&fallback);
        match error {
            ClusterError::Moved | ClusterError::Ask => {
                let Some(redirect) = parse_redirect(&reply) else {
                    req.answer(Ok(reply));
                    return;
                };
                if req.route.hops >= MAX_HOPS {
                    stats.gave_up.incr();
                    req.answer(Ok(reply));
                    return;
                }
                req.route.hops += 1;
                let host = redirect.host.unwrap_or_else(|| match &from.addr {
                    ServerAddr::Tcp { host, .. } => host.clone(),
                    ServerAddr::Unix(_) => String::new(),
                });
                let node = self.shared.node_at(&NodeAddr {
                    host,
                    port: redirect.port,
                });
                strip_asking(&mut req);
                if error == ClusterError::Moved {
                    stats.moved.incr();
                    self.sync();
                    self.view.borrow_mut().moved.insert(redirect.slot, node.id);
                    self.shared.want_refresh();
                } else {
                    stats.ask.incr();
                    add_asking(&mut req);
                }
                self.conn(node.id).enqueue(req);
            }
            ClusterError::TryAgain => {
                stats.tryagain.incr();
                self.retry(req, Ok(reply), stats);
            }
            ClusterError::ClusterDown | ClusterError::MasterDown | ClusterError::ReadOnly => {
                stats.clusterdown.incr();
                self.shared.want_refresh();
                self.retry(req, Ok(reply), stats);
            }
        }
    }

    fn unsent(&self, req: ServerReq, errno: Errno, from: &ServerCtx) {
        let fallback = crate::stats::NodeClusterStats::default();
        let stats = self.node_stats(from).unwrap_or(&fallback);
        stats.resent.incr();
        if req.route.retries == 0 {
            log::debug(format_args!(
                "pool '{}': resending a request unsent to {}",
                self.shared.pool_name, from.name
            ));
        }
        self.shared.want_refresh();
        self.retry(req, Err(errno), stats);
    }

    fn connection_failed(&self, from: &ServerCtx) {
        log::debug(format_args!(
            "pool '{}': connection to {} failed; refreshing the slot map",
            self.shared.pool_name, from.name
        ));
        self.shared.want_refresh();
    }
}

/// Puts `ASKING` in front of the request, in the same buffer: one send
/// carries both, and its `+OK` is swallowed before the request's reply.
fn add_asking(req: &mut ServerReq) {
    let mut data = BytesMut::with_capacity(ASKING.len() + req.data.len());
    data.extend_from_slice(&ASKING);
    data.extend_from_slice(&req.data);
    req.data = data.freeze();
    req.route.skip += 1;
    req.route.ask_prefix = true;
}

/// Makes a request that a node refused ready to be sent again: without an
/// `ASKING` that `add_asking` put in front, expecting its transaction's
/// preamble replies again.
fn strip_asking(req: &mut ServerReq) {
    if req.route.ask_prefix {
        req.data = req.data.slice(ASKING.len()..);
        req.route.ask_prefix = false;
    }
    req.route.skip = req.route.txn_skip;
}

/// The worker's retry timer: sleeps until the earliest retry is due.
async fn run_retries(cluster: Weak<ClusterWorker>, wake: Rc<tokio::sync::Notify>) {
    loop {
        let next = match cluster.upgrade() {
            Some(cluster) => cluster.run_due_retries(),
            None => return,
        };
        match next {
            Some(due) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}
