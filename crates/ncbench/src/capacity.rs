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
//! Search: start at `start_rate`, multiply by `growth` until a rate fails
//! (an inconclusive rate does not stop growth: near the target it is noise
//! as often as a limit), or divide by it, down to `min_rate`, while no rate
//! has held yet; then bisect between the highest holding rate and the lowest
//! rate above it that did not hold. The capacity interval is [highest holding rate, lowest failing
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
    /// Which round of the search measured it (0-based).
    #[serde(default)]
    pub round: u32,
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
    /// Each round's own bracket (the fields above combine them).
    #[serde(default)]
    pub rounds: Vec<CapacityRound>,
}

/// One round's bracket of a capacity search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CapacityRound {
    pub max_rate_holding: Option<f64>,
    pub min_rate_failing: Option<f64>,
    pub capacity_estimate: Option<f64>,
    pub stopped: String,
}

impl CapacityRound {
    fn of(r: &CapacityResult) -> CapacityRound {
        CapacityRound {
            max_rate_holding: r.max_rate_holding,
            min_rate_failing: r.min_rate_failing,
            capacity_estimate: r.capacity_estimate,
            stopped: r.stopped.clone(),
        }
    }
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

/// What a rate's measurement said about the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Holds,
    Fails,
    Inconclusive,
}

impl Outcome {
    /// From a step's `verdict` string (`holds`, `fails`, `inconclusive`).
    fn of_verdict(v: &str) -> Outcome {
        match v {
            "holds" => Outcome::Holds,
            "fails" => Outcome::Fails,
            _ => Outcome::Inconclusive,
        }
    }
}

/// The search's view of the rates tried so far.
struct Bracket {
    /// Highest rate that held.
    good: Option<f64>,
    /// Lowest rate above `good` that failed.
    failing: Option<f64>,
    /// Lowest rate above `good` that did not hold (failed or inconclusive).
    not_holding: Option<f64>,
}

impl Bracket {
    fn of(tried: &[(f64, Outcome)]) -> Bracket {
        let good = tried
            .iter()
            .filter(|t| t.1 == Outcome::Holds)
            .map(|t| t.0)
            .max_by(f64::total_cmp);
        let lowest_above = |keep: &dyn Fn(Outcome) -> bool| {
            tried
                .iter()
                .filter(|t| keep(t.1) && good.is_none_or(|g| t.0 > g))
                .map(|t| t.0)
                .min_by(f64::total_cmp)
        };
        Bracket {
            good,
            failing: lowest_above(&|o| o == Outcome::Fails),
            not_holding: lowest_above(&|o| o != Outcome::Holds),
        }
    }
}

/// The next rate to measure, or why the search is over.
///
/// Only a clear failure ends growth: an inconclusive rate (its interval
/// contains the target) is noise as often as a limit, and a batching proxy's
/// tail can even shrink as the rate grows, so growth goes on past it until
/// a rate fails. Then the search bisects between the highest holding rate
/// and the lowest rate above it that did not hold.
fn next_rate(
    c: &crate::config::CapacitySpec,
    tried: &[(f64, Outcome)],
    refine_left: &mut u32,
) -> std::result::Result<f64, String> {
    let b = Bracket::of(tried);
    let rates = || tried.iter().map(|t| t.0);
    match (b.good, b.failing) {
        (_, None) => {
            let top = rates().fold(0.0, f64::max);
            if top >= c.max_rate {
                return Err(format!("reached max_rate {:.0}/s", c.max_rate));
            }
            // The last step lands on max_rate itself, so the ceiling is measured.
            Ok((top * c.growth).min(c.max_rate))
        }
        (None, Some(_)) => {
            // A first failure is not an answer: step down until a rate
            // holds, so the capacity still gets an interval.
            let next = rates().fold(f64::INFINITY, f64::min) / c.growth;
            if next < c.min_rate {
                return Err(format!(
                    "no rate down to min_rate {:.0}/s holds",
                    c.min_rate
                ));
            }
            Ok(next)
        }
        (Some(g), Some(f)) => {
            let hi = b.not_holding.unwrap_or(f);
            if *refine_left == 0 || hi / g < 1.02 {
                return Err(format!("bracketed between {g:.0}/s and {hi:.0}/s"));
            }
            *refine_left -= 1;
            Ok((g + hi) / 2.0)
        }
    }
}

