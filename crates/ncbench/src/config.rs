//! The benchmark config: TOML → serde structs → `validate()`.
//!
//! Every struct denies unknown keys, so a typo fails loudly. Every problem,
//! whether found by the TOML parser, by serde, or by `validate()`, becomes one
//! [`ConfigError`] line naming the file, the dotted key and the problem. The
//! built-in default (`ncbench run` with no argument) is `bench-configs/quick.toml`,
//! embedded at compile time so it cannot drift from the file users read.
use crate::affinity::{CpuList, Placement};
use crate::error::ConfigError;
use crate::units::{ByteSize, Dur, Fraction};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// The default config, the same text as `bench-configs/quick.toml`.
pub const QUICK_TOML: &str = include_str!("../../../bench-configs/quick.toml");
/// How the built-in default is named in errors and reports.
pub const QUICK_NAME: &str = "<built-in quick.toml>";

/// Smallest value that still has room for the integrity tag (key id + writer nonce).
pub const MIN_VALUE_SIZE: u64 = 16;
const MAX_VALUE_SIZE: u64 = 64 << 20;

fn default_name() -> String {
    "ncbench".into()
}
fn default_warmup() -> Dur {
    Dur(Duration::from_secs(1))
}
fn default_trials() -> u32 {
    1
}
fn default_timeout() -> Dur {
    Dur(Duration::from_secs(2))
}
fn default_time_limit() -> Dur {
    Dur(Duration::from_secs(600))
}
fn default_true() -> bool {
    true
}
fn default_backend_count() -> u32 {
    2
}
fn default_redis_server() -> String {
    "redis-server".into()
}
fn default_memcached() -> String {
    "memcached".into()
}
fn is_default_memcached(s: &str) -> bool {
    s == "memcached"
}
fn default_hash() -> String {
    "fnv1a_64".into()
}
fn default_distribution() -> String {
    "ketama".into()
}
fn default_one() -> u32 {
    1
}
fn default_proxy_timeout_ms() -> u64 {
    2000
}
fn default_iov_max() -> u32 {
    128
}
fn default_connections() -> u32 {
    50
}
fn default_pipeline() -> u32 {
    16
}
fn default_keys() -> u64 {
    10_000
}
fn default_key_prefix() -> String {
    "ncb:".into()
}
fn default_zipf() -> f64 {
    0.99
}
fn default_mget_keys() -> u32 {
    10
}
fn default_percentile() -> f64 {
    99.0
}
fn default_target_latency() -> Dur {
    Dur(Duration::from_millis(1))
}
fn default_start_rate() -> f64 {
    10_000.0
}
fn default_max_rate() -> f64 {
    5_000_000.0
}
fn default_min_rate() -> f64 {
    100.0
}
fn default_growth() -> f64 {
    1.5
}
fn default_step_duration() -> Dur {
    Dur(Duration::from_secs(3))
}
fn default_refine() -> u32 {
    3
}
fn default_max_drop() -> Fraction {
    Fraction(0.10)
}
fn default_max_p99_increase() -> Fraction {
    Fraction(0.25)
}

/// A whole benchmark description.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchConfig {
    /// Where this config came from (a path or [`QUICK_NAME`]); set by the loader.
    #[serde(skip_deserializing, default)]
    pub source: String,
    /// Name shown in reports.
    #[serde(default = "default_name")]
    pub name: String,
    /// What this benchmark measures, one sentence.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub run: RunSection,
    #[serde(default)]
    pub backends: BackendsSection,
    #[serde(default)]
    pub proxy: ProxySection,
    #[serde(rename = "target", default)]
    pub targets: Vec<TargetSpec>,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default)]
    pub sweep: Sweep,
    /// Which cell the ratios are computed against (first cell when empty).
    #[serde(default)]
    pub reference: Selector,
    #[serde(rename = "gate", default)]
    pub gates: Vec<GateSpec>,
    #[serde(default)]
    pub baseline: BaselineThresholds,
    #[serde(default)]
    pub capacity: CapacitySpec,
    /// CPUs for the generator, the proxies and the backends (absent = not pinned).
    /// Left out of the serialized config when empty, so unpinned configs keep
    /// their fingerprint.
    #[serde(default, skip_serializing_if = "PlacementSection::is_empty")]
    pub placement: PlacementSection,
    /// Things done to backends or the proxy during every cell (`[[event]]`).
    #[serde(rename = "event", default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<crate::events::EventSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Measured time per cell and trial (excludes warmup). Exclusive with `requests`.
    pub duration: Option<Dur>,
    /// Total requests per cell and trial instead of a duration.
    pub requests: Option<u64>,
    #[serde(default = "default_warmup")]
    pub warmup: Dur,
    #[serde(default = "default_trials")]
    pub trials: u32,
    /// Driver threads (one current-thread runtime each); 0 = automatic.
    #[serde(default)]
    pub threads: u32,
    /// A reply later than this after the end of the run counts as lost.
    #[serde(default = "default_timeout")]
    pub timeout: Dur,
    /// Write every key before measuring, so GETs hit.
    #[serde(default = "default_true")]
    pub preload: bool,
    /// After the run, read keys back (redis crate, or ncbench's memcached client) and check them.
    #[serde(default = "default_true")]
    pub verify: bool,
    /// Hard stop for a cell in `requests` mode.
    #[serde(default = "default_time_limit")]
    pub time_limit: Dur,
    /// Length of one interval of the time series (left out of the stored
    /// config when 1 s, so older configs keep their fingerprint).
    #[serde(
        default = "default_interval",
        skip_serializing_if = "is_default_interval"
    )]
    pub interval: Dur,
}

fn default_interval() -> Dur {
    Dur(Duration::from_secs(1))
}
fn is_default_interval(d: &Dur) -> bool {
    *d == default_interval()
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            duration: None,
            requests: None,
            warmup: default_warmup(),
            trials: 1,
            threads: 0,
            timeout: default_timeout(),
            preload: true,
            verify: true,
            time_limit: default_time_limit(),
            interval: default_interval(),
        }
    }
}

/// How many measured seconds (or requests) each cell runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Length {
    Duration(Duration),
    Requests(u64),
}

impl RunSection {
    pub fn length(&self) -> Length {
        match (self.duration, self.requests) {
            (_, Some(n)) => Length::Requests(n),
            (Some(d), None) => Length::Duration(d.0),
            (None, None) => Length::Duration(Duration::from_secs(4)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// redis-server when on PATH, else embedded; memcached for `protocol = "memcache"`.
    Auto,
    Redis,
    /// memcached children (`protocol = "memcache"` only).
    Memcached,
    Embedded,
    External,
    /// A local Redis Cluster: `count` masters with `cluster_replicas`
    /// replicas each (redis-server in cluster mode, joined by redis-cli).
    Cluster,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Redis => "redis",
            BackendKind::Memcached => "memcached",
            BackendKind::Embedded => "embedded",
            BackendKind::External => "external",
            BackendKind::Cluster => "cluster",
        }
    }
}

/// What the load speaks: RESP to Redis pools, or the memcached ASCII protocol
/// to memcache pools (`redis: false` in the generated pool config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Redis,
    Memcache,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Redis => "redis",
            Protocol::Memcache => "memcache",
        }
    }

    pub fn is_redis(&self) -> bool {
        *self == Protocol::Redis
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendsSection {
    #[serde(default = "default_backend_kind")]
    pub kind: BackendKind,
    #[serde(default = "default_backend_count")]
    pub count: u32,
    /// host:port of each backend when `kind = "external"`.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default = "default_redis_server")]
    pub redis_server: String,
    /// The memcached binary (name on PATH or a path), for `protocol = "memcache"`.
    #[serde(
        default = "default_memcached",
        skip_serializing_if = "is_default_memcached"
    )]
    pub memcached: String,
    /// Replicas per master when `kind = "cluster"`.
    #[serde(
        default = "default_cluster_replicas",
        skip_serializing_if = "is_default_cluster_replicas"
    )]
    pub cluster_replicas: u32,
    /// TLS backends. redis-server backends ncbench starts also listen on a
    /// TLS port next to the plain one, with certificates ncbench makes for
    /// the run; `kind = "external"` backends speak only TLS.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls: bool,
    /// PEM CA file that verifies `kind = "external"` TLS backends (default:
    /// the system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
}

fn default_cluster_replicas() -> u32 {
    1
}

fn is_default_cluster_replicas(n: &u32) -> bool {
    *n == default_cluster_replicas()
}

fn default_backend_kind() -> BackendKind {
    BackendKind::Auto
}

impl Default for BackendsSection {
    fn default() -> Self {
        BackendsSection {
            kind: BackendKind::Auto,
            count: 2,
            addresses: Vec::new(),
            redis_server: default_redis_server(),
            memcached: default_memcached(),
            cluster_replicas: default_cluster_replicas(),
            tls: false,
            tls_ca: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendMode {
    Batched,
    PerMessage,
}

impl SendMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SendMode::Batched => "batched",
            SendMode::PerMessage => "per_message",
        }
    }
}

impl fmt::Display for SendMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `send_limit`: `"none"` (unlimited) or a byte size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SendLimit(pub Option<u64>);

impl fmt::Display for SendLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("none"),
            Some(n) => f.write_str(&crate::units::format_size(n)),
        }
    }
}

impl Serialize for SendLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_str("none"),
            Some(n) => s.serialize_u64(n),
        }
    }
}

