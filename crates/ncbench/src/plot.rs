//! The visual report: self-contained SVG charts (no scripts, no external
//! assets), either as one `.svg` file or inside an `.html` page with the table.
//!
//! Sweeps get throughput and tail-latency bars per cell and the time series
//! (ops/s, p99, errors, syscalls per interval, events marked); capacity runs
//! get every target's latency-versus-throughput curve on one chart (log
//! latency, intervals as bars, the target line, knees marked). Axes tick in
//! 1-2-5 steps.
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

/// Tick values for a linear axis from 0 to at least `max`, in 1-2-5 steps.
pub fn ticks_linear(max: f64) -> Vec<f64> {
    let max = if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let n = (max / step).ceil() as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// Tick values for a log axis covering [min, max]: 1, 2, 5 × 10^k, from
/// the last one at or below `min` to the first one at or above `max`.
pub fn ticks_log(min: f64, max: f64) -> Vec<f64> {
    let min = if min > 0.0 && min.is_finite() {
        min
    } else {
        1.0
    };
    let max = if max.is_finite() { max.max(min) } else { min };
    let (lo, hi) = (
        min.log10().floor() as i32 - 1,
        max.log10().ceil() as i32 + 1,
    );
    let all: Vec<f64> = (lo..=hi)
        .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
        .collect();
    let eps = 1e-9;
    let first = all
        .iter()
        .rev()
        .find(|t| **t <= min * (1.0 + eps))
        .copied()
        .unwrap_or(min);
    let last = all
        .iter()
        .find(|t| **t >= max * (1.0 - eps))
        .copied()
        .unwrap_or(max);
    let v: Vec<f64> = all
        .into_iter()
        .filter(|t| *t >= first && *t <= last)
        .collect();
    if v.len() < 2 {
        vec![first, first * 10.0]
    } else {
        v
    }
}

/// `20k`, `1.5M`, `500`: counts on axes.
pub fn fmt_count(v: f64) -> String {
    let a = v.abs();
    let (x, unit) = if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let t = format!("{x:.2}");
    let t = t.trim_end_matches('0').trim_end_matches('.');
    format!("{t}{unit}")
}

/// A point of a chart: x, y and an optional (low, high) error bar.
pub type Point = (f64, f64, Option<(f64, f64)>);

/// One series of an [`xy_chart`].
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

/// Options of an [`xy_chart`].
#[derive(Default)]
pub struct ChartOpts {
    pub log_y: bool,
    /// Horizontal target line.
    pub hline: Option<f64>,
    /// Vertical markers (x, label): events on a timeline.
    pub vlines: Vec<(f64, String)>,
    /// Circled points (x, y, label): knees.
    pub marks: Vec<(f64, f64, String)>,
    /// y values are microseconds (format with units) rather than counts.
    pub y_is_us: bool,
}

/// Several series on shared axes with 1-2-5 ticks (linear x; linear or log y).
pub fn xy_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    o: &ChartOpts,
) -> String {
    let h = 400.0;
    let (l, r, t, b) = (80.0, 30.0, 40.0, 50.0);
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let xmax_data = pts()
        .map(|p| p.0)
        .chain(o.vlines.iter().map(|v| v.0))
        .fold(0.0, f64::max);
    let xt = ticks_linear(xmax_data);
    let xmax = *xt.last().unwrap_or(&1.0);
    let ys = || {
        pts()
            .flat_map(|p| [Some(p.1), p.2.map(|b| b.0), p.2.map(|b| b.1)])
            .flatten()
            .chain(o.hline)
    };
    let ymax_data = ys().fold(0.0, f64::max);
    let yt = if o.log_y {
        let ymin = ys().filter(|y| *y > 0.0).fold(f64::INFINITY, f64::min);
        ticks_log(if ymin.is_finite() { ymin } else { 1.0 }, ymax_data)
    } else {
        ticks_linear(ymax_data)
    };
    let (y0, y1) = (yt[0], *yt.last().unwrap_or(&1.0));
    let sx = |x: f64| l + (W - l - r) * x / xmax;
    let sy = |y: f64| {
        let f = if o.log_y {
            (y.max(y0).log10() - y0.log10()) / (y1.log10() - y0.log10()).max(1e-12)
        } else {
            (y - y0) / (y1 - y0).max(1e-12)
        };
        h - b - (h - t - b) * f.clamp(0.0, 1.0)
    };
    let yfmt = |v: f64| {
        if o.y_is_us {
            fmt_us(v)
        } else {
            fmt_count(v)
        }
    };
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        s,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    for &x in &xt {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="{t}" x2="{0:.1}" y2="{1}" stroke="#eee"/><text x="{0:.1}" y="{2}" text-anchor="middle">{3}</text>"##,
            sx(x),
            h - b,
            h - b + 16.0,
            esc(&fmt_count(x))
        );
    }
    for &y in &yt {
        let _ = write!(
            s,
            r##"<line x1="{l}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#eee"/><text x="{2}" y="{3:.1}" text-anchor="end">{4}</text>"##,
            sy(y),
            W - r,
            l - 6.0,
            sy(y) + 4.0,
            esc(&yfmt(y))
        );
    }
    let _ = write!(
        s,
        r#"<line x1="{l}" y1="{0}" x2="{1}" y2="{0}" stroke="black"/><line x1="{l}" y1="{t}" x2="{l}" y2="{0}" stroke="black"/>"#,
        h - b,
        W - r
    );
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
    if let Some(y) = o.hline {
        let _ = write!(
            s,
            r##"<line x1="{l}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#e15759" stroke-dasharray="6 4"/><text x="{1}" y="{2:.1}" text-anchor="end" fill="#e15759">target {3}</text>"##,
            sy(y),
            W - r,
            sy(y) - 4.0,
            esc(&yfmt(y))
        );
    }
    for (x, label) in &o.vlines {
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="{t}" x2="{0:.1}" y2="{1}" stroke="#555" stroke-dasharray="3 3"/><text x="{2:.1}" y="{3}" fill="#555">{4}</text>"##,
            sx(*x),
            h - b,
            sx(*x) + 3.0,
            t + 12.0,
            esc(label)
        );
    }
    for (i, se) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let mut p = se.points.clone();
        p.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = p
            .iter()
            .map(|&(x, y, _)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for &(x, y, bar) in &p {
            if let Some((lo, hi)) = bar {
                let _ = write!(
                    s,
                    r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="{c}"/>"#,
                    sx(x),
                    sy(lo),
                    sy(hi)
                );
            }
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
            esc(&se.name)
        );
    }
    for (x, y, label) in &o.marks {
        let _ = write!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="7" fill="none" stroke="black" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            sx(*x),
            sy(*y),
            sx(*x) + 9.0,
            sy(*y) - 9.0,
            esc(label)
        );
    }
    s.push_str("</svg>");
    s
}

