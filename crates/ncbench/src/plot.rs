//! The visual report: self-contained SVG charts (no scripts, no external
//! assets), either as one `.svg` file or inside an `.html` page with the table.
//!
//! Sweeps get throughput and tail-latency bars per cell; capacity runs get the
//! latency-versus-throughput curve with the target line and the knee marked.
use crate::report::fmt_us;
use crate::results::RunResult;
use std::fmt::Write as _;

const W: f64 = 900.0;
const COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Horizontal bars, one per label. Returns an `<svg>` element of the given height.
pub fn bar_chart(
    title: &str,
    labels: &[String],
    values: &[f64],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let row = 22.0;
    let left = 330.0;
    let h = 40.0 + row * labels.len() as f64 + 10.0;
    let max = values.iter().copied().fold(0.0, f64::max).max(1e-9);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for (i, (l, &v)) in labels.iter().zip(values).enumerate() {
        let y = 34.0 + row * i as f64;
        let bw = (W - left - 110.0) * v / max;
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{left}" y="{}" width="{bw:.1}" height="{}" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            left - 6.0,
            y + 14.0,
            esc(l),
            y + 3.0,
            row - 6.0,
            COLORS[0],
            left + bw + 6.0,
            y + 14.0,
            esc(&fmt(v))
        );
    }
    s.push_str("</svg>");
    s
}

/// A line chart of several series over shared axes, with an optional
/// horizontal target line and a marked point.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    hline: Option<f64>,
    mark: Option<(f64, f64)>,
) -> String {
    let h = 380.0;
    let (l, r, t, b) = (80.0, 30.0, 40.0, 50.0);
    let pts = series.iter().flat_map(|s| s.1.iter().copied());
    let xmax = pts.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-9) * 1.05;
    let ymax = pts.map(|p| p.1).chain(hline).fold(0.0, f64::max).max(1e-9) * 1.1;
    let sx = |x: f64| l + (W - l - r) * x / xmax;
    let sy = |y: f64| h - b - (h - t - b) * y / ymax;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    // Axes and ticks.
    let _ = write!(
        s,
        r#"<line x1="{l}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{}" stroke="black"/>"#,
        h - b,
        W - r,
        h - b,
        h - b
    );
    for i in 0..=4 {
        let fx = xmax * i as f64 / 4.0;
        let fy = ymax * i as f64 / 4.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{:.0}</text><text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            sx(fx),
            h - b + 16.0,
            fx,
            l - 6.0,
            sy(fy) + 4.0,
            esc(&fmt_us(fy))
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        (l + W - r) / 2.0,
        h - 10.0,
        esc(x_label),
        (t + h - b) / 2.0,
        (t + h - b) / 2.0,
        esc(y_label)
    );
    if let Some(y) = hline {
        let _ = write!(
            s,
            r##"<line x1="{l}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#e15759" stroke-dasharray="6 4"/><text x="{}" y="{:.1}" text-anchor="end" fill="#e15759">target {}</text>"##,
            sy(y),
            W - r,
            sy(y),
            W - r,
            sy(y) - 4.0,
            esc(&fmt_us(y))
        );
    }
    for (i, (name, p)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let mut p = p.clone();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = p
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for &(x, y) in &p {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"/>"#,
                sx(x),
                sy(y)
            );
        }
        let _ = write!(
            s,
            r#"<rect x="{}" y="{}" width="10" height="10" fill="{c}"/><text x="{}" y="{}">{}</text>"#,
            l + 10.0,
            t + 4.0 + 16.0 * i as f64,
            l + 24.0,
            t + 13.0 + 16.0 * i as f64,
            esc(name)
        );
    }
    if let Some((x, y)) = mark {
        let _ = write!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="7" fill="none" stroke="black" stroke-width="2"/><text x="{:.1}" y="{:.1}">knee</text>"#,
            sx(x),
            sy(y),
            sx(x) + 9.0,
            sy(y) - 9.0
        );
    }
    s.push_str("</svg>");
    s
}