impl<'de> Deserialize<'de> for SendLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) if n > 0 => Ok(SendLimit(Some(n as u64))),
            Raw::Int(_) => Err(serde::de::Error::custom(
                "send_limit must be positive or \"none\"",
            )),
            Raw::Str(s) if s == "none" || s == "unlimited" => Ok(SendLimit(None)),
            Raw::Str(s) => match crate::units::parse_size(&s) {
                Ok(0) => Err(serde::de::Error::custom(
                    "send_limit must be positive or \"none\"",
                )),
                Ok(n) => Ok(SendLimit(Some(n))),
                Err(e) => Err(serde::de::Error::custom(e)),
            },
        }
    }
}

/// Pool settings for the proxy configs ncbench generates (ncproxy and nutcracker alike).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    #[serde(default = "default_hash")]
    pub hash: String,
    #[serde(default = "default_distribution")]
    pub distribution: String,
    #[serde(default = "default_one")]
    pub server_connections: u32,
    /// Pool `timeout:` in milliseconds (0 = none).
    #[serde(default = "default_proxy_timeout_ms")]
    pub timeout_ms: u64,
    /// ncproxy worker threads (`--workers`); 1 matches nutcracker's single loop.
    #[serde(default = "default_one")]
    pub workers: u32,
    /// ncproxy `--busy-poll` in microseconds (0 = off, as nutcracker).
    #[serde(default)]
    pub busy_poll_us: u32,
    #[serde(default = "default_send_mode")]
    pub send_mode: SendMode,
    #[serde(default = "default_iov_max")]
    pub iov_max: u32,
    #[serde(default)]
    pub send_limit: SendLimit,
    /// Path of the ncproxy binary (default: $NCPROXY_BIN, next to ncbench, then PATH).
    pub ncproxy_bin: Option<String>,
    /// Path of the nutcracker binary (default: `nutcracker` on PATH).
    pub nutcracker_bin: Option<String>,
}

fn default_send_mode() -> SendMode {
    SendMode::Batched
}

impl Default for ProxySection {
    fn default() -> Self {
        ProxySection {
            hash: default_hash(),
            distribution: default_distribution(),
            server_connections: 1,
            timeout_ms: default_proxy_timeout_ms(),
            workers: 1,
            busy_poll_us: 0,
            send_mode: SendMode::Batched,
            iov_max: 128,
            send_limit: SendLimit(None),
            ncproxy_bin: None,
            nutcracker_bin: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// ncproxy in-process (falls back to the built binary when this build lacks it).
    Ncproxy,
    /// The ncproxy binary, started with a generated config.
    NcproxyBin,
    /// nutcracker from PATH, started with a generated config.
    Nutcracker,
    /// The backends themselves: the physical limit.
    Direct,
    /// Something already listening at `address`.
    External,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Ncproxy => "ncproxy",
            TargetKind::NcproxyBin => "ncproxy-bin",
            TargetKind::Nutcracker => "nutcracker",
            TargetKind::Direct => "direct",
            TargetKind::External => "external",
        }
    }

    /// Whether send_mode / iov_max / send_limit apply to this target.
    pub fn has_send_knobs(self) -> bool {
        matches!(self, TargetKind::Ncproxy | TargetKind::NcproxyBin)
    }

    /// Whether it is ncproxy (in-process or the binary).
    pub fn is_ncproxy(self) -> bool {
        self.has_send_knobs()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    pub kind: TargetKind,
    /// Name in tables and selectors (default: the kind).
    pub label: Option<String>,
    /// Skip this target with a note when it is not available (e.g. nutcracker not installed).
    #[serde(default)]
    pub optional: bool,
    /// host:port, for `kind = "external"`.
    pub address: Option<String>,
    /// host:port of a stats server, for `kind = "external"`.
    pub stats: Option<String>,
    /// Override the binary path for this target.
    pub binary: Option<String>,
    /// ncproxy `--workers` for this target.
    pub workers: Option<u32>,
    /// ncproxy `--busy-poll` (microseconds) for this target.
    pub busy_poll_us: Option<u32>,
    /// The load speaks TLS to this target: ncproxy gets `tls_cert`/`tls_key`
    /// on its listener (the run's certificate), `direct` uses the backends'
    /// TLS ports, `external` is a TLS server.
    #[serde(default, skip_serializing_if = "is_false")]
    pub tls: bool,
    /// ncproxy talks TLS to the backends (`server_tls`, the backends' TLS
    /// ports; needs `[backends] tls = true`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub server_tls: bool,
    /// PEM CA file that verifies an external TLS target (default: the
    /// system's roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
}

impl TargetSpec {
    pub fn label(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| self.kind.as_str().to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoopMode {
    /// Each connection keeps `pipeline` requests in flight.
    Closed,
    /// Requests are due at a fixed total `rate`; latency counts from the due time.
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDistribution {
    Uniform,
    Zipf,
    Sequential,
}

/// `value_size = 64` or `value_size = { min = 32, max = 512 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ValueSize {
    Fixed(ByteSize),
    Range(ValueRange),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueRange {
    pub min: ByteSize,
    pub max: ByteSize,
}

impl ValueSize {
    pub fn bounds(&self) -> (u64, u64) {
        match *self {
            ValueSize::Fixed(n) => (n.0, n.0),
            ValueSize::Range(r) => (r.min.0, r.max.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    #[serde(default)]
    pub get: u32,
    #[serde(default)]
    pub set: u32,
    #[serde(default)]
    pub mget: u32,
    #[serde(default)]
    pub del: u32,
    #[serde(default)]
    pub incr: u32,
}

impl Mix {
    pub fn total(&self) -> u64 {
        [self.get, self.set, self.mget, self.del, self.incr]
            .iter()
            .map(|&w| w as u64)
            .sum()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    #[serde(default = "default_mode")]
    pub mode: LoopMode,
    #[serde(default = "default_connections")]
    pub connections: u32,
    #[serde(default = "default_pipeline")]
    pub pipeline: u32,
    /// Total requests per second across all connections (open loop only).
    pub rate: Option<f64>,
    #[serde(default = "default_keys")]
    pub keys: u64,
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    #[serde(default = "default_key_distribution")]
    pub distribution: KeyDistribution,
    #[serde(default = "default_zipf")]
    pub zipf_exponent: f64,
    #[serde(default = "default_value_size")]
    pub value_size: ValueSize,
    #[serde(default = "default_mget_keys")]
    pub mget_keys: u32,
    #[serde(default = "default_one_u64")]
    pub seed: u64,
    #[serde(default = "default_mix")]
    pub mix: Mix,
    /// `redis` (default) or `memcache`. Left out of the serialized config when
    /// redis, so Redis configs keep their fingerprint.
    #[serde(default, skip_serializing_if = "Protocol::is_redis")]
    pub protocol: Protocol,
    /// memcache only: sets carry `noreply`. Nothing comes back for them, so
    /// they count as done once written and stay out of the latency histograms.
    #[serde(default, skip_serializing_if = "is_false")]
    pub set_noreply: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_mode() -> LoopMode {
    LoopMode::Closed
}
fn default_key_distribution() -> KeyDistribution {
    KeyDistribution::Uniform
}
fn default_value_size() -> ValueSize {
    ValueSize::Fixed(ByteSize(64))
}
fn default_one_u64() -> u64 {
    1
}
fn default_mix() -> Mix {
    Mix {
        get: 80,
        set: 20,
        ..Mix::default()
    }
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            mode: LoopMode::Closed,
            connections: default_connections(),
            pipeline: default_pipeline(),
            rate: None,
            keys: default_keys(),
            key_prefix: default_key_prefix(),
            distribution: KeyDistribution::Uniform,
            zipf_exponent: default_zipf(),
            value_size: default_value_size(),
            mget_keys: default_mget_keys(),
            seed: 1,
            mix: default_mix(),
            protocol: Protocol::Redis,
            set_noreply: false,
        }
    }
}

/// The matrix: every listed dimension multiplies the cells. Absent = the single
/// value from `[proxy]` / `[workload]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    pub send_mode: Option<Vec<SendMode>>,
    pub iov_max: Option<Vec<u32>>,
    pub send_limit: Option<Vec<SendLimit>>,
    pub pipeline: Option<Vec<u32>>,
    pub connections: Option<Vec<u32>>,
    /// Open-loop rates (requests per second).
    pub rate: Option<Vec<f64>>,
    /// Keys per multi-get (`mget`), instead of the single `workload.mget_keys`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mget_keys: Option<Vec<u32>>,
}

/// Picks cells by their parameters; absent keys match anything.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    pub target: Option<String>,
    pub send_mode: Option<SendMode>,
    pub iov_max: Option<u32>,
    pub send_limit: Option<SendLimit>,
    pub pipeline: Option<u32>,
    pub connections: Option<u32>,
    pub rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mget_keys: Option<u32>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        *self == Selector::default()
    }

    /// The dimension names this selector constrains.
    pub fn dims(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.target.is_some() {
            v.push("target");
        }
        if self.send_mode.is_some() {
            v.push("send_mode");
        }
        if self.iov_max.is_some() {
            v.push("iov_max");
        }
        if self.send_limit.is_some() {
            v.push("send_limit");
        }
        if self.pipeline.is_some() {
            v.push("pipeline");
        }
        if self.connections.is_some() {
            v.push("connections");
        }
        if self.rate.is_some() {
            v.push("rate");
        }
        if self.mget_keys.is_some() {
            v.push("mget_keys");
        }
        v
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(t) = &self.target {
            parts.push(format!("target={t}"));
        }
        if let Some(m) = self.send_mode {
            parts.push(format!("send_mode={m}"));
        }
        if let Some(n) = self.iov_max {
            parts.push(format!("iov_max={n}"));
        }
        if let Some(l) = self.send_limit {
            parts.push(format!("send_limit={l}"));
        }
        if let Some(p) = self.pipeline {
            parts.push(format!("pipeline={p}"));
        }
        if let Some(c) = self.connections {
            parts.push(format!("connections={c}"));
        }
        if let Some(r) = self.rate {
            parts.push(format!("rate={r}"));
        }
        if let Some(k) = self.mget_keys {
            parts.push(format!("mget_keys={k}"));
        }
        if parts.is_empty() {
            f.write_str("*")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// What a gate or a comparison looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    OpsPerSec,
    LatencyUsP50,
    LatencyUsP90,
    LatencyUsP99,
    LatencyUsP999,
    LatencyUsMax,
    Errors,
    SyscallsPerRequest,
    RequestsPerSyscall,
    BytesPerSyscall,
    /// The proxy process's read + write syscalls per request (/proc/<pid>/io).
    ProxySyscallsPerRequest,
    /// The backend processes' read + write syscalls per request.
    BackendSyscallsPerRequest,
    /// The busiest backend's share of operations (0..1).
    HottestShardShare,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::OpsPerSec => "ops_per_sec",
            Metric::LatencyUsP50 => "latency_us_p50",
            Metric::LatencyUsP90 => "latency_us_p90",
            Metric::LatencyUsP99 => "latency_us_p99",
            Metric::LatencyUsP999 => "latency_us_p999",
            Metric::LatencyUsMax => "latency_us_max",
            Metric::Errors => "errors",
            Metric::SyscallsPerRequest => "syscalls_per_request",
            Metric::RequestsPerSyscall => "requests_per_syscall",
            Metric::BytesPerSyscall => "bytes_per_syscall",
            Metric::ProxySyscallsPerRequest => "proxy_syscalls_per_request",
            Metric::BackendSyscallsPerRequest => "backend_syscalls_per_request",
            Metric::HottestShardShare => "hottest_shard_share",
        }
    }

    /// True when a larger value is better (throughput), false for latencies and costs.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Metric::OpsPerSec | Metric::RequestsPerSyscall | Metric::BytesPerSyscall
        )
    }
}

/// A gate: a ratio between pairs of cells (`numerator`/`denominator`), or a
/// bound on the cells picked by `cells`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    pub name: Option<String>,
    pub metric: Metric,
    pub numerator: Option<Selector>,
    pub denominator: Option<Selector>,
    pub cells: Option<Selector>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Confidence of the interval a ratio gate judges with several trials
    /// (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

/// What an inconclusive statistical check does to the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInconclusive {
    /// A warning; the run passes.
    #[default]
    Warn,
    /// The run fails, as for a regression.
    Fail,
}

fn default_confidence() -> f64 {
    0.95
}
fn is_default_confidence(c: &f64) -> bool {
    *c == default_confidence()
}
fn is_warn(o: &OnInconclusive) -> bool {
    *o == OnInconclusive::Warn
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineThresholds {
    /// Largest allowed throughput drop against the baseline (`"10%"`).
    #[serde(default = "default_max_drop")]
    pub max_throughput_drop: Fraction,
    /// Largest allowed p99 latency increase against the baseline.
    #[serde(default = "default_max_p99_increase")]
    pub max_p99_increase: Fraction,
    /// Largest allowed p99.9 increase (not checked when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p999_increase: Option<Fraction>,
    /// Two-sided confidence of the intervals (trials > 1 on both sides).
    #[serde(
        default = "default_confidence",
        skip_serializing_if = "is_default_confidence"
    )]
    pub confidence: f64,
    /// `warn` (default) or `fail` when an interval straddles the threshold.
    #[serde(default, skip_serializing_if = "is_warn")]
    pub inconclusive: OnInconclusive,
    /// Trial i of base and of new ran side by side (interleaved runs merged
    /// with `ncbench merge`): judge per-pair ratios. Only `ncbench compare
    /// --paired` sets it; a stored baseline's trials pair with nothing.
    #[serde(skip)]
    pub paired: bool,
}

