//! `ncbench`: thin command-line front end of the `ncbench` library.
//!
//! Parses flags, loads and validates the config (a bad one is one line naming
//! the file and key, exit 2), and calls the library. Exit codes: 0 pass,
//! 1 completed but a gate/baseline/integrity check failed, 2 usage or config error.
#![forbid(unsafe_code)]

use clap::{Args, Parser, Subcommand, ValueEnum};
use ncbench::{config, progress::Style, Outputs, Overrides};
use std::path::PathBuf;
use std::process::ExitCode;

/// Pipelined load generator for ncproxy: send-path comparison, capacity planning and CI gates.
#[derive(Parser)]
#[command(name = "ncbench", version, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

const EXIT_CODES: &str = "Exit codes: 0 = pass, 1 = run completed but a gate, the baseline or an integrity check failed, 2 = usage or config error.";

#[derive(Subcommand)]
enum Cmd {
    /// Start backends and targets, run the workload (every sweep cell), print the table.
    Run {
        /// Config file (TOML). Without it: the built-in bench-configs/quick.toml (~30 s).
        config: Option<PathBuf>,
        /// Drive load at a server or proxy that is already running (no config
        /// file, nothing started): `ncbench run --target 127.0.0.1:6379 -c 50 -P 16`.
        #[arg(long, value_name = "HOST:PORT", conflicts_with = "config")]
        target: Option<String>,
        /// What --target speaks.
        #[arg(long, value_enum, requires = "target", default_value = "redis")]
        protocol: ProtocolArg,
        /// Speak TLS to --target (load, preload and read-back), verifying its
        /// certificate for the host of HOST:PORT.
        #[arg(long, requires = "target")]
        tls: bool,
        /// PEM CA file that verifies the --target's certificate (default: the
        /// system's roots).
        #[arg(long, value_name = "FILE", requires = "tls")]
        tls_ca: Option<PathBuf>,
        /// Compare against this earlier result (--json output) with the config's [baseline] thresholds.
        #[arg(long, value_name = "BASE.json")]
        baseline: Option<PathBuf>,
        #[command(flatten)]
        out: OutArgs,
        #[command(flatten)]
        over: OverrideArgs,
    },
    /// Raise the open-loop rate until a latency percentile crosses the target; report the highest rate that holds and the knee.
    Capacity {
        /// Config file (TOML) with a [capacity] section. Without it: built-in quick.toml.
        config: Option<PathBuf>,
        #[command(flatten)]
        out: OutArgs,
        #[command(flatten)]
        over: OverrideArgs,
    },
    /// Compare two results: fail (exit 1) when throughput dropped or p99 rose past the thresholds.
    Compare {
        base: PathBuf,
        new: PathBuf,
        /// Largest allowed throughput drop, e.g. "10%".
        #[arg(long, default_value = "10%")]
        max_throughput_drop: String,
        /// Largest allowed p99 increase, e.g. "25%".
        #[arg(long, default_value = "25%")]
        max_p99_increase: String,
        /// Largest allowed p99.9 increase (not checked unless given).
        #[arg(long)]
        max_p999_increase: Option<String>,
        /// Two-sided confidence of the bootstrap intervals (trials > 1 on both sides).
        #[arg(long, default_value_t = 0.95)]
        confidence: f64,
        /// Fail (exit 1) when an interval contains the threshold, instead of warning.
        #[arg(long)]
        fail_inconclusive: bool,
        /// Trial i of BASE and of NEW ran side by side (interleaved runs merged
        /// with `ncbench merge`): judge the median of per-pair ratios.
        #[arg(long)]
        paired: bool,
    },
    /// Pool the trials of several results of one config into one result (for
    /// interleaved A/B runs: merge each side, then `compare` them).
    Merge {
        /// Results (--json output) of the same config.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Write the merged result here.
        #[arg(long)]
        json: PathBuf,
    },
    /// Validate a config file and print "configuration OK".
    Check { config: PathBuf },
    /// Print the built-in default config (quick.toml).
    DefaultConfig,
}

