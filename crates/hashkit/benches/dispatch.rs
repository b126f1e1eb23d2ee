//! Hashing a 16-byte key and ketama lookup over 8 servers: the per-request cost of
//! routing one key.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use nc_hashkit::{Continuum, DistributionKind, HashKind, ServerSpec};

const KEY: &[u8; 16] = b"user:1234567:abc";

fn hashes(c: &mut Criterion) {
    let mut group = c.benchmark_group("hash_16b");
    group.throughput(Throughput::Bytes(KEY.len() as u64));
    for kind in [HashKind::Fnv1a_64, HashKind::Murmur, HashKind::Md5] {
        group.bench_function(kind.name(), |b| b.iter(|| kind.hash(black_box(KEY))));
    }
    group.finish();
}

fn ketama(c: &mut Criterion) {
    let names: Vec<Vec<u8>> = (1..=8).map(|i| format!("server{i}").into_bytes()).collect();
    let specs: Vec<ServerSpec<'_>> = names
        .iter()
        .map(|name| ServerSpec { name, weight: 1 })
        .collect();
    let continuum = Continuum::build(DistributionKind::Ketama, &specs, &[true; 8]);
    let hashes: Vec<u32> = (0..1024u32)
        .map(|i| HashKind::Murmur.hash(&i.to_le_bytes()))
        .collect();

    let mut group = c.benchmark_group("ketama_8_servers");
    group.bench_function("dispatch", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            continuum.dispatch(black_box(hashes[i]))
        })
    });
    group.bench_function("server_for_key_fnv1a_64", |b| {
        b.iter(|| continuum.server_for_key(HashKind::Fnv1a_64, None, black_box(KEY)))
    });
    group.bench_function("build", |b| {
        b.iter(|| Continuum::build(DistributionKind::Ketama, black_box(&specs), &[true; 8]))
    });
    group.finish();
}

criterion_group!(benches, hashes, ketama);
criterion_main!(benches);
