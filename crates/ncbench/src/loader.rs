//! Loading the keyspace before a run and verifying the data after it, with the
//! `redis` crate (a real client library, so these steps do not share code, or
//! bugs, with the driver).
//!
//! Every key is written to every backend directly, so any routing (ketama,
//! modula, or `direct` connections spread over the backends) finds it. After
//! the run, keys are read back from every backend: each value must be nil
//! (deleted by the workload) or a well-formed value for that very key.
//!
//! Backends that speak only TLS (`[backends] kind = "external"`, `tls =
//! true`) are reached with the redis crate's rustls client ([`LoaderTls`]),
//! verified by their host name.
//!
//! memcache: the same steps with [`McClient`], a small blocking memcached
//! ASCII client written for this (pipelined `set`s in chunks, `flush_all`,
//! multi-key `get`), which shares no parsing with the driver's scanner. It
//! also writes the INCR counters (`0`), since memcached's `incr` does not
//! create missing keys.
use crate::config::{Protocol, Workload};
use crate::error::{BenchError, Result};
use crate::workload::{splitmix64, Keyspace};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const CHUNK: u32 = 1000;
/// Writer nonce of preloaded values (connections use other nonces).
const LOADER_NONCE: u32 = 0xffff_ffff;

/// How the loader reaches backends that speak only TLS.
#[derive(Debug, Clone, Default)]
pub struct LoaderTls {
    /// PEM CA certificates that verify them (None: the system's roots).
    pub ca_pem: Option<Vec<u8>>,
    /// The host name of each backend (by index), verified in its certificate.
    pub names: Vec<String>,
}

/// A connection to backend `i` at `addr`, over TLS when `tls` says so.
fn connect_to(addr: SocketAddr, i: usize, tls: Option<&LoaderTls>) -> Result<redis::Connection> {
    let client = match tls {
        None => redis::Client::open(format!("redis://{addr}/")),
        Some(t) => {
            let host = t
                .names
                .get(i)
                .cloned()
                .unwrap_or_else(|| addr.ip().to_string());
            let url = match host.parse::<std::net::Ipv6Addr>() {
                Ok(_) => format!("rediss://[{host}]:{}/", addr.port()),
                Err(_) => format!("rediss://{host}:{}/", addr.port()),
            };
            redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: t.ca_pem.clone(),
                },
            )
        }
    }
    .map_err(|e| BenchError::setup(format!("redis client for {addr}: {e}")))?;
    client
        .get_connection_with_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| BenchError::setup(format!("cannot connect to {addr}: {e}")))
}

fn value_len(ks: &Keyspace, seed: u64, key: u32) -> usize {
    if ks.vmin == ks.vmax {
        ks.vmin
    } else {
        ks.vmin + (splitmix64(seed ^ key as u64) % (ks.vmax - ks.vmin + 1) as u64) as usize
    }
}

/// The client the loader and verifier use, for messages.
pub fn client_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Redis => "the redis crate",
        Protocol::Memcache => "ncbench's memcached client",
    }
}

/// Writes every key on every backend (memcache: and the INCR counters, at 0).
/// `flush` empties backends ncbench started itself first; external ones are
/// never flushed. `tls`: the backends speak only TLS.
pub fn preload(
    addrs: &[SocketAddr],
    tls: Option<&LoaderTls>,
    ks: &Keyspace,
    w: &Workload,
    flush: bool,
) -> Result<u64> {
    if ks.protocol == Protocol::Memcache {
        return preload_memcache(addrs, ks, w, flush);
    }
    let mut written = 0;
    for (i, &addr) in addrs.iter().enumerate() {
        let mut con = connect_to(addr, i, tls)?;
        if flush {
            flushall(&mut con, addr)?;
        }
        for keys in chunks(ks.keys as u32) {
            let mut pipe = redis::pipe();
            for k in keys.clone() {
                pipe.cmd("SET")
                    .arg(ks.key(k))
                    .arg(ks.value(k, LOADER_NONCE, value_len(ks, w.seed, k)))
                    .ignore();
            }
            pipe.query::<()>(&mut con)
                .map_err(|e| BenchError::setup(format!("preloading {addr}: {e}")))?;
            written += keys.len() as u64;
        }
    }
    Ok(written)
}

/// FLUSHALL on one server.
fn flushall(con: &mut redis::Connection, addr: SocketAddr) -> Result<()> {
    redis::cmd("FLUSHALL")
        .query::<()>(con)
        .map_err(|e| BenchError::setup(format!("FLUSHALL on {addr}: {e}")))
}

/// Key indices `0..n` in pipelines of `CHUNK`.
fn chunks(n: u32) -> impl Iterator<Item = std::ops::Range<u32>> {
    (0..n)
        .step_by(CHUNK as usize)
        .map(move |start| start..start.saturating_add(CHUNK).min(n))
}

/// What reading the data back found.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VerifyResult {
    pub checked: u64,
    /// Keys that are gone (fine when the mix has DEL).
    pub missing: u64,
    /// Values that are not a valid value for their key: corruption or misrouting.
    pub bad: u64,
    pub first_bad: Option<String>,
    /// Missing keys count as failures (no DEL in the mix, keys were preloaded).
    pub missing_is_failure: bool,
}

