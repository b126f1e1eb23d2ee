//! Rendering nutcracker YAML pools from structs.
//!
//! Unset (`None`) keys are left out, so the proxy's defaults apply. String
//! values that YAML could misread (`hash_tag: "{}"`, passwords) are written as
//! double-quoted scalars, which nutcracker's libyaml-based parser accepts.
//!
//! ```
//! use nc_harness::PoolConfig;
//! let yaml = PoolConfig::redis("alpha", 22121)
//!     .hash("murmur")
//!     .distribution("modula")
//!     .hash_tag("{}")
//!     .server("127.0.0.1:6379", 2, Some("s1"))
//!     .render();
//! assert!(yaml.contains("  hash_tag: \"{}\"\n"));
//! assert!(yaml.contains("   - 127.0.0.1:6379:2 s1\n"));
//! ```

use std::fmt::{Display, Write};

/// One `servers:` entry: `addr:weight [name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// `host:port` or an absolute unix socket path.
    pub addr: String,
    /// Weight (> 0 for a valid config).
    pub weight: u32,
    /// Optional name (used for hashing and stats instead of `host:port`).
    pub name: Option<String>,
}

impl ServerSpec {
    /// The YAML list item text, e.g. `127.0.0.1:6379:1 s1`.
    pub fn render(&self) -> String {
        match &self.name {
            Some(n) => format!("{}:{} {}", self.addr, self.weight, n),
            None => format!("{}:{}", self.addr, self.weight),
        }
    }
}

/// One pool. Build with [`PoolConfig::redis`] / [`PoolConfig::memcache`] and
/// the builder methods, or fill the public fields directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Pool name (top-level key).
    pub name: String,
    /// `listen:` value, e.g. `127.0.0.1:22121` or `/tmp/p.sock 0666`.
    pub listen: String,
    /// `redis:` (`None` = key omitted = memcache).
    pub redis: Option<bool>,
    /// `hash:`.
    pub hash: Option<String>,
    /// `hash_tag:` (two characters).
    pub hash_tag: Option<String>,
    /// `distribution:`.
    pub distribution: Option<String>,
    /// `timeout:` in ms.
    pub timeout: Option<u64>,
    /// `backlog:`.
    pub backlog: Option<u32>,
    /// `client_connections:`.
    pub client_connections: Option<u32>,
    /// `preconnect:`.
    pub preconnect: Option<bool>,
    /// `tcpkeepalive:`.
    pub tcpkeepalive: Option<bool>,
    /// `redis_auth:`.
    pub redis_auth: Option<String>,
    /// `redis_db:`.
    pub redis_db: Option<u32>,
    /// `auto_eject_hosts:`.
    pub auto_eject_hosts: Option<bool>,
    /// `server_connections:`.
    pub server_connections: Option<u32>,
    /// `server_retry_timeout:` in ms.
    pub server_retry_timeout: Option<u64>,
    /// `server_failure_limit:`.
    pub server_failure_limit: Option<u32>,
    /// Further `key: value` lines, written verbatim before `servers:`
    /// (ncproxy extensions, or deliberately invalid keys for config tests).
    pub extra: Vec<(String, String)>,
    /// The `servers:` list, in file order.
    pub servers: Vec<ServerSpec>,
}

impl PoolConfig {
    /// A pool with only `listen:` set (no `redis:` key) and no servers.
    pub fn new(name: impl Into<String>, listen: impl Into<String>) -> Self {
        PoolConfig {
            name: name.into(),
            listen: listen.into(),
            redis: None,
            hash: None,
            hash_tag: None,
            distribution: None,
            timeout: None,
            backlog: None,
            client_connections: None,
            preconnect: None,
            tcpkeepalive: None,
            redis_auth: None,
            redis_db: None,
            auto_eject_hosts: None,
            server_connections: None,
            server_retry_timeout: None,
            server_failure_limit: None,
            extra: Vec::new(),
            servers: Vec::new(),
        }
    }

    /// A `redis: true` pool listening on `127.0.0.1:<port>`.
    pub fn redis(name: impl Into<String>, port: u16) -> Self {
        let mut p = Self::new(name, format!("127.0.0.1:{port}"));
        p.redis = Some(true);
        p
    }

    /// A memcache pool (`redis: false`) listening on `127.0.0.1:<port>`.
    pub fn memcache(name: impl Into<String>, port: u16) -> Self {
        let mut p = Self::new(name, format!("127.0.0.1:{port}"));
        p.redis = Some(false);
        p
    }

    /// Appends a server (`addr` is anything `Display`, e.g. a `SocketAddr`).
    pub fn server(mut self, addr: impl Display, weight: u32, name: Option<&str>) -> Self {
        self.servers.push(ServerSpec {
            addr: addr.to_string(),
            weight,
            name: name.map(str::to_string),
        });
        self
    }

    /// Replaces the `listen:` value (e.g. a unix socket
    /// `"{dir}/proxy.sock 0600"`, see [`crate::ProxyProcess`]).
    pub fn listen(mut self, v: &str) -> Self {
        self.listen = v.into();
        self
    }

    /// Sets `hash:`.
    pub fn hash(mut self, v: &str) -> Self {
        self.hash = Some(v.into());
        self
    }

    /// Sets `hash_tag:`.
    pub fn hash_tag(mut self, v: &str) -> Self {
        self.hash_tag = Some(v.into());
        self
    }

    /// Sets `distribution:`.
    pub fn distribution(mut self, v: &str) -> Self {
        self.distribution = Some(v.into());
        self
    }

    /// Sets `timeout:` (ms).
    pub fn timeout(mut self, ms: u64) -> Self {
        self.timeout = Some(ms);
        self
    }

