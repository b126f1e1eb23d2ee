//! Gates: pass/fail rules on results.
//!
//! - Ratio gates compare cells of the same run (`batched / per_message ≥ 1.3`,
//!   `ncproxy / nutcracker ≥ 1.0`). Both sides see the same machine at nearly the
//!   same time, so these hold on noisy CI machines where absolute numbers do not.
//!   With trials, ratios are taken per trial (paired) and the median is judged.
//! - Bound gates put a min/max on a metric of the selected cells.
//! - Baseline comparison (`ncbench compare`, `run --baseline`) matches cells by
//!   id and applies throughput-drop and p99-increase thresholds. With several
//!   trials on both sides it is noise-aware: a change past the threshold whose
//!   trial ranges still overlap is reported as `noisy` (a warning), not a failure.
use crate::bench::matches;
use crate::config::{BaselineThresholds, BenchConfig, GateSpec, Metric, Selector};
use crate::results::{CellParams, CellResult, RunResult};
use crate::stats::{median, CellStats};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GateOutcome {
    pub name: String,
    pub metric: Metric,
    /// `pass`, `fail` or `skip`.
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

/// The median over trials of the per-trial ratio (paired by trial index).
fn paired_ratio(n: &CellResult, d: &CellResult, m: Metric) -> Option<f64> {
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
        let (a, b) = (n.summary.metric(m)?, d.summary.metric(m)?);
        return (b > 0.0).then(|| a / b);
    }
    Some(median(&mut v))
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
                            let value = paired_ratio(n, d, g.metric);
                            checks.push(GateCheck {
                                cell: n.id.clone(),
                                against: Some(d.id.clone()),
                                value,
                                pass: value.is_some_and(|v| within(v, g.min, g.max)),
                            });
                        }
                    }
                }
                (_, _, Some(cs)) => {
                    skipped_side = selects_skipped(cells, cs);
                    for c in live.iter().filter(|c| matches(&c.params, cs)) {
                        let value = c.summary.metric(g.metric);
                        checks.push(GateCheck {
                            cell: c.id.clone(),
                            against: None,
                            value,
                            pass: value.is_some_and(|v| within(v, g.min, g.max)),
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
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "n/a (not measured)".into());
                (
                    "fail",
                    format!("{what}: {} = {v}, needs {bound}", g.metric.as_str()),
                )
            } else {
                let vals: Vec<String> = checks
                    .iter()
                    .filter_map(|c| c.value.map(|v| format!("{v:.3}")))
                    .collect();
                (
                    "pass",
                    format!("{} {bound}: {}", g.metric.as_str(), vals.join(", ")),
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

/// One baseline check of one cell and metric.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CompareOutcome {
    pub cell: String,
    pub metric: Metric,
    pub base: Option<f64>,
    pub new: Option<f64>,
    /// new / base - 1.
    pub change: Option<f64>,
    /// `pass`, `fail`, `noisy` (past the threshold but within trial noise), `missing`.
    pub verdict: String,
    pub detail: String,
}

fn range(trials: &[CellStats], m: Metric) -> Option<(f64, f64)> {
    let v: Vec<f64> = trials.iter().filter_map(|t| t.metric(m)).collect();
    if v.is_empty() {
        return None;
    }
    Some((
        v.iter().copied().fold(f64::INFINITY, f64::min),
        v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    ))
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
                verdict: "fail".into(),
                detail: format!("{}: cell missing from the new result", b.id),
            });
            continue;
        };
        for (metric, limit) in [
            (Metric::OpsPerSec, th.max_throughput_drop.0),
            (Metric::LatencyUsP99, th.max_p99_increase.0),
        ] {
            let (Some(bv), Some(nv)) = (b.summary.metric(metric), n.summary.metric(metric)) else {
                continue;
            };
            let change = if bv > 0.0 { nv / bv - 1.0 } else { 0.0 };
            let higher = metric.higher_is_better();
            let worse = if higher {
                change < -limit
            } else {
                change > limit
            };
            // Noise: with several trials on both sides, a regression must clear
            // the other side's whole range, not just its median.
            let overlapping = match (range(&b.trials, metric), range(&n.trials, metric)) {
                (Some((bmin, bmax)), Some((nmin, nmax)))
                    if b.trials.len() > 1 && n.trials.len() > 1 =>
                {
                    if higher {
                        nmax >= bmin * (1.0 - limit)
                    } else {
                        nmin <= bmax * (1.0 + limit)
                    }
                }
                _ => false,
            };
            let verdict = match (worse, overlapping) {
                (false, _) => "pass",
                (true, true) => "noisy",
                (true, false) => "fail",
            };
            let dir = if higher { "drop" } else { "increase" };
            let detail = format!(
                "{}: {} {:.1} -> {:.1} ({:+.1}%, allowed {dir} {:.0}%){}",
                b.id,
                metric.as_str(),
                bv,
                nv,
                change * 100.0,
                limit * 100.0,
                if verdict == "noisy" {
                    ", within trial noise"
                } else {
                    ""
                }
            );
            out.push(CompareOutcome {
                cell: b.id.clone(),
                metric,
                base: Some(bv),
                new: Some(nv),
                change: Some(change),
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
        CellResult {
            id: id.into(),
            params: CellParams {
                target: target.into(),
                kind: target.into(),
                send_mode: mode,
                iov_max: mode.map(|_| 128),
                send_limit: None,
                pipeline: 16,
                connections: 50,
                rate: None,
                mget_keys: None,
            },
            how: String::new(),
            skipped: None,
            summary: crate::stats::combine_trials(&trials),
            trials,
            ratio_to_reference: None,
            latency_hdr: None,
        }
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
        // Paired per trial: 140/120 and 150/160 → median 1.052 ≥ 1.0.
        assert_eq!(g[1].verdict, "pass", "{:?}", g[1]);
        assert_eq!(g[2].verdict, "fail");
        assert!(g[2].detail.contains("needs <= 100"), "{}", g[2].detail);
    }

    #[test]
    fn compare_thresholds_and_noise() {
        let th = BaselineThresholds::default();
        let mk = |ops: &[f64], p99: f64| RunResult {
            schema: crate::results::SCHEMA.into(),
            kind: "run".into(),
            ncbench_version: String::new(),
            started_at: 0,
            config_source: String::new(),
            config_fingerprint: String::new(),
            config: serde_json::Value::Null,
            environment: Default::default(),
            backends: crate::results::BackendInfo {
                kind: String::new(),
                count: 0,
                version: None,
            },
            cells: vec![cell("x", "direct", None, ops, p99)],
            reference: None,
            gates: vec![],
            baseline: None,
            verify: None,
            capacity: vec![],
            notes: vec![],
            verdict: Default::default(),
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
        // Wide trial ranges that overlap: past the threshold, yet noisy.
        let base3 = mk(&[60.0, 100.0, 140.0], 10.0);
        let new3 = mk(&[50.0, 80.0, 130.0], 10.0);
        let c = compare(&base3, &new3, &th);
        assert_eq!(c[0].verdict, "noisy", "{:?}", c[0]);
    }
}
