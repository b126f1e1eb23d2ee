//! Idle clients parked outside the runtime: no task, no buffers, no reply
//! queue, only the socket (registered in a per-worker epoll set of their
//! own) and a few words of state ([`ClientConn`]). When the socket turns
//! readable (a request, EOF or an error) the client is resumed as an
//! ordinary client task.
//!
//! Why: a client task with its reply queue, registration and waker costs
//! about 2.5 KB, so 10,000 idle clients cost ncproxy 25 MB where
//! nutcracker, whose idle connection is one struct, needs under 3 MB. A
//! parked client costs a 48-byte slot here (plus the kernel's socket);
//! measured, 10,000 idle clients add about 1 MB of RSS.
//!
//! When a client parks: only when it is idle (no request in flight, nothing
//! buffered in either direction, no transaction open, not closing, not
//! TLS, no drain), and either an idle sweep found it inactive for a whole
//! [`SWEEP`] period, or it has never sent anything and its worker already
//! has [`EAGER_PARK_ABOVE`] client tasks (a burst of connections that do
//! not send parks at once, so its tasks never pile up). A client that keeps
//! sending is never parked, and a resumed client reads at once, so the
//! order of its requests and replies is untouched.
//!
//! The set's epoll descriptor is registered with the runtime (nested
//! epoll), so one task waits for every parked client. Sockets are added
//! edge-triggered right after a read found them drained: data that arrived
//! in between is reported at once by the kernel when the socket is added.
//! Parking and resuming cost two `epoll_ctl` each (this set and the
//! runtime's).
//!
//! The tasks of a burst of clients that parked are freed, but glibc keeps
//! freed memory resident; after [`TRIM_AFTER_PARKS`] parks the next sweep
//! calls `malloc_trim`.
//!
//! Stats: a parked client stays in `client_connections` and
//! `curr_connections`; its admission slot is held until it closes. The
//! worker counts `clients_parked` (now), `client_parks` and
//! `client_resumes`. A drain closes parked clients at once (they await no
//! reply), counted as `client_eof`, as an idle client task would be.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use tokio::io::unix::AsyncFd;

use crate::conn::client::{self, ClientConn};
use crate::conn::WorkerCtx;
use crate::io::stream::Stream;
use crate::log;

/// How often a worker looks for clients that stayed inactive.
pub(crate) const SWEEP: Duration = Duration::from_secs(1);
/// A worker with this many client tasks parks a new client that has sent
/// nothing as soon as its first read finds nothing.
pub(crate) const EAGER_PARK_ABOVE: usize = 32;
/// Events taken from the set per `epoll_wait`.
const EVENTS: usize = 256;
/// After this many parks the next sweep returns the freed task memory to
/// the kernel (else it stays resident in the allocator's free lists).
const TRIM_AFTER_PARKS: usize = 256;

/// A parked client: its socket, outside the runtime, and its state.
struct Parked {
    socket: Socket,
    conn: ClientConn,
}

enum Socket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    fn fd(&self) -> RawFd {
        match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.as_raw_fd(),
        }
    }

    /// Back under the runtime.
    fn into_stream(self) -> std::io::Result<Stream> {
        Ok(match self {
            Socket::Tcp(s) => Stream::Tcp(tokio::net::TcpStream::from_std(s)?),
            Socket::Unix(s) => Stream::Unix(tokio::net::UnixStream::from_std(s)?),
        })
    }
}

/// One worker's parked clients.
pub(crate) struct IdleSet {
    inner: RefCell<Option<Inner>>,
    /// Clients parked since the heap was last trimmed.
    parked_since_trim: Cell<usize>,
}

struct Inner {
    registry: Registry,
    /// The set itself, until the worker's idle task takes it.
    poll: Option<Poll>,
    /// Indexed by token; `free` lists the empty slots.
    slots: Vec<Option<Parked>>,
    free: Vec<usize>,
}

impl IdleSet {
    /// A set with its own epoll descriptor; if that cannot be made, clients
    /// are simply never parked.
    pub(crate) fn new() -> IdleSet {
        let inner = Poll::new().and_then(|poll| {
            Ok(Inner {
                registry: poll.registry().try_clone()?,
                poll: Some(poll),
                slots: Vec::new(),
                free: Vec::new(),
            })
        });
        if let Err(e) = &inner {
            log::error(format_args!("idle clients cannot be parked: {e}"));
        }
        IdleSet {
            inner: RefCell::new(inner.ok()),
            parked_since_trim: Cell::new(0),
        }
    }

    /// Whether a client with `stream` can be parked at all.
    pub(crate) fn can_park(&self, stream: &Stream) -> bool {
        matches!(stream, Stream::Tcp(_) | Stream::Unix(_))
            && self
                .inner
                .borrow()
                .as_ref()
                .is_some_and(|i| i.poll.is_none())
    }

