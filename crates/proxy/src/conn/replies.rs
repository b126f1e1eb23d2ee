//! A client's reply queue: one slot per request in arrival order, filled by
//! server connections (or locally), sent strictly in order through the send
//! chain. Multi-key requests keep their fragments' replies here until all are
//! in, then coalesce them the way nutcracker does.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use bytes::Bytes;
use nc_protocol::Limits;

use crate::dialect::{Fragments, Quiet, Wire};
use crate::errno::Errno;
use crate::io::chain::SendQueue;
use crate::io::wake::TaskWaker;
use crate::stats::PoolStats;

/// What a slot will send.
pub(crate) enum SlotReply {
    /// Still waiting for `pending` server replies.
    Pending,
    Ready(Bytes),
    Fragments(Box<Fragments>),
}

pub(crate) struct Slot {
    pending: u32,
    reply: SlotReply,
    /// Close the client after this reply (an MGET fragment failed at the
    /// network level, as nutcracker's post_coalesce does).
    close_after: bool,
    /// memcache quiet mode: a reply of this kind is dropped (sent as nothing).
    quiet: Option<Quiet>,
}

pub(crate) struct ReplyQueue {
    head_seq: u64,
    slots: VecDeque<Slot>,
    /// Bytes of replies ready but not yet written to the client.
    ready_bytes: usize,
    /// `client_output_limit` (0 = none): above it the client is closed.
    output_limit: usize,
    closed: bool,
    /// Set when a sent reply asked for the connection to close.
    close_now: bool,
    /// memcache: replies gathered into the same send as the closing one
    /// still go out (nutcracker closes the client after the send, not in
    /// the middle of it); Redis stops at the closing reply.
    finish_batch: bool,
}

/// The part of a client connection that server connections reach.
pub(crate) struct ClientShared {
    queue: RefCell<ReplyQueue>,
    pub(crate) waker: TaskWaker,
    wire: Wire,
    limits: Limits,
    forward_errors: Cell<u64>,
    /// The client made progress since the last idle sweep (`conn::idle`).
    pub(crate) active: Cell<bool>,
    /// An idle sweep asks the client to park if it is still idle.
    pub(crate) park_requested: Cell<bool>,
}

/// Marks a reply that is not a fragment.
pub(crate) const NO_FRAGMENT: u32 = u32::MAX;

impl ClientShared {
    pub(crate) fn new(wire: Wire, limits: Limits, output_limit: usize) -> ClientShared {
        ClientShared {
            queue: RefCell::new(ReplyQueue {
                head_seq: 0,
                slots: VecDeque::new(),
                ready_bytes: 0,
                output_limit,
                closed: false,
                close_now: false,
                finish_batch: wire == Wire::Memcache,
            }),
            waker: TaskWaker::default(),
            wire,
            limits,
            forward_errors: Cell::new(0),
            active: Cell::new(true),
            park_requested: Cell::new(false),
        }
    }

    /// Appends a slot waiting for `pending` replies; returns its sequence number.
    pub(crate) fn push_pending(&self, pending: u32, fragments: Option<Box<Fragments>>) -> u64 {
        let mut q = self.queue.borrow_mut();
        let seq = q.head_seq + q.slots.len() as u64;
        q.slots.push_back(Slot {
            pending,
            reply: fragments.map_or(SlotReply::Pending, SlotReply::Fragments),
            close_after: false,
            quiet: None,
        });
        seq
    }

    /// Appends a slot for one reply that quiet mode may drop.
    pub(crate) fn push_quiet(&self, quiet: Quiet) -> u64 {
        let mut q = self.queue.borrow_mut();
        let seq = q.head_seq + q.slots.len() as u64;
        q.slots.push_back(Slot {
            pending: 1,
            reply: SlotReply::Pending,
            close_after: false,
            quiet: Some(quiet),
        });
        seq
    }

    /// Appends a reply made by the proxy itself.
    pub(crate) fn push_ready(&self, reply: Bytes) {
        let mut q = self.queue.borrow_mut();
        q.ready_bytes += reply.len();
        q.slots.push_back(Slot {
            pending: 0,
            reply: SlotReply::Ready(reply),
            close_after: false,
            quiet: None,
        });
    }

    pub(crate) fn outstanding(&self) -> usize {
        self.queue.borrow().slots.len()
    }

