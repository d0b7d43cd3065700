//! Driver for `bench/ami_decode.sh`: times our decoder and the `memchr` floor on the
//! amplified transcript file the peers parse too, and prints one JSON line per contender.
//!
//! Usage: `cargo bench -p ami --bench decode_file -- <file> [min_messages] [runs]`.
//! The file is built (all transcripts, repeated) when it does not exist yet.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

const DEFAULT_MIN_MESSAGES: usize = 1_000_000;
const DEFAULT_RUNS: usize = 3;

fn main() {
    // `cargo bench` appends `--bench`; everything else is positional.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(path) = args.first().map(Path::new) else {
        eprintln!("usage: decode_file <file> [min_messages] [runs]");
        std::process::exit(2);
    };
    let min_messages = parse_arg(&args, 1, DEFAULT_MIN_MESSAGES);
    let runs = parse_arg(&args, 2, DEFAULT_RUNS).max(1);

    if !path.exists() {
        write_amplified(path, min_messages);
    }
    let input = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    report("pbxlink ami::Decoder", &input, runs, common::decode_chunked);
    report("memchr floor", &input, runs, common::memchr_floor);
}

fn parse_arg(args: &[String], at: usize, default: usize) -> usize {
    args.get(at).map_or(default, |a| {
        a.parse()
            .unwrap_or_else(|_| panic!("argument {at} must be a number, got {a:?}"))
    })
}

/// Repeats the corpus until it holds at least `min_messages` messages.
fn write_amplified(path: &Path, min_messages: usize) {
    let corpus = common::corpus();
    let per_copy = common::memchr_floor(&corpus);
    let copies = min_messages.div_ceil(per_copy);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, corpus.repeat(copies))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    eprintln!(
        "wrote {} ({copies} copies x {per_copy} messages)",
        path.display()
    );
}

/// Best of `runs` (the least disturbed by the other engineers' compiles on this machine).
fn report(name: &str, input: &[u8], runs: usize, count: fn(&[u8]) -> usize) {
    let mut best = Duration::MAX;
    let mut messages = 0;
    for _ in 0..runs {
        let start = Instant::now();
        messages = count(std::hint::black_box(input));
        best = best.min(start.elapsed());
    }
    let line = serde_json::json!({
        "impl": name,
        "messages": messages,
        "bytes": input.len(),
        "seconds": best.as_secs_f64(),
    });
    println!("{line}");
}
