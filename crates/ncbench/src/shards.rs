//! Shard balance: each backend's share of the operations and bytes of a
//! measured window, from the backend's own counters (Redis `INFO stats`:
//! `total_commands_processed`, `total_net_input_bytes`,
//! `total_net_output_bytes`; memcached `stats`: `cmd_get` + `cmd_set` +
//! `delete_hits` + `delete_misses` + `incr_hits` + `incr_misses`,
//! `bytes_read`, `bytes_written`), read before and after the window.
//!
//! A proxy splits a multi-key command per server, so a backend counts the
//! fragments it received; the shares are what each server carried. The
//! hottest shard's share shows the effect of skew (zipf) and of the ring.
//!
//! The counters are only comparable within one process, so each read also
//! takes the server's pid (`process_id`, memcached `pid`). When a backend was
//! restarted (another pid) or did not answer at either edge, as under a
//! kill/restart event, every share of that window is unknown: the shares of
//! the others alone would look like a hot shard that isn't one.
use crate::config::Protocol;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One backend's counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// The server process's pid: counters of different processes don't subtract.
    pub pid: u64,
    pub ops: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One backend's part of a window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct ShardShare {
    pub backend: String,
    pub ops: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// ops / Σ ops over backends.
    pub ops_share: f64,
    /// (bytes in + out) / Σ over backends.
    pub bytes_share: f64,
}

const IO_TIMEOUT: Duration = Duration::from_secs(2);

fn field(text: &str, prefix: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(prefix)?.strip_prefix(key)?;
        let v = rest.strip_prefix(':').or_else(|| rest.strip_prefix(' '))?;
        v.trim().parse().ok()
    })
}

/// Parses Redis `INFO` text (the server and stats sections).
pub fn parse_redis_info(text: &str) -> Option<Counters> {
    Some(Counters {
        pid: field(text, "", "process_id")?,
        ops: field(text, "", "total_commands_processed")?,
        bytes_in: field(text, "", "total_net_input_bytes")?,
        bytes_out: field(text, "", "total_net_output_bytes")?,
    })
}

/// Parses memcached `stats` text (`STAT name value` lines).
pub fn parse_memcached_stats(text: &str) -> Option<Counters> {
    let g = |k: &str| field(text, "STAT ", k);
    let ops = ["cmd_get", "cmd_set", "delete_hits", "delete_misses"]
        .iter()
        .chain(&["incr_hits", "incr_misses"])
        .map(|k| g(k))
        .sum::<Option<u64>>()?;
    Some(Counters {
        pid: g("pid")?,
        ops,
        bytes_in: g("bytes_read")?,
        bytes_out: g("bytes_written")?,
    })
}

/// Reads one backend's counters; None when it does not answer (it may have
/// been killed by an event).
pub fn read(addr: SocketAddr, protocol: Protocol) -> Option<Counters> {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).ok()?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    let mut r = BufReader::new(s.try_clone().ok()?);
    let mut text = String::new();
    match protocol {
        Protocol::Redis => {
            s.write_all(b"*1\r\n$4\r\nINFO\r\n").ok()?;
            let mut head = String::new();
            r.read_line(&mut head).ok()?;
            let len: usize = head.trim().strip_prefix('$')?.parse().ok()?;
            let mut buf = vec![0u8; len + 2];
            std::io::Read::read_exact(&mut r, &mut buf).ok()?;
            text = String::from_utf8_lossy(&buf).into_owned();
            parse_redis_info(&text)
        }
        Protocol::Memcache => {
            s.write_all(b"stats\r\n").ok()?;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).ok()? == 0 {
                    return None;
                }
                if line.trim_end() == "END" {
                    break;
                }
                text.push_str(&line);
            }
            parse_memcached_stats(&text)
        }
    }
}

/// Reads every backend.
pub fn read_all(addrs: &[SocketAddr], protocol: Protocol) -> Vec<Option<Counters>> {
    addrs.iter().map(|&a| read(a, protocol)).collect()
}

