//! memcache parsing cost per request and per reply, in bytes per second.
//!
//! `parse_request`: a get of one key, gets of 10 and 100 keys, a set with a
//! 100-byte value, and a pipeline of 128 mixed requests walked end to end
//! (parse, advance by `len`, repeat) as the proxy's read loop does.
//!
//! `reply_scanner`: a `VALUE` reply of 100 bytes, 100 `VALUE` blocks, and a
//! 1 MiB value, each scanned whole by a `ReplyScanner`. Data blocks are
//! skipped by length, not scanned, so the 1 MiB figure is nominal.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nc_protocol::memcache::{parse_request, ReplyScanner};
use nc_protocol::Limits;

fn key(i: usize) -> String {
    format!("user:{i:08}")
}

fn get(n: usize) -> Vec<u8> {
    let keys: Vec<String> = (0..n).map(key).collect();
    format!("get {}\r\n", keys.join(" ")).into_bytes()
}

fn set(key: &str, value: &[u8]) -> Vec<u8> {
    let mut out = format!("set {key} 0 0 {}\r\n", value.len()).into_bytes();
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
    out
}

/// 128 requests cycling through get, set (100-byte value), get of 4 keys,
/// incr and delete noreply.
fn pipeline() -> Vec<u8> {
    let value = [b'v'; 100];
    let mut out = Vec::new();
    for i in 0..128 {
        let k = key(i);
        let request = match i % 5 {
            0 => format!("get {k}\r\n").into_bytes(),
            1 => set(&k, &value),
            2 => format!("get {k} {} {} {}\r\n", key(i + 1), key(i + 2), key(i + 3)).into_bytes(),
            3 => format!("incr {k} 1\r\n").into_bytes(),
            _ => format!("delete {k} noreply\r\n").into_bytes(),
        };
        out.extend_from_slice(&request);
    }
    out
}

fn values(n: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(format!("VALUE {} 0 {size}\r\n", key(i)).as_bytes());
        out.resize(out.len() + size, b'x');
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"END\r\n");
    out
}

fn requests(c: &mut Criterion) {
    let limits = Limits::default();
    let cases: [(&str, Vec<u8>); 4] = [
        ("get_1_key", get(1)),
        ("get_10_keys", get(10)),
        ("get_100_keys", get(100)),
        ("set_100b_value", set("user:1234", &[b'x'; 100])),
    ];
    let mut group = c.benchmark_group("mc_parse_request");
    for (name, wire) in &cases {
        assert_eq!(parse_request(wire, &limits).map(|r| r.len), Ok(wire.len()));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| parse_request(black_box(wire), &limits))
        });
    }
    let stream = pipeline();
    let walk = |stream: &[u8]| {
        let mut pos = 0;
        let mut count = 0;
        while pos < stream.len() {
            let request = parse_request(&stream[pos..], &limits).expect("valid pipeline");
            pos += request.len;
            count += 1;
        }
        count
    };
    assert_eq!(walk(&stream), 128);
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("pipeline_128", |b| b.iter(|| walk(black_box(&stream))));
    group.finish();
}

fn replies(c: &mut Criterion) {
    let limits = Limits::default();
    let cases: [(&str, Vec<u8>); 3] = [
        ("value_100b", values(1, 100)),
        ("values_100_blocks", values(100, 100)),
        ("value_1mib", values(1, 1 << 20)),
    ];
    let mut group = c.benchmark_group("mc_reply_scanner");
    for (name, wire) in &cases {
        let mut scanner = ReplyScanner::default();
        assert_eq!(scanner.scan(wire, &limits).map(|r| r.len), Ok(wire.len()));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(*name, |b| b.iter(|| scanner.scan(black_box(wire), &limits)));
    }
    group.finish();
}

criterion_group!(benches, requests, replies);
criterion_main!(benches);
