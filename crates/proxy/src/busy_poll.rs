//! `--busy-poll`: after I/O activity a worker keeps polling its sockets for a
//! bounded window before it blocks in `epoll_wait`.
//!
//! Why: on a VM without guest halt polling an idle vCPU halts at once, and
//! waking it (an IPI, a VM exit, a host reschedule) costs tens of
//! microseconds, paid by whoever wrote to our socket and again by us. Under
//! steady load a worker that never blocks avoids that. The poller yields the
//! CPU (`sched_yield`) on every round, so a backend or client sharing the CPU
//! runs first; once the window passes with no activity the poller sleeps
//! until the next one, so an idle proxy costs nothing.
//!
//! Connection tasks call [`note_activity`] whenever a poll made progress. The
//! state is per worker thread: workers share nothing here either.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::sys;

thread_local! {
    /// Bumped by every connection poll that made progress on this worker.
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    /// The poller is parked and waits for `note_activity` to wake it.
    static PARKED: Cell<bool> = const { Cell::new(false) };
    static POLLER: RefCell<Option<Waker>> = const { RefCell::new(None) };
}

/// Records that a connection on this worker read or wrote something.
#[inline]
pub(crate) fn note_activity() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
    if PARKED.with(|p| p.replace(false)) {
        POLLER.with(|w| {
            if let Some(waker) = w.borrow().as_ref() {
                waker.wake_by_ref();
            }
        });
    }
}

/// The poller task of one worker: polls (one zero-timeout I/O poll of the
/// runtime per round) while there was activity within `window`, then parks.
pub(crate) async fn run(window: Duration) {
    loop {
        let mut seen = ACTIVITY.with(Cell::get);
        let mut last_activity = Instant::now();
        loop {
            sys::sched_yield();
            // Deferred until the runtime has polled its I/O driver without
            // blocking, so every round is one `epoll_wait(0)`.
            tokio::task::yield_now().await;
            let now = ACTIVITY.with(Cell::get);
            if now != seen {
                seen = now;
                last_activity = Instant::now();
            } else if last_activity.elapsed() >= window {
                break;
            }
        }
        PARKED.with(|p| p.set(true));
        poll_fn(|cx| {
            if PARKED.with(Cell::get) {
                POLLER.with(|w| {
                    let mut slot = w.borrow_mut();
                    match slot.as_ref() {
                        Some(current) if current.will_wake(cx.waker()) => {}
                        _ => *slot = Some(cx.waker().clone()),
                    }
                });
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
    }
}
