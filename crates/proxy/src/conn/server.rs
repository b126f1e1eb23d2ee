//! Server connections: requests routed to one backend wait in `inq`, are
//! written through the send chain, wait in `outq` for their replies, and are
//! matched FIFO. One task per connection owns the socket; clients on the same
//! worker enqueue and wake it. On any failure every queued and in-flight
//! request gets the dialect's error reply (`-ERR <strerror>`,
//! `SERVER_ERROR <strerror>`) in order and the connection is dropped; the
//! next request reconnects (resolving the host again, as nutcracker does).
//! No-reply requests and their fences are handled here too (see `Owner`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use nc_config::ServerAddr;
use nc_protocol::resp::ParseError;
use nc_protocol::Limits;
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{Instant, Sleep};

use crate::conn::replies::ClientShared;
use crate::dialect::{Dialect, ReplyClass, ReplyScanner};
use crate::errno::{errno_of, Errno};
use crate::io::chain::{SendOpts, SendQueue, Sent};
use crate::io::stream::Stream;
use crate::io::wake::TaskWaker;
use crate::log;
use crate::stats::ServerStats;

/// Read buffer growth step, like one nutcracker mbuf.
const READ_CHUNK: usize = 16 * 1024;

/// Who waits for a request's reply.
pub(crate) enum Owner {
    Client {
        client: Rc<ClientShared>,
        seq: u64,
        frag: u32,
        /// Counts the request for `--busy-poll`'s coalescing until it is
        /// answered or failed.
        awaited: crate::io::busy_poll::AwaitedReply,
    },
    /// AUTH or SELECT the proxy sends on connect; the reply is swallowed.
    Internal(&'static str),
    /// A request the server does not answer (memcache `noreply`): it leaves
    /// the in-queue when written and never enters the out-queue.
    NoReply,
    /// The proxy's `version` after a run of no-reply requests: every reply
    /// before its own belongs to one of them and is swallowed.
    Fence,
    /// Answered before it was completely written; dropped once it is.
    Answered,
}

pub(crate) struct ServerReq {
    pub(crate) data: Bytes,
    pub(crate) owner: Owner,
    pub(crate) deadline: Option<Instant>,
    /// Redis Cluster routing state; the default for static pools.
    pub(crate) route: Route,
    /// A transaction's preamble reply that refused it (a queued command
    /// answered MOVED or ASK): EXEC's EXECABORT is then handled as this.
    pub(crate) refusal: Option<Bytes>,
}

/// Where a Redis Cluster request is going and how it got there.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Route {
    /// The slot of the request's keys.
    pub(crate) slot: u16,
    /// MOVED and ASK redirects followed so far.
    pub(crate) hops: u8,
    /// TRYAGAIN, CLUSTERDOWN and connection-failure retries so far.
    pub(crate) retries: u8,
    /// A read-only command (replica reads may take it).
    pub(crate) read_only: bool,
    /// Replies still to swallow before the request's own: the `+OK` of an
    /// ASKING in front, a transaction's `+OK` and `+QUEUED`s.
    pub(crate) skip: u16,
    /// `data` is a whole transaction (MULTI ... EXEC) with this many
    /// replies before EXEC's; 0 for a single command.
    pub(crate) txn_skip: u16,
    /// `data` starts with an ASKING.
    pub(crate) ask_prefix: bool,
    /// When retries stop, set at the first retry.
    pub(crate) retry_until: Option<Instant>,
}

impl ServerReq {
    /// A request for a client's reply slot.
    pub(crate) fn new(data: Bytes, owner: Owner, deadline: Option<Instant>) -> ServerReq {
        ServerReq {
            data,
            owner,
            deadline,
            route: Route::default(),
            refusal: None,
        }
    }

    pub(crate) fn fail(self, errno: Errno) {
        self.answer(Err(errno));
    }

    /// Gives the request's owner its reply (or error); others have none.
    pub(crate) fn answer(self, reply: Result<Bytes, Errno>) {
        if let Owner::Client {
            client, seq, frag, ..
        } = self.owner
        {
            client.deliver(seq, frag, reply);
        }
    }

    /// Whether anyone still waits for the reply.
    pub(crate) fn is_wanted(&self) -> bool {
        matches!(&self.owner, Owner::Client { client, .. } if !client.is_closed())
    }
}

