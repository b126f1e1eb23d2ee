//! Key placement: thousands of keys written through nutcracker and through
//! ncproxy with the same config must land on the same backend.
//!
//! Both proxies use the SAME redis-servers (so server names that default to
//! `host:port` are identical), one proxy at a time with FLUSHALL between. Each
//! key is written through the proxy (half with pipelined SET, half with MSET,
//! which ncproxy fragments per server), read back through the proxy with
//! MGET, and then located by asking every backend for its keys directly.
//!
//! Matrix: all 12 hashes x {ketama, modula} x {no hash_tag, hash_tag} x
//! {servers named host:port, explicit names}, weights != 1 in half of the
//! configs; 2400 keys of varied length and bytes per config, many of them
//! with `{tag}` / `$tag$` parts. Distribution `random` only checks that every
//! key lands on exactly one backend.
//!
//! `NCPROXY_BIN=/usr/sbin/nutcracker cargo test --test routing` runs the
//! oracle on both sides.

use nc_harness::{
    escape_bytes, lease_port, ncproxy_bin, resp_cmd, Ncproxy, Nutcracker, PoolConfig, ProxyProcess,
    RedisServer,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

const BACKENDS: usize = 4;
const KEYS: usize = 2400;
const BATCH: usize = 400;
/// Keys per MSET.
const MSET_KEYS: usize = 50;
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Explicit server names: different lengths and not in sorted order, since
/// nutcracker sorts servers by name (shorter first) before building modula.
const NAMES: [&str; BACKENDS] = ["redis-b", "c", "redis-a", "server-dddd"];

/// The keys: deterministic, unique, varied.
fn keys() -> Vec<Vec<u8>> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let tags = [
        "1",
        "user",
        "a b",
        "{",
        "x}",
        "\u{e9}t\u{e9}",
        "00",
        "long-tag-here",
    ];
    let edge: [&[u8]; 16] = [
        b"",
        b"{}",
        b"{",
        b"}",
        b"}{",
        b"a{}b",
        b"{}{x}",
        b"a{b",
        b"a}b{c",
        b"{{a}}",
        b"x{y}z{w}",
        b"$$",
        b"$a$",
        b"a$b$c",
        b"$$x$y$",
        b"\r\n{\r\n}\r\n",
    ];
    let mut out: Vec<Vec<u8>> = edge.iter().map(|k| k.to_vec()).collect();
    let mut i = 0usize;
    while out.len() < KEYS {
        i += 1;
        let r = next();
        let key: Vec<u8> = match i % 8 {
            0 => format!("key:{i}").into_bytes(),
            1 => {
                let t = tags[(r % tags.len() as u64) as usize];
                format!("obj:{{{t}}}:{i}").into_bytes()
            }
            2 => {
                let t = tags[(r % tags.len() as u64) as usize];
                format!("{t}${t}${i}").into_bytes()
            }
            3 => {
                // printable ASCII, length 1..=64
                let len = 1 + (r % 64) as usize;
                (0..len).map(|_| b' ' + (next() % 95) as u8).collect()
            }
            4 => {
                // any bytes, length 1..=40
                let len = 1 + (r % 40) as usize;
                (0..len).map(|_| (next() & 0xff) as u8).collect()
            }
            5 => {
                // long keys, 65..=400 bytes (exercise hash block loops)
                let len = 65 + (r % 336) as usize;
                (0..len)
                    .map(|j| b'a' + ((j as u64 + r) % 26) as u8)
                    .collect()
            }
            6 => format!("{{{}}}rest:{i}", r % 97).into_bytes(),
            _ => format!("{:x}", r).into_bytes(),
        };
        out.push(key);
    }
    out.sort();
    out.dedup();
    // Dedup may have removed a few; top up with plain keys.
    let mut j = 0;
    while out.len() < KEYS {
        j += 1;
        let k = format!("extra:{j}").into_bytes();
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

struct Config {
    label: String,
    hash: &'static str,
    distribution: &'static str,
    hash_tag: Option<&'static str>,
    named: bool,
    weights: [u32; BACKENDS],
}

impl Config {
    fn yaml(&self, port: u16, backends: &[RedisServer]) -> String {
        let mut p = PoolConfig::redis("route", port)
            .hash(self.hash)
            .distribution(self.distribution);
        if let Some(t) = self.hash_tag {
            p = p.hash_tag(t);
        }
        for (i, b) in backends.iter().enumerate() {
            let name = self.named.then_some(NAMES[i]);
            p = p.server(b.addr(), self.weights[i], name);
        }
        p.render()
    }
}

fn matrix(hash: &'static str) -> Vec<Config> {
    let mut out = Vec::new();
    for (d, distribution) in ["ketama", "modula"].into_iter().enumerate() {
        for (t, hash_tag) in [None, Some("{}")].into_iter().enumerate() {
            for (n, named) in [false, true].into_iter().enumerate() {
                let weighted = (d + t + n) % 2 == 1;
                let weights = if weighted {
                    [3, 1, 2, 5]
                } else {
                    [1; BACKENDS]
                };
                // The second tagged config uses `$$` instead of `{}`.
                let hash_tag = hash_tag.map(|tag| if n == 1 { "$$" } else { tag });
                out.push(Config {
                    label: format!(
                        "hash={hash} distribution={distribution} hash_tag={hash_tag:?} \
                         named={named} weights={weights:?}"
                    ),
                    hash,
                    distribution,
                    hash_tag,
                    named,
                    weights,
                });
            }
        }
    }
    out
}

fn start_backends() -> Vec<RedisServer> {
    (0..BACKENDS)
        .map(|_| RedisServer::start().expect("start redis-server"))
        .collect()
}

fn subject_bin() -> PathBuf {
    ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Nutcracker,
    Ncproxy,
}

fn start_proxy(which: Which, yaml: &str) -> ProxyProcess {
    match which {
        Which::Nutcracker => Nutcracker::start(yaml).expect("start nutcracker"),
        Which::Ncproxy => Ncproxy::start(&subject_bin(), yaml, &[]).expect("start ncproxy"),
    }
}

fn value_for(i: usize) -> Vec<u8> {
    format!("v{i}").into_bytes()
}

/// Writes every key through `proxy` (SET for even, MSET for odd indexes),
/// reads them back with MGET (unless `read_back` is false), and returns
/// for each key the index of the backend that holds it.
fn place(
    proxy: &ProxyProcess,
    backends: &[RedisServer],
    keys: &[Vec<u8>],
    read_back: bool,
    label: &str,
) -> Vec<usize> {
    let who = proxy.kind().label();
    let mut c = proxy.connect().expect("connect to proxy");
    for (b, chunk) in keys.chunks(BATCH).enumerate() {
        let base = b * BATCH;
        let mut req = Vec::new();
        let mut expected = 0;
        let mut mset: Vec<Vec<u8>> = vec![b"MSET".to_vec()];
        for (j, k) in chunk.iter().enumerate() {
            let i = base + j;
            if i % 2 == 0 {
                req.extend(resp_cmd(&[b"SET", k, &value_for(i)]));
                expected += 1;
            } else {
                mset.push(k.clone());
                mset.push(value_for(i));
                if mset.len() > 2 * MSET_KEYS {
                    let refs: Vec<&[u8]> = mset.iter().map(Vec::as_slice).collect();
                    req.extend(resp_cmd(&refs));
                    expected += 1;
                    mset.truncate(1);
                }
            }
        }
        if mset.len() > 1 {
            let refs: Vec<&[u8]> = mset.iter().map(Vec::as_slice).collect();
            req.extend(resp_cmd(&refs));
            expected += 1;
        }
        c.send(&req).expect("send writes");
        for _ in 0..expected {
            let r = c
                .read_exact_reply_bytes(IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("{who}, {label}: write reply: {e}\n{}", proxy.log()));
            assert_eq!(
                r,
                b"+OK\r\n",
                "{who}, {label}: write failed: {}",
                escape_bytes(&r)
            );
        }
    }
    if read_back {
        for (b, chunk) in keys.chunks(BATCH).enumerate() {
            let mut args: Vec<&[u8]> = vec![b"MGET"];
            args.extend(chunk.iter().map(Vec::as_slice));
            c.send(&resp_cmd(&args)).expect("send MGET");
            let r = c
                .read_exact_reply_bytes(IO_TIMEOUT)
                .unwrap_or_else(|e| panic!("{who}, {label}: MGET reply: {e}"));
            let mut want = format!("*{}\r\n", chunk.len()).into_bytes();
            for j in 0..chunk.len() {
                let v = value_for(b * BATCH + j);
                want.extend(format!("${}\r\n", v.len()).into_bytes());
                want.extend(v);
                want.extend(b"\r\n");
            }
            if let Some(d) = nc_harness::diff_bytes(&want, &r, 40) {
                panic!("{who}, {label}: MGET through the proxy did not read back the values: {d}");
            }
        }
    }
    drop(c);

    let index: HashMap<&[u8], usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_slice(), i))
        .collect();
    let mut placement = vec![usize::MAX; keys.len()];
    for (bi, backend) in backends.iter().enumerate() {
        for k in backend.keys(0).expect("KEYS on backend") {
            let i = *index
                .get(k.as_slice())
                .unwrap_or_else(|| panic!("{who}, {label}: unexpected key {}", escape_bytes(&k)));
            assert_eq!(
                placement[i],
                usize::MAX,
                "{who}, {label}: key {} on two backends",
                escape_bytes(&k)
            );
            placement[i] = bi;
        }
    }
    if let Some(i) = placement.iter().position(|&p| p == usize::MAX) {
        panic!(
            "{who}, {label}: key {} is on no backend",
            escape_bytes(&keys[i])
        );
    }
    for b in backends {
        b.flushall().expect("FLUSHALL");
    }
    placement
}

