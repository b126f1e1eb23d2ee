//! `ncbench capacity`: the highest open-loop rate at which a latency percentile
//! stays under a target, with an interval, and the knee of the latency curve.
//!
//! Each rate is measured in repetitions of `step_duration` (intervals of one
//! drive, more drives while needed): at least `min_repeats`, and more (up to
//! `max_repeats`) until the percentile's bootstrap interval over repetitions
//! is within `precision` of the estimate or lies wholly on one side of the
//! target. A rate *holds* when that interval is below the target (with at
//! least 95 % of the rate achieved and integrity intact), *fails* when it is
//! above (or the rate is not achieved), and is *inconclusive* otherwise.
//!
//! Search: start at `start_rate`, multiply by `growth` while the rate holds,
//! then bisect between the highest holding rate and the lowest one that did
//! not hold. The capacity interval is [highest holding rate, lowest failing
//! rate]; inconclusive rates lie inside it. The estimate is the middle of
//! the highest holding and the lowest not-holding rate.
//!
//! Knee: the latency curve (percentile over achieved ops/s) is first made
//! monotone by isotonic regression (pool-adjacent-violators), so one noisy
//! low point cannot become the knee; the knee is then the point of the fitted
//! curve farthest below the chord from its first to its last point
//! (Kneedle). Latency is measured from each request's intended send time,
//! so a saturated system shows its queueing instead of hiding it.
use crate::bench::{self, Session};
use crate::config::{BenchConfig, Length};
use crate::error::Result;
use crate::inference::{self, Interval, Judgement, TrialHistograms};
use crate::progress::Progress;
use crate::results::{CellResult, RunResult};
use crate::stats::{CellStats, LatencyUs};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapacityStep {
    pub rate: f64,
    pub ops_per_sec: f64,
    /// Latency at the searched percentile, µs (merged repetitions).
    pub latency_us_at_percentile: f64,
    /// Its interval over repetitions, µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_us: Option<Interval>,
    /// Repetitions of `step_duration` measured at this rate.
    #[serde(default)]
    pub repeats: u32,
    pub latency_us: LatencyUs,
    pub holds: bool,
    /// `holds`, `fails` or `inconclusive`.
    #[serde(default)]
    pub verdict: String,
    pub why_not: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapacityResult {
    pub cell: String,
    pub percentile: f64,
    pub target_latency_us: f64,
    /// Highest scheduled rate that held, if any did (the interval's low end).
    pub max_rate_holding: Option<f64>,
    /// Lowest scheduled rate that failed above the holding one (the high end).
    #[serde(default)]
    pub min_rate_failing: Option<f64>,
    /// Middle of the highest holding and the lowest not-holding rate.
    #[serde(default)]
    pub capacity_estimate: Option<f64>,
    /// Throughput achieved at the highest holding rate.
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

/// The knee of a latency curve: Kneedle (max of x̂ − ŷ over normalised
/// points) on its isotonic (non-decreasing) fit. Returns the original point.
pub fn knee(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    let mut p: Vec<(f64, f64)> = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    if p.len() < 3 {
        return None;
    }
    let fit = inference::isotonic(&p.iter().map(|q| q.1).collect::<Vec<_>>());
    let (x0, x1) = (p[0].0, p[p.len() - 1].0);
    let (ymin, ymax) = (fit[0], fit[fit.len() - 1]);
    if x1 <= x0 || ymax <= ymin {
        return None;
    }
    p.iter()
        .zip(&fit)
        .map(|(&(x, y), &f)| {
            (
                ((x - x0) / (x1 - x0)) - ((f - ymin) / (ymax - ymin)),
                (x, y),
            )
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .filter(|(d, _)| *d > 0.0)
        .map(|(_, q)| q)
}

/// One rate, measured until its percentile is known well enough.
struct StepMeasure {
    stats: CellStats,
    merged: Histogram<u64>,
    repeats: Vec<Histogram<u64>>,
    interval: Option<Interval>,
}

fn measure_rate(
    session: &Session,
    cfg: &BenchConfig,
    params: &crate::results::CellParams,
    t: &crate::target::RunningTarget,
    target_us: f64,
    progress: &dyn Progress,
) -> Result<StepMeasure> {
    let c = &cfg.capacity;
    let q = c.percentile / 100.0;
    let mut repeats: Vec<Histogram<u64>> = Vec::new();
    let mut all: Vec<CellStats> = Vec::new();
    let mut merged = crate::stats::new_histogram();
    let mut want = c.min_repeats;
    let mut drives = 0;
    loop {
        drives += 1;
        let m = session.measure(
            params,
            t,
            Length::Duration(c.step_duration.0 * want),
            c.step_duration.0,
            &[],
            progress,
        )?;
        let _ = merged.add(&m.latency);
        repeats.extend(m.intervals);
        let failed = !m.stats.integrity_ok() || m.stats.errors > 0;
        all.push(m.stats);
        let interval = TrialHistograms::new(&repeats)
            .quantile_interval(q, c.confidence)
            .map(|iv| Interval {
                estimate: iv.estimate / 1000.0,
                low: iv.low / 1000.0,
                high: iv.high / 1000.0,
                ..iv
            });
        let n = repeats.len() as u32;
        let tight = interval.is_some_and(|iv| iv.relative_half_width() <= c.precision.0);
        let decided = interval.is_some_and(|iv| !(iv.low <= target_us && iv.high >= target_us));
        let short = all
            .last()
            .is_some_and(|s| s.ops_per_sec < 0.95 * params.rate.unwrap_or(0.0));
        // `drives`: a bound even if a drive yields no whole repetition.
        if failed || short || n >= c.max_repeats || tight || decided || drives > c.max_repeats {
            let stats = combine_steps(&all, &merged);
            return Ok(StepMeasure {
                stats,
                merged,
                repeats,
                interval,
            });
        }
        want = (c.max_repeats - n).min(2);
    }
}

/// One CellStats for a rate measured over several drives: counts summed,
/// rates over the summed time, latency from the merged histogram.
fn combine_steps(all: &[CellStats], merged: &Histogram<u64>) -> CellStats {
    let mut s = all.last().cloned().unwrap_or_default();
    let secs: f64 = all.iter().map(|x| x.duration_s).sum();
    let reqs: u64 = all.iter().map(|x| x.requests).sum();
    s.duration_s = secs;
    s.requests = reqs;
    s.ops_per_sec = if secs > 0.0 { reqs as f64 / secs } else { 0.0 };
    s.latency_us = LatencyUs::from_histogram(merged);
    s.errors = all.iter().map(|x| x.errors).sum();
    s.mismatches = all.iter().map(|x| x.mismatches).sum();
    s.lost = all.iter().map(|x| x.lost).sum();
    s
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
    let secs = (c.step_duration.0 * c.min_repeats + cfg.run.warmup.0).as_secs_f64();
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
            let m = measure_rate(&session, cfg, &params, &t, target_us, progress)?;
            let stats = m.stats;
            let lat = at_percentile(&m.merged, c.percentile);
            let judged = m
                .interval
                .map(|iv| inference::judge(&iv, target_us, false))
                .unwrap_or(if lat <= target_us {
                    Judgement::Pass
                } else {
                    Judgement::Fail
                });
            let (verdict, why_not) = if !stats.integrity_ok() || stats.errors > 0 {
                (
                    "fails",
                    Some(format!(
                        "integrity: {} mismatches, {} lost, {} errors",
                        stats.mismatches, stats.lost, stats.errors
                    )),
                )
            } else if stats.ops_per_sec < 0.95 * rate {
                (
                    "fails",
                    Some(format!("achieved only {:.0}/s", stats.ops_per_sec)),
                )
            } else {
                let p = format!("p{} = {}", c.percentile, crate::report::fmt_us(lat));
                let ivs = m
                    .interval
                    .map(|iv| {
                        format!(
                            " [{}, {}]",
                            crate::report::fmt_us(iv.low),
                            crate::report::fmt_us(iv.high)
                        )
                    })
                    .unwrap_or_default();
                match judged {
                    Judgement::Pass => ("holds", None),
                    Judgement::Fail => ("fails", Some(format!("{p}{ivs} > target"))),
                    Judgement::Inconclusive => (
                        "inconclusive",
                        Some(format!("{p}{ivs} contains the target")),
                    ),
                }
            };
            let holds = verdict == "holds";
            if first.is_none() {
                first = Some((stats.clone(), m.merged.clone()));
            }
            progress.finish(&format!(
                "{:.0} ops/s, p{} {} ({} repeats) -> {verdict}",
                stats.ops_per_sec,
                c.percentile,
                crate::report::fmt_us(lat),
                m.repeats.len()
            ));
            let step = CapacityStep {
                rate,
                ops_per_sec: stats.ops_per_sec,
                latency_us_at_percentile: lat,
                interval_us: m.interval,
                repeats: m.repeats.len() as u32,
                latency_us: stats.latency_us,
                holds,
                verdict: verdict.into(),
                why_not,
            };
            steps.push(step.clone());
            step_hists.push(m.merged.clone());
            if holds {
                if good.is_none_or(|g| rate > g) {
                    good = Some(rate);
                    best = Some((step, stats, m.merged));
                }
            } else if bad.is_none_or(|b| rate < b) {
                bad = Some(rate);
            }
            // Next rate: grow until the first rate that does not hold, then bisect.
            rate = match (good, bad) {
                (_, None) => {
                    let next = rate * c.growth;
                    if next > c.max_rate {
                        break format!("reached max_rate {:.0}/s", c.max_rate);
                    }
                    next
                }
                (None, Some(_)) => break "the start rate already does not hold".to_string(),
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
        let failing = steps
            .iter()
            .filter(|s| s.verdict == "fails" && good.is_none_or(|g| s.rate > g))
            .map(|s| s.rate)
            .min_by(|a, b| a.total_cmp(b));
        let res = CapacityResult {
            cell: plan.id.clone(),
            percentile: c.percentile,
            target_latency_us: target_us,
            max_rate_holding: good,
            min_rate_failing: failing,
            capacity_estimate: good.map(|g| match bad {
                Some(b) if b > g => (g + b) / 2.0,
                _ => g,
            }),
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
            session.backends.loader_tls()?.as_ref(),
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

    #[test]
    fn a_noisy_dip_is_not_the_knee() {
        // The curve measured before steps were repeated: p99 591 µs at 20k/s,
        // 317 µs at 30k/s, 874 µs at 33.75k/s, 708 µs at 35.6k/s, then
        // saturation. Plain Kneedle picks the 317 µs dip; on the monotone
        // fit the dip pools with its neighbour and the knee is where the
        // curve turns up for good.
        let pts = [
            (10_000.0, 300.0),
            (20_000.0, 591.0),
            (30_000.0, 317.0),
            (33_750.0, 874.0),
            (35_600.0, 708.0),
            (38_000.0, 9_000.0),
        ];
        let k = knee(&pts).unwrap();
        assert_ne!(k.0, 30_000.0, "{k:?}");
        assert_eq!(k, (35_600.0, 708.0));
    }
}