/// What a Redis Cluster pool does with the requests a node did not serve.
/// The cluster router implements it; a server connection only hands over.
pub(crate) trait ClusterHooks {
    /// A node answered `error` (the complete `reply`) instead of serving `req`.
    fn cluster_error(
        &self,
        req: ServerReq,
        error: crate::dialect::cluster::ClusterError,
        reply: Bytes,
        from: &ServerCtx,
    );
    /// `req` was never (completely) written before its connection failed
    /// with `errno` (no node executed it), or it only reads: it may be sent
    /// again.
    fn unsent(&self, req: ServerReq, errno: Errno, from: &ServerCtx);
    /// A connection to the node failed (connect, error, timeout): the map
    /// may be stale (a master died without a MOVED to say so).
    fn connection_failed(&self, from: &ServerCtx);
}

/// What a server connection needs to know about its server and pool.
pub(crate) struct ServerCtx {
    pub(crate) pool_name: String,
    pub(crate) name: String,
    pub(crate) addr: ServerAddr,
    pub(crate) dialect: Rc<Dialect>,
    pub(crate) limits: Limits,
    pub(crate) send: SendOpts,
    pub(crate) pool_stats: Arc<crate::stats::PoolStats>,
    pub(crate) conns: Arc<crate::stats::WorkerStats>,
    pub(crate) server_index: usize,
    /// The pool's state shared by the workers; this server's health is in it.
    pub(crate) shared: Arc<crate::pool::health::PoolShared>,
    pub(crate) ejection: Rc<crate::pool::health::Ejection>,
    /// A Redis Cluster node: its counters (this worker's are at `.1`) and
    /// where its refusals go. Cluster nodes are never ejected.
    pub(crate) node: Option<ClusterNode>,
}

/// The cluster side of a node connection's context.
pub(crate) struct ClusterNode {
    pub(crate) stats: Arc<crate::stats::NodeStats>,
    pub(crate) worker: usize,
    pub(crate) hooks: std::rc::Weak<dyn ClusterHooks>,
}

impl ServerCtx {
    pub(crate) fn stats(&self) -> &ServerStats {
        match &self.node {
            Some(node) => &node.stats.workers[node.worker],
            None => &self.pool_stats.servers[self.server_index],
        }
    }

    /// The server's shared health; cluster nodes have none.
    pub(crate) fn health(&self) -> Option<&crate::pool::health::ServerHealth> {
        match self.node {
            Some(_) => None,
            None => Some(self.shared.health.server(self.server_index)),
        }
    }

    fn cluster_hooks(&self) -> Option<Rc<dyn ClusterHooks>> {
        self.node.as_ref().and_then(|node| node.hooks.upgrade())
    }
}

pub(crate) struct Queues {
    inq: VecDeque<ServerReq>,
    outq: VecDeque<ServerReq>,
    /// Bytes of `inq.front()` already written.
    send_offset: usize,
    /// A no-reply request has been written and the fence after it has not:
    /// a reply now, with nothing awaiting one, is that request's error.
    unfenced: bool,
    /// The connection failed or closed; nothing more may be queued.
    dead: bool,
    /// The server left the pool (a cluster node no longer in the map):
    /// close once nothing is queued.
    retired: bool,
}

/// The shared half of a server connection.
pub(crate) struct ServerConn {
    queues: RefCell<Queues>,
    waker: TaskWaker,
    ctx: Rc<ServerCtx>,
}

struct SendView<'a> {
    q: &'a mut Queues,
    stats: &'a ServerStats,
}

impl SendQueue for SendView<'_> {
    #[inline]
    fn message(&self, i: usize) -> Option<&[u8]> {
        self.q.inq.get(i).map(|r| &r.data[..])
    }

    #[inline]
    fn head_sent(&mut self) {
        if let Some(mut req) = self.q.inq.pop_front() {
            let len = req.data.len() as u64;
            self.stats.in_queue.sub(1);
            self.stats.in_queue_bytes.sub(len);
            match &mut req.owner {
                Owner::Client { awaited, .. } => awaited.sent(),
                // twemproxy's req_send_done: a no-reply request is done
                // once written.
                Owner::NoReply => {
                    self.q.unfenced = true;
                    return;
                }
                Owner::Fence => self.q.unfenced = false,
                Owner::Answered => return,
                Owner::Internal(_) => {}
            }
            self.stats.out_queue.incr();
            self.stats.out_queue_bytes.add(len);
            self.q.outq.push_back(req);
        }
    }
}

