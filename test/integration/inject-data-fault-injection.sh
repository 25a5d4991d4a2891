#!/usr/bin/env bash
# The injector is SIGKILLed at random points of applies and reverts of a
# patch with data (a data region and shadow variables), over and over
# (SUTURE_FAULT_TRIALS, default 60): the first applies also map the
# process's shadow region. After every kill the target answers, no thread
# stays traced, and `suture status` explains the state; a following apply
# or revert brings it to a clean one. At the end the process has exactly one
# shadow region and shadows from 8 threads are counted exactly.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"
trials=${SUTURE_FAULT_TRIALS:-60}

shadow_regions() {
    local count=0 start
    for start in $(awk '$2 == "rw-p" && $5 == 0 && $6 == "" { split($1, r, "-"); print r[1] }' "/proc/$1/maps"); do
        [ "$(dd if="/proc/$1/mem" bs=8 count=1 skip=$((0x$start / 8)) status=none 2>/dev/null)" = SUTURESH ] &&
            count=$((count + 1))
    done
    echo "$count"
}

start_program pid -- "$DATA_TARGET"
declare -A outcomes=()
for trial in $(seq "$trials"); do
    state=$("$SUTURE" status --json --pid "$pid" | jq -r '.processes[0].patches[0].state // "none"')
    if [ "$state" = none ]; then
        "$SUTURE" apply --pid "$pid" "$DEMO_DATA_1" >/dev/null 2>&1 &
    else
        "$SUTURE" revert --pid "$pid" >/dev/null 2>&1 &
    fi
    injector=$!
    # Kill anywhere in the first 80 ms: on a loaded machine an apply takes
    # tens of ms to reach its stop, and a kill in 15 ms never got there.
    sleep "0.$(printf '%03d' $((RANDOM % 80)))"
    kill -9 "$injector" 2>/dev/null || true
    wait "$injector" 2>/dev/null || true

    answered_after_kill "$pid" "$trial" count || break
    untraced_after_kill "$pid" "$trial" || break
    json=$("$SUTURE" status --json --pid "$pid") || { fail_check "trial $trial: status failed"; break; }
    state=$(jq -r '.processes[0].patches | if length == 0 then "none" else map(.state) | join(",") end' <<<"$json")
    outcomes[$state]=$((${outcomes[$state]:-0} + 1))
    state=$(without_retired "$state")
    case "$state" in
    none | active) ;;
    empty)
        "$SUTURE" revert --pid "$pid" >/dev/null ||
            { fail_check "trial $trial: revert did not remove the empty region"; break; }
        ;;
    inactive | partial)
        "$SUTURE" apply --pid "$pid" "$DEMO_DATA_1" >/dev/null ||
            { fail_check "trial $trial: apply did not heal state $state"; break; }
        [ "$(field "$(ask "$pid" count)" count)" -ge 1 ] &&
            pass "trial $trial: healed from $state" || fail_check "trial $trial: not healed from $state"
        ;;
    *)
        fail_check "trial $trial: unexpected state $state"
        break
        ;;
    esac
done
for state in "${!outcomes[@]}"; do
    echo "after a kill, state $state: ${outcomes[$state]} times"
done
"$SUTURE" revert --pid "$pid" >/dev/null 2>&1 || true
check_eq "finally version 1" count=-1 "$(ask "$pid" count)"
check_eq "no code region left, explained or not" 0 \
    "$(awk '$2 == "r-xp" && $5 == 0 && $6 == ""' "/proc/$pid/maps" | wc -l)"
"$SUTURE" apply --pid "$pid" "$DEMO_DATA_1" >/dev/null
check_eq "applied once more: the static counts from 1" count=1 "$(ask "$pid" count)"
check_eq "at most one shadow region, whatever the kills did" 1 "$(shadow_regions "$pid")"
before=$(field "$(ask "$pid" counts)" sum)
check_eq "8 threads tag after the kills" "tagged=40000 failed=0" "$(ask "$pid" "tag 8 5")"
after=$(ask "$pid" counts)
check_eq "every object counted 40 more times" "objects=1000 sum=$((before + 40000))" \
    "$(cut -d' ' -f1-2 <<<"$after")"
check_eq "all objects alike" "$(field "$after" min)" "$(field "$after" max)"
"$SUTURE" revert --pid "$pid" >/dev/null
kill -0 "$pid" && pass "the target is alive" || fail_check "the target died"
finish
