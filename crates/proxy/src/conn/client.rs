//! Client connections: read requests, parse them in place, route each to a
//! server connection (or answer locally), and send the replies back through
//! the send chain strictly in request order.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use nc_protocol::resp::ParseError;
use tokio::time::Instant;

use crate::conn::replies::{flush_forward_errors, ClientShared, NO_FRAGMENT};
use crate::conn::server::{Owner, ServerReq};
use crate::dialect::{Action, Split, SplitRequest, TransactionStep, Wire};
use crate::errno::errno_of;
use crate::io::chain::Sent;
use crate::io::stream::Stream;
use crate::io::uring::ClientIo;
use crate::log;
use crate::pool::{Pool, PoolHandle, Target};

/// Read buffer growth step, like one nutcracker mbuf.
const READ_CHUNK: usize = 16 * 1024;
/// Stop reading from a client with this many replies outstanding, so a
/// client that never reads cannot grow the proxy's memory without bound.
const MAX_OUTSTANDING: usize = 1 << 16;
/// Reads in a row before replies are sent, while each read fills its buffer.
const MAX_READS_IN_A_ROW: usize = crate::io::uring::FULL_READS_BEFORE_SEND as usize;
/// The key that routes commands without one (COMMAND, LOLWUT).
const PLACEHOLDER_KEY: &[u8] = b"placeholder";

/// Why a client task ends.
enum End {
    /// The client closed (or sent QUIT) and every reply went out.
    Eof,
    /// A protocol error or socket error: closed at once.
    Error,
    /// Idle: the connection goes on parked, without a task (`conn::idle`).
    Park,
}

/// What a client connection keeps across parking: everything but its
/// socket, buffers and reply queue, which an idle client does not need.
pub(crate) struct ClientConn {
    handle: Rc<PoolHandle>,
    /// The pool its requests are routed with.
    pool: Rc<Pool>,
    /// The handle generation `pool` was taken at.
    generation: u64,
    authenticated: bool,
    slot: ClientSlot,
}

impl ClientConn {
    /// The connection closed outside a task (parked, or while parking);
    /// `eof`: as an idle client task would close on a drain.
    pub(crate) fn closed(self, eof: bool) {
        let stats = self.slot.pool.stats();
        match eof {
            true => stats.client_eof.incr(),
            false => stats.client_err.incr(),
        }
    }
}

/// A client's place in the gauges and its admission slot, in the pool that
/// accepted it (even if a reload swaps the pool its requests use). Held
/// until the connection closes, also while it is parked.
struct ClientSlot {
    pool: Rc<Pool>,
}

impl ClientSlot {
    fn open(pool: Rc<Pool>) -> ClientSlot {
        pool.stats().client_connections.incr();
        pool.conns.curr_connections.incr();
        pool.conns.total_connections.incr();
        ClientSlot { pool }
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let pool = &self.pool;
        pool.stats().client_connections.sub(1);
        pool.conns.curr_connections.sub(1);
        pool.worker.admission.release(&pool.shared);
    }
}

/// Serves a newly accepted client (its admission slot already taken).
pub(crate) async fn serve(stream: Stream, handle: Rc<PoolHandle>) {
    let pool = handle.current();
    let conn = ClientConn {
        generation: handle.generation(),
        authenticated: !pool.dialect.needs_auth(),
        pool: pool.clone(),
        slot: ClientSlot::open(pool),
        handle,
    };
    run(stream, conn, true).await;
}