/// One round's search of one cell.
struct CellSearch {
    res: CapacityResult,
    /// The best holding step's stats and histogram, else the first step's.
    summary: Option<(CellStats, Histogram<u64>)>,
    step_hists: Vec<Histogram<u64>>,
}

/// Searches one cell's capacity once (one round).
fn search_cell(
    session: &Session,
    cfg: &BenchConfig,
    plan: &bench::CellPlan,
    t: &crate::target::RunningTarget,
    target_us: f64,
    round: u32,
    progress: &dyn Progress,
) -> Result<CellSearch> {
    let c = &cfg.capacity;
    let secs = (c.step_duration.0 * c.min_repeats + cfg.run.warmup.0).as_secs_f64();
    let mut steps: Vec<CapacityStep> = Vec::new();
    let mut best: Option<(CapacityStep, CellStats, Histogram<u64>)> = None;
    let mut good: Option<f64> = None;
    let mut tried: Vec<(f64, Outcome)> = Vec::new();
    let mut rate = c.start_rate;
    let mut refine_left = c.refine_steps;
    let mut step_hists = Vec::new();
    let mut first: Option<(CellStats, Histogram<u64>)> = None;
    let stopped = loop {
        let mut params = plan.params.clone();
        params.rate = Some(rate);
        progress.phase(&format!("{} @ {:.0}/s", plan.id, rate), secs);
        let m = measure_rate(session, cfg, &params, t, target_us, progress)?;
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
            round,
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
        tried.push((rate, Outcome::of_verdict(verdict)));
        if holds && good.is_none_or(|g| rate > g) {
            good = Some(rate);
            best = Some((step, stats, m.merged));
        }
        rate = match next_rate(c, &tried, &mut refine_left) {
            Ok(next) => next,
            Err(why) => break why,
        };
    };
    let pts: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (s.ops_per_sec, s.latency_us_at_percentile))
        .collect();
    let k = knee(&pts);
    let bracket = Bracket::of(&tried);
    let res = CapacityResult {
        cell: plan.id.clone(),
        percentile: c.percentile,
        target_latency_us: target_us,
        max_rate_holding: good,
        min_rate_failing: bracket.failing,
        capacity_estimate: good.map(|g| match bracket.not_holding {
            Some(b) => (g + b) / 2.0,
            None => g,
        }),
        max_ops_holding: best.as_ref().map(|b| b.0.ops_per_sec),
        knee_rate: k.map(|k| k.0),
        knee_latency_us: k.map(|k| k.1),
        steps,
        stopped,
        rounds: Vec::new(),
    };
    let summary = match (best, first) {
        (Some((_, s, h)), _) | (None, Some((s, h))) => Some((s, h)),
        (None, None) => None,
    };
    Ok(CellSearch {
        res,
        summary,
        step_hists,
    })
}

