//! Memcache key placement: keys written through nutcracker and through
//! ncproxy with the same memcache pool config must land on the same
//! memcached.
//!
//! Both proxies use the SAME three memcached (so unnamed servers, named
//! `host:port`, hash identically), one proxy at a time with `flush_all`
//! (sent directly to each memcached) in between. Keys are written with
//! pipelined `set` (a quarter of them `noreply`), read back through the proxy
//! with multi-key `get`, and located by asking every memcached directly.
//!
//! Matrix: fnv1a_64, md5, crc32a, murmur, one_at_a_time, hsieh, jenkins,
//! fnv1_32 x {ketama, modula}, alternating explicit names / `host:port`
//! names and weights 1 / unequal (random is not deterministic: skipped).
//!
//! The libmemcached naming rule (a server `host:11211:w` without a name is
//! named `host`, so it hashes as `host`, not `host:11211`) is checked with a
//! pool whose first server is `127.0.0.1:11211:1` with nothing listening: the
//! set of keys answered `SERVER_ERROR Connection refused`, and where the
//! other keys land, must be the same on both proxies (under ketama the ring
//! depends on every server's name).
//!
//! `NCPROXY_BIN=/usr/sbin/nutcracker cargo test -p ncproxy-cli --test
//! memcache_routing` runs the oracle on both sides.

use nc_harness::memcache::{get, McConn};
use nc_harness::{escape_bytes, ncproxy_bin, Memcached, Ncproxy, Nutcracker, PoolConfig};
use nc_harness::{ProxyProcess, RawConn};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

const KEYS: usize = 600;
const IO: Duration = Duration::from_secs(20);
/// Explicit names, not in sorted order (nutcracker sorts servers by name).
const NAMES: [&str; 3] = ["mc-b", "a", "mc-aaaa"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Nutcracker,
    Ncproxy,
}

fn keys() -> Vec<Vec<u8>> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..KEYS)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = 1 + (x % 40) as usize;
            let mut k = format!("{i}:").into_bytes();
            for j in 0..len {
                // printable, no space/control bytes
                k.push(b'!' + ((x >> (j % 8 * 8)) as u8).wrapping_add(j as u8) % 94);
            }
            k
        })
        .collect()
}

