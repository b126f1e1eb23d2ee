//! Loading the keyspace before a run and verifying the data after it, with the
//! `redis` crate (a real client library, so these steps do not share code, or
//! bugs, with the driver).
//!
//! Every key is written to every backend directly, so any routing (ketama,
//! modula, or `direct` connections spread over the backends) finds it. After
//! the run, keys are read back from every backend: each value must be nil
//! (deleted by the workload) or a well-formed value for that very key.
use crate::config::Workload;
use crate::error::{BenchError, Result};
use crate::workload::{splitmix64, Keyspace};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

const CHUNK: u32 = 1000;
/// Writer nonce of preloaded values (connections use other nonces).
const LOADER_NONCE: u32 = 0xffff_ffff;

fn connect(addr: SocketAddr) -> Result<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/"))
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

/// Writes every key (and resets the counters) on every backend. `flush` empties
/// backends ncbench started itself first; external ones are never flushed.
pub fn preload(addrs: &[SocketAddr], ks: &Keyspace, w: &Workload, flush: bool) -> Result<u64> {
    let mut written = 0;
    for &addr in addrs {
        let mut con = connect(addr)?;
        if flush {
            redis::cmd("FLUSHALL")
                .query::<()>(&mut con)
                .map_err(|e| BenchError::setup(format!("FLUSHALL on {addr}: {e}")))?;
        }
        let n = ks.keys as u32;
        let mut start = 0u32;
        while start < n {
            let end = start.saturating_add(CHUNK).min(n);
            let mut pipe = redis::pipe();
            for k in start..end {
                pipe.cmd("SET")
                    .arg(ks.key(k))
                    .arg(ks.value(k, LOADER_NONCE, value_len(ks, w.seed, k)))
                    .ignore();
            }
            pipe.query::<()>(&mut con)
                .map_err(|e| BenchError::setup(format!("preloading {addr}: {e}")))?;
            written += (end - start) as u64;
            start = end;
        }
    }
    Ok(written)
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

/// Reads up to `sample` keys (evenly spaced) from every backend and checks them.
pub fn verify(
    addrs: &[SocketAddr],
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
    for &addr in addrs {
        let mut con = connect(addr)?;
        for chunk in keys.chunks(CHUNK as usize) {
            let names: Vec<Vec<u8>> = chunk.iter().map(|&k| ks.key(k)).collect();
            let vals: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(&names)
                .query(&mut con)
                .map_err(|e| BenchError::setup(format!("verifying {addr}: {e}")))?;
            for (&k, v) in chunk.iter().zip(vals) {
                r.checked += 1;
                match v {
                    None => r.missing += 1,
                    Some(v) if ks.value_ok(k, &v) => {}
                    Some(v) => {
                        r.bad += 1;
                        if r.first_bad.is_none() {
                            r.first_bad = Some(format!(
                                "{addr}: key {} holds {:?}",
                                String::from_utf8_lossy(&ks.key(k)),
                                String::from_utf8_lossy(&v[..v.len().min(40)])
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(r)
}