    /// Sets `redis_auth:`.
    pub fn redis_auth(mut self, pw: &str) -> Self {
        self.redis_auth = Some(pw.into());
        self
    }

    /// Sets `redis_db:`.
    pub fn redis_db(mut self, db: u32) -> Self {
        self.redis_db = Some(db);
        self
    }

    /// Sets `preconnect:`.
    pub fn preconnect(mut self, v: bool) -> Self {
        self.preconnect = Some(v);
        self
    }

    /// Sets `auto_eject_hosts`, `server_failure_limit` and
    /// `server_retry_timeout` together.
    pub fn auto_eject(mut self, failure_limit: u32, retry_timeout_ms: u64) -> Self {
        self.auto_eject_hosts = Some(true);
        self.server_failure_limit = Some(failure_limit);
        self.server_retry_timeout = Some(retry_timeout_ms);
        self
    }

    /// Sets `server_connections:`.
    pub fn server_connections(mut self, n: u32) -> Self {
        self.server_connections = Some(n);
        self
    }

    /// Adds a verbatim `key: value` line.
    pub fn extra(mut self, key: &str, value: &str) -> Self {
        self.extra.push((key.into(), value.into()));
        self
    }

    /// This pool as a YAML document (one pool).
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    /// Appends this pool's YAML to `out`.
    pub fn render_into(&self, out: &mut String) {
        let mut lines: Vec<(&str, String)> = vec![("listen", self.listen.clone())];
        let mut opt = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                lines.push((k, v));
            }
        };
        opt("hash", self.hash.clone());
        opt("hash_tag", self.hash_tag.as_deref().map(quote));
        opt("distribution", self.distribution.clone());
        opt("timeout", self.timeout.map(|v| v.to_string()));
        opt("backlog", self.backlog.map(|v| v.to_string()));
        opt(
            "client_connections",
            self.client_connections.map(|v| v.to_string()),
        );
        opt("preconnect", self.preconnect.map(|v| v.to_string()));
        opt("tcpkeepalive", self.tcpkeepalive.map(|v| v.to_string()));
        opt("redis", self.redis.map(|v| v.to_string()));
        opt("redis_auth", self.redis_auth.as_deref().map(quote));
        opt("redis_db", self.redis_db.map(|v| v.to_string()));
        opt(
            "auto_eject_hosts",
            self.auto_eject_hosts.map(|v| v.to_string()),
        );
        opt(
            "server_connections",
            self.server_connections.map(|v| v.to_string()),
        );
        opt(
            "server_retry_timeout",
            self.server_retry_timeout.map(|v| v.to_string()),
        );
        opt(
            "server_failure_limit",
            self.server_failure_limit.map(|v| v.to_string()),
        );
        let _ = writeln!(out, "{}:", self.name);
        for (k, v) in lines {
            let _ = writeln!(out, "  {k}: {v}");
        }
        for (k, v) in &self.extra {
            let _ = writeln!(out, "  {k}: {v}");
        }
        let _ = writeln!(out, "  servers:");
        for s in &self.servers {
            let _ = writeln!(out, "   - {}", s.render());
        }
    }
}

/// Renders several pools into one YAML document.
pub fn render_config(pools: &[PoolConfig]) -> String {
    let mut out = String::new();
    for p in pools {
        p.render_into(&mut out);
    }
    out
}

/// A YAML double-quoted scalar.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            _ => q.push(c),
        }
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sample() -> PoolConfig {
        PoolConfig::redis("alpha", 22121)
            .hash("fnv1a_64")
            .hash_tag("{}")
            .distribution("ketama")
            .timeout(400)
            .redis_auth("pa\"ss")
            .redis_db(3)
            .preconnect(true)
            .auto_eject(2, 30000)
            .server_connections(1)
            .server("127.0.0.1:7001", 1, Some("s1"))
            .server("127.0.0.1:7002", 3, None)
    }

    #[test]
    fn renders_exactly() {
        let want = "alpha:\n  listen: 127.0.0.1:22121\n  hash: fnv1a_64\n  hash_tag: \"{}\"\n  \
                    distribution: ketama\n  timeout: 400\n  preconnect: true\n  redis: true\n  \
                    redis_auth: \"pa\\\"ss\"\n  redis_db: 3\n  auto_eject_hosts: true\n  \
                    server_connections: 1\n  server_retry_timeout: 30000\n  \
                    server_failure_limit: 2\n  servers:\n   - 127.0.0.1:7001:1 s1\n   \
                    - 127.0.0.1:7002:3\n";
        assert_eq!(sample().render(), want);
        let minimal = PoolConfig::new("m", "/tmp/x.sock 0600").server("/tmp/r.sock", 1, None);
        assert_eq!(
            minimal.render(),
            "m:\n  listen: /tmp/x.sock 0600\n  servers:\n   - /tmp/r.sock:1\n"
        );
    }

    #[test]
    fn nutcracker_accepts_the_rendered_config() {
        let bin = crate::Nutcracker::binary().expect("nutcracker must be installed");
        let dir = tempfile::tempdir().unwrap();
        let mut b = sample();
        b.name = "beta".into();
        b.listen = "127.0.0.1:22122".into();
        b.hash_tag = Some("$$".into());
        b.redis_auth = None;
        let m = PoolConfig::memcache("gamma", 22123)
            .hash("murmur")
            .distribution("modula")
            .server("127.0.0.1:11211", 1, None);
        let path = dir.path().join("c.yml");
        std::fs::write(&path, render_config(&[sample(), b, m])).unwrap();
        let out = Command::new(&bin)
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("syntax is ok"), "{text}");
    }
}
