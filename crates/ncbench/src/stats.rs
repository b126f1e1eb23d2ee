//! Latency histograms and counters: per driver thread while running, merged
//! into one [`CellStats`] per cell (and trial) afterwards.
//!
//! Each driver thread owns its histograms (no atomics or locks per request);
//! they are merged once at the end. Values are nanoseconds in the histograms and
//! microseconds in reports (`latency_us_p99`), three significant figures.
use crate::events::EventRecord;
use crate::shards::ShardShare;
use crate::timeline::{IntervalPoint, Timeline};
use crate::workload::Op;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Highest latency a histogram tracks (larger values saturate): 120 s.
pub const MAX_LATENCY_NS: u64 = 120_000_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("valid histogram bounds")
}

/// What one driver thread saw during the measured window.
#[derive(Debug, Clone)]
pub struct ThreadStats {
    /// From the intended send time (closed loop: the issue time) to the reply.
    pub latency: Histogram<u64>,
    /// From the actual write to the reply (open loop differs from `latency`).
    pub service: Histogram<u64>,
    /// Open loop only: how late requests were written relative to their schedule.
    pub lag: Histogram<u64>,
    pub ops: [u64; 5],
    pub completed: u64,
    pub errors: u64,
    pub mismatches: u64,
    pub lost: u64,
    /// Open loop: requests that were due in the window but never sent.
    pub unsent: u64,
    pub conn_errors: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    /// First mismatch or error seen, for the report (which request, which reply).
    pub first_problem: Option<String>,
    /// Time of the last reply (ns since start), for request-count runs.
    pub last_reply_ns: u64,
    /// Per-interval series (warmup included).
    pub timeline: Timeline,
    /// Error replies and connection failures by kind, in every phase.
    pub error_kinds: Vec<(String, u64)>,
}

/// Most distinct error kinds kept; the rest count as `other`.
const MAX_ERROR_KINDS: usize = 32;

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            latency: new_histogram(),
            service: new_histogram(),
            lag: new_histogram(),
            ops: [0; 5],
            completed: 0,
            errors: 0,
            mismatches: 0,
            lost: 0,
            unsent: 0,
            conn_errors: 0,
            bytes_out: 0,
            bytes_in: 0,
            first_problem: None,
            last_reply_ns: 0,
            timeline: Timeline::default(),
            error_kinds: Vec::new(),
        }
    }
}

impl ThreadStats {
    pub fn merge(&mut self, o: &ThreadStats) {
        // Same bounds everywhere, so add() cannot fail.
        let _ = self.latency.add(&o.latency);
        let _ = self.service.add(&o.service);
        let _ = self.lag.add(&o.lag);
        for (a, b) in self.ops.iter_mut().zip(o.ops) {
            *a += b;
        }
        self.completed += o.completed;
        self.errors += o.errors;
        self.mismatches += o.mismatches;
        self.lost += o.lost;
        self.unsent += o.unsent;
        self.conn_errors += o.conn_errors;
        self.bytes_out += o.bytes_out;
        self.bytes_in += o.bytes_in;
        if self.first_problem.is_none() {
            self.first_problem.clone_from(&o.first_problem);
        }
        self.last_reply_ns = self.last_reply_ns.max(o.last_reply_ns);
        self.timeline.merge(&o.timeline);
        for (k, n) in &o.error_kinds {
            self.bump_kind(k, *n);
        }
    }

    fn bump_kind(&mut self, kind: &str, n: u64) {
        if let Some(slot) = self.error_kinds.iter_mut().find(|(k, _)| k == kind) {
            slot.1 += n;
        } else if self.error_kinds.len() < MAX_ERROR_KINDS {
            self.error_kinds.push((kind.to_string(), n));
        } else {
            self.bump_other(n);
        }
    }

    fn bump_other(&mut self, n: u64) {
        match self.error_kinds.iter_mut().find(|(k, _)| k == "other") {
            Some(slot) => slot.1 += n,
            None => self.error_kinds.push(("other".into(), n)),
        }
    }

