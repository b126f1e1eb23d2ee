//! The send chain: twemproxy's `msg_send_chain`, shared by server
//! connections (requests) and client connections (replies).
//!
//! A queue exposes its messages from the head; the chain gathers the unsent
//! part of the head and every following ready message as iovecs, up to
//! `iov_max` iovecs or `send_limit` bytes, makes ONE `writev`, then walks the
//! batch: fully written messages are completed in order, a partly written one
//! keeps its offset and stays at the head. In per-message mode each syscall
//! carries exactly one message (one `write`).

use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;

use arrayvec::ArrayVec;

use nc_config::SendMode;

use crate::io::sys;
use crate::stats::SendStats;

/// The largest `iov_max` accepted (Linux IOV_MAX is 1024).
pub const IOV_MAX_LIMIT: usize = 1024;

/// How one connection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOpts {
    pub mode: SendMode,
    pub iov_max: usize,
    pub send_limit: usize,
}

impl SendOpts {
    pub fn from_pool(pool: &nc_config::Pool) -> SendOpts {
        SendOpts {
            mode: pool.send_mode,
            iov_max: pool.iov_max.clamp(1, IOV_MAX_LIMIT),
            send_limit: pool.send_limit.unwrap_or(usize::MAX).max(1),
        }
    }
}

/// A FIFO of messages waiting to be written.
pub(crate) trait SendQueue {
    /// Bytes of the `i`-th message from the head, or None when there is no
    /// such message or it is not ready to be sent yet.
    fn message(&self, i: usize) -> Option<&[u8]>;
    /// The head message has been written completely.
    fn head_sent(&mut self);
}

/// What one send attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Nothing was ready to send.
    Idle,
    /// Everything gathered was written; there may be more to send.
    All,
    /// The kernel took less than offered: wait for writability.
    Short,
}

/// The iovecs of one send: the unsent part of the head and the messages
/// after it, up to `iov_max` (1 per message) or `send_limit` bytes.
pub(crate) type Batch<'a> = ArrayVec<IoSlice<'a>, IOV_MAX_LIMIT>;

/// Gathers one batch from `queue` into `iovs` (empty on entry). Returns its
/// byte count and how many messages it looked at (empty ones included).
///
/// The caller owns the batch: an `ArrayVec` of 1024 slices is 16 KiB, and
/// returning one by value cost a 16 KiB `memcpy` per send (10% of a
/// worker's CPU at pipeline 1 in a perf profile). Nor is it an initialized
/// array, which would cost as much to zero.
pub(crate) fn gather<'a, Q: SendQueue>(
    queue: &'a Q,
    offset: usize,
    opts: &SendOpts,
    iovs: &mut Batch<'a>,
) -> (usize, usize) {
    debug_assert!(iovs.is_empty());
    let max_iovs = match opts.mode {
        SendMode::Batched => opts.iov_max,
        SendMode::PerMessage => 1,
    };
    let mut total = 0usize;
    let mut index = 0;
    while iovs.len() < max_iovs && total < opts.send_limit {
        let Some(message) = queue.message(index) else {
            break;
        };
        let mut part = if index == 0 {
            &message[offset.min(message.len())..]
        } else {
            message
        };
        index += 1;
        if part.is_empty() {
            continue;
        }
        let room = opts.send_limit - total;
        if part.len() > room {
            part = &part[..room];
        }
        total += part.len();
        iovs.push(IoSlice::new(part));
    }
    (total, index)
}

/// Completes a batch of only empty messages (`looked_at` of them), which
/// needs no syscall.
pub(crate) fn complete_empty<Q: SendQueue>(
    queue: &mut Q,
    offset: &mut usize,
    looked_at: usize,
) -> Sent {
    for _ in 0..looked_at {
        queue.head_sent();
        *offset = 0;
    }
    if looked_at > 0 {
        Sent::All
    } else {
        Sent::Idle
    }
}

/// Makes one send syscall from `queue` (whose head is already `offset`
/// bytes written) and completes what it wrote.
pub(crate) fn send_once<Q: SendQueue>(
    fd: BorrowedFd<'_>,
    queue: &mut Q,
    offset: &mut usize,
    opts: &SendOpts,
    stats: &SendStats,
) -> io::Result<Sent> {
    let mut iovs = Batch::new();
    let (total, looked_at) = gather(queue, *offset, opts, &mut iovs);
    if total == 0 {
        drop(iovs);
        return Ok(complete_empty(queue, offset, looked_at));
    }
    let count = iovs.len();
    let written = if count == 1 {
        sys::write(fd, &iovs[0])?
    } else {
        sys::writev(fd, &iovs)?
    };
    // The iovecs borrow the queue, which is completed below.
    drop(iovs);
    stats.syscalls.incr();
    stats.iovecs.add(count as u64);
    stats.bytes.add(written as u64);
    if written < total {
        stats.partial.incr();
    }
    complete(queue, offset, written);
    Ok(if written < total {
        Sent::Short
    } else {
        Sent::All
    })
}

