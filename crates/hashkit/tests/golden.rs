//! Key placement recorded from the real nutcracker 0.5.0 (test-data/placement/*.csv,
//! produced as test-data/README.md describes). Each file describes one pool in its
//! `#` header (servers already in nutcracker's sorted order, with weight and
//! live/ejected state) followed by `key,server` rows.

use std::fs;
use std::path::{Path, PathBuf};

use nc_hashkit::{Continuum, DistributionKind, HashKind, ServerSpec};

/// Undoes the CSV escaping: `\xNN` for any byte outside `!`..`~`, `,` and `\`.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            assert_eq!(b.get(i + 1), Some(&b'x'), "bad escape in {s:?}");
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

struct Pool {
    dist: DistributionKind,
    hash: HashKind,
    tag: Option<[u8; 2]>,
    servers: Vec<(Vec<u8>, u32, bool)>,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
}

fn parse(path: &Path) -> Pool {
    let text = fs::read_to_string(path).unwrap();
    let mut pool = Pool {
        dist: DistributionKind::Ketama,
        hash: HashKind::Md5,
        tag: None,
        servers: Vec::new(),
        rows: Vec::new(),
    };
    let mut header_seen = false;
    for line in text.lines() {
        if let Some(meta) = line.strip_prefix("# ") {
            let (k, v) = meta.split_once(": ").unwrap();
            match k {
                "pool" => {}
                "distribution" => pool.dist = DistributionKind::from_name(v).unwrap(),
                "hash" => pool.hash = HashKind::from_name(v).unwrap(),
                "hash_tag" => pool.tag = Some(v.as_bytes().try_into().unwrap()),
                "server" => {
                    let mut f = v.split(' ');
                    let name = unescape(f.next().unwrap());
                    let weight = f.next().unwrap().parse().unwrap();
                    let live = match f.next().unwrap() {
                        "live" => true,
                        "ejected" => false,
                        other => panic!("state {other}"),
                    };
                    pool.servers.push((name, weight, live));
                }
                other => panic!("unknown header {other}"),
            }
        } else if line == "key,server" {
            header_seen = true;
        } else if !line.is_empty() {
            assert!(header_seen);
            // Keys and names never contain a raw ',' (escaped), so split once.
            let (k, s) = line.split_once(',').unwrap();
            pool.rows.push((unescape(k), unescape(s)));
        }
    }
    pool
}

fn files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test-data/placement");
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    files
}

#[test]
fn placement_matches_real_nutcracker() {
    let files = files();
    assert!(files.len() >= 24, "{} files", files.len());
    let mut failures = Vec::new();
    for path in files {
        let pool = parse(&path);
        let specs: Vec<ServerSpec<'_>> = pool
            .servers
            .iter()
            .map(|(name, weight, _)| ServerSpec {
                name,
                weight: *weight,
            })
            .collect();
        let live: Vec<bool> = pool.servers.iter().map(|s| s.2).collect();
        let c = Continuum::build(pool.dist, &specs, &live);
        assert!(pool.rows.len() >= 300, "{}", path.display());
        let mut wrong = Vec::new();
        for (key, server) in &pool.rows {
            let want = pool.servers.iter().position(|s| &s.0 == server).unwrap();
            let got = c.server_for_key(pool.hash, pool.tag, key);
            if got != Some(want) {
                wrong.push((String::from_utf8_lossy(key).into_owned(), want, got));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {} of {} keys misplaced, e.g. (key, want, got) {:?}",
                path.file_name().unwrap().to_string_lossy(),
                wrong.len(),
                pool.rows.len(),
                &wrong[..wrong.len().min(3)]
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