    /// Counts an error reply by its first line (`reply: -ERR Connection refused`).
    pub fn count_error(&mut self, reply: &[u8]) {
        let line = reply
            .split(|&b| b == b'\r' || b == b'\n')
            .next()
            .unwrap_or(b"");
        let line = &line[..line.len().min(60)];
        // No allocation for a kind seen before.
        if let Some(slot) = self.error_kinds.iter_mut().find(|(k, _)| {
            k.strip_prefix("reply: ")
                .is_some_and(|k| k.as_bytes() == line)
        }) {
            slot.1 += 1;
            return;
        }
        let kind = format!("reply: {}", String::from_utf8_lossy(line));
        self.bump_kind(&kind, 1);
    }

    /// Counts a connection failure by its description, without addresses.
    pub fn count_conn_error(&mut self, why: &str) {
        let kind: Vec<&str> = why
            .split_whitespace()
            .filter(|w| {
                w.trim_end_matches(':')
                    .parse::<std::net::SocketAddr>()
                    .is_err()
            })
            .collect();
        let kind = format!("connection: {}", kind.join(" "));
        self.bump_kind(&kind, 1);
    }
}

/// Percentiles of a latency histogram in microseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
pub struct LatencyUs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyUs {
    pub fn from_histogram(h: &Histogram<u64>) -> LatencyUs {
        if h.is_empty() {
            return LatencyUs::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencyUs {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

/// Counters scraped from the proxy's stats server over the measured window.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
pub struct ProxyCounters {
    /// Requests forwarded to servers (a fragmented MGET counts once per server).
    pub requests: u64,
    pub request_bytes: u64,
    pub responses: u64,
    /// Server-side request send path (ncproxy only).
    pub send_syscalls: Option<u64>,
    pub send_iovecs: Option<u64>,
    pub send_bytes: Option<u64>,
    pub send_partial: Option<u64>,
    /// Client-side reply send path (ncproxy only).
    pub client_send_syscalls: Option<u64>,
    pub client_send_bytes: Option<u64>,
    pub client_send_iovecs: Option<u64>,
    /// Σ send_syscalls / Σ requests.
    pub syscalls_per_request: Option<f64>,
    pub requests_per_syscall: Option<f64>,
    pub bytes_per_syscall: Option<f64>,
    pub iovecs_per_syscall: Option<f64>,
    /// Client reply path: syscalls per reply sent to clients.
    pub client_syscalls_per_reply: Option<f64>,
}

/// Syscalls read from `/proc/<pid>/io` (`syscr`, `syscw`) over the measured
/// window: the proxy process (or the in-process proxy's threads) and every
/// backend process ncbench started. Per request = per reply the clients got.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
pub struct ProcSyscalls {
    pub proxy_reads: Option<u64>,
    pub proxy_writes: Option<u64>,
    pub proxy_per_request: Option<f64>,
    pub proxy_writes_per_request: Option<f64>,
    pub backend_reads: Option<u64>,
    pub backend_writes: Option<u64>,
    pub backend_per_request: Option<f64>,
}

/// The result of one cell (one trial, or the median over trials).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct CellStats {
    pub ops_per_sec: f64,
    /// Requests completed in the measured window.
    pub requests: u64,
    pub duration_s: f64,
    pub latency_us: LatencyUs,
    /// Service time (from the actual write), differs from `latency_us` in open loop.
    pub service_us: LatencyUs,
    /// Open loop: schedule lag of writes (generator health; large = client-bound).
    pub send_lag_us_p99: f64,
    pub target_rate: Option<f64>,
    pub errors: u64,
    pub mismatches: u64,
    pub lost: u64,
    pub unsent: u64,
    pub conn_errors: u64,
    pub ops: OpCounts,
    pub bytes_out: u64,
    pub bytes_in: u64,
    pub first_problem: Option<String>,
    pub proxy: Option<ProxyCounters>,
    /// Error replies and connection failures by kind (every phase).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub error_kinds: BTreeMap<String, u64>,
    /// Syscalls of the proxy and the backends from /proc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls: Option<ProcSyscalls>,
    /// Each backend's share of operations and bytes, from its own counters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardShare>,
    /// Per-interval series (trials only; the summary leaves it empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<IntervalPoint>,
    /// Events that ran during this trial.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventRecord>,
    /// This trial's latency histogram (ns), HDR V2 + deflate, base64; trials only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_hdr: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq)]
pub struct OpCounts {
    pub get: u64,
    pub set: u64,
    pub mget: u64,
    pub del: u64,
    pub incr: u64,
}

impl CellStats {
    pub fn from_thread(s: &ThreadStats, duration_s: f64, target_rate: Option<f64>) -> CellStats {
        let o = s.ops;
        CellStats {
            ops_per_sec: if duration_s > 0.0 {
                s.completed as f64 / duration_s
            } else {
                0.0
            },
            requests: s.completed,
            duration_s,
            latency_us: LatencyUs::from_histogram(&s.latency),
            service_us: LatencyUs::from_histogram(&s.service),
            send_lag_us_p99: if s.lag.is_empty() {
                0.0
            } else {
                s.lag.value_at_quantile(0.99) as f64 / 1000.0
            },
            target_rate,
            errors: s.errors,
            mismatches: s.mismatches,
            lost: s.lost,
            unsent: s.unsent,
            conn_errors: s.conn_errors,
            ops: OpCounts {
                get: o[Op::Get as usize],
                set: o[Op::Set as usize],
                mget: o[Op::Mget as usize],
                del: o[Op::Del as usize],
                incr: o[Op::Incr as usize],
            },
            bytes_out: s.bytes_out,
            bytes_in: s.bytes_in,
            first_problem: s.first_problem.clone(),
            proxy: None,
            error_kinds: s.error_kinds.iter().cloned().collect(),
            syscalls: None,
            shards: Vec::new(),
            timeline: Vec::new(),
            events: Vec::new(),
            latency_hdr: None,
        }
    }

    /// The hottest backend's share of operations (None without shard counters).
    pub fn hottest_shard_share(&self) -> Option<f64> {
        self.shards
            .iter()
            .map(|s| s.ops_share)
            .max_by(|a, b| a.total_cmp(b))
    }

    /// Integrity holds: no mismatched and no lost replies.
    pub fn integrity_ok(&self) -> bool {
        self.mismatches == 0 && self.lost == 0
    }

    /// A metric by its config name; None when not measured (e.g. syscalls on nutcracker).
    pub fn metric(&self, m: crate::config::Metric) -> Option<f64> {
        use crate::config::Metric::*;
        let p = self.proxy.as_ref();
        match m {
            OpsPerSec => Some(self.ops_per_sec),
            LatencyUsP50 => Some(self.latency_us.p50),
            LatencyUsP90 => Some(self.latency_us.p90),
            LatencyUsP99 => Some(self.latency_us.p99),
            LatencyUsP999 => Some(self.latency_us.p999),
            LatencyUsMax => Some(self.latency_us.max),
            Errors => Some(self.errors as f64),
            SyscallsPerRequest => p.and_then(|p| p.syscalls_per_request),
            RequestsPerSyscall => p.and_then(|p| p.requests_per_syscall),
            BytesPerSyscall => p.and_then(|p| p.bytes_per_syscall),
            ProxySyscallsPerRequest => self.syscalls.and_then(|s| s.proxy_per_request),
            BackendSyscallsPerRequest => self.syscalls.and_then(|s| s.backend_per_request),
            HottestShardShare => self.hottest_shard_share(),
        }
    }
}

/// Median of the trials' values for every field that gates look at. Counts of
/// failures (errors, mismatches, lost) are summed, not medianed: one bad trial
/// must show.
pub fn combine_trials(trials: &[CellStats]) -> CellStats {
    let mut out = combine_scalars(trials);
    out.timeline.clear();
    out.events.clear();
    out.latency_hdr = None;
    out.error_kinds = BTreeMap::new();
    for t in trials {
        for (k, n) in &t.error_kinds {
            *out.error_kinds.entry(k.clone()).or_default() += n;
        }
    }
    out.shards = crate::shards::sum(trials.iter().map(|t| t.shards.as_slice()));
    out
}

fn combine_scalars(trials: &[CellStats]) -> CellStats {
    if trials.len() == 1 {
        return trials[0].clone();
    }
    let med = |f: &dyn Fn(&CellStats) -> f64| -> f64 {
        let mut v: Vec<f64> = trials.iter().map(f).collect();
        median(&mut v)
    };
    let medo = |f: &dyn Fn(&CellStats) -> Option<f64>| -> Option<f64> {
        let mut v: Vec<f64> = trials.iter().filter_map(f).collect();
        if v.is_empty() {
            None
        } else {
            Some(median(&mut v))
        }
    };
    let mut out = trials[trials.len() / 2].clone();
    out.ops_per_sec = med(&|t| t.ops_per_sec);
    out.latency_us = LatencyUs {
        p50: med(&|t| t.latency_us.p50),
        p90: med(&|t| t.latency_us.p90),
        p99: med(&|t| t.latency_us.p99),
        p999: med(&|t| t.latency_us.p999),
        max: trials.iter().map(|t| t.latency_us.max).fold(0.0, f64::max),
        mean: med(&|t| t.latency_us.mean),
    };
    out.errors = trials.iter().map(|t| t.errors).sum();
    out.mismatches = trials.iter().map(|t| t.mismatches).sum();
    out.lost = trials.iter().map(|t| t.lost).sum();
    out.unsent = trials.iter().map(|t| t.unsent).sum();
    out.conn_errors = trials.iter().map(|t| t.conn_errors).sum();
    out.first_problem = trials.iter().find_map(|t| t.first_problem.clone());
    if let Some(p) = out.proxy.as_mut() {
        p.syscalls_per_request = medo(&|t| t.proxy.and_then(|p| p.syscalls_per_request));
        p.requests_per_syscall = medo(&|t| t.proxy.and_then(|p| p.requests_per_syscall));
        p.bytes_per_syscall = medo(&|t| t.proxy.and_then(|p| p.bytes_per_syscall));
        p.iovecs_per_syscall = medo(&|t| t.proxy.and_then(|p| p.iovecs_per_syscall));
        p.client_syscalls_per_reply = medo(&|t| t.proxy.and_then(|p| p.client_syscalls_per_reply));
    }
    if let Some(s) = out.syscalls.as_mut() {
        s.proxy_per_request = medo(&|t| t.syscalls.and_then(|s| s.proxy_per_request));
        s.proxy_writes_per_request = medo(&|t| t.syscalls.and_then(|s| s.proxy_writes_per_request));
        s.backend_per_request = medo(&|t| t.syscalls.and_then(|s| s.backend_per_request));
    }
    out
}

/// Median (sorts in place); 0 for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_us() {
        let mut s = ThreadStats::default();
        for i in 1..=1000u64 {
            s.latency.record(i * 1000).unwrap();
        }
        s.completed = 1000;
        let c = CellStats::from_thread(&s, 2.0, None);
        assert_eq!(c.ops_per_sec, 500.0);
        assert!((c.latency_us.p50 - 500.0).abs() < 1.0, "{:?}", c.latency_us);
        assert!((c.latency_us.p99 - 990.0).abs() < 1.0);
        assert!((c.latency_us.max - 1000.0).abs() < 1.0);
    }

    #[test]
    fn trials_take_median_and_sum_failures() {
        let mk = |ops: f64, lost: u64| CellStats {
            ops_per_sec: ops,
            lost,
            ..CellStats::default()
        };
        let c = combine_trials(&[mk(10.0, 0), mk(30.0, 1), mk(20.0, 0)]);
        assert_eq!(c.ops_per_sec, 20.0);
        assert_eq!(c.lost, 1);
        assert!(!c.integrity_ok());
    }
}
