//! File outputs: the JSON result, CSV (one row per cell), HDR histogram logs
//! (one file per cell, one interval per trial or capacity step), and the
//! mergeable base64 histogram embedded in the JSON.
//!
//! Output files are created before the run starts (`create_outputs`), so a bad
//! path fails in a second, not after a ten-minute sweep.
use crate::error::{BenchError, Result};
use crate::results::RunResult;
use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::fmt::Write as _;
use std::path::Path;

/// Checks that every output path can be written, by creating the files now.
pub fn create_outputs(paths: &[&Path]) -> Result<()> {
    for p in paths {
        std::fs::File::create(p).map_err(|e| BenchError::io(p, e))?;
    }
    Ok(())
}

pub fn write_json(path: &Path, r: &RunResult) -> Result<()> {
    let text = serde_json::to_string_pretty(r).map_err(|e| BenchError::setup(e.to_string()))?;
    std::fs::write(path, text + "\n").map_err(|e| BenchError::io(path, e))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v}")).unwrap_or_default()
}

/// One row per cell, units in the header names.
pub fn csv(r: &RunResult) -> String {
    let mut s = String::from(
        "cell,target,kind,send_mode,iov_max,send_limit,pipeline,connections,rate,skipped,ops_per_sec,requests,duration_s,\
latency_us_p50,latency_us_p90,latency_us_p99,latency_us_p999,latency_us_max,errors,mismatches,lost,\
syscalls_per_request,requests_per_syscall,bytes_per_syscall,ratio_ops_to_reference,ratio_p99_to_reference,\
proxy_syscalls_per_request,proxy_send_syscalls_per_request,backend_syscalls_per_request,hottest_shard_share,conn_errors\n",
    );
    for c in &r.cells {
        let p = &c.params;
        let m = &c.summary;
        let px = m.proxy.as_ref();
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{:.1},{},{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            csv_field(&c.id),
            csv_field(&p.target),
            p.kind,
            p.send_mode.map(|m| m.to_string()).unwrap_or_default(),
            p.iov_max.map(|n| n.to_string()).unwrap_or_default(),
            p.send_limit.map(|l| l.to_string()).unwrap_or_default(),
            p.pipeline,
            p.connections,
            opt(p.rate),
            csv_field(c.skipped.as_deref().unwrap_or("")),
            m.ops_per_sec,
            m.requests,
            m.duration_s,
            m.latency_us.p50,
            m.latency_us.p90,
            m.latency_us.p99,
            m.latency_us.p999,
            m.latency_us.max,
            m.errors,
            m.mismatches,
            m.lost,
            opt(px.and_then(|p| p.syscalls_per_request)),
            opt(px.and_then(|p| p.requests_per_syscall)),
            opt(px.and_then(|p| p.bytes_per_syscall)),
            opt(c.ratio_to_reference.map(|x| x.ops_per_sec)),
            opt(c.ratio_to_reference.map(|x| x.latency_us_p99)),
            opt(m.syscalls.and_then(|x| x.proxy_per_request)),
            opt(m.syscalls.and_then(|x| x.proxy_writes_per_request)),
            opt(m.syscalls.and_then(|x| x.backend_per_request)),
            opt(m.hottest_shard_share()),
            m.conn_errors,
        );
    }
    s
}

/// The time series: one row per cell, trial and interval.
pub fn timeline_csv(r: &RunResult) -> String {
    let mut s = String::from(
        "cell,trial,t_s,duration_s,warmup,requests,ops_per_sec,latency_us_p50,latency_us_p99,latency_us_p999,\
errors,conn_errors,lost,mismatches,proxy_syscalls,proxy_send_syscalls,backend_syscalls,events\n",
    );
    let o = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    for c in &r.cells {
        for (i, t) in c.trials.iter().enumerate() {
            for p in &t.timeline {
                let _ = writeln!(
                    s,
                    "{},{},{:.3},{:.3},{},{},{:.1},{},{},{},{},{},{},{},{},{},{},{}",
                    csv_field(&c.id),
                    i + 1,
                    p.t_s,
                    p.duration_s,
                    p.warmup,
                    p.requests,
                    p.ops_per_sec,
                    p.latency_us_p50,
                    p.latency_us_p99,
                    p.latency_us_p999,
                    p.errors,
                    p.conn_errors,
                    p.lost,
                    p.mismatches,
                    o(p.proxy_syscalls),
                    o(p.proxy_send_syscalls),
                    o(p.backend_syscalls),
                    csv_field(&p.events.join("; "))
                );
            }
        }
    }
    s
}

/// Where the time series CSV goes: next to the cells' CSV (`run.csv` ->
/// `run.timeline.csv`).
pub fn timeline_csv_path(csv: &Path) -> std::path::PathBuf {
    let stem = csv
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ncbench".into());
    csv.with_file_name(format!("{stem}.timeline.csv"))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); None on a character outside the alphabet.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Reads back a histogram written by [`encode_histogram`].
pub fn decode_histogram(text: &str) -> Option<Histogram<u64>> {
    let bytes = base64_decode(text)?;
    hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .ok()
}

/// HDR V2 + deflate, base64: the form HdrHistogram tools read and merge.
pub fn encode_histogram(h: &Histogram<u64>) -> Option<String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut buf).ok()?;
    Some(base64(&buf))
}

/// File-name-safe version of a cell id.
pub fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes `<dir>/<cell>.hlog` per cell: an HdrHistogram interval log with one
/// interval per trial (or capacity step), values in nanoseconds.
pub fn write_hdr_logs(
    dir: &Path,
    r: &RunResult,
    hists: &[Vec<Histogram<u64>>],
) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::io(dir, e))?;
    let mut written = Vec::new();
    let start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.started_at);
    let ids: Vec<&String> = if r.capacity.is_empty() {
        r.cells.iter().map(|c| &c.id).collect()
    } else {
        r.capacity.iter().map(|c| &c.cell).collect()
    };
    for (id, hs) in ids.into_iter().zip(hists) {
        if hs.is_empty() {
            continue;
        }
        let path = dir.join(format!("{}.hlog", file_stem(id)));
        let mut file = Vec::new();
        {
            let mut ser = V2DeflateSerializer::new();
            let mut w = IntervalLogWriterBuilder::new()
                .add_comment(&format!(
                    "ncbench cell {id}; latency in ns from intended send time"
                ))
                .with_start_time(start)
                .with_max_value_divisor(1000.0)
                .begin_log_with(&mut file, &mut ser)
                .map_err(|e| BenchError::io(&path, e))?;
            for (i, h) in hs.iter().enumerate() {
                w.write_histogram(
                    h,
                    std::time::Duration::from_secs(i as u64),
                    std::time::Duration::from_secs(1),
                    hdrhistogram::serialization::interval_log::Tag::new(&file_stem(id)),
                )
                .map_err(|e| BenchError::setup(format!("{}: {e:?}", path.display())))?;
            }
        }
        std::fs::write(&path, file).map_err(|e| BenchError::io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn histogram_roundtrip() {
        let mut h = crate::stats::new_histogram();
        h.record(1234).unwrap();
        h.record(987_654).unwrap();
        let enc = encode_histogram(&h).unwrap();
        let back = decode_histogram(&enc).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.max(), h.max());
        assert_eq!(base64_decode("Zm9vYmE=").unwrap(), b"fooba");
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert!(base64_decode("Zm9v!").is_none());
    }
}
