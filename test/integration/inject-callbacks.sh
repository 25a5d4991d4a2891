#!/usr/bin/env bash
# Patch callbacks (include/suture/patch.h) on the demo library, in a live
# multithreaded process whose threads keep calling it:
#  - post_apply sets a state the workload observes (the library's
#    demo_global: 40 -> 1040), post_revert sets it back; every outcome is in
#    --json and in the state database;
#  - a pre_apply returning 42 refuses the apply with exit status 26 and the
#    code in the message, and changes nothing: maps and code bytes as before;
#  - a pre_apply that runs past the 2 s hard bound (it sleeps 3 s) refuses
#    the apply as a timeout: the process runs on at once (nothing stopped
#    or traced) while the callback finishes on its thread; its region stays
#    retired until a later stop unmaps it;
#  - a thread stopped inside glibc's malloc_stats (holding the main arena's
#    lock) makes every try refuse to run callbacks, and the apply or revert
#    ends `unsafe` naming the thread and malloc_stats; once it leaves, the
#    same command goes through.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"
# The state database the callbacks are recorded in.
export SUTURE_STATE_DB="$scratch/state.db"

start_target pid -- 4
global() { field "$(ask "$pid" report)" global; }
generation() { field "$(ask "$pid" report)" generation; }
library_base() { awk '/libsuture-demo\.so/ && $3 == "00000000" { split($1, r, "-"); print r[1]; exit }' "/proc/$pid/maps"; }
# The first 16 bytes of demo_generation in the target, in hex.
code_bytes() {
    local offset
    offset=$(patch_metadata "$CALLBACKS_PATCH_STATE" | jq -r '.functions[0].offset')
    dd if="/proc/$pid/mem" bs=1 skip=$((0x$(library_base) + offset)) count=16 2>/dev/null | xxd -p
}
callbacks_recorded() {
    sqlite3 "$scratch/state.db" "SELECT callback || ' ' || outcome || ' ' || code FROM callbacks ORDER BY id" | tr '\n' ',' 
}

check_eq "the metadata lists the four callbacks" \
    "__suture_callback_post_apply __suture_callback_post_revert __suture_callback_pre_apply __suture_callback_pre_revert" \
    "$(patch_metadata "$CALLBACKS_PATCH_STATE" | jq -r '.callbacks | [.[]] | sort | join(" ")')"
check_eq "before: version 1, global 40" "1 40" "$(generation) $(global)"

# 1. A pre_apply that fails refuses cleanly.
maps_before=$(sha256sum <"/proc/$pid/maps")
bytes_before=$(code_bytes)
run 26 "a pre_apply returning 42 refuses the apply" \
    "$SUTURE" apply --json --pid "$pid" "$CALLBACKS_PATCH_FAILS"
check_eq "refused: reason" refused "$(jq -r .error.reason <<<"$output")"
case "$(jq -r .error.message <<<"$output")" in
*"pre_apply returned 42"*"nothing changed"*) pass "the message gives the code and says nothing changed" ;;
*) fail_check "message: $(jq -r .error.message <<<"$output")" ;;
esac
check_eq "refused: the callback's outcome" "pre_apply failed 42" \
    "$(jq -r '.error.callbacks[0] | "\(.callback) \(.outcome) \(.code)"' <<<"$output")"
check_eq "refused: the maps are as before (SHA-256)" "$maps_before" "$(sha256sum <"/proc/$pid/maps")"
check_eq "refused: the code bytes are as before" "$bytes_before" "$(code_bytes)"
check_eq "refused: still version 1, global 40" "1 40" "$(generation) $(global)"
check_eq "refused: no patch in the process" 0 \
    "$("$SUTURE" status --json --pid "$pid" | jq '.processes[0].patches | length')"
run 26 "the text output gives the code too" "$SUTURE" apply --pid "$pid" "$CALLBACKS_PATCH_FAILS"
case "$errors" in *"pre_apply returned 42"*) pass "text: code in the message" ;; *) fail_check "text: $errors" ;; esac

