//! Counters and gauges, per worker, read by the stats server.
//!
//! Each worker owns its counters and is their only writer, so an update is a
//! relaxed load and store (plain moves), never an atomic read-modify-write.
//! The stats server sums the workers' values when it is asked.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A value written by one thread and read by others.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    /// Gauges go down too; they are summed across workers as wrapping values.
    #[inline]
    pub(crate) fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }

    #[inline]
    pub(crate) fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Send-path counters of one side of the chain (server requests or client replies).
#[derive(Debug, Default)]
pub struct SendStats {
    pub syscalls: Counter,
    pub iovecs: Counter,
    pub bytes: Counter,
    pub partial: Counter,
    /// TLS connections: batches handed to the TLS writer and flushed.
    pub tls_flushes: Counter,
    /// TLS connections: plaintext bytes encrypted (`bytes` counts the
    /// ciphertext written).
    pub tls_plain_bytes: Counter,
}

/// nutcracker's per-server fields, plus the request send path.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub server_eof: Counter,
    pub server_err: Counter,
    pub server_timedout: Counter,
    pub server_connections: Counter,
    pub server_ejected_at: Counter,
    pub requests: Counter,
    pub request_bytes: Counter,
    pub responses: Counter,
    pub response_bytes: Counter,
    pub in_queue: Counter,
    pub in_queue_bytes: Counter,
    pub out_queue: Counter,
    pub out_queue_bytes: Counter,
    pub send: SendStats,
    /// `health_check_interval`: checks made, and those that failed.
    pub health_checks: Counter,
    pub health_check_failures: Counter,
}

/// nutcracker's per-pool fields, plus the reply send path.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub client_eof: Counter,
    pub client_err: Counter,
    pub client_connections: Counter,
    pub server_ejects: Counter,
    pub forward_error: Counter,
    pub fragments: Counter,
    pub client_send: SendStats,
    /// Clients dropped because their TLS handshake failed.
    pub tls_handshake_failures: Counter,
    /// Ejected servers put back because a health check succeeded.
    pub server_readmits: Counter,
    pub servers: Vec<ServerStats>,
}

/// A Redis Cluster node's counters: the server fields and the cluster
/// refusals per worker (each worker writes its own), and the topology
/// queries the refresh thread (their only writer) sent it.
#[derive(Debug)]
pub struct NodeStats {
    /// `host:port`, the node's entry name in the stats.
    pub name: String,
    pub workers: Vec<ServerStats>,
    pub cluster: Vec<NodeClusterStats>,
    pub refresh_ok: Counter,
    pub refresh_failed: Counter,
}

impl NodeStats {
    pub fn new(name: String, workers: usize) -> NodeStats {
        NodeStats {
            name,
            workers: (0..workers).map(|_| ServerStats::default()).collect(),
            cluster: (0..workers).map(|_| NodeClusterStats::default()).collect(),
            refresh_ok: Counter::default(),
            refresh_failed: Counter::default(),
        }
    }
}

/// What one worker saw a cluster node refuse, and what it did about it.
#[derive(Debug, Default)]
pub struct NodeClusterStats {
    /// MOVED replies followed.
    pub moved: Counter,
    /// ASK replies followed (with ASKING).
    pub ask: Counter,
    /// TRYAGAIN replies retried.
    pub tryagain: Counter,
    /// CLUSTERDOWN, MASTERDOWN and READONLY replies retried.
    pub clusterdown: Counter,
    /// Requests sent again after this node's connection failed unsent.
    pub resent: Counter,
    /// Redirected or retried requests that ran out of hops or time and got
    /// the node's error.
    pub gave_up: Counter,
}

/// A cluster pool's topology counters, written by its refresh thread only.
#[derive(Debug, Default)]
pub struct ClusterPoolStats {
    pub refresh_ok: Counter,
    pub refresh_failed: Counter,
    /// Slot maps accepted that differed from the one before.
    pub topology_changes: Counter,
}

/// Connection counters of one worker (nutcracker's top-level fields), and
/// the worker's wait and idle-client counters.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub total_connections: Counter,
    pub curr_connections: Counter,
    pub wait: WaitStats,
    pub idle: IdleStats,
    /// `--io uring`: this worker runs a ring (1) or fell back to epoll (0).
    pub uring: UringStats,
}

