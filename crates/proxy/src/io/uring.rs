//! `--io uring`: client receives and reply sends on one io_uring per worker.
//!
//! At pipeline 1 the epoll path costs every request a `read` and a `write`
//! on its client socket; batching has to happen across clients. Here each
//! client keeps one receive armed on its worker's ring, and a reply send is
//! an SQE built from the same batch `chain::gather` makes for `writev` (one
//! `sendmsg` SQE per batch). Nothing is submitted when it is queued: the
//! first SQE queued wakes the worker's submitter task, which runs after the
//! tasks already runnable, and the runtime's `on_thread_park` hook submits
//! whatever is left before the worker sleeps, so one `io_uring_enter` per
//! event-loop iteration carries every client's sends and re-armed receives. Completions signal an eventfd registered
//! with the ring; the worker's reaper task awaits it through tokio (it is
//! never read: each completion is a new edge) and wakes the connections
//! whose operations finished. Server connections stay on epoll and the
//! writev chain.
//!
//! Buffers: a receive goes straight into the client's `BytesMut` (moved
//! into the operation while the kernel owns it, then handed back), so
//! requests are still frozen in place and forwarded without a copy. A send
//! holds `Bytes` handles of the replies it carries. A connection dropped
//! with operations in flight leaves them, its buffers and its socket (an
//! `Rc<OwnedFd>` each operation holds) to the ring, and queues a cancel for
//! each: the descriptor is closed only once the kernel is done with it, so
//! it cannot be reused under an operation. A new connection's first read
//! waits with a poll SQE (no buffer) and reads into the stack, as the epoll
//! path does, so idle clients cost no buffer.
//!
//! A client is moved to the ring only when it is plain TCP or unix; TLS
//! clients stay on the epoll path.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use io_uring::{opcode, squeue, types, IoUring};
use tokio::io::unix::AsyncFd;

use crate::io::chain::{self, SendOpts, SendQueue, Sent};
use crate::io::stream::Stream;
use crate::io::sys;
use crate::stats::{SendStats, UringStats, WorkerStats};

/// Set to `1`, the ring is refused as if the kernel had (to test the fallback).
pub(crate) const REFUSE_ENV: &str = "NCPROXY_TEST_URING_REFUSE";
/// Submission queue size; a full queue is submitted at once.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue size (each client has at most a receive and a send in flight).
const CQ_ENTRIES: u32 = 8192;
/// The user data of cancel SQEs, whose completions carry nothing to deliver.
const CANCEL: u64 = u64::MAX;
/// Consecutive reads that fill their buffer before replies go out anyway
/// (the epoll client reads this many times in a row before it sends).
pub(crate) const FULL_READS_BEFORE_SEND: u32 = 16;

thread_local! {
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// A queue whose messages are `Bytes` handles, so a send in flight can keep
/// what it sends alive whatever happens to the queue.
pub(crate) trait OwnedSendQueue: SendQueue {
    /// The `i`-th message from the head, as `message(i)` gives its bytes.
    fn message_owned(&self, i: usize) -> Option<Bytes>;
}

/// Whether io_uring can run here: a ring can be set up, an eventfd
/// registered with it, and every operation used is supported. The error
/// is the reason, for the fallback log line.
pub(crate) fn probe() -> Result<(), String> {
    Ring::setup(Arc::new(WorkerStats::default())).map(drop)
}

/// The one line that says io_uring is not used.
pub(crate) fn log_fallback(reason: &str) {
    crate::log::warn(format_args!(
        "io_uring unavailable ({reason}), falling back to epoll"
    ));
}

/// Sets this worker's ring up and spawns its reaper and submitter tasks
/// (they run as long as the worker). Called inside the worker's `LocalSet`.
pub(crate) fn install(stats: Arc<WorkerStats>) -> Result<(), String> {
    let (ring, eventfd) = Ring::setup(stats.clone())?;
    // SAFETY: an OwnedFd keeps its descriptor open and unchanged for as
    // long as the AsyncFd owns it.
    let eventfd =
        unsafe { AsyncFd::register_with_interest(eventfd, tokio::io::Interest::READABLE) }
            .map_err(|e| format!("eventfd registration: {e}"))?;
    stats.uring.active.set(1);
    RING.with(|slot| *slot.borrow_mut() = Some(ring));
    tokio::task::spawn_local(reap_loop(eventfd));
    tokio::task::spawn_local(submit_loop());
    Ok(())
}

/// Tears this worker's ring down once its connections are gone.
pub(crate) fn uninstall() {
    let ring = RING.with(|slot| slot.borrow_mut().take());
    drop(ring);
}

/// Whether this worker's clients run on a ring.
pub(crate) fn active() -> bool {
    RING.with(|slot| slot.borrow().is_some())
}

/// The `on_thread_park` hook: submits everything queued since the last
/// park in one `io_uring_enter`.
pub(crate) fn submit_pending() {
    RING.with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            if let Some(ring) = slot.as_mut() {
                ring.submit_and_reap();
            }
        }
    });
}

