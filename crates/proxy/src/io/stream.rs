//! The kinds of stream a pool listens on or connects to (TCP and unix, and
//! TLS over either), behind the few readiness operations the connection
//! tasks use.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::Interest;

use crate::io::chain::{self, SendOpts, SendQueue, Sent};
use crate::io::sys;
use crate::stats::SendStats;
use tokio::net::{TcpStream, UnixStream};

pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// TLS over a TCP or unix stream (`io::tls`).
    Tls(Box<crate::io::tls::TlsStream>),
}

impl Stream {
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::Tls(s) => s.io.poll_read_ready(cx),
        }
    }

    pub(crate) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_write_ready(cx),
            Stream::Unix(s) => s.poll_write_ready(cx),
            Stream::Tls(s) => s.io.poll_write_ready(cx),
        }
    }

    /// Runs `f` (one syscall); an `Err(WouldBlock)` from it clears the
    /// readiness so the next poll waits for a new edge.
    pub(crate) fn try_io<R>(
        &self,
        interest: Interest,
        f: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            Stream::Tcp(s) => s.try_io(interest, f),
            Stream::Unix(s) => s.try_io(interest, f),
            Stream::Tls(s) => s.io.try_io(interest, f),
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(s) => s.as_fd(),
            Stream::Unix(s) => s.as_fd(),
            Stream::Tls(s) => s.io.fd(),
        }
    }

    /// Bytes a send accepted but the socket has not taken yet (TLS records
    /// left by a short flush): the connection must keep sending.
    pub(crate) fn has_pending_output(&self) -> bool {
        match self {
            Stream::Tls(s) => s.has_pending_output(),
            _ => false,
        }
    }
}

impl Stream {
    /// One read into `buf` once the socket is readable. `Pending`: no data,
    /// and the waker is registered for the next edge. `Ready(Ok(0))`: EOF.
    /// A short read clears the readiness, as nutcracker's loop stops reading
    /// until the next edge, so a drained socket costs no second read.
    pub(crate) fn poll_read_into(
        &self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        min_free: usize,
    ) -> Poll<io::Result<usize>> {
        if let Stream::Tls(tls) = self {
            return tls.poll_read_into(cx, buf);
        }
        loop {
            ready!(self.poll_read_ready(cx))?;
            let fd = self.fd();
            let mut got = None;
            let result = self.try_io(Interest::READABLE, || {
                let read = sys::read_into(fd, buf, min_free)?;
                got = Some(read.bytes);
                if read.bytes > 0 && read.drained {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            match result {
                Ok(()) => return Poll::Ready(Ok(got.unwrap_or(0))),
                // Data and a drained socket: readiness cleared, data returned.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && got.is_some_and(|n| n > 0) => {
                    return Poll::Ready(Ok(got.unwrap_or(0)));
                }
                // Stale readiness (or EINTR): poll again, which registers the waker.
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// One send syscall from `queue` once the socket is writable. `Pending`:
    /// not writable, waker registered. A short write clears the readiness so
    /// the next call waits for a new edge instead of spinning.
    pub(crate) fn poll_send_once<Q: SendQueue>(
        &self,
        cx: &mut Context<'_>,
        queue: &mut Q,
        offset: &mut usize,
        opts: &SendOpts,
        stats: &SendStats,
    ) -> Poll<io::Result<Sent>> {
        if let Stream::Tls(tls) = self {
            return tls.poll_send_once(cx, queue, offset, opts, stats);
        }
        self.poll_send_with(cx, |fd| chain::send_once(fd, queue, offset, opts, stats))
    }

    /// The readiness loop of one send: `attempt` (one send syscall) runs once
    /// the socket is writable; its `Sent::Short` clears the readiness.
    pub(crate) fn poll_send_with(
        &self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut(BorrowedFd<'_>) -> io::Result<Sent>,
    ) -> Poll<io::Result<Sent>> {
        loop {
            ready!(self.poll_write_ready(cx))?;
            let fd = self.fd();
            let mut sent = Sent::Idle;
            let result = self.try_io(Interest::WRITABLE, || {
                sent = attempt(fd)?;
                match sent {
                    Sent::Short => Err(io::ErrorKind::WouldBlock.into()),
                    _ => Ok(()),
                }
            });
            match result {
                Ok(()) => return Poll::Ready(Ok(sent)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && sent == Sent::Short => {
                    return Poll::Ready(Ok(Sent::Short));
                }
                // Stale readiness (or EINTR): poll again, which registers the waker.
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}
