#!/usr/bin/env bash
# CRM delivery, end to end on loopback, with a webhook CRM (examples/webhook_sink: answers at
# once and measures).
#   1. Latency: a simulated PBX streams CPS calls/s in real time for DURATION seconds into
#      `pbxlink run`; for every call the sink measures the time from the call's last AMI
#      Hangup (the record's ended_at, stamped when the gateway read it) to the `call.ended`
#      request arriving: p50/p90/p99.
#      On SQLite and (with POSTGRES_URL) on PostgreSQL.
#   2. Outbox throughput, on SQLite and (with POSTGRES_URL, a server where this user may
#      CREATE DATABASE) on PostgreSQL: CALLS calls are journaled while the sink refuses
#      everything (HTTP 400: the rows go dead at once); then the sink accepts,
#      `pbxlink outbox retry --all-dead` makes every row due, and a gateway with nothing else
#      to do delivers them: rows/s from the first delivery to the last.
# Env: CPS (200), DURATION (30), CALLS (3000). Everything shares the machine's cores.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CPS=${CPS:-200}
DURATION=${DURATION:-30}
CALLS=${CALLS:-3000}
ulimit -n 65536 2>/dev/null || true

# PBXLINK_BIN: a pbxlink built elsewhere (bench/before_after.sh); else this tree's.
cargo build --release -q -p pbxlink --example webhook_sink
BIN=${PBXLINK_BIN:-target/release/pbxlink}
SINK=target/release/examples/webhook_sink
WORK=$(mktemp -d -t pbxlink-crm.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# config DB_URL AMI_PORT SINK_PORT -> a config file path
config() {
    local file="$WORK/pbxlink-$RANDOM.toml"
    cat >"$file" <<TOML
data_dir = "$WORK/data"
[database]
url = "$1"
[[pbx]]
name = "sim"
host = "127.0.0.1"
port = $2
username = "bench"
secret = "bench-secret"
reconnect_max = 1
[[crm]]
kind = "webhook"
name = "sink"
url = "http://127.0.0.1:$3/hook"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]
TOML
    echo "$file"
}
gateway() { # CONFIG -> starts pbxlink run, waits for /health, sets GW
    local port; port=$(free_port)
    PBXLINK_LOG=warn "$BIN" --config "$1" run --listen "127.0.0.1:$port" --admin-token t \
        2>>"$WORK/pbxlink.log" &
    GW=$!; pids+=($GW)
    until curl -s "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.2; done
}
sink() { # PORT ARGS... -> starts the sink, output in $WORK/sink.out, sets SK
    "$SINK" "127.0.0.1:$1" "${@:2}" >"$WORK/sink.out" &
    SK=$!; pids+=($SK)
    until grep -q listening "$WORK/sink.out" 2>/dev/null; do sleep 0.1; done
}

latency() { # DB_URL LABEL
    local ami hook
    echo "== Hangup -> CRM request latency, $CPS calls/s for ${DURATION}s ($2 journal)"
    ami=$(free_port); hook=$(free_port)
    sink "$hook" --idle 5
    # Concurrency high enough that the rate, not the cap on calls up at once, sets the pace.
    "$BIN" simulate --listen "127.0.0.1:$ami" --seed 7 --calls-per-second "$CPS" \
        --concurrency $((CPS * 300)) --duration "$DURATION" --username bench --secret bench-secret \
        2>"$WORK/simulate.log" &
    pids+=($!)
    gateway "$(config "$1" "$ami" "$hook")"
    wait "$SK" || true
    tail -n 1 "$WORK/sink.out"
    kill "$GW" 2>/dev/null; wait "$GW" 2>/dev/null || true
}

mkdir -p "$WORK/data"
latency "sqlite://$WORK/data/latency.db?mode=rwc" SQLite
if [[ -n ${POSTGRES_URL:-} ]]; then
    db="pbxlink_latency_$$"
    psql "$POSTGRES_URL" -qc "CREATE DATABASE $db" >/dev/null
    latency "${POSTGRES_URL%/*}/$db" PostgreSQL
    psql "$POSTGRES_URL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
fi

throughput() { # DB_URL LABEL
    local ami hook cfg
    ami=$(free_port); hook=$(free_port)
    cfg=$(config "$1" "$ami" "$hook")
    # Fill: the sink refuses, every row goes dead after one attempt.
    sink "$hook" --status 400
    "$BIN" simulate --listen "127.0.0.1:$ami" --fast --seed 7 --calls-per-second 1000 \
        --concurrency 100000 --duration "$(python3 -c "print($CALLS / 1000)")" --username bench --secret bench-secret \
        2>"$WORK/simulate.log" &
    pids+=($!)
    gateway "$cfg"
    # Until every call is journaled and every row has had its one attempt: the per-CRM
    # counts (`sink: N dead, M pending`) stop moving and nothing is pending.
    local counts last=""
    while :; do
        sleep 2
        counts=$("$BIN" --config "$cfg" outbox list --limit 1 2>/dev/null | grep '^sink:' || true)
        [[ -n $counts && $counts == "$last" && $counts != *pending* && $counts != *in_flight* ]] && break
        last=$counts
    done
    echo "filled: $counts"
    kill "$GW" "$SK"; wait "$GW" "$SK" 2>/dev/null || true
    # Drain: every row due now, a sink that accepts, a gateway whose PBX is gone.
    "$BIN" --config "$cfg" outbox retry --all-dead >/dev/null
    sink "$hook" --idle 2
    gateway "$cfg"
    wait "$SK" || true
    kill "$GW" 2>/dev/null; wait "$GW" 2>/dev/null || true
    python3 - "$2" "$WORK/sink.out" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
busy = [l for l in lines if "t" in l and l["requests"] > 0]
total = sum(l["requests"] for l in busy)
# Whole seconds with deliveries; the first and last are partial, so this is a lower bound.
print(f"{sys.argv[1]}: {total} rows delivered in {len(busy)} s: {total / max(len(busy), 1):.0f} rows/s "
      f"(peak second {max((l['requests'] for l in busy), default=0)})")
PY
}

echo "== Outbox throughput (rows already due, loopback webhook CRM)"
throughput "sqlite://$WORK/data/outbox.db?mode=rwc" "SQLite"
if [[ -n ${POSTGRES_URL:-} ]]; then
    db="pbxlink_bench_$$"
    psql "$POSTGRES_URL" -qc "CREATE DATABASE $db" >/dev/null
    throughput "${POSTGRES_URL%/*}/$db" "PostgreSQL"
    psql "$POSTGRES_URL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
else
    echo "PostgreSQL: skipped (set POSTGRES_URL)"
fi
