#!/usr/bin/env bash
# The target dies while suture is applying (here: while it waits for a
# sleeping thread to leave the code being replaced). suture reports that the
# target died, with its own exit status, and leaves nothing behind.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

start_target pid -- 2
ask "$pid" "sleep 10000" >/dev/null
sleep 0.2
status=0
("$SUTURE" apply --attempts 100 --backoff-ms 50 --pid "$pid" "$DEMO_PATCH_V2" >"$scratch/apply.out" 2>&1) &
applier=$!
sleep 0.5
kill -9 "$pid"
wait "$applier" || status=$?
cat "$scratch/apply.out"
check_eq "exit status: target died" 10 "$status"
grep -q "exited during the operation" "$scratch/apply.out" && pass "the message says so" ||
    fail_check "unclear message"
check_eq "no suture process left behind" "" "$(pgrep -f "suture apply --attempts 100" || true)"
finish
