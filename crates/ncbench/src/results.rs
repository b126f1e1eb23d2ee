//! The result schema: one versioned JSON document per run (or capacity run),
//! read back by `ncbench compare` and `--baseline`.
//!
//! Field names carry their units (`latency_us`, `ops_per_sec`). The config is
//! stored as written (as JSON) so a result explains itself; the environment
//! fingerprint lets a gate tell like-for-like baselines from others.
use crate::capacity::CapacityResult;
use crate::config::{SendLimit, SendMode};
use crate::env::Environment;
use crate::gate::{CompareOutcome, GateOutcome};
use crate::loader::VerifyResult;
use crate::stats::CellStats;
use serde::{Deserialize, Serialize};

/// Schema identifier; bump the number on incompatible changes.
pub const SCHEMA: &str = "ncbench.result/v1";

/// The parameters that identify a cell.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellParams {
    /// Target label.
    pub target: String,
    /// Target kind (`ncproxy`, `nutcracker`, `direct`, ...).
    pub kind: String,
    pub send_mode: Option<SendMode>,
    pub iov_max: Option<u32>,
    pub send_limit: Option<SendLimit>,
    pub pipeline: u32,
    pub connections: u32,
    pub rate: Option<f64>,
    /// Keys per multi-get, only when `sweep.mget_keys` varies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mget_keys: Option<u32>,
}

/// Ratios of a cell to the reference cell.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct Ratios {
    pub ops_per_sec: f64,
    pub latency_us_p99: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellResult {
    /// Stable id, e.g. `ncproxy/batched/iov128/limnone/p16/c50`.
    pub id: String,
    pub params: CellParams,
    /// How the target ran (in-process, binary path and pid, version).
    pub how: String,
    /// Set when the cell did not run (e.g. nutcracker not installed).
    pub skipped: Option<String>,
    /// Median over trials (failure counts summed).
    pub summary: CellStats,
    pub trials: Vec<CellStats>,
    pub ratio_to_reference: Option<Ratios>,
    /// All trials' latency histogram (ns), HDR V2 + deflate, base64: mergeable.
    pub latency_hdr: Option<String>,
}