/// Shares over a window from counters read before and after it. Empty
/// (unknown) when any backend did not answer at either edge or was another
/// process at the end (restarted during the window).
pub fn window(
    addrs: &[SocketAddr],
    before: &[Option<Counters>],
    after: &[Option<Counters>],
) -> Vec<ShardShare> {
    let rows: Option<Vec<(String, Counters)>> = addrs
        .iter()
        .zip(before.iter().zip(after))
        .map(|(a, (b, z))| {
            let (b, z) = ((*b)?, (*z)?);
            if b.pid != z.pid {
                return None;
            }
            Some((
                a.to_string(),
                Counters {
                    pid: z.pid,
                    ops: z.ops.saturating_sub(b.ops),
                    bytes_in: z.bytes_in.saturating_sub(b.bytes_in),
                    bytes_out: z.bytes_out.saturating_sub(b.bytes_out),
                },
            ))
        })
        .collect();
    rows.map(shares).unwrap_or_default()
}

fn shares(rows: Vec<(String, Counters)>) -> Vec<ShardShare> {
    let ops: u64 = rows.iter().map(|r| r.1.ops).sum();
    let bytes: u64 = rows.iter().map(|r| r.1.bytes_in + r.1.bytes_out).sum();
    let frac = |n: u64, d: u64| if d > 0 { n as f64 / d as f64 } else { 0.0 };
    rows.into_iter()
        .map(|(backend, c)| ShardShare {
            backend,
            ops: c.ops,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
            ops_share: frac(c.ops, ops),
            bytes_share: frac(c.bytes_in + c.bytes_out, bytes),
        })
        .collect()
}

/// Sums trials' shares backend by backend (shares recomputed from the sums).
pub fn sum<'a>(trials: impl IntoIterator<Item = &'a [ShardShare]>) -> Vec<ShardShare> {
    let mut rows: Vec<(String, Counters)> = Vec::new();
    for t in trials {
        for s in t {
            let slot = match rows.iter().position(|r| r.0 == s.backend) {
                Some(i) => &mut rows[i].1,
                None => {
                    rows.push((s.backend.clone(), Counters::default()));
                    &mut rows.last_mut().expect("just pushed").1
                }
            };
            slot.ops += s.ops;
            slot.bytes_in += s.bytes_in;
            slot.bytes_out += s.bytes_out;
        }
    }
    shares(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_servers_counters() {
        let info = "# Server\r\nprocess_id:4242\r\n# Stats\r\ntotal_connections_received:3\r\ntotal_commands_processed:1200\r\ninstantaneous_ops_per_sec:0\r\ntotal_net_input_bytes:5000\r\ntotal_net_output_bytes:7000\r\n";
        assert_eq!(
            parse_redis_info(info),
            Some(Counters {
                pid: 4242,
                ops: 1200,
                bytes_in: 5000,
                bytes_out: 7000
            })
        );
        let mc = "STAT pid 1\r\nSTAT cmd_get 10\r\nSTAT cmd_set 5\r\nSTAT delete_misses 1\r\nSTAT delete_hits 2\r\nSTAT incr_misses 0\r\nSTAT incr_hits 3\r\nSTAT bytes_read 100\r\nSTAT bytes_written 200\r\n";
        assert_eq!(
            parse_memcached_stats(mc),
            Some(Counters {
                pid: 1,
                ops: 21,
                bytes_in: 100,
                bytes_out: 200
            })
        );
        assert_eq!(parse_redis_info("nothing"), None);
    }

    #[test]
    fn shares_of_a_window_and_of_trials() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let c = |ops, bytes_in| {
            Some(Counters {
                pid: 7,
                ops,
                bytes_in,
                bytes_out: 0,
            })
        };
        let w = window(&[a, b], &[c(100, 0), c(0, 0)], &[c(400, 30), c(100, 10)]);
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].ops, w[1].ops), (300, 100));
        assert_eq!((w[0].ops_share, w[1].ops_share), (0.75, 0.25));
        assert_eq!(w[0].bytes_share, 0.75);
        // A backend that did not answer, or was restarted (another pid),
        // makes the whole window unknown.
        assert!(window(&[a, b], &[c(0, 0), None], &[c(10, 0), c(5, 0)]).is_empty());
        let restarted = Counters {
            pid: 8,
            ops: 5,
            bytes_in: 0,
            bytes_out: 0,
        };
        assert!(window(&[a, b], &[c(0, 0), c(0, 0)], &[c(10, 0), Some(restarted)]).is_empty());
        let w2 = window(&[a, b], &[c(0, 0), c(0, 0)], &[c(10, 0), c(0, 0)]);
        assert_eq!(w2[0].ops_share, 1.0);
        let s = sum([w.as_slice(), w2.as_slice()]);
        assert_eq!((s[0].ops, s[1].ops), (310, 100));
    }
}
