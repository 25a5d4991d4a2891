#!/usr/bin/env bash
# A process that shares its memory with another process (a vfork() child
# that has not exec'ed yet, a clone(CLONE_VM) child) is refused, through
# either process, before anything is stopped or written: the other task
# would run the code being changed unstopped and unchecked. Neither process
# crashes or computes a wrong result, nothing is left stopped or traced, and
# once the child is gone the same apply and revert succeed. Last, vfork()
# children one after the other race with the checks: every apply returns,
# applied (in a gap between children) or refused.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"
: "${SHARED_MEMORY_TARGET:?}"

# untraced PID...: every task of each PID runs untraced (TracerPid 0) and is
# not in a stop (state t or T).
untraced() {
    local pid task tracer state
    for pid in "$@"; do
        for task in /proc/"$pid"/task/*; do
            tracer=$(awk '/^TracerPid:/ { print $2 }' "$task/status" 2>/dev/null) || continue
            state=$(awk '/^State:/ { print $2 }' "$task/status" 2>/dev/null) || continue
            if [ "${tracer:-0}" != 0 ] || [ "$state" = t ] || [ "$state" = T ]; then
                fail_check "task ${task##*/} of pid $pid: TracerPid $tracer, state $state"
                return
            fi
        done
    done
    pass "every task of pid $* runs untraced"
}

# refused DESCRIPTION EXPECTED-TEXT suture ARGS...: suture refuses with exit 22
# (busy) within 10 s, saying EXPECTED-TEXT; prints how long it took.
refused() {
    local description=$1 expected=$2 started elapsed_ms
    shift 2
    started=$(date +%s%N)
    run 22 "$description" timeout 10 "$SUTURE" "$@"
    elapsed_ms=$((($(date +%s%N) - started) / 1000000))
    # No thread is held longer than the whole refusal took (the stop's
    # bound is 1000 ms per pass; a refusal before any stop holds none).
    echo "$description: refused (busy) in $elapsed_ms ms, stop bound 1000 ms: $errors"
    grep -qF -- "$expected" <<<"$errors" && pass "$description: says '$expected'" ||
        fail_check "$description: message lacks '$expected': $errors"
}

# wait_reaped PID N: until the target has reaped N children (10 s at most).
wait_reaped() {
    local tries
    for tries in $(seq 100); do
        [ "$(field "$(ask "$1" report)" reaped)" = "$2" ] && return 0
        sleep 0.1
    done
}

start_program pid -- "$SHARED_MEMORY_TARGET" 2

# --- a vfork() child that calls the demo code without exec'ing -----------
child=$(ask "$pid" "vfork 4000" | cut -d' ' -f2)
[ -d "/proc/$child" ] && pass "vfork child $child runs" || { fail_check "no vfork child"; finish; }
refused "apply to the vfork parent" "shares its memory with pid $child, a vfork() child that has not exec'ed yet" \
    apply --pid "$pid" "$DEMO_PATCH_V2"
untraced "$pid" "$child"
refused "apply to the vfork child" "shares its memory with pid $pid, its parent, which waits in vfork()" \
    apply --pid "$child" "$DEMO_PATCH_V2"
untraced "$pid" "$child"
refused "revert through the vfork child" "its parent, which waits in vfork()" revert --pid "$child"
refused "revert of the vfork parent" "a vfork() child that has not exec'ed yet" revert --pid "$pid"
untraced "$pid" "$child"
report=$(ask "$pid" report)
echo "$report"
check_eq "nothing applied" 1 "$(field "$report" generation)"
check_eq "no wrong result in the parent" 0 "$(field "$report" bad)"
check_eq "no wrong result in the vfork child" 0 "$(field "$report" child_bad)"
[ "$(field "$report" child_calls)" -gt 0 ] && pass "the vfork child ran the demo code" ||
    fail_check "the vfork child made no call"

wait_reaped "$pid" 1
check_eq "the vfork child exited" 1 "$(field "$(ask "$pid" report)" reaped)"

