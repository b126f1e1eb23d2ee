//! Proxy overhead: for open-loop cells at the same rate (and the same
//! pipeline, connections and multi-get size), the latency each proxy adds
//! over the backends reached directly, per percentile. Open loop makes the
//! comparison fair: both cells were offered the same schedule, and latency
//! counts from the intended send time, so queueing in the proxy shows.
use crate::results::CellResult;
use crate::stats::LatencyUs;
use serde::{Deserialize, Serialize};

/// One proxy cell against its direct twin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OverheadRow {
    pub cell: String,
    pub direct: String,
    pub rate: f64,
    /// Proxy latency minus direct latency, µs, per percentile.
    pub added_us: LatencyUs,
    /// Proxy latency over direct latency, per percentile.
    pub ratio: LatencyUs,
}

fn sub(a: &LatencyUs, b: &LatencyUs) -> LatencyUs {
    LatencyUs {
        p50: a.p50 - b.p50,
        p90: a.p90 - b.p90,
        p99: a.p99 - b.p99,
        p999: a.p999 - b.p999,
        max: a.max - b.max,
        mean: a.mean - b.mean,
    }
}

fn div(a: &LatencyUs, b: &LatencyUs) -> LatencyUs {
    let r = |x: f64, y: f64| if y > 0.0 { x / y } else { 0.0 };
    LatencyUs {
        p50: r(a.p50, b.p50),
        p90: r(a.p90, b.p90),
        p99: r(a.p99, b.p99),
        p999: r(a.p999, b.p999),
        max: r(a.max, b.max),
        mean: r(a.mean, b.mean),
    }
}

/// Rows for every open-loop non-direct cell that has a direct twin.
pub fn rows(cells: &[CellResult]) -> Vec<OverheadRow> {
    let live: Vec<&CellResult> = cells
        .iter()
        .filter(|c| c.skipped.is_none() && c.summary.requests > 0)
        .collect();
    let mut out = Vec::new();
    for c in live.iter().filter(|c| c.params.kind != "direct") {
        let Some(rate) = c.params.rate else { continue };
        let twin = live.iter().find(|d| {
            d.params.kind == "direct"
                && d.params.rate == Some(rate)
                && d.params.pipeline == c.params.pipeline
                && d.params.connections == c.params.connections
                && d.params.mget_keys == c.params.mget_keys
        });
        if let Some(d) = twin {
            out.push(OverheadRow {
                cell: c.id.clone(),
                direct: d.id.clone(),
                rate,
                added_us: sub(&c.summary.latency_us, &d.summary.latency_us),
                ratio: div(&c.summary.latency_us, &d.summary.latency_us),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::CellParams;
    use crate::stats::CellStats;

    fn cell(kind: &str, rate: Option<f64>, p99: f64) -> CellResult {
        let params = CellParams {
            target: kind.into(),
            kind: kind.into(),
            send_mode: None,
            iov_max: None,
            send_limit: None,
            pipeline: 1,
            connections: 10,
            rate,
            mget_keys: None,
        };
        CellResult {
            id: crate::bench::cell_id(&params),
            params,
            how: String::new(),
            skipped: None,
            summary: CellStats {
                requests: 10,
                latency_us: LatencyUs {
                    p50: p99 / 2.0,
                    p99,
                    ..LatencyUs::default()
                },
                ..CellStats::default()
            },
            trials: vec![],
            ratio_to_reference: None,
            latency_hdr: None,
        }
    }

    #[test]
    fn proxies_pair_with_direct_at_the_same_rate() {
        let cells = [
            cell("direct", Some(1000.0), 100.0),
            cell("direct", Some(2000.0), 120.0),
            cell("ncproxy", Some(1000.0), 150.0),
            cell("nutcracker", Some(2000.0), 200.0),
            cell("ncproxy", None, 99.0),
        ];
        let r = rows(&cells);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].direct, "direct/p1/c10/r1000");
        assert_eq!(r[0].added_us.p99, 50.0);
        assert_eq!(r[0].added_us.p50, 25.0);
        assert_eq!(r[1].added_us.p99, 80.0);
        assert!((r[1].ratio.p99 - 200.0 / 120.0).abs() < 1e-12);
    }
}
