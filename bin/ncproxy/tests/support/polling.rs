//! Shared helpers of the TLS and health-check tests (`tests/tls.rs`,
//! `tests/health.rs`): polling until a condition holds, and reading one
//! number out of the stats JSON.

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
    let key = format!("\"{field}\":");
    let start = at
        + json[at..]
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
