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
    pub servers: Vec<ServerStats>,
}

/// Connection counters of one worker (nutcracker's top-level fields).
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub total_connections: Counter,
    pub curr_connections: Counter,
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

/// The `-D` text in nutcracker's format: every stats field and its meaning,
/// nutcracker's lines first, then ncproxy's send-path additions. (The type
/// column is kept in the table for the Prometheus endpoint.)
pub fn describe() -> String {
    const POOL: &[(&str, &str, &str)] = &[
        ("client_eof", "counter", "# eof on client connections"),
        ("client_err", "counter", "# errors on client connections"),
        ("client_connections", "gauge", "# active client connections"),
        (
            "server_ejects",
            "counter",
            "# times backend server was ejected",
        ),
        (
            "forward_error",
            "counter",
            "# times we encountered a forwarding error",
        ),
        (
            "fragments",
            "counter",
            "# fragments created from a multi-vector request",
        ),
        (
            "client_send_syscalls",
            "counter",
            "# send syscalls (write/writev) carrying replies to clients [ncproxy]",
        ),
        (
            "client_send_iovecs",
            "counter",
            "# buffers passed in those send syscalls [ncproxy]",
        ),
        (
            "client_send_bytes",
            "counter",
            "total reply bytes written to clients [ncproxy]",
        ),
        (
            "client_send_partial",
            "counter",
            "# reply send syscalls that wrote less than offered [ncproxy]",
        ),
    ];
    const SERVER: &[(&str, &str, &str)] = &[
        ("server_eof", "counter", "# eof on server connections"),
        ("server_err", "counter", "# errors on server connections"),
        (
            "server_timedout",
            "counter",
            "# timeouts on server connections",
        ),
        ("server_connections", "gauge", "# active server connections"),
        (
            "server_ejected_at",
            "timestamp",
            "timestamp when server was ejected in usec since epoch",
        ),
        ("requests", "counter", "# requests"),
        ("request_bytes", "counter", "total request bytes"),
        ("responses", "counter", "# responses"),
        ("response_bytes", "counter", "total response bytes"),
        ("in_queue", "gauge", "# requests in incoming queue"),
        (
            "in_queue_bytes",
            "gauge",
            "current request bytes in incoming queue",
        ),
        ("out_queue", "gauge", "# requests in outgoing queue"),
        (
            "out_queue_bytes",
            "gauge",
            "current request bytes in outgoing queue",
        ),
        (
            "send_syscalls",
            "counter",
            "# send syscalls (write/writev) carrying requests to the server [ncproxy]",
        ),
        (
            "send_iovecs",
            "counter",
            "# buffers passed in those send syscalls [ncproxy]",
        ),
        (
            "send_bytes",
            "counter",
            "total request bytes written to the server [ncproxy]",
        ),
        (
            "send_partial",
            "counter",
            "# request send syscalls that wrote less than offered [ncproxy]",
        ),
    ];
    let mut out = String::from("pool stats:\n");
    for (name, _kind, text) in POOL {
        out.push_str(&format!("  {name:<20}\"{text}\"\n"));
    }
    out.push_str("\nserver stats:\n");
    for (name, _kind, text) in SERVER {
        out.push_str(&format!("  {name:<20}\"{text}\"\n"));
    }
    out
}
