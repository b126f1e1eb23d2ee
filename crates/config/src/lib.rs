//! nutcracker (twemproxy 0.5.0) configuration file and command line.
//!
//! Layout:
//! - [`Config`] / [`Pool`] / [`Server`]: the validated YAML configuration, with
//!   nutcracker's defaults applied and its ordering (pools by name, servers by
//!   name: shorter first, then bytewise).
//! - `yaml` (private): libyaml-compatible pre-validation on top of yaml-rust2,
//!   reproducing nutcracker's document, token and structure checks.
//! - `conf` (private): the directive handlers (`conf_set_num`,
//!   `conf_set_listen`, `conf_add_server`, ...) and post-validation.
//! - [`error`]: [`ConfigError`], which renders exactly the lines nutcracker logs
//!   and prints for a rejected file.
//! - `security` (private): the TLS and health-check extension keys.
//! - [`cli`]: nutcracker's getopt_long command line plus ncproxy's extensions.
//!
//! Nothing here exits the process or prints; the binary decides what to write.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

pub mod cli;
mod conf;
pub mod error;
mod security;
mod yaml;

pub use error::{syntax_invalid_line, syntax_ok_line, ConfigError, ConfigErrorKind, LogLine};
pub use nc_hashkit::{DistributionKind, HashKind};
pub use security::{ListenTls, ServerTls};

/// `hash:` default (CONF_DEFAULT_HASH).
pub const DEFAULT_HASH: HashKind = HashKind::Fnv1a_64;
/// `distribution:` default (CONF_DEFAULT_DIST).
pub const DEFAULT_DISTRIBUTION: DistributionKind = DistributionKind::Ketama;
/// `backlog:` default (CONF_DEFAULT_LISTEN_BACKLOG).
pub const DEFAULT_BACKLOG: u32 = 512;
/// `server_connections:` default (CONF_DEFAULT_SERVER_CONNECTIONS).
pub const DEFAULT_SERVER_CONNECTIONS: u32 = 1;
/// `server_retry_timeout:` default in ms (CONF_DEFAULT_SERVER_RETRY_TIMEOUT).
pub const DEFAULT_SERVER_RETRY_TIMEOUT_MS: u64 = 30_000;
/// `server_failure_limit:` default (CONF_DEFAULT_SERVER_FAILURE_LIMIT).
pub const DEFAULT_SERVER_FAILURE_LIMIT: u32 = 2;
/// Servers on this port are named `host` instead of `host:port`
/// (CONF_DEFAULT_KETAMA_PORT, libmemcached compatibility).
pub const KETAMA_PORT: u16 = 11211;
/// `iov_max:` (ncproxy extension) default and bounds.
pub const DEFAULT_IOV_MAX: usize = 128;
pub const MIN_IOV_MAX: usize = 1;
pub const MAX_IOV_MAX: usize = 1024;
/// Longest unix socket path nutcracker accepts (sizeof(sun_path) - 1).
pub const MAX_UNIX_PATH: usize = 107;

/// A parsed, validated nutcracker configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The path the configuration was loaded from, as given.
    pub path: String,
    /// Pools in nutcracker's order. nutcracker sorts them by listen string
    /// (to find duplicates) and then by name, so the final order is by name
    /// (shorter first, then bytewise); this is the stats and index order.
    pub pools: Vec<Pool>,
}

/// A pool's `listen:` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `host:port`, split at the last `:` and resolved when the file is parsed
    /// (getaddrinfo, first result), like nutcracker.
    Tcp {
        host: String,
        port: u16,
        addr: SocketAddr,
        /// The value as written (`127.0.0.1:22121`), used in messages and stats.
        text: String,
    },
    /// `/path [perm]`: a unix socket, chmod'ed to `perm` after bind.
    Unix {
        path: PathBuf,
        /// Octal permission; `None` when absent or 0 (nutcracker skips the
        /// chmod when the parsed value is 0).
        perm: Option<u32>,
        /// The value as written (`/tmp/x.sock 0666`).
        text: String,
    },
}

impl Listen {
    /// The `listen:` value as written; nutcracker compares pools on it.
    pub fn text(&self) -> &str {
        match self {
            Listen::Tcp { text, .. } | Listen::Unix { text, .. } => text,
        }
    }
}

/// How a server connection writes queued requests (ncproxy extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendMode {
    /// Gather all queued requests into one vectored write (like nutcracker).
    #[default]
    Batched,
    /// One write per request.
    PerMessage,
}

impl SendMode {
    /// The config/CLI spelling.
    pub fn name(self) -> &'static str {
        match self {
            SendMode::Batched => "batched",
            SendMode::PerMessage => "per_message",
        }
    }

    /// Parses `batched` or `per_message` (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<SendMode> {
        match name {
            "batched" => Some(SendMode::Batched),
            "per_message" => Some(SendMode::PerMessage),
            _ => None,
        }
    }
}

