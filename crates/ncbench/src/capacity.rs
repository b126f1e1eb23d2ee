//! `ncbench capacity`: the highest open-loop rate at which a latency percentile
//! stays under a target, and the knee of the latency curve.
//!
//! Search: start at `start_rate`, multiply by `growth` while the step holds
//! (percentile ≤ target, ≥ 95 % of the rate achieved, integrity intact), then
//! bisect between the last good and the first bad rate. Latency is measured
//! from each request's intended send time, so a saturated system shows its
//! queueing instead of hiding it. The knee is the point of the (rate, latency)
//! curve farthest below the chord from first to last step (the Kneedle method).
use crate::bench::{self, Session};
use crate::config::{BenchConfig, Length};
use crate::error::Result;
use crate::progress::Progress;
use crate::results::{CellResult, RunResult};
use crate::stats::{CellStats, LatencyUs};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapacityStep {
    pub rate: f64,
    pub ops_per_sec: f64,
    /// Latency at the searched percentile, µs.
    pub latency_us_at_percentile: f64,
    pub latency_us: LatencyUs,
    pub holds: bool,
    pub why_not: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapacityResult {
    pub cell: String,
    pub percentile: f64,
    pub target_latency_us: f64,
    /// Highest scheduled rate that held, if any did.
    pub max_rate_holding: Option<f64>,
    /// Throughput achieved at that rate.
    pub max_ops_holding: Option<f64>,
    pub knee_rate: Option<f64>,
    pub knee_latency_us: Option<f64>,
    pub steps: Vec<CapacityStep>,
    /// Why the search stopped.
    pub stopped: String,
}

/// Latency at `percentile` (0..100] of a histogram in ns, in µs.
pub fn at_percentile(h: &Histogram<u64>, percentile: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    h.value_at_quantile(percentile / 100.0) as f64 / 1000.0
}

/// The knee of an increasing latency curve: max of (x̂ − ŷ) over normalised points.
pub fn knee(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let mut p: Vec<(f64, f64)> = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    if p.len() < 3 {
        return None;
    }
    let (x0, x1) = (p[0].0, p[p.len() - 1].0);
    let ymin = p.iter().map(|q| q.1).fold(f64::INFINITY, f64::min);
    let ymax = p.iter().map(|q| q.1).fold(f64::NEG_INFINITY, f64::max);
    if x1 <= x0 || ymax <= ymin {
        return None;
    }
    p.iter()
        .map(|&(x, y)| {
            (
                ((x - x0) / (x1 - x0)) - ((y - ymin) / (ymax - ymin)),
                (x, y),
            )
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(d, _)| *d > 0.0)
        .map(|(_, q)| q)
}

/// Runs the capacity search for every cell of the config (rates in the sweep are ignored).
pub fn run(
    cfg: &BenchConfig,
    progress: &dyn Progress,
) -> Result<(RunResult, Vec<Vec<Histogram<u64>>>)> {
    let c = &cfg.capacity;
    let mut cfg2 = cfg.clone();
    cfg2.sweep.rate = None;
    cfg2.workload.rate = None;
    cfg2.workload.mode = crate::config::LoopMode::Closed;
    let plans = bench::expand_cells(&cfg2);
    let session = Session::start(cfg, progress)?;
    let mut notes = session.notes.clone();
    let target_us = c.target_latency.0.as_secs_f64() * 1e6;
    let mut cells = Vec::new();
    let mut results = Vec::new();
    let mut hists = Vec::new();
    let secs = (c.step_duration.0 + cfg.run.warmup.0).as_secs_f64();
    for plan in &plans {
        let t = match session.start_cell(cfg, plan, progress, &mut notes)? {
            Ok(t) => t,
            Err(_) => continue,
        };
        let mut steps: Vec<CapacityStep> = Vec::new();
        let mut best: Option<(CapacityStep, CellStats, Histogram<u64>)> = None;
        let mut good: Option<f64> = None;
        let mut bad: Option<f64> = None;
        let mut rate = c.start_rate;
        let mut refine_left = c.refine_steps;
        let mut step_hists = Vec::new();
        let mut first: Option<(CellStats, Histogram<u64>)> = None;
        let stopped = loop {
            let mut params = plan.params.clone();
            params.rate = Some(rate);
            progress.phase(&format!("{} @ {:.0}/s", plan.id, rate), secs);
            let (stats, hist) =
                session.measure(&params, &t, Length::Duration(c.step_duration.0), progress)?;
            let lat = at_percentile(&hist, c.percentile);
            let why_not = if !stats.integrity_ok() || stats.errors > 0 {
                Some(format!(
                    "integrity: {} mismatches, {} lost, {} errors",
                    stats.mismatches, stats.lost, stats.errors
                ))
            } else if stats.ops_per_sec < 0.95 * rate {
                Some(format!("achieved only {:.0}/s", stats.ops_per_sec))
            } else if lat > target_us {
                Some(format!(
                    "p{} = {} > target",
                    c.percentile,
                    crate::report::fmt_us(lat)
                ))
            } else {
                None
            };
            let holds = why_not.is_none();
            if first.is_none() {
                first = Some((stats.clone(), hist.clone()));
            }
            progress.finish(&format!(
                "{:.0} ops/s, p{} {} -> {}",
                stats.ops_per_sec,
                c.percentile,
                crate::report::fmt_us(lat),
                if holds { "holds" } else { "fails" }
            ));
            let step = CapacityStep {
                rate,
                ops_per_sec: stats.ops_per_sec,
                latency_us_at_percentile: lat,
                latency_us: stats.latency_us,
                holds,
                why_not,
            };
            steps.push(step.clone());
            step_hists.push(hist.clone());
            if holds {
                if good.is_none_or(|g| rate > g) {
                    good = Some(rate);
                    best = Some((step, stats, hist));
                }
            } else if bad.is_none_or(|b| rate < b) {
                bad = Some(rate);
            }
            // Next rate: grow until the first failure, then bisect.
            rate = match (good, bad) {
                (_, None) => {
                    let next = rate * c.growth;
                    if next > c.max_rate {
                        break format!("reached max_rate {:.0}/s", c.max_rate);
                    }
                    next
                }
                (None, Some(_)) => break "the start rate already fails the target".to_string(),
                (Some(g), Some(b)) => {
                    if refine_left == 0 || b / g < 1.02 {
                        break format!("bracketed between {g:.0}/s and {b:.0}/s");
                    }
                    refine_left -= 1;
                    (g + b) / 2.0
                }
            };
        };
        t.stop();
        let pts: Vec<(f64, f64)> = steps
            .iter()
            .map(|s| (s.ops_per_sec, s.latency_us_at_percentile))
            .collect();
        let k = knee(&pts);
        let res = CapacityResult {
            cell: plan.id.clone(),
            percentile: c.percentile,
            target_latency_us: target_us,
            max_rate_holding: good,
            max_ops_holding: best.as_ref().map(|b| b.0.ops_per_sec),
            knee_rate: k.map(|k| k.0),
            knee_latency_us: k.map(|k| k.1),
            steps,
            stopped,
        };
        // The cell's summary is the best holding step; when none held, the
        // first step, so the table still shows what the target did.
        let (summary, hdr) = match (&best, &first) {
            (Some((_, s, h)), _) | (None, Some((s, h))) => {
                (s.clone(), crate::export::encode_histogram(h))
            }
            (None, None) => (CellStats::default(), None),
        };
        cells.push(CellResult {
            id: plan.id.clone(),
            params: plan.params.clone(),
            how: String::new(),
            skipped: None,
            summary: summary.clone(),
            trials: vec![summary],
            ratio_to_reference: None,
            latency_hdr: hdr,
        });
        results.push(res);
        hists.push(step_hists);
    }
    let verify = if cfg.run.verify {
        let missing_is_failure = cfg.run.preload && cfg.workload.mix.del == 0;
        Some(crate::loader::verify(
            &session.backends.addrs,
            &session.keyspace,
            10_000,
            missing_is_failure,
        )?)
    } else {
        None
    };
    let mut result = RunResult {
        cells,
        verify,
        capacity: results,
        notes,
        ..session.result(cfg, "capacity")
    };
    bench::judge(&mut result);
    // A capacity run fails when no rate held at all: the target is unreachable.
    for r in &result.capacity {
        if r.max_rate_holding.is_none() {
            result.verdict.pass = false;
            result.verdict.reasons.push(format!(
                "{}: no rate held p{} <= {}",
                r.cell,
                r.percentile,
                crate::report::fmt_us(r.target_latency_us)
            ));
        }
    }
    Ok((result, hists))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knee_of_a_hockey_stick() {
        let pts = [
            (1.0, 100.0),
            (2.0, 105.0),
            (3.0, 110.0),
            (4.0, 130.0),
            (5.0, 1000.0),
        ];
        assert_eq!(knee(&pts), Some((4.0, 130.0)));
        assert_eq!(knee(&pts[..2]), None);
        // A flat curve has no knee.
        assert_eq!(knee(&[(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)]), None);
    }
}
