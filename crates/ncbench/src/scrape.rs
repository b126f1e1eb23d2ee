//! Scraping a proxy's stats server (nutcracker's JSON, which ncproxy extends
//! with send-path counters) and turning two scrapes into per-window figures.
//!
//! One connection gives one JSON document, then the server closes. Counters are
//! cumulative, so the measured window is the difference between a scrape at the
//! end of warmup and one at the end of the run.
use crate::stats::ProxyCounters;
use serde_json::Value;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The pool name in every config ncbench generates.
pub const POOL: &str = "bench";

/// Raw cumulative counters of one pool at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub requests: u64,
    pub request_bytes: u64,
    pub responses: u64,
    pub send_syscalls: Option<u64>,
    pub send_iovecs: Option<u64>,
    pub send_bytes: Option<u64>,
    pub send_partial: Option<u64>,
    pub client_send_syscalls: Option<u64>,
    pub client_send_iovecs: Option<u64>,
    pub client_send_bytes: Option<u64>,
}

/// Fetches and parses one stats document.
pub fn fetch(addr: SocketAddr) -> Result<Value, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("stats {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("stats {addr}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("stats {addr}: not JSON: {e}"))
}

/// Sums the server objects of `pool` (and reads the pool-level client counters).
pub fn snapshot(doc: &Value, pool: &str) -> Option<Snapshot> {
    let p = doc.get(pool)?.as_object()?;
    let mut s = Snapshot::default();
    let add = |slot: &mut Option<u64>, v: Option<u64>| {
        if let Some(v) = v {
            *slot = Some(slot.unwrap_or(0) + v);
        }
    };
    for server in p.values().filter_map(|v| v.as_object()) {
        let g = |k: &str| server.get(k).and_then(|v| v.as_u64());
        s.requests += g("requests").unwrap_or(0);
        s.request_bytes += g("request_bytes").unwrap_or(0);
        s.responses += g("responses").unwrap_or(0);
        add(&mut s.send_syscalls, g("send_syscalls"));
        add(&mut s.send_iovecs, g("send_iovecs"));
        add(&mut s.send_bytes, g("send_bytes"));
        add(&mut s.send_partial, g("send_partial"));
    }
    let pg = |k: &str| p.get(k).and_then(|v| v.as_u64());
    s.client_send_syscalls = pg("client_send_syscalls");
    s.client_send_iovecs = pg("client_send_iovecs");
    s.client_send_bytes = pg("client_send_bytes");
    Some(s)
}

fn d(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    Some(b?.saturating_sub(a?))
}

fn ratio(n: Option<u64>, dnm: Option<u64>) -> Option<f64> {
    let (n, dnm) = (n?, dnm?);
    (dnm > 0).then(|| n as f64 / dnm as f64)
}

/// Window figures from two snapshots. `replies` is how many replies the
/// clients received in the window (for the client-side reply path).
pub fn window(before: &Snapshot, after: &Snapshot, replies: u64) -> ProxyCounters {
    let requests = after.requests.saturating_sub(before.requests);
    let send_syscalls = d(before.send_syscalls, after.send_syscalls);
    let send_bytes = d(before.send_bytes, after.send_bytes);
    let send_iovecs = d(before.send_iovecs, after.send_iovecs);
    let client_send_syscalls = d(before.client_send_syscalls, after.client_send_syscalls);
    ProxyCounters {
        requests,
        request_bytes: after.request_bytes.saturating_sub(before.request_bytes),
        responses: after.responses.saturating_sub(before.responses),
        send_syscalls,
        send_iovecs,
        send_bytes,
        send_partial: d(before.send_partial, after.send_partial),
        client_send_syscalls,
        client_send_bytes: d(before.client_send_bytes, after.client_send_bytes),
        client_send_iovecs: d(before.client_send_iovecs, after.client_send_iovecs),
        syscalls_per_request: ratio(send_syscalls, Some(requests)),
        requests_per_syscall: ratio(Some(requests), send_syscalls),
        bytes_per_syscall: ratio(send_bytes, send_syscalls),
        iovecs_per_syscall: ratio(send_iovecs, send_syscalls),
        client_syscalls_per_reply: ratio(client_send_syscalls, Some(replies)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NUT: &str = r#"{"service":"nutcracker", "source":"h", "version":"0.5.0", "uptime":36, "timestamp":1795545713, "total_connections":71, "curr_connections":8, "bench": {"client_eof":3, "client_err":0, "client_connections":0, "server_ejects":0, "forward_error":0, "fragments":0, "s0": {"server_eof":0, "server_err":0, "server_timedout":0, "server_connections":1, "server_ejected_at":0, "requests":3, "request_bytes":66, "responses":3, "response_bytes":15, "in_queue":0, "in_queue_bytes":0, "out_queue":0, "out_queue_bytes":0},"s1": {"requests":5, "request_bytes":10, "responses":5}}}"#;

    #[test]
    fn nutcracker_document_has_no_syscall_counters() {
        let doc: Value = serde_json::from_str(NUT).unwrap();
        let s = snapshot(&doc, POOL).unwrap();
        assert_eq!(s.requests, 8);
        assert_eq!(s.request_bytes, 76);
        assert_eq!(s.send_syscalls, None);
        let w = window(&Snapshot::default(), &s, 8);
        assert_eq!(w.syscalls_per_request, None);
        assert!(snapshot(&doc, "other").is_none());
    }

    #[test]
    fn ncproxy_counters_make_ratios() {
        let before = Snapshot {
            requests: 100,
            send_syscalls: Some(50),
            send_bytes: Some(1000),
            send_iovecs: Some(100),
            client_send_syscalls: Some(10),
            ..Snapshot::default()
        };
        let after = Snapshot {
            requests: 1100,
            send_syscalls: Some(300),
            send_bytes: Some(41000),
            send_iovecs: Some(1100),
            client_send_syscalls: Some(510),
            ..Snapshot::default()
        };
        let w = window(&before, &after, 1000);
        assert_eq!(w.requests, 1000);
        assert_eq!(w.syscalls_per_request, Some(0.25));
        assert_eq!(w.requests_per_syscall, Some(4.0));
        assert_eq!(w.bytes_per_syscall, Some(160.0));
        assert_eq!(w.iovecs_per_syscall, Some(4.0));
        assert_eq!(w.client_syscalls_per_reply, Some(0.5));
    }
}
