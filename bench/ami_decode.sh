#!/usr/bin/env bash
# Side-by-side AMI decode in one run, on one file: pbxlink's ami::Decoder, the memchr floor,
# panoramisk's AMIProtocol and npm asterisk-manager's parser. Prints a table with ratios.
# Env: RUNS (best of, default 3), MIN_MESSAGES (size of the generated file, default 1000000).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_python_peers
ensure_node_peers

runs=${RUNS:-3}
input="$bench_dir/out/ami_events.raw"
results="$bench_dir/out/ami_decode.jsonl"
mkdir -p "$bench_dir/out"

# The Rust driver builds $input from ../shared/fixtures when it is missing.
(cd "$repo_dir" && cargo bench -q -p ami --bench decode_file -- "$input" "${MIN_MESSAGES:-1000000}" "$runs") > "$results"
"$bench_dir/.venv/bin/python" "$bench_dir/peers/panoramisk_decode.py" "$input" "$runs" >> "$results"
node "$bench_dir/peers/node_decode.js" "$input" "$runs" >> "$results"

echo "AMI decode of $(du -h "$input" | cut -f1) ($input), best of $runs, $(date -u +%F)"
python3 "$bench_dir/report.py" "$results"
