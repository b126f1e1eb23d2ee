//! Seeded request generation and reply checking.
//!
//! A [`Workload`] (from the config) makes one [`Generator`] per connection, each
//! with its own PRNG stream derived from the master seed, so a run is
//! reproducible and connections do not share state. The generator encodes
//! requests straight into the connection's write buffer (no allocation per
//! request) and records what each request expects in a small [`Expect`].
//!
//! Integrity: every value written carries a tag, `hex(key index)` +
//! `hex(writer nonce)`, followed by a fixed filler. A GET or MGET reply must be
//! nil or a value whose tag names the key that was asked for, with the filler
//! intact, so a reply delivered to the wrong request, or a corrupted one, is a
//! mismatch. SET must answer `+OK`, INCR a positive integer, DEL 0 or 1.
//!
//! memcache (`workload.protocol = "memcache"`) keeps the same keys, values and
//! checks in the memcached ASCII protocol: `get k`, `get k1 .. kN` (the mix's
//! mget), `set k 0 0 n [noreply]`, `delete k`, `incr c 1`. A get's VALUE
//! block must name its key and hold a value for it; every VALUE block of a
//! multi-get must belong to a key that was asked for (each at most as often as
//! asked; order is free, as a proxy merges per-server fragments), with its
//! value tagged for that key. SET must answer `STORED` (nothing, with
//! `set_noreply`), DELETE `DELETED` or `NOT_FOUND`, INCR a positive number
//! (the loader writes the counters, since memcached's incr does not create them).
use crate::config::{KeyDistribution, Mix, Protocol, Workload};
use crate::memcache;
use crate::resp::Reply;
use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::VecDeque;
use std::sync::Arc;

/// The command of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Get,
    Set,
    Mget,
    Del,
    Incr,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Get, Op::Set, Op::Mget, Op::Del, Op::Incr];

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Mget => "mget",
            Op::Del => "del",
            Op::Incr => "incr",
        }
    }
}

/// What a sent request expects back. MGET keys live in the connection's key queue.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub op: Op,
    pub key: u32,
    pub nkeys: u32,
}

/// Outcome of checking one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// A well-formed error reply (`-ERR ...`): counted as an error.
    Error,
    /// A reply that cannot belong to its request: an integrity failure.
    Mismatch,
}

const HEX: &[u8; 16] = b"0123456789abcdef";
/// Tag length at the start of every value: 8 hex digits of key + 8 of nonce.
pub const TAG_LEN: usize = 16;
const FILLER_BYTE: u8 = b'v';

