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
use crate::dialect::{Action, Split, SplitRequest, Wire};
use crate::errno::errno_of;
use crate::io::chain::Sent;
use crate::io::stream::Stream;
use crate::log;
use crate::pool::{Pool, PoolHandle};

/// Read buffer growth step, like one nutcracker mbuf.
const READ_CHUNK: usize = 16 * 1024;
/// Stop reading from a client with this many replies outstanding, so a
/// client that never reads cannot grow the proxy's memory without bound.
const MAX_OUTSTANDING: usize = 1 << 16;
/// Reads in a row before replies are sent, while each read fills its buffer.
const MAX_READS_IN_A_ROW: usize = 16;
/// The key that routes commands without one (COMMAND, LOLWUT).
const PLACEHOLDER_KEY: &[u8] = b"placeholder";

/// Why a client connection ends.
enum End {
    /// The client closed (or sent QUIT) and every reply went out.
    Eof,
    /// A protocol error or socket error: closed at once.
    Error,
}

pub(crate) async fn serve(stream: Stream, handle: Rc<PoolHandle>) {
    // The pool at accept time keeps this client's gauges and admission slot,
    // even if a reload swaps the pool its requests use.
    let pool = handle.current();
    let stats = pool.stats();
    stats.client_connections.incr();
    pool.conns.curr_connections.incr();
    pool.conns.total_connections.incr();
    let wire = pool.dialect.wire();
    let shared = Rc::new(ClientShared::new(
        wire,
        pool.limits,
        pool.client_output_limit,
    ));
    let registration = pool.worker.register(&shared);
    let _open = crate::io::busy_poll::OpenClient::new();
    let mut client = Client {
        stream,
        // Allocated on the first read: idle clients cost no buffer.
        rbuf: BytesMut::new(),
        shared: shared.clone(),
        generation: handle.generation(),
        handle,
        pool: pool.clone(),
        send_offset: 0,
        eof: false,
        quit: false,
        authenticated: !pool.dialect.needs_auth(),
        wire,
    };
    let end = poll_fn(|cx| client.poll(cx)).await;
    shared.close();
    flush_forward_errors(&shared, stats);
    match end {
        End::Eof => stats.client_eof.incr(),
        End::Error => stats.client_err.incr(),
    }
    stats.client_connections.sub(1);
    pool.conns.curr_connections.sub(1);
    pool.worker.unregister(registration);
}

struct Client {
    stream: Stream,
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
}

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
            if (self.eof || self.quit) && empty && !self.stream.has_pending_output() {
                return Poll::Ready(End::Eof);
            }
            if !progress {
                flush_forward_errors(&self.shared, self.pool.stats());
                return Poll::Pending;
            }
            crate::io::busy_poll::note_activity();
        }
        cx.waker().wake_by_ref();
        Poll::Pending
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
            match self.stream.poll_read_into(cx, &mut self.rbuf, READ_CHUNK) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    *progress = true;
                    return Ok(());
                }
                Poll::Ready(Ok(_)) => {
                    *progress = true;
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
                    self.enqueue(server, bytes, Owner::NoReply);
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
                self.forward(server, bytes, seq, NO_FRAGMENT);
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
            Action::ForwardPlaceholder => PLACEHOLDER_KEY,
            Action::Forward { key } => &bytes[key],
        };
        match self.pool.route(key) {
            Some(server) => {
                let seq = self.shared.push_pending(1, None);
                self.forward(server, bytes, seq, NO_FRAGMENT);
            }
            None => self
                .shared
                .push_ready(self.wire.error_reply(libc::ECONNREFUSED)),
        }
        Ok(())
    }

    fn forward(&self, server: usize, data: Bytes, seq: u64, frag: u32) {
        let owner = Owner::Client {
            client: self.shared.clone(),
            seq,
            frag,
            awaited: crate::io::busy_poll::AwaitedReply::new(),
        };
        self.enqueue(server, data, owner);
    }

    fn enqueue(&self, server: usize, data: Bytes, owner: Owner) {
        // A no-reply request has no timeout (nutcracker's
        // req_server_enqueue_imsgq), and no one to tell about one.
        let deadline = match owner {
            Owner::NoReply => None,
            _ => self.pool.timeout.map(|t| Instant::now() + t),
        };
        self.pool.conn(server).enqueue(ServerReq {
            data,
            owner,
            deadline,
        });
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
                self.enqueue(server, bytes.clone(), Owner::NoReply);
            }
            return;
        }
        let request = self.wire.broadcast(&bytes, servers);
        self.forward_fragments(request);
    }

    /// Queues one reply slot that merges the fragments' replies, and
    /// forwards each fragment to its server.
    fn forward_fragments(&self, request: SplitRequest) {
        let nfrags = request.fragments.len() as u32;
        let seq = self
            .shared
            .push_pending(nfrags, Some(Box::new(request.state)));
        for (i, (server, data)) in request.fragments.into_iter().enumerate() {
            self.forward(server, data, seq, i as u32);
        }
    }

    /// Splits a multi-key request into one request per server and queues
    /// one reply slot that merges theirs.
    fn split(&mut self, split: &Split, bytes: &Bytes) {
        let pool = &self.pool;
        let Some(request) = self.wire.split(split, bytes, |key| pool.route(key)) else {
            self.shared
                .push_ready(self.wire.error_reply(libc::ECONNREFUSED));
            return;
        };
        self.forward_fragments(request);
    }

    fn send(&mut self, cx: &mut Context<'_>, progress: &mut bool) -> Result<(), End> {
        loop {
            let ready = self
                .shared
                .with_send_queue(|q| q.head_ready() && !q.must_close());
            if !ready && !self.stream.has_pending_output() {
                return Ok(());
            }
            let opts = &self.pool.send;
            let stats = &self.pool.stats().client_send;
            let (stream, offset) = (&self.stream, &mut self.send_offset);
            match self
                .shared
                .with_send_queue(|q| stream.poll_send_once(cx, q, offset, opts, stats))
            {
                Poll::Pending | Poll::Ready(Ok(Sent::Idle)) => return Ok(()),
                Poll::Ready(Ok(_)) => *progress = true,
                Poll::Ready(Err(_)) => return Err(End::Error),
            }
        }
    }
}
