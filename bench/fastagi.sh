#!/usr/bin/env bash
# FastAGI side by side in one run: pbxlink's server and panoramisk's FastAGI server run the
# same 3-command script ([agi.static.bench]: three SET VARIABLE); `pbxlink agi load` plays
# Asterisk against each at 50 and 1,000 concurrent sessions and reports sessions/s and
# p50/p99 session latency (connect -> environment -> 3 commands -> server closes).
# Env: DURATION (seconds per measurement, default 5), CONCURRENCY (default "50 1000"),
# OPEN_RATE and THINK_MS for the open-loop rows (below).
# The load generator shares the machine with the server under test (same for both).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_python_peers
cd "$repo_dir"

duration=${DURATION:-5}
levels=${CONCURRENCY:-50 1000}
results="$bench_dir/out/fastagi.jsonl"
mkdir -p "$bench_dir/out"
: >"$results"
ulimit -n 65536 2>/dev/null || true

cargo build --release -q -p pbxlink
bin=target/release/pbxlink
work=$(mktemp -d -t pbxlink-fastagi.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ours_port=$(free_port)
peer_port=$(free_port)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/pbxlink.toml" <<TOML
[agi]
listen = "127.0.0.1:$ours_port"
max_connections = 4096
[agi.static.bench]
PBXLINK_A = "1"
PBXLINK_B = "2"
PBXLINK_C = "3"
TOML
PBXLINK_LOG=warn "$bin" --config "$work/pbxlink.toml" agi serve 2>"$work/pbxlink.log" &
pids+=($!)
"$bench_dir/.venv/bin/python" "$bench_dir/fastagi_panoramisk.py" "$peer_port" >"$work/peer.out" 2>&1 &
pids+=($!)
until grep -q listening "$work/pbxlink.log" && grep -q listening "$work/peer.out"; do sleep 0.2; done

# CPU time the server process used (user + system), in ms: machine-load-independent cost.
tck=$(getconf CLK_TCK)
cpu_ms() { awk -v t="$tck" '{print ($14 + $15) * 1000 / t}' "/proc/$1/stat"; }

for c in $levels; do
    for target in "pbxlink:$ours_port:${pids[0]}" "panoramisk-1.4:$peer_port:${pids[1]}"; do
        IFS=: read -r label port pid <<<"$target"
        before=$(cpu_ms "$pid")
        line=$("$bin" agi load --connect "127.0.0.1:$port" --script bench --commands 3 \
            --concurrency "$c" --duration "$duration" --warmup 0 --label "$label")
        after=$(cpu_ms "$pid")
        python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["server_cpu_ms"]=float(sys.argv[2]); print(json.dumps(r))' \
            "$line" "$(python3 -c "print($after - $before)")" >>"$results"
    done
done

# Open loop: sessions start on a fixed schedule (OPEN_RATE/s) and Asterisk takes THINK_MS
# before each of its 3 replies (not counted as latency), so about
# OPEN_RATE * 3 * THINK_MS / 1000 sessions (1,000 by default) are open at once; the latency is
# what the server adds, measured from the schedule (a late start counts against it).
open_rate=${OPEN_RATE:-2000}
think_ms=${THINK_MS:-167}
open_results="$bench_dir/out/fastagi_open.jsonl"
: >"$open_results"
for target in "pbxlink:$ours_port" "panoramisk-1.4:$peer_port"; do
    IFS=: read -r label port <<<"$target"
    "$bin" agi load --connect "127.0.0.1:$port" --script bench --commands 3 \
        --rate "$open_rate" --think-ms "$think_ms" --concurrency 4000 \
        --duration "$duration" --warmup 1 --label "$label" >>"$open_results"
done

echo "FastAGI 3-command sessions, ${duration}s per row, $(nproc) cores, $(date -u +%F)"
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def cpu_us(r):
    return r['server_cpu_ms'] * 1000 / max(r['sessions'], 1)
print(f"{'server':<16} {'conc':>5} {'sessions/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
      f" {'ours/this':>10} {'server CPU us/session':>22} {'ours/this':>10}")
for r in rows:
    ours = next(o for o in rows if o['impl'] == 'pbxlink' and o['concurrency'] == r['concurrency'])
    ratio = ours['sessions_per_s'] / max(r['sessions_per_s'], 1)
    print(f"{r['impl']:<16} {r['concurrency']:>5} {r['sessions_per_s']:>11,.0f} "
          f"{r['p50_us'] / 1000:>8.2f} {r['p99_us'] / 1000:>8.2f} {r['errors']:>6} {ratio:>9.1f}x"
          f" {cpu_us(r):>22.0f} {cpu_us(r) / max(cpu_us(ours), 1e-9):>9.1f}x")
PY
echo
echo "Open loop: $open_rate sessions/s offered, Asterisk thinks ${think_ms} ms before each reply (~$((open_rate * 3 * think_ms / 1000)) sessions open at once)"
python3 - "$open_results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'server':<16} {'sessions/s':>11} {'p50 ms':>8} {'p99 ms':>8} {'p999 ms':>8} {'errors':>6}")
for r in rows:
    print(f"{r['impl']:<16} {r['sessions_per_s']:>11,.0f} {r['p50_us'] / 1000:>8.2f} "
          f"{r['p99_us'] / 1000:>8.2f} {r.get('p999_us', 0) / 1000:>8.2f} {r['errors']:>6}")
PY
