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
        "{:<w$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5} {:>5} {:>8} {:>8} {:>8} {:>10} {:>6}",
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
        "send/req",
        "B/send",
        "be sys/req",
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
        let sc = m.syscalls.as_ref();
        let _ = writeln!(
            s,
            "{:<w$} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>5} {:>5} {:>5} {:>8} {:>8} {:>8} {:>10} {:>6}",
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
            fmt_opt(sc.and_then(|p| p.proxy_per_request), 3),
            fmt_opt(p.and_then(|p| p.syscalls_per_request), 3),
            fmt_opt(p.and_then(|p| p.bytes_per_syscall), 0),
            fmt_opt(sc.and_then(|p| p.backend_per_request), 3),
            c.ratio_to_reference
                .map(|x| format!("{:.2}", x.ops_per_sec))
                .unwrap_or_else(|| "-".into()),
        );
    }
    if let Some(rf) = r.reference.as_ref().filter(|_| r.cells.len() > 1) {
        let _ = writeln!(s, "x ref = ops/s relative to {rf}");
    }
    if r.cells
        .iter()
        .any(|c| c.summary.syscalls.is_some() || c.summary.proxy.is_some())
    {
        let _ = writeln!(s, "sys/req = the proxy process's read+write syscalls per request (/proc/<pid>/io); send/req, B/send = ncproxy's counted server-side sends per forwarded request and bytes per send; be sys/req = all backends' read+write syscalls per request");
    }
    s.push_str(&error_kinds(r));
    s.push_str(&shard_table(r));
    s.push_str(&overhead_table(r));
    s.push_str(&timelines(r));
    for cap in &r.capacity {
        let _ = writeln!(
            s,
            "\ncapacity of {} at p{} <= {}: {}",
            cap.cell,
            cap.percentile,
            fmt_us(cap.target_latency_us),
            match (cap.max_rate_holding, cap.max_ops_holding) {
                (Some(rate), Some(ops)) => format!(
                    "{:.0}/s, interval [{rate:.0}, {}] /s ({ops:.0} ops/s achieved at {rate:.0}/s)",
                    cap.capacity_estimate.unwrap_or(rate),
                    cap.min_rate_failing
                        .map(|f| format!("{f:.0}"))
                        .unwrap_or_else(|| "not reached".into())
                ),
                _ => "no rate held".into(),
            }
        );
        if cap.rounds.len() > 1 {
            for (i, r) in cap.rounds.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "round {}: {}, interval [{}, {}] /s",
                    i + 1,
                    r.capacity_estimate
                        .map(|e| format!("{e:.0}/s"))
                        .unwrap_or_else(|| "no rate held".into()),
                    r.max_rate_holding
                        .map(|g| format!("{g:.0}"))
                        .unwrap_or_else(|| "-".into()),
                    r.min_rate_failing
                        .map(|f| format!("{f:.0}"))
                        .unwrap_or_else(|| "not reached".into())
                );
            }
        }
        if let (Some(kr), Some(kl)) = (cap.knee_rate, cap.knee_latency_us) {
            let _ = writeln!(s, "knee: {kr:.0} ops/s at {}", fmt_us(kl));
        }
        let _ = writeln!(
            s,
            "{:>5} {:>12} {:>12} {:>10} {:>21} {:>4} {:>12}  note",
            "round",
            "rate",
            "ops/s",
            format!("p{}", cap.percentile),
            "interval",
            "reps",
            "verdict"
        );
        for st in &cap.steps {
            let iv = st
                .interval_us
                .map(|iv| format!("[{}, {}]", fmt_us(iv.low), fmt_us(iv.high)))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "{:>5} {:>12.0} {:>12.0} {:>10} {:>21} {:>4} {:>12}  {}",
                st.round + 1,
                st.rate,
                st.ops_per_sec,
                fmt_us(st.latency_us_at_percentile),
                iv,
                st.repeats,
                if st.verdict.is_empty() {
                    if st.holds {
                        "holds"
                    } else {
                        "fails"
                    }
                } else {
                    st.verdict.as_str()
                },
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

/// Error replies and connection failures by kind, per cell that had any.
fn error_kinds(r: &RunResult) -> String {
    let mut s = String::new();
    for c in r.cells.iter().filter(|c| !c.summary.error_kinds.is_empty()) {
        let kinds: Vec<String> = c
            .summary
            .error_kinds
            .iter()
            .map(|(k, n)| format!("{n} x {k}"))
            .collect();
        let _ = writeln!(s, "errors of {}: {}", c.id, kinds.join("; "));
    }
    s
}

/// Each backend's share of operations and bytes, and the hottest share.
pub fn shard_table(r: &RunResult) -> String {
    let mut s = String::new();
    let ran = || r.cells.iter().filter(|c| c.skipped.is_none());
    let cells: Vec<_> = ran().filter(|c| !c.summary.shards.is_empty()).collect();
    // A kill or restart makes a window's shares unknown (shards.rs); say so
    // rather than leave the cell out silently.
    let unknown: Vec<_> = ran()
        .filter(|c| c.summary.shards.is_empty() && c.trials.iter().any(|t| !t.events.is_empty()))
        .collect();
    if cells.is_empty() && unknown.is_empty() {
        return s;
    }
    let w = cells
        .iter()
        .chain(&unknown)
        .map(|c| c.id.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        s,
        "\nshard balance (each backend's own counters over the measured window: ops share / bytes share)"
    );
    for c in cells {
        let parts: Vec<String> = c
            .summary
            .shards
            .iter()
            .map(|sh| {
                format!(
                    "{} {:.1}%/{:.1}%",
                    sh.backend,
                    sh.ops_share * 100.0,
                    sh.bytes_share * 100.0
                )
            })
            .collect();
        let hottest = c.summary.hottest_shard_share().unwrap_or(0.0);
        let even = 1.0 / c.summary.shards.len() as f64;
        let _ = writeln!(
            s,
            "{:<w$}  hottest {:.1}% ({:.2}x even)  {}",
            c.id,
            hottest * 100.0,
            hottest / even,
            parts.join("  ")
        );
    }
    for c in unknown {
        let _ = writeln!(
            s,
            "{:<w$}  unknown: a backend was restarted or did not answer during the window",
            c.id
        );
    }
    s
}

/// The latency each proxy adds over direct at the same open-loop rate.
pub fn overhead_table(r: &RunResult) -> String {
    let mut s = String::new();
    if r.overhead.is_empty() {
        return s;
    }
    let w = r
        .overhead
        .iter()
        .map(|o| o.cell.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        s,
        "\nproxy overhead: latency added over direct at the same rate"
    );
    let _ = writeln!(
        s,
        "{:<w$} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "cell", "rate", "+p50", "+p90", "+p99", "+p99.9"
    );
    for o in &r.overhead {
        let a = &o.added_us;
        let _ = writeln!(
            s,
            "{:<w$} {:>10.0} {:>9} {:>9} {:>9} {:>9}",
            o.cell,
            o.rate,
            fmt_signed_us(a.p50),
            fmt_signed_us(a.p90),
            fmt_signed_us(a.p99),
            fmt_signed_us(a.p999)
        );
    }
    s
}

fn fmt_signed_us(us: f64) -> String {
    if us < 0.0 {
        format!("-{}", fmt_us(-us))
    } else {
        format!("+{}", fmt_us(us))
    }
}

/// The per-interval table of every cell whose trials ran events.
pub fn timelines(r: &RunResult) -> String {
    let mut s = String::new();
    for c in r.cells.iter().filter(|c| c.skipped.is_none()) {
        for (i, t) in c.trials.iter().enumerate() {
            if t.events.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\ntimeline of {} (trial {}):", c.id, i + 1);
            s.push_str(&timeline_table(&t.timeline));
            for e in &t.events {
                let _ = writeln!(
                    s,
                    "event at {:.2}s (ran {:.3}s, took {:.0}ms): {}: {}",
                    e.at_s, e.ran_at_s, e.took_ms, e.event, e.outcome
                );
            }
        }
    }
    s
}

/// One line per interval.
pub fn timeline_table(points: &[crate::timeline::IntervalPoint]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>7} {:>10} {:>9} {:>9} {:>9} {:>6} {:>5} {:>5} {:>5} {:>9} {:>9}  events",
        "t", "ops/s", "p50", "p99", "p99.9", "err", "conn", "lost", "mism", "proxy sys", "be sys"
    );
    for p in points {
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:>6.1}s{} {:>10.0} {:>9} {:>9} {:>9} {:>6} {:>5} {:>5} {:>5} {:>9} {:>9}  {}",
            p.t_s,
            if p.warmup { "w" } else { " " },
            p.ops_per_sec,
            fmt_us(p.latency_us_p50),
            fmt_us(p.latency_us_p99),
            fmt_us(p.latency_us_p999),
            p.errors,
            p.conn_errors,
            p.lost,
            p.mismatches,
            opt(p.proxy_syscalls),
            opt(p.backend_syscalls),
            p.events.join(", ")
        );
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