impl ServerConn {
    /// A new connection; its task is spawned on the current worker.
    pub(crate) fn spawn(ctx: Rc<ServerCtx>) -> Rc<ServerConn> {
        let conn = Rc::new(ServerConn {
            queues: RefCell::new(Queues {
                inq: VecDeque::new(),
                outq: VecDeque::new(),
                send_offset: 0,
                unfenced: false,
                dead: false,
                retired: false,
            }),
            waker: TaskWaker::default(),
            ctx,
        });
        tokio::task::spawn_local(run(conn.clone()));
        conn
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.queues.borrow().dead
    }

    /// Closes the connection once its queues are empty.
    pub(crate) fn retire(&self) {
        self.queues.borrow_mut().retired = true;
        self.waker.wake();
    }

    /// Queues a request for this server; fails it at once if the connection died.
    pub(crate) fn enqueue(&self, req: ServerReq) {
        let mut q = self.queues.borrow_mut();
        if q.dead {
            drop(q);
            req.fail(libc::ECONNRESET);
            return;
        }
        let stats = self.ctx.stats();
        let len = req.data.len() as u64;
        if matches!(req.owner, Owner::Client { .. } | Owner::NoReply) {
            stats.requests.incr();
            stats.request_bytes.add(len);
        }
        stats.in_queue.incr();
        stats.in_queue_bytes.add(len);
        if matches!(req.owner, Owner::NoReply) {
            self.push_fenced(&mut q, req);
        } else {
            q.inq.push_back(req);
        }
        drop(q);
        self.waker.wake();
    }

    /// Queues a no-reply request followed by a fence. A run of them shares
    /// one fence: an unwritten fence at the tail moves behind the new one.
    fn push_fenced(&self, q: &mut Queues, req: ServerReq) {
        let tail_fence = matches!(q.inq.back(), Some(r) if matches!(r.owner, Owner::Fence))
            && (q.inq.len() > 1 || q.send_offset == 0);
        let fence = if tail_fence {
            q.inq.pop_back()
        } else {
            self.ctx.dialect.wire().fence().map(|data| {
                let stats = self.ctx.stats();
                stats.in_queue.incr();
                stats.in_queue_bytes.add(data.len() as u64);
                ServerReq::new(data, Owner::Fence, None)
            })
        };
        q.inq.push_back(req);
        q.inq.extend(fence);
    }

    /// Fails every queued and in-flight request, in order.
    fn fail_all(&self, errno: Errno) {
        let (outq, inq) = {
            let mut q = self.queues.borrow_mut();
            q.dead = true;
            q.send_offset = 0;
            q.unfenced = false;
            (std::mem::take(&mut q.outq), std::mem::take(&mut q.inq))
        };
        let stats = self.ctx.stats();
        for req in &outq {
            stats.out_queue.sub(1);
            stats.out_queue_bytes.sub(req.data.len() as u64);
        }
        for req in &inq {
            stats.in_queue.sub(1);
            stats.in_queue_bytes.sub(req.data.len() as u64);
        }
        let hooks = self.ctx.cluster_hooks();
        for req in outq {
            match &hooks {
                // Written but unanswered: only a read is safe to run again.
                Some(hooks) if req.route.read_only && req.is_wanted() => {
                    hooks.unsent(req, errno, &self.ctx)
                }
                _ => req.fail(errno),
            }
        }
        for req in inq {
            match &hooks {
                // Nothing of it reached a node: a cluster pool sends it again.
                Some(hooks) if req.is_wanted() => hooks.unsent(req, errno, &self.ctx),
                _ => req.fail(errno),
            }
        }
    }
}

/// Why a connection ended.
#[derive(Clone, Copy)]
enum Close {
    /// Retired and idle: closed by the proxy.
    Retired,
    Eof,
    Error(Errno),
    TimedOut,
}

