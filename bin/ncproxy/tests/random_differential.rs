//! Seeded random differentials against nutcracker. Both proxies have
//! identically configured but separate backends, and every reply byte must
//! match.
//!
//! - Random pipelines of mixed commands over a small keyspace (so keys
//!   collide, go missing and change type), with binary values and random
//!   write splits.
//! - The same pipelines with one mutation (a byte flipped, dropped, inserted
//!   or duplicated, a length rewritten, a truncation, a stray prefix), over
//!   the whole command table in random case and arity: the replies, and
//!   whether the connection is closed, must match.
//!
//! Set `NC_RANDOM_SEED` to replay a run, `NC_RANDOM_ROUNDS` for more.

use std::thread;
use std::time::Duration;

use nc_harness::{
    diff_bytes, escape_bytes, ncproxy_bin, resp_cmd, Ncproxy, Nutcracker, PoolConfig, ProxyProcess,
    RawConn, RedisServer, SplitMix64 as Rng,
};

const IDLE: Duration = Duration::from_secs(2);
const CAP: Duration = Duration::from_secs(20);

/// One of twelve keys, a few with a hash tag: collisions and type changes
/// are common.
fn key(rng: &mut Rng) -> Vec<u8> {
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
    names[rng.below(names.len())].to_vec()
}

/// An empty, numeric, binary, RESP-looking or long value.
fn value(rng: &mut Rng) -> Vec<u8> {
    match rng.below(5) {
        0 => Vec::new(),
        1 => rng.below(1000).to_string().into_bytes(),
        2 => (0..rng.below(64)).map(|_| rng.next_u64() as u8).collect(),
        3 => b"v\r\n$3\r\nx".to_vec(),
        _ => vec![b'x'; rng.below(5000)],
    }
}

/// One random command that both proxies support.
fn command(rng: &mut Rng) -> Vec<u8> {
    let k = key(rng);
    let v = value(rng);
    let extra = rng.below(4);
    let pick = rng.below(26);
    let mut keys = |n: usize| -> Vec<Vec<u8>> { (0..n).map(|_| key(rng)).collect() };
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

/// One command from the whole table (nutcracker's and the unsupported ones
/// it closes on), in random letter case, with 0 to 5 short arguments: the
/// arity checks of every command class get exercised.
fn any_command(rng: &mut Rng) -> Vec<u8> {
    const NAMES: [&str; 40] = [
        "get",
        "set",
        "mget",
        "del",
        "mset",
        "ping",
        "quit",
        "auth",
        "append",
        "bitcount",
        "decrby",
        "eval",
        "evalsha",
        "exists",
        "expire",
        "getrange",
        "hdel",
        "hget",
        "hmset",
        "hincrbyfloat",
        "linsert",
        "lrange",
        "pfadd",
        "pfmerge",
        "restore",
        "setex",
        "sinter",
        "smove",
        "sort",
        "sunionstore",
        "touch",
        "unlink",
        "zadd",
        "zinterstore",
        "zrangebyscore",
        "zunionstore",
        "geoadd",
        "georadius",
        "select",
        "nosuch",
    ];
    let name = NAMES[rng.below(NAMES.len())];
    let name: Vec<u8> = name
        .bytes()
        .map(|c| match rng.below(3) {
            0 => c.to_ascii_uppercase(),
            _ => c,
        })
        .collect();
    let mut args = vec![name];
    for _ in 0..rng.below(6) {
        args.push(match rng.below(3) {
            0 => key(rng),
            1 => (rng.below(24) as i64 - 3).to_string().into_bytes(),
            _ => (0..rng.below(8)).map(|_| rng.next_u64() as u8).collect(),
        });
    }
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    resp_cmd(&refs)
}

/// Replacement length tokens: zero, negatives, signs, spaces, off by one.
const LENGTHS: [&[u8]; 10] = [
    b"0", b"-1", b"-2", b"1", b"2", b"+1", b" 1", b"", b"x", b"16336",
];
/// Stray prefixes: inline commands, blank lines, replies sent as requests.
const PREFIXES: [&[u8]; 7] = [
    b"PING\r\n",
    b"\r\n",
    b"\n",
    b"GET a\r\n",
    b"*1\r\n*1\r\n$4\r\nPING\r\n",
    b":1\r\n",
    b"+OK\r\n",
];

/// Applies one random mutation to a request stream.
fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    if b.is_empty() {
        return b;
    }
    let at = rng.below(b.len());
    match rng.below(8) {
        0 => b[at] = rng.next_u64() as u8,
        1 => {
            b.remove(at);
        }
        2 => b.insert(at, b"*$:+-\r\n0123456789 "[rng.below(17)]),
        3 => b.truncate(at),
        4 => {
            // Rewrite one `*N` or `$N` length.
            let heads: Vec<usize> = (0..b.len())
                .filter(|&i| matches!(b[i], b'*' | b'$'))
                .collect();
            let head = heads[rng.below(heads.len())];
            if let Some(cr) = b[head..].iter().position(|&c| c == b'\r') {
                let with = LENGTHS[rng.below(LENGTHS.len())];
                b.splice(head + 1..head + cr, with.iter().copied());
            }
        }
        5 => b[at] = b"\r\n*$"[rng.below(4)],
        6 => {
            let end = (at + 1 + rng.below(20)).min(b.len());
            let piece = b[at..end].to_vec();
            b.splice(at..at, piece);
        }
        _ => {
            let mut with = PREFIXES[rng.below(PREFIXES.len())].to_vec();
            with.extend_from_slice(&b);
            b = with;
        }
    }
    b
}

