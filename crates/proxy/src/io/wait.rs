//! `--wait adaptive`: when a worker runs out of work it spins (polls its
//! sockets without blocking) before it blocks in `epoll_wait`, but only
//! when that is likely to pay, and never for more than a share of the CPU.
//!
//! Why: blocking and being woken again costs the sender a wakeup and the
//! worker a trip through the scheduler; on a VM whose idle vCPUs halt at
//! once (no guest halt polling) that is tens of microseconds. When work
//! comes back sooner than that, spinning is cheaper; when it does not, the
//! spin is wasted CPU. `--busy-poll` always spins for a fixed window and
//! so burns a core at light load; this mode decides each time.
//!
//! The rule, per worker (no per-request cost; a blocked stretch is timed
//! by the runtime's park and unpark hooks, and the spinner task runs only
//! while spinning may pay, so a worker that never spins costs what
//! `--wait sleep` does):
//! - the *wakeup cost* is measured once when the worker starts
//!   ([`measure_wakeup`]: the median delay between waking a blocked thread
//!   and that thread running);
//! - the *gap* is an EWMA of how long the worker sat out of work before new
//!   work arrived (a blocked stretch counts minus the wakeup cost, which it
//!   includes; each gap counts at most twice the wakeup cost);
//! - when the worker runs out of work it spins only if the gap is below the
//!   wakeup cost and the time it spun with nothing to do over the last
//!   [`SHARE_WINDOW`] is below `--wait-cap` percent; it then spins for at
//!   most the wakeup cost (the classic spin-then-block bound: never worse
//!   than twice the better choice), one `sched_yield` and one zero-timeout
//!   `epoll_wait` of the runtime per round, as `--busy-poll` does;
//! - like `--busy-poll` it stops spinning for 10 ms when the thread keeps
//!   being switched out involuntarily (the CPU is shared with a task that
//!   needs it). Unlike it, it never holds sends back.
//!
//! Every decision is counted in the worker's stats: `wait_spins`,
//! `wait_spin_hits` (work arrived while spinning), `wait_parks`,
//! `wait_spin_us`, and the inputs `wait_wakeup_ns` and `wait_gap_ns`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::io::busy_poll::{self, SharedCpu, SHARED_BACKOFF};
use crate::io::sys;
use crate::stats::WorkerStats;

/// The window over which the spin share is measured (the current and the
/// previous window count).
pub(crate) const SHARE_WINDOW: Duration = Duration::from_millis(100);
/// Bounds of a measured wakeup cost: a machine that wakes faster than the
/// lower bound gains nothing by spinning; above the upper bound the
/// measurement was disturbed.
const MIN_WAKEUP: Duration = Duration::from_micros(1);
const MAX_WAKEUP: Duration = Duration::from_micros(500);
/// Weight of a new gap in the EWMA: 1/8.
const EWMA_SHIFT: u32 = 3;

/// The adaptive rule's state for one worker.
pub(crate) struct Policy {
    wakeup: Duration,
    /// Most of the CPU spinning may take, in parts per thousand.
    cap_permille: u64,
    gap: Ewma,
    share: Share,
    /// Spinning is off until then (the CPU turned out to be shared).
    backoff_until: Option<Instant>,
}

impl Policy {
    pub(crate) fn new(wakeup: Duration, cap_percent: u8, now: Instant) -> Policy {
        Policy {
            wakeup: wakeup.clamp(MIN_WAKEUP, MAX_WAKEUP),
            cap_permille: u64::from(cap_percent.clamp(1, 100)) * 10,
            gap: Ewma::default(),
            share: Share::new(now),
            backoff_until: None,
        }
    }

    pub(crate) fn wakeup(&self) -> Duration {
        self.wakeup
    }

    /// Whether to spin now, having just run out of work.
    pub(crate) fn should_spin(&mut self, now: Instant) -> bool {
        if self.backoff_until.is_some_and(|t| now < t) {
            return false;
        }
        self.backoff_until = None;
        self.gap.get().is_some_and(|gap| gap < self.wakeup) && !self.over_cap(now)
    }