async fn run(conn: Rc<ServerConn>) {
    let ctx = conn.ctx.clone();
    let stream = match connect_within_deadlines(&conn).await {
        Ok(stream) => stream,
        Err(errno) => {
            log::error(format_args!(
                "connect on s to server '{}' failed: {}",
                ctx.name,
                crate::errno::strerror(errno)
            ));
            if errno == libc::ETIMEDOUT {
                ctx.stats().server_timedout.incr();
            } else {
                ctx.stats().server_err.incr();
            }
            conn.fail_all(errno);
            crate::pool::health::server_failure(&ctx);
            if let Some(hooks) = ctx.cluster_hooks() {
                hooks.connection_failed(&ctx);
            }
            return;
        }
    };
    ctx.stats().server_connections.incr();
    ctx.conns.curr_connections.incr();
    ctx.conns.total_connections.incr();
    push_handshake(&conn);
    let mut io = ServerIo {
        stream,
        rbuf: BytesMut::with_capacity(READ_CHUNK),
        timer: None,
        scanner: ctx.dialect.reply_scanner(),
    };
    let close = poll_fn(|cx| io.poll(cx, &conn)).await;
    let stats = ctx.stats();
    stats.server_connections.sub(1);
    ctx.conns.curr_connections.sub(1);
    let errno = match close {
        Close::Retired => 0,
        Close::Eof => {
            stats.server_eof.incr();
            0
        }
        Close::Error(errno) => {
            stats.server_err.incr();
            errno
        }
        Close::TimedOut => {
            stats.server_timedout.incr();
            libc::ETIMEDOUT
        }
    };
    drop(io);
    conn.fail_all(errno);
    crate::pool::health::server_failure(&ctx);
    if !matches!(close, Close::Retired) {
        if let Some(hooks) = ctx.cluster_hooks() {
            hooks.connection_failed(&ctx);
        }
    }
}

/// The dialect's handshake (Redis: AUTH, then SELECT) at the head of the
/// queue, before anything a client queued while the connection opened.
fn push_handshake(conn: &ServerConn) {
    let ctx = &conn.ctx;
    let handshake = ctx.dialect.handshake();
    if handshake.is_empty() {
        return;
    }
    let mut q = conn.queues.borrow_mut();
    let stats = ctx.stats();
    for request in handshake.into_iter().rev() {
        stats.in_queue.incr();
        stats.in_queue_bytes.add(request.data.len() as u64);
        q.inq.push_front(ServerReq::new(
            request.data,
            Owner::Internal(request.what),
            None,
        ));
    }
}

/// Connects while honouring the queued requests' deadlines: a connect that
/// hangs (a dropped SYN) fails them with ETIMEDOUT when the first deadline
/// passes, as nutcracker's timeout covers a request waiting for a connect.
async fn connect_within_deadlines(conn: &ServerConn) -> Result<Stream, Errno> {
    let connecting = connect_tls(&conn.ctx);
    tokio::pin!(connecting);
    let mut timer: Option<Pin<Box<Sleep>>> = None;
    poll_fn(|cx| {
        // Requests enqueued meanwhile wake us, so their deadlines count too.
        conn.waker.register(cx.waker());
        if let Poll::Ready(result) = connecting.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        let earliest = conn.queues.borrow().inq.iter().find_map(|r| r.deadline);
        if let Some(deadline) = earliest {
            let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(libc::ETIMEDOUT));
            }
        }
        Poll::Pending
    })
    .await
}

/// Connects, then (with `server_tls`) makes the TLS handshake, verifying
/// the server's certificate for `server_tls_name` or the server's host. A
/// failed handshake is logged and fails the queued requests with EPROTO.
pub(crate) async fn connect_tls(ctx: &ServerCtx) -> Result<Stream, Errno> {
    let stream = connect(&ctx.addr).await?;
    let Some((config, name)) = ctx.shared.tls.get().and_then(|t| t.servers.clone()) else {
        return Ok(stream);
    };
    let name = match (&name, &ctx.addr) {
        (Some(name), _) => name.as_str(),
        (None, ServerAddr::Tcp { host, .. }) => host.as_str(),
        // Config validation requires server_tls_name for unix servers.
        (None, ServerAddr::Unix(_)) => "localhost",
    };
    crate::io::tls::connect(stream, config, name)
        .await
        .map_err(|problem| {
            log::error(format_args!(
                "TLS handshake with server '{}' in pool '{}' failed: {problem}",
                ctx.name, ctx.pool_name
            ));
            libc::EPROTO
        })
}

