//! `--busy-poll`: after I/O activity a worker keeps polling its sockets for a
//! bounded window before it blocks in `epoll_wait`, and while it polls it
//! coalesces the requests it forwards to backends.
//!
//! Why poll: on a VM without guest halt polling an idle vCPU halts at once,
//! and waking it (an IPI, a VM exit, a host reschedule) costs tens of
//! microseconds, paid by whoever wrote to our socket and again by us. Under
//! steady load a worker that never blocks avoids that. The poller yields the
//! CPU (`sched_yield`) on every round, so a backend or client sharing the CPU
//! runs first; once the window passes with no activity the poller sleeps
//! until the next one, so an idle proxy costs nothing.
//!
//! Why coalesce: a polling worker forwards each request the moment it
//! arrives, so a backend gets many small writes and wakes up for each. When
//! the backend shares a CPU with the clients, every such wakeup preempts
//! them. While polling, a server connection therefore holds its queued
//! requests until the worker's clients have been quiet for [`QUIET`], or
//! [`MAX_HOLD`] after the first held request, or until the batch is full
//! (see [`batch_is_full`]). A request that arrives after a quiet spell of
//! its own goes out at once, so a lone client waits for nothing. The poll
//! loop is the clock: no timers are armed.
//!
//! Why stop when the CPU is shared: polling only pays on a CPU that would
//! otherwise idle. When the poller is switched out involuntarily more than
//! [`SHARED_SWITCHES`] times within [`SHARED_PERIOD`], another task wants
//! this CPU, so polling and coalescing stop for [`SHARED_BACKOFF`].
//!
//! Connection tasks call [`note_activity`] whenever a poll made progress and
//! [`note_input`] when a client delivered requests; server tasks ask
//! [`may_send`] before they write. The state is per worker thread: workers
//! share nothing here either.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::io::sys;
use crate::io::wake::TaskWaker;

/// Client silence after which held sends go out. Measured on a 2-vCPU VM at
/// 50 connections: with 10 µs, batches often ended in the middle of a
/// client's burst (a client preempted by its backend pauses that long), at
/// about 5 requests per write; 30 µs gave about 20.
const QUIET: Duration = Duration::from_micros(30);
/// The longest a held send waits while clients keep sending.
const MAX_HOLD: Duration = Duration::from_micros(300);
/// More involuntary switches than this within [`SHARED_PERIOD`] mean the
/// CPU is shared. Interrupts and kernel threads preempt a lone poller a few
/// times per millisecond at most.
const SHARED_SWITCHES: i64 = 3;
const SHARED_PERIOD: Duration = Duration::from_millis(1);
/// How long polling stays off once the CPU turned out to be shared.
pub(crate) const SHARED_BACKOFF: Duration = Duration::from_millis(10);

/// One worker's poller state; one thread-local, so noting activity is one
/// TLS access.
struct PollerState {
    /// Bumped by every connection poll that made progress on this worker.
    activity: Cell<u64>,
    /// The poller is parked and waits for `note_activity` to wake it.
    parked: Cell<bool>,
    waker: TaskWaker,
    /// The poller is spinning; sends are coalesced only then.
    polling: Cell<bool>,
    /// When a client last delivered requests (recorded while polling).
    last_input: Cell<Option<Instant>>,
    /// That input came after a quiet spell: nothing else is on its way.
    input_after_quiet: Cell<bool>,
    /// When the oldest held send started waiting.
    holding_since: Cell<Option<Instant>>,
    /// Server tasks holding sends, woken when the hold ends.
    held: RefCell<Vec<Waker>>,
    /// Client connections open on this worker.
    clients: Cell<usize>,
    /// Client requests on this worker that wait for a backend's reply.
    awaited_replies: Cell<usize>,
    /// Those of them not yet written to their backend.
    unsent_requests: Cell<usize>,
}

