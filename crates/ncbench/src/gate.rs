//! Gates: pass / fail / inconclusive rules on results.
//!
//! - Ratio gates compare cells of the same run (`batched / per_message ≥ 1.3`,
//!   `ncproxy / nutcracker ≥ 1.0`). Both sides see the same machine at nearly the
//!   same time, so these hold on noisy CI machines where absolute numbers do not.
//!   With trials, ratios are taken per trial (paired); the median ratio and its
//!   bootstrap interval are judged (`inference`).
//! - Bound gates put a min/max on a metric of the selected cells; with trials,
//!   on the interval of its median (latency percentiles: of the merged
//!   trial histograms).
//! - Baseline comparison (`ncbench compare`, `run --baseline`) matches cells by
//!   id and applies throughput-drop, p99- and p99.9-increase thresholds to the
//!   bootstrap interval of the new/base ratio: pass when the whole interval is
//!   within the threshold, fail when it is wholly beyond, inconclusive (a
//!   warning, or a failure with `inconclusive = "fail"`) otherwise. With one
//!   trial on a side there is no interval and the point values are compared.
use crate::bench::matches;
use crate::config::{BaselineThresholds, BenchConfig, GateSpec, Metric, OnInconclusive, Selector};
use crate::inference::{self, Interval, Judgement, TrialHistograms};
use crate::results::{CellParams, CellResult, RunResult};
use crate::stats::median;
use serde::{Deserialize, Serialize};

const DEFAULT_CONFIDENCE: f64 = 0.95;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateOutcome {
    pub name: String,
    pub metric: Metric,
    /// `pass`, `fail`, `inconclusive` or `skip`.
    pub verdict: String,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Every (pair of) cell(s) judged, with its value.
    pub checks: Vec<GateCheck>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateCheck {
    pub cell: String,
    /// The denominator cell (ratio gates).
    pub against: Option<String>,
    pub value: Option<f64>,
    pub pass: bool,
    /// With trials: the bootstrap interval of the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// `pass`, `fail` or `inconclusive` (interval straddles a bound).
    #[serde(default = "default_judgement")]
    pub judgement: Judgement,
}

fn default_judgement() -> Judgement {
    Judgement::Pass
}

/// Judges a value, or its interval when there is one.
fn judge_value(
    value: Option<f64>,
    interval: Option<&Interval>,
    min: Option<f64>,
    max: Option<f64>,
) -> Judgement {
    match (interval, value) {
        (Some(iv), _) => inference::judge_bounds(iv, min, max),
        (None, Some(v)) if within(v, min, max) => Judgement::Pass,
        _ => Judgement::Fail,
    }
}

fn gate_name(i: usize, g: &GateSpec) -> String {
    g.name
        .clone()
        .unwrap_or_else(|| match (&g.numerator, &g.denominator, &g.cells) {
            (Some(n), Some(d), _) => format!("{} {n} / {d}", g.metric.as_str()),
            (_, _, Some(c)) => format!("{} of {c}", g.metric.as_str()),
            _ => format!("gate[{i}]"),
        })
}

fn within(v: f64, min: Option<f64>, max: Option<f64>) -> bool {
    min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)
}

/// Two cells pair up when they agree on every dimension both have, except the
/// ones the denominator selects (those are what the ratio is about).
fn paired(n: &CellParams, d: &CellParams, free: &[&str]) -> bool {
    let same = |dim: &str, eq: bool| free.contains(&dim) || eq;
    fn opt<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
        a.is_none() || b.is_none() || a == b
    }
    same("target", n.target == d.target)
        && same("send_mode", opt(&n.send_mode, &d.send_mode))
        && same("iov_max", opt(&n.iov_max, &d.iov_max))
        && same("send_limit", opt(&n.send_limit, &d.send_limit))
        && same("pipeline", n.pipeline == d.pipeline)
        && same("connections", n.connections == d.connections)
        && same("rate", n.rate == d.rate)
        && same("mget_keys", n.mget_keys == d.mget_keys)
}

/// The median over trials of the per-trial ratio (paired by trial index),
/// with its bootstrap interval when there are at least two pairs.
fn paired_ratio(
    n: &CellResult,
    d: &CellResult,
    m: Metric,
    confidence: f64,
) -> (Option<f64>, Option<Interval>) {
    let mut v: Vec<f64> = n
        .trials
        .iter()
        .zip(&d.trials)
        .filter_map(|(a, b)| {
            let (a, b) = (a.metric(m)?, b.metric(m)?);
            (b > 0.0).then(|| a / b)
        })
        .collect();
    if v.is_empty() {
        let r = n
            .summary
            .metric(m)
            .zip(d.summary.metric(m))
            .and_then(|(a, b)| (b > 0.0).then(|| a / b));
        return (r, None);
    }
    let iv = (v.len() > 1)
        .then(|| inference::paired_median(&v, confidence))
        .flatten();
    (Some(median(&mut v)), iv)
}

