//! Time series of one drive: per interval (`run.interval`, default 1 s) the
//! replies, their latency, errors and losses, and what the clock thread
//! sampled at the interval's edges (syscalls) or did in it (events).
//!
//! The driver threads own a [`Timeline`] each (no sharing per request); a
//! reply is booked in the interval in which it arrived, so a stall shows
//! where it ended and an error burst where it happened. The interval
//! histograms have two significant figures (1 % resolution), which keeps
//! them small enough to hold one per interval and thread. Warmup intervals
//! are kept, marked, so an event during warmup still shows.
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Longest time series kept; later replies land in the last interval.
pub const MAX_INTERVALS: usize = 100_000;

fn interval_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, crate::stats::MAX_LATENCY_NS, 2).expect("valid histogram bounds")
}

/// What one interval saw on one driver thread (or merged).
#[derive(Debug, Clone)]
pub struct Bucket {
    pub completed: u64,
    pub errors: u64,
    pub mismatches: u64,
    pub conn_errors: u64,
    pub lost: u64,
    /// From the intended send time, ns.
    pub latency: Histogram<u64>,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            completed: 0,
            errors: 0,
            mismatches: 0,
            conn_errors: 0,
            lost: 0,
            latency: interval_histogram(),
        }
    }
}

impl Bucket {
    fn merge(&mut self, o: &Bucket) {
        self.completed += o.completed;
        self.errors += o.errors;
        self.mismatches += o.mismatches;
        self.conn_errors += o.conn_errors;
        self.lost += o.lost;
        let _ = self.latency.add(&o.latency);
    }
}

/// Buckets of `interval_ns` from the start of the drive (warmup included),
/// with edges on the end of the warmup: bucket `i` starts at
/// `i * interval_ns - shift_ns`, so measured intervals are whole.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub interval_ns: u64,
    pub shift_ns: u64,
    pub buckets: Vec<Bucket>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new(Duration::from_secs(1), Duration::ZERO)
    }
}

impl Timeline {
    /// Intervals of `interval`, one edge at `warmup`.
    pub fn new(interval: Duration, warmup: Duration) -> Timeline {
        let interval_ns = (interval.as_nanos() as u64).max(1);
        let warm = warmup.as_nanos() as u64 % interval_ns;
        Timeline {
            interval_ns,
            shift_ns: (interval_ns - warm) % interval_ns,
            buckets: Vec::new(),
        }
    }

    /// Start of bucket `i`, ns since the drive started (negative for a first
    /// bucket that begins before it).
    pub fn start_of(&self, i: usize) -> i64 {
        i as i64 * self.interval_ns as i64 - self.shift_ns as i64
    }

    /// The bucket of time `t_ns` (since the drive started), created on demand.
    #[inline]
    pub fn at(&mut self, t_ns: u64) -> &mut Bucket {
        let i = (((t_ns + self.shift_ns) / self.interval_ns) as usize).min(MAX_INTERVALS - 1);
        if i >= self.buckets.len() {
            self.buckets.resize_with(i + 1, Bucket::default);
        }
        &mut self.buckets[i]
    }

    pub fn merge(&mut self, o: &Timeline) {
        if self.buckets.is_empty() {
            self.interval_ns = o.interval_ns;
            self.shift_ns = o.shift_ns;
        }
        if o.buckets.len() > self.buckets.len() {
            self.buckets.resize_with(o.buckets.len(), Bucket::default);
        }
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            a.merge(b);
        }
    }
}

/// Read and write syscalls of one process (or a set of threads), from
/// `/proc/<pid>/io`: `syscr` and `syscw`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoCount {
    pub reads: u64,
    pub writes: u64,
}

impl IoCount {
    pub fn total(&self) -> u64 {
        self.reads + self.writes
    }

    pub fn since(&self, earlier: &IoCount) -> IoCount {
        IoCount {
            reads: self.reads.saturating_sub(earlier.reads),
            writes: self.writes.saturating_sub(earlier.writes),
        }
    }
}

/// What the clock thread read at one instant: the proxy's and the backends'
/// syscall counters (None where there is no process to read).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub t_ns: u64,
    pub proxy: Option<IoCount>,
    pub backends: Option<IoCount>,
}

/// One interval of the time series, as stored in the result.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct IntervalPoint {
    /// Start, seconds since the load started (warmup included).
    pub t_s: f64,
    pub duration_s: f64,
    pub warmup: bool,
    pub requests: u64,
    pub ops_per_sec: f64,
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    pub latency_us_p999: f64,
    pub errors: u64,
    pub conn_errors: u64,
    pub lost: u64,
    pub mismatches: u64,
    /// The proxy process's read + write syscalls in this interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_syscalls: Option<u64>,
    /// Of those, writes (sends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_send_syscalls: Option<u64>,
    /// Every backend process's read + write syscalls in this interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_syscalls: Option<u64>,
    /// Events that ran in this interval (`kill backend 0`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

