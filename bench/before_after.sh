#!/usr/bin/env bash
# Before/after in one run, for a change that should not move the numbers (a restructuring):
# builds pbxlink at REV in a scratch worktree, then runs the gateway-level benches — the
# end-to-end load (bench/e2e_load.sh) and Hangup -> CRM latency (bench/crm_latency.sh) — on
# that binary and on this tree's, alternating, on the same machine with the same settings.
# The library-level benches (AMI decode, tracker) compare peers in one run already; run them
# at both revisions when a change touches `ami` or `calls`.
# usage: bench/before_after.sh REV   (env: ROUNDS=2, ONLY=e2e|crm, and the scripts' own env)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REV=${1:?usage: bench/before_after.sh REV}
ROUNDS=${ROUNDS:-2}
BEFORE_DIR=${BEFORE_DIR:-target/before-after/$REV}

if [ ! -x "$BEFORE_DIR/target/release/pbxlink" ]; then
    rm -rf "$BEFORE_DIR"
    git worktree add --detach "$BEFORE_DIR" "$REV" >/dev/null
    (cd "$BEFORE_DIR" && cargo build --release -q -p pbxlink)
fi
cargo build --release -q -p pbxlink --example webhook_sink
before=$(realpath "$BEFORE_DIR/target/release/pbxlink")
after=$(realpath target/release/pbxlink)

for round in $(seq "$ROUNDS"); do
    for side in before after; do
        bin=$before; [ "$side" = after ] && bin=$after
        echo "== round $round, $side ($bin)"
        # The load generator is held fixed (REV's simulator): only the gateway differs.
        if [ "${ONLY:-}" != crm ]; then
            PBXLINK_BIN=$bin PBXLINK_SIM_BIN=$before INTERVAL=${INTERVAL:-1} bench/e2e_load.sh
        fi
        if [ "${ONLY:-}" != e2e ]; then PBXLINK_BIN=$bin bench/crm_latency.sh; fi
    done
done