impl VerifyResult {
    pub fn ok(&self) -> bool {
        self.bad == 0 && !(self.missing_is_failure && self.missing > 0)
    }
}

/// A cluster-aware connection (the redis crate's own cluster client, so
/// placement is checked by code that shares nothing with ncbench's routing).
fn cluster_connection(seeds: &[SocketAddr]) -> Result<redis::cluster::ClusterConnection> {
    let nodes: Vec<String> = seeds.iter().map(|a| format!("redis://{a}/")).collect();
    redis::cluster::ClusterClient::new(nodes)
        .and_then(|c| c.get_connection())
        .map_err(|e| BenchError::setup(format!("cluster client for {seeds:?}: {e}")))
}

/// Writes every key once into a Redis Cluster whose masters are `masters`
/// (each key on the master of its slot); `flush` empties the masters first.
pub fn preload_cluster(
    masters: &[SocketAddr],
    ks: &Keyspace,
    w: &Workload,
    flush: bool,
) -> Result<u64> {
    if flush {
        for &addr in masters {
            flushall(&mut connect_to(addr, 0, None)?, addr)?;
        }
    }
    let mut con = cluster_connection(masters)?;
    for keys in chunks(ks.keys as u32) {
        let mut pipe = redis::cluster::cluster_pipe();
        for k in keys {
            pipe.cmd("SET")
                .arg(ks.key(k))
                .arg(ks.value(k, LOADER_NONCE, value_len(ks, w.seed, k)))
                .ignore();
        }
        pipe.query::<()>(&mut con)
            .map_err(|e| BenchError::setup(format!("preloading the cluster: {e}")))?;
    }
    Ok(ks.keys)
}

/// Like [`verify`], for a Redis Cluster: each key is read from the master
/// of its slot, by the redis crate's cluster client.
pub fn verify_cluster(
    masters: &[SocketAddr],
    ks: &Keyspace,
    sample: u64,
    missing_is_failure: bool,
) -> Result<VerifyResult> {
    let mut r = VerifyResult {
        missing_is_failure,
        ..VerifyResult::default()
    };
    let mut con = cluster_connection(masters)?;
    let stride = (ks.keys / sample.max(1)).max(1);
    let keys: Vec<u32> = (0..ks.keys)
        .step_by(stride as usize)
        .map(|k| k as u32)
        .collect();
    let label = masters
        .first()
        .copied()
        .unwrap_or(([127, 0, 0, 1], 0).into());
    for chunk in keys.chunks(CHUNK as usize) {
        let mut pipe = redis::cluster::cluster_pipe();
        for &k in chunk {
            pipe.cmd("GET").arg(ks.key(k));
        }
        let vals: Vec<Option<Vec<u8>>> = pipe
            .query(&mut con)
            .map_err(|e| BenchError::setup(format!("verifying the cluster: {e}")))?;
        for (&k, v) in chunk.iter().zip(vals) {
            r.record(label, ks, k, v);
        }
    }
    Ok(r)
}

/// Reads up to `sample` keys (evenly spaced) from every backend and checks
/// them (`tls`: the backends speak only TLS).
pub fn verify(
    addrs: &[SocketAddr],
    tls: Option<&LoaderTls>,
    ks: &Keyspace,
    sample: u64,
    missing_is_failure: bool,
) -> Result<VerifyResult> {
    let mut r = VerifyResult {
        missing_is_failure,
        ..VerifyResult::default()
    };
    let n = ks.keys;
    let stride = (n / sample.max(1)).max(1);
    let keys: Vec<u32> = (0..n).step_by(stride as usize).map(|k| k as u32).collect();
    for (i, &addr) in addrs.iter().enumerate() {
        match ks.protocol {
            Protocol::Redis => {
                let mut con = connect_to(addr, i, tls)?;
                for chunk in keys.chunks(CHUNK as usize) {
                    let names: Vec<Vec<u8>> = chunk.iter().map(|&k| ks.key(k)).collect();
                    let vals: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                        .arg(&names)
                        .query(&mut con)
                        .map_err(|e| BenchError::setup(format!("verifying {addr}: {e}")))?;
                    for (&k, v) in chunk.iter().zip(vals) {
                        r.record(addr, ks, k, v);
                    }
                }
            }
            Protocol::Memcache => {
                let mut con = McClient::connect(addr)?;
                for chunk in keys.chunks(CHUNK as usize) {
                    let names: Vec<Vec<u8>> = chunk.iter().map(|&k| ks.key(k)).collect();
                    let vals = con.get_many(&names)?;
                    for (&k, v) in chunk.iter().zip(vals) {
                        r.record(addr, ks, k, v);
                    }
                }
            }
        }
    }
    Ok(r)
}