fn start(which: Which, yaml: &str) -> ProxyProcess {
    match which {
        Which::Nutcracker => Nutcracker::start(yaml).expect("start nutcracker"),
        Which::Ncproxy => Ncproxy::start(&ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy")), yaml, &[])
            .expect("start ncproxy with a memcache pool"),
    }
}

fn flush(backends: &[Memcached]) {
    for b in backends {
        let mut c = McConn::connect(b.addr()).expect("connect memcached");
        assert_eq!(c.call(b"flush_all\r\n", IO).expect("flush_all"), b"OK\r\n");
    }
}

/// Where each key lives: index of the backend holding it, `None` if none.
fn locate(backends: &[SocketAddr], keys: &[Vec<u8>]) -> Vec<Option<usize>> {
    let mut at = vec![None; keys.len()];
    for (bi, b) in backends.iter().enumerate() {
        let mut c = McConn::connect(*b).expect("connect memcached");
        for (ci, chunk) in keys.chunks(100).enumerate() {
            let refs: Vec<&[u8]> = chunk.iter().map(|k| k.as_slice()).collect();
            let r = c.call(&get(&refs), IO).expect("get from memcached");
            for (j, k) in chunk.iter().enumerate() {
                let mut hdr = b"VALUE ".to_vec();
                hdr.extend_from_slice(k);
                hdr.push(b' ');
                if r.windows(hdr.len()).any(|w| w == hdr.as_slice()) {
                    let slot = &mut at[ci * 100 + j];
                    assert!(
                        slot.is_none(),
                        "key \"{}\" on two backends",
                        escape_bytes(k)
                    );
                    *slot = Some(bi);
                }
            }
        }
    }
    at
}

/// Writes every key through the proxy; returns the reply to each replied
/// set (`None` for noreply sets).
fn write_all(proxy: &ProxyProcess, keys: &[Vec<u8>]) -> Vec<Option<Vec<u8>>> {
    let mut c = McConn::from_raw(RawConn::connect_listen(&proxy.listens()[0]).expect("connect"));
    let mut out = Vec::new();
    for (bi, batch) in keys.chunks(100).enumerate() {
        let mut bytes = Vec::new();
        let mut replied = Vec::new();
        for (j, k) in batch.iter().enumerate() {
            let noreply = (bi * 100 + j) % 4 == 3;
            bytes.extend(nc_harness::memcache::storage("set", k, 0, 0, k, noreply));
            replied.push(!noreply);
        }
        // A trailing get makes sure the noreply sets were forwarded.
        bytes.extend(get(&[b"__fence"]));
        c.send(&bytes).expect("send");
        for r in replied {
            out.push(if r {
                Some(c.reply(IO).expect("set reply"))
            } else {
                None
            });
        }
        c.reply(IO).expect("fence reply");
    }
    out
}

/// Multi-key gets through the proxy return every stored key's value.
fn read_back(proxy: &ProxyProcess, keys: &[Vec<u8>], stored: &[bool]) {
    let mut c = McConn::from_raw(RawConn::connect_listen(&proxy.listens()[0]).expect("connect"));
    for (ci, chunk) in keys.chunks(50).enumerate() {
        let refs: Vec<&[u8]> = chunk.iter().map(|k| k.as_slice()).collect();
        let r = c.call(&get(&refs), IO).expect("multi-get through proxy");
        for (j, k) in chunk.iter().enumerate() {
            let mut block = format!("VALUE {} 0 {}\r\n", "", k.len()).into_bytes();
            block.splice(6..6, k.iter().copied());
            block.extend_from_slice(k);
            block.extend_from_slice(b"\r\n");
            let found = r.windows(block.len()).any(|w| w == block.as_slice());
            assert_eq!(
                found,
                stored[ci * 50 + j],
                "multi-get through the proxy: key \"{}\"",
                escape_bytes(k)
            );
        }
    }
}

struct Placement {
    at: Vec<Option<usize>>,
    replies: Vec<Option<Vec<u8>>>,
}

fn place(which: Which, yaml: &str, backends: &[Memcached], keys: &[Vec<u8>]) -> Placement {
    // A pool with a refused server cannot be read back with multi-gets
    // (a failed fragment closes the connection).
    let all_up = !yaml.contains(":11211:");
    flush(backends);
    let proxy = start(which, yaml);
    let replies = write_all(&proxy, keys);
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr()).collect();
    let at = locate(&addrs, keys);
    let stored: Vec<bool> = at.iter().map(|a| a.is_some()).collect();
    if all_up {
        read_back(&proxy, keys, &stored);
    }
    Placement { at, replies }
}

