#!/usr/bin/env bash
# A strict patch on two functions that must change together (the demo pair)
# in a process whose 8 threads spend nearly all their time inside them.
# Backing off alone never finds a stop with every thread outside: the apply
# fails `unsafe`. With return gates each busy thread is caught on its way
# out, the pair switches while nobody is inside, and no call ever sees a
# mixed pair. Afterwards no thread is traced or stopped, no gate page is
# left, and the revert works the same way.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

stopped_threads() { grep -h '^State:' /proc/"$1"/task/*/status | grep -c -E 't \(tracing stop\)|T \(stopped\)' || true; }
gate_pages() { "$SUTURE" status --json --pid "$1" | jq '.processes[0].gate_pages | length'; }

start_program pid -- "$PAIR_TARGET" 8 300000
sleep 0.5
check_eq "the pair is at version 1" 1 "$(field "$(ask "$pid" report)" version)"

# 1. The old way: back off and retry. Some thread is always inside the pair.
run 9 "without return gates: unsafe" "$SUTURE" apply --json --no-return-gates --attempts 8 \
    --pid "$pid" "$DEMO_PATCH_PAIR"
check_eq "without return gates: reason" unsafe "$(jq -r .error.reason <<<"$output")"
check_eq "without return gates: still version 1" 1 "$(field "$(ask "$pid" report)" version)"

# 2. With return gates.
before=$(field "$(ask "$pid" report)" min_calls)
run 0 "strict apply with return gates" "$SUTURE" apply --json --pid "$pid" "$DEMO_PATCH_PAIR"
echo "$output" | jq -c '{attempts, gated_threads, gate_rounds, stopped_us, released_regions}'
check_eq "applied" demo-pair "$(jq -r .patch_id <<<"$output")"
gated=$(jq -r .gated_threads <<<"$output")
[ "$gated" -ge 1 ] && pass "$gated threads caught at gates" || fail_check "no thread was gated: $output"
check_eq "version 2 now" 2 "$(field "$(ask "$pid" report)" version)"
check_eq "no thread traced after the apply" 0 "$(traced_threads "$pid")"
check_eq "no thread stopped after the apply" 0 "$(stopped_threads "$pid")"
text=$("$SUTURE" status --pid "$pid")
echo "$text" | grep -E "^patch|gate page" || true
# The stop right after the apply unmaps the gate page unless a released
# thread was still on its way out of its gate; then a later stop does (the
# end of this test checks that nothing is left).
pages=$("$SUTURE" status --json --pid "$pid" | jq -c '[.processes[0].gate_pages[] | .released]')
case "$pages" in
'[]') pass "the gate page went in the stop after the apply" ;;
'[true]') pass "the gate page is still mapped, released, for a later stop" ;;
*) fail_check "gate pages after the apply: $pages" ;;
esac

# Run on with the new pair until every thread made 1000 more calls.
for _ in $(seq 120); do
    [ "$(field "$(ask "$pid" report)" min_calls)" -ge $((before + 1000)) ] && break
    sleep 0.5
done
answer=$(ask "$pid" report)
echo "$answer"
[ "$(field "$answer" min_calls)" -ge $((before + 1000)) ] &&
    pass "every thread made at least 1000 calls since" || fail_check "too few calls: $answer"

# 3. The revert, under the busy workers: it never waits. A thread still in
# the new sum finishes it with the new step (the patch's own calls go to its
# replacements, not through the old entry), so no call sees a mixed pair;
# the region stays retired until no thread is in it.
run 0 "revert under busy threads, at the first try" "$SUTURE" revert --json --attempts 1 --pid "$pid"
check_eq "version 1 again" 1 "$(field "$(ask "$pid" report)" version)"
before=$(field "$(ask "$pid" report)" min_calls)
for _ in $(seq 60); do
    [ "$(field "$(ask "$pid" report)" min_calls)" -ge $((before + 100)) ] && break
    sleep 0.5
done
check_eq "no call saw a mixed pair across the busy revert" 0 "$(field "$(ask "$pid" report)" bad)"
# 4. Applied again, as text.
run 0 "strict apply again" "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_PAIR"
echo "$output"
grep -q "return gates" <<<"$output" && pass "the text report tells the gating" ||
    fail_check "text report: $output"
# The workers pause between calls so that the revert's stops find no thread
# in the region and unmap it: nothing of suture may be left at the end.
ask "$pid" "calm 2" >/dev/null
run 0 "revert again" "$SUTURE" revert --pid "$pid"
answer=$(ask "$pid" report)
echo "$answer"
check_eq "no call saw a mixed pair" 0 "$(field "$answer" bad)"
check_eq "no thread traced at the end" 0 "$(traced_threads "$pid")"
check_eq "no gate page left" 0 "$(gate_pages "$pid")"
check_eq "no suture mapping left" 0 "$(awk '$2 == "r-xp" && $5 == 0 && $6 == ""' "/proc/$pid/maps" | wc -l)"
finish
