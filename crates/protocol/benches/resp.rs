//! Parsing cost per request and per reply, in bytes per second.
//!
//! `parse_request`: a GET with a small key, a SET with a 100-byte value, an
//! MGET of 10 keys, and a pipeline of 128 mixed requests walked end to end
//! (parse, advance by `len`, repeat) as the proxy's read loop does.
//!
//! `parse_reply`: a status, a 100-byte bulk, a 10-element MGET array, a
//! 1000-element array and a 1 MiB bulk.
//!
//! Bulk payloads are skipped by length, not scanned, so the 1 MiB bulk costs
//! about as much as the 100-byte one and its bytes/s figure is nominal: it
//! shows that large values are O(1) to frame.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nc_protocol::resp::{
    encode_array_header, encode_bulk, encode_command, parse_reply, parse_request,
};
use nc_protocol::Limits;

fn command(name: &[u8], args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(&mut out, name, args.iter().copied());
    out
}

fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("user:{i:08}").into_bytes())
        .collect()
}

/// 128 requests cycling through GET, SET (100-byte value), MGET (4 keys),
/// INCR and DEL (2 keys).
fn pipeline() -> Vec<u8> {
    let value = vec![b'v'; 100];
    let keys = keys(128);
    let mut out = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let next = &keys[(i + 1) % keys.len()];
        let request = match i % 5 {
            0 => command(b"GET", &[key]),
            1 => command(b"SET", &[key, &value]),
            2 => command(
                b"MGET",
                &[key, next, &keys[(i + 2) % 128], &keys[(i + 3) % 128]],
            ),
            3 => command(b"INCR", &[key]),
            _ => command(b"DEL", &[key, next]),
        };
        out.extend_from_slice(&request);
    }
    out
}

fn requests(c: &mut Criterion) {
    let limits = Limits::default();
    let keys = keys(10);
    let key_refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let value = vec![b'x'; 100];

    let cases: [(&str, Vec<u8>); 3] = [
        ("get_small_key", command(b"GET", &[b"user:1234"])),
        ("set_100b_value", command(b"SET", &[b"user:1234", &value])),
        ("mget_10_keys", command(b"MGET", &key_refs)),
    ];

    let mut group = c.benchmark_group("parse_request");
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

    let mut bulk_100 = Vec::new();
    encode_bulk(&mut bulk_100, &[b'x'; 100]);

    // MGET of 10 keys: 8 hits of 100 bytes, 2 misses.
    let mut mget_10 = Vec::new();
    encode_array_header(&mut mget_10, 10);
    for i in 0..10 {
        if i % 5 == 4 {
            mget_10.extend_from_slice(b"$-1\r\n");
        } else {
            encode_bulk(&mut mget_10, &[b'x'; 100]);
        }
    }

    // 1000 elements of 16 bytes (an LRANGE or SMEMBERS answer).
    let mut array_1000 = Vec::new();
    encode_array_header(&mut array_1000, 1000);
    for i in 0..1000 {
        encode_bulk(&mut array_1000, format!("member:{i:09}").as_bytes());
    }

    let mut bulk_1m = Vec::new();
    encode_bulk(&mut bulk_1m, &vec![b'x'; 1 << 20]);

    let cases: [(&str, Vec<u8>); 5] = [
        ("status", b"+OK\r\n".to_vec()),
        ("bulk_100b", bulk_100),
        ("mget_array_10", mget_10),
        ("array_1000", array_1000),
        ("bulk_1mib", bulk_1m),
    ];

    let mut group = c.benchmark_group("parse_reply");
    for (name, wire) in &cases {
        assert_eq!(parse_reply(wire, &limits).map(|r| r.len), Ok(wire.len()));
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(*name, |b| b.iter(|| parse_reply(black_box(wire), &limits)));
    }
    group.finish();
}

criterion_group!(benches, requests, replies);
criterion_main!(benches);