/// One pool (a top-level key of the YAML file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub listen: Listen,
    pub hash: HashKind,
    /// Two bytes, e.g. `{}`; the key part between them is hashed.
    pub hash_tag: Option<[u8; 2]>,
    pub distribution: DistributionKind,
    /// Server response timeout; `None` when absent or 0 (nutcracker: <= 0).
    pub timeout_ms: Option<u64>,
    pub backlog: u32,
    /// What nutcracker uses: always 0, because conf_validate_pool resets the
    /// configured value unconditionally (twemproxy issue #477).
    pub client_connections: u32,
    /// The `client_connections:` value as configured (0 when absent); ncproxy
    /// enforces it, a documented difference from nutcracker.
    pub client_connections_configured: u32,
    pub redis: bool,
    pub tcpkeepalive: bool,
    /// Extension: SO_REUSEPORT on the listener. Upstream HEAD accepts this key;
    /// nutcracker 0.5.0 rejects it as unknown.
    pub reuseport: bool,
    /// `None` when absent or empty (nutcracker ignores an empty password).
    pub redis_auth: Option<String>,
    pub redis_db: u32,
    pub preconnect: bool,
    pub auto_eject_hosts: bool,
    pub server_connections: u32,
    pub server_retry_timeout_ms: u64,
    pub server_failure_limit: u32,
    /// Sorted by name as nutcracker sorts them; this is the index order used by
    /// modula distribution and the stats output.
    pub servers: Vec<Server>,
    /// Extension `send_mode: batched | per_message`.
    pub send_mode: SendMode,
    /// Extension `iov_max:` (1..=1024): most buffers per vectored write.
    pub iov_max: usize,
    /// Extension `send_limit:` (bytes, > 0): most bytes per write; `None` =
    /// unlimited.
    pub send_limit: Option<usize>,
    /// Extension `client_output_limit:` (bytes): a client whose unsent replies
    /// exceed it is closed; 0 (the default) = unlimited, as nutcracker.
    pub client_output_limit: usize,
    /// Extension `distribution: redis_cluster`: `servers:` are seed nodes and
    /// keys route by Redis Cluster slot (`hash`, `hash_tag` and ejection do
    /// not apply). `None` for every other distribution.
    pub cluster: Option<ClusterConfig>,
    /// Extension `tls_cert`/`tls_key`/`tls_client_ca`: the listener speaks TLS.
    pub tls: Option<ListenTls>,
    /// Extension `server_tls: true` and its keys: backends are reached over TLS.
    pub server_tls: Option<ServerTls>,
    /// Extension `health_check_interval:` (ms): a PING/`version` to every
    /// server this often; 0 (the default) = no active checks.
    pub health_check_interval_ms: u64,
    /// Extension `auto_eject_drop:`: `true` (the default, nutcracker's
    /// behaviour) removes an ejected server from the ring; `false` keeps it
    /// there and fails its keys at once.
    pub auto_eject_drop: bool,
}

/// A `distribution: redis_cluster` pool's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Extension `cluster_read:` where read-only commands go.
    pub read: ClusterRead,
    /// Extension `cluster_refresh_interval:` (ms): the periodic topology
    /// refresh, on top of the refreshes MOVED and failures trigger.
    pub refresh_interval_ms: u64,
}

/// `cluster_read: master | prefer_replica | replica`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterRead {
    /// Every command to the slot's master (the default).
    #[default]
    Master,
    /// Read-only commands to a replica of the slot when the cluster lists
    /// one, else to the master.
    PreferReplica,
    /// Read-only commands to replicas only; without one, an error.
    Replica,
}

impl ClusterRead {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            ClusterRead::Master => "master",
            ClusterRead::PreferReplica => "prefer_replica",
            ClusterRead::Replica => "replica",
        }
    }

    /// Parses `master`, `prefer_replica` or `replica`.
    pub fn from_name(name: &str) -> Option<ClusterRead> {
        [
            ClusterRead::Master,
            ClusterRead::PreferReplica,
            ClusterRead::Replica,
        ]
        .into_iter()
        .find(|r| r.name() == name)
    }
}

/// The `distribution:` value that makes a pool a Redis Cluster pool.
pub const REDIS_CLUSTER_DISTRIBUTION: &str = "redis_cluster";
/// `cluster_refresh_interval:` default (ms).
pub const DEFAULT_CLUSTER_REFRESH_INTERVAL_MS: u64 = 5000;

/// A backend server address. Host names are kept unresolved: nutcracker
/// resolves them at every (re)connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddr {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// One `servers:` entry: `host:port:weight [name]` or `/path:weight [name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Hash and stats name: the explicit name if given; else `host:port` as
    /// written; else just `host` when the port is 11211. For a unix socket
    /// without a name nutcracker's arithmetic yields `/path:` (trailing colon),
    /// which is reproduced.
    pub name: String,
    pub addr: ServerAddr,
    pub weight: u32,
    /// The entry without its name: `host:port:weight` as written.
    pub pname: String,
}

impl Config {
    /// Reads and validates a configuration file like nutcracker's conf_create.
    pub fn load(path: &str) -> Result<Config, ConfigError> {
        let bytes = conf::read_file(path)?;
        conf::parse(path, &bytes)
    }

    /// What `-t` says besides "syntax is ok": the settings a pool has that
    /// do not apply to it (a `redis_cluster` pool's `hash` and `hash_tag`).
    pub fn notes(&self) -> Vec<String> {
        self.pools
            .iter()
            .filter(|pool| pool.cluster.is_some())
            .map(|pool| {
                format!(
                    "nutcracker: pool '{}' routes by Redis Cluster hash slot (CRC16 with the {{tag}} rule); hash, hash_tag, distribution weights and auto_eject_hosts do not apply",
                    pool.name
                )
            })
            .collect()
    }

    /// Validates configuration text; `path` is only used in messages.
    pub fn from_yaml_str(text: &str, path: &str) -> Result<Config, ConfigError> {
        conf::parse(path, text.as_bytes())
    }

    /// Like [`Config::from_yaml_str`] for raw bytes (invalid UTF-8 is reported
    /// the way libyaml's reader reports it).
    pub fn from_yaml_bytes(bytes: &[u8], path: &str) -> Result<Config, ConfigError> {
        conf::parse(path, bytes)
    }
}