# 2. post_apply sets a state the workload observes; post_revert undoes it.
run 0 "apply with callbacks" "$SUTURE" apply --json --pid "$pid" "$CALLBACKS_PATCH_STATE"
check_eq "apply: callbacks reported" "pre_apply ran 0,post_apply ran 0" \
    "$(jq -r '[.callbacks[] | "\(.callback) \(.outcome) \(.code)"] | join(",")' <<<"$output")"
echo "apply: callbacks took $(jq -r '[.callbacks[] | "\(.callback) \(.duration_us) us on thread \(.tid)"] | join(", ")' <<<"$output")"
check_eq "after apply: version 2, and the workload sees post_apply's state" "2 1040" "$(generation) $(global)"
json=$("$SUTURE" status --json --pid "$pid")
check_eq "status: active" "demo-callbacks active" \
    "$(jq -r '.processes[0].patches[0] | "\(.patch_id) \(.state)"' <<<"$json")"

# 3. A thread inside malloc_stats (the arena lock held) blocks a revert
# with callbacks, try after try; once it is gone the revert goes through.
check_eq "a thread stalls inside malloc_stats" stalled "$(ask "$pid" stall)"
sleep 0.2
run 9 "revert while a thread holds the allocator's lock: unsafe after the tries" \
    "$SUTURE" revert --json --attempts 3 --pid "$pid" demo-callbacks
message=$(jq -r .error.message <<<"$output")
case "$message" in
*"gave up after 3 tries"*"malloc_stats (libc.so.6: the allocator's lock)"*) pass "the refusal names malloc_stats and the lock" ;;
*) fail_check "message: $message" ;;
esac
echo "$message" | head -4
check_eq "refused-busy is recorded as the revert's callback outcome" "pre_revert refused-busy" \
    "$(jq -r '.error.callbacks[-1] | "\(.callback) \(.outcome)"' <<<"$output")"
check_eq "still applied, state kept" "2 1040" "$(generation) $(global)"
check_eq "the thread leaves malloc_stats" unstalled "$(ask "$pid" unstall)"
sleep 0.2
run 0 "revert once the lock is free" "$SUTURE" revert --json --pid "$pid" demo-callbacks
check_eq "revert: callbacks reported" "pre_revert ran 0,post_revert ran 0" \
    "$(jq -r '[.reverted[0].callbacks[] | "\(.callback) \(.outcome) \(.code)"] | join(",")' <<<"$output")"
check_eq "after revert: version 1, global back to 40" "1 40" "$(generation) $(global)"

# 4. The same for an apply.
check_eq "a thread stalls inside malloc_stats again" stalled "$(ask "$pid" stall)"
sleep 0.2
run 9 "apply while a thread holds the allocator's lock: unsafe after the tries" \
    "$SUTURE" apply --json --attempts 3 --pid "$pid" "$CALLBACKS_PATCH_STATE"
case "$(jq -r .error.message <<<"$output")" in
*"inside a lock the patch's callbacks may need"*"malloc_stats"*) pass "the apply's refusal names malloc_stats" ;;
*) fail_check "message: $(jq -r .error.message <<<"$output")" ;;
esac
check_eq "no callback ran: refused-busy" "pre_apply refused-busy" \
    "$(jq -r '[.error.callbacks[] | "\(.callback) \(.outcome)"] | join(",")' <<<"$output")"
check_eq "nothing applied" "1 40" "$(generation) $(global)"
check_eq "the thread leaves malloc_stats again" unstalled "$(ask "$pid" unstall)"
sleep 0.2
run 0 "apply once the lock is free" "$SUTURE" apply --pid "$pid" "$CALLBACKS_PATCH_STATE"
check_eq "applied" "2 1040" "$(generation) $(global)"
run 0 "revert" "$SUTURE" revert --pid "$pid" demo-callbacks
check_eq "reverted" "1 40" "$(generation) $(global)"

