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
