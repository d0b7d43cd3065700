#!/usr/bin/env bash
# The HTTP API under load, on loopback: `pbxlink run` tracks a simulated PBX streaming calls in
# real time (CPS calls/s) into SQLite, then
#   1. wrk loads GET /api/v1/calls/{id} (one journaled call, record + story): req/s, p50/p99;
#   2. examples/sse_fanout holds SUBSCRIBERS Server-Sent-Events streams on /api/v1/events for
#      DURATION seconds while calls flow: deliveries/s and the delay from each event to each subscriber.
# Needs wrk (apt-get install wrk). Env: CPS (20), SUBSCRIBERS (1000), DURATION (20),
# CONNECTIONS (64), THREADS (2). The load tools share the 2 cores with the server under test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CPS=${CPS:-20}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true

cargo build --release -q -p pbxlink --example sse_fanout
BIN=target/release/pbxlink
WORK=$(mktemp -d -t pbxlink-api.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
AMI_PORT=$(free_port)
HTTP_PORT=$(free_port)
TOKEN=bench-token
BASE=http://127.0.0.1:$HTTP_PORT
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN" simulate --listen "127.0.0.1:$AMI_PORT" --seed 7 --calls-per-second "$CPS" --concurrency $((CPS * 300)) \
    --duration 3600 --username bench --secret bench-secret 2>"$WORK/simulate.log" &
pids+=($!)
cat >"$WORK/pbxlink.toml" <<TOML
data_dir = "$WORK/data"
[[pbx]]
name = "sim"
host = "127.0.0.1"
port = $AMI_PORT
username = "bench"
secret = "bench-secret"
TOML
PBXLINK_LOG=warn "$BIN" --config "$WORK/pbxlink.toml" run --listen "127.0.0.1:$HTTP_PORT" \
    --admin-token "$TOKEN" 2>"$WORK/pbxlink.log" &
pids+=($!)
until curl -s "$BASE/health" >/dev/null; do sleep 0.2; done
# Some journal to read: wait for calls to end.
until [ "$(curl -s -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/calls?limit=1" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["calls"]))')" = 1 ]; do sleep 1; done
sleep 10
ID=$(curl -s -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/calls?limit=1" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["calls"][0]["id"])')
CALLS=$(curl -s -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/calls?limit=1000" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["calls"]))')

echo "== GET /api/v1/calls/$ID (journal: $CALLS calls, $CPS calls/s flowing), wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
    -H "Authorization: Bearer $TOKEN" "$BASE/api/v1/calls/$ID" |
    awk '/Requests\/sec|Non-2xx|Socket errors/ {print} / (50|90|99)%/ {print "  p" $1, $2}'

echo "== SSE fan-out: $SUBSCRIBERS subscribers on /api/v1/events for ${DURATION}s, $CPS calls/s flowing"
target/release/examples/sse_fanout "$BASE" "$TOKEN" "$SUBSCRIBERS" "$DURATION"
echo "gateway RSS: $(awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' "/proc/${pids[1]}/status")"
