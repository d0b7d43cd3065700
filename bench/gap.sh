#!/usr/bin/env bash
# Gaps in the event stream (issue 20), end to end on loopback against the simulated PBX:
#   1. Reconnect: ~1,000 calls in progress (real-time simulator), pbxlink's AMI socket cut
#      with `ss -K` RUNS times. Each time: the `reconciled with the PBX's channel list` line
#      after the new login gives `since_login_ms` (login -> reconciled state), `listed`,
#      `calls`; the log timestamps give cut -> reconciled (this includes the reconnect delay,
#      0.25-0.5 s: `reconnect_min` 0.5 s, half of it jittered). min / median / max.
#   2. Restart: pbxlink fills its raw event log (SQLite `ami_events`) to EVENTS rows from a
#      simulator sending as fast as it reads (at most 1,000 calls up), is SIGKILLed, and
#      started again on the same data dir: spawn -> `resumed calls in progress from the raw
#      event log` and spawn -> first `reconciled` line, with the events in the log, the
#      events replayed and the calls resumed.
# Needs root for `ss -K` (and a kernel with CONFIG_INET_DIAG_DESTROY). Traffic stays on
# 127.0.0.1. Env: RUNS (5), CALLS (1000: calls up in part 1), EVENTS (1000000),
# FILL_TIMEOUT (1200 s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
RUNS=${RUNS:-5}
CALLS=${CALLS:-1000}
EVENTS=${EVENTS:-1000000}
FILL_TIMEOUT=${FILL_TIMEOUT:-1200}