thread_local! {
    static STATE: PollerState = const {
        PollerState {
            activity: Cell::new(0),
            parked: Cell::new(false),
            waker: TaskWaker::new(),
            polling: Cell::new(false),
            last_input: Cell::new(None),
            input_after_quiet: Cell::new(false),
            holding_since: Cell::new(None),
            held: RefCell::new(Vec::new()),
            clients: Cell::new(0),
            awaited_replies: Cell::new(0),
            unsent_requests: Cell::new(0),
        }
    };
}

/// Held by a client connection while it is open on this worker.
pub(crate) struct OpenClient(());

impl OpenClient {
    pub(crate) fn new() -> OpenClient {
        STATE.with(|s| s.clients.set(s.clients.get() + 1));
        OpenClient(())
    }
}

impl Drop for OpenClient {
    fn drop(&mut self) {
        // try_with: may run while the thread's locals are torn down.
        let _ = STATE.try_with(|s| s.clients.set(s.clients.get().saturating_sub(1)));
    }
}

/// Held by a client request forwarded to a backend until it is answered or
/// failed (dropped with the request); it also counts the request as unsent
/// until [`AwaitedReply::sent`].
pub(crate) struct AwaitedReply {
    unsent: bool,
}

impl AwaitedReply {
    pub(crate) fn new() -> AwaitedReply {
        STATE.with(|s| {
            s.awaited_replies.set(s.awaited_replies.get() + 1);
            s.unsent_requests.set(s.unsent_requests.get() + 1);
        });
        AwaitedReply { unsent: true }
    }

    /// The request has been written to its backend.
    pub(crate) fn sent(&mut self) {
        if std::mem::take(&mut self.unsent) {
            STATE.with(|s| {
                s.unsent_requests
                    .set(s.unsent_requests.get().saturating_sub(1))
            });
        }
    }
}

impl Drop for AwaitedReply {
    fn drop(&mut self) {
        let unsent = self.unsent;
        // try_with: may run while the thread's locals are torn down.
        let _ = STATE.try_with(|s| {
            s.awaited_replies
                .set(s.awaited_replies.get().saturating_sub(1));
            if unsent {
                s.unsent_requests
                    .set(s.unsent_requests.get().saturating_sub(1));
            }
        });
    }
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

/// Records that a client on this worker delivered requests.
#[inline]
pub(crate) fn note_input() {
    STATE.with(|s| {
        if !s.polling.get() {
            return;
        }
        let now = Instant::now();
        s.input_after_quiet
            .set(follows_quiet_spell(s.last_input.get(), now));
        s.last_input.set(Some(now));
    });
}

/// Whether input at `now` follows at least [`QUIET`] without input.
fn follows_quiet_spell(last_input: Option<Instant>, now: Instant) -> bool {
    last_input.is_none_or(|t| now.saturating_duration_since(t) >= QUIET)
}

/// Whether a server connection may write its queued requests now. If not,
/// its task is woken when the hold ends.
#[inline]
pub(crate) fn may_send(cx: &Context<'_>) -> bool {
    STATE.with(|s| {
        if !s.polling.get() {
            return true;
        }
        let now = Instant::now();
        if hold_is_over(s, now) {
            return true;
        }
        let mut held = s.held.borrow_mut();
        if held.is_empty() {
            s.holding_since.set(Some(now));
        }
        if !held.iter().any(|w| w.will_wake(cx.waker())) {
            held.push(cx.waker().clone());
        }
        false
    })
}

/// Whether the held requests are as many as they usefully get: every open
/// client waits for a reply (clients that wait for each reply can send no
/// more), or half of the open clients have a request held. Sending half
/// keeps the backend busy while the other half arrives: a hold until every
/// client waits turned client, proxy and backend into one that runs at a
/// time (measured 83,000 against 101,000 requests/s at 50 clients).
fn batch_is_full(s: &PollerState) -> bool {
    let clients = s.clients.get();
    s.awaited_replies.get() >= clients || s.unsent_requests.get() * 2 >= clients
}

/// Whether held sends may go out at `now`, by the batch or by the clock.
fn hold_is_over(s: &PollerState, now: Instant) -> bool {
    batch_is_full(s)
        || hold_ends(
            now,
            s.last_input.get(),
            s.input_after_quiet.get(),
            s.holding_since.get(),
        )
}

/// The coalescing rule: held sends go out once clients have been quiet for
/// [`QUIET`], at once for input that followed a quiet spell, and at the
/// latest [`MAX_HOLD`] after the first send was held.
fn hold_ends(
    now: Instant,
    last_input: Option<Instant>,
    input_after_quiet: bool,
    holding_since: Option<Instant>,
) -> bool {
    input_after_quiet
        || follows_quiet_spell(last_input, now)
        || holding_since.is_some_and(|t| now.saturating_duration_since(t) >= MAX_HOLD)
}

/// Wakes every held server task (when the hold ends or polling stops).
fn release_held() {
    let held = STATE.with(|s| {
        s.holding_since.set(None);
        std::mem::take(&mut *s.held.borrow_mut())
    });
    for waker in held {
        waker.wake();
    }
}

fn release_held_if_due() {
    let due = STATE.with(|s| !s.held.borrow().is_empty() && hold_is_over(s, Instant::now()));
    if due {
        release_held();
    }
}

fn set_polling(on: bool) {
    STATE.with(|s| {
        s.polling.set(on);
        s.last_input.set(None);
        s.input_after_quiet.set(false);
    });
    if !on {
        release_held();
    }
}

/// Tells from the poller thread's involuntary context switches whether
/// another task keeps wanting this CPU.
pub(crate) struct SharedCpu {
    period_start: Instant,
    switches_at_start: i64,
}

impl SharedCpu {
    pub(crate) fn new() -> SharedCpu {
        SharedCpu {
            period_start: Instant::now(),
            switches_at_start: sys::thread_involuntary_switches(),
        }
    }