    /// Whether a spin that started at `start` should go on at `now`.
    pub(crate) fn keep_spinning(&mut self, start: Instant, now: Instant) -> bool {
        let spun = now.saturating_duration_since(start);
        spun < self.wakeup && !self.share.over(now, spun, self.cap_permille)
    }

    fn over_cap(&mut self, now: Instant) -> bool {
        self.share.over(now, Duration::ZERO, self.cap_permille)
    }

    /// A spin of `spun` ended at `now`.
    pub(crate) fn spun(&mut self, now: Instant, spun: Duration) {
        self.share.add(now, spun);
    }

    /// The CPU is shared: no spinning for a while.
    pub(crate) fn back_off(&mut self, now: Instant) {
        self.backoff_until = Some(now + SHARED_BACKOFF);
    }

    /// New work arrived `idle` after the worker ran out of it; `blocked`:
    /// the worker was blocked meanwhile, so `idle` includes a wakeup.
    /// A gap counts at most twice the wakeup cost: the rule only asks
    /// whether gaps are shorter than a wakeup, and a worker left waiting on
    /// a busy CPU (a long "gap" that is not idle time) must not outweigh
    /// many short ones. With that cap the average is below the wakeup cost
    /// about when most gaps are.
    pub(crate) fn work_arrived(&mut self, idle: Duration, blocked: bool) {
        let gap = if blocked {
            idle.saturating_sub(self.wakeup)
        } else {
            idle
        };
        self.gap.add(gap.min(self.wakeup * 2));
    }

    pub(crate) fn gap(&self) -> Option<Duration> {
        self.gap.get()
    }
}

/// An exponentially weighted moving average of durations, in nanoseconds.
#[derive(Default)]
struct Ewma {
    value: Option<u64>,
}

impl Ewma {
    fn add(&mut self, sample: Duration) {
        let sample = u64::try_from(sample.as_nanos()).unwrap_or(u64::MAX);
        self.value = Some(match self.value {
            None => sample,
            Some(v) if sample >= v => v + ((sample - v) >> EWMA_SHIFT),
            Some(v) => v - ((v - sample) >> EWMA_SHIFT),
        });
    }

    fn get(&self) -> Option<Duration> {
        self.value.map(Duration::from_nanos)
    }
}

/// Time spent spinning over the current and the previous [`SHARE_WINDOW`].
struct Share {
    start: Instant,
    spun: Duration,
    previous_len: Duration,
    previous_spun: Duration,
}

impl Share {
    fn new(now: Instant) -> Share {
        Share {
            start: now,
            spun: Duration::ZERO,
            previous_len: Duration::ZERO,
            previous_spun: Duration::ZERO,
        }
    }

    fn roll(&mut self, now: Instant) {
        let len = now.saturating_duration_since(self.start);
        if len >= SHARE_WINDOW {
            // A window stretched by a quiet spell counts as one window: its
            // spins came with the activity, not spread over the quiet.
            self.previous_len = len.min(SHARE_WINDOW);
            self.previous_spun = self.spun;
            self.spun = Duration::ZERO;
            self.start = now;
        }
    }

    fn add(&mut self, now: Instant, spun: Duration) {
        self.roll(now);
        self.spun += spun;
    }

    /// Whether spinning took at least `cap_permille` of the time, counting
    /// `ongoing` (a spin not yet added).
    fn over(&mut self, now: Instant, ongoing: Duration, cap_permille: u64) -> bool {
        self.roll(now);
        let len = self.previous_len + now.saturating_duration_since(self.start);
        let spun = self.previous_spun + self.spun + ongoing;
        // A window just begun has too little time to judge a share by.
        let len = len.max(SHARE_WINDOW / 10);
        spun.as_nanos() * 1000 >= len.as_nanos() * u128::from(cap_permille)
    }
}

