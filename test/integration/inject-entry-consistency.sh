#!/usr/bin/env bash
# The consistency models (docs/patch-format.md, "Consistency"), on threads
# that spend nearly all their time deep inside demo_spin, a replaced
# function: the strict patch of it, without return gates (which would catch
# the spinners on their way out), is refused as unsafe (a thread is inside
# the old body), the entry patch of the same code applies at the first try
# (no thread is in the 5 bytes its jump overwrites), and every result the
# spinners see, before and after, is version 1's or version 2's.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

start_target pid -- 0
check_eq "before: demo_spin is version 1" 1 "$(field "$(ask "$pid" report)" spin)"
check_eq "two threads spin inside demo_spin for 6 s" spinning "$(ask "$pid" "spin 2 6")"
sleep 0.3

run 9 "strict, without return gates: unsafe" "$SUTURE" apply --json --no-return-gates --attempts 5 \
    --backoff-ms 20 --pid "$pid" "$DEMO_SPIN_STRICT"
check_eq "strict: reason" unsafe "$(jq -r .error.reason <<<"$output")"
frames=$(jq -r '.error.blocking_threads[].frames[]' <<<"$output")
echo "$frames"
grep -q "demo_spin (libsuture-demo.so+" <<<"$frames" &&
    pass "strict: the spinning frame is named" || fail_check "strict: blocking frames: $frames"
check_eq "strict: nothing applied" 1 "$(field "$(ask "$pid" report)" spin)"

run 0 "entry: applied" "$SUTURE" apply --json --attempts 1 --pid "$pid" "$DEMO_SPIN_ENTRY"
json=$output
check_eq "entry: patch id" demo-spin "$(jq -r .patch_id <<<"$json")"
check_eq "entry: the report says entry" entry "$(jq -r .consistency <<<"$json")"
check_eq "entry: at the first try" 1 "$(jq -r .attempts <<<"$json")"
echo "entry: stopped for $(jq -r .stopped_us <<<"$json") us, stack check $(jq -c .stack_check <<<"$json")"
check_eq "entry: demo_spin is version 2 now" 2 "$(field "$(ask "$pid" report)" spin)"
before=$(field "$(ask "$pid" report)" spun_v2)
sleep 0.5
after=$(field "$(ask "$pid" report)" spun_v2)
[ "$after" -gt "$before" ] && pass "the spinners' new calls run version 2 ($before -> $after)" ||
    fail_check "no spinner call gave version 2's result ($before -> $after)"

# The text output says the model too.
"$SUTURE" revert --attempts 80 --backoff-ms 100 --pid "$pid" >/dev/null ||
    fail_check "revert once the spinners are done"
run 0 "entry, as text" "$SUTURE" apply --attempts 1 --pid "$pid" "$DEMO_SPIN_ENTRY"
grep -q "consistency entry" <<<"$output" && pass "the text names the model" ||
    fail_check "text output: $output"
report=$(ask "$pid" report)
echo "$report"
check_eq "no spinner saw a wrong result" 0 "$(field "$report" spin_bad)"
check_eq "the workers never saw a wrong result" 0 "$(field "$report" bad)"
kill -0 "$pid" && pass "the target is alive" || fail_check "the target died"
finish