/// Submits what the tasks that ran before it queued. Woken by the first
/// SQE queued after its last run, it runs after the tasks already runnable
/// (the scheduler's queue is FIFO), so the connections woken together share
/// one `io_uring_enter` even while the worker is too busy to park.
async fn submit_loop() {
    std::future::poll_fn(|cx| {
        let alive = with_ring(|ring| {
            ring.submit_and_reap();
            ring.submit_scheduled = false;
            match &ring.submitter {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => ring.submitter = Some(cx.waker().clone()),
            }
        });
        match alive {
            Some(()) => Poll::Pending,
            None => Poll::Ready(()),
        }
    })
    .await
}

async fn reap_loop(eventfd: AsyncFd<OwnedFd>) {
    loop {
        let Ok(mut guard) = eventfd.readable().await else {
            return;
        };
        // Cleared before the completion queue is read: a completion posted
        // after this is a new edge, so none is missed.
        guard.clear_ready();
        with_ring(|ring| ring.reap());
    }
}

fn with_ring<R>(f: impl FnOnce(&mut Ring) -> R) -> Option<R> {
    RING.try_with(|slot| slot.try_borrow_mut().ok()?.as_mut().map(f))
        .ok()
        .flatten()
}

/// One worker's ring and the operations it has in flight.
struct Ring {
    ring: IoUring,
    ops: Vec<Op>,
    free: Vec<u32>,
    /// SQEs queued since the last submit.
    queued: usize,
    /// The submitter task, and whether it has been woken since it last ran.
    submitter: Option<Waker>,
    submit_scheduled: bool,
    stats: Arc<WorkerStats>,
}

struct Op {
    state: State,
    /// What the kernel may touch until the completion arrives.
    keep: Keep,
    /// The socket, open until every operation on it has completed.
    fd: Option<Rc<OwnedFd>>,
}

enum State {
    Free,
    Waiting(Option<Waker>),
    Done(i32),
    /// Its connection is gone: the completion only frees it.
    Orphaned,
}

#[derive(Default)]
enum Keep {
    /// A poll for readability (a connection's first read).
    #[default]
    Poll,
    Recv {
        buf: BytesMut,
        offered: usize,
    },
    Send(Box<SendKeep>),
}

/// A send's `msghdr`, its iovecs and the replies they point into. Boxed,
/// so the addresses the SQE carries stay put while the op table grows.
struct SendKeep {
    msg: libc::msghdr,
    iovs: Vec<libc::iovec>,
    bufs: Vec<Bytes>,
    total: usize,
}