impl VerifyResult {
    fn record(&mut self, addr: SocketAddr, ks: &Keyspace, k: u32, v: Option<Vec<u8>>) {
        self.checked += 1;
        match v {
            None => self.missing += 1,
            Some(v) if ks.value_ok(k, &v) => {}
            Some(v) => {
                self.bad += 1;
                if self.first_bad.is_none() {
                    self.first_bad = Some(format!(
                        "{addr}: key {} holds {:?}",
                        String::from_utf8_lossy(&ks.key(k)),
                        String::from_utf8_lossy(&v[..v.len().min(40)])
                    ));
                }
            }
        }
    }
}

fn preload_memcache(addrs: &[SocketAddr], ks: &Keyspace, w: &Workload, flush: bool) -> Result<u64> {
    let mut written = 0;
    for &addr in addrs {
        let mut con = McClient::connect(addr)?;
        if flush {
            con.flush_all()?;
        }
        let n = ks.keys as u32;
        let mut start = 0u32;
        while start < n {
            let end = start.saturating_add(CHUNK).min(n);
            let mut items: Vec<(Vec<u8>, Vec<u8>)> = (start..end)
                .map(|k| {
                    let v = ks.value(k, LOADER_NONCE, value_len(ks, w.seed, k));
                    (ks.key(k), v)
                })
                .collect();
            if w.mix.incr > 0 {
                items.extend((start..end).map(|k| (ks.counter_key(k), b"0".to_vec())));
            }
            con.set_many(&items)?;
            written += (end - start) as u64;
            start = end;
        }
    }
    Ok(written)
}

/// A minimal blocking memcached ASCII client for preload and verify.
pub struct McClient {
    addr: SocketAddr,
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl McClient {
    pub fn connect(addr: SocketAddr) -> Result<McClient> {
        let fail = |e: std::io::Error| BenchError::setup(format!("cannot connect to {addr}: {e}"));
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(fail)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(fail)?;
        s.set_nodelay(true).map_err(fail)?;
        let w = s.try_clone().map_err(fail)?;
        Ok(McClient {
            addr,
            r: BufReader::with_capacity(64 * 1024, s),
            w,
        })
    }

    fn io(&self, what: &str, e: impl std::fmt::Display) -> BenchError {
        BenchError::setup(format!("memcached {what} on {}: {e}", self.addr))
    }

    /// One reply line without its CRLF.
    fn line(&mut self) -> Result<String> {
        let mut l = String::new();
        match self.r.read_line(&mut l) {
            Ok(0) => Err(self.io("read", "connection closed")),
            Ok(_) if l.ends_with("\r\n") => {
                l.truncate(l.len() - 2);
                Ok(l)
            }
            Ok(_) => Err(self.io("read", format!("line without CRLF: {l:?}"))),
            Err(e) => Err(self.io("read", e)),
        }
    }

    pub fn flush_all(&mut self) -> Result<()> {
        self.w
            .write_all(b"flush_all\r\n")
            .map_err(|e| self.io("flush_all", e))?;
        match self.line()?.as_str() {
            "OK" => Ok(()),
            other => Err(self.io("flush_all", format!("replied {other:?}"))),
        }
    }

    /// Pipelines one `set` per item, then reads every `STORED`.
    pub fn set_many(&mut self, items: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut buf = Vec::new();
        for (k, v) in items {
            buf.extend_from_slice(b"set ");
            buf.extend_from_slice(k);
            buf.extend_from_slice(format!(" 0 0 {}\r\n", v.len()).as_bytes());
            buf.extend_from_slice(v);
            buf.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&buf).map_err(|e| self.io("set", e))?;
        for _ in items {
            let l = self.line()?;
            if l != "STORED" {
                return Err(self.io("set", format!("replied {l:?}")));
            }
        }
        Ok(())
    }

    /// `get k1 .. kN`: each key's value, `None` when memcached has none.
    pub fn get_many(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut req = b"get".to_vec();
        for k in keys {
            req.push(b' ');
            req.extend_from_slice(k);
        }
        req.extend_from_slice(b"\r\n");
        self.w.write_all(&req).map_err(|e| self.io("get", e))?;
        let mut out: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        loop {
            let l = self.line()?;
            if l == "END" {
                return Ok(out);
            }
            let parts: Vec<&str> = l.split(' ').collect();
            let (key, len) = match parts.as_slice() {
                ["VALUE", key, _flags, len, ..] => match len.parse::<usize>() {
                    Ok(n) => (key.as_bytes().to_vec(), n),
                    Err(_) => return Err(self.io("get", format!("bad VALUE line {l:?}"))),
                },
                _ => return Err(self.io("get", format!("replied {l:?}"))),
            };
            let mut data = vec![0u8; len + 2];
            self.r
                .read_exact(&mut data)
                .map_err(|e| self.io("get", e))?;
            if !data.ends_with(b"\r\n") {
                return Err(self.io("get", "value without CRLF"));
            }
            data.truncate(len);
            match keys.iter().position(|k| *k == key) {
                Some(i) if out[i].is_none() => out[i] = Some(data),
                _ => {
                    return Err(self.io(
                        "get",
                        format!(
                            "VALUE for a key not asked for: {:?}",
                            String::from_utf8_lossy(&key)
                        ),
                    ))
                }
            }
        }
    }
}
