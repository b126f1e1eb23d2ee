//! Directive parsing and post-validation (nutcracker's conf_parse and
//! conf_post_validate).
//!
//! The parser walks the pre-validated events with the same argument stack,
//! depth and sequence flag as nc_conf.c's conf_parse_core, so directives are
//! applied — and fail — in file order, and the first failure is the one
//! nutcracker reports. Values are checked with the same primitives nutcracker
//! uses: `nc_atoi` (digits only, 32-bit wrap-around), `strtol(.., 8)` for
//! socket permissions, right-to-left splitting for `listen` and `servers`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use nc_hashkit::{DistributionKind, HashKind};

use crate::error::{ConfigError, ConfigErrorKind, LogLine};
use crate::yaml::{self, Ev};
use crate::{
    ClusterConfig, ClusterRead, Config, Listen, Pool, SendMode, Server, ServerAddr,
    DEFAULT_BACKLOG, DEFAULT_CLUSTER_REFRESH_INTERVAL_MS, DEFAULT_DISTRIBUTION, DEFAULT_HASH,
    DEFAULT_IOV_MAX, DEFAULT_SERVER_CONNECTIONS, DEFAULT_SERVER_FAILURE_LIMIT,
    DEFAULT_SERVER_RETRY_TIMEOUT_MS, KETAMA_PORT, MAX_IOV_MAX, MAX_UNIX_PATH, MIN_IOV_MAX,
    REDIS_CLUSTER_DISTRIBUTION,
};

/// nc_conf.c line of `log_error("conf: directive \"%.*s\" %s", ...)`.
pub(crate) const DIRECTIVE_LINE: u32 = 529;

/// Reads the file like conf_open + libyaml's file reader.
pub(crate) fn read_file(path: &str) -> Result<Vec<u8>, ConfigError> {
    let mut file = std::fs::File::open(path).map_err(|e| {
        ConfigError::one(
            path,
            ConfigErrorKind::Open,
            LogLine::conf(
                764,
                format!(
                    "conf: failed to open configuration '{}': {}",
                    cstr(path),
                    strerror(&e)
                ),
            ),
        )
    })?;
    let mut bytes = Vec::new();
    // fopen succeeds on a directory; the read then fails inside libyaml's
    // reader, which nutcracker reports as a load failure (err 2).
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|_| {
        ConfigError::one(
            path,
            ConfigErrorKind::Yaml,
            LogLine::conf(828, "conf: failed (err 2) to get the next yaml document"),
        )
    })?;
    Ok(bytes)
}

/// strerror(3) text of an OS error: Rust appends " (os error N)".
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// What printf's `%s`/`%.*s` shows of a string: everything before a NUL.
fn cstr(s: &str) -> &str {
    s.split('\0').next().unwrap_or("")
}

/// What nutcracker's conf_push_scalar keeps of a scalar: string_copy uses
/// strndup, so the data stops at the first NUL while the length stays that of
/// the YAML scalar. The bytes past the NUL are heap garbage there; we use NULs,
/// which makes every such value behave as if it ended at the NUL.
fn c_copy(value: &str) -> Cow<'_, str> {
    match value.find('\0') {
        None => Cow::Borrowed(value),
        Some(nul) => {
            let mut s = String::with_capacity(value.len());
            s.push_str(&value[..nul]);
            s.extend(std::iter::repeat_n('\0', value.len() - nul));
            Cow::Owned(s)
        }
    }
}

/// nutcracker's string_compare: shorter first, then strncmp (which stops at
/// a NUL byte).
fn string_compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return a.len().cmp(&b.len());
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
        if *x == 0 {
            break;
        }
    }
    Ordering::Equal
}

/// nc_atoi: digits only, non-empty, accumulated in a wrapping 32-bit int;
/// any non-digit or a negative result gives -1.
pub(crate) fn nc_atoi(s: &[u8]) -> i32 {
    if s.is_empty() {
        return -1;
    }
    let mut value: i32 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return -1;
        }
        value = value.wrapping_mul(10).wrapping_add(i32::from(c - b'0'));
    }
    if value < 0 {
        -1
    } else {
        value
    }
}