impl Default for BaselineThresholds {
    fn default() -> Self {
        BaselineThresholds {
            max_throughput_drop: default_max_drop(),
            max_p99_increase: default_max_p99_increase(),
            max_p999_increase: None,
            confidence: default_confidence(),
            inconclusive: OnInconclusive::Warn,
            paired: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacitySpec {
    /// Which latency percentile must stay under `target_latency`.
    #[serde(default = "default_percentile")]
    pub percentile: f64,
    #[serde(default = "default_target_latency")]
    pub target_latency: Dur,
    #[serde(default = "default_start_rate")]
    pub start_rate: f64,
    #[serde(default = "default_max_rate")]
    pub max_rate: f64,
    /// Lowest rate the search steps down to when `start_rate` already fails.
    #[serde(default = "default_min_rate")]
    pub min_rate: f64,
    /// Rate multiplier between steps while the target holds.
    #[serde(default = "default_growth")]
    pub growth: f64,
    /// Measured time of each step (after `run.warmup`).
    #[serde(default = "default_step_duration")]
    pub step_duration: Dur,
    /// Bisection steps between the last good and the first bad rate.
    #[serde(default = "default_refine")]
    pub refine_steps: u32,
    /// Fewest repetitions (of `step_duration` each) per rate.
    #[serde(default = "default_min_repeats")]
    pub min_repeats: u32,
    /// Most repetitions per rate while the percentile's interval is too wide.
    #[serde(default = "default_max_repeats")]
    pub max_repeats: u32,
    /// Repeat until the percentile's interval half-width is within this
    /// fraction of the estimate (`"10%"`).
    #[serde(default = "default_precision")]
    pub precision: Fraction,
    /// Two-sided confidence of the percentile's interval.
    #[serde(default = "default_confidence")]
    pub confidence: f64,
    /// Whole searches per target, interleaved across targets; the capacity
    /// interval is the envelope of the rounds' intervals.
    #[serde(default = "default_rounds")]
    pub rounds: u32,
}

fn default_rounds() -> u32 {
    1
}
fn default_min_repeats() -> u32 {
    3
}
fn default_max_repeats() -> u32 {
    8
}
fn default_precision() -> Fraction {
    Fraction(0.10)
}

impl Default for CapacitySpec {
    fn default() -> Self {
        CapacitySpec {
            percentile: default_percentile(),
            target_latency: default_target_latency(),
            start_rate: default_start_rate(),
            max_rate: default_max_rate(),
            min_rate: default_min_rate(),
            growth: default_growth(),
            step_duration: default_step_duration(),
            refine_steps: default_refine(),
            min_repeats: default_min_repeats(),
            max_repeats: default_max_repeats(),
            precision: default_precision(),
            confidence: default_confidence(),
            rounds: default_rounds(),
        }
    }
}

/// `[placement]`: taskset-style CPU lists (`"0"`, `"0,2"`, `"0-3"`, `"0-1,3"`)
/// per role. Kept as written for the stored config; `validate()` parses them.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PlacementSection {
    /// ncbench's own driver threads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
    /// Every proxy under test (nutcracker, the ncproxy binary, in-process ncproxy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxies: Option<String>,
    /// redis-server backends and the embedded backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<String>,
    #[serde(skip)]
    parsed: Placement,
}

impl PlacementSection {
    pub fn is_empty(&self) -> bool {
        self.generator.is_none() && self.proxies.is_none() && self.backends.is_none()
    }

    /// The parsed lists (filled in by `BenchConfig::validate`).
    pub fn cpus(&self) -> &Placement {
        &self.parsed
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<BenchConfig, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&name, "", format!("cannot read config: {e}")))?;
    from_toml_str(&text, &name)
}

/// The built-in default config.
pub fn quick() -> BenchConfig {
    from_toml_str(QUICK_TOML, QUICK_NAME).expect("the embedded quick.toml is valid")
}

/// Parses and validates config text; `source` names it in errors.
pub fn from_toml_str(text: &str, source: &str) -> Result<BenchConfig, ConfigError> {
    let mut cfg: BenchConfig = toml::from_str(text).map_err(|e| toml_error(text, source, &e))?;
    cfg.source = source.to_string();
    cfg.validate()?;
    Ok(cfg)
}

/// Turns a toml/serde error into one line with a key path recovered from the span.
fn toml_error(text: &str, source: &str, e: &toml::de::Error) -> ConfigError {
    let msg = e.message().replace('\n', " ");
    let Some(span) = e.span() else {
        return ConfigError::new(source, "", msg);
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let key = key_path_at(text, start, span.end.min(text.len()));
    let key = if key.is_empty() {
        format!("line {line_no}")
    } else {
        format!("{key} (line {line_no})")
    };
    ConfigError::new(source, key, msg)
}

/// Best-effort dotted key for a byte offset: `[table]` or `[[array]]` header
/// above it (with the array index), then the key on the offending line.
fn key_path_at(text: &str, start: usize, end: usize) -> String {
    let line_start = text[..start].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line_end = text[start..]
        .find('\n')
        .map(|i| start + i)
        .unwrap_or(text.len());
    let line = &text[line_start..line_end];
    let header = section_at(text, line_start);
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        // The error is about the header itself.
        return header;
    }
    // The key is the bare token before the first '=' on the line; if the span
    // is inside an inline table, prefer the key just before the span.
    let col = start - line_start;
    let spanned = text[start..end].trim();
    let before = &line[..col.min(line.len())];
    let mut key = String::new();
    if let Some(eq) = before.rfind('=') {
        let k = before[..eq]
            .trim_end()
            .rsplit(|c: char| c == '{' || c == ',' || c.is_whitespace())
            .next()
            .unwrap_or("")
            .trim();
        let first = line.split('=').next().unwrap_or("").trim();
        if !k.is_empty() && k != first {
            key = format!("{first}.{k}");
        } else {
            key = first.to_string();
        }
    } else if !spanned.is_empty() && !spanned.contains('=') {
        key = spanned.trim_matches('"').to_string();
    }
    match (header.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => header,
        (false, false) => format!("{header}.{key}"),
    }
}

fn section_at(text: &str, upto: usize) -> String {
    let mut current = String::new();
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for line in text[..upto].lines() {
        let t = line.trim();
        if let Some(inner) = t.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = inner.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            current = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(inner) = t.strip_prefix('[').and_then(|r| r.split(']').next()) {
            current = inner.trim().to_string();
        }
    }
    current
}

impl BenchConfig {
    fn err(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::new(&self.source, key, problem)
    }

