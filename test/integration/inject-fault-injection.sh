#!/usr/bin/env bash
# The injector is SIGKILLed at random points of apply and revert, over and
# over (SUTURE_FAULT_TRIALS, default 120). After every kill the target must
# run on (answer, not stopped, not traced, no wrong result), and `suture
# status` must explain its state from the region marker (or, for a kill right
# after the mmap, from the intent record); a following apply or revert must
# bring it to a clean state.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"
trials=${SUTURE_FAULT_TRIALS:-120}

start_target pid -- 4
declare -A outcomes=()
for trial in $(seq "$trials"); do
    state=$("$SUTURE" status --json --pid "$pid" | jq -r '.processes[0].patches[0].state // "none"')
    if [ "$state" = none ]; then
        "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_V2" >/dev/null 2>&1 &
    else
        "$SUTURE" revert --pid "$pid" >/dev/null 2>&1 &
    fi
    injector=$!
    sleep "0.$(printf '%03d' $((RANDOM % 15)))"
    kill -9 "$injector" 2>/dev/null || true
    wait "$injector" 2>/dev/null || true

    answered_after_kill "$pid" "$trial" report || break
    if [ "$(field "$answer" bad)" != 0 ]; then
        fail_check "trial $trial: a thread saw a wrong result: $answer"
        break
    fi
    untraced_after_kill "$pid" "$trial" || break
    json=$("$SUTURE" status --json --pid "$pid") || { fail_check "trial $trial: status failed"; break; }
    state=$(jq -r '.processes[0].patches | if length == 0 then "none" else map(.state) | join(",") end' <<<"$json")
    outcomes[$state]=$((${outcomes[$state]:-0} + 1))
    # A retired region (a revert or an upgrade killed between its stop and
    # the second stop that unmaps the region) is explained by its marker and
    # unmapped by the next stop: judge the state without it.
    state=$(without_retired "$state")
    case "$state" in
    none | active) ;;
    empty)
        # An apply killed right after the target's mmap: explained by its
        # intent record; revert removes the empty region.
        "$SUTURE" revert --pid "$pid" >/dev/null ||
            { fail_check "trial $trial: revert did not remove the empty region"; break; }
        ;;
    inactive | partial)
        # Explained by the marker; an apply of the same patch heals it.
        "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_V2" >/dev/null ||
            { fail_check "trial $trial: apply did not heal state $state"; break; }
        check_eq "trial $trial: healed from $state" generation=2 "$(ask "$pid" report | cut -d' ' -f1)"
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
check_eq "finally version 1" generation=1 "$(ask "$pid" report | cut -d' ' -f1)"
check_eq "no wrong result in $trials trials" 0 "$(field "$(ask "$pid" report)" bad)"
check_eq "no region left, explained or not" 0 \
    "$(awk '$2 == "r-xp" && $5 == 0 && $6 == ""' "/proc/$pid/maps" | wc -l)"
finish