#[derive(Args)]
struct OutArgs {
    /// Write the versioned JSON result here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write one CSV row per cell here.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write one HDR histogram log per cell into this directory.
    #[arg(long, value_name = "DIR")]
    hdr_dir: Option<PathBuf>,
    /// Write an HTML (or, by extension, SVG) report with plots.
    #[arg(long, value_name = "FILE.html|FILE.svg")]
    report: Option<PathBuf>,
    /// Progress display on stderr.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressArg,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProtocolArg {
    Redis,
    Memcache,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProgressArg {
    Auto,
    Bar,
    Plain,
    Quiet,
}

#[derive(Args)]
struct OverrideArgs {
    /// Measured time per cell, e.g. "10s" (overrides run.duration).
    #[arg(long)]
    duration: Option<String>,
    /// Requests per cell instead of a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Warmup before measuring, e.g. "2s".
    #[arg(long)]
    warmup: Option<String>,
    /// Client connections (replaces sweep.connections).
    #[arg(long, short = 'c')]
    connections: Option<u32>,
    /// Pipeline depth (replaces sweep.pipeline).
    #[arg(long, short = 'P')]
    pipeline: Option<u32>,
    /// Open loop at this total rate (requests/s).
    #[arg(long)]
    rate: Option<f64>,
    /// Repeat every cell this many times.
    #[arg(long)]
    trials: Option<u32>,
    #[arg(long)]
    seed: Option<u64>,
    /// Driver threads (0 = automatic).
    #[arg(long)]
    threads: Option<u32>,
}

impl OverrideArgs {
    fn get(&self) -> Overrides {
        Overrides {
            duration: self.duration.clone(),
            requests: self.requests,
            warmup: self.warmup.clone(),
            connections: self.connections,
            pipeline: self.pipeline,
            rate: self.rate,
            trials: self.trials,
            seed: self.seed,
            threads: self.threads,
        }
    }
}

impl OutArgs {
    fn get(&self) -> (Outputs, Style) {
        let style = match self.progress {
            ProgressArg::Auto => Style::Auto,
            ProgressArg::Bar => Style::Bar,
            ProgressArg::Plain => Style::Plain,
            ProgressArg::Quiet => Style::Quiet,
        };
        (
            Outputs {
                json: self.json.clone(),
                csv: self.csv.clone(),
                hdr_dir: self.hdr_dir.clone(),
                report: self.report.clone(),
            },
            style,
        )
    }
}

fn load(
    path: Option<&PathBuf>,
    over: &OverrideArgs,
) -> Result<ncbench::BenchConfig, ncbench::BenchError> {
    let mut cfg = ncbench::load_config(path.map(|p| p.as_path()))?;
    ncbench::apply_overrides(&mut cfg, &over.get())?;
    Ok(cfg)
}

fn real_main() -> Result<i32, ncbench::BenchError> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            config,
            target,
            protocol,
            tls,
            tls_ca,
            baseline,
            out,
            over,
        } => {
            let cfg = match target {
                Some(addr) => {
                    let protocol = match protocol {
                        ProtocolArg::Redis => config::Protocol::Redis,
                        ProtocolArg::Memcache => config::Protocol::Memcache,
                    };
                    let tls = tls.then_some(ncbench::TargetTls { ca: tls_ca });
                    let mut cfg = ncbench::target_config(&addr, protocol, tls.as_ref())?;
                    ncbench::apply_overrides(&mut cfg, &over.get())?;
                    cfg
                }
                None => load(config.as_ref(), &over)?,
            };
            let (outputs, style) = out.get();
            ncbench::cmd_run(&cfg, &outputs, baseline.as_deref(), style)
        }
        Cmd::Capacity { config, out, over } => {
            let cfg = load(config.as_ref(), &over)?;
            let (outputs, style) = out.get();
            ncbench::cmd_capacity(&cfg, &outputs, style)
        }
        Cmd::Compare {
            base,
            new,
            max_throughput_drop,
            max_p99_increase,
            max_p999_increase,
            confidence,
            fail_inconclusive,
            paired,
        } => {
            let flag = |name: &str, v: &str| {
                ncbench::units::parse_fraction(v)
                    .map(ncbench::units::Fraction)
                    .map_err(|e| ncbench::ConfigError::new("command line", name, e))
            };
            let th = config::BaselineThresholds {
                max_throughput_drop: flag("--max-throughput-drop", &max_throughput_drop)?,
                max_p99_increase: flag("--max-p99-increase", &max_p99_increase)?,
                max_p999_increase: max_p999_increase
                    .as_deref()
                    .map(|v| flag("--max-p999-increase", v))
                    .transpose()?,
                confidence: if confidence > 0.5 && confidence < 1.0 {
                    confidence
                } else {
                    return Err(ncbench::ConfigError::new(
                        "command line",
                        "--confidence",
                        "must be between 0.5 and 1 (e.g. 0.95)",
                    )
                    .into());
                },
                inconclusive: if fail_inconclusive {
                    config::OnInconclusive::Fail
                } else {
                    config::OnInconclusive::Warn
                },
                paired,
            };
            ncbench::cmd_compare(&base, &new, &th)
        }
        Cmd::Merge { results, json } => ncbench::cmd_merge(&results, &json),
        Cmd::Check { config } => {
            ncbench::load_config(Some(&config))?;
            println!("{}: configuration OK", config.display());
            Ok(ncbench::EXIT_PASS)
        }
        Cmd::DefaultConfig => {
            print!("{}", config::QUICK_TOML);
            Ok(ncbench::EXIT_PASS)
        }
    }
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("ncbench: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
