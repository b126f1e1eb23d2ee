//! ncbench: the pipelined load generator for send-path comparison, capacity
//! planning and CI gates.
//!
//! Layout:
//! - `config` (TOML, validation with file + key errors) and `units`;
//! - `affinity` (`[placement]`: CPU lists, pinning threads and children, /proc readback);
//! - `workload` (seeded generators, request encoding, reply checking, RESP
//!   or memcache) and `resp` / `memcache` (the driver's reply scanners);
//! - `driver` (threads × current-thread runtimes, closed and open loop,
//!   intended-time latency) and `stats` (hdrhistogram per thread, merged);
//! - `target`, `procs`, `embedded`, `inproc` (backends and targets), `tls`
//!   (the run's certificates, TLS client configs, a driver connection's TLS),
//!   `scrape` (proxy stats JSON), `loader` (preload and verify with the redis
//!   crate, or its own small memcached client);
//! - `timeline` (per-interval series), `events` (`[[event]]`: backend kill,
//!   stop, continue, restart; proxy reload), `shards` (backend counters),
//!   `overhead` (latency added over direct);
//! - `bench` (cells, trials, the measuring clock, verdict), `capacity` (rate
//!   search with repetitions), `inference` (bootstrap intervals, judgement),
//!   `gate` (ratio/bound gates, baseline comparison);
//! - `report` (table), `export` (JSON, CSV, HDR logs), `plot` (SVG/HTML),
//!   `progress` (bar or plain lines), `env` (environment fingerprint), `results` (schema).
//!
//! The `ncbench` binary (bin/ncbench) only parses flags (building the config
//! of `--target` with [`target_config`]) and calls [`cmd_run`],
//! [`cmd_capacity`] or [`cmd_compare`], which return the process exit code.
// Unsafe only where a tokio API requires it (driver::connect), allowed locally.
#![deny(unsafe_code)]

pub mod affinity;
pub mod bench;
pub mod capacity;
pub mod config;
pub mod driver;
pub mod embedded;
pub mod env;
pub mod error;
pub mod events;
pub mod export;
pub mod gate;
pub mod inference;
pub mod inproc;
pub mod loader;
pub mod memcache;
pub mod overhead;
pub mod plot;
pub mod procs;
pub mod progress;
pub mod report;
pub mod resp;
pub mod results;
pub mod scrape;
pub mod shards;
pub mod stats;
pub mod target;
pub mod timeline;
pub mod tls;
pub mod units;
pub mod workload;

pub use config::BenchConfig;
pub use error::{BenchError, ConfigError};
pub use results::RunResult;

use std::path::{Path, PathBuf};

/// Exit code: the run completed and every check passed.
pub const EXIT_PASS: i32 = 0;
/// Exit code: the run completed but a gate, the baseline or integrity failed.
pub const EXIT_FAIL: i32 = 1;
/// Exit code: usage, config or setup error (no result to judge).
pub const EXIT_USAGE: i32 = 2;

/// Where results go besides the table on stdout.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    pub json: Option<PathBuf>,
    pub csv: Option<PathBuf>,
    /// Directory for one HDR histogram log per cell.
    pub hdr_dir: Option<PathBuf>,
    /// `.html` or `.svg` report with plots.
    pub report: Option<PathBuf>,
}

/// Command-line overrides of config values (applied, then re-validated).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub duration: Option<String>,
    pub requests: Option<u64>,
    pub warmup: Option<String>,
    pub connections: Option<u32>,
    pub pipeline: Option<u32>,
    pub rate: Option<f64>,
    pub trials: Option<u32>,
    pub seed: Option<u64>,
    pub threads: Option<u32>,
}

/// Loads a config file, or the built-in quick.toml when `path` is None.
pub fn load_config(path: Option<&Path>) -> Result<BenchConfig, ConfigError> {
    match path {
        Some(p) => config::load(p),
        None => Ok(config::quick()),
    }
}

/// `--tls [--tls-ca FILE]` of `ncbench run --target`.
#[derive(Debug, Clone, Default)]
pub struct TargetTls {
    /// PEM CA file that verifies the target (None: the system's roots).
    pub ca: Option<PathBuf>,
}

