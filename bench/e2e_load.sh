#!/usr/bin/env bash
# End-to-end load: the built-in simulated PBX streams generated calls over loopback TCP as fast
# as pbxlink reads them; pbxlink tracks them and journals them to SQLite. Every INTERVAL seconds
# it prints calls journaled/s, AMI events/s, calls in progress and pbxlink's RSS, so growing lag
# (events/s falling, active calls growing) or unbounded memory shows up in the table.
#
# usage: bench/e2e_load.sh        (env: CALLS=20000 CPS=1000 CONCURRENCY=2000 INTERVAL=5 SEED=7)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CALLS=${CALLS:-20000}
CPS=${CPS:-1000}
CONCURRENCY=${CONCURRENCY:-2000}
INTERVAL=${INTERVAL:-5}
SEED=${SEED:-7}

# PBXLINK_BIN: a pbxlink built elsewhere (bench/before_after.sh); else this tree's.
if [ -z "${PBXLINK_BIN:-}" ]; then cargo build --release -q -p pbxlink; fi
BIN=${PBXLINK_BIN:-target/release/pbxlink}
# PBXLINK_SIM_BIN: the load generator (`pbxlink simulate`) from another build, held fixed
# while the gateway under test changes; else the same binary.
SIM_BIN=${PBXLINK_SIM_BIN:-$BIN}
WORK=$(mktemp -d -t pbxlink-load.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
AMI_PORT=$(free_port)
HTTP_PORT=$(free_port)
TOKEN=bench-token
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# Virtual duration so that CPS * duration = CALLS; --fast ignores the virtual clock's pace.
DURATION=$(python3 -c "print($CALLS / $CPS)")
"$SIM_BIN" simulate --listen "127.0.0.1:$AMI_PORT" --fast --seed "$SEED" \
    --calls-per-second "$CPS" --concurrency "$CONCURRENCY" --duration "$DURATION" \
    --username bench --secret bench-secret 2>"$WORK/simulate.log" &
SIM=$!
pids+=($SIM)
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
PID=$!
pids+=($PID)

metric() { # name -> value summed over label sets
    curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP_PORT/metrics" |
        awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%d", s}'
}
until curl -s "http://127.0.0.1:$HTTP_PORT/health" >/dev/null; do sleep 0.2; done
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

echo "calls=$CALLS generated at $CPS calls/s virtual, concurrency $CONCURRENCY, sent as fast as pbxlink reads"
# cpu columns: % of one core used by pbxlink and by the simulator during the interval;
# whichever sits near 100 is the bottleneck (each is mostly one busy thread).
printf '%6s %10s %12s %12s %8s %8s %8s %8s\n' t_s calls calls_per_s events_per_s active rss_mib cpu_gw cpu_sim
prev_gw=$(cpu_ticks "$PID"); prev_sim=$(cpu_ticks "$SIM")
start=$(date +%s.%N)
prev_calls=0; prev_events=0; t=0; idle=0
while :; do
    sleep "$INTERVAL"
    t=$((t + INTERVAL))
    calls=$(metric pbxlink_calls_journaled_total)
    events=$(metric pbxlink_ami_events_total)
    active=$(metric pbxlink_active_calls)
    rss=$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$PID/status")
    gw=$(cpu_ticks "$PID"); sim=$(cpu_ticks "$SIM" 2>/dev/null || echo "$prev_sim")
    printf '%6d %10d %12.0f %12.0f %8d %8d %8d %8d\n' "$t" "$calls" \
        "$(((calls - prev_calls) / INTERVAL))" "$(((events - prev_events) / INTERVAL))" "$active" "$rss" \
        "$(((gw - prev_gw) * 100 / HZ / INTERVAL))" "$(((sim - prev_sim) * 100 / HZ / INTERVAL))"
    prev_gw=$gw; prev_sim=$sim
    if ((calls == prev_calls)); then idle=$((idle + 1)); else idle=0; fi
    ((calls >= CALLS || idle >= 3)) && break
    prev_calls=$calls; prev_events=$events
done
end=$(date +%s.%N)
events=$(metric pbxlink_ami_events_total)
python3 - "$start" "$end" "$calls" "$events" <<PY
import sys
start, end, calls, events = map(float, sys.argv[1:])
# The last interval may include idle time after the stream ended; this is a lower bound.
wall = end - start
print(f"total: {calls:.0f} calls, {events:.0f} AMI events in {wall:.1f} s wall: "
      f"{calls / wall:.0f} calls/s, {events / wall:.0f} events/s (lower bound)")
PY