#[inline]
fn put_hex32(out: &mut Vec<u8>, v: u32) {
    let mut b = [0u8; 8];
    for (i, slot) in b.iter_mut().enumerate() {
        *slot = HEX[((v >> (28 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(&b);
}

#[inline]
fn parse_hex32(b: &[u8]) -> Option<u32> {
    if b.len() != 8 {
        return None;
    }
    let mut v = 0u32;
    for &c in b {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u32;
    }
    Some(v)
}

/// `<prefix><n>\r\n`, the digits written by the protocol crate's encoder.
#[inline]
fn put_len(out: &mut Vec<u8>, prefix: u8, n: usize) {
    out.push(prefix);
    nc_protocol::resp::write_usize(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Everything about the keyspace and values that generators and checkers share.
#[derive(Debug)]
pub struct Keyspace {
    pub prefix: Vec<u8>,
    pub keys: u64,
    pub vmin: usize,
    pub vmax: usize,
    /// `$<keylen>\r\n` for value keys, precomputed.
    key_hdr: Vec<u8>,
    /// `$<keylen+2>\r\n` for counter keys (`<prefix>c:<hex>`).
    ctr_hdr: Vec<u8>,
    filler: Vec<u8>,
    pub protocol: Protocol,
    /// memcache sets carry `noreply` (no reply comes back for them).
    pub set_noreply: bool,
}

impl Keyspace {
    pub fn new(w: &Workload) -> Arc<Keyspace> {
        let prefix = w.key_prefix.as_bytes().to_vec();
        let (vmin, vmax) = w.value_size.bounds();
        let mut key_hdr = Vec::new();
        put_len(&mut key_hdr, b'$', prefix.len() + 8);
        let mut ctr_hdr = Vec::new();
        put_len(&mut ctr_hdr, b'$', prefix.len() + 10);
        Arc::new(Keyspace {
            prefix,
            keys: w.keys,
            vmin: vmin as usize,
            vmax: vmax as usize,
            key_hdr,
            ctr_hdr,
            filler: vec![FILLER_BYTE; vmax as usize],
            protocol: w.protocol,
            set_noreply: w.protocol == Protocol::Memcache && w.set_noreply,
        })
    }

    /// Whether a reply comes back for this request (not for a noreply set).
    #[inline]
    pub fn expects_reply(&self, exp: &Expect) -> bool {
        !(self.set_noreply && exp.op == Op::Set)
    }

    /// The counter key of index `i` (`<prefix>c:<8 hex>`), which INCR uses.
    pub fn counter_key(&self, i: u32) -> Vec<u8> {
        let mut k = self.prefix.clone();
        k.extend_from_slice(b"c:");
        put_hex32(&mut k, i);
        k
    }

    /// The index of a value key (`<prefix><8 hex>`), if `key` is one.
    #[inline]
    pub fn key_index(&self, key: &[u8]) -> Option<u32> {
        key.strip_prefix(self.prefix.as_slice())
            .and_then(parse_hex32)
    }

    /// A bare key, as memcached requests write it.
    #[inline]
    fn put_mc_key(&self, out: &mut Vec<u8>, i: u32) {
        out.extend_from_slice(&self.prefix);
        put_hex32(out, i);
    }

    /// The key name of index `i` (`<prefix><8 hex>`).
    pub fn key(&self, i: u32) -> Vec<u8> {
        let mut k = self.prefix.clone();
        put_hex32(&mut k, i);
        k
    }

    /// A tagged value for key `i`, `len` bytes long.
    pub fn value(&self, i: u32, nonce: u32, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len);
        self.put_value(&mut v, i, nonce, len);
        v
    }

    #[inline]
    fn put_value(&self, out: &mut Vec<u8>, i: u32, nonce: u32, len: usize) {
        put_hex32(out, i);
        put_hex32(out, nonce);
        out.extend_from_slice(&self.filler[..len - TAG_LEN]);
    }

    #[inline]
    fn put_key(&self, out: &mut Vec<u8>, i: u32) {
        out.extend_from_slice(&self.key_hdr);
        out.extend_from_slice(&self.prefix);
        put_hex32(out, i);
        out.extend_from_slice(b"\r\n");
    }

    #[inline]
    fn put_mc_key_counter(&self, out: &mut Vec<u8>, i: u32) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(b"c:");
        put_hex32(out, i);
    }

    #[inline]
    fn put_counter_key(&self, out: &mut Vec<u8>, i: u32) {
        out.extend_from_slice(&self.ctr_hdr);
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(b"c:");
        put_hex32(out, i);
        out.extend_from_slice(b"\r\n");
    }

    /// Whether `v` is a value this run (or its preload) wrote for key `i`.
    #[inline]
    pub fn value_ok(&self, i: u32, v: &[u8]) -> bool {
        v.len() >= TAG_LEN
            && v.len() >= self.vmin
            && v.len() <= self.vmax
            && parse_hex32(&v[..8]) == Some(i)
            && parse_hex32(&v[8..16]).is_some()
            && v[TAG_LEN..] == self.filler[..v.len() - TAG_LEN]
    }
}

/// Zipf sampler over ranks 1..=n by rejection-inversion (Hörmann & Derflinger
/// 1996): O(1) per sample and no table, so a million keys cost nothing.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: f64,
    s: f64,
    h_x1: f64,
    h_n: f64,
    sfactor: f64,
}

impl Zipf {
    pub fn new(n: u64, s: f64) -> Zipf {
        let n = n as f64;
        let mut z = Zipf {
            n,
            s,
            h_x1: 0.0,
            h_n: 0.0,
            sfactor: 0.0,
        };
        z.h_x1 = z.h_integral(1.5) - 1.0;
        z.h_n = z.h_integral(n + 0.5);
        z.sfactor = 2.0 - z.h_integral_inv(z.h_integral(2.5) - z.h(2.0));
        z
    }

    fn h(&self, x: f64) -> f64 {
        (-self.s * x.ln()).exp()
    }

    fn h_integral(&self, x: f64) -> f64 {
        let lx = x.ln();
        helper2((1.0 - self.s) * lx) * lx
    }

    fn h_integral_inv(&self, x: f64) -> f64 {
        let mut t = x * (1.0 - self.s);
        if t < -1.0 {
            t = -1.0;
        }
        (helper1(t) * x).exp()
    }

    /// A rank in 1..=n; rank 1 is the most popular.
    pub fn sample(&self, rng: &mut Xoshiro256PlusPlus) -> u64 {
        loop {
            let u01 = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            let u = self.h_n + u01 * (self.h_x1 - self.h_n);
            let x = self.h_integral_inv(u);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.sfactor || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u64;
            }
        }
    }
}

fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[derive(Debug, Clone)]
enum KeyPick {
    Uniform,
    Zipf(Zipf),
    Sequential(u64),
}

/// splitmix64: derives independent per-connection seeds from the master seed.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e3779b97f4a7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// One connection's request stream.
#[derive(Debug)]
pub struct Generator {
    ks: Arc<Keyspace>,
    rng: Xoshiro256PlusPlus,
    pick: KeyPick,
    /// Cumulative weights in `Op::ALL` order.
    cdf: [u64; 5],
    total: u64,
    mget_keys: u32,
    nonce: u32,
    mget_hdr: Vec<u8>,
    /// Per key: whether this connection may send its value key and its
    /// counter key (a cluster-aware `direct` connection sends only its
    /// master's keys).
    allowed: Option<AllowedKeys>,
}

/// Per key: may its value key be sent, may its counter key be sent.
type AllowedKeys = (Arc<Vec<bool>>, Arc<Vec<bool>>);

/// Draws before a restricted generator takes a key it may not send anyway
/// (only a master that owns no keys gets there).
const MAX_DRAWS: usize = 256;

#[inline]
fn below(rng: &mut Xoshiro256PlusPlus, n: u64) -> u64 {
    // Lemire's multiply-shift: unbiased enough for benchmarking and branch-free.
    ((rng.next_u64() as u128 * n as u128) >> 64) as u64
}

impl Generator {
    /// Generator for connection `conn` of `conns` (seeded from `seed` and `conn`).
    pub fn new(ks: Arc<Keyspace>, w: &Workload, seed: u64, conn: u32, conns: u32) -> Generator {
        let s = splitmix64(seed ^ splitmix64(conn as u64 + 1));
        let rng = Xoshiro256PlusPlus::seed_from_u64(s);
        let pick = match w.distribution {
            KeyDistribution::Uniform => KeyPick::Uniform,
            KeyDistribution::Zipf => KeyPick::Zipf(Zipf::new(ks.keys, w.zipf_exponent)),
            KeyDistribution::Sequential => {
                KeyPick::Sequential(ks.keys * conn as u64 / conns.max(1) as u64)
            }
        };
        let Mix {
            get,
            set,
            mget,
            del,
            incr,
        } = w.mix;
        let mut cdf = [0u64; 5];
        let mut acc = 0;
        for (slot, wgt) in cdf.iter_mut().zip([get, set, mget, del, incr]) {
            acc += wgt as u64;
            *slot = acc;
        }
        let mut mget_hdr = Vec::new();
        put_len(&mut mget_hdr, b'*', w.mget_keys as usize + 1);
        mget_hdr.extend_from_slice(b"$4\r\nMGET\r\n");
        Generator {
            ks,
            rng,
            pick,
            cdf,
            total: acc,
            mget_keys: w.mget_keys,
            // High byte = connection, so values from different connections differ.
            nonce: conn.wrapping_mul(0x9E37_79B1),
            mget_hdr,
            allowed: None,
        }
    }

    /// Sends only the value keys `values` marks and the counter keys
    /// `counters` marks (both indexed by key). Draws are repeated until one
    /// is allowed, so the key distribution is the workload's, restricted to
    /// those keys.
    pub fn only_keys(&mut self, values: Arc<Vec<bool>>, counters: Arc<Vec<bool>>) {
        self.allowed = Some((values, counters));
    }

    /// A value key's index.
    #[inline]
    fn key(&mut self) -> u32 {
        let allowed = self.allowed.as_ref().map(|(values, _)| values.clone());
        self.allowed_key(allowed)
    }

    /// A counter key's index (INCR).
    #[inline]
    fn counter(&mut self) -> u32 {
        let allowed = self.allowed.as_ref().map(|(_, counters)| counters.clone());
        self.allowed_key(allowed)
    }

    #[inline]
    fn allowed_key(&mut self, allowed: Option<Arc<Vec<bool>>>) -> u32 {
        let Some(allowed) = allowed else {
            return self.draw_key();
        };
        let mut k = self.draw_key();
        for _ in 0..MAX_DRAWS {
            if allowed.get(k as usize).copied().unwrap_or(true) {
                break;
            }
            k = self.draw_key();
        }
        k
    }

    #[inline]
    fn draw_key(&mut self) -> u32 {
        let n = self.ks.keys;
        let k = match &mut self.pick {
            KeyPick::Uniform => below(&mut self.rng, n),
            KeyPick::Zipf(z) => z.sample(&mut self.rng) - 1,
            KeyPick::Sequential(cur) => {
                let k = *cur;
                *cur = if k + 1 >= n { 0 } else { k + 1 };
                k
            }
        };
        k as u32
    }

    #[inline]
    fn op(&mut self) -> Op {
        let r = below(&mut self.rng, self.total);
        let i = self.cdf.iter().position(|&c| r < c).unwrap_or(0);
        Op::ALL[i]
    }

    #[inline]
    fn value_len(&mut self) -> usize {
        if self.ks.vmin == self.ks.vmax {
            self.ks.vmin
        } else {
            self.ks.vmin + below(&mut self.rng, (self.ks.vmax - self.ks.vmin + 1) as u64) as usize
        }
    }

    /// Appends one request to `out`; MGET keys are pushed onto `keyq`.
    #[inline]
    pub fn next_request(&mut self, out: &mut Vec<u8>, keyq: &mut VecDeque<u32>) -> Expect {
        match self.ks.protocol {
            Protocol::Redis => self.next_resp(out, keyq),
            Protocol::Memcache => self.next_memcache(out, keyq),
        }
    }

    /// One memcached ASCII request (same stream of ops and keys as RESP).
    fn next_memcache(&mut self, out: &mut Vec<u8>, keyq: &mut VecDeque<u32>) -> Expect {
        let op = self.op();
        let mut nkeys = 1;
        let key = match op {
            Op::Get => {
                let k = self.key();
                out.extend_from_slice(b"get ");
                self.ks.put_mc_key(out, k);
                k
            }
            Op::Set => {
                let k = self.key();
                let len = self.value_len();
                out.extend_from_slice(b"set ");
                self.ks.put_mc_key(out, k);
                out.extend_from_slice(b" 0 0 ");
                nc_protocol::resp::write_usize(out, len);
                if self.ks.set_noreply {
                    out.extend_from_slice(b" noreply");
                }
                out.extend_from_slice(b"\r\n");
                self.nonce = self.nonce.wrapping_add(1);
                self.ks.put_value(out, k, self.nonce, len);
                k
            }
            Op::Mget => {
                out.extend_from_slice(b"get");
                let mut first = 0;
                for i in 0..self.mget_keys {
                    let k = self.key();
                    if i == 0 {
                        first = k;
                    }
                    out.push(b' ');
                    self.ks.put_mc_key(out, k);
                    keyq.push_back(k);
                }
                nkeys = self.mget_keys;
                first
            }
            Op::Del => {
                let k = self.key();
                out.extend_from_slice(b"delete ");
                self.ks.put_mc_key(out, k);
                k
            }
            Op::Incr => {
                let k = self.key();
                out.extend_from_slice(b"incr ");
                self.ks.put_mc_key_counter(out, k);
                out.extend_from_slice(b" 1");
                k
            }
        };
        out.extend_from_slice(b"\r\n");
        Expect { op, key, nkeys }
    }

    /// One RESP request.
    fn next_resp(&mut self, out: &mut Vec<u8>, keyq: &mut VecDeque<u32>) -> Expect {
        let op = self.op();
        match op {
            Op::Get => {
                let k = self.key();
                out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
                self.ks.put_key(out, k);
                Expect {
                    op,
                    key: k,
                    nkeys: 1,
                }
            }
            Op::Set => {
                let k = self.key();
                let len = self.value_len();
                out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
                self.ks.put_key(out, k);
                put_len(out, b'$', len);
                self.nonce = self.nonce.wrapping_add(1);
                self.ks.put_value(out, k, self.nonce, len);
                out.extend_from_slice(b"\r\n");
                Expect {
                    op,
                    key: k,
                    nkeys: 1,
                }
            }
            Op::Mget => {
                out.extend_from_slice(&self.mget_hdr);
                let mut first = 0;
                for i in 0..self.mget_keys {
                    let k = self.key();
                    if i == 0 {
                        first = k;
                    }
                    self.ks.put_key(out, k);
                    keyq.push_back(k);
                }
                Expect {
                    op,
                    key: first,
                    nkeys: self.mget_keys,
                }
            }
            Op::Del => {
                let k = self.key();
                out.extend_from_slice(b"*2\r\n$3\r\nDEL\r\n");
                self.ks.put_key(out, k);
                Expect {
                    op,
                    key: k,
                    nkeys: 1,
                }
            }
            Op::Incr => {
                let k = self.counter();
                out.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n");
                self.ks.put_counter_key(out, k);
                Expect {
                    op,
                    key: k,
                    nkeys: 1,
                }
            }
        }
    }
}

/// Checks `reply` against `exp`; pops MGET keys from `keyq` either way, so the
/// queue stays aligned with the requests in flight.
#[inline]
pub fn check(ks: &Keyspace, exp: &Expect, reply: &Reply<'_>, keyq: &mut VecDeque<u32>) -> Verdict {
    let verdict = match (exp.op, reply) {
        (_, Reply::Error(_)) => Verdict::Error,
        (Op::Get, Reply::Bulk(None)) => Verdict::Ok,
        (Op::Get, Reply::Bulk(Some(v))) => ok_if(ks.value_ok(exp.key, v)),
        (Op::Set, Reply::Status(s)) => ok_if(*s == b"OK"),
        (Op::Del, Reply::Int(n)) => ok_if((0..=1).contains(n)),
        (Op::Incr, Reply::Int(n)) => ok_if(*n >= 1),
        (Op::Mget, Reply::Array(Some(a))) if a.len == exp.nkeys as usize => {
            let mut ok = true;
            for (i, item) in a.iter().enumerate() {
                let k = keyq.get(i).copied().unwrap_or(u32::MAX);
                ok &= match item {
                    Reply::Bulk(None) => true,
                    Reply::Bulk(Some(v)) => ks.value_ok(k, v),
                    _ => false,
                };
            }
            ok_if(ok)
        }
        _ => Verdict::Mismatch,
    };
    if exp.op == Op::Mget {
        let n = (exp.nkeys as usize).min(keyq.len());
        keyq.drain(..n);
    }
    verdict
}

/// Checks a memcached `reply` against `exp`, as [`check`] does for RESP;
/// `scratch` is reused to match a multi-get's blocks against its keys.
#[inline]
pub fn check_memcache(
    ks: &Keyspace,
    exp: &Expect,
    reply: &memcache::Reply<'_>,
    keyq: &mut VecDeque<u32>,
    scratch: &mut Vec<(u32, bool)>,
) -> Verdict {
    use memcache::Reply as R;
    let verdict = match (exp.op, reply) {
        (_, r) if r.is_error() => Verdict::Error,
        (Op::Get, R::Values(v)) => ok_if(
            v.count <= 1
                && v.iter()
                    .all(|b| ks.key_index(b.key) == Some(exp.key) && ks.value_ok(exp.key, b.data)),
        ),
        (Op::Mget, R::Values(v)) if v.count <= exp.nkeys as usize => {
            // Each block must answer a requested key not answered yet.
            scratch.clear();
            let n = (exp.nkeys as usize).min(keyq.len());
            scratch.extend(keyq.iter().take(n).map(|&k| (k, false)));
            scratch.sort_unstable();
            ok_if(v.iter().all(|b| {
                let Some(k) = ks.key_index(b.key) else {
                    return false;
                };
                let from = scratch.partition_point(|&(x, _)| x < k);
                let Some(slot) = scratch[from..]
                    .iter_mut()
                    .take_while(|(x, _)| *x == k)
                    .find(|(_, used)| !used)
                else {
                    return false;
                };
                slot.1 = true;
                ks.value_ok(k, b.data)
            }))
        }
        (Op::Set, R::Line(l)) => ok_if(*l == b"STORED"),
        (Op::Del, R::Line(l)) => ok_if(*l == b"DELETED" || *l == b"NOT_FOUND"),
        (Op::Incr, R::Line(l)) => ok_if(memcache::parse_u64(l).is_some_and(|n| n >= 1)),
        _ => Verdict::Mismatch,
    };
    if exp.op == Op::Mget {
        let n = (exp.nkeys as usize).min(keyq.len());
        keyq.drain(..n);
    }
    verdict
}

#[inline]
fn ok_if(b: bool) -> Verdict {
    if b {
        Verdict::Ok
    } else {
        Verdict::Mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Workload;
    use crate::resp;

    fn workload() -> Workload {
        Workload {
            mix: Mix {
                get: 1,
                set: 1,
                mget: 1,
                del: 1,
                incr: 1,
            },
            keys: 1000,
            mget_keys: 3,
            ..Workload::default()
        }
    }

    #[test]
    fn same_seed_same_stream() {
        let w = workload();
        let ks = Keyspace::new(&w);
        let mut a = Generator::new(ks.clone(), &w, 7, 3, 10);
        let mut b = Generator::new(ks.clone(), &w, 7, 3, 10);
        let mut c = Generator::new(ks, &w, 7, 4, 10);
        let (mut oa, mut ob, mut oc) = (vec![], vec![], vec![]);
        let mut q = VecDeque::new();
        for _ in 0..100 {
            a.next_request(&mut oa, &mut q);
            b.next_request(&mut ob, &mut q);
            c.next_request(&mut oc, &mut q);
        }
        assert_eq!(oa, ob);
        assert_ne!(oa, oc);
    }

    #[test]
    fn requests_are_valid_resp_arrays() {
        let w = workload();
        let ks = Keyspace::new(&w);
        let mut g = Generator::new(ks, &w, 1, 0, 1);
        let mut out = vec![];
        let mut q = VecDeque::new();
        let mut n = 0;
        for _ in 0..500 {
            g.next_request(&mut out, &mut q);
            n += 1;
        }
        // Requests are RESP arrays of bulk strings, which the reply scanner also reads.
        let mut pos = 0;
        let mut seen = 0;
        while pos < out.len() {
            let (r, used) = resp::parse(&out[pos..]).unwrap().unwrap();
            assert!(matches!(r, resp::Reply::Array(Some(_))));
            pos += used;
            seen += 1;
        }
        assert_eq!(seen, n);
    }

    #[test]
    fn values_check_their_key() {
        let w = workload();
        let ks = Keyspace::new(&w);
        let v = ks.value(42, 7, 64);
        assert!(ks.value_ok(42, &v));
        assert!(!ks.value_ok(43, &v));
        let mut bad = v.clone();
        bad[40] = b'x';
        assert!(!ks.value_ok(42, &bad));
        assert!(!ks.value_ok(42, &v[..63]));
        let mut q = VecDeque::new();
        let exp = Expect {
            op: Op::Get,
            key: 42,
            nkeys: 1,
        };
        assert_eq!(
            check(&ks, &exp, &Reply::Bulk(Some(&v)), &mut q),
            Verdict::Ok
        );
        assert_eq!(
            check(&ks, &exp, &Reply::Status(b"OK"), &mut q),
            Verdict::Mismatch
        );
        assert_eq!(
            check(&ks, &exp, &Reply::Error(b"ERR"), &mut q),
            Verdict::Error
        );
        let set = Expect {
            op: Op::Set,
            key: 1,
            nkeys: 1,
        };
        assert_eq!(check(&ks, &set, &Reply::Status(b"OK"), &mut q), Verdict::Ok);
        assert_eq!(check(&ks, &set, &Reply::Int(1), &mut q), Verdict::Mismatch);
    }

    #[test]
    fn mget_checks_each_key_and_keeps_queue_aligned() {
        let w = workload();
        let ks = Keyspace::new(&w);
        let (a, b) = (ks.value(1, 0, 64), ks.value(2, 0, 64));
        let mut reply = b"*3\r\n".to_vec();
        for v in [&a, &b] {
            reply.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
            reply.extend_from_slice(v);
            reply.extend_from_slice(b"\r\n");
        }
        reply.extend_from_slice(b"$-1\r\n");
        let (r, _) = resp::parse(&reply).unwrap().unwrap();
        let exp = Expect {
            op: Op::Mget,
            key: 1,
            nkeys: 3,
        };
        let mut q: VecDeque<u32> = [1, 2, 3, 9].into_iter().collect();
        assert_eq!(check(&ks, &exp, &r, &mut q), Verdict::Ok);
        assert_eq!(q, [9]);
        let mut q: VecDeque<u32> = [2, 1, 3].into_iter().collect();
        assert_eq!(check(&ks, &exp, &r, &mut q), Verdict::Mismatch);
        assert!(q.is_empty());
    }

    fn mc_workload(noreply: bool) -> Workload {
        Workload {
            protocol: Protocol::Memcache,
            set_noreply: noreply,
            ..workload()
        }
    }

    #[test]
    fn memcache_requests_are_well_formed() {
        let w = mc_workload(true);
        let ks = Keyspace::new(&w);
        let mut g = Generator::new(ks.clone(), &w, 1, 0, 1);
        let (mut out, mut q) = (vec![], VecDeque::new());
        let mut seen = [0u32; 5];
        for _ in 0..300 {
            out.clear();
            let exp = g.next_request(&mut out, &mut q);
            seen[exp.op as usize] += 1;
            let text = String::from_utf8(out.clone()).unwrap();
            let (line, rest) = text.split_once("\r\n").unwrap();
            let words: Vec<&str> = line.split(' ').collect();
            let key = String::from_utf8(ks.key(exp.key)).unwrap();
            match exp.op {
                Op::Get => assert_eq!(words, ["get", key.as_str()]),
                Op::Mget => {
                    assert_eq!(words.len(), 4);
                    assert_eq!(words[1], key);
                }
                Op::Set => {
                    assert_eq!(&words[..4], ["set", key.as_str(), "0", "0"]);
                    assert_eq!(words[5], "noreply");
                    let n: usize = words[4].parse().unwrap();
                    assert_eq!(rest.len(), n + 2);
                    assert!(ks.value_ok(exp.key, &rest.as_bytes()[..n]));
                    assert!(!ks.expects_reply(&exp));
                }
                Op::Del => assert_eq!(words, ["delete", key.as_str()]),
                Op::Incr => {
                    let ctr = String::from_utf8(ks.counter_key(exp.key)).unwrap();
                    assert_eq!(words, ["incr", ctr.as_str(), "1"]);
                }
            }
            if exp.op != Op::Set {
                assert_eq!(rest, "", "{text:?}");
                assert!(ks.expects_reply(&exp));
            }
        }
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
        // Without set_noreply, sets wait for STORED.
        let w = mc_workload(false);
        let ks = Keyspace::new(&w);
        let set = Expect {
            op: Op::Set,
            key: 1,
            nkeys: 1,
        };
        assert!(ks.expects_reply(&set));
    }

    /// Checks `reply` (raw bytes) against `exp` with the memcache checker.
    fn mc_check(ks: &Keyspace, exp: &Expect, reply: &[u8], q: &mut VecDeque<u32>) -> Verdict {
        let (r, used) = memcache::parse(reply).unwrap().unwrap();
        assert_eq!(used, reply.len());
        check_memcache(ks, exp, &r, q, &mut Vec::new())
    }

    fn value_block(ks: &Keyspace, key: u32, v: &[u8]) -> Vec<u8> {
        let mut b = b"VALUE ".to_vec();
        b.extend_from_slice(&ks.key(key));
        b.extend_from_slice(format!(" 0 {}\r\n", v.len()).as_bytes());
        b.extend_from_slice(v);
        b.extend_from_slice(b"\r\n");
        b
    }

    #[test]
    fn memcache_replies_are_checked_and_corruption_caught() {
        let w = mc_workload(false);
        let ks = Keyspace::new(&w);
        let mut q = VecDeque::new();
        let exp = |op, key, nkeys| Expect { op, key, nkeys };
        let get = exp(Op::Get, 42, 1);
        let good = ks.value(42, 7, 64);
        let mut reply = value_block(&ks, 42, &good);
        reply.extend_from_slice(b"END\r\n");
        assert_eq!(mc_check(&ks, &get, &reply, &mut q), Verdict::Ok);
        assert_eq!(mc_check(&ks, &get, b"END\r\n", &mut q), Verdict::Ok);
        // A corrupted value, a value of another key, or the right value under
        // another key's name: all mismatches.
        let mut bad = good.clone();
        bad[30] = b'x';
        for (name, v) in [(42, &bad), (42, &ks.value(43, 7, 64)), (43, &good)] {
            let mut reply = value_block(&ks, name, v);
            reply.extend_from_slice(b"END\r\n");
            assert_eq!(mc_check(&ks, &get, &reply, &mut q), Verdict::Mismatch);
        }
        assert_eq!(
            mc_check(&ks, &get, b"SERVER_ERROR out of memory\r\n", &mut q),
            Verdict::Error
        );
        assert_eq!(
            mc_check(&ks, &get, b"STORED\r\n", &mut q),
            Verdict::Mismatch
        );
        let set = exp(Op::Set, 1, 1);
        assert_eq!(mc_check(&ks, &set, b"STORED\r\n", &mut q), Verdict::Ok);
        assert_eq!(
            mc_check(&ks, &set, b"NOT_STORED\r\n", &mut q),
            Verdict::Mismatch
        );
        let del = exp(Op::Del, 1, 1);
        assert_eq!(mc_check(&ks, &del, b"DELETED\r\n", &mut q), Verdict::Ok);
        assert_eq!(mc_check(&ks, &del, b"NOT_FOUND\r\n", &mut q), Verdict::Ok);
        assert_eq!(
            mc_check(&ks, &del, b"STORED\r\n", &mut q),
            Verdict::Mismatch
        );
        let incr = exp(Op::Incr, 1, 1);
        assert_eq!(mc_check(&ks, &incr, b"17\r\n", &mut q), Verdict::Ok);
        assert_eq!(mc_check(&ks, &incr, b"0\r\n", &mut q), Verdict::Mismatch);
        assert_eq!(
            mc_check(&ks, &incr, b"NOT_FOUND\r\n", &mut q),
            Verdict::Mismatch
        );
        assert_eq!(mc_check(&ks, &incr, b"END\r\n", &mut q), Verdict::Mismatch);
        assert_eq!(mc_check(&ks, &incr, b"ERROR\r\n", &mut q), Verdict::Error);
    }

    #[test]
    fn memcache_multiget_blocks_must_belong_to_asked_keys() {
        let w = mc_workload(false);
        let ks = Keyspace::new(&w);
        let mget = Expect {
            op: Op::Mget,
            key: 1,
            nkeys: 3,
        };
        let block = |k: u32| value_block(&ks, k, &ks.value(k, 0, 64));
        let reply = |keys: &[u32]| {
            let mut r: Vec<u8> = keys.iter().flat_map(|&k| block(k)).collect();
            r.extend_from_slice(b"END\r\n");
            r
        };
        // Any order (a proxy merges per-server fragments), misses left out.
        let mut q: VecDeque<u32> = [1, 2, 3, 9].into_iter().collect();
        assert_eq!(mc_check(&ks, &mget, &reply(&[3, 1]), &mut q), Verdict::Ok);
        assert_eq!(q, [9]);
        // A key nobody asked for, or one key answered twice: mismatches.
        for keys in [&[1, 4][..], &[2, 2]] {
            let mut q: VecDeque<u32> = [1, 2, 3].into_iter().collect();
            assert_eq!(
                mc_check(&ks, &mget, &reply(keys), &mut q),
                Verdict::Mismatch
            );
            assert!(q.is_empty());
        }
        // A key asked for twice may be answered twice.
        let mut q: VecDeque<u32> = [2, 2, 3].into_iter().collect();
        assert_eq!(
            mc_check(&ks, &mget, &reply(&[2, 3, 2]), &mut q),
            Verdict::Ok
        );
        // A corrupted value inside a multi-get.
        let mut bad = ks.value(3, 0, 64);
        bad[20] = b'x';
        let mut r = block(1);
        r.extend_from_slice(&value_block(&ks, 3, &bad));
        r.extend_from_slice(b"END\r\n");
        let mut q: VecDeque<u32> = [1, 2, 3].into_iter().collect();
        assert_eq!(mc_check(&ks, &mget, &r, &mut q), Verdict::Mismatch);
    }

    #[test]
    fn zipf_is_skewed_and_in_range() {
        let z = Zipf::new(1000, 0.99);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut counts = vec![0u32; 1001];
        for _ in 0..100_000 {
            let k = z.sample(&mut rng);
            assert!((1..=1000).contains(&k));
            counts[k as usize] += 1;
        }
        // Rank 1 takes far more than a uniform share (100 of 100k).
        assert!(
            counts[1] > 10 * counts[500].max(1),
            "{} vs {}",
            counts[1],
            counts[500]
        );
    }

    #[test]
    fn sequential_walks_the_keyspace() {
        let mut w = workload();
        w.distribution = KeyDistribution::Sequential;
        w.mix = Mix {
            get: 1,
            ..Mix::default()
        };
        w.keys = 4;
        let ks = Keyspace::new(&w);
        let mut g = Generator::new(ks, &w, 1, 0, 1);
        let mut q = VecDeque::new();
        let keys: Vec<u32> = (0..6)
            .map(|_| g.next_request(&mut vec![], &mut q).key)
            .collect();
        assert_eq!(keys, vec![0, 1, 2, 3, 0, 1]);
    }
}
