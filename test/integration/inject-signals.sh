#!/usr/bin/env bash
# Signals sent to the target while suture holds it are neither lost nor
# dropped: 400 queued real-time signals arrive during 40 apply/revert
# cycles, and the target counts exactly 400.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

start_target pid -- 4
sent=400
(
    for _ in $(seq "$sent"); do
        kill -s RTMIN+1 "$pid"
        sleep 0.002
    done
) &
sender=$!
cycles=0
while kill -0 "$sender" 2>/dev/null; do
    "$SUTURE" apply --attempts 50 --backoff-ms 1 --pid "$pid" "$DEMO_PATCH_V2" >/dev/null ||
        fail_check "apply failed"
    "$SUTURE" revert --attempts 50 --backoff-ms 1 --pid "$pid" >/dev/null || fail_check "revert failed"
    cycles=$((cycles + 1))
done
wait "$sender"
sleep 0.5
echo "$cycles apply/revert cycles while the signals were sent"
[ "$cycles" -gt 5 ] && pass "signals were sent while suture was busy" || fail_check "only $cycles cycles"
check_eq "real-time signals received" "$sent" "$(field "$(ask "$pid" report)" signals)"
finish