/// Advances the queue by `written` bytes: completes every message that is
/// now fully written (and any empty ones among them), keeps the offset of a
/// partly written head.
pub(crate) fn complete<Q: SendQueue>(queue: &mut Q, offset: &mut usize, mut written: usize) {
    while let Some(message) = queue.message(0) {
        let left = message.len().saturating_sub(*offset);
        if left > written {
            *offset += written;
            return;
        }
        written -= left;
        *offset = 0;
        queue.head_sent();
        if written == 0 {
            // Following empty messages are done too; anything else waits.
            while queue.message(0).is_some_and(|m| m.is_empty()) {
                queue.head_sent();
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    struct Queue {
        items: VecDeque<Vec<u8>>,
        done: Vec<Vec<u8>>,
    }

    impl SendQueue for Queue {
        fn message(&self, i: usize) -> Option<&[u8]> {
            self.items.get(i).map(|m| &m[..])
        }
        fn head_sent(&mut self) {
            let m = self.items.pop_front().expect("head exists");
            self.done.push(m);
        }
    }

    fn queue(messages: &[&[u8]]) -> Queue {
        Queue {
            items: messages.iter().map(|m| m.to_vec()).collect(),
            done: Vec::new(),
        }
    }

    fn opts(mode: SendMode, iov_max: usize, send_limit: usize) -> SendOpts {
        SendOpts {
            mode,
            iov_max,
            send_limit,
        }
    }

    fn drain(peer: &mut UnixStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        peer.read_exact(&mut buf).unwrap();
        buf
    }

    #[test]
    fn batched_sends_everything_in_one_syscall() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut q = queue(&[b"one", b"", b"three", b"four"]);
        let stats = SendStats::default();
        let mut offset = 0;
        let sent = send_once(
            a.as_fd(),
            &mut q,
            &mut offset,
            &opts(SendMode::Batched, 128, usize::MAX),
            &stats,
        )
        .unwrap();
        assert_eq!(sent, Sent::All);
        assert_eq!(drain(&mut b, 12), b"onethreefour");
        assert_eq!(q.done.len(), 4);
        assert_eq!(
            (stats.syscalls.get(), stats.iovecs.get(), stats.bytes.get()),
            (1, 3, 12)
        );
    }

    #[test]
    fn iov_max_and_send_limit_cut_batches() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut q = queue(&[b"aaaa", b"bbbb", b"cccc"]);
        let stats = SendStats::default();
        let mut offset = 0;
        let o = opts(SendMode::Batched, 2, usize::MAX);
        send_once(a.as_fd(), &mut q, &mut offset, &o, &stats).unwrap();
        assert_eq!(q.done.len(), 2);
        assert_eq!(drain(&mut b, 8), b"aaaabbbb");

        // send_limit 6 leaves the second message half written at the head.
        let mut q = queue(&[b"aaaa", b"bbbb", b"cccc"]);
        let o = opts(SendMode::Batched, 128, 6);
        send_once(a.as_fd(), &mut q, &mut offset, &o, &stats).unwrap();
        assert_eq!((q.done.len(), offset), (1, 2));
        // The next 6 bytes are the rest of "bbbb" and all of "cccc".
        send_once(a.as_fd(), &mut q, &mut offset, &o, &stats).unwrap();
        assert_eq!((q.done.len(), offset), (3, 0));
        assert_eq!(drain(&mut b, 12), b"aaaabbbbcccc");
        assert_eq!((stats.syscalls.get(), stats.bytes.get()), (3, 20));
    }

    #[test]
    fn per_message_is_one_syscall_per_message() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut q = queue(&[b"x", b"yy", b"zzz"]);
        let stats = SendStats::default();
        let mut offset = 0;
        let o = opts(SendMode::PerMessage, 128, usize::MAX);
        while send_once(a.as_fd(), &mut q, &mut offset, &o, &stats).unwrap() != Sent::Idle {}
        assert_eq!(drain(&mut b, 6), b"xyyzzz");
        assert_eq!((stats.syscalls.get(), stats.iovecs.get()), (3, 3));
    }

    #[test]
    fn partial_writes_keep_the_offset_and_order() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let big = vec![7u8; 4 << 20];
        let mut q = queue(&[&big, b"tail"]);
        let stats = SendStats::default();
        let mut offset = 0;
        let o = opts(SendMode::Batched, 128, usize::MAX);
        let first = send_once(a.as_fd(), &mut q, &mut offset, &o, &stats).unwrap();
        assert_eq!(
            first,
            Sent::Short,
            "a 4 MiB write into a socket pair is short"
        );
        assert!(offset > 0 && offset < big.len());
        assert_eq!(stats.partial.get(), 1);
        let reader = std::thread::spawn(move || drain(&mut b, (4 << 20) + 4));
        loop {
            match send_once(a.as_fd(), &mut q, &mut offset, &o, &stats) {
                Ok(Sent::Idle) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
        let got = reader.join().unwrap();
        assert!(got[..4 << 20].iter().all(|&x| x == 7));
        assert_eq!(&got[4 << 20..], b"tail");
        assert_eq!(q.done.len(), 2);
    }
}