impl CellResult {
    /// Each trial's latency histogram, when every trial has one.
    pub fn trial_histograms(&self) -> Option<Vec<hdrhistogram::Histogram<u64>>> {
        self.trials
            .iter()
            .map(|t| {
                t.latency_hdr
                    .as_deref()
                    .and_then(crate::export::decode_histogram)
            })
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackendInfo {
    pub kind: String,
    pub count: usize,
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Verdict {
    pub pass: bool,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
    /// Things worth knowing that did not fail the run.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunResult {
    pub schema: String,
    /// `run` or `capacity`.
    pub kind: String,
    pub ncbench_version: String,
    /// Unix time (seconds) when the run started.
    pub started_at: u64,
    pub config_source: String,
    pub config_fingerprint: String,
    pub config: serde_json::Value,
    pub environment: Environment,
    pub backends: BackendInfo,
    pub cells: Vec<CellResult>,
    /// Id of the reference cell for `ratio_to_reference`.
    pub reference: Option<String>,
    pub gates: Vec<GateOutcome>,
    pub baseline: Option<BaselineReport>,
    pub verify: Option<VerifyResult>,
    pub capacity: Vec<CapacityResult>,
    /// Latency each proxy adds over direct, open-loop cells at the same rate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overhead: Vec<crate::overhead::OverheadRow>,
    pub notes: Vec<String>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BaselineReport {
    pub file: String,
    pub checks: Vec<CompareOutcome>,
}

impl RunResult {
    pub fn cell(&self, id: &str) -> Option<&CellResult> {
        self.cells.iter().find(|c| c.id == id)
    }

    /// Pools the trials of several results of one config into one result, as
    /// if they were one run's trials: how interleaved A/B runs (base, new,
    /// new, base, ...) become one base and one new result for `compare`.
    /// Gates, baseline checks, capacity and overhead rows are not carried
    /// over (they belonged to each run); integrity verdicts are.
    pub fn merge(parts: &[(String, RunResult)]) -> Result<RunResult, crate::error::BenchError> {
        let bad = |file: &str, problem: String| crate::error::BenchError::Result {
            file: file.to_string(),
            problem,
        };
        let Some((_, first)) = parts.first() else {
            return Err(bad("command line", "no results to merge".into()));
        };
        let mut out = first.clone();
        // Every part's reasons name their file, the first's too.
        out.verdict.reasons = Vec::new();
        out.gates.clear();
        out.baseline = None;
        out.capacity.clear();
        out.overhead.clear();
        for (i, (name, r)) in parts.iter().enumerate() {
            out.verdict
                .reasons
                .extend(r.verdict.reasons.iter().map(|x| format!("{name}: {x}")));
            if i == 0 {
                continue;
            }
            if r.config_fingerprint != first.config_fingerprint {
                return Err(bad(
                    name,
                    format!(
                        "config_fingerprint: {} differs from {}'s {}; only results of one config merge",
                        r.config_fingerprint, parts[0].0, first.config_fingerprint
                    ),
                ));
            }
            for c in &mut out.cells {
                let Some(other) = r.cell(&c.id) else {
                    return Err(bad(name, format!("cells: `{}` is missing", c.id)));
                };
                if c.skipped.is_none() && other.skipped.is_none() {
                    c.trials.extend(other.trials.iter().cloned());
                }
            }
            out.verdict.pass &= r.verdict.pass;
        }
        for c in out.cells.iter_mut().filter(|c| c.skipped.is_none()) {
            c.summary = crate::stats::combine_trials(&c.trials);
            c.latency_hdr = c
                .trial_histograms()
                .and_then(|h| crate::bench::merged(&h))
                .and_then(|h| crate::export::encode_histogram(&h));
            c.ratio_to_reference = None;
        }
        out.notes.push(format!(
            "merged from {} results: {}",
            parts.len(),
            parts
                .iter()
                .map(|p| p.0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(out)
    }

    /// Reads a result file; errors name the file (exit 2 territory).
    pub fn load(path: &std::path::Path) -> Result<RunResult, crate::error::BenchError> {
        let name = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| crate::error::BenchError::io(path, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| crate::error::BenchError::Result {
                file: name.clone(),
                problem: format!("not JSON: {e}"),
            })?;
        match v.get("schema").and_then(|s| s.as_str()) {
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(crate::error::BenchError::Result {
                    file: name,
                    problem: format!("schema: `{other}` is not {SCHEMA}"),
                })
            }
            None => {
                return Err(crate::error::BenchError::Result {
                    file: name,
                    problem: "schema: missing (not an ncbench result)".into(),
                })
            }
        }
        serde_json::from_value(v).map_err(|e| crate::error::BenchError::Result {
            file: name,
            problem: e.to_string(),
        })
    }
}

/// A cell of `target` (pipeline 16, 50 connections) holding `trials`, with
/// their summary, for tests of what reads results.
#[cfg(test)]
impl CellResult {
    pub(crate) fn with_trials(
        id: &str,
        target: &str,
        send_mode: Option<crate::config::SendMode>,
        trials: Vec<CellStats>,
    ) -> CellResult {
        CellResult {
            id: id.into(),
            params: CellParams {
                target: target.into(),
                kind: target.into(),
                send_mode,
                iov_max: send_mode.map(|_| 128),
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
}

/// A bare passing `run` result holding `cells`, for tests of what reads results.
#[cfg(test)]
impl RunResult {
    pub(crate) fn with_cells(fingerprint: &str, cells: Vec<CellResult>) -> RunResult {
        RunResult {
            schema: SCHEMA.into(),
            kind: "run".into(),
            ncbench_version: String::new(),
            started_at: 0,
            config_source: String::new(),
            config_fingerprint: fingerprint.into(),
            config: serde_json::Value::Null,
            environment: Default::default(),
            backends: BackendInfo {
                kind: String::new(),
                count: 0,
                version: None,
            },
            cells,
            reference: None,
            gates: vec![],
            baseline: None,
            verify: None,
            capacity: vec![],
            overhead: vec![],
            notes: vec![],
            verdict: Verdict {
                pass: true,
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(fingerprint: &str, cell_ops: &[(&str, &[f64])]) -> RunResult {
        let cells = cell_ops
            .iter()
            .map(|(id, ops)| {
                let trials: Vec<CellStats> = ops
                    .iter()
                    .map(|&o| CellStats {
                        ops_per_sec: o,
                        requests: 10,
                        ..Default::default()
                    })
                    .collect();
                CellResult::with_trials(id, "direct", None, trials)
            })
            .collect();
        RunResult::with_cells(fingerprint, cells)
    }

    #[test]
    fn merge_pools_trials_per_cell_and_recomputes_the_summary() {
        let a = result("f", &[("x", &[100.0, 300.0]), ("y", &[5.0])]);
        let mut b = result("f", &[("x", &[200.0]), ("y", &[7.0, 9.0])]);
        b.verdict.pass = false;
        b.verdict.reasons.push("2 mismatches".into());
        let m = RunResult::merge(&[("a.json".into(), a), ("b.json".into(), b)]).unwrap();
        let x = m.cell("x").unwrap();
        assert_eq!(x.trials.len(), 3);
        assert_eq!(x.summary.ops_per_sec, 200.0);
        assert_eq!(m.cell("y").unwrap().summary.ops_per_sec, 7.0);
        assert!(!m.verdict.pass);
        assert_eq!(m.verdict.reasons, vec!["b.json: 2 mismatches".to_string()]);
        assert!(m.notes.last().unwrap().contains("a.json, b.json"));
    }

    #[test]
    fn merge_refuses_other_configs_and_missing_cells_naming_the_file() {
        let a = result("f", &[("x", &[1.0])]);
        let other = result("g", &[("x", &[1.0])]);
        let e = RunResult::merge(&[("a.json".into(), a.clone()), ("o.json".into(), other)])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("o.json: config_fingerprint:"), "{e}");
        let short = result("f", &[("z", &[1.0])]);
        let e = RunResult::merge(&[("a.json".into(), a), ("s.json".into(), short)])
            .unwrap_err()
            .to_string();
        assert_eq!(e, "s.json: cells: `x` is missing");
    }
}
