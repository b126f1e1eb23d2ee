//! Active health checks (`health_check_interval`, ms; 0 = off): every
//! interval, each server of the pool gets a PING (Redis) or `version`
//! (memcached) on a connection of its own (the pool's handshake and TLS
//! included), answered within the pool's `timeout` (or the interval, at
//! least 1 s). A failed check counts as a server failure, so it can eject
//! a server before any client request fails; with checks on, an ejected
//! server stays out until a check succeeds (not after
//! `server_retry_timeout`). Worker 0 runs the checks for all workers: the
//! health they update is shared.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use nc_protocol::resp::ParseError;

use crate::conn::server::{connect_tls, ServerCtx};
use crate::dialect::{ReplyClass, Wire};
use crate::io::chain::{SendQueue, Sent};
use crate::io::stream::Stream;
use crate::log;
use crate::pool::{Pool, PoolHandle};

const REDIS_CHECK: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const MEMCACHE_CHECK: &[u8] = b"version\r\n";

/// Starts the checks of a pool that has just been built on this worker.
/// They stop when a reload replaces the pool or the worker drains.
pub(crate) fn spawn(handle: &Rc<PoolHandle>, pool: &Rc<Pool>) {
    let interval = pool.config.health_check_interval_ms;
    if interval == 0 {
        return;
    }
    let interval = Duration::from_millis(interval);
    let timeout = pool.timeout.unwrap_or(interval.max(Duration::from_secs(1)));
    // A cluster pool has no configured servers to check: its map follows the nodes.
    for index in 0..pool.static_servers() {
        tokio::task::spawn_local(check_server(
            handle.clone(),
            Rc::downgrade(pool),
            index,
            interval,
            timeout,
        ));
    }
}

async fn check_server(
    handle: Rc<PoolHandle>,
    pool: Weak<Pool>,
    index: usize,
    interval: Duration,
    timeout: Duration,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Reused while checks pass; dropped on any failure.
    let mut conn: Option<Checker> = None;
    loop {
        ticker.tick().await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        if !Rc::ptr_eq(&handle.current(), &pool) || pool.worker.draining.get() {
            return;
        }
        let Some(ctx) = pool.static_server_ctx(index) else {
            return;
        };
        drop(pool);
        let result = match tokio::time::timeout(timeout, probe(&ctx, &mut conn)).await {
            Ok(result) => result,
            Err(_) => Err("no answer in time".to_string()),
        };
        let stats = ctx.stats();
        stats.health_checks.incr();
        match result {
            Ok(()) => crate::pool::health::check_passed(&ctx),
            Err(problem) => {
                conn = None;
                stats.health_check_failures.incr();
                log::debug(format_args!(
                    "health check of server '{}' in pool '{}' failed: {problem}",
                    ctx.name, ctx.pool_name
                ));
                crate::pool::health::server_failure(&ctx);
            }
        }
    }
}

/// A check connection: its stream, read buffer and reply scanner.
struct Checker {
    stream: Stream,
    rbuf: BytesMut,
    scanner: crate::dialect::ReplyScanner,
}

/// Requests to write, for the send chain.
struct Outgoing(VecDeque<Bytes>);

impl SendQueue for Outgoing {
    fn message(&self, i: usize) -> Option<&[u8]> {
        self.0.get(i).map(|b| &b[..])
    }
    fn head_sent(&mut self) {
        self.0.pop_front();
    }
}

/// One check: connects if needed (with the handshake), sends the check
/// request and waits for its reply, which must not be an error.
async fn probe(ctx: &ServerCtx, conn: &mut Option<Checker>) -> Result<(), String> {
    let mut requests = VecDeque::new();
    if conn.is_none() {
        let stream = connect_tls(ctx)
            .await
            .map_err(|errno| format!("connect failed: {}", crate::errno::strerror(errno)))?;
        requests.extend(ctx.dialect.handshake().into_iter().map(|h| h.data));
        *conn = Some(Checker {
            stream,
            rbuf: BytesMut::with_capacity(512),
            scanner: ctx.dialect.reply_scanner(),
        });
    }
    let Some(checker) = conn.as_mut() else {
        return Err("no connection".to_string());
    };
    let check = match ctx.dialect.wire() {
        Wire::Redis => REDIS_CHECK,
        Wire::Memcache => MEMCACHE_CHECK,
    };
    requests.push_back(Bytes::from_static(check));
    let mut awaited = requests.len();
    let mut queue = Outgoing(requests);
    let mut offset = 0;
    // Not counted in the pool's send counters: checks are not traffic.
    let stats = crate::stats::SendStats::default();
    while !queue.0.is_empty() || checker.stream.has_pending_output() {
        let sent = poll_fn(|cx| {
            checker
                .stream
                .poll_send_once(cx, &mut queue, &mut offset, &ctx.send, &stats)
        })
        .await
        .map_err(|e| format!("send failed: {e}"))?;
        // Short: the next poll waits for writability.
        let _ = sent == Sent::Short;
    }
    while awaited > 0 {
        match checker.scanner.scan(&checker.rbuf, &ctx.limits) {
            Ok(reply) => {
                let bytes = checker.rbuf.split_to(reply.len);
                awaited -= 1;
                if awaited == 0 && !matches!(reply.class, ReplyClass::Ok | ReplyClass::Fence) {
                    let text = String::from_utf8_lossy(&bytes);
                    return Err(format!("replied {}", text.trim_end()));
                }
                continue;
            }
            Err(ParseError::Incomplete) => {}
            Err(e) => return Err(format!("bad reply: {e}")),
        }
        let read = poll_fn(|cx| checker.stream.poll_read_into(cx, &mut checker.rbuf, 512))
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if read == 0 {
            return Err("connection closed".to_string());
        }
    }
    Ok(())
}