/// nc_valid_port.
pub(crate) fn valid_port(n: i32) -> bool {
    (1..=i32::from(u16::MAX)).contains(&n)
}

/// `(mode_t)strtol(s, NULL, 8)` plus the errno check: `None` on overflow.
fn strtol_octal_mode(s: &[u8]) -> Option<u32> {
    let s = s.split(|&b| b == 0).next().unwrap_or(&[]);
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut magnitude: u128 = 0;
    while let Some(&c) = s.get(i) {
        if !(b'0'..=b'7').contains(&c) {
            break;
        }
        magnitude = (magnitude * 8 + u128::from(c - b'0')).min(1 << 64);
        i += 1;
    }
    let limit = if negative {
        1u128 << 63
    } else {
        (1u128 << 63) - 1
    };
    if magnitude > limit {
        return None; // ERANGE
    }
    let value = if negative {
        (magnitude as i128).wrapping_neg() as i64
    } else {
        magnitude as i64
    };
    // mode_t is 32 bits: the cast keeps the low bits.
    Some(value as u32)
}

/// Why a directive handler rejected its value.
pub(crate) enum SetError {
    /// `conf: directive "<key>" <reason>`.
    Invalid(String),
    /// Address resolution failed: nc_util.c logs first, then the directive
    /// fails with CONF_ERROR ("has an invalid value").
    Resolve(Option<LogLine>),
}

pub(crate) const DUPLICATE: &str = "is a duplicate";

fn invalid(reason: &str) -> SetError {
    SetError::Invalid(reason.to_owned())
}

/// A pool while its directives are being read; `None` is CONF_UNSET.
#[derive(Default)]
struct PoolBuilder {
    name: String,
    listen: Option<Listen>,
    hash: Option<HashKind>,
    hash_tag: Option<[u8; 2]>,
    distribution: Option<DistributionKind>,
    timeout: Option<i32>,
    backlog: Option<i32>,
    client_connections: Option<i32>,
    redis: Option<bool>,
    tcpkeepalive: Option<bool>,
    reuseport: Option<bool>,
    redis_auth: Option<String>,
    redis_db: Option<i32>,
    preconnect: Option<bool>,
    auto_eject_hosts: Option<bool>,
    server_connections: Option<i32>,
    server_retry_timeout: Option<i32>,
    server_failure_limit: Option<i32>,
    servers: Vec<Server>,
    send_mode: Option<SendMode>,
    iov_max: Option<i32>,
    send_limit: Option<i32>,
    client_output_limit: Option<i32>,
    redis_cluster: bool,
    cluster_read: Option<ClusterRead>,
    cluster_refresh_interval: Option<i32>,
    /// TLS and health keys (ncproxy extensions).
    security: crate::security::SecurityKeys,
}

pub(crate) fn set_num(field: &mut Option<i32>, value: &str) -> Result<(), SetError> {
    if field.is_some() {
        return Err(invalid(DUPLICATE));
    }
    let n = nc_atoi(value.as_bytes());
    if n < 0 {
        return Err(invalid("is not a number"));
    }
    *field = Some(n);
    Ok(())
}

pub(crate) fn set_bool(field: &mut Option<bool>, value: &str) -> Result<(), SetError> {
    if field.is_some() {
        return Err(invalid(DUPLICATE));
    }
    *field = Some(match value {
        "true" => true,
        "false" => false,
        _ => return Err(invalid("is not \"true\" or \"false\"")),
    });
    Ok(())
}

impl PoolBuilder {
    fn new(name: &str) -> PoolBuilder {
        PoolBuilder {
            name: name.to_owned(),
            ..PoolBuilder::default()
        }
    }