/// Time-series charts: ops/s, p99 and errors per interval, one line per
/// cell (its first trial), events as vertical markers.
fn timeline_charts(r: &RunResult) -> Vec<String> {
    let live: Vec<_> = r
        .cells
        .iter()
        .filter(|c| c.skipped.is_none() && c.trials.first().is_some_and(|t| !t.timeline.is_empty()))
        .collect();
    if live.is_empty() {
        return Vec::new();
    }
    let mut vlines: Vec<(f64, String)> = Vec::new();
    for c in &live {
        for e in &c.trials[0].events {
            if !vlines
                .iter()
                .any(|v| v.1 == e.event && (v.0 - e.ran_at_s).abs() < 0.05)
            {
                vlines.push((e.ran_at_s, e.event.clone()));
            }
        }
    }
    let series = |f: &dyn Fn(&crate::timeline::IntervalPoint) -> f64| -> Vec<Series> {
        live.iter()
            .map(|c| Series {
                name: c.id.clone(),
                points: c.trials[0]
                    .timeline
                    .iter()
                    .map(|p| (p.t_s + p.duration_s / 2.0, f(p), None))
                    .collect(),
            })
            .collect()
    };
    let opts = |y_is_us: bool, log_y: bool| ChartOpts {
        vlines: vlines.clone(),
        y_is_us,
        log_y,
        ..ChartOpts::default()
    };
    let mut out = vec![
        xy_chart(
            "Throughput per interval",
            "seconds since the load started",
            "ops/s",
            &series(&|p| p.ops_per_sec),
            &opts(false, false),
        ),
        xy_chart(
            "p99 latency per interval",
            "seconds since the load started",
            "p99",
            &series(&|p| p.latency_us_p99),
            &opts(true, true),
        ),
    ];
    let errs = series(&|p| (p.errors + p.conn_errors + p.lost + p.mismatches) as f64);
    if errs.iter().any(|s| s.points.iter().any(|p| p.1 > 0.0)) {
        out.push(xy_chart(
            "Errors, connection errors, lost and mismatched replies per interval",
            "seconds since the load started",
            "count",
            &errs,
            &opts(false, false),
        ));
    }
    let sys = series(&|p| match p.proxy_syscalls {
        Some(n) if p.requests > 0 => n as f64 / p.requests as f64,
        _ => 0.0,
    });
    if live.iter().any(|c| {
        c.trials[0]
            .timeline
            .iter()
            .any(|p| p.proxy_syscalls.is_some())
    }) {
        out.push(xy_chart(
            "Proxy syscalls per request, per interval (/proc/<pid>/io)",
            "seconds since the load started",
            "syscalls / request",
            &sys,
            &ChartOpts {
                vlines: vlines.clone(),
                ..ChartOpts::default()
            },
        ));
    }
    out
}

/// Every capacity search on one chart: the percentile (with its interval)
/// over achieved ops/s, log latency axis, target line, knees marked.
fn capacity_chart(r: &RunResult) -> String {
    let pct = r.capacity.first().map(|c| c.percentile).unwrap_or(99.0);
    let series: Vec<Series> = r
        .capacity
        .iter()
        .map(|cap| Series {
            name: cap.cell.clone(),
            points: cap
                .steps
                .iter()
                .map(|s| {
                    (
                        s.ops_per_sec,
                        s.latency_us_at_percentile,
                        s.interval_us.map(|iv| (iv.low, iv.high)),
                    )
                })
                .collect(),
        })
        .collect();
    let marks = r
        .capacity
        .iter()
        .filter_map(|c| Some((c.knee_rate?, c.knee_latency_us?, "knee".to_string())))
        .collect();
    xy_chart(
        &format!("p{pct} latency vs throughput, every target"),
        "achieved ops/s",
        &format!("p{pct} latency (log)"),
        &series,
        &ChartOpts {
            log_y: true,
            hline: r.capacity.first().map(|c| c.target_latency_us),
            marks,
            y_is_us: true,
            ..ChartOpts::default()
        },
    )
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
        out.extend(timeline_charts(r));
    } else {
        out.push(capacity_chart(r));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_step_by_one_two_five() {
        assert_eq!(ticks_linear(9.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(
            ticks_linear(37_000.0),
            vec![0.0, 10_000.0, 20_000.0, 30_000.0, 40_000.0]
        );
        assert_eq!(ticks_linear(0.4).len(), 5);
        let t = ticks_log(130.0, 4_000.0);
        assert_eq!(t, vec![100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]);
        assert_eq!(fmt_count(20_000.0), "20k");
        assert_eq!(fmt_count(1_500_000.0), "1.5M");
        assert_eq!(fmt_count(500.0), "500");
    }
}