fn compare(label: &str, yaml: &str, backends: &[Memcached], keys: &[Vec<u8>]) -> Placement {
    let r = place(Which::Nutcracker, yaml, backends, keys);
    let s = place(Which::Ncproxy, yaml, backends, keys);
    let mut wrong = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if r.at[i] != s.at[i] || r.replies[i] != s.replies[i] {
            wrong.push(format!(
                "\"{}\": nutcracker {:?} {:?}, ncproxy {:?} {:?}",
                escape_bytes(k),
                r.at[i],
                r.replies[i].as_deref().map(escape_bytes),
                s.at[i],
                s.replies[i].as_deref().map(escape_bytes)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{label}: {} of {} keys placed differently, e.g.\n  {}\nconfig:\n{yaml}",
        wrong.len(),
        keys.len(),
        wrong[..wrong.len().min(8)].join("\n  ")
    );
    r
}

fn check_hash(hash: &str) {
    let backends: Vec<Memcached> = (0..3)
        .map(|_| Memcached::start().expect("start memcached"))
        .collect();
    let keys = keys();
    for (ci, dist) in ["ketama", "modula"].iter().enumerate() {
        let named = ci == 0;
        let port = nc_harness::free_port().expect("free port");
        let mut pool = PoolConfig::memcache("mcroute", port)
            .hash(hash)
            .distribution(dist);
        for (i, b) in backends.iter().enumerate() {
            let weight = if named { 1 } else { [3, 1, 2][i] };
            pool = pool.server(b.addr(), weight, named.then_some(NAMES[i]));
        }
        let yaml = pool.render();
        let r = compare(&format!("{hash}/{dist}"), &yaml, &backends, &keys);
        // Every key stored, and more than one backend used.
        assert!(r.at.iter().all(|a| a.is_some()), "{hash}/{dist}: lost keys");
        let mut per = HashMap::new();
        for a in r.at.iter().flatten() {
            *per.entry(*a).or_insert(0) += 1;
        }
        assert!(per.len() > 1, "{hash}/{dist}: every key on one backend");
    }
}

#[test]
fn fnv1a_64() {
    check_hash("fnv1a_64");
}

#[test]
fn md5() {
    check_hash("md5");
}

#[test]
fn crc32a() {
    check_hash("crc32a");
}

#[test]
fn murmur() {
    check_hash("murmur");
}

#[test]
fn one_at_a_time() {
    check_hash("one_at_a_time");
}

#[test]
fn hsieh() {
    check_hash("hsieh");
}

#[test]
fn jenkins() {
    check_hash("jenkins");
}

#[test]
fn fnv1_32() {
    check_hash("fnv1_32");
}

/// `127.0.0.1:11211:1` without a name hashes as `127.0.0.1` (libmemcached
/// rule); nothing listens there, so its keys get `SERVER_ERROR Connection
/// refused` and the set of refused keys must match nutcracker's.
#[test]
fn port_11211_server_is_named_by_host() {
    assert!(
        std::net::TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], 11211)),
            Duration::from_millis(300)
        )
        .is_err(),
        "this test needs 127.0.0.1:11211 to be free (stop the system memcached)"
    );
    let backends: Vec<Memcached> = (0..2)
        .map(|_| Memcached::start().expect("start memcached"))
        .collect();
    let keys: Vec<Vec<u8>> = keys().into_iter().take(300).collect();
    for (hash, dist) in [("fnv1a_64", "ketama"), ("md5", "ketama"), ("md5", "modula")] {
        let port = nc_harness::free_port().expect("free port");
        let yaml = PoolConfig::memcache("mc11211", port)
            .hash(hash)
            .distribution(dist)
            .timeout(500)
            .server("127.0.0.1:11211", 1, None)
            .server(backends[0].addr(), 1, Some("b-one"))
            .server(backends[1].addr(), 1, None)
            .render();
        let r = compare(&format!("11211 {hash}/{dist}"), &yaml, &backends, &keys);
        // The rule itself, on the oracle: naming the server `127.0.0.1`
        // explicitly places every key the same way.
        let named = yaml.replace("127.0.0.1:11211:1\n", "127.0.0.1:11211:1 127.0.0.1\n");
        assert_ne!(named, yaml, "config rendering changed: {yaml}");
        let n = place(Which::Nutcracker, &named, &backends, &keys);
        assert!(
            n.at == r.at && n.replies == r.replies,
            "nutcracker does not name `127.0.0.1:11211:1` as `127.0.0.1` ({hash}/{dist})"
        );
        // ...and the test can tell: named `127.0.0.1:11211`, ketama differs.
        if dist == "ketama" {
            let full = yaml.replace("127.0.0.1:11211:1\n", "127.0.0.1:11211:1 127.0.0.1:11211\n");
            let f = place(Which::Nutcracker, &full, &backends, &keys);
            assert!(
                f.replies != r.replies,
                "placement does not depend on the 11211 server's name ({hash}/{dist})"
            );
        }
        let refused = r
            .replies
            .iter()
            .flatten()
            .filter(|x| x.as_slice() == b"SERVER_ERROR Connection refused\r\n")
            .count();
        assert!(
            refused > 0 && r.at.iter().any(|a| a.is_some()),
            "11211 {hash}/{dist}: expected some keys refused and some stored (refused {refused})"
        );
    }
}