# --- a clone(CLONE_VM) child --------------------------------------------
child=$(ask "$pid" "clone 4000" | cut -d' ' -f2)
[ -d "/proc/$child" ] && pass "clone child $child runs" || { fail_check "no clone child"; finish; }
refused "apply to the clone parent" "shares its memory with pid $child, a child made with clone(CLONE_VM)" \
    apply --pid "$pid" "$DEMO_PATCH_V2"
refused "apply to the clone child" "shares its memory with pid $pid, its parent" \
    apply --pid "$child" "$DEMO_PATCH_V2"
refused "revert through the clone child" "its parent" revert --pid "$child"
refused "revert of the clone parent" "a child made with clone(CLONE_VM)" revert --pid "$pid"
untraced "$pid" "$child"

# --- both children gone: the same operations succeed ----------------------
wait_reaped "$pid" 2
report=$(ask "$pid" report)
echo "$report"
check_eq "both children exited" 2 "$(field "$report" reaped)"
check_eq "neither child crashed" 0 "$(field "$report" crashed)"
run 0 "apply once alone" timeout 10 "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_V2"
check_eq "applied" 2 "$(field "$(ask "$pid" report)" generation)"
run 0 "revert once alone" timeout 10 "$SUTURE" revert --pid "$pid"
report=$(ask "$pid" report)
echo "$report"
check_eq "reverted" 1 "$(field "$report" generation)"
check_eq "no wrong result in the parent" 0 "$(field "$report" bad)"
check_eq "no wrong result in a child" 0 "$(field "$report" child_bad)"
kill -0 "$pid" && pass "the parent runs on" || fail_check "the parent died"
untraced "$pid"

# --- vfork() children one after the other, 3 ms each: the race -----------
# A vfork() can come between the check before the stop and the stop; the
# check in the stop (or the stop's bound, for a thread inside vfork()) has
# to catch it. Each apply must return, applied or refused; an apply that
# went through is reverted (retried while a child shares the memory).
check_eq "a vfork series starts" started "$(ask "$pid" "vforks 1000000 3")"
declare -A outcomes=()
slowest_ms=0
for round in $(seq 40); do
    started=$(date +%s%N)
    status=0
    timeout 10 "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_V2" >/dev/null 2>"$scratch/err" || status=$?
    elapsed_ms=$((($(date +%s%N) - started) / 1000000))
    [ "$elapsed_ms" -gt "$slowest_ms" ] && slowest_ms=$elapsed_ms
    if [ "$status" = 0 ]; then
        outcome=applied
        for tries in $(seq 200); do
            timeout 10 "$SUTURE" revert --pid "$pid" >/dev/null 2>&1 && break
        done
    elif [ "$status" = 22 ] && grep -q "shares its memory with pid" "$scratch/err"; then
        outcome=refused-shared
    elif [ "$status" = 22 ] && grep -q "did not stop within" "$scratch/err"; then
        outcome=refused-did-not-stop
        cat "$scratch/err"
    else
        outcome="unexpected-$status"
        cat "$scratch/err"
    fi
    outcomes[$outcome]=$((${outcomes[$outcome]:-0} + 1))
done
for outcome in "${!outcomes[@]}"; do
    echo "vfork series: $outcome ${outcomes[$outcome]} of 40"
done
echo "vfork series: slowest apply $slowest_ms ms"
unexpected=0
for outcome in "${!outcomes[@]}"; do
    [[ "$outcome" == unexpected-* ]] && unexpected=$((unexpected + outcomes[$outcome]))
done
check_eq "vfork series: every apply applied or refused within 10 s" 0 "$unexpected"
report=$(ask "$pid" report)
echo "$report"
check_eq "vfork series: reverted in the end" 1 "$(field "$report" generation)"
check_eq "vfork series: no wrong result in the parent" 0 "$(field "$report" bad)"
check_eq "vfork series: no wrong result in a child" 0 "$(field "$report" child_bad)"
check_eq "vfork series: no child crashed" 0 "$(field "$report" crashed)"
kill -0 "$pid" && pass "the parent runs on" || fail_check "the parent died"
untraced "$pid"
finish