    pub(crate) fn check(&mut self) -> bool {
        let switches = sys::thread_involuntary_switches();
        if self.period_start.elapsed() >= SHARED_PERIOD {
            self.period_start = Instant::now();
            self.switches_at_start = switches;
            return false;
        }
        switches - self.switches_at_start > SHARED_SWITCHES
    }
}

/// How many connection polls on this worker made progress so far.
pub(crate) fn activity() -> u64 {
    STATE.with(|s| s.activity.get())
}

/// Waits until a connection of this worker notes activity. The runtime
/// blocks meanwhile (unless other tasks run).
pub(crate) async fn park_until_activity() {
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

/// The poller task of one worker: polls (one zero-timeout I/O poll of the
/// runtime per round) while there was activity within `window`, then parks.
pub(crate) async fn run(window: Duration) {
    let mut shared = SharedCpu::new();
    loop {
        let mut seen = activity();
        let mut last_activity = Instant::now();
        set_polling(true);
        loop {
            // The runtime does not park while this polls, so `--io uring`'s
            // park hook would not run: submit here, once per round.
            crate::io::uring::submit_pending();
            sys::sched_yield();
            if shared.check() {
                set_polling(false);
                tokio::time::sleep(SHARED_BACKOFF).await;
                shared = SharedCpu::new();
                break;
            }
            // Deferred until the runtime has polled its I/O driver without
            // blocking, so every round is one `epoll_wait(0)`.
            tokio::task::yield_now().await;
            release_held_if_due();
            let now = activity();
            if now != seen {
                seen = now;
                last_activity = Instant::now();
            } else if last_activity.elapsed() >= window {
                break;
            }
        }
        set_polling(false);
        park_until_activity().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, micros: u64) -> Instant {
        base + Duration::from_micros(micros)
    }

    /// `hold_ends` with times in microseconds after one instant.
    fn ends(now: u64, last_input: Option<u64>, after_quiet: bool, holding: Option<u64>) -> bool {
        let t = Instant::now();
        hold_ends(
            at(t, now),
            last_input.map(|us| at(t, us)),
            after_quiet,
            holding.map(|us| at(t, us)),
        )
    }

    #[test]
    fn a_send_is_held_while_input_keeps_arriving() {
        // Input 5 µs ago, held for 100 µs: keep holding.
        assert!(!ends(105, Some(100), false, Some(5)));
    }

    #[test]
    fn a_quiet_spell_ends_the_hold() {
        assert!(ends(130, Some(100), false, Some(90)));
        assert!(!ends(129, Some(100), false, Some(90)));
    }

    #[test]
    fn a_hold_lasts_at_most_max_hold() {
        // Input 1 µs ago, but the first send has waited 300 µs.
        assert!(ends(300, Some(299), false, Some(0)));
        assert!(!ends(299, Some(298), false, Some(0)));
    }

    #[test]
    fn input_after_a_quiet_spell_is_not_held() {
        assert!(ends(101, Some(100), true, None));
        assert!(ends(1, None, false, None));
    }

    #[test]
    fn a_burst_is_told_from_a_lone_request() {
        let t = Instant::now();
        assert!(follows_quiet_spell(None, t));
        assert!(follows_quiet_spell(Some(t), at(t, 30)));
        assert!(!follows_quiet_spell(Some(t), at(t, 29)));
    }

    #[test]
    fn the_batch_is_full_when_every_client_waits_or_half_are_held() {
        let clients: Vec<OpenClient> = (0..4).map(|_| OpenClient::new()).collect();
        let full = || STATE.with(batch_is_full);
        let mut first = AwaitedReply::new();
        assert!(!full(), "one of four held");
        first.sent();
        assert!(!full(), "one of four in flight");
        let (mut second, mut third) = (AwaitedReply::new(), AwaitedReply::new());
        assert!(full(), "two of four held");
        second.sent();
        third.sent();
        assert!(!full(), "three of four in flight, none held");
        let mut fourth = AwaitedReply::new();
        fourth.sent();
        assert!(full(), "every client waits");
        drop((first, second, third, fourth));
        assert!(!full());
        drop(clients);
        STATE.with(|s| {
            assert_eq!(
                (
                    s.clients.get(),
                    s.awaited_replies.get(),
                    s.unsent_requests.get()
                ),
                (0, 0, 0)
            )
        });
    }

    /// A waker that counts its wakes.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_held_send_is_woken_when_the_batch_is_full() {
        let counter = std::sync::Arc::new(CountingWaker(0.into()));
        let waker = Waker::from(counter.clone());
        let cx = Context::from_waker(&waker);
        let wakes = || counter.0.load(std::sync::atomic::Ordering::SeqCst);
        let _clients: Vec<OpenClient> = (0..4).map(|_| OpenClient::new()).collect();
        assert!(may_send(&cx), "not polling: nothing is held");
        set_polling(true);
        // Input that never turns quiet, in the middle of a burst.
        STATE.with(|s| {
            s.last_input
                .set(Some(Instant::now() + Duration::from_secs(3600)));
            s.input_after_quiet.set(false);
        });
        let first = AwaitedReply::new();
        assert!(!may_send(&cx), "one of four clients' requests: held");
        assert!(!may_send(&cx), "polled again: still held, one waker kept");
        assert_eq!(STATE.with(|s| s.held.borrow().len()), 1);
        release_held_if_due();
        assert_eq!(wakes(), 0);
        let second = AwaitedReply::new();
        release_held_if_due();
        assert_eq!(wakes(), 1, "two of four: the hold ends");
        assert!(may_send(&cx));
        assert!(STATE.with(|s| s.held.borrow().is_empty() && s.holding_since.get().is_none()));
        drop((first, second));
        assert!(!may_send(&cx));
        set_polling(false);
        assert_eq!(wakes(), 2, "polling stops: held sends are released");
    }

    #[test]
    fn input_is_recorded_only_while_polling() {
        set_polling(true);
        note_input();
        assert!(STATE.with(|s| s.last_input.get().is_some()));
        set_polling(false);
        note_input();
        assert!(STATE.with(|s| s.last_input.get().is_none()));
    }
}