/// Inputs on which ncproxy differs from nutcracker on purpose (README,
/// "Bounded request headers"), or which make Redis drop nutcracker's server
/// connection (after which nutcracker fails the next request on it, a timing
/// matter): a length of 7 or more digits, a leading zero, `$\r\n`, and a
/// command name longer than 64 bytes that ncproxy refuses before its bytes
/// arrive.
fn deliberately_different(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        if matches!(b[i], b'*' | b'$') {
            let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            let next = b.get(i + 1 + digits);
            if digits >= 7 || (digits > 1 && b[i + 1] == b'0') {
                return true;
            }
            if b[i] == b'$' && digits == 0 && next == Some(&b'\r') {
                return true;
            }
            // `*N\r\n$L\r\n`: L is a command name's length.
            if b[i] == b'*' && next == Some(&b'\r') && b.get(i + 2 + digits) == Some(&b'\n') {
                let name = &b[i + 3 + digits..];
                let len_digits = name
                    .iter()
                    .skip(1)
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                if name.first() == Some(&b'$') && len_digits > 0 {
                    let len: usize = std::str::from_utf8(&name[1..1 + len_digits])
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(usize::MAX);
                    if len > 64 {
                        return true;
                    }
                }
            }
            i += 1 + digits;
        } else {
            i += 1;
        }
    }
    false
}

/// What a proxy did with one input: the bytes it sent back, and whether it
/// closed the connection.
type Outcome = (Vec<u8>, bool);