/// Runs a client task until the client closes or parks. `fresh`: it has
/// never been parked (nor, then, sent anything).
pub(crate) async fn run(stream: Stream, conn: ClientConn, fresh: bool) {
    let accepted = conn.slot.pool.clone();
    let stats = accepted.stats();
    let wire = accepted.dialect.wire();
    let shared = Rc::new(ClientShared::new(
        wire,
        accepted.limits,
        accepted.client_output_limit,
    ));
    let worker = accepted.worker.clone();
    let io = match ClientIo::new(stream) {
        Ok(io) => io,
        Err(e) => {
            log::debug(format_args!("client socket to io_uring failed: {e}"));
            stats.client_err.incr();
            // Dropping `conn` releases its slot (gauges, admission).
            return;
        }
    };
    let registration = worker.register(&shared);
    let open = crate::io::busy_poll::OpenClient::new();
    let ClientConn {
        handle,
        pool,
        generation,
        authenticated,
        slot,
    } = conn;
    let mut client = Client {
        io,
        // Allocated on the first read: idle clients cost no buffer.
        rbuf: BytesMut::new(),
        shared: shared.clone(),
        generation,
        handle,
        pool,
        send_offset: 0,
        eof: false,
        quit: false,
        authenticated,
        wire,
        txn: None,
        received: !fresh,
        slot,
    };
    let end = poll_fn(|cx| client.poll(cx)).await;
    drop(open);
    worker.unregister(registration);
    if let End::Park = end {
        drop(shared);
        let Client {
            io,
            handle,
            pool,
            generation,
            authenticated,
            slot,
            ..
        } = client;
        let conn = ClientConn {
            handle,
            pool,
            generation,
            authenticated,
            slot,
        };
        match io {
            ClientIo::Epoll(stream) => worker.idle.park(&worker, stream, conn),
            // `should_park` never parks a client on the ring.
            ClientIo::Uring(_) => {
                debug_assert!(false, "a ring client parked");
                stats.client_eof.incr();
            }
        }
        return;
    }
    shared.close();
    flush_forward_errors(&shared, stats);
    match end {
        End::Eof | End::Park => stats.client_eof.incr(),
        End::Error => stats.client_err.incr(),
    }
    // Dropping the client releases its slot (gauges, admission).
}

struct Client {
    /// The socket, on the epoll path or on the worker's ring (`--io uring`).
    io: ClientIo,
    rbuf: BytesMut,
    shared: Rc<ClientShared>,
    handle: Rc<PoolHandle>,
    /// The handle generation `pool` was taken at.
    generation: u64,
    pool: Rc<Pool>,
    send_offset: usize,
    eof: bool,
    quit: bool,
    authenticated: bool,
    /// The protocol this client speaks (fixed at accept; a reload that
    /// changes it applies to new clients).
    wire: Wire,
    /// A cluster pool's transaction being queued (after MULTI).
    txn: Option<Transaction>,
    /// The client has sent something (in this task or before it parked).
    received: bool,
    slot: ClientSlot,
}

/// A transaction queued between MULTI and EXEC (cluster pools): sent whole,
/// MULTI to EXEC in one buffer, to the node of its slot, so no other
/// client's command can come between its commands on the shared connection.
struct Transaction {
    data: BytesMut,
    /// Commands queued (each answered `+QUEUED` here; the node's own
    /// `+OK`/`+QUEUED` are swallowed).
    commands: usize,
    slot: Option<u16>,
    /// Why EXEC cannot run it.
    refused: Option<&'static [u8]>,
}

/// Most commands one transaction may queue; more aborts it.
const MAX_TXN_COMMANDS: usize = 10_000;
static MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";
static EXEC: &[u8] = b"*1\r\n$4\r\nEXEC\r\n";
static QUEUED: Bytes = Bytes::from_static(b"+QUEUED\r\n");
static OK: Bytes = Bytes::from_static(b"+OK\r\n");
static CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";
static EXECABORT: &[u8] = b"-EXECABORT Transaction discarded because of previous errors.\r\n";