    /// Parks an idle client. If that fails, the client goes on as a task.
    pub(crate) fn park(&self, worker: &WorkerCtx, stream: Stream, conn: ClientConn) {
        let socket = match stream {
            Stream::Tcp(s) => s.into_std().map(Socket::Tcp),
            Stream::Unix(s) => s.into_std().map(Socket::Unix),
            tls @ Stream::Tls(_) => {
                tokio::task::spawn_local(client::run(tls, conn, false));
                return;
            }
        };
        let socket = match socket {
            Ok(socket) => socket,
            Err(e) => {
                // The socket left the runtime but is gone: the client is closed.
                log::debug(format_args!("parking a client failed: {e}"));
                conn.closed(false);
                return;
            }
        };
        let refused = match self.inner.borrow_mut().as_mut() {
            Some(inner) => inner.insert(socket, conn),
            None => Err((socket, conn)),
        };
        match refused {
            Ok(()) => {
                worker.stats.idle.parked.incr();
                worker.stats.idle.parks.incr();
                self.parked_since_trim.set(self.parked_since_trim.get() + 1);
            }
            Err((socket, conn)) => resume(socket, conn),
        }
    }

    /// Takes the parked client of `token` out of the set.
    fn take(&self, worker: &WorkerCtx, token: Token) -> Option<Parked> {
        let mut inner = self.inner.borrow_mut();
        let inner = inner.as_mut()?;
        let parked = inner.slots.get_mut(token.0)?.take()?;
        inner.free.push(token.0);
        let _ = inner
            .registry
            .deregister(&mut SourceFd(&parked.socket.fd()));
        worker.stats.idle.parked.sub(1);
        Some(parked)
    }

    /// Closes every parked client (drain, or the worker stops); closing a
    /// socket also takes it out of the set.
    pub(crate) fn close_all(&self, worker: &WorkerCtx) {
        let parked: Vec<Parked> = match self.inner.borrow_mut().as_mut() {
            Some(inner) => {
                inner.free = Vec::new();
                std::mem::take(&mut inner.slots)
                    .into_iter()
                    .flatten()
                    .collect()
            }
            None => return,
        };
        worker.stats.idle.parked.sub(parked.len() as u64);
        for p in parked {
            drop(p.socket);
            p.conn.closed(true);
        }
    }
}

impl Inner {
    /// Adds a client to the set, or hands it back if the kernel refuses.
    fn insert(&mut self, socket: Socket, conn: ClientConn) -> Result<(), (Socket, ClientConn)> {
        let token = self.free.pop().unwrap_or(self.slots.len());
        let registered = self.registry.register(
            &mut SourceFd(&socket.fd()),
            Token(token),
            Interest::READABLE,
        );
        if let Err(e) = registered {
            log::debug(format_args!("parking a client failed: {e}"));
            if token < self.slots.len() {
                self.free.push(token);
            }
            return Err((socket, conn));
        }
        let parked = Some(Parked { socket, conn });
        match self.slots.get_mut(token) {
            Some(slot) => *slot = parked,
            None => self.slots.push(parked),
        }
        Ok(())
    }
}

/// Back to a client task, at once.
fn resume(socket: Socket, conn: ClientConn) {
    match socket.into_stream() {
        Ok(stream) => {
            tokio::task::spawn_local(client::run(stream, conn, false));
        }
        Err(e) => {
            log::debug(format_args!("resuming a parked client failed: {e}"));
            conn.closed(false);
        }
    }
}

/// Starts the worker's idle task: it resumes parked clients whose socket
/// turned readable and, every [`SWEEP`], asks clients inactive for the
/// whole period to park.
pub(crate) fn start(worker: &Rc<WorkerCtx>) {
    let poll = worker
        .idle
        .inner
        .borrow_mut()
        .as_mut()
        .and_then(|i| i.poll.take());
    let Some(poll) = poll else {
        return;
    };
    let worker = worker.clone();
    tokio::task::spawn_local(async move {
        match crate::io::sys::register_epoll_set(poll) {
            Ok(set) => run(&worker, set).await,
            Err(e) => {
                log::error(format_args!("idle clients cannot be parked: {e}"));
                *worker.idle.inner.borrow_mut() = None;
            }
        }
    });
}

async fn run(worker: &WorkerCtx, mut set: AsyncFd<Poll>) {
    let mut events = Events::with_capacity(EVENTS);
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ready = set.readable_mut() => {
                let Ok(mut guard) = ready else {
                    return;
                };
                match guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                    Ok(()) if events.is_empty() => guard.clear_ready(),
                    Ok(()) => {
                        for event in events.iter() {
                            if let Some(parked) = worker.idle.take(worker, event.token()) {
                                worker.stats.idle.resumes.incr();
                                resume(parked.socket, parked.conn);
                            }
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        log::error(format_args!("waiting for parked clients failed: {e}"));
                        guard.clear_ready();
                    }
                }
            }
            _ = sweep.tick() => sweep_clients(worker),
        }
    }
}

/// Asks every client task that made no progress since the last sweep to
/// park (it does, if it is idle when it looks).
fn sweep_clients(worker: &WorkerCtx) {
    if worker.draining.get() {
        return;
    }
    if worker.idle.parked_since_trim.get() >= TRIM_AFTER_PARKS {
        worker.idle.parked_since_trim.set(0);
        crate::io::sys::trim_heap();
    }
    for client in worker.clients() {
        if !client.active.replace(false) && !client.park_requested.replace(true) {
            client.waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_client_takes_48_bytes() {
        assert_eq!(std::mem::size_of::<Option<Parked>>(), 48);
    }
}