/// Each trial's latency histogram, when every trial has one.
fn trial_histograms(c: &CellResult) -> Option<TrialHistograms> {
    c.trial_histograms()
        .filter(|h| !h.is_empty())
        .map(|h| TrialHistograms::new(&h))
}

/// The quantile (0..1) a latency metric reads, if it is one.
fn latency_quantile(m: Metric) -> Option<f64> {
    match m {
        Metric::LatencyUsP50 => Some(0.5),
        Metric::LatencyUsP90 => Some(0.9),
        Metric::LatencyUsP99 => Some(0.99),
        Metric::LatencyUsP999 => Some(0.999),
        _ => None,
    }
}

/// The interval of a cell's metric over its trials (None with one trial).
fn cell_interval(c: &CellResult, m: Metric, confidence: f64) -> Option<Interval> {
    if c.trials.len() < 2 {
        return None;
    }
    if let (Some(q), Some(th)) = (latency_quantile(m), trial_histograms(c)) {
        return th.quantile_interval(q, confidence).map(|iv| Interval {
            estimate: iv.estimate / 1000.0,
            low: iv.low / 1000.0,
            high: iv.high / 1000.0,
            ..iv
        });
    }
    let v: Vec<f64> = c.trials.iter().filter_map(|t| t.metric(m)).collect();
    (v.len() > 1)
        .then(|| inference::paired_median(&v, confidence))
        .flatten()
}

fn selects_skipped(cells: &[CellResult], s: &Selector) -> bool {
    cells
        .iter()
        .any(|c| c.skipped.is_some() && matches(&c.params, s))
}

/// Evaluates the config's gates on a run's cells.
pub fn evaluate(cfg: &BenchConfig, cells: &[CellResult]) -> Vec<GateOutcome> {
    let live: Vec<&CellResult> = cells.iter().filter(|c| c.skipped.is_none()).collect();
    cfg.gates
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let name = gate_name(i, g);
            let mut checks = Vec::new();
            let mut skipped_side = false;
            match (&g.numerator, &g.denominator, &g.cells) {
                (Some(ns), Some(ds), _) => {
                    skipped_side = selects_skipped(cells, ns) || selects_skipped(cells, ds);
                    let free = ds.dims();
                    for n in live.iter().filter(|c| matches(&c.params, ns)) {
                        for d in live.iter().filter(|c| {
                            c.id != n.id
                                && matches(&c.params, ds)
                                && paired(&n.params, &c.params, &free)
                        }) {
                            let conf = g.confidence.unwrap_or(DEFAULT_CONFIDENCE);
                            let (value, interval) = paired_ratio(n, d, g.metric, conf);
                            let judgement = judge_value(value, interval.as_ref(), g.min, g.max);
                            checks.push(GateCheck {
                                cell: n.id.clone(),
                                against: Some(d.id.clone()),
                                value,
                                pass: judgement != Judgement::Fail,
                                interval,
                                judgement,
                            });
                        }
                    }
                }
                (_, _, Some(cs)) => {
                    skipped_side = selects_skipped(cells, cs);
                    for c in live.iter().filter(|c| matches(&c.params, cs)) {
                        let value = c.summary.metric(g.metric);
                        let conf = g.confidence.unwrap_or(DEFAULT_CONFIDENCE);
                        let interval = value.and_then(|_| cell_interval(c, g.metric, conf));
                        let judgement = judge_value(value, interval.as_ref(), g.min, g.max);
                        checks.push(GateCheck {
                            cell: c.id.clone(),
                            against: None,
                            value,
                            pass: judgement != Judgement::Fail,
                            interval,
                            judgement,
                        });
                    }
                }
                _ => {}
            }
            let bound = match (g.min, g.max) {
                (Some(a), Some(b)) => format!("in [{a}, {b}]"),
                (Some(a), None) => format!(">= {a}"),
                (None, Some(b)) => format!("<= {b}"),
                (None, None) => String::new(),
            };
            let (verdict, detail) = if checks.is_empty() {
                if skipped_side {
                    ("skip", "its cells were skipped".to_string())
                } else {
                    ("fail", "matched no cells".to_string())
                }
            } else if let Some(bad) = checks.iter().find(|c| !c.pass) {
                let what = match &bad.against {
                    Some(d) => format!("{} / {}", bad.cell, d),
                    None => bad.cell.clone(),
                };
                let v = bad
                    .value
                    .map(|v| with_interval(v, bad.interval.as_ref()))
                    .unwrap_or_else(|| "n/a (not measured)".into());
                (
                    "fail",
                    format!("{what}: {} = {v}, needs {bound}", g.metric.as_str()),
                )
            } else {
                let vals: Vec<String> = checks
                    .iter()
                    .filter_map(|c| c.value.map(|v| with_interval(v, c.interval.as_ref())))
                    .collect();
                let verdict = if checks
                    .iter()
                    .any(|c| c.judgement == Judgement::Inconclusive)
                {
                    "inconclusive"
                } else {
                    "pass"
                };
                let why = if verdict == "inconclusive" {
                    " (an interval straddles the bound: more trials would tell)"
                } else {
                    ""
                };
                (
                    verdict,
                    format!("{} {bound}: {}{why}", g.metric.as_str(), vals.join(", ")),
                )
            };
            GateOutcome {
                name,
                metric: g.metric,
                verdict: verdict.into(),
                min: g.min,
                max: g.max,
                checks,
                detail,
            }
        })
        .collect()
}