/// Connects, resolving the host now (lazy DNS, like nutcracker 0.4.1+).
async fn connect(addr: &ServerAddr) -> Result<Stream, Errno> {
    match addr {
        ServerAddr::Tcp { host, port } => {
            let addrs: Vec<_> = match tokio::net::lookup_host((host.as_str(), *port)).await {
                Ok(addrs) => addrs.collect(),
                Err(_) => return Err(libc::EHOSTDOWN),
            };
            let Some(first) = addrs.first() else {
                return Err(libc::EHOSTDOWN);
            };
            let stream = TcpStream::connect(first).await.map_err(|e| errno_of(&e))?;
            let _ = stream.set_nodelay(true);
            Ok(Stream::Tcp(stream))
        }
        ServerAddr::Unix(path) => UnixStream::connect(path)
            .await
            .map(Stream::Unix)
            .map_err(|e| errno_of(&e)),
    }
}

struct ServerIo {
    stream: Stream,
    rbuf: BytesMut,
    /// Armed at or before the earliest request deadline.
    timer: Option<Pin<Box<Sleep>>>,
    /// Resumes a reply that arrives over many reads (no rescans).
    scanner: ReplyScanner,
}

impl ServerIo {
    fn poll(&mut self, cx: &mut Context<'_>, conn: &ServerConn) -> Poll<Close> {
        conn.waker.register(cx.waker());
        // Bound the work done in one poll so other tasks on the worker run.
        for _ in 0..64 {
            let mut progress = false;
            if let Err(close) = self.send(cx, conn, &mut progress) {
                return Poll::Ready(close);
            }
            if let Err(close) = self.receive(cx, conn, &mut progress) {
                return Poll::Ready(close);
            }
            if !progress {
                {
                    let q = conn.queues.borrow();
                    if q.retired && q.inq.is_empty() && q.outq.is_empty() {
                        return Poll::Ready(Close::Retired);
                    }
                }
                return match self.poll_deadline(cx, conn) {
                    true => Poll::Ready(Close::TimedOut),
                    false => Poll::Pending,
                };
            }
            crate::io::busy_poll::note_activity();
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn send(
        &mut self,
        cx: &mut Context<'_>,
        conn: &ServerConn,
        progress: &mut bool,
    ) -> Result<(), Close> {
        loop {
            let idle = conn.queues.borrow().inq.is_empty() && !self.stream.has_pending_output();
            if idle || !crate::io::busy_poll::may_send(cx) {
                return Ok(());
            }
            let stats = conn.ctx.stats();
            let mut q = conn.queues.borrow_mut();
            let q = &mut *q;
            let mut offset = q.send_offset;
            let mut view = SendView { q, stats };
            let result =
                self.stream
                    .poll_send_once(cx, &mut view, &mut offset, &conn.ctx.send, &stats.send);
            view.q.send_offset = offset;
            match result {
                Poll::Pending | Poll::Ready(Ok(Sent::Idle)) => return Ok(()),
                Poll::Ready(Ok(_)) => *progress = true,
                Poll::Ready(Err(e)) => return Err(Close::Error(errno_of(&e))),
            }
        }
    }

    fn receive(
        &mut self,
        cx: &mut Context<'_>,
        conn: &ServerConn,
        progress: &mut bool,
    ) -> Result<(), Close> {
        match self.stream.poll_read_into(cx, &mut self.rbuf, READ_CHUNK) {
            Poll::Pending => Ok(()),
            Poll::Ready(Ok(0)) => Err(Close::Eof),
            Poll::Ready(Ok(_)) => {
                *progress = true;
                self.dispatch_replies(conn)
            }
            Poll::Ready(Err(e)) => Err(Close::Error(errno_of(&e))),
        }
    }

    /// Matches every complete reply in the buffer with the oldest request.
    fn dispatch_replies(&mut self, conn: &ServerConn) -> Result<(), Close> {
        let ctx = &conn.ctx;
        let stats = ctx.stats();
        loop {
            let reply = match self.scanner.scan(&self.rbuf, &ctx.limits) {
                Ok(reply) => reply,
                Err(ParseError::Incomplete) => return Ok(()),
                Err(_) => {
                    log::error(format_args!(
                        "parsed bad rsp from server '{}' in pool '{}'",
                        ctx.name, ctx.pool_name
                    ));
                    return Err(Close::Error(libc::EINVAL));
                }
            };
            if reply.class == ReplyClass::TransientFailure {
                // nutcracker's redis_failure: close the connection, fail everything.
                return Err(Close::Error(libc::EINVAL));
            }
            let bytes = self.rbuf.split_to(reply.len).freeze();
            let mut req = {
                let mut q = conn.queues.borrow_mut();
                if let Some(head) = q.outq.front_mut().filter(|head| head.route.skip > 0) {
                    // The +OK of an ASKING sent in front of this request, or
                    // of its transaction's MULTI and queued commands. An
                    // error here shows again in the request's own reply
                    // (EXECABORT, MOVED), which is what the client gets.
                    head.route.skip -= 1;
                    if let ReplyClass::Cluster(_) = reply.class {
                        if head.route.txn_skip > 0 && head.refusal.is_none() {
                            head.refusal = Some(bytes);
                            continue;
                        }
                    }
                    if reply.class != ReplyClass::Ok {
                        log::debug(format_args!(
                            "server '{}' refused a request's preamble: {}",
                            ctx.name,
                            String::from_utf8_lossy(&bytes).trim_end()
                        ));
                    }
                    continue;
                }
                let fenced = match q.outq.front() {
                    Some(head) => matches!(head.owner, Owner::Fence),
                    None => q.unfenced,
                };
                if fenced && reply.class != ReplyClass::Fence {
                    // The reply of a no-reply request (an error memcached
                    // sends anyway): never handed to the request after it.
                    drop(q);
                    log::debug(format_args!(
                        "swallowed a reply to a noreply request from server '{}'",
                        ctx.name
                    ));
                    continue;
                }
                match q.outq.pop_front() {
                    Some(req) => {
                        stats.out_queue.sub(1);
                        stats.out_queue_bytes.sub(req.data.len() as u64);
                        req
                    }
                    // A reply to the request still being written: memcached
                    // answers an oversized set after its command line and
                    // then discards the data. The request is done once its
                    // bytes are out; it expects nothing more.
                    None if q.send_offset > 0 => {
                        let owner = match q.inq.front_mut() {
                            Some(head) => std::mem::replace(&mut head.owner, Owner::Answered),
                            None => Owner::Answered,
                        };
                        ServerReq::new(Bytes::new(), owner, None)
                    }
                    None => {
                        log::error(format_args!("stray reply from server '{}'", ctx.name));
                        return Err(Close::Error(libc::EINVAL));
                    }
                }
            };
            match req.owner {
                // A reply for a client that is gone is swallowed before it
                // counts (nutcracker's rsp_filter runs before rsp_forward).
                Owner::Client { ref client, .. } if client.is_closed() => {}
                Owner::Client { .. } => {
                    let (class, bytes) = match req.refusal.take() {
                        Some(refusal) => (ctx.dialect.classify_refusal(&refusal), refusal),
                        None => (reply.class, bytes),
                    };
                    if let ReplyClass::Cluster(error) = class {
                        if let Some(hooks) = ctx.cluster_hooks() {
                            hooks.cluster_error(req, error, bytes, ctx);
                            continue;
                        }
                    }
                    if let Some(health) = ctx.health() {
                        health.ok();
                    }
                    stats.responses.incr();
                    stats.response_bytes.add(bytes.len() as u64);
                    req.answer(Ok(bytes));
                }
                Owner::NoReply | Owner::Fence | Owner::Answered => {}
                Owner::Internal(what) => {
                    if reply.class != ReplyClass::Ok && reply.class != ReplyClass::Fence {
                        let msg = String::from_utf8_lossy(&bytes[..bytes.len().saturating_sub(2)]);
                        log::error(format_args!(
                            "{what} failed on {} | {}: {msg}",
                            ctx.pool_name, ctx.name
                        ));
                    }
                }
            }
        }
    }

    /// Arms the timer for the oldest request; true when it already expired.
    fn poll_deadline(&mut self, cx: &mut Context<'_>, conn: &ServerConn) -> bool {
        let earliest = {
            let q = conn.queues.borrow();
            // FIFO with one timeout per pool: the first request that has a
            // deadline (internal AUTH/SELECT have none) has the earliest.
            q.outq.iter().chain(q.inq.iter()).find_map(|r| r.deadline)
        };
        let Some(deadline) = earliest else {
            return false;
        };
        if Instant::now() >= deadline {
            return true;
        }
        // Deadlines only grow as the queue advances, so a timer armed earlier
        // than the current earliest deadline is just re-armed when it fires.
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() > deadline {
            timer.as_mut().reset(deadline);
        }
        loop {
            match timer.as_mut().poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(()) => {
                    if Instant::now() >= deadline {
                        return true;
                    }
                    timer.as_mut().reset(deadline);
                }
            }
        }
    }
}