impl Ring {
    fn setup(stats: Arc<WorkerStats>) -> Result<(Ring, OwnedFd), String> {
        if std::env::var_os(REFUSE_ENV).is_some_and(|v| v == "1") {
            return Err(format!("refused by {REFUSE_ENV}=1"));
        }
        // Cooperative task work (kernel 5.19+): a receive that became ready
        // completes at this worker's next kernel exit instead of through an
        // interrupt while the sending peer still holds the socket lock (a
        // spinning `tcp_recvmsg` was 8.8% of the worker's CPU at pipeline 1).
        // The flag tells `reap` when completions wait for an enter. Older
        // kernels refuse the flags and get a plain ring.
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)
            })
            .map_err(|e| format!("io_uring_setup: {e}"))?;
        let mut probe = io_uring::Probe::new();
        ring.submitter()
            .register_probe(&mut probe)
            .map_err(|e| format!("probe: {e}"))?;
        for (code, name) in [
            (opcode::Recv::CODE, "recv"),
            (opcode::SendMsg::CODE, "sendmsg"),
            (opcode::PollAdd::CODE, "poll_add"),
            (opcode::AsyncCancel::CODE, "async_cancel"),
        ] {
            if !probe.is_supported(code) {
                return Err(format!("the kernel has no {name} operation"));
            }
        }
        // SAFETY: eventfd takes no pointers; a negative return is an error.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(format!("eventfd: {}", io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        ring.submitter()
            .register_eventfd(eventfd.as_raw_fd())
            .map_err(|e| format!("register_eventfd: {e}"))?;
        Ok((
            Ring {
                ring,
                ops: Vec::new(),
                free: Vec::new(),
                queued: 0,
                submitter: None,
                submit_scheduled: false,
                stats,
            },
            eventfd,
        ))
    }

    fn uring_stats(&self) -> &UringStats {
        &self.stats.uring
    }

    /// Queues `sqe` for operation `id`, submitting first if the queue is full.
    ///
    /// # Safety
    /// Every buffer `sqe` points to must stay valid until its completion:
    /// callers keep them in the op's `keep`.
    unsafe fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        for _ in 0..3 {
            // SAFETY: the caller keeps the SQE's buffers alive (see above).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                self.queued += 1;
                if !self.submit_scheduled {
                    self.submit_scheduled = true;
                    if let Some(submitter) = &self.submitter {
                        submitter.wake_by_ref();
                    }
                }
                return Ok(());
            }
            self.submit();
            self.reap();
        }
        Err(io::Error::other("io_uring submission queue stays full"))
    }

    /// Submits, then takes the completions that are already there (sends
    /// that went out at once): their connections run in this pass, so a
    /// deep pipeline's replies go out batch after batch without waiting for
    /// the eventfd to come round.
    fn submit_and_reap(&mut self) {
        if self.queued > 0 {
            self.submit();
            self.reap();
        }
    }

    fn submit(&mut self) {
        if self.queued > 0 {
            self.submit_now();
        }
    }

    fn submit_now(&mut self) {
        match self.ring.submit() {
            Ok(n) => {
                self.uring_stats().submits.incr();
                self.uring_stats().sqes.add(n as u64);
                self.queued = self.queued.saturating_sub(n);
            }
            // EBUSY/EAGAIN: completions must be reaped first; EINTR: again
            // at the next park. The entries stay queued.
            Err(e) => {
                self.uring_stats().submits.incr();
                crate::log::debug(format_args!("io_uring submit failed: {e}"));
            }
        }
    }

    /// Hands every completion to its operation and wakes its connection.
    fn reap(&mut self) {
        if self.ring.submission().taskrun() {
            // Deferred completions wait for an enter: it submits too.
            self.submit_now();
        }
        let mut reaped = 0u64;
        let mut wakers = Vec::new();
        for cqe in self.ring.completion() {
            reaped += 1;
            let id = cqe.user_data();
            if id == CANCEL {
                continue;
            }
            let Some(op) = self.ops.get_mut(id as usize) else {
                continue;
            };
            match std::mem::replace(&mut op.state, State::Done(cqe.result())) {
                State::Waiting(waker) => wakers.extend(waker),
                State::Orphaned => {
                    op.state = State::Free;
                    op.keep = Keep::Poll;
                    op.fd = None;
                    self.free.push(id as u32);
                }
                // Not in flight: keep what it was.
                other => op.state = other,
            }
        }
        self.uring_stats().cqes.add(reaped);
        for waker in wakers {
            waker.wake();
        }
    }

    fn start(&mut self, keep: Keep, fd: &Rc<OwnedFd>, cx: &Context<'_>) -> u32 {
        let op = Op {
            state: State::Waiting(Some(cx.waker().clone())),
            keep,
            fd: Some(fd.clone()),
        };
        match self.free.pop() {
            Some(id) => {
                self.ops[id as usize] = op;
                id
            }
            None => {
                self.ops.push(op);
                (self.ops.len() - 1) as u32
            }
        }
    }

    /// The result and buffers of a finished operation (which is freed), or
    /// None with the waker updated.
    fn poll_op(&mut self, id: u32, cx: &Context<'_>) -> Option<(i32, Keep)> {
        let op = &mut self.ops[id as usize];
        match &mut op.state {
            State::Done(res) => {
                let res = *res;
                let keep = std::mem::take(&mut op.keep);
                op.state = State::Free;
                op.fd = None;
                self.free.push(id);
                Some((res, keep))
            }
            State::Waiting(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                None
            }
            State::Free | State::Orphaned => Some((-libc::ECANCELED, Keep::Poll)),
        }
    }

    /// Gives operation `id` up: freed now if it finished, else cancelled
    /// and freed when its completion arrives.
    fn orphan(&mut self, id: u32) {
        let op = &mut self.ops[id as usize];
        match op.state {
            State::Waiting(_) => {
                op.state = State::Orphaned;
                let cancel = opcode::AsyncCancel::new(u64::from(id))
                    .build()
                    .user_data(CANCEL);
                // SAFETY: a cancel points to no buffer. If it cannot be
                // queued the operation still completes on its own.
                let _ = unsafe { self.push(&cancel) };
            }
            State::Done(_) => {
                op.state = State::Free;
                op.keep = Keep::Poll;
                op.fd = None;
                self.free.push(id);
            }
            State::Free | State::Orphaned => {}
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Cancel what is still in flight and wait (briefly) for it; whatever
        // the kernel still holds after that is leaked rather than freed.
        let live: Vec<u32> = (0..self.ops.len() as u32)
            .filter(|&id| matches!(self.ops[id as usize].state, State::Waiting(_)))
            .collect();
        for id in live {
            self.orphan(id);
        }
        for _ in 0..10 {
            if self
                .ops
                .iter()
                .all(|op| matches!(op.state, State::Free | State::Done(_)))
            {
                return;
            }
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.queued = 0;
            self.reap();
        }
        std::mem::forget(std::mem::take(&mut self.ops));
    }
}