    /// conf_handler's dispatch: `Ok(false)` when the key is unknown.
    fn set(&mut self, key: &str, value: &str) -> Result<bool, SetError> {
        match key {
            "listen" => {
                if self.listen.is_some() {
                    return Err(invalid(DUPLICATE));
                }
                self.listen = Some(parse_listen(value)?);
            }
            "hash" => {
                if self.hash.is_some() {
                    return Err(invalid(DUPLICATE));
                }
                self.hash = Some(HashKind::from_name(value).ok_or(invalid("is not a valid hash"))?);
            }
            "hash_tag" => {
                if self.hash_tag.is_some() {
                    return Err(invalid(DUPLICATE));
                }
                match value.as_bytes() {
                    &[a, b] => self.hash_tag = Some([a, b]),
                    _ => {
                        return Err(invalid(
                            "is not a valid hash tag string with two characters",
                        ))
                    }
                }
            }
            "distribution" => {
                if self.distribution.is_some() {
                    return Err(invalid(DUPLICATE));
                }
                if value == REDIS_CLUSTER_DISTRIBUTION {
                    // An extension: the continuum is unused, the slot map routes.
                    self.redis_cluster = true;
                    self.distribution = Some(DEFAULT_DISTRIBUTION);
                    return Ok(true);
                }
                self.distribution = Some(
                    DistributionKind::from_name(value)
                        .ok_or(invalid("is not a valid distribution"))?,
                );
            }
            "timeout" => set_num(&mut self.timeout, value)?,
            "backlog" => set_num(&mut self.backlog, value)?,
            "client_connections" => set_num(&mut self.client_connections, value)?,
            "redis" => set_bool(&mut self.redis, value)?,
            "tcpkeepalive" => set_bool(&mut self.tcpkeepalive, value)?,
            "reuseport" => set_bool(&mut self.reuseport, value)?,
            "redis_auth" => {
                if self.redis_auth.is_some() {
                    return Err(invalid(DUPLICATE));
                }
                self.redis_auth = Some(value.to_owned());
            }
            "redis_db" => set_num(&mut self.redis_db, value)?,
            "preconnect" => set_bool(&mut self.preconnect, value)?,
            "auto_eject_hosts" => set_bool(&mut self.auto_eject_hosts, value)?,
            "server_connections" => set_num(&mut self.server_connections, value)?,
            "server_retry_timeout" => set_num(&mut self.server_retry_timeout, value)?,
            "server_failure_limit" => set_num(&mut self.server_failure_limit, value)?,
            "servers" => self.servers.push(parse_server(value)?),
            "send_mode" => {
                if self.send_mode.is_some() {
                    return Err(invalid(DUPLICATE));
                }
                self.send_mode = Some(
                    SendMode::from_name(value)
                        .ok_or(invalid("is not \"batched\" or \"per_message\""))?,
                );
            }
            "iov_max" => {
                set_num(&mut self.iov_max, value)?;
                let n = self.iov_max.unwrap_or_default() as usize;
                if !(MIN_IOV_MAX..=MAX_IOV_MAX).contains(&n) {
                    return Err(SetError::Invalid(format!(
                        "must be between {MIN_IOV_MAX} and {MAX_IOV_MAX}"
                    )));
                }
            }
            "send_limit" => {
                set_num(&mut self.send_limit, value)?;
                if self.send_limit == Some(0) {
                    return Err(invalid("cannot be 0"));
                }
            }
            "client_output_limit" => set_num(&mut self.client_output_limit, value)?,
            "cluster_read" => {
                if self.cluster_read.is_some() {
                    return Err(invalid(DUPLICATE));
                }
                self.cluster_read = Some(ClusterRead::from_name(value).ok_or(invalid(
                    "is not \"master\", \"prefer_replica\" or \"replica\"",
                ))?);
            }
            "cluster_refresh_interval" => {
                set_num(&mut self.cluster_refresh_interval, value)?;
                if self.cluster_refresh_interval == Some(0) {
                    return Err(invalid("cannot be 0"));
                }
            }
            _ => return self.security.set(key, value),
        }
        Ok(true)
    }
}