/// The config of `ncbench run --target HOST:PORT`: load at a server or proxy
/// that is already running, with no config file and nothing started. The
/// keys are written and read back through the target (never flushed).
/// `run.duration` is 5 s unless the command line says otherwise. With `tls`,
/// the load, the loader and the verifier speak TLS to it, verifying its
/// certificate for the host of `addr`.
pub fn target_config(
    addr: &str,
    protocol: config::Protocol,
    tls: Option<&TargetTls>,
) -> Result<BenchConfig, ConfigError> {
    let flag = |name: &str, problem: String| ConfigError::new("command line", name, problem);
    if config::parse_host_port(addr).is_none() {
        return Err(flag("--target", format!("`{addr}` is not host:port")));
    }
    let proto = match protocol {
        config::Protocol::Redis => "",
        config::Protocol::Memcache => "protocol = \"memcache\"\n",
    };
    let (backend_tls, target_tls) = match tls {
        None => (String::new(), String::new()),
        Some(_) if protocol == config::Protocol::Memcache => {
            return Err(flag(
                "--tls",
                "only with --protocol redis (the memcached loader has no TLS)".into(),
            ))
        }
        Some(t) => {
            let ca = match &t.ca {
                Some(p) => {
                    std::fs::File::open(p).map_err(|e| {
                        flag("--tls-ca", format!("cannot read `{}`: {e}", p.display()))
                    })?;
                    // A JSON string is a valid TOML basic string.
                    let quoted = serde_json::to_string(&p.to_string_lossy())
                        .map_err(|e| flag("--tls-ca", e.to_string()))?;
                    format!("tls_ca = {quoted}\n")
                }
                None => String::new(),
            };
            (format!("tls = true\n{ca}"), format!("tls = true\n{ca}"))
        }
    };
    let text = format!(
        "name = \"target\"\ndescription = \"load at {addr}\"\n\
         [run]\nduration = \"5s\"\nwarmup = \"1s\"\n\
         [backends]\nkind = \"external\"\naddresses = [\"{addr}\"]\n{backend_tls}\
         [[target]]\nkind = \"external\"\nlabel = \"target\"\naddress = \"{addr}\"\n{target_tls}\
         [workload]\n{proto}"
    );
    config::from_toml_str(&text, &format!("--target {addr}"))
}

/// Applies command-line overrides; errors name the flag.
pub fn apply_overrides(cfg: &mut BenchConfig, o: &Overrides) -> Result<(), ConfigError> {
    let flag = |name: &str, problem: String| ConfigError::new("command line", name, problem);
    if let Some(d) = &o.duration {
        let d = units::parse_duration(d).map_err(|e| flag("--duration", e))?;
        cfg.run.duration = Some(units::Dur(d));
        cfg.run.requests = None;
    }
    if let Some(n) = o.requests {
        cfg.run.requests = Some(n);
        cfg.run.duration = None;
    }
    if let Some(w) = &o.warmup {
        cfg.run.warmup = units::Dur(units::parse_duration(w).map_err(|e| flag("--warmup", e))?);
    }
    if let Some(c) = o.connections {
        cfg.workload.connections = c;
        cfg.sweep.connections = None;
    }
    if let Some(p) = o.pipeline {
        cfg.workload.pipeline = p;
        cfg.sweep.pipeline = None;
    }
    if let Some(r) = o.rate {
        cfg.workload.mode = config::LoopMode::Open;
        cfg.workload.rate = Some(r);
        cfg.sweep.rate = None;
    }
    if let Some(t) = o.trials {
        cfg.run.trials = t;
    }
    if let Some(s) = o.seed {
        cfg.workload.seed = s;
    }
    if let Some(t) = o.threads {
        cfg.run.threads = t;
    }
    // Same rules as the file; the error names the file's key the flag changed.
    cfg.validate()
}

fn write_outputs(
    out: &Outputs,
    r: &RunResult,
    hists: &[Vec<hdrhistogram::Histogram<u64>>],
    progress: &dyn progress::Progress,
) -> Result<(), BenchError> {
    if let Some(p) = &out.json {
        export::write_json(p, r)?;
        progress.note(&format!("wrote {}", p.display()));
    }
    if let Some(p) = &out.csv {
        std::fs::write(p, export::csv(r)).map_err(|e| BenchError::io(p, e))?;
        progress.note(&format!("wrote {}", p.display()));
        if r.cells
            .iter()
            .any(|c| c.trials.iter().any(|t| !t.timeline.is_empty()))
        {
            let tp = export::timeline_csv_path(p);
            std::fs::write(&tp, export::timeline_csv(r)).map_err(|e| BenchError::io(&tp, e))?;
            progress.note(&format!("wrote {}", tp.display()));
        }
    }
    if let Some(d) = &out.hdr_dir {
        let files = export::write_hdr_logs(d, r, hists)?;
        progress.note(&format!(
            "wrote {} HDR logs to {}",
            files.len(),
            d.display()
        ));
    }
    if let Some(p) = &out.report {
        plot::write(p, r)?;
        progress.note(&format!("wrote {}", p.display()));
    }
    Ok(())
}