/// One adaptive worker's rule and its spinner, shared by the runtime's park
/// hooks and the spinner task (all on the worker's thread).
struct Adaptive {
    policy: Policy,
    stats: Arc<WorkerStats>,
    /// When the worker last ran out of work, while it is blocked.
    idle_since: Option<Instant>,
    /// The last blocked stretch, and the activity count when it ended.
    last_stretch: Option<(Duration, u64)>,
    /// The spinner task, and whether it should be tracking work (it is
    /// dormant otherwise, at no cost to the runtime).
    spinner: Option<Waker>,
    spinning_wanted: bool,
}

thread_local! {
    static ADAPTIVE: RefCell<Option<Adaptive>> = const { RefCell::new(None) };
}

fn with_adaptive<R>(f: impl FnOnce(&mut Adaptive) -> R) -> Option<R> {
    ADAPTIVE
        .try_with(|slot| slot.try_borrow_mut().ok()?.as_mut().map(f))
        .ok()
        .flatten()
}

/// The `on_thread_park` hook of an adaptive worker: it is out of work and
/// about to block. The blocked stretch before this busy spell counts now,
/// if work came of it (a timer or a control message is not a gap between
/// requests). When gaps have been shorter than a wakeup, the spinner is
/// woken instead: the runtime then does not block, and the spinner spins.
pub(crate) fn on_park() {
    with_adaptive(|a| {
        let now = Instant::now();
        if let Some((stretch, activity)) = a.last_stretch.take() {
            if busy_poll::activity() != activity {
                a.policy.work_arrived(stretch, true);
                a.stats
                    .wait
                    .gap_ns
                    .set(a.policy.gap().map_or(0, duration_ns));
            }
        }
        // Once per idle spell: a spinner that declined or missed set
        // `idle_since`.
        if a.idle_since.is_none() && !a.spinning_wanted && a.policy.should_spin(now) {
            a.spinning_wanted = true;
            if let Some(spinner) = &a.spinner {
                spinner.wake_by_ref();
            }
            return;
        }
        a.idle_since.get_or_insert(now);
    });
}

/// The `on_thread_unpark` hook: the worker blocked since `idle_since`.
/// A worker whose gaps are too long to spin for pays two clock reads per
/// block and nothing else.
pub(crate) fn on_unpark() {
    with_adaptive(|a| {
        if let Some(since) = a.idle_since.take() {
            a.stats.wait.parks.incr();
            let stretch = Instant::now().saturating_duration_since(since);
            a.last_stretch = Some((stretch, busy_poll::activity()));
        }
    });
}

