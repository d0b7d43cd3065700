//! Driver for `bench/tracker.sh`: builds the merged many-calls event file (when missing),
//! times `calls::Tracker` on it a pre-decoded batch at a time, counts the tracker's heap
//! per call in progress, and prints one JSON line like the other bench drivers.
//!
//! Usage: `cargo bench -p calls --bench track_file -- <file> [concurrent_calls] [runs]`.

mod common;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use calls::{Tracker, TrackerConfig};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOC: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const DEFAULT_CONCURRENT: usize = 10_000;
const DEFAULT_RUNS: usize = 3;
/// Pre-decoded messages per batch: big enough that timing each batch costs nothing, small
/// enough (~0.7 MB) to stay in cache, as a message just decoded by the pipeline is.
/// Bigger batches fall out of cache and mostly time the first touch of each message (the
/// criterion bench `track` shows that cache-cold figure).
const BATCH: usize = 1_000;

fn main() {
    // `cargo bench` appends `--bench`; everything else is positional.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(path) = args.first().map(Path::new) else {
        eprintln!("usage: track_file <file> [concurrent_calls] [runs]");
        std::process::exit(2);
    };
    let concurrent = parse_arg(&args, 1, DEFAULT_CONCURRENT);
    let runs = parse_arg(&args, 2, DEFAULT_RUNS).max(1);

    if !path.exists() {
        write_merged(path, concurrent);
    }
    let mut best = Duration::MAX;
    let mut run = Run::default();
    for _ in 0..runs {
        run = track_file(path);
        best = best.min(run.elapsed);
    }
    let line = serde_json::json!({
        "impl": "pbxlink calls::Tracker",
        "messages": run.messages,
        "seconds": best.as_secs_f64(),
        "calls_ended": run.calls_ended,
        "peak_calls_in_progress": run.peak_calls,
        "tracker_heap_bytes_per_call": run.heap_at_peak / run.peak_calls.max(1) as isize,
    });
    println!("{line}");
}

fn parse_arg(args: &[String], at: usize, default: usize) -> usize {
    args.get(at).map_or(default, |a| {
        a.parse()
            .unwrap_or_else(|_| panic!("argument {at} must be a number, got {a:?}"))
    })
}

fn write_merged(path: &Path, copies: usize) {
    let transcripts = common::transcripts();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    let file = File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = BufWriter::new(file);
    let mut bytes = Vec::new();
    let mut messages = 0;
    for msg in common::merged(&transcripts, copies) {
        bytes.clear();
        msg.encode(&mut bytes);
        out.write_all(&bytes).unwrap();
        messages += 1;
    }
    out.flush().unwrap();
    eprintln!(
        "wrote {} ({messages} events, {copies} copies of {} transcripts)",
        path.display(),
        transcripts.len()
    );
}

#[derive(Debug, Default)]
struct Run {
    messages: usize,
    /// Call records the tracker produced: shows the copies were tracked as calls.
    calls_ended: usize,
    elapsed: Duration,
    peak_calls: usize,
    /// Net bytes the tracker holds when the most calls are in progress.
    heap_at_peak: isize,
}

fn track_file(path: &Path) -> Run {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut tracker = Tracker::new(TrackerConfig::default());
    let mut run = Run::default();
    // Only the tracker allocates between the two readings, so the sum of the differences
    // is its heap (the batches are decoded and dropped outside them).
    let mut tracker_heap = 0;
    for batch in common::MessageBatches::new(file, BATCH) {
        let before = live_bytes();
        let start = Instant::now();
        run.calls_ended += common::track(&mut tracker, &batch, run.messages);
        run.elapsed += start.elapsed();
        tracker_heap += live_bytes() - before;
        run.messages += batch.len();
        if tracker.calls_in_progress() > run.peak_calls {
            run.peak_calls = tracker.calls_in_progress();
            run.heap_at_peak = tracker_heap;
        }
    }
    run
}

fn live_bytes() -> isize {
    let s = ALLOC.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize + s.bytes_reallocated
}
