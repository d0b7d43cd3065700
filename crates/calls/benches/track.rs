//! Criterion bench of `calls::Tracker` on real PJSIP transcripts copied with fresh ids and
//! interleaved (a few hundred calls at once). `bench/tracker.sh` is the 10,000-call run
//! side by side with cacofonisk.

mod common;

use calls::{Tracker, TrackerConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Small enough for criterion's repeated runs, big enough that the maps hold many calls.
const CONCURRENT: usize = 300;

fn track(c: &mut Criterion) {
    let transcripts = common::transcripts();
    let stream: Vec<_> = common::merged(&transcripts, CONCURRENT).collect();

    let mut group = c.benchmark_group("tracker");
    group.throughput(Throughput::Elements(stream.len() as u64));
    group.sample_size(20);
    group.bench_function("merged_pjsip_300_calls", |b| {
        b.iter(|| {
            let mut tracker = Tracker::new(TrackerConfig::default());
            common::track(&mut tracker, &stream, 0);
            tracker.calls_in_progress()
        })
    });
    group.finish();
}

criterion_group!(benches, track);
criterion_main!(benches);
