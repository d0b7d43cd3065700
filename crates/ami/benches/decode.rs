//! Criterion bench of the AMI decoder on every real transcript in `../shared/fixtures`,
//! next to the `memchr` floor. `bench/ami_decode.sh` is the side-by-side run with peers.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn decode(c: &mut Criterion) {
    let corpus = common::corpus();
    let messages = common::decode_chunked(&corpus);
    assert_eq!(
        messages,
        common::memchr_floor(&corpus),
        "decoder and floor disagree"
    );

    let mut group = c.benchmark_group("ami_decode");
    group.throughput(Throughput::Bytes(corpus.len() as u64));
    group.bench_function("decoder_64k_reads", |b| {
        b.iter(|| common::decode_chunked(&corpus))
    });
    group.bench_function("memchr_floor", |b| b.iter(|| common::memchr_floor(&corpus)));
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