/// conf_set_listen: `host:port` (split at the last ':') or `/path [perm]`.
fn parse_listen(value: &str) -> Result<Listen, SetError> {
    let bytes = value.as_bytes();
    if bytes.first() == Some(&b'/') {
        let (name, perm) = match value.rfind(' ') {
            None => (value, None),
            Some(q) => {
                let perm = strtol_octal_mode(&bytes[q + 1..])
                    .filter(|p| *p <= 0o777)
                    .ok_or(invalid(
                    "has an invalid file permission in \"socket_path permission\" format string",
                ))?;
                (&value[..q], Some(perm))
            }
        };
        // nc_resolve_unix: the path must fit in sun_path.
        if name.len() > MAX_UNIX_PATH {
            return Err(SetError::Resolve(None));
        }
        return Ok(Listen::Unix {
            path: PathBuf::from(cstr(name)),
            perm: perm.filter(|p| *p != 0),
            text: value.to_owned(),
        });
    }
    let q = value
        .rfind(':')
        .ok_or(invalid("has an invalid \"hostname:port\" format string"))?;
    let port = nc_atoi(&bytes[q + 1..]);
    if port < 0 || !valid_port(port) {
        return Err(invalid(
            "has an invalid port in \"hostname:port\" format string",
        ));
    }
    let host = &value[..q];
    let addr = resolve(host, port as u16).map_err(|l| SetError::Resolve(Some(l)))?;
    Ok(Listen::Tcp {
        host: host.to_owned(),
        port: port as u16,
        addr,
        text: value.to_owned(),
    })
}

/// nc_resolve_inet: getaddrinfo(AF_UNSPEC, SOCK_STREAM), first result.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, LogLine> {
    let node = cstr(host);
    let failure = |reason: &str| LogLine {
        file: "nc_util.c",
        line: 505,
        message: format!("address resolution of node '{node}' service '{port}' failed: {reason}"),
    };
    match (node, port).to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| failure("No address associated with hostname")),
        Err(e) => {
            // std formats getaddrinfo failures as "failed to lookup address
            // information: <gai_strerror>"; other errors come from EAI_SYSTEM.
            let s = e.to_string();
            let reason = s
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or("System error");
            Err(failure(reason))
        }
    }
}

/// Finds `c` scanning backwards from index `p` (inclusive) to 0: nc_strrchr.
fn strrchr(bytes: &[u8], p: isize, c: u8) -> Option<usize> {
    let mut i = p;
    while i >= 0 {
        if bytes[i as usize] == c {
            return Some(i as usize);
        }
        i -= 1;
    }
    None
}

/// conf_add_server: `host:port:weight [name]` or `/path:weight [name]`,
/// split right to left on ' ', ':', ':' exactly as nutcracker does.
fn parse_server(value: &str) -> Result<Server, SetError> {
    let v = value.as_bytes();
    let unix = v.first() == Some(&b'/');
    let delimlen = if unix { 2 } else { 3 };
    // The C array " ::" includes its NUL terminator as a fourth delimiter.
    let delims = [b' ', b':', b':', 0u8];
    let mut p = v.len() as isize - 1;
    let (mut name, mut weight, mut port) = (None, None, None);
    let mut k = 0;
    while k < delims.len() {
        match strrchr(v, p, delims[k]) {
            None if k == 0 => {
                k += 1;
                continue; // the name is optional
            }
            None => break,
            Some(q) => {
                let field = q + 1..(p + 1) as usize;
                match k {
                    0 => name = Some(field),
                    1 => weight = Some(field),
                    2 => port = Some(field),
                    _ => {}
                }
                p = q as isize - 1;
            }
        }
        k += 1;
    }
    if k != delimlen {
        return Err(invalid(
            "has an invalid \"hostname:port:weight [name]\"or \"/path/unix_socket:weight [name]\" format string",
        ));
    }
    let namelen = name.as_ref().map_or(0, |r| r.len());
    let pname = if namelen > 0 {
        &value[..v.len() - (namelen + 1)]
    } else {
        value
    };
    let addrlen = (p + 1) as usize;
    let addr = &value[..addrlen];

    let w = nc_atoi(&v[weight.unwrap_or_default()]);
    if w < 0 {
        return Err(invalid(
            "has an invalid weight in \"hostname:port:weight [name]\" format string",
        ));
    } else if w == 0 {
        return Err(invalid(
            "has a zero weight in \"hostname:port:weight [name]\" format string",
        ));
    }
    let port_range = port.unwrap_or_default();
    let mut port_num = 0;
    if !unix {
        port_num = nc_atoi(&v[port_range.clone()]);
        if port_num < 0 || !valid_port(port_num) {
            return Err(invalid(
                "has an invalid port in \"hostname:port:weight [name]\" format string",
            ));
        }
    }
    let name = match name {
        Some(r) => &value[r],
        // libmemcached compatibility: port 11211 is left out of the name.
        None if port_num == i32::from(KETAMA_PORT) => addr,
        // addr + ':' + port as written; for a unix socket (no port) this
        // leaves the trailing ':' in the name, as nutcracker does.
        None => &value[..addrlen + 1 + port_range.len()],
    };
    Ok(Server {
        name: name.to_owned(),
        addr: if unix {
            ServerAddr::Unix(PathBuf::from(cstr(addr)))
        } else {
            ServerAddr::Tcp {
                host: addr.to_owned(),
                port: port_num as u16,
            }
        },
        weight: w as u32,
        pname: pname.to_owned(),
    })
}