fn precreate(out: &Outputs) -> Result<(), BenchError> {
    let files: Vec<&Path> = [&out.json, &out.csv, &out.report]
        .into_iter()
        .flatten()
        .map(|p| p.as_path())
        .collect();
    export::create_outputs(&files)?;
    if let Some(d) = &out.hdr_dir {
        std::fs::create_dir_all(d).map_err(|e| BenchError::io(d, e))?;
    }
    Ok(())
}

/// `ncbench run`: runs, prints the table, writes outputs; returns the exit code.
pub fn cmd_run(
    cfg: &BenchConfig,
    out: &Outputs,
    baseline: Option<&Path>,
    style: progress::Style,
) -> Result<i32, BenchError> {
    precreate(out)?;
    // Read the baseline first: a bad file should fail before a long run.
    let base = baseline.map(RunResult::load).transpose()?;
    let progress = progress::make(style);
    let run = bench::run(cfg, progress.as_ref())?;
    let mut result = run.result;
    if let (Some(b), Some(path)) = (&base, baseline) {
        if b.environment.fingerprint != result.environment.fingerprint {
            result.notes.push(format!(
                "baseline {} comes from another environment ({} vs {}): compare with care",
                path.display(),
                b.environment.fingerprint,
                result.environment.fingerprint
            ));
        }
        result.baseline = Some(results::BaselineReport {
            file: path.display().to_string(),
            checks: gate::compare(b, &result, &cfg.baseline),
        });
        bench::judge(&mut result);
    }
    print!("{}", report::table(&result));
    write_outputs(out, &result, &run.histograms, progress.as_ref())?;
    Ok(if result.verdict.pass {
        EXIT_PASS
    } else {
        EXIT_FAIL
    })
}

/// `ncbench capacity`: the rate search; returns the exit code.
pub fn cmd_capacity(
    cfg: &BenchConfig,
    out: &Outputs,
    style: progress::Style,
) -> Result<i32, BenchError> {
    precreate(out)?;
    let progress = progress::make(style);
    let (result, hists) = capacity::run(cfg, progress.as_ref())?;
    print!("{}", report::table(&result));
    write_outputs(out, &result, &hists, progress.as_ref())?;
    Ok(if result.verdict.pass {
        EXIT_PASS
    } else {
        EXIT_FAIL
    })
}

/// `ncbench merge --json OUT RESULTS...`: pools trials of one config's results.
pub fn cmd_merge(results: &[PathBuf], out: &Path) -> Result<i32, BenchError> {
    let parts = results
        .iter()
        .map(|p| Ok((p.display().to_string(), RunResult::load(p)?)))
        .collect::<Result<Vec<_>, BenchError>>()?;
    let merged = RunResult::merge(&parts)?;
    export::write_json(out, &merged)?;
    let trials: usize = merged.cells.iter().map(|c| c.trials.len()).sum();
    println!(
        "merged {} results ({} trials in {} cells) into {}",
        parts.len(),
        trials,
        merged.cells.len(),
        out.display()
    );
    Ok(EXIT_PASS)
}

/// `ncbench compare BASE NEW`: prints the checks; 0 pass, 1 regression.
pub fn cmd_compare(
    base: &Path,
    new: &Path,
    th: &config::BaselineThresholds,
) -> Result<i32, BenchError> {
    let b = RunResult::load(base)?;
    let n = RunResult::load(new)?;
    let checks = gate::compare(&b, &n, th);
    println!("compare {} -> {}", base.display(), new.display());
    if b.environment.fingerprint != n.environment.fingerprint {
        println!(
            "note: different environments ({} vs {})",
            b.environment.fingerprint, n.environment.fingerprint
        );
    }
    if b.config_fingerprint != n.config_fingerprint {
        println!(
            "note: different configs ({} vs {})",
            b.config_fingerprint, n.config_fingerprint
        );
    }
    print!("{}", report::compare_lines(&checks));
    // The new result's own verdict (integrity, gates) counts too.
    let mut fail = checks.iter().any(|c| c.verdict == "fail");
    if !n.verdict.pass {
        println!(
            "  FAIL  {} itself failed: {}",
            new.display(),
            n.verdict.reasons.join("; ")
        );
        fail = true;
    }
    if checks.is_empty() {
        println!("  FAIL  no cells in common");
        fail = true;
    }
    println!("verdict: {}", if fail { "FAIL" } else { "PASS" });
    Ok(if fail { EXIT_FAIL } else { EXIT_PASS })
}
