//! Seeded random differential: random pipelines of mixed commands over a
//! small keyspace (so keys collide, go missing and change type), with binary
//! values and random write splits, sent to nutcracker and to ncproxy. Both
//! have identically configured but separate backends; every reply byte must
//! match. Set `NC_RANDOM_SEED` to replay a run, `NC_RANDOM_ROUNDS` for more.

use std::time::Duration;

use nc_harness::{
    diff_bytes, escape_bytes, ncproxy_bin, resp_cmd, Ncproxy, Nutcracker, PoolConfig, ProxyProcess,
    RawConn, RedisServer,
};

const IDLE: Duration = Duration::from_secs(2);
const CAP: Duration = Duration::from_secs(20);

/// SplitMix64: small, seedable, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn key(&mut self) -> Vec<u8> {
        // Twelve keys, a few with a hash tag: collisions and type changes are common.
        let names: [&[u8]; 12] = [
            b"a",
            b"b",
            b"c",
            b"d",
            b"e",
            b"f",
            b"{t}1",
            b"{t}2",
            b"long:key:with:parts",
            b"",
            b"\xff\x00k",
            b"k\r\nv",
        ];
        names[self.below(names.len())].to_vec()
    }

    fn value(&mut self) -> Vec<u8> {
        match self.below(5) {
            0 => Vec::new(),
            1 => self.below(1000).to_string().into_bytes(),
            2 => (0..self.below(64)).map(|_| self.next() as u8).collect(),
            3 => b"v\r\n$3\r\nx".to_vec(),
            _ => vec![b'x'; self.below(5000)],
        }
    }
}

/// One random command that both proxies support.
fn command(rng: &mut Rng) -> Vec<u8> {
    let k = rng.key();
    let v = rng.value();
    let extra = rng.below(4);
    let pick = rng.below(26);
    let mut keys = |n: usize| -> Vec<Vec<u8>> { (0..n).map(|_| rng.key()).collect() };
    let args: Vec<Vec<u8>> = match pick {
        0 => vec![b"GET".to_vec(), k],
        1 => vec![b"SET".to_vec(), k, v],
        2 => {
            let mut a = vec![b"MGET".to_vec()];
            a.extend(keys(1 + extra));
            a
        }
        3 => {
            let mut a = vec![b"DEL".to_vec()];
            a.extend(keys(1 + extra));
            a
        }
        4 => {
            let mut a = vec![b"MSET".to_vec()];
            for key in keys(1 + extra) {
                a.push(key);
                a.push(b"m".to_vec());
            }
            a
        }
        5 => vec![b"INCR".to_vec(), k],
        6 => vec![b"APPEND".to_vec(), k, v],
        7 => {
            let mut a = vec![b"EXISTS".to_vec()];
            a.extend(keys(2));
            a
        }
        8 => vec![b"HSET".to_vec(), k, b"f".to_vec(), v],
        9 => vec![b"HGET".to_vec(), k, b"f".to_vec()],
        10 => vec![b"LPUSH".to_vec(), k, v],
        11 => vec![b"LRANGE".to_vec(), k, b"0".to_vec(), b"-1".to_vec()],
        12 => vec![b"SADD".to_vec(), k, b"m1".to_vec(), b"m2".to_vec()],
        13 => vec![b"SCARD".to_vec(), k],
        14 => vec![b"ZADD".to_vec(), k, b"1.5".to_vec(), v],
        15 => vec![
            b"ZRANGE".to_vec(),
            k,
            b"0".to_vec(),
            b"-1".to_vec(),
            b"WITHSCORES".to_vec(),
        ],
        16 => vec![b"EXPIRE".to_vec(), k, b"1000".to_vec()],
        17 => vec![b"TTL".to_vec(), k],
        18 => vec![b"TYPE".to_vec(), k],
        19 => vec![b"STRLEN".to_vec(), k],
        20 => vec![b"GETSET".to_vec(), k, v],
        21 => vec![b"SETNX".to_vec(), k, v],
        22 => vec![b"PING".to_vec()],
        23 => {
            let mut a = vec![b"UNLINK".to_vec()];
            a.extend(keys(2));
            a
        }
        24 => vec![
            b"EVAL".to_vec(),
            b"return redis.call('type', KEYS[1])".to_vec(),
            b"1".to_vec(),
            k,
        ],
        _ => vec![b"HGETALL".to_vec(), k],
    };
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    resp_cmd(&refs)
}

fn side(make: impl Fn(&str) -> ProxyProcess) -> (ProxyProcess, Vec<RedisServer>) {
    let backends: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start().expect("redis-server starts"))
        .collect();
    let mut pool = PoolConfig::redis("rand", nc_harness::free_port().unwrap())
        .hash("murmur")
        .distribution("ketama")
        .hash_tag("{}");
    for (i, b) in backends.iter().enumerate() {
        pool = pool.server(b.addr(), 1, Some(&format!("s{}", i + 1)));
    }
    (make(&pool.render()), backends)
}

/// Sends `bytes` in the given chunks and reads `n` replies (or until EOF/idle).
fn exchange(proxy: &ProxyProcess, bytes: &[u8], cuts: &[usize], n: usize) -> Vec<u8> {
    let mut conn: RawConn = proxy.connect().expect("connect");
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        conn.send(&bytes[start..cut]).expect("send");
        start = cut;
    }
    conn.read_replies_or_eof(n, IDLE, CAP)
}

#[test]
fn random_pipelines_match_nutcracker() {
    let seed: u64 = std::env::var("NC_RANDOM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_2026);
    let rounds: usize = std::env::var("NC_RANDOM_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let (reference, _rb) = side(|yaml| {
        Nutcracker::start(yaml).expect("nutcracker starts (apt-get install nutcracker)")
    });
    let bin = ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"));
    let (subject, _sb) = side(|yaml| Ncproxy::start(&bin, yaml, &[]).expect("ncproxy starts"));
    let mut rng = Rng(seed);
    let mut total = 0;
    for round in 0..rounds {
        let n = 1 + rng.below(40);
        let bytes: Vec<u8> = (0..n).flat_map(|_| command(&mut rng)).collect();
        let mut cuts: Vec<usize> = (0..rng.below(4))
            .map(|_| 1 + rng.below(bytes.len().max(2) - 1))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let expected = exchange(&reference, &bytes, &cuts, n);
        let got = exchange(&subject, &bytes, &cuts, n);
        if expected != got {
            panic!(
                "seed {seed} round {round}: nutcracker and ncproxy differ\n  {}\n  request: \"{}\"",
                diff_bytes(&expected, &got, 80).unwrap_or_default(),
                escape_bytes(&bytes[..bytes.len().min(800)])
            );
        }
        total += n;
    }
    println!("random differential: seed {seed}, {rounds} pipelines, {total} commands, identical");
}