    /// The client is gone: later replies are swallowed.
    pub(crate) fn close(&self) {
        let mut q = self.queue.borrow_mut();
        q.closed = true;
        q.slots.clear();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.queue.borrow().closed
    }

    /// Error replies synthesized since the last call (for `forward_error`).
    pub(crate) fn take_forward_errors(&self) -> u64 {
        self.forward_errors.replace(0)
    }

    /// A server reply (or a network error) for request `seq`, fragment `frag`.
    pub(crate) fn deliver(&self, seq: u64, frag: u32, reply: Result<Bytes, Errno>) {
        let mut q = self.queue.borrow_mut();
        if q.closed {
            return;
        }
        let Some(index) = seq.checked_sub(q.head_seq).map(|i| i as usize) else {
            return;
        };
        let Some(slot) = q.slots.get_mut(index) else {
            return;
        };
        let mut ready = 0;
        match &mut slot.reply {
            SlotReply::Fragments(frags) => {
                match reply {
                    Ok(bytes) => {
                        if let Some(entry) = frags.replies.get_mut(frag as usize) {
                            *entry = Some(bytes);
                        }
                    }
                    Err(errno) => {
                        frags.errno.get_or_insert(errno);
                    }
                }
                slot.pending = slot.pending.saturating_sub(1);
                if slot.pending == 0 {
                    let merged = self.wire.coalesce(frags, &self.limits);
                    ready = merged.reply.len();
                    slot.reply = SlotReply::Ready(merged.reply);
                    slot.close_after = merged.close_after;
                    if merged.synthesized_error {
                        self.forward_errors.set(self.forward_errors.get() + 1);
                    }
                }
            }
            _ => {
                slot.pending = 0;
                let bytes = match reply {
                    Ok(bytes) if slot.quiet.is_some_and(|q| self.wire.suppressed(q, &bytes)) => {
                        Bytes::new()
                    }
                    Ok(bytes) => bytes,
                    Err(errno) => {
                        self.forward_errors.set(self.forward_errors.get() + 1);
                        self.wire.error_reply(errno)
                    }
                };
                ready = bytes.len();
                slot.reply = SlotReply::Ready(bytes);
            }
        }
        q.ready_bytes += ready;
        let over_limit = q.output_limit > 0 && q.ready_bytes > q.output_limit;
        if index == 0 || over_limit {
            drop(q);
            self.waker.wake();
        }
    }

    /// Runs `f` with the queue as the send chain sees it.
    pub(crate) fn with_send_queue<R>(&self, f: impl FnOnce(&mut ReplyQueue) -> R) -> R {
        f(&mut self.queue.borrow_mut())
    }
}

impl ReplyQueue {
    /// Whether the head reply is ready to go.
    pub(crate) fn head_ready(&self) -> bool {
        self.slots.front().is_some_and(|s| s.pending == 0)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// A reply that must close the connection has been sent, or the client
    /// let more than `client_output_limit` bytes of replies pile up.
    pub(crate) fn must_close(&self) -> bool {
        self.close_now || (self.output_limit > 0 && self.ready_bytes > self.output_limit)
    }
}

impl SendQueue for ReplyQueue {
    #[inline]
    fn message(&self, i: usize) -> Option<&[u8]> {
        match self.slots.get(i) {
            Some(Slot {
                pending: 0,
                reply: SlotReply::Ready(bytes),
                ..
            }) if !self.close_now || self.finish_batch => Some(bytes),
            _ => None,
        }
    }

    #[inline]
    fn head_sent(&mut self) {
        if let Some(slot) = self.slots.pop_front() {
            self.head_seq += 1;
            if let SlotReply::Ready(bytes) = &slot.reply {
                self.ready_bytes -= bytes.len();
            }
            if slot.close_after {
                self.close_now = true;
            }
        }
    }
}

impl crate::io::uring::OwnedSendQueue for ReplyQueue {
    fn message_owned(&self, i: usize) -> Option<Bytes> {
        self.message(i)?;
        match self.slots.get(i) {
            Some(Slot {
                reply: SlotReply::Ready(bytes),
                ..
            }) => Some(bytes.clone()),
            _ => None,
        }
    }
}

/// Adds the forward errors a client counted to its pool's stats.
pub(crate) fn flush_forward_errors(shared: &ClientShared, stats: &PoolStats) {
    let n = shared.take_forward_errors();
    if n > 0 {
        stats.forward_error.add(n);
    }
}
