#!/usr/bin/env bash
# Side-by-side call tracking in one run, on one file: pbxlink's calls::Tracker and
# cacofonisk, fed the real PJSIP transcripts copied with fresh ids and interleaved so
# CONCURRENT calls (default 10000) are in progress at the peak. Prints a table with ratios.
# Env: RUNS (best of, default 3), CONCURRENT.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_python_peers

runs=${RUNS:-3}
concurrent=${CONCURRENT:-10000}
input="$bench_dir/out/tracker_events_$concurrent.raw"
results="$bench_dir/out/tracker.jsonl"
mkdir -p "$bench_dir/out"

# The Rust driver builds $input from ../shared/fixtures when it is missing.
(cd "$repo_dir" && cargo bench -q -p calls --bench track_file -- "$input" "$concurrent" "$runs") > "$results"
"$bench_dir/.venv/bin/python" "$bench_dir/peers/cacofonisk_track.py" "$input" "$runs" >> "$results"

echo "Call tracking, $concurrent concurrent calls ($input), best of $runs, $(date -u +%F)"
python3 "$bench_dir/report.py" "$results"