/// The spinner task of one worker in adaptive mode; `on_park` and
/// `on_unpark` must be the runtime's park hooks.
pub(crate) async fn run(wakeup: Duration, cap_percent: u8, stats: Arc<WorkerStats>) {
    let policy = Policy::new(wakeup, cap_percent, Instant::now());
    stats.wait.wakeup_ns.set(duration_ns(policy.wakeup()));
    ADAPTIVE.with(|slot| {
        *slot.borrow_mut() = Some(Adaptive {
            policy,
            stats: stats.clone(),
            idle_since: None,
            last_stretch: None,
            spinner: None,
            spinning_wanted: false,
        })
    });
    let wait = &stats.wait;
    loop {
        // Dormant until a blocked stretch was short enough to spin for.
        std::future::poll_fn(|cx| {
            with_adaptive(|a| {
                if a.spinning_wanted {
                    Poll::Ready(())
                } else {
                    match &a.spinner {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => a.spinner = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            })
            .unwrap_or(Poll::Pending)
        })
        .await;
        // Busy: one round per pass of the runtime while work keeps coming.
        let mut seen = busy_poll::activity();
        loop {
            tokio::task::yield_now().await;
            let now = busy_poll::activity();
            if now != seen {
                seen = now;
                continue;
            }
            // Out of work.
            let idle_start = Instant::now();
            if !with_adaptive(|a| a.policy.should_spin(idle_start)).unwrap_or(false) {
                with_adaptive(|a| {
                    a.idle_since = Some(idle_start);
                    a.spinning_wanted = false;
                });
                break;
            }
            wait.spins.incr();
            with_adaptive(|a| a.idle_since = None);
            let mut shared = SharedCpu::new();
            let hit = loop {
                sys::sched_yield();
                if shared.check() {
                    with_adaptive(|a| a.policy.back_off(Instant::now()));
                    break false;
                }
                tokio::task::yield_now().await;
                if busy_poll::activity() != seen {
                    break true;
                }
                let go_on = with_adaptive(|a| a.policy.keep_spinning(idle_start, Instant::now()));
                if go_on != Some(true) {
                    break false;
                }
            };
            let end = Instant::now();
            let spun = end.saturating_duration_since(idle_start);
            wait.spin_us
                .add(u64::try_from(spun.as_micros()).unwrap_or(u64::MAX));
            with_adaptive(|a| {
                a.policy.spun(end, spun);
                if hit {
                    a.policy.work_arrived(spun, false);
                    wait.gap_ns.set(a.policy.gap().map_or(0, duration_ns));
                } else {
                    // The blocked stretch that follows counts from here.
                    a.idle_since = Some(idle_start);
                    a.spinning_wanted = false;
                }
            });
            if !hit {
                break;
            }
            wait.spin_hits.incr();
            seen = busy_poll::activity();
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The wakeup cost adaptive workers go by: `NCPROXY_WAIT_WAKEUP_NS` when it
/// is set (to reproduce a decision, or to test the rule on any machine),
/// else [`measure_wakeup`].
pub(crate) fn wakeup_cost() -> Duration {
    std::env::var("NCPROXY_WAIT_WAKEUP_NS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or_else(measure_wakeup)
}

/// Measures how long a blocked thread takes to run after it is woken: the
/// median over a few rounds in which a helper thread wakes the calling
/// thread (blocked in a futex wait, as the runtime blocks in `epoll_wait`)
/// after a pause long enough for both CPUs to go idle. The helper then
/// spins until the woken thread runs (at most 2 ms), so the woken thread
/// runs on its own, idle CPU, as a worker woken by a socket does, and the
/// delay includes bringing that CPU out of idle. Takes a few milliseconds;
/// the fallback, if no helper thread can start, is 20 µs.
pub(crate) fn measure_wakeup() -> Duration {
    const ROUNDS: u64 = 21;
    const PAUSE: Duration = Duration::from_micros(300);
    const SPIN: Duration = Duration::from_millis(2);
    let base = Instant::now();
    let woken_at = Arc::new(AtomicU64::new(0));
    // The round the helper started; the round the woken thread took.
    let started = Arc::new(AtomicU64::new(0));
    let taken = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let me = std::thread::current();
    let helper = {
        let (woken_at, started, taken, done) = (
            woken_at.clone(),
            started.clone(),
            taken.clone(),
            done.clone(),
        );
        std::thread::Builder::new()
            .name("ncproxy-wake-probe".to_string())
            .spawn(move || {
                for round in 1..=ROUNDS {
                    std::thread::sleep(PAUSE);
                    if done.load(Ordering::SeqCst) {
                        return;
                    }
                    woken_at.store(duration_ns(base.elapsed()), Ordering::SeqCst);
                    started.store(round, Ordering::SeqCst);
                    me.unpark();
                    let spin_start = Instant::now();
                    while taken.load(Ordering::SeqCst) < round && spin_start.elapsed() < SPIN {
                        std::hint::spin_loop();
                    }
                }
            })
    };
    let Ok(helper) = helper else {
        return Duration::from_micros(20);
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut samples = Vec::with_capacity(ROUNDS as usize);
    let mut last = 0;
    while last < ROUNDS && Instant::now() < deadline {
        std::thread::park_timeout(Duration::from_millis(50));
        let now = duration_ns(base.elapsed());
        let round = started.load(Ordering::SeqCst);
        if round == last {
            continue; // spurious, or timed out
        }
        last = round;
        samples.push(now.saturating_sub(woken_at.load(Ordering::SeqCst)));
        taken.store(round, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    let _ = helper.join();
    samples.sort_unstable();
    match samples.get(samples.len() / 2) {
        Some(&ns) => Duration::from_nanos(ns),
        None => Duration::from_micros(20),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn it_spins_only_when_work_came_back_sooner_than_a_wakeup() {
        let t = Instant::now();
        let mut p = Policy::new(us(30), 30, t);
        assert!(!p.should_spin(t), "no gap measured yet: block");
        p.work_arrived(us(10), false);
        assert!(p.should_spin(t));
        // Long blocked stretches pull the gap up until spinning stops; each
        // counts as twice the wakeup cost.
        for _ in 0..30 {
            p.work_arrived(us(1000), true);
        }
        assert!(p.gap().unwrap() > us(30) && p.gap().unwrap() <= us(60));
        assert!(!p.should_spin(t));
        // Mostly short gaps bring it back.
        for _ in 0..30 {
            p.work_arrived(us(2), false);
        }
        assert!(p.should_spin(t));
    }

    #[test]
    fn a_blocked_stretch_counts_without_its_wakeup() {
        let mut p = Policy::new(us(30), 30, Instant::now());
        p.work_arrived(us(35), true);
        assert_eq!(p.gap(), Some(us(5)));
        let mut q = Policy::new(us(30), 30, Instant::now());
        q.work_arrived(us(20), true);
        assert_eq!(q.gap(), Some(Duration::ZERO));
    }

    #[test]
    fn a_spin_lasts_at_most_the_wakeup_cost() {
        let t = Instant::now() + Duration::from_secs(1);
        let mut p = Policy::new(us(30), 100, t);
        assert!(p.keep_spinning(t, t + us(29)));
        assert!(!p.keep_spinning(t, t + us(30)));
    }

    #[test]
    fn spinning_stays_under_its_cpu_share() {
        let t = Instant::now();
        let mut p = Policy::new(us(30), 30, t);
        p.work_arrived(us(5), false);
        // 20 ms of spins within 50 ms: 40% > 30%.
        p.spun(t + Duration::from_millis(50), Duration::from_millis(20));
        assert!(!p.should_spin(t + Duration::from_millis(50)));
        // Two windows later the old spins no longer count.
        assert!(p.should_spin(t + Duration::from_millis(260)));
        // 10 ms within 100 ms: 10% < 30%.
        let mut q = Policy::new(us(30), 30, t);
        q.work_arrived(us(5), false);
        q.spun(t + Duration::from_millis(100), Duration::from_millis(10));
        assert!(q.should_spin(t + Duration::from_millis(100)));
        // An ongoing spin counts too.
        let start = t + Duration::from_millis(100);
        assert!(q.keep_spinning(start, start + us(20)));
    }

    #[test]
    fn a_shared_cpu_stops_spinning_for_a_while() {
        let t = Instant::now();
        let mut p = Policy::new(us(30), 30, t);
        p.work_arrived(us(5), false);
        p.back_off(t);
        assert!(!p.should_spin(t + Duration::from_millis(5)));
        assert!(p.should_spin(t + SHARED_BACKOFF));
    }

    #[test]
    fn the_ewma_moves_an_eighth_of_the_way() {
        let mut e = Ewma::default();
        e.add(us(80));
        e.add(us(0));
        assert_eq!(e.get(), Some(us(70)));
        e.add(us(150));
        assert_eq!(e.get(), Some(us(80)));
    }

    #[test]
    fn the_wakeup_cost_is_measured() {
        let w = measure_wakeup();
        assert!(w > Duration::ZERO && w < Duration::from_millis(50), "{w:?}");
    }
}