/// A client socket whose receives and sends go through the worker's ring.
pub(crate) struct UringConn {
    fd: Rc<OwnedFd>,
    recv: Option<u32>,
    send: Option<u32>,
    /// The last send's buffers, reused by the next.
    spare: Option<Box<SendKeep>>,
    /// Reads in a row that filled their buffer (modulo
    /// `FULL_READS_BEFORE_SEND`): more is probably waiting.
    full_reads: u32,
}

impl UringConn {
    fn new(fd: OwnedFd) -> UringConn {
        UringConn {
            fd: Rc::new(fd),
            recv: None,
            send: None,
            spare: None,
            full_reads: 0,
        }
    }

    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        min_free: usize,
    ) -> Poll<io::Result<usize>> {
        let fd = self.fd.clone();
        let done = with_ring(|ring| -> Poll<io::Result<usize>> {
            if let Some(id) = self.recv {
                let Some((res, keep)) = ring.poll_op(id, cx) else {
                    return Poll::Pending;
                };
                self.recv = None;
                match keep {
                    Keep::Recv {
                        buf: owned,
                        offered,
                    } => {
                        *buf = owned;
                        if res >= 0 {
                            let n = res as usize;
                            // SAFETY: the kernel wrote `n` bytes into the
                            // spare capacity offered to it.
                            unsafe { buf.set_len(buf.len() + n) };
                            self.note_read(n > 0 && n == offered);
                            return Poll::Ready(Ok(n));
                        }
                        if !retryable(res) {
                            return Poll::Ready(Err(io::Error::from_raw_os_error(-res)));
                        }
                        // EAGAIN from the MSG_DONTWAIT receive that follows
                        // a full read: the socket is drained.
                        self.full_reads = 0;
                    }
                    _ => {
                        if res < 0 && !retryable(res) {
                            return Poll::Ready(Err(io::Error::from_raw_os_error(-res)));
                        }
                        // Readable: the first read of the connection, into
                        // the stack unless the buffer exists.
                        match sys::read_into(fd.as_fd(), buf, min_free) {
                            Ok(read) => {
                                self.note_read(read.bytes > 0 && !read.drained);
                                return Poll::Ready(Ok(read.bytes));
                            }
                            Err(e)
                                if e.kind() == io::ErrorKind::WouldBlock
                                    || e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                }
            }
            // Arm the next receive.
            let (sqe, keep) = if buf.capacity() == 0 {
                let poll = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32);
                (poll.build(), Keep::Poll)
            } else {
                buf.reserve(min_free);
                let spare = buf.spare_capacity_mut();
                let (ptr, offered) = (spare.as_mut_ptr().cast::<u8>(), spare.len());
                let len = offered.min(u32::MAX as usize) as u32;
                let mut recv = opcode::Recv::new(types::Fd(fd.as_raw_fd()), ptr, len);
                if self.full_reads > 0 {
                    // Right after a full read: more is waiting, or the
                    // socket is drained and this completes at once with
                    // EAGAIN (so the replies held for it go out).
                    recv = recv.flags(libc::MSG_DONTWAIT);
                }
                // The buffer moves into the op; its heap memory does not.
                let owned = std::mem::take(buf);
                (
                    recv.build(),
                    Keep::Recv {
                        buf: owned,
                        offered: len as usize,
                    },
                )
            };
            let id = ring.start(keep, &fd, cx);
            // SAFETY: the receive buffer is the op's `keep` until completion.
            if let Err(e) = unsafe { ring.push(&sqe.user_data(u64::from(id))) } {
                if let (_, Keep::Recv { buf: owned, .. }) = ring.take_unsubmitted(id) {
                    *buf = owned;
                }
                return Poll::Ready(Err(e));
            }
            self.recv = Some(id);
            Poll::Pending
        });
        done.unwrap_or_else(|| Poll::Ready(Err(io::Error::other("io_uring ring is gone"))))
    }

    fn note_read(&mut self, filled: bool) {
        self.full_reads = if filled {
            (self.full_reads + 1) % FULL_READS_BEFORE_SEND
        } else {
            0
        };
    }

    fn poll_send_once<Q: OwnedSendQueue>(
        &mut self,
        cx: &mut Context<'_>,
        queue: &mut Q,
        offset: &mut usize,
        opts: &SendOpts,
        stats: &SendStats,
    ) -> Poll<io::Result<Sent>> {
        let fd = self.fd.clone();
        let done = with_ring(|ring| -> Poll<io::Result<Sent>> {
            if let Some(id) = self.send {
                let Some((res, keep)) = ring.poll_op(id, cx) else {
                    return Poll::Pending;
                };
                self.send = None;
                let Keep::Send(mut keep) = keep else {
                    return Poll::Ready(Err(io::Error::other("io_uring send lost")));
                };
                let total = keep.total;
                // Kept for the next send: no allocation per batch.
                keep.iovs.clear();
                keep.bufs.clear();
                self.spare = Some(keep);
                if res >= 0 {
                    let written = res as usize;
                    stats.bytes.add(written as u64);
                    if written < total {
                        stats.partial.incr();
                    }
                    chain::complete(queue, offset, written);
                    return Poll::Ready(Ok(if written < total {
                        Sent::Short
                    } else {
                        Sent::All
                    }));
                }
                if !retryable(res) {
                    return Poll::Ready(Err(io::Error::from_raw_os_error(-res)));
                }
            }
            let mut iovs = chain::Batch::new();
            let (total, looked_at) = chain::gather(queue, *offset, opts, &mut iovs);
            if total == 0 {
                drop(iovs);
                return Poll::Ready(Ok(chain::complete_empty(queue, offset, looked_at)));
            }
            let mut keep = self.spare.take().unwrap_or_else(|| {
                Box::new(SendKeep {
                    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
                    msg: unsafe { std::mem::zeroed() },
                    iovs: Vec::new(),
                    bufs: Vec::new(),
                    total: 0,
                })
            });
            keep.iovs.extend(iovs.iter().map(|s| libc::iovec {
                iov_base: s.as_ptr() as *mut libc::c_void,
                iov_len: s.len(),
            }));
            keep.bufs
                .extend((0..looked_at).filter_map(|i| queue.message_owned(i)));
            keep.total = total;
            stats.iovecs.add(keep.iovs.len() as u64);
            keep.msg.msg_iov = keep.iovs.as_mut_ptr();
            keep.msg.msg_iovlen = keep.iovs.len() as _;
            let sqe = opcode::SendMsg::new(types::Fd(fd.as_raw_fd()), &keep.msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build();
            let id = ring.start(Keep::Send(keep), &fd, cx);
            // SAFETY: the msghdr, iovecs and the replies they point into are
            // the op's `keep` (boxed) until completion.
            if let Err(e) = unsafe { ring.push(&sqe.user_data(u64::from(id))) } {
                ring.take_unsubmitted(id);
                return Poll::Ready(Err(e));
            }
            self.send = Some(id);
            Poll::Pending
        });
        done.unwrap_or_else(|| Poll::Ready(Err(io::Error::other("io_uring ring is gone"))))
    }
}

impl Ring {
    /// Frees an op whose SQE never got queued.
    fn take_unsubmitted(&mut self, id: u32) -> (i32, Keep) {
        let op = &mut self.ops[id as usize];
        op.state = State::Free;
        op.fd = None;
        self.free.push(id);
        (0, std::mem::take(&mut op.keep))
    }
}

impl Drop for UringConn {
    fn drop(&mut self) {
        let (recv, send) = (self.recv.take(), self.send.take());
        with_ring(|ring| {
            for id in [recv, send].into_iter().flatten() {
                ring.orphan(id);
            }
        });
    }
}

/// A completion error that means "try again", not a failed socket.
fn retryable(res: i32) -> bool {
    matches!(-res, libc::EAGAIN | libc::EINTR)
}

/// A client connection's I/O: readiness and syscalls (epoll), or the ring.
pub(crate) enum ClientIo {
    Epoll(Stream),
    Uring(UringConn),
}

impl ClientIo {
    /// Puts a plain TCP or unix client on this worker's ring when it has
    /// one; TLS clients, and every client of an epoll worker, keep `stream`.
    pub(crate) fn new(stream: Stream) -> io::Result<ClientIo> {
        if !active() {
            return Ok(ClientIo::Epoll(stream));
        }
        let fd: OwnedFd = match stream {
            // Leaving the runtime's epoll set: readiness of this socket
            // would only wake the worker for nothing.
            Stream::Tcp(s) => s.into_std()?.into(),
            Stream::Unix(s) => s.into_std()?.into(),
            tls @ Stream::Tls(_) => return Ok(ClientIo::Epoll(tls)),
        };
        Ok(ClientIo::Uring(UringConn::new(fd)))
    }

    /// One read into `buf` (see `Stream::poll_read_into`).
    pub(crate) fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        min_free: usize,
    ) -> Poll<io::Result<usize>> {
        match self {
            ClientIo::Epoll(s) => s.poll_read_into(cx, buf, min_free),
            ClientIo::Uring(u) => u.poll_read_into(cx, buf, min_free),
        }
    }

    /// One send from `queue` (see `Stream::poll_send_once`). On the ring,
    /// `Pending` while the send is in flight; it completes in order.
    pub(crate) fn poll_send_once<Q: OwnedSendQueue>(
        &mut self,
        cx: &mut Context<'_>,
        queue: &mut Q,
        offset: &mut usize,
        opts: &SendOpts,
        stats: &SendStats,
    ) -> Poll<io::Result<Sent>> {
        match self {
            ClientIo::Epoll(s) => s.poll_send_once(cx, queue, offset, opts, stats),
            ClientIo::Uring(u) => u.poll_send_once(cx, queue, offset, opts, stats),
        }
    }

    pub(crate) fn has_pending_output(&self) -> bool {
        match self {
            ClientIo::Epoll(s) => s.has_pending_output(),
            ClientIo::Uring(u) => u.send.is_some(),
        }
    }

    /// The last read filled its buffer and the next is in flight: replies
    /// wait for it, as the epoll client reads on before it sends (so a bad
    /// request later in what the client sent closes it before the replies
    /// ahead of it go out).
    pub(crate) fn defers_send(&self) -> bool {
        match self {
            ClientIo::Epoll(_) => false,
            ClientIo::Uring(u) => u.full_reads > 0 && u.recv.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::future::poll_fn;
    use std::io::{Read, Write};
    use std::time::Duration;

    use nc_config::SendMode;

    struct Queue(VecDeque<Bytes>);

    impl SendQueue for Queue {
        fn message(&self, i: usize) -> Option<&[u8]> {
            self.0.get(i).map(|b| &b[..])
        }
        fn head_sent(&mut self) {
            self.0.pop_front();
        }
    }

    impl OwnedSendQueue for Queue {
        fn message_owned(&self, i: usize) -> Option<Bytes> {
            self.0.get(i).cloned()
        }
    }

    /// Runs `test` on a worker-like runtime: current thread, the park hook,
    /// a ring installed and its reaper running.
    fn on_ring<F: std::future::Future<Output = ()>>(test: impl FnOnce(Arc<WorkerStats>) -> F) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(submit_pending)
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let stats = Arc::new(WorkerStats::default());
        local.block_on(&runtime, async {
            install(stats.clone()).expect("io_uring is available");
            test(stats.clone()).await;
        });
        drop(local);
        drop(runtime);
        uninstall();
    }

    fn client_pair() -> (ClientIo, std::os::unix::net::UnixStream) {
        let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let stream = Stream::Unix(tokio::net::UnixStream::from_std(ours).unwrap());
        let io = ClientIo::new(stream).unwrap();
        assert!(matches!(io, ClientIo::Uring(_)));
        (io, peer)
    }

    #[test]
    fn receives_into_the_buffer_and_sends_batches_in_order() {
        on_ring(|stats| async move {
            let (mut io, mut peer) = client_pair();
            peer.write_all(b"first").unwrap();
            let mut buf = BytesMut::new();
            // The first read waits on a poll (no buffer yet), then reads.
            let n = poll_fn(|cx| io.poll_read_into(cx, &mut buf, 1024))
                .await
                .unwrap();
            assert_eq!((n, &buf[..]), (5, &b"first"[..]));
            peer.write_all(b"second").unwrap();
            let n = poll_fn(|cx| io.poll_read_into(cx, &mut buf, 1024))
                .await
                .unwrap();
            assert_eq!((n, &buf[..]), (6, &b"firstsecond"[..]));

            let mut queue = Queue(
                [&b"one"[..], b"", b"two", b"three"]
                    .into_iter()
                    .map(Bytes::from_static)
                    .collect(),
            );
            let opts = SendOpts {
                mode: SendMode::Batched,
                iov_max: 128,
                send_limit: usize::MAX,
            };
            let send = SendStats::default();
            let mut offset = 0;
            let sent =
                poll_fn(|cx| io.poll_send_once(cx, &mut queue, &mut offset, &opts, &send)).await;
            assert_eq!(sent.unwrap(), Sent::All);
            assert!(queue.0.is_empty());
            let mut got = [0u8; 11];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"onetwothree");
            // One SQE for the batch, no send syscall.
            assert_eq!(
                (send.syscalls.get(), send.iovecs.get(), send.bytes.get()),
                (0, 3, 11)
            );
            assert!(stats.uring.submits.get() > 0 && stats.uring.cqes.get() >= 3);
        });
    }

    #[test]
    fn a_dropped_connection_is_closed_after_its_receive_is_cancelled() {
        on_ring(|_| async move {
            let (mut io, mut peer) = client_pair();
            peer.write_all(b"x").unwrap();
            let mut buf = BytesMut::new();
            poll_fn(|cx| io.poll_read_into(cx, &mut buf, 1024))
                .await
                .unwrap();
            // Arms a receive into the buffer, then gives it up.
            let armed = poll_fn(|cx| Poll::Ready(io.poll_read_into(cx, &mut buf, 1024))).await;
            assert!(armed.is_pending());
            drop(io);
            // The cancel goes in at the next park; the socket closes after it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut rest = Vec::new();
            peer.read_to_end(&mut rest).expect("EOF, not a timeout");
            assert!(rest.is_empty());
        });
    }
}