/// One cell's rounds as one result: the interval is the envelope of the
/// rounds' intervals (the lowest holding rate of any round's best, the
/// highest failing rate, not reached if any round reached none), the
/// estimate the median of the rounds' estimates, the knee that of all steps.
fn combine_rounds(mut rounds: Vec<CellSearch>) -> CellSearch {
    if rounds.len() == 1 {
        let mut one = rounds.pop().expect("one round");
        one.res.rounds = vec![CapacityRound::of(&one.res)];
        return one;
    }
    let per_round: Vec<CapacityRound> = rounds.iter().map(|r| CapacityRound::of(&r.res)).collect();
    let all = |f: fn(&CapacityRound) -> Option<f64>| -> Option<Vec<f64>> {
        per_round.iter().map(f).collect()
    };
    let low = all(|r| r.max_rate_holding).map(|v| v.into_iter().fold(f64::INFINITY, f64::min));
    let high = all(|r| r.min_rate_failing).map(|v| v.into_iter().fold(0.0, f64::max));
    let estimate = all(|r| r.capacity_estimate).map(|mut v| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    });
    // The conservative round (lowest holding rate) gives the summary.
    let pick = rounds
        .iter()
        .position(|r| r.res.max_rate_holding == low && low.is_some())
        .unwrap_or(0);
    let steps: Vec<CapacityStep> = rounds.iter().flat_map(|r| r.res.steps.clone()).collect();
    let pts: Vec<(f64, f64)> = steps
        .iter()
        .map(|s| (s.ops_per_sec, s.latency_us_at_percentile))
        .collect();
    let k = knee(&pts);
    let stopped = per_round
        .iter()
        .enumerate()
        .map(|(i, r)| format!("round {}: {}", i + 1, r.stopped))
        .collect::<Vec<_>>()
        .join("; ");
    let step_hists = rounds
        .iter_mut()
        .flat_map(|r| std::mem::take(&mut r.step_hists))
        .collect();
    let chosen = rounds.swap_remove(pick);
    CellSearch {
        res: CapacityResult {
            max_rate_holding: low,
            min_rate_failing: high,
            capacity_estimate: estimate,
            knee_rate: k.map(|k| k.0),
            knee_latency_us: k.map(|k| k.1),
            steps,
            stopped,
            rounds: per_round,
            ..chosen.res
        },
        summary: chosen.summary,
        step_hists,
    }
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
    let rounds = c.rounds.max(1);
    let mut searches: Vec<Vec<CellSearch>> = plans.iter().map(|_| Vec::new()).collect();
    // Rounds interleave the targets (A B C, A B C), so drift over minutes
    // shows in every target's interval instead of favouring one.
    for round in 0..rounds {
        for (plan, done) in plans.iter().zip(searches.iter_mut()) {
            let t = match session.start_cell(cfg, plan, progress, &mut notes)? {
                Ok(t) => t,
                Err(_) => continue,
            };
            let found = search_cell(&session, cfg, plan, &t, target_us, round, progress);
            t.stop();
            done.push(found?);
        }
    }
    let mut seen = std::collections::HashSet::new();
    notes.retain(|n| seen.insert(n.clone()));
    for (plan, done) in plans.iter().zip(searches) {
        if done.is_empty() {
            continue;
        }
        let found = combine_rounds(done);
        // The cell's summary is the best holding step of the round that
        // set the interval's low end; when none held, the first step, so
        // the table still shows what the target did.
        let (summary, hdr) = match &found.summary {
            Some((s, h)) => (s.clone(), crate::export::encode_histogram(h)),
            None => (CellStats::default(), None),
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
        results.push(found.res);
        hists.push(found.step_hists);
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

    /// Drives `next_rate` against a system whose true capacity is `cap`.
    fn search(c: &crate::config::CapacitySpec, cap: f64) -> (Vec<f64>, String) {
        search_with(c, |r| {
            if r <= cap {
                Outcome::Holds
            } else {
                Outcome::Fails
            }
        })
    }

    /// Drives `next_rate` against a system whose outcome at each rate is given.
    fn search_with(
        c: &crate::config::CapacitySpec,
        outcome: impl Fn(f64) -> Outcome,
    ) -> (Vec<f64>, String) {
        let mut tried = Vec::new();
        let mut rate = c.start_rate;
        let mut refine = c.refine_steps;
        loop {
            tried.push((rate, outcome(rate)));
            match next_rate(c, &tried, &mut refine) {
                Ok(r) => rate = r,
                Err(why) => return (tried.iter().map(|t| t.0).collect(), why),
            }
        }
    }

    #[test]
    fn an_inconclusive_rate_does_not_end_growth_only_a_failure_does() {
        // Measured here: a batching proxy's p99 hovered near the target from
        // 150k/s to 770k/s (inconclusive at 152k/s in one run, holding in
        // the next), then saturated. Stopping at the first inconclusive
        // rate made two runs disagree 6x.
        let c = crate::config::CapacitySpec {
            start_rate: 1_000.0,
            growth: 2.0,
            refine_steps: 2,
            ..Default::default()
        };
        let (rates, why) = search_with(&c, |r| match r {
            4_000.0 => Outcome::Inconclusive,
            r if r <= 10_000.0 => Outcome::Holds,
            r if r <= 12_000.0 => Outcome::Inconclusive,
            _ => Outcome::Fails,
        });
        assert_eq!(
            rates,
            vec![1_000.0, 2_000.0, 4_000.0, 8_000.0, 16_000.0, 12_000.0, 10_000.0]
        );
        // The bracket's top is the lowest rate above the best that did not
        // hold, inconclusive or not.
        assert_eq!(why, "bracketed between 10000/s and 12000/s");
        let b = Bracket::of(&[
            (8_000.0, Outcome::Holds),
            (16_000.0, Outcome::Fails),
            (12_000.0, Outcome::Inconclusive),
            (4_000.0, Outcome::Inconclusive),
        ]);
        assert_eq!(
            (b.good, b.failing, b.not_holding),
            (Some(8_000.0), Some(16_000.0), Some(12_000.0))
        );
    }

    #[test]
    fn search_steps_down_when_the_start_rate_fails_then_bisects() {
        let c = crate::config::CapacitySpec {
            start_rate: 20_000.0,
            growth: 2.0,
            refine_steps: 2,
            ..Default::default()
        };
        let (rates, why) = search(&c, 6_000.0);
        assert_eq!(rates, vec![20_000.0, 10_000.0, 5_000.0, 7_500.0, 6_250.0]);
        assert_eq!(why, "bracketed between 5000/s and 6250/s");
    }

    #[test]
    fn search_grows_then_bisects_and_gives_up_below_min_rate() {
        let c = crate::config::CapacitySpec {
            start_rate: 1_000.0,
            growth: 2.0,
            refine_steps: 1,
            min_rate: 300.0,
            ..Default::default()
        };
        let (rates, why) = search(&c, 3_000.0);
        assert_eq!(rates, vec![1_000.0, 2_000.0, 4_000.0, 3_000.0]);
        assert_eq!(why, "bracketed between 3000/s and 4000/s");
        let (rates, why) = search(&c, 1e9);
        assert_eq!(rates.last(), Some(&c.max_rate), "{rates:?}");
        assert_eq!(why, format!("reached max_rate {:.0}/s", c.max_rate));
        let (rates, why) = search(&c, 100.0);
        assert_eq!(rates, vec![1_000.0, 500.0]);
        assert_eq!(why, "no rate down to min_rate 300/s holds");
    }

    fn round_of(
        round: u32,
        good: Option<f64>,
        failing: Option<f64>,
        estimate: Option<f64>,
    ) -> CellSearch {
        let step = CapacityStep {
            round,
            rate: good.unwrap_or(1.0),
            ops_per_sec: good.unwrap_or(1.0),
            latency_us_at_percentile: 100.0 + f64::from(round),
            interval_us: None,
            repeats: 3,
            latency_us: LatencyUs::default(),
            holds: good.is_some(),
            verdict: "holds".into(),
            why_not: None,
        };
        let mut hist = crate::stats::new_histogram();
        hist.record(u64::from(round) + 1).unwrap();
        CellSearch {
            res: CapacityResult {
                cell: "c".into(),
                percentile: 99.0,
                target_latency_us: 5000.0,
                max_rate_holding: good,
                min_rate_failing: failing,
                capacity_estimate: estimate,
                max_ops_holding: good,
                knee_rate: None,
                knee_latency_us: None,
                steps: vec![step],
                stopped: format!("stop {round}"),
                rounds: Vec::new(),
            },
            summary: Some((CellStats::default(), hist.clone())),
            step_hists: vec![hist],
        }
    }

    #[test]
    fn rounds_combine_into_the_envelope_of_their_intervals() {
        let both = combine_rounds(vec![
            round_of(0, Some(130e3), Some(200e3), Some(140e3)),
            round_of(1, Some(100e3), Some(150e3), Some(120e3)),
        ]);
        let r = &both.res;
        assert_eq!(
            (r.max_rate_holding, r.min_rate_failing),
            (Some(100e3), Some(200e3))
        );
        assert_eq!(r.capacity_estimate, Some(130e3));
        assert_eq!(r.stopped, "round 1: stop 0; round 2: stop 1");
        assert_eq!(
            (r.steps.len(), both.step_hists.len(), r.rounds.len()),
            (2, 2, 2)
        );
        // The summary comes from the round that set the low end.
        assert_eq!(r.max_ops_holding, Some(100e3));
        assert_eq!(both.summary.unwrap().1.max(), 2);
        // A round that reached no failing rate leaves the top open; one in
        // which nothing held leaves no capacity at all.
        let open = combine_rounds(vec![
            round_of(0, Some(100e3), Some(150e3), Some(120e3)),
            round_of(1, Some(130e3), None, Some(130e3)),
        ]);
        assert_eq!(open.res.min_rate_failing, None);
        let none = combine_rounds(vec![
            round_of(0, Some(100e3), Some(150e3), Some(120e3)),
            round_of(1, None, Some(1e3), None),
        ]);
        assert_eq!(
            (none.res.max_rate_holding, none.res.capacity_estimate),
            (None, None)
        );
        // One round is itself, with its bracket listed.
        let one = combine_rounds(vec![round_of(0, Some(1e3), Some(2e3), Some(1.5e3))]);
        assert_eq!(one.res.rounds.len(), 1);
        assert_eq!(one.res.stopped, "stop 0");
    }

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