/// All charts for a result, each an `<svg>` element.
pub fn charts(r: &RunResult) -> Vec<String> {
    let mut out = Vec::new();
    let live: Vec<_> = r.cells.iter().filter(|c| c.skipped.is_none()).collect();
    if r.capacity.is_empty() {
        let labels: Vec<String> = live.iter().map(|c| c.id.clone()).collect();
        let ops: Vec<f64> = live.iter().map(|c| c.summary.ops_per_sec).collect();
        out.push(bar_chart("Throughput (ops/s)", &labels, &ops, &|v| {
            format!("{v:.0}")
        }));
        let p99: Vec<f64> = live.iter().map(|c| c.summary.latency_us.p99).collect();
        out.push(bar_chart("p99 latency", &labels, &p99, &|v| fmt_us(v)));
        let p999: Vec<f64> = live.iter().map(|c| c.summary.latency_us.p999).collect();
        out.push(bar_chart("p99.9 latency", &labels, &p999, &|v| fmt_us(v)));
        let spr: Vec<(String, f64)> = live
            .iter()
            .filter_map(|c| {
                c.summary
                    .proxy
                    .and_then(|p| p.syscalls_per_request)
                    .map(|v| (c.id.clone(), v))
            })
            .collect();
        if !spr.is_empty() {
            let (l, v): (Vec<String>, Vec<f64>) = spr.into_iter().unzip();
            out.push(bar_chart("Proxy send syscalls per request", &l, &v, &|v| {
                format!("{v:.3}")
            }));
        }
    } else {
        for cap in &r.capacity {
            let pts: Vec<(f64, f64)> = cap
                .steps
                .iter()
                .map(|s| (s.ops_per_sec, s.latency_us_at_percentile))
                .collect();
            out.push(line_chart(
                &format!("{}: p{} latency vs throughput", cap.cell, cap.percentile),
                "achieved ops/s",
                &format!("p{} latency", cap.percentile),
                &[(cap.cell.clone(), pts)],
                Some(cap.target_latency_us),
                cap.knee_rate.zip(cap.knee_latency_us),
            ));
        }
    }
    out
}

/// One SVG document stacking every chart.
pub fn svg(r: &RunResult) -> String {
    let charts = charts(r);
    let mut y = 0.0;
    let mut body = String::new();
    for c in &charts {
        let h: f64 = c
            .split("height=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(400.0);
        let _ = write!(body, r#"<g transform="translate(0 {y})">{c}</g>"#);
        y += h + 10.0;
    }
    format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{y}">{body}</svg>"#)
}

/// A standalone HTML page: the table, the verdict and the charts.
pub fn html(r: &RunResult) -> String {
    let mut s = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ncbench report</title>",
    );
    s.push_str("<style>body{font-family:sans-serif;margin:20px}pre{background:#f6f6f6;padding:10px;overflow-x:auto}</style></head><body>");
    let _ = write!(
        s,
        "<h1>ncbench {}: {}</h1>",
        esc(&r.kind),
        esc(&r.config_source)
    );
    let _ = write!(
        s,
        "<p>{} on {} ({} CPUs, kernel {}), backends: {} x {}</p>",
        esc(&r.environment.hostname),
        esc(&r.environment.cpu_model),
        r.environment.cpus,
        esc(&r.environment.kernel),
        r.backends.count,
        esc(&r.backends.kind)
    );
    let _ = write!(s, "<pre>{}</pre>", esc(&crate::report::table(r)));
    for c in charts(r) {
        s.push_str("<div>");
        s.push_str(&c);
        s.push_str("</div>");
    }
    s.push_str("</body></html>\n");
    s
}

/// Writes `.svg` or `.html` depending on the extension.
pub fn write(path: &std::path::Path, r: &RunResult) -> crate::error::Result<()> {
    let text = match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => svg(r),
        _ => html(r),
    };
    std::fs::write(path, text).map_err(|e| crate::error::BenchError::io(path, e))
}
