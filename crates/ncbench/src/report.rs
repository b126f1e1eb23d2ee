//! Human output: the comparison table on stdout, gate and verdict lines, and
//! the comparison printed by `ncbench compare`.
use crate::gate::CompareOutcome;
use crate::results::RunResult;
use std::fmt::Write as _;

/// Microseconds in a short human unit: `87.3us`, `1.24ms`, `2.10s`.
pub fn fmt_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.1}us")
    }
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    match v {
        Some(v) => format!("{v:.prec$}"),
        None => "n/a".into(),
    }
}

fn fmt_ops(v: f64) -> String {
    format!("{v:.0}")
}

/// The table for a run (or the summary of a capacity run).
pub fn table(r: &RunResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ncbench {} ({}): {} cells, backends {} x {}",
        r.kind,
        r.config_source,
        r.cells.len(),
        r.backends.count,
        r.backends.version.as_deref().unwrap_or(&r.backends.kind),
    );
    if let Some(p) = r
        .environment
        .placement
        .as_ref()
        .filter(|p| p.is_configured())
    {
        let _ = writeln!(s, "placement: {}", p.summary());
    }
    if r.backends.kind == "embedded" {
        let _ = writeln!(s, "note: embedded in-process RESP backend (no redis-server on PATH): numbers are not Redis numbers");
    }
    if r.environment.debug_build {
        let _ = writeln!(
            s,
            "note: debug build of ncbench: build with --release for real numbers"
        );
    }
    let w = r.cells.iter().map(|c| c.id.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        s,
        "{:<w$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5} {:>5} {:>8} {:>8} {:>8} {:>6}",
        "cell",
        "ops/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "err",
        "mism",
        "lost",
        "sys/req",
        "req/sys",
        "B/sys",
        "x ref"
    );
    for c in &r.cells {
        if let Some(why) = &c.skipped {
            let _ = writeln!(s, "{:<w$} skipped: {why}", c.id);
            continue;
        }
        let m = &c.summary;
        let l = &m.latency_us;
        let p = m.proxy.as_ref();
        let _ = writeln!(
            s,
            "{:<w$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5} {:>5} {:>8} {:>8} {:>8} {:>6}",
            c.id,
            fmt_ops(m.ops_per_sec),
            fmt_us(l.p50),
            fmt_us(l.p90),
            fmt_us(l.p99),
            fmt_us(l.p999),
            fmt_us(l.max),
            m.errors,
            m.mismatches,
            m.lost,
            fmt_opt(p.and_then(|p| p.syscalls_per_request), 3),
            fmt_opt(p.and_then(|p| p.requests_per_syscall), 1),
            fmt_opt(p.and_then(|p| p.bytes_per_syscall), 0),
            c.ratio_to_reference
                .map(|x| format!("{:.2}", x.ops_per_sec))
                .unwrap_or_else(|| "-".into()),
        );
    }
    if let Some(rf) = r.reference.as_ref().filter(|_| r.cells.len() > 1) {
        let _ = writeln!(s, "x ref = ops/s relative to {rf}; sys/req etc. from the proxy's send counters (n/a where the target has none)");
    }
    for cap in &r.capacity {
        let _ = writeln!(
            s,
            "\ncapacity of {} at p{} <= {}: {}",
            cap.cell,
            cap.percentile,
            fmt_us(cap.target_latency_us),
            match (cap.max_rate_holding, cap.max_ops_holding) {
                (Some(rate), Some(ops)) =>
                    format!("{rate:.0}/s scheduled ({ops:.0} ops/s achieved)"),
                _ => "no rate held".into(),
            }
        );
        if let (Some(kr), Some(kl)) = (cap.knee_rate, cap.knee_latency_us) {
            let _ = writeln!(s, "knee: {kr:.0} ops/s at {}", fmt_us(kl));
        }
        let _ = writeln!(
            s,
            "{:>12} {:>12} {:>10} {:>6}  note",
            "rate",
            "ops/s",
            format!("p{}", cap.percentile),
            "holds"
        );
        for st in &cap.steps {
            let _ = writeln!(
                s,
                "{:>12.0} {:>12.0} {:>10} {:>6}  {}",
                st.rate,
                st.ops_per_sec,
                fmt_us(st.latency_us_at_percentile),
                if st.holds { "yes" } else { "no" },
                st.why_not.clone().unwrap_or_default()
            );
        }
        let _ = writeln!(s, "stopped: {}", cap.stopped);
    }
    if let Some(v) = &r.verify {
        // Results store the config as JSON; memcache runs carry workload.protocol.
        let client = match r.config["workload"]["protocol"].as_str() {
            Some("memcache") => "memcached client",
            _ => "redis crate",
        };
        let _ = writeln!(
            s,
            "data check ({client}): {} keys read back, {} bad, {} missing",
            v.checked, v.bad, v.missing
        );
    }
    for g in &r.gates {
        let _ = writeln!(
            s,
            "gate {}: {} ({})",
            g.verdict.to_uppercase(),
            g.name,
            g.detail
        );
    }
    if let Some(b) = &r.baseline {
        let _ = writeln!(s, "baseline {}:", b.file);
        s.push_str(&compare_lines(&b.checks));
    }
    for wn in &r.verdict.warnings {
        let _ = writeln!(s, "warning: {wn}");
    }
    if r.verdict.pass {
        let _ = writeln!(s, "verdict: PASS");
    } else {
        let _ = writeln!(s, "verdict: FAIL");
        for why in &r.verdict.reasons {
            let _ = writeln!(s, "  - {why}");
        }
    }
    s
}

/// One line per baseline check.
pub fn compare_lines(checks: &[CompareOutcome]) -> String {
    let mut s = String::new();
    for c in checks {
        let _ = writeln!(s, "  {:<5} {}", c.verdict.to_uppercase(), c.detail);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(fmt_us(87.34), "87.3us");
        assert_eq!(fmt_us(1240.0), "1.24ms");
        assert_eq!(fmt_us(2_100_000.0), "2.10s");
    }
}