/// Sends `bytes` on fresh connections to both proxies at once and collects
/// what comes back until each closes or goes quiet for `idle`.
fn both(
    reference: &ProxyProcess,
    subject: &ProxyProcess,
    bytes: &[u8],
    idle: Duration,
) -> (Outcome, Outcome) {
    let run = |proxy: &ProxyProcess| -> (RawConn, Outcome) {
        let mut conn = proxy.connect().expect("connect");
        conn.send(bytes).expect("send");
        let got = conn.read_until_eof_or_idle(idle, CAP);
        let closed = conn.saw_close();
        (conn, (got, closed))
    };
    thread::scope(|s| {
        let a = s.spawn(|| run(reference));
        let (mut conn_b, mut b) = run(subject);
        let (mut conn_a, mut a) = a.join().expect("reference side");
        // A slow reply must not pass for a difference: when the two differ,
        // give both a second, longer look before judging.
        if a != b {
            a.0.extend(conn_a.read_until_eof_or_idle(IDLE, CAP));
            a.1 = conn_a.saw_close();
            b.0.extend(conn_b.read_until_eof_or_idle(IDLE, CAP));
            b.1 = conn_b.saw_close();
        }
        (a, b)
    })
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

/// Both proxies, each with its own three backends, and the run's seed and
/// round count (`NC_RANDOM_SEED`, `NC_RANDOM_ROUNDS`).
struct Setup {
    seed: u64,
    rounds: usize,
    reference: ProxyProcess,
    subject: ProxyProcess,
    _backends: [Vec<RedisServer>; 2],
}

impl Setup {
    fn start(default_seed: u64) -> Setup {
        let env = |name: &str| std::env::var(name).ok();
        let seed = env("NC_RANDOM_SEED")
            .and_then(|s| s.parse().ok())
            .unwrap_or(default_seed);
        let rounds = env("NC_RANDOM_ROUNDS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(150);
        let (reference, reference_backends) = side(|yaml| {
            Nutcracker::start(yaml).expect("nutcracker starts (apt-get install nutcracker)")
        });
        let bin = ncproxy_bin(env!("CARGO_BIN_EXE_ncproxy"));
        let (subject, subject_backends) =
            side(|yaml| Ncproxy::start(&bin, yaml, &[]).expect("ncproxy starts"));
        Setup {
            seed,
            rounds,
            reference,
            subject,
            _backends: [reference_backends, subject_backends],
        }
    }
}

#[test]
fn random_pipelines_match_nutcracker() {
    let Setup {
        seed,
        rounds,
        reference,
        subject,
        _backends,
    } = Setup::start(0x5EED_2026);
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

#[test]
fn mutated_pipelines_match_nutcracker() {
    let Setup {
        seed,
        rounds,
        reference,
        subject,
        _backends,
    } = Setup::start(0x0BAD_2026);
    let mut rng = Rng(seed);
    let (mut compared, mut closed, mut skipped, mut stored) = (0, 0, 0, 0);
    for round in 0..rounds {
        let n = 1 + rng.below(4);
        let pipeline: Vec<u8> = (0..n)
            .flat_map(|_| match rng.below(2) {
                0 => command(&mut rng),
                _ => any_command(&mut rng),
            })
            .collect();
        let bytes = match rng.below(5) {
            0 => pipeline,
            _ => mutate(&mut rng, pipeline),
        };
        if deliberately_different(&bytes) {
            skipped += 1;
            continue;
        }
        let (expected, got) = both(&reference, &subject, &bytes, Duration::from_millis(150));
        if expected != got {
            panic!(
                "seed {seed} round {round}: nutcracker and ncproxy differ\n  closed: nutcracker {} ncproxy {}\n  {}\n  nutcracker: \"{}\"\n  ncproxy:    \"{}\"\n  request: \"{}\"",
                expected.1,
                got.1,
                diff_bytes(&expected.0, &got.0, 80).unwrap_or_else(|| "same bytes".into()),
                escape_bytes(&expected.0[..expected.0.len().min(400)]),
                escape_bytes(&got.0[..got.0.len().min(400)]),
                escape_bytes(&bytes[..bytes.len().min(800)])
            );
        }
        compared += 1;
        closed += usize::from(got.1);
        stored += usize::from(got.0.windows(5).any(|w| w == b"+OK\r\n"));
    }
    // Backends that answer: writes were stored, not refused by both sides.
    assert!(stored > 0, "no input stored anything through the proxies");
    assert!(
        closed > compared / 10 && closed < compared,
        "the mutations should close some connections and not others: {closed} of {compared}"
    );
    println!(
        "mutation differential: seed {seed}, {compared} inputs identical ({closed} closed), {skipped} skipped as deliberate differences"
    );
}
