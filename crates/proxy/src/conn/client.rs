//! Client connections: read requests, parse them in place, route each to a
//! server connection (or answer locally), and send the replies back through
//! the send chain strictly in request order.

use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use nc_protocol::resp::{self, FragmentKind, ParseError, Request, Special};
use tokio::time::Instant;

use crate::conn::replies::{flush_forward_errors, ClientShared, Fragments, NO_FRAGMENT};
use crate::conn::server::{Owner, ServerReq};
use crate::errno::{errno_of, redis_error_reply};
use crate::io::chain::Sent;
use crate::io::stream::Stream;
use crate::log;
use crate::pool::Pool;
use crate::pool::PoolHandle;

/// Read buffer growth step, like one nutcracker mbuf.
const READ_CHUNK: usize = 16 * 1024;
/// Stop reading from a client with this many replies outstanding, so a
/// client that never reads cannot grow the proxy's memory without bound.
const MAX_OUTSTANDING: usize = 1 << 16;
/// Reads in a row before replies are sent, while each read fills its buffer.
const MAX_READS_IN_A_ROW: usize = 16;
/// The key that routes commands without one (COMMAND, LOLWUT).
const PLACEHOLDER_KEY: &[u8] = b"placeholder";

static PONG: Bytes = Bytes::from_static(b"+PONG\r\n");
static OK: Bytes = Bytes::from_static(b"+OK\r\n");
static NOAUTH: Bytes = Bytes::from_static(b"-NOAUTH Authentication required\r\n");
static AUTH_NOT_SET: Bytes =
    Bytes::from_static(b"-ERR Client sent AUTH, but no password is set\r\n");
static AUTH_INVALID: Bytes = Bytes::from_static(b"-ERR invalid password\r\n");

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
    let shared = Rc::new(ClientShared::new(pool.limits, pool.client_output_limit));
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
        authenticated: pool.config.redis_auth.is_none(),
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
            if (self.eof || self.quit) && empty {
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
            // A reload replaced the pool: route from now on with the new one.
            self.generation = self.handle.generation();
            self.pool = self.handle.current();
        }
        while !self.quit {
            let request = match resp::parse_request(&self.rbuf, &self.pool.limits) {
                Ok(request) => request,
                Err(ParseError::Incomplete) => return Ok(()),
                Err(err) => {
                    log::error(format_args!(
                        "parsed bad req on pool '{}': {err}",
                        self.pool.config.name
                    ));
                    return Err(End::Error);
                }
            };
            let bytes = self.rbuf.split_to(request.len).freeze();
            self.dispatch(&request, bytes)?;
        }
        // Everything after QUIT is ignored.
        self.rbuf.clear();
        Ok(())
    }

    fn dispatch(&mut self, request: &Request, bytes: Bytes) -> Result<(), End> {
        let command = request.command;
        match command.special {
            Special::Quit => {
                self.quit = true;
                return Ok(());
            }
            Special::Auth => {
                self.auth(&bytes[request.key.clone()]);
                return Ok(());
            }
            _ if !self.authenticated => {
                self.shared.push_ready(NOAUTH.clone());
                return Ok(());
            }
            Special::Ping => {
                self.shared.push_ready(PONG.clone());
                return Ok(());
            }
            Special::Close => {
                log::error(format_args!(
                    "parsed unsupported command '{}'",
                    command.name
                ));
                return Err(End::Error);
            }
            _ => {}
        }
        if request.nkeys > 1 {
            if let Some(kind) = command.fragment_kind() {
                self.fragment(request, &bytes, kind);
                return Ok(());
            }
        }
        let key = if command.special == Special::Placeholder {
            PLACEHOLDER_KEY
        } else {
            &bytes[request.key.clone()]
        };
        match self.pool.route(key) {
            Some(server) => {
                let seq = self.shared.push_pending(1, None);
                self.forward(server, bytes, seq, NO_FRAGMENT);
            }
            None => self
                .shared
                .push_ready(redis_error_reply(libc::ECONNREFUSED)),
        }
        Ok(())
    }

    fn forward(&self, server: usize, data: Bytes, seq: u64, frag: u32) {
        let deadline = self.pool.timeout.map(|t| Instant::now() + t);
        self.pool.conn(server).enqueue(ServerReq {
            data,
            owner: Owner::Client {
                client: self.shared.clone(),
                seq,
                frag,
                awaited: crate::io::busy_poll::AwaitedReply::new(),
            },
            deadline,
        });
    }

    /// AUTH is answered locally against `redis_auth`.
    fn auth(&mut self, password: &[u8]) {
        let reply = match &self.pool.config.redis_auth {
            None => AUTH_NOT_SET.clone(),
            Some(expected) if expected.as_bytes() == password => {
                self.authenticated = true;
                OK.clone()
            }
            Some(_) => {
                self.authenticated = false;
                AUTH_INVALID.clone()
            }
        };
        self.shared.push_ready(reply);
    }

    /// Splits a multi-key request into one request per server, keys in
    /// their original order (nutcracker's redis_fragment).
    fn fragment(&mut self, request: &Request, bytes: &Bytes, kind: FragmentKind) {
        let step = if kind == FragmentKind::Mset { 2 } else { 1 };
        let args: Vec<std::ops::Range<usize>> = request.args(bytes).collect();
        // (server, argument spans) per fragment, in order of first use.
        let mut frags: Vec<(usize, Vec<std::ops::Range<usize>>)> = Vec::new();
        let mut key_order = Vec::with_capacity(request.nkeys);
        for group in args.chunks(step) {
            let Some(server) = self.pool.route(&bytes[group[0].clone()]) else {
                self.shared
                    .push_ready(redis_error_reply(libc::ECONNREFUSED));
                return;
            };
            let frag = match frags.iter().position(|(s, _)| *s == server) {
                Some(i) => i,
                None => {
                    frags.push((server, Vec::new()));
                    frags.len() - 1
                }
            };
            let keys = &mut frags[frag].1;
            key_order.push((frag as u32, (keys.len() / step) as u32));
            keys.extend(group.iter().cloned());
        }
        let state = Fragments::new(kind, frags.len(), key_order);
        let seq = self
            .shared
            .push_pending(frags.len() as u32, Some(Box::new(state)));
        for (i, (server, spans)) in frags.into_iter().enumerate() {
            let mut out =
                BytesMut::with_capacity(spans.iter().map(|s| s.len() + 16).sum::<usize>() + 16);
            resp::encode_command(
                &mut out,
                request.command.name.as_bytes(),
                spans.iter().map(|s| &bytes[s.clone()]),
            );
            self.forward(server, out.freeze(), seq, i as u32);
        }
    }

    fn send(&mut self, cx: &mut Context<'_>, progress: &mut bool) -> Result<(), End> {
        loop {
            if !self
                .shared
                .with_send_queue(|q| q.head_ready() && !q.must_close())
            {
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