/// Turns a merged timeline, the clock's samples and the events that ran into
/// the stored series. `warm_ns` and `end_ns` bound the measured window.
pub fn points(
    t: &Timeline,
    samples: &[Sample],
    events: &[(u64, String)],
    warm_ns: u64,
    end_ns: u64,
) -> Vec<IntervalPoint> {
    let iv = t.interval_ns;
    let n_window = (end_ns + t.shift_ns).div_ceil(iv) as usize;
    let n = t.buckets.len().max(n_window).min(MAX_INTERVALS);
    let empty = Bucket::default();
    // The sample closest to a time, for deltas over an interval.
    let nearest = |at: u64| -> Option<&Sample> {
        samples
            .iter()
            .min_by_key(|s| s.t_ns.abs_diff(at))
            .filter(|s| s.t_ns.abs_diff(at) <= iv / 2)
    };
    (0..n)
        .map(|i| {
            let b = t.buckets.get(i).unwrap_or(&empty);
            let start = t.start_of(i).max(0) as u64;
            let bucket_end = (t.start_of(i) + iv as i64).max(0) as u64;
            let stop = if start < end_ns {
                bucket_end.min(end_ns)
            } else {
                bucket_end
            };
            let secs = (stop - start) as f64 / 1e9;
            let us = |q: f64| {
                if b.latency.is_empty() {
                    0.0
                } else {
                    b.latency.value_at_quantile(q) as f64 / 1000.0
                }
            };
            let (a, z) = (nearest(start), nearest(stop));
            let delta = |f: fn(&Sample) -> Option<IoCount>| -> Option<IoCount> {
                Some(f(z?)?.since(&f(a?)?))
            };
            let proxy = delta(|s| s.proxy);
            IntervalPoint {
                t_s: start as f64 / 1e9,
                duration_s: secs,
                warmup: start < warm_ns,
                requests: b.completed,
                ops_per_sec: if secs > 0.0 {
                    b.completed as f64 / secs
                } else {
                    0.0
                },
                latency_us_p50: us(0.5),
                latency_us_p99: us(0.99),
                latency_us_p999: us(0.999),
                errors: b.errors,
                conn_errors: b.conn_errors,
                lost: b.lost,
                mismatches: b.mismatches,
                proxy_syscalls: proxy.map(|p| p.total()),
                proxy_send_syscalls: proxy.map(|p| p.writes),
                backend_syscalls: delta(|s| s.backends).map(|b| b.total()),
                events: events
                    .iter()
                    .filter(|(at, _)| *at >= start && *at < bucket_end)
                    .map(|(_, what)| what.clone())
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_land_in_their_interval_and_events_and_syscalls_line_up() {
        let mut t = Timeline::new(Duration::from_millis(100), Duration::from_millis(100));
        assert_eq!(t.shift_ns, 0);
        t.at(10_000_000).completed += 5;
        t.at(10_000_000).latency.record(2_000_000).unwrap();
        t.at(150_000_000).errors += 2;
        let mut u = Timeline::new(Duration::from_millis(100), Duration::ZERO);
        u.at(160_000_000).completed += 3;
        t.merge(&u);
        let io = |r, w| {
            Some(IoCount {
                reads: r,
                writes: w,
            })
        };
        let samples = [
            Sample {
                t_ns: 0,
                proxy: io(0, 0),
                backends: None,
            },
            Sample {
                t_ns: 101_000_000,
                proxy: io(10, 20),
                backends: None,
            },
            Sample {
                t_ns: 199_000_000,
                proxy: io(15, 30),
                backends: None,
            },
        ];
        let events = [(120_000_000, "kill backend 0".to_string())];
        let p = points(&t, &samples, &events, 100_000_000, 250_000_000);
        assert_eq!(p.len(), 3);
        assert!(p[0].warmup && !p[1].warmup);
        assert_eq!((p[0].requests, p[1].requests), (5, 3));
        assert_eq!(p[0].ops_per_sec, 50.0);
        assert!((p[0].latency_us_p99 - 2000.0).abs() < 20.0);
        assert_eq!(p[1].errors, 2);
        assert_eq!(p[0].proxy_syscalls, Some(30));
        assert_eq!(p[1].proxy_send_syscalls, Some(10));
        assert_eq!(p[1].events, vec!["kill backend 0".to_string()]);
        assert!(p[0].events.is_empty());
        // The last interval is clipped to the window: 50 ms.
        assert!((p[2].duration_s - 0.05).abs() < 1e-9);
        assert_eq!(p[2].proxy_syscalls, None);
        // Edges fall on the end of the warmup: 300 ms intervals, 100 ms warmup.
        let mut w = Timeline::new(Duration::from_millis(300), Duration::from_millis(100));
        assert_eq!(w.start_of(1), 100_000_000);
        w.at(50_000_000).completed += 1;
        w.at(150_000_000).completed += 2;
        let p = points(&w, &[], &[], 100_000_000, 700_000_000);
        assert_eq!((p[0].requests, p[1].requests), (1, 2));
        assert!(p[0].warmup && !p[1].warmup);
        assert_eq!((p[0].t_s, p[1].t_s), (0.0, 0.1));
        assert!((p[0].duration_s - 0.1).abs() < 1e-9);
    }
}