cargo build --release -q -p pbxlink
BIN=target/release/pbxlink
WORK=$(mktemp -d -t pbxlink-gap.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
TOKEN=bench-token
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

now() { date +%s.%N; }
# until_true SECONDS CMD...: polls CMD (a function, so that it is evaluated on every try) every
# 0.2 s; fails the script past the deadline, so a stuck gateway never hangs the bench.
until_true() {
    local end=$((SECONDS + $1))
    until "${@:2}"; do
        if ((SECONDS >= end)); then
            echo "timed out after $1 s waiting for: ${*:2}" >&2
            exit 1
        fi
        sleep 0.2
    done
}
config() { # NAME AMI_PORT -> a config file with its own data dir
    cat >"$WORK/$1.toml" <<TOML
data_dir = "$WORK/$1"
[[pbx]]
name = "sim"
host = "127.0.0.1"
port = $2
username = "admin"
secret = "amp111"
TOML
    echo "$WORK/$1.toml"
}
gateway() { # CONFIG LOG -> starts pbxlink run (JSON logs, timestamps in UTC), sets GW, HTTP
    HTTP=$(free_port)
    PBXLINK_LOG=info "$BIN" --config "$1" --log-format json run --listen "127.0.0.1:$HTTP" \
        --admin-token "$TOKEN" 2>>"$2" &
    GW=$!; pids+=($GW)
}
metric() { # name -> value summed over label sets (0 while the gateway is not up)
    curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$HTTP/metrics" 2>/dev/null |
        awk -v m="$1" '$1 ~ "^"m"({|$)" {s += $2} END {printf "%d", s}'
}
reconciled() { grep -c "reconciled with the PBX's channel list" "$1" || true; }
active_at_least() { (($(metric pbxlink_active_calls) >= $1)); }
reconciled_more_than() { (($(reconciled "$1") > $2)); }
# field LOG N KEY: KEY of the Nth `reconciled` line (1-based), or its "timestamp" in epoch s.
field() {
    python3 - "$@" <<'PY'
import datetime, json, sys
log, n, key = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = [json.loads(l) for l in open(log) if "reconciled with the PBX" in l]
line = lines[n - 1]
if key == "timestamp":
    t = line["timestamp"].replace("Z", "+00:00")
    print(datetime.datetime.fromisoformat(t).timestamp())
else:
    print(line["fields"][key])
PY
}

echo "== Reconnect with ~$CALLS calls in progress ($RUNS cuts of the AMI socket)"
AMI=$(free_port)
# Calls last ~40 s on average (ring 2-10 s, talk 5-120 s log-uniform), so 100 calls/s
# against a cap 10% above CALLS keeps the PBX at the cap, and the ramp takes ~15 s.
"$BIN" simulate --listen "127.0.0.1:$AMI" --seed 20 --calls-per-second 100 \
    --concurrency $((CALLS * 11 / 10)) --extensions 2000-5999 2>"$WORK/sim1.log" &
pids+=($!)
LOG1=$WORK/reconnect.log
gateway "$(config reconnect "$AMI")" "$LOG1"
until_true 120 active_at_least "$CALLS"
printf '%4s %8s %8s %8s %16s %16s\n' run active listed calls since_login_ms cut_to_line_ms
rows=()
for run in $(seq 1 "$RUNS"); do
    seen=$(reconciled "$LOG1")
    active=$(metric pbxlink_active_calls)
    cut=$(now)
    ss -K dst 127.0.0.1 dport = "$AMI" >/dev/null 2>&1
    until_true 60 reconciled_more_than "$LOG1" "$seen"
    n=$((seen + 1))
    login=$(field "$LOG1" "$n" since_login_ms)
    line_at=$(field "$LOG1" "$n" timestamp)
    cut_ms=$(python3 -c "print(f'{($line_at - $cut) * 1e3:.1f}')")
    printf '%4d %8d %8d %8d %16.1f %16s\n' "$run" "$active" "$(field "$LOG1" "$n" listed)" \
        "$(field "$LOG1" "$n" calls)" "$login" "$cut_ms"
    rows+=("$login $cut_ms")
    # Let the calls taken in settle and the next cut start from a steady state.
    sleep 3
done
printf '%s\n' "${rows[@]}" | python3 -c '
import statistics, sys
rows = [tuple(map(float, l.split())) for l in sys.stdin]
for i, name in enumerate(["login -> reconciled", "cut -> reconciled"]):
    v = sorted(r[i] for r in rows)
    print(f"{name}: min {v[0]:.1f} ms, median {statistics.median(v):.1f} ms, max {v[-1]:.1f} ms")
'
kill "$GW"; wait "$GW" 2>/dev/null || true

echo "== Restart from a raw event log of $EVENTS events"
AMI=$(free_port)
# As fast as pbxlink reads: the log fills at its ingest rate; the cap keeps ~1,000 calls up,
# so there is a full house to resume when it is killed.
"$BIN" simulate --listen "127.0.0.1:$AMI" --fast --seed 21 --calls-per-second 1000 \
    --concurrency "$CALLS" --extensions 2000-5999 2>"$WORK/sim2.log" &
pids+=($!)
CFG=$(config restart "$AMI")
DB=$WORK/restart/pbxlink.db
LOG2=$WORK/restart.log
gateway "$CFG" "$LOG2"
# The newest row id, not count(*): no scan of a million rows every 0.2 s.
logged_at_least() {
    (($(sqlite3 "file:$DB?mode=ro" "SELECT coalesce(max(id), 0) FROM ami_events" 2>/dev/null || echo 0) >= $1))
}
fill_start=$(now)
until_true "$FILL_TIMEOUT" logged_at_least "$EVENTS"
fill_s=$(python3 -c "print(f'{$(now) - $fill_start:.0f}')")
active=$(metric pbxlink_active_calls)
kill -KILL "$GW"; wait "$GW" 2>/dev/null || true
rows=$(sqlite3 "$DB" "SELECT count(*) FROM ami_events")
journaled=$(sqlite3 "$DB" "SELECT count(*) FROM calls")
echo "filled in ${fill_s} s: $rows events in the log, $journaled calls journaled, $active in progress at the kill"
: >"$LOG2"
spawn=$(now)
gateway "$CFG" "$LOG2"
until_true 600 grep -q "resumed calls in progress from the raw event log" "$LOG2"
until_true 600 reconciled_more_than "$LOG2" 0
python3 - "$LOG2" "$spawn" <<'PY'
import datetime, json, sys
log, spawn = sys.argv[1], float(sys.argv[2])
def at(line):
    return datetime.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()
lines = [json.loads(l) for l in open(log) if l.startswith("{")]
resumed = next(l for l in lines if l["fields"]["message"].startswith("resumed calls"))
rec = next(l for l in lines if l["fields"]["message"].startswith("reconciled with"))
f, r = resumed["fields"], rec["fields"]
print(f"replayed {f['events']} events, {f['calls']} calls resumed")
print(f"spawn -> resumed: {(at(resumed) - spawn) * 1e3:.0f} ms")
print(f"spawn -> reconciled: {(at(rec) - spawn) * 1e3:.0f} ms (listed {r['listed']}, "
      f"ended_in_gap {r['ended_in_gap']}, taken_in {r['taken_in']}, calls {r['calls']}, "
      f"since_login_ms {r['since_login_ms']:.1f})")
PY