/// `1.234 [1.200, 1.270]` (the interval when there is one).
fn with_interval(v: f64, iv: Option<&Interval>) -> String {
    match iv {
        Some(iv) => format!(
            "{v:.3} [{:.3}, {:.3}] ({:.0}% CI)",
            iv.low,
            iv.high,
            iv.confidence * 100.0
        ),
        None => format!("{v:.3}"),
    }
}

/// One baseline check of one cell and metric.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompareOutcome {
    pub cell: String,
    pub metric: Metric,
    pub base: Option<f64>,
    pub new: Option<f64>,
    /// new / base - 1.
    pub change: Option<f64>,
    /// Interval of the ratio new / base (trials > 1 on both sides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_interval: Option<Interval>,
    /// `pass`, `fail`, `inconclusive` (the interval contains the threshold), `missing`.
    pub verdict: String,
    pub detail: String,
}

/// The ratio new / base of one metric and its interval. Latency tails with
/// per-trial histograms on both sides use the merged histograms' quantile.
fn ratio_and_interval(
    b: &CellResult,
    n: &CellResult,
    metric: Metric,
    confidence: f64,
    paired: bool,
) -> Option<(f64, Option<Interval>, &'static str)> {
    let (bv, nv) = (b.summary.metric(metric)?, n.summary.metric(metric)?);
    let point = if bv > 0.0 { nv / bv } else { 1.0 };
    if b.trials.len() < 2 || n.trials.len() < 2 {
        return Some((point, None, "one trial: point values"));
    }
    if paired && b.trials.len() == n.trials.len() {
        // Drift between pairs cancels in each pair's own ratio.
        let ratios: Vec<f64> = b
            .trials
            .iter()
            .zip(&n.trials)
            .filter_map(|(bt, nt)| match (bt.metric(metric), nt.metric(metric)) {
                (Some(x), Some(y)) if x > 0.0 => Some(y / x),
                _ => None,
            })
            .collect();
        if ratios.len() >= 2 {
            let iv = inference::paired_median(&ratios, confidence)?;
            return Some((
                iv.estimate,
                Some(iv),
                "median of per-pair ratios, bootstrap over pairs",
            ));
        }
    }
    if let Some(q) = latency_quantile(metric) {
        if let (Some(bh), Some(nh)) = (trial_histograms(b), trial_histograms(n)) {
            let iv = inference::ratio_of_quantiles(&bh, &nh, q, confidence);
            if let Some(iv) = iv {
                return Some((
                    iv.estimate,
                    Some(iv),
                    "merged-histogram quantile, bootstrap over trials",
                ));
            }
        }
    }
    let values =
        |c: &CellResult| -> Vec<f64> { c.trials.iter().filter_map(|t| t.metric(metric)).collect() };
    match inference::ratio_of_medians(&values(b), &values(n), confidence) {
        Some(iv) => Some((
            iv.estimate,
            Some(iv),
            "ratio of medians, bootstrap over trials",
        )),
        None => Some((point, None, "no interval")),
    }
}

