#!/usr/bin/env bash
# 8 threads call the patched functions in a tight loop while apply/revert
# cycles run (SUTURE_STRESS_CYCLES, default 1000): no crash, and every call
# returns a version-1 or version-2 result, never anything else.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"
cycles=${SUTURE_STRESS_CYCLES:-1000}

start_target pid -- 8
failed=0
for cycle in $(seq "$cycles"); do
    "$SUTURE" apply --attempts 50 --backoff-ms 1 --pid "$pid" "$DEMO_PATCH_V2" >/dev/null ||
        { fail_check "cycle $cycle: apply failed"; failed=1; break; }
    "$SUTURE" revert --attempts 50 --backoff-ms 1 --pid "$pid" >/dev/null ||
        { fail_check "cycle $cycle: revert failed"; failed=1; break; }
done
answer=$(ask "$pid" report)
echo "after $cycles cycles: $answer"
[ -n "$answer" ] && pass "the target survived $cycles apply/revert cycles" || fail_check "the target is gone"
check_eq "wrong results" 0 "$(field "$answer" bad)"
[ "$(field "$answer" calls)" -gt 0 ] && pass "the threads kept calling" || fail_check "no calls"
check_eq "back at version 1" generation=1 "$(cut -d' ' -f1 <<<"$answer")"
finish
