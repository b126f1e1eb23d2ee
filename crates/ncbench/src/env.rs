//! The environment fingerprint stored next to every result: which machine,
//! kernel and software produced the numbers, so baselines can be matched like
//! with like (a laptop result is no baseline for a CI runner), and where the
//! generator, proxies and backends were placed on its CPUs.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// `memcached -V` of the memcache backends; absent in Redis runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memcached: Option<String>,
    pub nutcracker: Option<String>,
    /// Hash of cpu model, cpu count, kernel and build profile.
    pub fingerprint: String,
    /// Where things ran; absent in results written before ncbench recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementReport>,
}

/// `[placement]` as configured, and as the kernel reported it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PlacementReport {
    /// Configured CPU list of the driver threads (canonical form); null = not pinned.
    pub generator: Option<String>,
    /// Configured CPU list of every proxy under test; null = not pinned.
    pub proxies: Option<String>,
    /// Configured CPU list of the backends ncbench starts; null = not pinned.
    pub backends: Option<String>,
    /// `Cpus_allowed_list` from /proc, read when each process or thread had
    /// started, by name: `generator` (every driver thread of every cell),
    /// `redis-server :PORT`, `embedded backend`, `nutcracker :PORT`,
    /// `ncproxy :PORT` (the binary), `ncproxy in-process :PORT` (its threads).
    /// Each value lists the distinct lists seen, normally exactly one.
    pub observed: BTreeMap<String, Vec<String>>,
}

impl PlacementReport {
    /// Whether any role was pinned.
    pub fn is_configured(&self) -> bool {
        self.generator.is_some() || self.proxies.is_some() || self.backends.is_some()
    }

    /// `generator 1 · proxies 0 · backends 0` (`unpinned` for a role left out).
    pub fn summary(&self) -> String {
        let role = |name: &str, cpus: &Option<String>| {
            format!("{name} {}", cpus.as_deref().unwrap_or("unpinned"))
        };
        [
            role("generator", &self.generator),
            role("proxies", &self.proxies),
            role("backends", &self.backends),
        ]
        .join(" · ")
    }
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
            memcached: None,
            nutcracker: None,
            fingerprint,
            placement: None,
        }
    }
}