/// `--wait adaptive`: what the worker did each time it ran out of work.
#[derive(Debug, Default)]
pub struct WaitStats {
    /// Times it spun (polled without blocking) instead of blocking at once.
    pub spins: Counter,
    /// Spins that ended because work arrived.
    pub spin_hits: Counter,
    /// Times it blocked in `epoll_wait` (after a spin that found nothing,
    /// or at once because spinning would not pay or was over its CPU share).
    pub parks: Counter,
    /// Microseconds spent spinning with nothing to do.
    pub spin_us: Counter,
    /// The measured cost of waking the blocked worker, in nanoseconds.
    pub wakeup_ns: Counter,
    /// The recent gap between running out of work and new work (EWMA), in
    /// nanoseconds.
    pub gap_ns: Counter,
}

/// Idle clients parked outside the runtime (`conn::idle`).
#[derive(Debug, Default)]
pub struct IdleStats {
    /// Clients parked now.
    pub parked: Counter,
    /// Times a client was parked.
    pub parks: Counter,
    /// Times a parked client was resumed (its socket became readable).
    pub resumes: Counter,
}

/// `--io uring` counters of one worker's ring (zero on epoll).
#[derive(Debug, Default)]
pub struct UringStats {
    /// 1 while the worker's client I/O runs on its ring.
    pub active: Counter,
    /// `io_uring_enter` calls: submitting SQEs, or running completions the
    /// task-run flag says wait for an enter.
    pub submits: Counter,
    /// SQEs submitted (client receives, reply sends, cancels).
    pub sqes: Counter,
    /// Completions reaped.
    pub cqes: Counter,
}

impl PoolStats {
    /// Counters for a pool with `servers` servers.
    pub fn for_pool(pool: &nc_config::Pool) -> PoolStats {
        PoolStats {
            servers: pool
                .servers
                .iter()
                .map(|_| ServerStats::default())
                .collect(),
            ..PoolStats::default()
        }
    }
}

/// How a field's per-worker values combine and how it is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    /// Microseconds since the epoch; the latest across workers wins.
    Timestamp,
    /// A per-worker measurement: the largest across workers is shown.
    Max,
}

/// One stats field: its JSON name (nutcracker's), kind, `-D` text and value.
pub(crate) struct Field<T> {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) help: &'static str,
    pub(crate) get: fn(&T) -> u64,
}

macro_rules! field {
    ($name:ident, $kind:ident, $help:expr, $($path:ident).+) => {
        Field { name: stringify!($name), kind: Kind::$kind, help: $help, get: |s| s.$($path).+.get() }
    };
}

/// Pool fields in nutcracker's JSON order, then ncproxy's reply send path.
pub(crate) const POOL_FIELDS: [Field<PoolStats>; 14] = [
    field!(
        client_eof,
        Counter,
        "# eof on client connections",
        client_eof
    ),
    field!(
        client_err,
        Counter,
        "# errors on client connections",
        client_err
    ),
    field!(
        client_connections,
        Gauge,
        "# active client connections",
        client_connections
    ),
    field!(
        server_ejects,
        Counter,
        "# times backend server was ejected",
        server_ejects
    ),
    field!(
        forward_error,
        Counter,
        "# times we encountered a forwarding error",
        forward_error
    ),
    field!(
        fragments,
        Counter,
        "# fragments created from a multi-vector request",
        fragments
    ),
    field!(
        client_send_syscalls,
        Counter,
        "# send syscalls (write/writev) carrying replies to clients [ncproxy]",
        client_send.syscalls
    ),
    field!(
        client_send_iovecs,
        Counter,
        "# buffers passed in those send syscalls [ncproxy]",
        client_send.iovecs
    ),
    field!(
        client_send_bytes,
        Counter,
        "total reply bytes written to clients [ncproxy]",
        client_send.bytes
    ),
    field!(
        client_send_partial,
        Counter,
        "# reply send syscalls that wrote less than offered [ncproxy]",
        client_send.partial
    ),
    field!(
        client_send_tls_flushes,
        Counter,
        "# reply batches encrypted and flushed on TLS clients [ncproxy]",
        client_send.tls_flushes
    ),
    field!(
        client_send_tls_plain_bytes,
        Counter,
        "reply bytes encrypted for TLS clients (send_bytes counts ciphertext) [ncproxy]",
        client_send.tls_plain_bytes
    ),
    field!(
        tls_handshake_failures,
        Counter,
        "# clients dropped for a failed TLS handshake [ncproxy]",
        tls_handshake_failures
    ),
    field!(
        server_readmits,
        Counter,
        "# ejected servers put back by a successful health check [ncproxy]",
        server_readmits
    ),
];