impl Client {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        self.shared.waker.register(cx.waker());
        if self.pool.worker.draining.get() && !self.quit {
            // Draining: what was already received is answered, nothing more is read.
            self.quit = true;
        }
        for _ in 0..64 {
            let mut progress = false;
            if let Err(end) = self.receive(cx, &mut progress) {
                return Poll::Ready(end);
            }
            if let Err(end) = self.send(cx, &mut progress) {
                return Poll::Ready(end);
            }
            let (empty, must_close) = self
                .shared
                .with_send_queue(|q| (q.is_empty(), q.must_close()));
            if must_close {
                return Poll::Ready(End::Error);
            }
            if (self.eof || self.quit) && empty && !self.io.has_pending_output() {
                return Poll::Ready(End::Eof);
            }
            if !progress {
                flush_forward_errors(&self.shared, self.pool.stats());
                if self.should_park() {
                    return Poll::Ready(End::Park);
                }
                return Poll::Pending;
            }
            self.shared.active.set(true);
            crate::io::busy_poll::note_activity();
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Whether to park now (see `conn::idle`): asked to by an idle sweep, or
    /// a new client that sent nothing on a crowded worker; and idle.
    fn should_park(&self) -> bool {
        let requested = self.shared.park_requested.replace(false);
        let worker = &self.slot.pool.worker;
        let eager = !self.received && worker.active_clients() > crate::conn::idle::EAGER_PARK_ABOVE;
        (requested || eager)
            && !self.eof
            && !self.quit
            && self.txn.is_none()
            && self.rbuf.is_empty()
            && self.send_offset == 0
            && self.shared.outstanding() == 0
            && !worker.draining.get()
            && matches!(&self.io, ClientIo::Epoll(s) if worker.idle.can_park(s))
    }

    /// Reads and parses until the socket is drained, as nutcracker's
    /// `msg_recv` does before any reply is written: a malformed request
    /// anywhere in what the client has sent so far closes the connection
    /// before replies to the requests ahead of it go out, whatever the read
    /// sizes. A drained socket costs no extra syscall (its readiness is
    /// already cleared).
    fn receive(&mut self, cx: &mut Context<'_>, progress: &mut bool) -> Result<(), End> {
        for _ in 0..MAX_READS_IN_A_ROW {
            if self.eof || self.quit || self.shared.outstanding() >= MAX_OUTSTANDING {
                return Ok(());
            }
            match self.io.poll_read_into(cx, &mut self.rbuf, READ_CHUNK) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    *progress = true;
                    return Ok(());
                }
                Poll::Ready(Ok(_)) => {
                    *progress = true;
                    self.received = true;
                    crate::io::busy_poll::note_input();
                    self.parse_requests()?;
                }
                Poll::Ready(Err(e)) => {
                    log::debug(format_args!(
                        "recv on client failed: {}",
                        crate::errno::strerror(errno_of(&e))
                    ));
                    return Err(End::Error);
                }
            }
        }
        Ok(())
    }

    /// Parses and dispatches every complete request in the read buffer.
    fn parse_requests(&mut self) -> Result<(), End> {
        if self.handle.generation() != self.generation {
            // A reload replaced the pool: route from now on with the new one,
            // unless it speaks another protocol than this client.
            self.generation = self.handle.generation();
            let next = self.handle.current();
            if next.dialect.wire() == self.wire {
                self.pool = next;
            }
        }
        while !self.quit {
            let parsed = match self
                .pool
                .dialect
                .parse_request(&self.rbuf, &self.pool.limits)
            {
                Ok(parsed) => parsed,
                Err(ParseError::Incomplete) => return Ok(()),
                Err(err) => {
                    log::error(format_args!(
                        "parsed bad req on pool '{}': {err}",
                        self.pool.config.name
                    ));
                    return Err(End::Error);
                }
            };
            if let Some(at) = parsed.blank {
                self.rbuf[at] = b' ';
            }
            let bytes = self.rbuf.split_to(parsed.len).freeze();
            self.dispatch(parsed.action, bytes)?;
        }
        // Everything after QUIT is ignored.
        self.rbuf.clear();
        Ok(())
    }

    fn dispatch(&mut self, action: Action, bytes: Bytes) -> Result<(), End> {
        let key = match action {
            Action::Quit => {
                self.quit = true;
                return Ok(());
            }
            Action::Auth { password } => {
                let (reply, authenticated) = self.pool.dialect.auth(&bytes[password]);
                if let Some(authenticated) = authenticated {
                    self.authenticated = authenticated;
                }
                self.shared.push_ready(reply);
                return Ok(());
            }
            _ if !self.authenticated => {
                self.shared.push_ready(self.pool.dialect.noauth_reply());
                return Ok(());
            }
            Action::Transaction(step) => {
                self.transaction(step);
                return Ok(());
            }
            Action::Split(split) if self.txn.is_some() => {
                let pool = &self.pool;
                let slot = match self.wire.split(&split, &bytes, |key| pool.split_group(key)) {
                    Some(request) if request.fragments.len() == 1 => {
                        Some(request.fragments[0].0 as u16)
                    }
                    _ => None,
                };
                self.queue_in_transaction(bytes, slot.ok_or(CROSSSLOT).map(Some));
                return Ok(());
            }
            Action::Local(_) | Action::ForwardPlaceholder if self.txn.is_some() => {
                self.queue_in_transaction(bytes, Ok(None));
                return Ok(());
            }
            Action::Forward { key, .. } if self.txn.is_some() => {
                let slot = nc_hashkit::cluster_key_slot(&bytes[key]);
                self.queue_in_transaction(bytes, Ok(Some(slot)));
                return Ok(());
            }
            Action::Local(reply) => {
                self.shared.push_ready(reply);
                return Ok(());
            }
            Action::Unsupported(name) => {
                log::error(format_args!("parsed unsupported command '{name}'"));
                return Err(End::Error);
            }
            Action::Split(split) => {
                self.split(&split, &bytes);
                return Ok(());
            }
            Action::ForwardNoReply { key } => {
                // Nothing to answer: with no live server it is dropped, as
                // nutcracker drops a noreply request it cannot forward.
                if let Some(server) = self.pool.route(&bytes[key]) {
                    self.enqueue(Target::server(server), bytes, Owner::NoReply);
                }
                return Ok(());
            }
            Action::ForwardMeta { key, base64, quiet } => {
                let mut scratch = [0u8; 256];
                let key = self.wire.routing_key(&bytes[key], base64, &mut scratch);
                let Some(server) = self.pool.route(key) else {
                    self.shared
                        .push_ready(self.wire.error_reply(libc::ECONNREFUSED));
                    return Ok(());
                };
                let seq = match quiet {
                    Some(quiet) => self.shared.push_quiet(quiet),
                    None => self.shared.push_pending(1, None),
                };
                self.forward(Target::server(server), bytes, seq, NO_FRAGMENT);
                return Ok(());
            }
            Action::Broadcast { noreply } => {
                self.broadcast(bytes, noreply);
                return Ok(());
            }
            Action::Stats => {
                self.shared.push_ready(crate::stats_server::memcache_stats(
                    &self.pool.config,
                    &self.pool.all_stats,
                ));
                return Ok(());
            }
            Action::ForwardPlaceholder => (PLACEHOLDER_KEY, false),
            Action::Forward { key, read_only } => (&bytes[key], read_only),
        };
        match self.pool.target(key.0, key.1) {
            Ok(target) => {
                let seq = self.shared.push_pending(1, None);
                self.forward(target, bytes, seq, NO_FRAGMENT);
            }
            Err(reply) => self.shared.push_ready(reply),
        }
        Ok(())
    }

    /// MULTI, EXEC, DISCARD with Redis's replies to misuse.
    fn transaction(&mut self, step: TransactionStep) {
        let reply: Bytes = match (step, self.txn.take()) {
            (TransactionStep::Multi, Some(txn)) => {
                self.txn = Some(txn);
                Bytes::from_static(b"-ERR MULTI calls can not be nested\r\n")
            }
            (TransactionStep::Multi, None) => {
                self.txn = Some(Transaction {
                    data: BytesMut::from(MULTI),
                    commands: 0,
                    slot: None,
                    refused: None,
                });
                OK.clone()
            }
            (TransactionStep::Discard, Some(_)) => OK.clone(),
            (TransactionStep::Discard, None) => {
                Bytes::from_static(b"-ERR DISCARD without MULTI\r\n")
            }
            (TransactionStep::Exec, None) => Bytes::from_static(b"-ERR EXEC without MULTI\r\n"),
            (TransactionStep::Exec, Some(txn)) => return self.exec(txn),
        };
        self.shared.push_ready(reply);
    }

    /// Queues one command of the open transaction; `slot` is its keys'
    /// slot (None: no key), or the error that aborts the transaction.
    fn queue_in_transaction(&mut self, bytes: Bytes, slot: Result<Option<u16>, &'static [u8]>) {
        let Some(txn) = self.txn.as_mut() else {
            return;
        };
        txn.commands += 1;
        let refused = match slot {
            Err(refusal) => Some(refusal),
            Ok(Some(slot)) if txn.slot.is_some_and(|s| s != slot) => Some(CROSSSLOT),
            Ok(slot) => {
                txn.slot = txn.slot.or(slot);
                (txn.commands > MAX_TXN_COMMANDS || txn.data.len() > self.pool.limits.max_bulk_len)
                    .then_some(EXECABORT)
            }
        };
        match refused {
            Some(refusal) => {
                txn.refused.get_or_insert(refusal);
                txn.data.clear();
            }
            None if txn.refused.is_none() => txn.data.extend_from_slice(&bytes),
            None => {}
        }
        self.shared.push_ready(QUEUED.clone());
    }

    /// Sends a queued transaction whole to the node of its slot.
    fn exec(&mut self, mut txn: Transaction) {
        if let Some(refusal) = txn.refused {
            self.shared.push_ready(Bytes::from_static(refusal));
            return;
        }
        txn.data.extend_from_slice(EXEC);
        let slot = txn.slot.unwrap_or(0);
        match self.pool.group_target(usize::from(slot), false) {
            Ok(mut target) => {
                let preamble = (txn.commands + 1).min(usize::from(u16::MAX)) as u16;
                target.route.skip = preamble;
                target.route.txn_skip = preamble;
                let seq = self.shared.push_pending(1, None);
                self.forward(target, txn.data.freeze(), seq, NO_FRAGMENT);
            }
            Err(reply) => self.shared.push_ready(reply),
        }
    }

    fn forward(&self, target: Target, data: Bytes, seq: u64, frag: u32) {
        let owner = Owner::Client {
            client: self.shared.clone(),
            seq,
            frag,
            awaited: crate::io::busy_poll::AwaitedReply::new(),
        };
        self.enqueue(target, data, owner);
    }

    fn enqueue(&self, target: Target, data: Bytes, owner: Owner) {
        // A no-reply request has no timeout (nutcracker's
        // req_server_enqueue_imsgq), and no one to tell about one.
        let deadline = match owner {
            Owner::NoReply => None,
            _ => self.pool.timeout.map(|t| Instant::now() + t),
        };
        let mut req = ServerReq::new(data, owner, deadline);
        req.route = target.route;
        self.pool.conn(target.server).enqueue(req);
    }

    /// Sends one request to every server of the pool (memcache flush_all,
    /// verbosity) and queues one merged reply, or none with `noreply`.
    fn broadcast(&mut self, bytes: Bytes, noreply: bool) {
        let servers = self.pool.config.servers.len();
        if servers == 0 {
            self.shared
                .push_ready(self.wire.error_reply(libc::ECONNREFUSED));
            return;
        }
        if noreply {
            for server in 0..servers {
                self.enqueue(Target::server(server), bytes.clone(), Owner::NoReply);
            }
            return;
        }
        let request = self.wire.broadcast(&bytes, servers);
        self.forward_fragments(request, false);
    }

    /// Queues one reply slot that merges the fragments' replies, and
    /// forwards each fragment to its server.
    fn forward_fragments(&self, request: SplitRequest, read_only: bool) {
        let nfrags = request.fragments.len() as u32;
        let seq = self
            .shared
            .push_pending(nfrags, Some(Box::new(request.state)));
        for (i, (group, data)) in request.fragments.into_iter().enumerate() {
            match self.pool.group_target(group, read_only) {
                Ok(target) => self.forward(target, data, seq, i as u32),
                Err(_) => self.shared.deliver(seq, i as u32, Err(libc::ECONNREFUSED)),
            }
        }
    }

    /// Splits a multi-key request into one request per server (per slot
    /// in a cluster pool) and queues one reply slot that merges theirs.
    fn split(&mut self, split: &Split, bytes: &Bytes) {
        let pool = &self.pool;
        let Some(request) = self.wire.split(split, bytes, |key| pool.split_group(key)) else {
            self.shared
                .push_ready(self.wire.error_reply(libc::ECONNREFUSED));
            return;
        };
        if pool.is_cluster() && request.fragments.len() == 1 {
            // Every key in one slot: the command goes whole, as received.
            let slot = request.fragments[0].0;
            match pool.group_target(slot, split.read_only) {
                Ok(target) => {
                    let seq = self.shared.push_pending(1, None);
                    self.forward(target, bytes.clone(), seq, NO_FRAGMENT);
                }
                Err(reply) => self.shared.push_ready(reply),
            }
            return;
        }
        self.forward_fragments(request, split.read_only);
    }

    fn send(&mut self, cx: &mut Context<'_>, progress: &mut bool) -> Result<(), End> {
        if !self.quit && self.io.defers_send() {
            return Ok(());
        }
        loop {
            let ready = self
                .shared
                .with_send_queue(|q| q.head_ready() && !q.must_close());
            if !ready && !self.io.has_pending_output() {
                return Ok(());
            }
            let opts = &self.pool.send;
            let stats = &self.pool.stats().client_send;
            let (io, offset) = (&mut self.io, &mut self.send_offset);
            match self
                .shared
                .with_send_queue(|q| io.poll_send_once(cx, q, offset, opts, stats))
            {
                Poll::Pending | Poll::Ready(Ok(Sent::Idle)) => return Ok(()),
                Poll::Ready(Ok(_)) => *progress = true,
                Poll::Ready(Err(_)) => return Err(End::Error),
            }
        }
    }
}