/// Compares `new` against `base` cell by cell.
pub fn compare(base: &RunResult, new: &RunResult, th: &BaselineThresholds) -> Vec<CompareOutcome> {
    let mut out = Vec::new();
    for b in base.cells.iter().filter(|c| c.skipped.is_none()) {
        let Some(n) = new.cell(&b.id).filter(|c| c.skipped.is_none()) else {
            out.push(CompareOutcome {
                cell: b.id.clone(),
                metric: Metric::OpsPerSec,
                base: Some(b.summary.ops_per_sec),
                new: None,
                change: None,
                ratio_interval: None,
                verdict: "fail".into(),
                detail: format!("{}: cell missing from the new result", b.id),
            });
            continue;
        };
        if th.paired && b.trials.len() != n.trials.len() {
            out.push(CompareOutcome {
                cell: b.id.clone(),
                metric: Metric::OpsPerSec,
                base: Some(b.summary.ops_per_sec),
                new: Some(n.summary.ops_per_sec),
                change: None,
                ratio_interval: None,
                verdict: "fail".into(),
                detail: format!(
                    "{}: paired comparison needs as many trials on both sides (base {}, new {})",
                    b.id,
                    b.trials.len(),
                    n.trials.len()
                ),
            });
            continue;
        }
        let mut checks = vec![
            (Metric::OpsPerSec, th.max_throughput_drop.0),
            (Metric::LatencyUsP99, th.max_p99_increase.0),
        ];
        if let Some(f) = th.max_p999_increase {
            checks.push((Metric::LatencyUsP999, f.0));
        }
        for (metric, limit) in checks {
            let (Some(bv), Some(nv)) = (b.summary.metric(metric), n.summary.metric(metric)) else {
                continue;
            };
            let Some((ratio, iv, method)) =
                ratio_and_interval(b, n, metric, th.confidence, th.paired)
            else {
                continue;
            };
            let higher = metric.higher_is_better();
            let allowed = if higher { 1.0 - limit } else { 1.0 + limit };
            let judgement = match &iv {
                Some(iv) => inference::judge(iv, allowed, higher),
                None if (higher && ratio < allowed) || (!higher && ratio > allowed) => {
                    Judgement::Fail
                }
                None => Judgement::Pass,
            };
            let verdict = match (judgement, th.inconclusive) {
                (Judgement::Inconclusive, OnInconclusive::Fail) => "fail",
                (j, _) => j.as_str(),
            };
            let dir = if higher { "drop" } else { "increase" };
            let ivtext = iv
                .map(|iv| {
                    format!(
                        ", ratio {:.3} [{:.3}, {:.3}] at {:.0}%",
                        iv.estimate,
                        iv.low,
                        iv.high,
                        iv.confidence * 100.0
                    )
                })
                .unwrap_or_default();
            let detail = format!(
                "{}: {} {:.1} -> {:.1} ({:+.1}%{ivtext}; allowed {dir} {:.0}%; {method}){}",
                b.id,
                metric.as_str(),
                bv,
                nv,
                (ratio - 1.0) * 100.0,
                limit * 100.0,
                if judgement == Judgement::Inconclusive {
                    ": inconclusive, the interval contains the threshold"
                } else {
                    ""
                }
            );
            out.push(CompareOutcome {
                cell: b.id.clone(),
                metric,
                base: Some(bv),
                new: Some(nv),
                change: Some(ratio - 1.0),
                ratio_interval: iv,
                verdict: verdict.into(),
                detail,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::from_toml_str;
    use crate::stats::CellStats;

    fn cell(
        id: &str,
        target: &str,
        mode: Option<crate::config::SendMode>,
        ops: &[f64],
        p99: f64,
    ) -> CellResult {
        let trials: Vec<CellStats> = ops
            .iter()
            .map(|&o| CellStats {
                ops_per_sec: o,
                requests: 1,
                latency_us: crate::stats::LatencyUs {
                    p99,
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect();
        CellResult::with_trials(id, target, mode, trials)
    }

    #[test]
    fn ratio_gate_pairs_cells() {
        use crate::config::SendMode::*;
        let cfg = from_toml_str(
            r#"
[[target]]
kind = "ncproxy"
[[target]]
kind = "nutcracker"
[[gate]]
metric = "ops_per_sec"
numerator = { send_mode = "batched" }
denominator = { send_mode = "per_message" }
min = 1.3
[[gate]]
metric = "ops_per_sec"
numerator = { target = "ncproxy", send_mode = "batched" }
denominator = { target = "nutcracker" }
min = 1.0
[[gate]]
metric = "latency_us_p99"
cells = { target = "nutcracker" }
max = 100
"#,
            "t",
        )
        .unwrap();
        let cells = vec![
            cell("a", "ncproxy", Some(Batched), &[140.0, 150.0], 50.0),
            cell("b", "ncproxy", Some(PerMessage), &[100.0, 100.0], 60.0),
            cell("c", "nutcracker", None, &[120.0, 160.0], 200.0),
        ];
        let g = evaluate(&cfg, &cells);
        assert_eq!(g[0].verdict, "pass", "{:?}", g[0]);
        assert_eq!(g[0].checks.len(), 1);
        assert_eq!(g[0].checks[0].against.as_deref(), Some("b"));
        // Paired per trial: 140/120 and 150/160 → median 1.052 ≥ 1.0, but
        // its interval [0.94, 1.17] contains the bound: inconclusive.
        assert_eq!(g[1].verdict, "inconclusive", "{:?}", g[1]);
        let iv = g[1].checks[0].interval.unwrap();
        assert!(iv.low < 1.0 && iv.high > 1.0, "{iv:?}");
        assert_eq!(g[2].verdict, "fail");
        assert!(g[2].detail.contains("needs <= 100"), "{}", g[2].detail);
    }

    #[test]
    fn paired_compare_cancels_drift_between_pairs() {
        // Each pair ran at a different background load (100..1000), the new
        // build is 20 % slower within every pair: unpaired, the spread hides
        // it; paired, the per-pair ratios are all 0.8.
        let base_ops: Vec<f64> = (1..=10).map(|k| 100.0 * k as f64).collect();
        let new_ops: Vec<f64> = base_ops.iter().map(|o| o * 0.8).collect();
        let mk =
            |ops: &[f64]| RunResult::with_cells("", vec![cell("x", "direct", None, ops, 10.0)]);
        let (base, new) = (mk(&base_ops), mk(&new_ops));
        let unpaired = BaselineThresholds::default();
        let ops = |c: Vec<CompareOutcome>| c.into_iter().find(|c| c.metric == Metric::OpsPerSec);
        assert_eq!(
            ops(compare(&base, &new, &unpaired)).unwrap().verdict,
            "inconclusive"
        );
        let paired = BaselineThresholds {
            paired: true,
            ..Default::default()
        };
        let c = ops(compare(&base, &new, &paired)).unwrap();
        assert_eq!(c.verdict, "fail", "{c:?}");
        let iv = c.ratio_interval.unwrap();
        assert!((iv.estimate - 0.8).abs() < 1e-9 && iv.high < 0.81, "{iv:?}");
        // Unequal trial counts cannot be paired.
        let short = mk(&new_ops[..9]);
        let c = compare(&base, &short, &paired);
        assert_eq!(c[0].verdict, "fail");
        assert!(c[0].detail.contains("base 10, new 9"), "{}", c[0].detail);
    }

    #[test]
    fn compare_thresholds_and_noise() {
        let th = BaselineThresholds::default();
        let mk = |ops: &[f64], p99: f64| {
            RunResult::with_cells("", vec![cell("x", "direct", None, ops, p99)])
        };
        let base = mk(&[100.0], 10.0);
        assert!(compare(&base, &base, &th)
            .iter()
            .all(|c| c.verdict == "pass"));
        let slower = mk(&[80.0], 10.0);
        assert!(compare(&base, &slower, &th)
            .iter()
            .any(|c| c.verdict == "fail"));
        let laggy = mk(&[100.0], 20.0);
        let c = compare(&base, &laggy, &th);
        assert_eq!(
            c.iter()
                .find(|c| c.metric == Metric::LatencyUsP99)
                .unwrap()
                .verdict,
            "fail"
        );
        // Wide trial spread: past the threshold, yet inconclusive.
        let base3 = mk(&[60.0, 100.0, 140.0], 10.0);
        let new3 = mk(&[50.0, 80.0, 130.0], 10.0);
        let c = compare(&base3, &new3, &th);
        assert_eq!(c[0].verdict, "inconclusive", "{:?}", c[0]);
        assert!(c[0].ratio_interval.is_some());
        let strict = BaselineThresholds {
            inconclusive: OnInconclusive::Fail,
            ..BaselineThresholds::default()
        };
        assert_eq!(compare(&base3, &new3, &strict)[0].verdict, "fail");
        // Tight trials, a 20 % drop: a failure with an interval below 0.9.
        let base5 = mk(&[100.0, 101.0, 99.0, 100.5, 99.5], 10.0);
        let new5 = mk(&[80.0, 81.0, 79.0, 80.5, 79.5], 10.0);
        let c = compare(&base5, &new5, &th);
        assert_eq!(c[0].verdict, "fail", "{:?}", c[0]);
        assert!(c[0].ratio_interval.unwrap().high < 0.9);
        // The same build: a pass, with an interval around 1.
        let again = mk(&[99.0, 100.0, 101.0, 100.2, 99.8], 10.0);
        let c = compare(&base5, &again, &th);
        assert!(c.iter().all(|c| c.verdict == "pass"), "{c:?}");
    }
}
