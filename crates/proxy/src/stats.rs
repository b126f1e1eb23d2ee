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

/// How a field's per-worker values combine and how it is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    /// Microseconds since the epoch; the latest across workers wins.
    Timestamp,
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
    out
}
