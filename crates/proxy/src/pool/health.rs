//! Server health and the pool state all workers share: failure counts and
//! ejections (nutcracker's failure_count, next_retry and server_failure),
//! and the pool's `client_connections` count. These change per connection
//! or per failure, never per request.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::sync::Arc;

use nc_protocol::Limits;

use super::cluster::topology::ClusterShared;
use crate::conn::server::ServerCtx;
use crate::log;

/// What the workers share for one pool: its `client_connections` count and
/// its servers' health. Both change per connection or per failure, never per
/// request.
pub(crate) struct PoolShared {
    /// `client_connections`; 0 = unlimited.
    client_limit: usize,
    clients: AtomicUsize,
    pub(crate) health: PoolHealth,
    /// A `redis_cluster` pool's topology (slot map, nodes, refresh thread).
    pub(crate) cluster: Option<Arc<ClusterShared>>,
    /// The pool's TLS material now (replaced by a reload).
    pub(crate) tls: crate::io::tls::TlsSlot,
}

impl PoolShared {
    /// A cluster pool loads its topology here, before any worker routes.
    pub(crate) fn new(pool: &nc_config::Pool, workers: usize, limits: Limits) -> PoolShared {
        PoolShared {
            client_limit: pool.client_connections_configured as usize,
            clients: AtomicUsize::new(0),
            health: PoolHealth::new(pool.servers.len()),
            cluster: pool
                .cluster
                .as_ref()
                .map(|cluster| ClusterShared::start(pool, cluster, workers, limits)),
            tls: Default::default(),
        }
    }

    /// Takes one of the pool's `client_connections` slots, or refuses.
    pub(crate) fn take_client(&self) -> bool {
        let before = self.clients.fetch_add(1, Ordering::Relaxed);
        if self.client_limit > 0 && before >= self.client_limit {
            self.clients.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn release_client(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A server's health (nutcracker's failure_count and next_retry), shared by
/// the workers. Failures are counted per server, not per connection.
#[derive(Default)]
pub(crate) struct ServerHealth {
    failures: AtomicU32,
    /// Until when the server is ejected, on `ejection_clock_us`; 0 = never was.
    pub(super) ejected_until_us: AtomicU64,
}

/// The health of one pool's servers, shared by the workers.
pub(crate) struct PoolHealth {
    pub(super) servers: Vec<ServerHealth>,
    /// Ejections and check re-admissions so far: a worker rebuilds its
    /// continuum when this moves.
    pub(super) ejections: AtomicU64,
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
pub(super) fn ejection_clock_us() -> u64 {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed().as_micros() as u64
}

/// This worker's view of ejections: the policy, and when its continuum must
/// be rebuilt next.
pub(crate) struct Ejection {
    /// `auto_eject_hosts`: (server_failure_limit, server_retry_timeout).
    pub(super) policy: Option<(u32, Duration)>,
    /// `health_check_interval` > 0: an ejected server returns when a check
    /// succeeds, not when `server_retry_timeout` passes.
    pub(super) readmit_by_check: bool,
    /// `auto_eject_drop: false`: ejected servers stay in the ring and their
    /// keys fail at once.
    pub(super) keep_in_ring: bool,
    /// The next end of an ejection, on `ejection_clock_us`.
    pub(super) next_rebuild_us: Cell<Option<u64>>,
    /// The pool's `ejections` count that the continuum reflects.
    pub(super) seen_ejections: Cell<u64>,
}

impl Ejection {
    pub(crate) fn new(config: &nc_config::Pool) -> Ejection {
        Ejection {
            // A cluster's slot owners are its own business: never ejected.
            policy: (config.auto_eject_hosts && config.cluster.is_none()).then(|| {
                (
                    config.server_failure_limit.max(1),
                    Duration::from_millis(config.server_retry_timeout_ms),
                )
            }),
            readmit_by_check: config.health_check_interval_ms > 0,
            keep_in_ring: !config.auto_eject_drop,
            next_rebuild_us: Cell::new(None),
            seen_ejections: Cell::new(0),
        }
    }
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
    let (Some((limit, retry)), Some(health)) = (ctx.ejection.policy, ctx.health()) else {
        return;
    };
    if ctx.ejection.readmit_by_check
        && health.ejected_until_us.load(Ordering::Relaxed) > ejection_clock_us()
    {
        // Out until a check passes: failing checks do not eject it again.
        return;
    }
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
    let until = if ctx.ejection.readmit_by_check {
        u64::MAX
    } else {
        ejection_clock_us() + retry.as_micros() as u64
    };
    health.ejected_until_us.store(until, Ordering::Relaxed);
    // Release: a worker that sees the new count also sees the deadline.
    ctx.shared.health.ejections.fetch_add(1, Ordering::Release);
    let usec = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    ctx.stats().server_ejected_at.set(usec);
    ctx.pool_stats.server_ejects.incr();
    if ctx.ejection.readmit_by_check {
        log::notice(format_args!(
            "server '{}' in pool '{}' ejected until a health check succeeds",
            ctx.name, ctx.pool_name
        ));
    } else {
        log::notice(format_args!(
            "server '{}' in pool '{}' ejected for {} msec",
            ctx.name,
            ctx.pool_name,
            retry.as_millis()
        ));
    }
}

/// A health check succeeded: the failure count resets, and an ejected
/// server is put back (every worker rebuilds its continuum).
pub(crate) fn check_passed(ctx: &ServerCtx) {
    let Some(health) = ctx.health() else {
        return;
    };
    health.ok();
    let until = health.ejected_until_us.load(Ordering::Relaxed);
    if until <= ejection_clock_us() {
        return;
    }
    if health
        .ejected_until_us
        .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    // Release: a worker that sees the new count also sees the re-admission.
    ctx.shared.health.ejections.fetch_add(1, Ordering::Release);
    ctx.pool_stats.server_readmits.incr();
    log::notice(format_args!(
        "server '{}' in pool '{}' re-admitted after a successful health check",
        ctx.name, ctx.pool_name
    ));
}