/// Server fields in nutcracker's JSON order, then ncproxy's request send path.
pub(crate) const SERVER_FIELDS: [Field<ServerStats>; 21] = [
    field!(
        server_eof,
        Counter,
        "# eof on server connections",
        server_eof
    ),
    field!(
        server_err,
        Counter,
        "# errors on server connections",
        server_err
    ),
    field!(
        server_timedout,
        Counter,
        "# timeouts on server connections",
        server_timedout
    ),
    field!(
        server_connections,
        Gauge,
        "# active server connections",
        server_connections
    ),
    field!(
        server_ejected_at,
        Timestamp,
        "timestamp when server was ejected in usec since epoch",
        server_ejected_at
    ),
    field!(requests, Counter, "# requests", requests),
    field!(request_bytes, Counter, "total request bytes", request_bytes),
    field!(responses, Counter, "# responses", responses),
    field!(
        response_bytes,
        Counter,
        "total response bytes",
        response_bytes
    ),
    field!(in_queue, Gauge, "# requests in incoming queue", in_queue),
    field!(
        in_queue_bytes,
        Gauge,
        "current request bytes in incoming queue",
        in_queue_bytes
    ),
    field!(out_queue, Gauge, "# requests in outgoing queue", out_queue),
    field!(
        out_queue_bytes,
        Gauge,
        "current request bytes in outgoing queue",
        out_queue_bytes
    ),
    field!(
        send_syscalls,
        Counter,
        "# send syscalls (write/writev) carrying requests to the server [ncproxy]",
        send.syscalls
    ),
    field!(
        send_iovecs,
        Counter,
        "# buffers passed in those send syscalls [ncproxy]",
        send.iovecs
    ),
    field!(
        send_bytes,
        Counter,
        "total request bytes written to the server [ncproxy]",
        send.bytes
    ),
    field!(
        send_partial,
        Counter,
        "# request send syscalls that wrote less than offered [ncproxy]",
        send.partial
    ),
    field!(
        send_tls_flushes,
        Counter,
        "# request batches encrypted and flushed on TLS connections [ncproxy]",
        send.tls_flushes
    ),
    field!(
        send_tls_plain_bytes,
        Counter,
        "request bytes encrypted for TLS servers (send_bytes counts ciphertext) [ncproxy]",
        send.tls_plain_bytes
    ),
    field!(
        health_checks,
        Counter,
        "# active health checks made [ncproxy]",
        health_checks
    ),
    field!(
        health_check_failures,
        Counter,
        "# active health checks that failed [ncproxy]",
        health_check_failures
    ),
];

/// ncproxy's top-level fields, after nutcracker's `curr_connections`.
pub(crate) const WORKER_FIELDS: [Field<WorkerStats>; 9] = [
    field!(
        wait_spins,
        Counter,
        "# times a worker out of work spun instead of blocking (--wait adaptive) [ncproxy]",
        wait.spins
    ),
    field!(
        wait_spin_hits,
        Counter,
        "# spins that ended because work arrived [ncproxy]",
        wait.spin_hits
    ),
    field!(
        wait_parks,
        Counter,
        "# times an adaptive worker blocked in epoll_wait [ncproxy]",
        wait.parks
    ),
    field!(
        wait_spin_us,
        Counter,
        "microseconds adaptive workers spun with nothing to do [ncproxy]",
        wait.spin_us
    ),
    field!(
        wait_wakeup_ns,
        Max,
        "measured cost of waking a blocked worker in nsec (largest worker) [ncproxy]",
        wait.wakeup_ns
    ),
    field!(
        wait_gap_ns,
        Max,
        "recent gap before new work in nsec, EWMA (largest worker) [ncproxy]",
        wait.gap_ns
    ),
    field!(
        clients_parked,
        Gauge,
        "# idle clients parked without a task or buffers [ncproxy]",
        idle.parked
    ),
    field!(
        client_parks,
        Counter,
        "# times an idle client was parked [ncproxy]",
        idle.parks
    ),
    field!(
        client_resumes,
        Counter,
        "# times a parked client was resumed [ncproxy]",
        idle.resumes
    ),
];