fn run_placement(
    which: Which,
    yaml: &str,
    backends: &[RedisServer],
    keys: &[Vec<u8>],
    read_back: bool,
    label: &str,
) -> Vec<usize> {
    let proxy = start_proxy(which, yaml);
    place(&proxy, backends, keys, read_back, label)
}

fn check_hash(hash: &'static str) {
    let backends = start_backends();
    let keys = keys();
    assert!(keys.len() >= KEYS);
    for cfg in matrix(hash) {
        let port = lease_port().expect("free port");
        let yaml = cfg.yaml(port.port(), &backends);
        let want = run_placement(Which::Nutcracker, &yaml, &backends, &keys, true, &cfg.label);
        // The oracle spreads keys over several backends (the test is
        // meaningful). Exception: libmemcached's crc32 yields 15-bit hashes,
        // which all fall below the first few 32-bit ketama points.
        let counts: Vec<usize> = (0..BACKENDS)
            .map(|b| want.iter().filter(|&&p| p == b).count())
            .collect();
        eprintln!("{}: nutcracker placement {counts:?}", cfg.label);
        let used = counts.iter().filter(|&&n| n > 0).count();
        let needed = if hash == "crc32" && cfg.distribution == "ketama" {
            1
        } else {
            BACKENDS
        };
        assert!(
            used >= needed,
            "{}: nutcracker used only {used} backends ({counts:?}): the key set is too narrow",
            cfg.label
        );
        // With a hash tag, keys sharing a tag share a backend.
        let same_tag: &[u8] = match cfg.hash_tag {
            Some("{}") => b"obj:{user}:",
            Some("$$") => b"user$user$",
            _ => b"",
        };
        if !same_tag.is_empty() {
            let spots: Vec<usize> = (0..keys.len())
                .filter(|&i| keys[i].starts_with(same_tag))
                .map(|i| want[i])
                .collect();
            assert!(spots.len() > 10, "{}: too few tagged keys", cfg.label);
            assert!(
                spots.iter().all(|&b| b == spots[0]),
                "{}: nutcracker spread keys with one hash tag over several backends",
                cfg.label
            );
        }
        drop(port);
        let port = lease_port().expect("free port");
        let yaml = cfg.yaml(port.port(), &backends);
        let got = run_placement(Which::Ncproxy, &yaml, &backends, &keys, true, &cfg.label);
        let wrong: Vec<usize> = (0..keys.len()).filter(|&i| want[i] != got[i]).collect();
        if !wrong.is_empty() {
            let names = |b: usize| {
                if cfg.named {
                    NAMES[b].to_string()
                } else {
                    backends[b].addr().to_string()
                }
            };
            let examples: Vec<String> = wrong
                .iter()
                .take(10)
                .map(|&i| {
                    format!(
                        "  key \"{}\": nutcracker -> {}, ncproxy -> {}",
                        escape_bytes(&keys[i]),
                        names(want[i]),
                        names(got[i])
                    )
                })
                .collect();
            panic!(
                "{}: {} of {} keys placed differently\n{}\nconfig:\n{}",
                cfg.label,
                wrong.len(),
                keys.len(),
                examples.join("\n"),
                yaml
            );
        }
    }
}