/// Parses and validates a whole configuration (conf_create minus the open).
pub(crate) fn parse(path: &str, bytes: &[u8]) -> Result<Config, ConfigError> {
    let events = yaml::pre_validate(path, bytes)
        .map_err(|l| ConfigError::one(path, ConfigErrorKind::Yaml, l))?;
    let pools = parse_events(path, &events)?;
    post_validate(path, pools)
}

/// conf_parse_core, iteratively: `args` holds pool name, key and value.
fn parse_events(path: &str, events: &[Ev]) -> Result<Vec<PoolBuilder>, ConfigError> {
    let mut pools: Vec<PoolBuilder> = Vec::new();
    let mut args: Vec<Cow<'_, str>> = Vec::new();
    let mut depth = 1usize;
    let mut seq = false;
    for ev in events {
        let leaf = match ev {
            Ev::MappingStart => {
                depth += 1;
                false
            }
            Ev::MappingEnd => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    args.pop();
                }
                false
            }
            Ev::SequenceStart => {
                seq = true;
                false
            }
            Ev::SequenceEnd => {
                args.pop();
                seq = false;
                false
            }
            Ev::Scalar(value) => {
                // conf_push_scalar fails, without logging, on an empty scalar.
                if value.is_empty() {
                    return Err(ConfigError::new(path, ConfigErrorKind::Directive, vec![]));
                }
                let value = c_copy(value);
                if !seq && depth == 1 {
                    pools.push(PoolBuilder::new(&value));
                }
                args.push(value);
                if seq {
                    true
                } else if depth == 1 {
                    false
                } else {
                    args.len() == depth + 1
                }
            }
        };
        if !leaf {
            continue;
        }
        // Pre-validation guarantees a pool name and a key below every leaf.
        let (Some(pool), [.., key, value]) = (pools.last_mut(), args.as_slice()) else {
            continue;
        };
        let (key, value): (&str, &str) = (key, value);
        let lines = match pool.set(key, value) {
            Ok(true) => None,
            Ok(false) => Some(vec![LogLine::conf(
                536,
                format!("conf: directive \"{}\" is unknown", cstr(key)),
            )]),
            Err(SetError::Invalid(reason)) => Some(vec![LogLine::conf(
                DIRECTIVE_LINE,
                format!("conf: directive \"{}\" {reason}", cstr(key)),
            )]),
            Err(SetError::Resolve(first)) => Some(
                first
                    .into_iter()
                    .chain([LogLine::conf(
                        DIRECTIVE_LINE,
                        format!("conf: directive \"{}\" has an invalid value", cstr(key)),
                    )])
                    .collect(),
            ),
        };
        if let Some(lines) = lines {
            return Err(ConfigError::new(path, ConfigErrorKind::Directive, lines));
        }
        args.pop();
        if !seq {
            args.pop();
        }
    }
    Ok(pools)
}

