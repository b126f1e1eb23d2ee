//! The environment fingerprint stored next to every result: which machine,
//! kernel and software produced the numbers, so baselines can be matched like
//! with like (a laptop result is no baseline for a CI runner).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Environment {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub arch: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub memory_mib: u64,
    pub ncbench_version: String,
    /// Debug builds are far slower; such numbers are no baseline for release ones.
    pub debug_build: bool,
    pub redis_server: Option<String>,
    pub nutcracker: Option<String>,
    /// Hash of cpu model, cpu count, kernel and build profile.
    pub fingerprint: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

impl Environment {
    pub fn detect() -> Environment {
        let cpuinfo = read("/proc/cpuinfo");
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let memory_mib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or(0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let kernel = read("/proc/sys/kernel/osrelease");
        let debug_build = cfg!(debug_assertions);
        let fingerprint = format!(
            "{:016x}",
            crate::config::fnv1a64(format!("{cpu_model}|{cpus}|{kernel}|{debug_build}").as_bytes())
        );
        Environment {
            hostname: read("/proc/sys/kernel/hostname"),
            os,
            kernel,
            arch: std::env::consts::ARCH.to_string(),
            cpu_model,
            cpus,
            memory_mib,
            ncbench_version: env!("CARGO_PKG_VERSION").to_string(),
            debug_build,
            redis_server: None,
            nutcracker: None,
            fingerprint,
        }
    }
}