#[test]
fn fnv1a_64() {
    check_hash("fnv1a_64");
}

#[test]
fn fnv1_64() {
    check_hash("fnv1_64");
}

#[test]
fn fnv1a_32() {
    check_hash("fnv1a_32");
}

#[test]
fn fnv1_32() {
    check_hash("fnv1_32");
}

#[test]
fn murmur() {
    check_hash("murmur");
}

#[test]
fn md5() {
    check_hash("md5");
}

#[test]
fn crc32() {
    check_hash("crc32");
}

#[test]
fn crc32a() {
    check_hash("crc32a");
}

#[test]
fn crc16() {
    check_hash("crc16");
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
fn one_at_a_time() {
    check_hash("one_at_a_time");
}

/// The default hash and distribution (keys omitted from the config).
#[test]
fn defaults() {
    let backends = start_backends();
    let keys = keys();
    let render = |port: u16| {
        let mut p = PoolConfig::redis("route", port);
        for b in &backends {
            p = p.server(b.addr(), 1, None);
        }
        p.render()
    };
    let port = lease_port().unwrap();
    let want = run_placement(
        Which::Nutcracker,
        &render(port.port()),
        &backends,
        &keys,
        true,
        "defaults",
    );
    let port = lease_port().unwrap();
    let got = run_placement(
        Which::Ncproxy,
        &render(port.port()),
        &backends,
        &keys,
        true,
        "defaults",
    );
    let wrong = (0..keys.len()).filter(|&i| want[i] != got[i]).count();
    assert_eq!(wrong, 0, "defaults: {wrong} keys placed differently");
}

/// `distribution: random`: every key must land on exactly one backend.
#[test]
fn random_distribution_places_every_key_once() {
    let backends = start_backends();
    let keys = keys();
    for which in [Which::Nutcracker, Which::Ncproxy] {
        let port = lease_port().unwrap();
        let yaml = {
            let mut p = PoolConfig::redis("route", port.port())
                .hash("murmur")
                .distribution("random");
            for (i, b) in backends.iter().enumerate() {
                p = p.server(b.addr(), 1 + i as u32, None);
            }
            p.render()
        };
        // `place` panics unless every key is on exactly one backend.
        let placement = run_placement(which, &yaml, &backends, &keys, false, "random");
        let used = (0..BACKENDS).filter(|b| placement.contains(b)).count();
        assert!(
            used > 1,
            "{which:?}: random distribution used only {used} backend(s)"
        );
    }
}

/// Reads through a proxy reach the key wherever the proxy put it, also with
/// a single server (no hashing) and with a one-server-heavy weight.
#[test]
fn single_server_pool() {
    let backends = start_backends();
    let keys: Vec<Vec<u8>> = keys().into_iter().take(500).collect();
    for which in [Which::Nutcracker, Which::Ncproxy] {
        let port = lease_port().unwrap();
        let yaml = PoolConfig::redis("route", port.port())
            .hash("md5")
            .server(backends[2].addr(), 7, Some("only"))
            .render();
        let placement = run_placement(which, &yaml, &backends, &keys, true, "single server");
        assert!(placement.iter().all(|&b| b == 2), "{which:?}");
    }
}