/// Per-node cluster fields (summed over workers), after the server fields.
pub(crate) const NODE_CLUSTER_FIELDS: [Field<NodeClusterStats>; 6] = [
    field!(
        moved,
        Counter,
        "# MOVED redirects followed [ncproxy]",
        moved
    ),
    field!(ask, Counter, "# ASK redirects followed [ncproxy]", ask),
    field!(
        tryagain,
        Counter,
        "# TRYAGAIN replies retried [ncproxy]",
        tryagain
    ),
    field!(
        clusterdown,
        Counter,
        "# CLUSTERDOWN, MASTERDOWN and READONLY replies retried [ncproxy]",
        clusterdown
    ),
    field!(
        resent,
        Counter,
        "# requests sent again after the connection failed before they were written [ncproxy]",
        resent
    ),
    field!(
        gave_up,
        Counter,
        "# redirected or retried requests answered with the node's error [ncproxy]",
        gave_up
    ),
];

/// Per-node topology query fields (written by the refresh thread).
pub(crate) const NODE_REFRESH_FIELDS: [Field<NodeStats>; 2] = [
    field!(
        refresh_ok,
        Counter,
        "# CLUSTER SLOTS queries this node answered with a full map [ncproxy]",
        refresh_ok
    ),
    field!(
        refresh_failed,
        Counter,
        "# CLUSTER SLOTS queries to this node that failed [ncproxy]",
        refresh_failed
    ),
];

/// Per-pool topology fields of a cluster pool, after the pool fields.
pub(crate) const CLUSTER_POOL_FIELDS: [Field<ClusterPoolStats>; 3] = [
    field!(
        cluster_refresh_ok,
        Counter,
        "# topology refreshes that loaded a full slot map [ncproxy]",
        refresh_ok
    ),
    field!(
        cluster_refresh_failed,
        Counter,
        "# topology refreshes that found no node with a full slot map [ncproxy]",
        refresh_failed
    ),
    field!(
        cluster_topology_changes,
        Counter,
        "# slot maps accepted that differed from the previous one [ncproxy]",
        topology_changes
    ),
];

/// The `-D` text in nutcracker's format: every stats field and its meaning,
/// nutcracker's lines first, then ncproxy's send-path additions.
pub fn describe() -> String {
    let mut out = String::from("pool stats:\n");
    for field in &POOL_FIELDS {
        out.push_str(&format!("  {:<20}\"{}\"\n", field.name, field.help));
    }
    out.push_str("\nserver stats:\n");
    for field in &SERVER_FIELDS {
        out.push_str(&format!("  {:<20}\"{}\"\n", field.name, field.help));
    }
    out.push_str("redis_cluster pool stats [ncproxy]:\n");
    for field in &CLUSTER_POOL_FIELDS {
        out.push_str(&format!("  {:<20}\"{}\"\n", field.name, field.help));
    }
    out.push_str("redis_cluster node stats [ncproxy]:\n");
    for field in &NODE_CLUSTER_FIELDS {
        out.push_str(&format!("  {:<20}\"{}\"\n", field.name, field.help));
    }
    for field in &NODE_REFRESH_FIELDS {
        out.push_str(&format!("  {:<20}\"{}\"\n", field.name, field.help));
    }
    out.push_str("worker stats (top level) [ncproxy]:\n");
    for field in &WORKER_FIELDS {
        out.push_str(&format!("  {:<20}\"{}\"\n", field.name, field.help));
    }
    out
}
