//! Shared helpers of the TLS, health-check, wait and idle-client tests
//! (`tests/tls.rs`, `tests/health.rs`, `tests/wait.rs`, `tests/idle.rs`):
//! polling until a condition holds, reading one number out of the stats
//! JSON, and a process's CPU time.

#![allow(dead_code)]

use std::thread::sleep;
use std::time::{Duration, Instant};

/// Polls `check` until it holds or `limit` passes.
pub(crate) fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        sleep(Duration::from_millis(5));
    }
    check()
}

/// `field` of pool `pool` (of its server `server` when given) in a stats
/// JSON document.
pub(crate) fn stat(json: &str, pool: &str, server: Option<&str>, field: &str) -> u64 {
    let mut at = json
        .find(&format!("\"{pool}\":"))
        .unwrap_or_else(|| panic!("pool {pool} in {json}"));
    if let Some(server) = server {
        at += json[at..]
            .find(&format!("\"{server}\":"))
            .unwrap_or_else(|| panic!("server {server} in {json}"));
    }
    number_after(&json[at..], field)
}

/// One of ncproxy's top-level (per-worker, summed) fields in a stats JSON
/// document, e.g. `clients_parked` or `wait_spins`.
pub(crate) fn top_stat(json: &str, field: &str) -> u64 {
    number_after(json, field)
}

/// The number after the first `"field":` in `json`.
fn number_after(json: &str, field: &str) -> u64 {
    let key = format!("\"{field}\":");
    let start = json
        .find(&key)
        .unwrap_or_else(|| panic!("{field} in {json}"))
        + key.len();
    json[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

/// The CPU time (user + system) process `pid` has used, in clock ticks,
/// from `/proc/<pid>/stat`.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}