fn validation(path: &str, line: u32, message: String) -> ConfigError {
    ConfigError::one(
        path,
        ConfigErrorKind::Validation,
        LogLine::conf(line, message),
    )
}

/// conf_validate_pool + conf_validate_server: defaults, then checks.
fn validate_pool(path: &str, b: PoolBuilder) -> Result<Pool, ConfigError> {
    let cluster_keys = ClusterKeys::of(&b);
    let Some(listen) = b.listen else {
        return Err(validation(
            path,
            1216,
            "conf: directive \"listen:\" is missing".to_owned(),
        ));
    };
    if b.server_connections == Some(0) {
        return Err(validation(
            path,
            1263,
            "conf: directive \"server_connections:\" cannot be 0".to_owned(),
        ));
    }
    let redis = b.redis.unwrap_or(false);
    let cluster = validate_cluster(path, &cluster_keys, redis)?;
    let redis_auth = b.redis_auth.filter(|a| !a.is_empty());
    if !redis && redis_auth.is_some() {
        return Err(validation(
            path,
            1276,
            "conf: directive \"redis_auth:\" is only valid for a redis pool".to_owned(),
        ));
    }
    let name = cstr(&b.name).to_owned();
    let mut servers = b.servers;
    if servers.is_empty() {
        return Err(validation(
            path,
            1174,
            format!("conf: pool '{name}' has no servers"),
        ));
    }
    // Stable sort, like glibc's merge-sort qsort.
    servers.sort_by(|x, y| string_compare(&x.name, &y.name));
    if let Some(w) = servers
        .windows(2)
        .find(|w| string_compare(&w[0].name, &w[1].name) == Ordering::Equal)
    {
        return Err(validation(
            path,
            1193,
            format!(
                "conf: pool '{name}' has servers with same name '{}'",
                cstr(&w[0].name)
            ),
        ));
    }
    let security = b.security.validate(path, &servers)?;
    if cluster.is_some() && (security.server_tls.is_some() || security.health_check_interval_ms > 0)
    {
        // The topology queries are plain TCP, and nodes are not ejected.
        return Err(validation(
            path,
            1276,
            "conf: directives \"server_tls:\" and \"health_check_interval:\" are not supported in a redis_cluster pool"
                .to_owned(),
        ));
    }
    let num = |v: Option<i32>, default: u32| v.map_or(default, |n| n as u32);
    Ok(Pool {
        name: b.name,
        listen,
        hash: b.hash.unwrap_or(DEFAULT_HASH),
        hash_tag: b.hash_tag,
        distribution: b.distribution.unwrap_or(DEFAULT_DISTRIBUTION),
        timeout_ms: b.timeout.filter(|t| *t > 0).map(|t| t as u64),
        backlog: num(b.backlog, DEFAULT_BACKLOG),
        client_connections: 0,
        client_connections_configured: num(b.client_connections, 0),
        redis,
        tcpkeepalive: b.tcpkeepalive.unwrap_or(false),
        reuseport: b.reuseport.unwrap_or(false),
        redis_auth,
        redis_db: num(b.redis_db, 0),
        preconnect: b.preconnect.unwrap_or(false),
        auto_eject_hosts: b.auto_eject_hosts.unwrap_or(false),
        server_connections: num(b.server_connections, DEFAULT_SERVER_CONNECTIONS),
        server_retry_timeout_ms: b
            .server_retry_timeout
            .map_or(DEFAULT_SERVER_RETRY_TIMEOUT_MS, |n| n as u64),
        server_failure_limit: num(b.server_failure_limit, DEFAULT_SERVER_FAILURE_LIMIT),
        servers,
        send_mode: b.send_mode.unwrap_or_default(),
        iov_max: b.iov_max.map_or(DEFAULT_IOV_MAX, |n| n as usize),
        send_limit: b.send_limit.map(|n| n as usize),
        client_output_limit: b.client_output_limit.map_or(0, |n| n as usize),
        cluster,
        tls: security.tls,
        server_tls: security.server_tls,
        health_check_interval_ms: security.health_check_interval_ms,
        auto_eject_drop: security.auto_eject_drop,
    })
}

