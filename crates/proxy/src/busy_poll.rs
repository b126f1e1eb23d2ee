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

use std::cell::Cell;
use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::sys;
use crate::wake::TaskWaker;

/// One worker's poller state; one thread-local, so noting activity is one
/// TLS access.
struct PollerState {
    /// Bumped by every connection poll that made progress on this worker.
    activity: Cell<u64>,
    /// The poller is parked and waits for `note_activity` to wake it.
    parked: Cell<bool>,
    waker: TaskWaker,
}

thread_local! {
    static STATE: PollerState = const {
        PollerState {
            activity: Cell::new(0),
            parked: Cell::new(false),
            waker: TaskWaker::new(),
        }
    };
}

/// Records that a connection on this worker read or wrote something.
#[inline]
pub(crate) fn note_activity() {
    STATE.with(|s| {
        s.activity.set(s.activity.get().wrapping_add(1));
        if s.parked.replace(false) {
            s.waker.wake();
        }
    });
}

/// The poller task of one worker: polls (one zero-timeout I/O poll of the
/// runtime per round) while there was activity within `window`, then parks.
pub(crate) async fn run(window: Duration) {
    let activity = || STATE.with(|s| s.activity.get());
    loop {
        let mut seen = activity();
        let mut last_activity = Instant::now();
        loop {
            sys::sched_yield();
            // Deferred until the runtime has polled its I/O driver without
            // blocking, so every round is one `epoll_wait(0)`.
            tokio::task::yield_now().await;
            let now = activity();
            if now != seen {
                seen = now;
                last_activity = Instant::now();
            } else if last_activity.elapsed() >= window {
                break;
            }
        }
        STATE.with(|s| s.parked.set(true));
        poll_fn(|cx| {
            STATE.with(|s| {
                if s.parked.get() {
                    s.waker.register(cx.waker());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
        })
        .await;
    }
}