    /// Checks every semantic rule; the first problem is returned with its key.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        // run
        let r = &self.run;
        if r.duration.is_some() && r.requests.is_some() {
            return Err(self.err(
                "run.requests",
                "set either run.duration or run.requests, not both",
            ));
        }
        if let Some(d) = r.duration {
            if d.0.is_zero() {
                return Err(self.err("run.duration", "must be positive"));
            }
        }
        if r.requests == Some(0) {
            return Err(self.err("run.requests", "must be positive"));
        }
        if !(1..=100).contains(&r.trials) {
            return Err(self.err("run.trials", "must be between 1 and 100"));
        }
        if r.threads > 1024 {
            return Err(self.err("run.threads", "must be at most 1024 (0 = automatic)"));
        }
        if r.timeout.0.is_zero() {
            return Err(self.err("run.timeout", "must be positive"));
        }
        if r.time_limit.0.is_zero() {
            return Err(self.err("run.time_limit", "must be positive"));
        }

        // backends
        let b = &self.backends;
        if b.kind == BackendKind::External {
            if b.addresses.is_empty() {
                return Err(self.err(
                    "backends.addresses",
                    "kind = \"external\" needs at least one host:port",
                ));
            }
            for (i, a) in b.addresses.iter().enumerate() {
                if parse_host_port(a).is_none() {
                    return Err(self.err(
                        format!("backends.addresses[{i}]"),
                        format!("`{a}` is not host:port"),
                    ));
                }
            }
            self.backends.count = self.backends.addresses.len() as u32;
        } else {
            if !b.addresses.is_empty() {
                return Err(self.err("backends.addresses", "only used with kind = \"external\""));
            }
            if !(1..=64).contains(&b.count) {
                return Err(self.err("backends.count", "must be between 1 and 64"));
            }
            if b.kind == BackendKind::Cluster {
                if !(3..=16).contains(&b.count) {
                    return Err(self.err(
                        "backends.count",
                        "kind = \"cluster\" needs 3 to 16 masters (Redis Cluster needs at least 3)",
                    ));
                }
                if b.cluster_replicas > 2 {
                    return Err(self.err("backends.cluster_replicas", "must be 0, 1 or 2"));
                }
            } else if b.cluster_replicas != default_cluster_replicas() {
                return Err(self.err(
                    "backends.cluster_replicas",
                    "only used with kind = \"cluster\"",
                ));
            }
        }

        self.validate_backends_tls()?;

        if self.backends.kind == BackendKind::Cluster
            && self.workload.mix.mget > 0
            && self.targets.iter().any(|t| t.kind == TargetKind::Direct)
        {
            return Err(self.err(
                "workload.mix.mget",
                "a direct target cannot send a cross-slot MGET to a Redis Cluster: drop mix.mget or the direct target",
            ));
        }

        // proxy
        let p = &self.proxy;
        if nc_hashkit::HashKind::from_name(&p.hash).is_none() {
            return Err(self.err("proxy.hash", format!("unknown hash `{}`", p.hash)));
        }
        if nc_hashkit::DistributionKind::from_name(&p.distribution).is_none() {
            return Err(self.err(
                "proxy.distribution",
                format!(
                    "unknown distribution `{}` (ketama, modula, random)",
                    p.distribution
                ),
            ));
        }
        if !(1..=1024).contains(&p.server_connections) {
            return Err(self.err("proxy.server_connections", "must be between 1 and 1024"));
        }
        if !(1..=256).contains(&p.workers) {
            return Err(self.err("proxy.workers", "must be between 1 and 256"));
        }
        if p.busy_poll_us > MAX_BUSY_POLL_US {
            return Err(self.err("proxy.busy_poll_us", BUSY_POLL_RANGE));
        }
        if !(1..=1024).contains(&p.iov_max) {
            return Err(self.err("proxy.iov_max", "must be between 1 and 1024"));
        }

        self.validate_placement()?;

        // targets
        if self.targets.is_empty() {
            return Err(self.err("target", "at least one [[target]] is needed"));
        }
        let mut labels = std::collections::HashSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let label = t.label();
            if label.is_empty() || label.contains(['/', ',', ' ']) {
                return Err(self.err(
                    format!("target[{i}].label"),
                    "must be non-empty, without '/', ',' or spaces",
                ));
            }
            if !labels.insert(label.clone()) {
                return Err(self.err(
                    format!("target[{i}].label"),
                    format!("duplicate target label `{label}` (set label = \"...\")"),
                ));
            }
            match t.kind {
                TargetKind::External => match &t.address {
                    None => {
                        return Err(self.err(
                            format!("target[{i}].address"),
                            "kind = \"external\" needs an address",
                        ))
                    }
                    Some(a) if parse_host_port(a).is_none() => {
                        return Err(self.err(
                            format!("target[{i}].address"),
                            format!("`{a}` is not host:port"),
                        ))
                    }
                    _ => {}
                },
                _ if t.address.is_some() => {
                    return Err(self.err(
                        format!("target[{i}].address"),
                        "only used with kind = \"external\"",
                    ))
                }
                _ => {}
            }
            if let Some(s) = &t.stats {
                if t.kind != TargetKind::External {
                    return Err(self.err(
                        format!("target[{i}].stats"),
                        "only used with kind = \"external\"",
                    ));
                }
                if parse_host_port(s).is_none() {
                    return Err(self.err(
                        format!("target[{i}].stats"),
                        format!("`{s}` is not host:port"),
                    ));
                }
            }
            if let Some(w) = t.workers {
                if !t.kind.has_send_knobs() {
                    return Err(self.err(
                        format!("target[{i}].workers"),
                        "only used with ncproxy targets",
                    ));
                }
                if !(1..=256).contains(&w) {
                    return Err(
                        self.err(format!("target[{i}].workers"), "must be between 1 and 256")
                    );
                }
            }
            if let Some(us) = t.busy_poll_us {
                let key = format!("target[{i}].busy_poll_us");
                if !t.kind.has_send_knobs() {
                    return Err(self.err(key, "only used with ncproxy targets"));
                }
                if us > MAX_BUSY_POLL_US {
                    return Err(self.err(key, BUSY_POLL_RANGE));
                }
            }
            self.validate_target_tls(i, t)?;
        }