/// The pool keys the `redis_cluster` checks read.
struct ClusterKeys {
    redis_cluster: bool,
    cluster_read: Option<ClusterRead>,
    cluster_refresh_interval: Option<i32>,
    redis_db: Option<i32>,
}

impl ClusterKeys {
    fn of(b: &PoolBuilder) -> ClusterKeys {
        ClusterKeys {
            redis_cluster: b.redis_cluster,
            cluster_read: b.cluster_read,
            cluster_refresh_interval: b.cluster_refresh_interval,
            redis_db: b.redis_db,
        }
    }
}

/// The checks of the `redis_cluster` extension: a Redis pool, database 0
/// (a cluster has no other), and `cluster_*` keys only on such a pool.
fn validate_cluster(
    path: &str,
    b: &ClusterKeys,
    redis: bool,
) -> Result<Option<ClusterConfig>, ConfigError> {
    if !b.redis_cluster {
        for (key, set) in [
            ("cluster_read", b.cluster_read.is_some()),
            (
                "cluster_refresh_interval",
                b.cluster_refresh_interval.is_some(),
            ),
        ] {
            if set {
                return Err(validation(
                    path,
                    1276,
                    format!("conf: directive \"{key}:\" is only valid for a redis_cluster pool"),
                ));
            }
        }
        return Ok(None);
    }
    if !redis {
        return Err(validation(
            path,
            1276,
            "conf: directive \"distribution: redis_cluster\" is only valid for a redis pool"
                .to_owned(),
        ));
    }
    if b.redis_db.is_some_and(|db| db != 0) {
        return Err(validation(
            path,
            1276,
            "conf: directive \"redis_db:\" must be 0 in a redis_cluster pool".to_owned(),
        ));
    }
    Ok(Some(ClusterConfig {
        read: b.cluster_read.unwrap_or_default(),
        refresh_interval_ms: b
            .cluster_refresh_interval
            .map_or(DEFAULT_CLUSTER_REFRESH_INTERVAL_MS, |n| n as u64),
    }))
}

/// conf_post_validate: per-pool checks in file order, then duplicate listen
/// strings, then duplicate names.
fn post_validate(path: &str, builders: Vec<PoolBuilder>) -> Result<Config, ConfigError> {
    if builders.is_empty() {
        return Err(validation(
            path,
            1302,
            format!("conf: '{}' has no pools", cstr(path)),
        ));
    }
    let mut pools = builders
        .into_iter()
        .map(|b| validate_pool(path, b))
        .collect::<Result<Vec<_>, _>>()?;

    pools.sort_by(|a, b| string_compare(a.listen.text(), b.listen.text()));
    if let Some(w) = pools
        .windows(2)
        .find(|w| string_compare(w[0].listen.text(), w[1].listen.text()) == Ordering::Equal)
    {
        return Err(validation(
            path,
            1325,
            format!(
                "conf: pools '{}' and '{}' have the same listen address '{}'",
                cstr(&w[0].name),
                cstr(&w[1].name),
                cstr(w[0].listen.text())
            ),
        ));
    }

    pools.sort_by(|a, b| string_compare(&a.name, &b.name));
    if let Some(w) = pools
        .windows(2)
        .find(|w| string_compare(&w[0].name, &w[1].name) == Ordering::Equal)
    {
        // The unbalanced quote is nutcracker's.
        return Err(validation(
            path,
            1346,
            format!(
                "conf: '{}' has pools with same name {}'",
                cstr(path),
                cstr(&w[0].name)
            ),
        ));
    }
    Ok(Config {
        path: path.to_owned(),
        pools,
    })
}

#[cfg(test)]
#[path = "conf_tests.rs"]
mod tests;