# 5. A pre_apply past the hard bound.
run 26 "a pre_apply still running at the hard bound refuses the apply" \
    "$SUTURE" apply --json --pid "$pid" "$CALLBACKS_PATCH_SLOW"
check_eq "timeout: the outcome" "pre_apply timeout" \
    "$(jq -r '.error.callbacks[0] | "\(.callback) \(.outcome)"' <<<"$output")"
case "$(jq -r .error.message <<<"$output")" in
*"pre_apply timed out"*"retired"*) pass "timeout: the message says what stays" ;;
*) fail_check "timeout: message: $(jq -r .error.message <<<"$output")" ;;
esac
check_eq "timeout: right away, no thread traced" 0 "$(traced_threads "$pid")"
check_eq "timeout: right away, no thread stopped" 0 \
    "$(awk '/^State:/ { print $2 }' /proc/"$pid"/task/*/status | grep -c '[tT]' || true)"
check_eq "timeout: the region is retired, no jump written" retired \
    "$("$SUTURE" status --json --pid "$pid" | jq -r '.processes[0].patches[0].state')"
sleep 1.5  # the callback's 3 s end
check_eq "timeout: the callback finished on its own; version 1, global 40" "1 40" \
    "$(generation) $(global)"
run 13 "a revert with nothing to revert releases the retired region" \
    "$SUTURE" revert --pid "$pid"
check_eq "timeout: no region left" 0 \
    "$("$SUTURE" status --json --pid "$pid" | jq '.processes[0].patches | length')"

check_eq "the state database has every outcome" \
    "pre_apply failed 42,pre_apply failed 42,pre_apply ran 0,post_apply ran 0,pre_revert refused-busy 0,pre_revert ran 0,post_revert ran 0,pre_apply refused-busy 0,pre_apply ran 0,post_apply ran 0,pre_revert ran 0,post_revert ran 0,pre_apply timeout 0," \
    "$(callbacks_recorded)"
# 6. A patch with a data region and callbacks: one marker with both
# extensions (docs/patch-format.md, "Region marker"), read back by status
# and by the revert, which finds its callbacks there.
run 0 "apply a patch with a data region and callbacks" \
    "$SUTURE" apply --json --pid "$pid" "$CALLBACKS_PATCH_DATA"
check_eq "data and callbacks: the apply's callbacks ran" "pre_apply ran 0,post_apply ran 0" \
    "$(jq -r '[.callbacks[] | "\(.callback) \(.outcome) \(.code)"] | join(",")' <<<"$output")"
json=$("$SUTURE" status --json --pid "$pid")
check_eq "data and callbacks: status reads the data region from the marker" \
    "demo-callbacks-data active true" \
    "$(jq -r '.processes[0].patches[0] | "\(.patch_id) \(.state) \(.data_size > 0)"' <<<"$json")"
check_eq "data and callbacks: version 2, post_apply's state" "2 1040" "$(generation) $(global)"
run 0 "revert the patch with data and callbacks" \
    "$SUTURE" revert --json --pid "$pid" demo-callbacks-data
check_eq "data and callbacks: the revert's callbacks ran (found in the marker)" \
    "pre_revert ran 0,post_revert ran 0" \
    "$(jq -r '[.reverted[0].callbacks[] | "\(.callback) \(.outcome) \(.code)"] | join(",")' <<<"$output")"
check_eq "data and callbacks: version 1, global 40" "1 40" "$(generation) $(global)"
check_eq "data and callbacks: four more outcomes recorded" 17 \
    "$(sqlite3 "$scratch/state.db" "SELECT count(*) FROM callbacks")"

check_eq "the threads never saw a wrong result" 0 "$(field "$(ask "$pid" report)" bad)"
check_eq "no thread left traced" 0 "$(traced_threads "$pid")"
kill -0 "$pid" && pass "the target is alive" || fail_check "the target died"
finish