        // workload
        let w = &self.workload;
        if !(1..=10_000).contains(&w.connections) {
            return Err(self.err("workload.connections", "must be between 1 and 10000"));
        }
        if !(1..=65_536).contains(&w.pipeline) {
            return Err(self.err("workload.pipeline", "must be between 1 and 65536"));
        }
        match (w.mode, w.rate) {
            (LoopMode::Open, None) if self.sweep.rate.is_none() => {
                return Err(self.err(
                    "workload.rate",
                    "mode = \"open\" needs a rate (requests per second)",
                ))
            }
            (LoopMode::Closed, Some(_)) => {
                return Err(self.err("workload.rate", "only used with mode = \"open\""))
            }
            (_, Some(r)) if !(r.is_finite() && r > 0.0) => {
                return Err(self.err("workload.rate", "must be a positive number"))
            }
            _ => {}
        }
        if !(1..=u32::MAX as u64).contains(&w.keys) {
            return Err(self.err("workload.keys", "must be between 1 and 4294967295"));
        }
        if w.key_prefix.len() > 200 || w.key_prefix.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return Err(self.err(
                "workload.key_prefix",
                "must be at most 200 bytes, without spaces or control characters",
            ));
        }
        if !(w.zipf_exponent.is_finite() && w.zipf_exponent > 0.0 && w.zipf_exponent <= 10.0) {
            return Err(self.err("workload.zipf_exponent", "must be in (0, 10]"));
        }
        let (vmin, vmax) = w.value_size.bounds();
        if vmin < MIN_VALUE_SIZE {
            return Err(self.err(
                "workload.value_size",
                format!("must be at least {MIN_VALUE_SIZE} bytes (room for the integrity tag)"),
            ));
        }
        if vmax > MAX_VALUE_SIZE {
            return Err(self.err("workload.value_size", "must be at most 64MiB"));
        }
        if vmin > vmax {
            return Err(self.err("workload.value_size.min", "must not exceed max"));
        }
        if !(1..=10_000).contains(&w.mget_keys) {
            return Err(self.err("workload.mget_keys", "must be between 1 and 10000"));
        }
        if w.mix.total() == 0 {
            return Err(self.err(
                "workload.mix",
                "at least one command weight must be positive",
            ));
        }
        self.validate_protocol()?;

        // sweep
        let s = &self.sweep;
        fn nonempty<T>(v: &Option<Vec<T>>) -> bool {
            v.as_ref().is_none_or(|v| !v.is_empty())
        }
        for (key, ok) in [
            ("sweep.send_mode", nonempty(&s.send_mode)),
            ("sweep.iov_max", nonempty(&s.iov_max)),
            ("sweep.send_limit", nonempty(&s.send_limit)),
            ("sweep.pipeline", nonempty(&s.pipeline)),
            ("sweep.connections", nonempty(&s.connections)),
            ("sweep.rate", nonempty(&s.rate)),
            ("sweep.mget_keys", nonempty(&s.mget_keys)),
        ] {
            if !ok {
                return Err(self.err(key, "must list at least one value (or be left out)"));
            }
        }
        if let Some(v) = &s.iov_max {
            if let Some(i) = v.iter().position(|n| !(1..=1024).contains(n)) {
                return Err(self.err(format!("sweep.iov_max[{i}]"), "must be between 1 and 1024"));
            }
        }
        if let Some(v) = &s.pipeline {
            if let Some(i) = v.iter().position(|n| !(1..=65_536).contains(n)) {
                return Err(self.err(
                    format!("sweep.pipeline[{i}]"),
                    "must be between 1 and 65536",
                ));
            }
        }
        if let Some(v) = &s.connections {
            if let Some(i) = v.iter().position(|n| !(1..=10_000).contains(n)) {
                return Err(self.err(
                    format!("sweep.connections[{i}]"),
                    "must be between 1 and 10000",
                ));
            }
        }
        if let Some(v) = &s.mget_keys {
            if let Some(i) = v.iter().position(|n| !(1..=10_000).contains(n)) {
                return Err(self.err(
                    format!("sweep.mget_keys[{i}]"),
                    "must be between 1 and 10000",
                ));
            }
        }
        if let Some(v) = &s.rate {
            if w.mode != LoopMode::Open {
                return Err(self.err("sweep.rate", "only used with workload.mode = \"open\""));
            }
            if let Some(i) = v.iter().position(|r| !(r.is_finite() && *r > 0.0)) {
                return Err(self.err(format!("sweep.rate[{i}]"), "must be a positive number"));
            }
        }

        // selectors
        let check_sel = |sel: &Selector, key: &str| -> Result<(), ConfigError> {
            if let Some(t) = &sel.target {
                if !labels.contains(t) {
                    return Err(self.err(
                        format!("{key}.target"),
                        format!("no [[target]] is labelled `{t}`"),
                    ));
                }
            }
            Ok(())
        };
        check_sel(&self.reference, "reference")?;
        for (i, g) in self.gates.iter().enumerate() {
            let key = format!("gate[{i}]");
            match (&g.numerator, &g.denominator, &g.cells) {
                (Some(n), Some(d), None) => {
                    check_sel(n, &format!("{key}.numerator"))?;
                    check_sel(d, &format!("{key}.denominator"))?;
                    if d.is_empty() {
                        return Err(self.err(
                            format!("{key}.denominator"),
                            "must select something (e.g. { send_mode = \"per_message\" })",
                        ));
                    }
                }
                (None, None, Some(c)) => check_sel(c, &format!("{key}.cells"))?,
                (None, None, None) => {
                    return Err(self.err(
                        &key,
                        "needs numerator + denominator (a ratio gate) or cells (a bound)",
                    ))
                }
                _ => {
                    return Err(self.err(
                        &key,
                        "use either numerator + denominator, or cells, not both",
                    ))
                }
            }
            if g.min.is_none() && g.max.is_none() {
                return Err(self.err(format!("{key}.min"), "a gate needs min or max"));
            }
            if let Some(c) = g.confidence {
                if !valid_confidence(c) {
                    return Err(self.err(format!("{key}.confidence"), CONFIDENCE_RANGE));
                }
            }
            for (k, v) in [("min", g.min), ("max", g.max)] {
                if let Some(v) = v {
                    if !v.is_finite() {
                        return Err(self.err(format!("{key}.{k}"), "must be a finite number"));
                    }
                }
            }
        }

        // capacity
        let c = &self.capacity;
        if !(c.percentile > 0.0 && c.percentile <= 100.0) {
            return Err(self.err("capacity.percentile", "must be in (0, 100]"));
        }
        if c.target_latency.0.is_zero() {
            return Err(self.err("capacity.target_latency", "must be positive"));
        }
        if !(c.start_rate.is_finite() && c.start_rate > 0.0) {
            return Err(self.err("capacity.start_rate", "must be positive"));
        }
        if !(c.max_rate.is_finite() && c.max_rate > c.start_rate) {
            return Err(self.err("capacity.max_rate", "must be larger than start_rate"));
        }
        if !(c.min_rate.is_finite() && c.min_rate > 0.0 && c.min_rate <= c.start_rate) {
            return Err(self.err(
                "capacity.min_rate",
                "must be positive and at most start_rate",
            ));
        }
        if !(c.growth.is_finite() && c.growth > 1.0 && c.growth <= 10.0) {
            return Err(self.err("capacity.growth", "must be in (1, 10]"));
        }
        if c.step_duration.0.is_zero() {
            return Err(self.err("capacity.step_duration", "must be positive"));
        }
        if !(1..=10).contains(&c.rounds) {
            return Err(self.err("capacity.rounds", "must be between 1 and 10"));
        }
        if c.refine_steps > 20 {
            return Err(self.err("capacity.refine_steps", "must be at most 20"));
        }
        if !(1..=100).contains(&c.min_repeats) {
            return Err(self.err("capacity.min_repeats", "must be between 1 and 100"));
        }
        if !(c.min_repeats..=100).contains(&c.max_repeats) {
            return Err(self.err(
                "capacity.max_repeats",
                "must be between capacity.min_repeats and 100",
            ));
        }
        if c.precision.0 <= 0.0 || !c.precision.0.is_finite() {
            return Err(self.err("capacity.precision", "must be positive"));
        }
        if !valid_confidence(c.confidence) {
            return Err(self.err("capacity.confidence", CONFIDENCE_RANGE));
        }
        if !valid_confidence(self.baseline.confidence) {
            return Err(self.err("baseline.confidence", CONFIDENCE_RANGE));
        }
        if self.run.interval.0 < Duration::from_millis(10) {
            return Err(self.err("run.interval", "must be at least 10ms"));
        }
        self.validate_events()
    }

    /// The rules of `[[event]]`.
    fn validate_events(&self) -> Result<(), ConfigError> {
        use crate::events::EventAction;
        if self.events.is_empty() {
            return Ok(());
        }
        let Length::Duration(d) = self.run.length() else {
            return Err(self.err(
                "event",
                "events need run.duration (a request-count run has no clock to schedule them on)",
            ));
        };
        let end = self.run.warmup.0 + d;
        for (i, e) in self.events.iter().enumerate() {
            let key = format!("event[{i}]");
            if e.at.0 >= end {
                return Err(self.err(
                    format!("{key}.at"),
                    format!(
                        "{} is not before the end of the run (warmup + duration = {})",
                        e.at,
                        crate::units::Dur(end)
                    ),
                ));
            }
            let cluster = self.backends.kind == BackendKind::Cluster;
            if e.action.needs_cluster() != cluster && e.action != EventAction::Reload {
                let problem = match cluster {
                    false => format!("`{}` needs backends.kind = \"cluster\"", e.action),
                    true => format!(
                        "`{}` is not supported on a cluster backend (use `failover` or `reshard`)",
                        e.action
                    ),
                };
                return Err(self.err(format!("{key}.action"), problem));
            }
            if e.action.needs_cluster() {
                let masters = self.backends.count;
                let Some(b) = e.backend else {
                    return Err(self.err(
                        format!("{key}.backend"),
                        format!("`{}` needs backend = N (a master, 0-based)", e.action),
                    ));
                };
                if b >= masters {
                    return Err(self.err(
                        format!("{key}.backend"),
                        format!("master {b} does not exist (backends.count = {masters})"),
                    ));
                }
                if e.action == EventAction::Failover && self.backends.cluster_replicas == 0 {
                    return Err(self.err(
                        format!("{key}.action"),
                        "`failover` needs backends.cluster_replicas >= 1",
                    ));
                }
                if e.action == EventAction::Reshard {
                    match (e.to, e.slots) {
                        (Some(to), Some(n))
                            if to < masters && to != b && (1..=16384).contains(&n) => {}
                        (Some(_), Some(_)) => {
                            return Err(self.err(
                                format!("{key}.to"),
                                "`reshard` needs to = another master and slots = 1..16384",
                            ))
                        }
                        _ => {
                            return Err(self.err(
                                format!("{key}.slots"),
                                "`reshard` needs to = M (the master that gets them) and slots = N",
                            ))
                        }
                    }
                }
            } else if e.to.is_some() || e.slots.is_some() {
                return Err(self.err(
                    format!("{key}.to"),
                    "to and slots are only used with action = \"reshard\"",
                ));
            }
            if e.action.on_backend() {
                let Some(b) = e.backend else {
                    return Err(self.err(
                        format!("{key}.backend"),
                        format!("`{}` needs backend = N (0-based)", e.action),
                    ));
                };
                if b >= self.backends.count {
                    return Err(self.err(
                        format!("{key}.backend"),
                        format!(
                            "backend {b} does not exist (backends.count = {})",
                            self.backends.count
                        ),
                    ));
                }
                if matches!(
                    self.backends.kind,
                    BackendKind::External | BackendKind::Embedded
                ) {
                    return Err(self.err(
                        format!("{key}.action"),
                        format!(
                            "`{}` acts on a backend process ncbench started; backends.kind = \"{}\" has none",
                            e.action,
                            self.backends.kind.as_str()
                        ),
                    ));
                }
                if e.proxy.is_some() {
                    return Err(
                        self.err(format!("{key}.proxy"), "only used with action = \"reload\"")
                    );
                }
            }
            if e.action == EventAction::Reload {
                if e.backend.is_some() {
                    return Err(self.err(
                        format!("{key}.backend"),
                        "not used with action = \"reload\"",
                    ));
                }
                match &e.proxy {
                    Some(c) if !c.is_empty() => {
                        let p = c.apply(&self.proxy);
                        if nc_hashkit::HashKind::from_name(&p.hash).is_none() {
                            return Err(self.err(format!("{key}.proxy.hash"), format!("unknown hash `{}`", p.hash)));
                        }
                        if nc_hashkit::DistributionKind::from_name(&p.distribution).is_none() {
                            return Err(self.err(
                                format!("{key}.proxy.distribution"),
                                format!("unknown distribution `{}` (ketama, modula, random)", p.distribution),
                            ));
                        }
                        if !(1..=1024).contains(&p.server_connections) {
                            return Err(self.err(format!("{key}.proxy.server_connections"), "must be between 1 and 1024"));
                        }
                        if !(1..=1024).contains(&p.iov_max) {
                            return Err(self.err(format!("{key}.proxy.iov_max"), "must be between 1 and 1024"));
                        }
                    }
                    _ => {
                        return Err(self.err(
                            format!("{key}.proxy"),
                            "a reload needs the change it makes, e.g. proxy = { server_connections = 2 }",
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// The rules of `[backends] tls` and `tls_ca`.
    fn validate_backends_tls(&self) -> Result<(), ConfigError> {
        let b = &self.backends;
        if b.tls {
            let problem = match b.kind {
                BackendKind::Embedded => {
                    Some("the embedded backend has no TLS: use kind = \"redis\" (redis-server)")
                }
                BackendKind::Cluster => Some("not supported with kind = \"cluster\""),
                BackendKind::Memcached => Some("memcached backends have no TLS here"),
                _ if self.workload.protocol == Protocol::Memcache => {
                    Some("only with workload.protocol = \"redis\" (memcached has no TLS here)")
                }
                _ => None,
            };
            if let Some(p) = problem {
                return Err(self.err("backends.tls", p));
            }
        }
        if let Some(ca) = &b.tls_ca {
            if !(b.tls && b.kind == BackendKind::External) {
                return Err(self.err(
                    "backends.tls_ca",
                    "only used with kind = \"external\" and tls = true (ncbench makes the CA of the backends it starts)",
                ));
            }
            check_readable(ca).map_err(|e| self.err("backends.tls_ca", e))?;
        }
        Ok(())
    }

    /// The rules of a target's `tls`, `server_tls` and `tls_ca`.
    fn validate_target_tls(&self, i: usize, t: &TargetSpec) -> Result<(), ConfigError> {
        let key = |k: &str| format!("target[{i}].{k}");
        let b = &self.backends;
        let tls_only = b.tls && b.kind == BackendKind::External;
        if t.kind == TargetKind::Nutcracker {
            for (set, k) in [(t.tls, "tls"), (t.server_tls, "server_tls")] {
                if set {
                    return Err(self.err(
                        key(k),
                        "nutcracker has no TLS (use kind = \"ncproxy\" or \"ncproxy-bin\")",
                    ));
                }
            }
            if tls_only {
                return Err(self.err(
                    key("kind"),
                    "nutcracker has no TLS, and the external backends (backends.tls = true) speak only TLS",
                ));
            }
        }
        if t.server_tls {
            if !t.kind.is_ncproxy() {
                return Err(self.err(
                    key("server_tls"),
                    "only used with ncproxy targets (direct: tls = true uses the backends' TLS ports)",
                ));
            }
            if !b.tls {
                return Err(self.err(
                    key("server_tls"),
                    "needs [backends] tls = true (backends with TLS ports)",
                ));
            }
            if tls_only && b.tls_ca.is_none() {
                return Err(self.err(
                    key("server_tls"),
                    "ncproxy needs a CA to verify external TLS backends: set backends.tls_ca",
                ));
            }
        } else if tls_only && t.kind.is_ncproxy() {
            return Err(self.err(
                key("server_tls"),
                "the external backends speak only TLS (backends.tls = true): set server_tls = true",
            ));
        }
        if t.kind == TargetKind::Direct && t.tls != b.tls && (t.tls || tls_only) {
            let problem = if t.tls {
                "a direct target over TLS needs [backends] tls = true"
            } else {
                "the external backends speak only TLS (backends.tls = true): set tls = true"
            };
            return Err(self.err(key("tls"), problem));
        }
        if let Some(ca) = &t.tls_ca {
            if !(t.tls && t.kind == TargetKind::External) {
                return Err(self.err(
                    key("tls_ca"),
                    "only used with kind = \"external\" and tls = true",
                ));
            }
            check_readable(ca).map_err(|e| self.err(key("tls_ca"), e))?;
        }
        Ok(())
    }

    /// The rules of `workload.protocol` and `workload.set_noreply`.
    fn validate_protocol(&self) -> Result<(), ConfigError> {
        let w = &self.workload;
        let kind = self.backends.kind;
        match w.protocol {
            Protocol::Redis => {
                if w.set_noreply {
                    return Err(self.err(
                        "workload.set_noreply",
                        "only used with workload.protocol = \"memcache\"",
                    ));
                }
                if kind == BackendKind::Memcached {
                    return Err(self.err(
                        "backends.kind",
                        "kind = \"memcached\" needs workload.protocol = \"memcache\"",
                    ));
                }
            }
            Protocol::Memcache => {
                if matches!(
                    kind,
                    BackendKind::Redis | BackendKind::Embedded | BackendKind::Cluster
                ) {
                    return Err(self.err(
                        "backends.kind",
                        format!(
                            "kind = \"{}\" speaks RESP only; protocol = \"memcache\" needs \"memcached\", \"auto\" or \"external\"",
                            kind.as_str()
                        ),
                    ));
                }
                if w.mix.incr > 0 && !self.run.preload {
                    return Err(self.err(
                        "workload.mix.incr",
                        "memcached `incr` needs an existing counter: keep run.preload = true (it writes the counters)",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Parses `[placement]` and checks every CPU against this process's CPU set.
    fn validate_placement(&mut self) -> Result<(), ConfigError> {
        let p = &self.placement;
        if p.is_empty() {
            self.placement.parsed = Placement::default();
            return Ok(());
        }
        let allowed = crate::affinity::allowed_cpus().map_err(|e| {
            self.err(
                "placement",
                format!("cannot read the CPUs this process may use: {e}"),
            )
        })?;
        let parse = |key: &str, text: &Option<String>| -> Result<Option<CpuList>, ConfigError> {
            let Some(text) = text else { return Ok(None) };
            let list = CpuList::parse(text).map_err(|e| self.err(key, e))?;
            if let Some(cpu) = list.first_outside(&allowed) {
                return Err(self.err(
                    key,
                    format!("CPU {cpu} is not available to this process (allowed: {allowed})"),
                ));
            }
            Ok(Some(list))
        };
        let parsed = Placement {
            generator: parse("placement.generator", &p.generator)?,
            proxies: parse("placement.proxies", &p.proxies)?,
            backends: parse("placement.backends", &p.backends)?,
        };
        self.placement.parsed = parsed;
        Ok(())
    }

    /// A short stable hash of the config (for matching baselines like with like).
    pub fn fingerprint(&self) -> String {
        let mut c = self.clone();
        c.source = String::new();
        let text = serde_json::to_string(&c).unwrap_or_default();
        format!("{:016x}", fnv1a64(text.as_bytes()))
    }
}

/// FNV-1a 64: a tiny stable hash for fingerprints and seeds (not for security).
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn valid_confidence(c: f64) -> bool {
    c.is_finite() && c > 0.5 && c < 1.0
}
const CONFIDENCE_RANGE: &str = "must be between 0.5 and 1 (e.g. 0.95)";

/// Whether a file named in the config can be read (checked before anything starts).
fn check_readable(path: &str) -> Result<(), String> {
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|e| format!("cannot read `{path}`: {e}"))
}

/// ncproxy's `--busy-poll` ceiling.
const MAX_BUSY_POLL_US: u32 = nc_config::cli::MAX_BUSY_POLL_US;
const BUSY_POLL_RANGE: &str = "must be between 0 and 10000 (microseconds)";

/// Splits `host:port` (`[::1]:6379` too). Returns None when malformed.
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        from_toml_str(text, "t.toml").unwrap_err().to_string()
    }

    const MIN: &str = "[[target]]\nkind = \"direct\"\n";

    #[test]
    fn quick_is_valid() {
        let c = quick();
        assert!(!c.targets.is_empty());
        assert_eq!(c.source, QUICK_NAME);
    }

    #[test]
    fn minimal_defaults() {
        let c = from_toml_str(MIN, "t.toml").unwrap();
        assert_eq!(c.workload.connections, 50);
        assert_eq!(c.workload.mix.get, 80);
        assert_eq!(c.run.length(), Length::Duration(Duration::from_secs(4)));
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = err(&format!("{MIN}[workload]\nconections = 5\n"));
        assert!(e.starts_with("t.toml: workload.conections"), "{e}");
        assert!(!e.contains('\n'));
        let e = err(&format!("{MIN}[workload.mix]\nget = 1\nsett = 2\n"));
        assert!(e.starts_with("t.toml: workload.mix.sett"), "{e}");
    }

    #[test]
    fn bad_values_name_key() {
        let e = err(&format!("{MIN}[run]\nduration = \"4 parsecs\"\n"));
        assert!(e.starts_with("t.toml: run.duration"), "{e}");
        let e = err(&format!("{MIN}[workload]\nconnections = 0\n"));
        assert_eq!(
            e,
            "t.toml: workload.connections: must be between 1 and 10000"
        );
        let e = err(&format!("{MIN}[workload]\nvalue_size = 4\n"));
        assert!(
            e.starts_with("t.toml: workload.value_size: must be at least 16"),
            "{e}"
        );
        let e = err(&format!("{MIN}[workload]\nmode = \"open\"\n"));
        assert!(e.contains("workload.rate"), "{e}");
        let e = err(&format!("{MIN}[[gate]]\nmetric = \"ops_per_sec\"\nnumerator = {{ target = \"nope\" }}\ndenominator = {{ target = \"direct\" }}\nmin = 1\n"));
        assert!(e.starts_with("t.toml: gate[0].numerator.target"), "{e}");
        let e = err("[[target]]\nkind = \"direct\"\n[[target]]\nkind = \"direct\"\n");
        assert!(e.contains("target[1].label"), "{e}");
        let e = err("");
        assert!(e.contains("target"), "{e}");
        let e = err(&format!(
            "{MIN}[[gate]]\nmetric = \"speed\"\ncells = {{}}\nmax = 1\n"
        ));
        assert!(e.starts_with("t.toml: gate[0].metric"), "{e}");
    }

    #[test]
    fn busy_poll_defaults_off_and_is_checked() {
        let c = from_toml_str(MIN, "t.toml").unwrap();
        assert_eq!(c.proxy.busy_poll_us, 0);
        let text = "[proxy]\nbusy_poll_us = 200\n[[target]]\nkind = \"ncproxy\"\n\
                    [[target]]\nkind = \"ncproxy\"\nlabel = \"spin\"\nbusy_poll_us = 50\n";
        let c = from_toml_str(text, "t.toml").unwrap();
        assert_eq!(c.proxy.busy_poll_us, 200);
        assert_eq!(c.targets[1].busy_poll_us, Some(50));
        let e = err(&format!("{MIN}[proxy]\nbusy_poll_us = 10001\n"));
        assert_eq!(
            e,
            "t.toml: proxy.busy_poll_us: must be between 0 and 10000 (microseconds)"
        );
        let e = err("[[target]]\nkind = \"nutcracker\"\nbusy_poll_us = 10\n");
        assert_eq!(
            e,
            "t.toml: target[0].busy_poll_us: only used with ncproxy targets"
        );
    }

    #[test]
    fn placement_lists_parse_and_default_to_unpinned() {
        let c = from_toml_str(MIN, "t.toml").unwrap();
        assert!(!c.placement.cpus().is_set());
        let first = crate::affinity::allowed_cpus().unwrap().cpus()[0];
        let text = format!("{MIN}[placement]\nproxies = \"{first},{first}\"\n");
        let c = from_toml_str(&text, "t").unwrap();
        let p = c.placement.cpus();
        assert_eq!(p.proxies.as_ref().unwrap().to_string(), first.to_string());
        assert_eq!((p.generator.as_ref(), p.backends.as_ref()), (None, None));
        // An unpinned config keeps the fingerprint it had before [placement] existed.
        let json = serde_json::to_string(&from_toml_str(MIN, "t").unwrap()).unwrap();
        assert!(!json.contains("placement"), "{json}");
    }

    #[test]
    fn placement_errors_name_key_and_problem() {
        let e = err(&format!("{MIN}[placement]\nproxies = \"a\"\n"));
        assert!(
            e.starts_with("t.toml: placement.proxies: `a` is not a CPU number"),
            "{e}"
        );
        let e = err(&format!("{MIN}[placement]\ngenerator = \"3-1\"\n"));
        assert_eq!(
            e,
            "t.toml: placement.generator: range `3-1` runs backwards (write 1-3)"
        );
        let e = err(&format!("{MIN}[placement]\nbackends = \"\"\n"));
        assert!(
            e.starts_with("t.toml: placement.backends: empty CPU list"),
            "{e}"
        );
        let e = err(&format!("{MIN}[placement]\nbackends = \"1,,2\"\n"));
        assert!(
            e.starts_with("t.toml: placement.backends: `1,,2` has an empty item"),
            "{e}"
        );
        let e = err(&format!("{MIN}[placement]\nproxy = \"0\"\n"));
        assert!(e.starts_with("t.toml: placement.proxy"), "{e}");
        // One past the highest CPU this process may use is never available.
        let allowed = crate::affinity::allowed_cpus().unwrap();
        let cpu = allowed.cpus().last().unwrap() + 1;
        let e = err(&format!("{MIN}[placement]\nproxies = \"{cpu}\"\n"));
        assert_eq!(
            e,
            format!(
                "t.toml: placement.proxies: CPU {cpu} is not available to this process (allowed: {allowed})"
            )
        );
    }

    #[test]
    fn value_size_forms() {
        let c = from_toml_str(
            &format!("{MIN}[workload]\nvalue_size = {{ min = 32, max = \"1KiB\" }}\n"),
            "t",
        )
        .unwrap();
        assert_eq!(c.workload.value_size.bounds(), (32, 1024));
        let c = from_toml_str(
            &format!("{MIN}[sweep]\nsend_limit = [\"none\", \"16KiB\", 512]\n"),
            "t",
        )
        .unwrap();
        assert_eq!(
            c.sweep.send_limit.unwrap(),
            vec![
                SendLimit(None),
                SendLimit(Some(16384)),
                SendLimit(Some(512))
            ]
        );
    }

    #[test]
    fn memcache_keys_parse_and_are_checked() {
        let c = from_toml_str(MIN, "t.toml").unwrap();
        assert_eq!(c.workload.protocol, Protocol::Redis);
        assert!(!c.workload.set_noreply);
        // Redis configs keep their fingerprint: the new keys are not serialized.
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            !json.contains("protocol") && !json.contains("noreply"),
            "{json}"
        );
        assert!(
            !json.contains("memcached") && !json.contains("mget_keys\":null"),
            "{json}"
        );
        let text = format!(
            "{MIN}[backends]\nkind = \"memcached\"\n[workload]\nprotocol = \"memcache\"\nset_noreply = true\n[sweep]\nmget_keys = [100, 1000]\n"
        );
        let c = from_toml_str(&text, "t.toml").unwrap();
        assert_eq!(c.workload.protocol, Protocol::Memcache);
        assert!(c.workload.set_noreply);
        assert_eq!(c.sweep.mget_keys, Some(vec![100, 1000]));

        let e = err(&format!("{MIN}[workload]\nprotocol = \"memcached\"\n"));
        assert!(e.starts_with("t.toml: workload.protocol"), "{e}");
        let e = err(&format!("{MIN}[workload]\nset_noreply = true\n"));
        assert_eq!(
            e,
            "t.toml: workload.set_noreply: only used with workload.protocol = \"memcache\""
        );
        let e = err(&format!("{MIN}[backends]\nkind = \"memcached\"\n"));
        assert_eq!(
            e,
            "t.toml: backends.kind: kind = \"memcached\" needs workload.protocol = \"memcache\""
        );
        for kind in ["embedded", "redis"] {
            let e = err(&format!(
                "{MIN}[backends]\nkind = \"{kind}\"\n[workload]\nprotocol = \"memcache\"\n"
            ));
            assert!(
                e.starts_with(&format!(
                    "t.toml: backends.kind: kind = \"{kind}\" speaks RESP only"
                )),
                "{e}"
            );
        }
        let e = err(&format!(
            "{MIN}[run]\npreload = false\n[workload]\nprotocol = \"memcache\"\n[workload.mix]\nincr = 1\n"
        ));
        assert!(
            e.starts_with("t.toml: workload.mix.incr: memcached `incr`"),
            "{e}"
        );
        let e = err(&format!("{MIN}[sweep]\nmget_keys = [0]\n"));
        assert_eq!(e, "t.toml: sweep.mget_keys[0]: must be between 1 and 10000");
        let e = err(&format!("{MIN}[sweep]\nmget_keys = []\n"));
        assert!(e.starts_with("t.toml: sweep.mget_keys: must list"), "{e}");
    }

    #[test]
    fn events_parse_and_are_checked() {
        let base = "[run]\nduration = \"4s\"\nwarmup = \"1s\"\n[backends]\nkind = \"redis\"\n[[target]]\nkind = \"ncproxy\"\n";
        let c = from_toml_str(
            &format!("{base}[[event]]\nat = \"2s\"\naction = \"kill\"\nbackend = 1\n[[event]]\nat = \"3s\"\naction = \"reload\"\nproxy = {{ server_connections = 2 }}\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.events.len(), 2);
        assert_eq!(c.events[1].label(), "reload proxy");
        // Configs without events keep their fingerprint (nothing serialized).
        let plain = from_toml_str(base, "t").unwrap();
        assert!(!serde_json::to_string(&plain).unwrap().contains("event"));
        for (ev, key, problem) in [
            (
                "at = \"5s\"\naction = \"kill\"\nbackend = 0",
                "event[0].at",
                "is not before the end",
            ),
            (
                "at = \"1s\"\naction = \"kill\"",
                "event[0].backend",
                "needs backend = N",
            ),
            (
                "at = \"1s\"\naction = \"stop\"\nbackend = 2",
                "event[0].backend",
                "backend 2 does not exist",
            ),
            (
                "at = \"1s\"\naction = \"reload\"",
                "event[0].proxy",
                "a reload needs the change",
            ),
            (
                "at = \"1s\"\naction = \"reshard\"",
                "event[0].action",
                "needs backends.kind = \"cluster\"",
            ),
            (
                "at = \"1s\"\naction = \"failover\"",
                "event[0].action",
                "needs backends.kind = \"cluster\"",
            ),
            (
                "at = \"1s\"\naction = \"explode\"",
                "event[0].action",
                "unknown variant",
            ),
            (
                "at = \"1s\"\naction = \"reload\"\nproxy = { hash = \"nope\" }",
                "event[0].proxy.hash",
                "unknown hash",
            ),
        ] {
            let e = err(&format!("{base}[[event]]\n{ev}\n"));
            assert!(
                e.starts_with(&format!("t.toml: {key}")) && e.contains(problem),
                "{ev}: {e}"
            );
        }
        let e = err("[run]\nrequests = 10\n[[target]]\nkind = \"direct\"\n[[event]]\nat = \"1s\"\naction = \"kill\"\nbackend = 0\n");
        assert!(e.contains("events need run.duration"), "{e}");
        let e = err("[run]\nduration = \"4s\"\n[backends]\nkind = \"external\"\naddresses = [\"127.0.0.1:1\"]\n[[target]]\nkind = \"direct\"\n[[event]]\nat = \"1s\"\naction = \"kill\"\nbackend = 0\n");
        assert!(e.contains("has none"), "{e}");
        let e = err(&format!("{MIN}[baseline]\nconfidence = 1.5\n"));
        assert!(e.starts_with("t.toml: baseline.confidence"), "{e}");
        let e = err(&format!(
            "{MIN}[capacity]\nmin_repeats = 5\nmax_repeats = 2\n"
        ));
        assert!(e.starts_with("t.toml: capacity.max_repeats"), "{e}");
    }

    #[test]
    fn host_port() {
        assert_eq!(
            parse_host_port("127.0.0.1:6379"),
            Some(("127.0.0.1".into(), 6379))
        );
        assert_eq!(parse_host_port("[::1]:80"), Some(("::1".into(), 80)));
        assert_eq!(parse_host_port("localhost"), None);
        assert_eq!(parse_host_port("a:0"), None);
    }

    #[test]
    fn cluster_backends() {
        let ok = |extra: &str| {
            from_toml_str(
                &format!("[[target]]\nkind = \"ncproxy\"\n[backends]\nkind = \"cluster\"\ncount = 3\n{extra}"),
                "t.toml",
            )
        };
        let c = ok("[workload.mix]\nget = 1\nset = 1\nmget = 1\n").expect("a cluster config");
        assert_eq!(c.backends.kind, BackendKind::Cluster);
        assert_eq!(c.backends.cluster_replicas, 1);
        let events =
            "[[event]]\nat = \"1s\"\naction = \"reshard\"\nbackend = 0\nto = 1\nslots = 100\n\
                      [[event]]\nat = \"2s\"\naction = \"failover\"\nbackend = 2\n";
        assert!(ok(events).is_ok(), "{:?}", ok(events).err());
        for (text, expected) in [
            (
                "[[target]]\nkind = \"ncproxy\"\n[backends]\nkind = \"cluster\"\ncount = 2\n",
                "t.toml: backends.count: kind = \"cluster\" needs 3 to 16 masters",
            ),
            (
                "[[target]]\nkind = \"ncproxy\"\n[backends]\ncluster_replicas = 2\n",
                "t.toml: backends.cluster_replicas: only used with kind = \"cluster\"",
            ),
            (
                "[[target]]\nkind = \"direct\"\n[backends]\nkind = \"cluster\"\ncount = 3\n[workload.mix]\nget = 1\nmget = 1\n",
                "t.toml: workload.mix.mget: a direct target cannot send a cross-slot MGET",
            ),
            (
                "[[target]]\nkind = \"ncproxy\"\n[backends]\nkind = \"cluster\"\ncount = 3\n[[event]]\nat = \"1s\"\naction = \"kill\"\nbackend = 0\n",
                "t.toml: event[0].action: `kill` is not supported on a cluster backend",
            ),
            (
                "[[target]]\nkind = \"ncproxy\"\n[backends]\nkind = \"redis\"\n[[event]]\nat = \"1s\"\naction = \"failover\"\nbackend = 0\n",
                "t.toml: event[0].action: `failover` needs backends.kind = \"cluster\"",
            ),
            (
                "[[target]]\nkind = \"ncproxy\"\n[backends]\nkind = \"cluster\"\ncount = 3\n[[event]]\nat = \"1s\"\naction = \"reshard\"\nbackend = 0\n",
                "t.toml: event[0].slots: `reshard` needs to = M",
            ),
            (
                "[[target]]\nkind = \"ncproxy\"\n[backends]\nkind = \"cluster\"\ncount = 3\n[[event]]\nat = \"1s\"\naction = \"reshard\"\nbackend = 0\nto = 0\nslots = 5\n",
                "t.toml: event[0].to: `reshard` needs to = another master",
            ),
            (
                "[[target]]\nkind = \"ncproxy\"\n[backends]\nkind = \"cluster\"\ncount = 3\ncluster_replicas = 0\n[[event]]\nat = \"1s\"\naction = \"failover\"\nbackend = 1\n",
                "t.toml: event[0].action: `failover` needs backends.cluster_replicas >= 1",
            ),
        ] {
            let e = err(text);
            assert!(e.starts_with(expected), "{e}\nexpected: {expected}");
        }
    }

    #[test]
    fn tls_keys_parse_and_their_rules_name_the_key() {
        let text = "[backends]\ntls = true\n[[target]]\nkind = \"ncproxy\"\ntls = true\nserver_tls = true\n\
                    [[target]]\nkind = \"direct\"\ntls = true\n[[target]]\nkind = \"nutcracker\"\n";
        let c = from_toml_str(text, "t.toml").unwrap();
        assert!(c.backends.tls);
        assert!(c.targets[0].tls && c.targets[0].server_tls);
        assert!(c.targets[1].tls && !c.targets[1].server_tls);
        // Plain configs keep their fingerprint: no TLS keys when off.
        let json = serde_json::to_string(&from_toml_str(MIN, "t").unwrap()).unwrap();
        assert!(!json.contains("tls"), "{json}");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let ca = ca.display().to_string();
        for (text, expected) in [
            (
                "[[target]]\nkind = \"nutcracker\"\ntls = true\n".to_string(),
                "t.toml: target[0].tls: nutcracker has no TLS (use kind = \"ncproxy\" or \"ncproxy-bin\")",
            ),
            (
                "[backends]\ntls = true\n[[target]]\nkind = \"nutcracker\"\nserver_tls = true\n".into(),
                "t.toml: target[0].server_tls: nutcracker has no TLS",
            ),
            (
                "[[target]]\nkind = \"ncproxy\"\nserver_tls = true\n".into(),
                "t.toml: target[0].server_tls: needs [backends] tls = true",
            ),
            (
                "[backends]\ntls = true\n[[target]]\nkind = \"direct\"\nserver_tls = true\n".into(),
                "t.toml: target[0].server_tls: only used with ncproxy targets",
            ),
            (
                "[[target]]\nkind = \"direct\"\ntls = true\n".into(),
                "t.toml: target[0].tls: a direct target over TLS needs [backends] tls = true",
            ),
            (
                "[backends]\nkind = \"embedded\"\ntls = true\n[[target]]\nkind = \"direct\"\n".into(),
                "t.toml: backends.tls: the embedded backend has no TLS",
            ),
            (
                "[backends]\ntls = true\n[[target]]\nkind = \"direct\"\n[workload]\nprotocol = \"memcache\"\n".into(),
                "t.toml: backends.tls: only with workload.protocol = \"redis\"",
            ),
            (
                "[backends]\ntls = true\ntls_ca = \"/x\"\n[[target]]\nkind = \"direct\"\n".into(),
                "t.toml: backends.tls_ca: only used with kind = \"external\" and tls = true",
            ),
            (
                "[backends]\nkind = \"external\"\naddresses = [\"127.0.0.1:1\"]\ntls = true\n[[target]]\nkind = \"direct\"\n".into(),
                "t.toml: target[0].tls: the external backends speak only TLS",
            ),
            (
                "[backends]\nkind = \"external\"\naddresses = [\"127.0.0.1:1\"]\ntls = true\n[[target]]\nkind = \"ncproxy\"\nserver_tls = true\n".into(),
                "t.toml: target[0].server_tls: ncproxy needs a CA to verify external TLS backends",
            ),
            (
                "[backends]\nkind = \"external\"\naddresses = [\"127.0.0.1:1\"]\ntls = true\n[[target]]\nkind = \"nutcracker\"\n".into(),
                "t.toml: target[0].kind: nutcracker has no TLS, and the external backends",
            ),
            (
                format!("[[target]]\nkind = \"ncproxy\"\ntls = true\ntls_ca = \"{ca}\"\n"),
                "t.toml: target[0].tls_ca: only used with kind = \"external\" and tls = true",
            ),
            (
                "[[target]]\nkind = \"external\"\naddress = \"127.0.0.1:1\"\ntls = true\ntls_ca = \"/no/such/ca.pem\"\n".into(),
                "t.toml: target[0].tls_ca: cannot read `/no/such/ca.pem`",
            ),
        ] {
            let e = err(&text);
            assert!(e.starts_with(expected), "{e}\nexpected: {expected}");
            assert!(!e.contains('\n'), "{e}");
        }
        let ok = format!(
            "[backends]\nkind = \"external\"\naddresses = [\"127.0.0.1:1\"]\ntls = true\ntls_ca = \"{ca}\"\n\
             [[target]]\nkind = \"direct\"\ntls = true\n[[target]]\nkind = \"external\"\naddress = \"127.0.0.1:2\"\ntls = true\ntls_ca = \"{ca}\"\n\
             [[target]]\nkind = \"ncproxy\"\nserver_tls = true\n"
        );
        from_toml_str(&ok, "t.toml").unwrap();
    }
}
