#!/usr/bin/env bash
# suture is SIGKILLed at random points of strict applies and reverts that
# catch busy threads at return gates (SUTURE_FAULT_TRIALS, default 100), in
# the demo pair's target whose 8 threads are nearly always inside the pair.
# After every kill the target must run on and compute right (a gate left
# behind lets its thread go by its TSC deadline), no thread may be traced,
# and `suture status` must explain what is left: the region by its marker
# or intent record, a gate page as a gate page. The next apply or revert
# heals it, and at the end nothing of suture is left in the process.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"
trials=${SUTURE_FAULT_TRIALS:-100}

start_program pid -- "$PAIR_TARGET" 8 300000
declare -A outcomes=()
gate_pages_seen=0
for trial in $(seq "$trials"); do
    state=$("$SUTURE" status --json --pid "$pid" | jq -r '.processes[0].patches[0].state // "none"')
    # Applies and reverts both meet the busy workers: an apply gates them,
    # a revert never waits for them.
    if [ "$state" = none ] || [ "$state" = retired ]; then
        "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_PAIR" >/dev/null 2>&1 &
    else
        "$SUTURE" revert --pid "$pid" >/dev/null 2>&1 &
    fi
    injector=$!
    # A gated apply takes some 100-400 ms here (the tries, the wait for the
    # gates): kill anywhere in it.
    sleep "0.$(printf '%03d' $((RANDOM % 450)))"
    kill -9 "$injector" 2>/dev/null || true
    wait "$injector" 2>/dev/null || true

    # Threads a killed suture left in their gates go on at the gates' TSC
    # deadline (1 s after the last gating): the calls must go on by then.
    before=$(field "$(ask "$pid" report)" calls)
    for _ in $(seq 30); do
        sleep 0.1
        answer=$(ask "$pid" report)
        [ -n "$answer" ] && [ "$(field "$answer" calls)" -gt "${before:-0}" ] && break
    done
    if [ -z "$answer" ] || [ "$(field "$answer" calls)" -le "${before:-0}" ]; then
        fail_check "trial $trial: the target does not run on after the kill ($answer)"
        grep -E 'State|TracerPid' /proc/"$pid"/task/*/status || echo "target gone"
        break
    fi
    if [ "$(field "$answer" bad)" != 0 ]; then
        fail_check "trial $trial: a call saw a mixed pair: $answer"
        break
    fi
    untraced_after_kill "$pid" "$trial" || break
    json=$("$SUTURE" status --json --pid "$pid") || { fail_check "trial $trial: status failed"; break; }
    pages=$(jq '.processes[0].gate_pages | length' <<<"$json")
    gate_pages_seen=$((gate_pages_seen + (pages > 0 ? 1 : 0)))
    # Every anonymous executable mapping must be explained: a region (its
    # marker or intent record) or a gate page.
    explained=$(jq '.processes[0].patches | length' <<<"$json")
    mapped=$(awk '$2 == "r-xp" && $5 == 0 && $6 == ""' "/proc/$pid/maps" | wc -l)
    if [ "$mapped" -gt $((explained + pages)) ]; then
        fail_check "trial $trial: $mapped anonymous code mappings, $explained regions and $pages gate pages explained"
        cat "/proc/$pid/maps" | awk '$5 == 0 && $6 == ""'
        break
    fi
    state=$(jq -r '.processes[0].patches | if length == 0 then "none" else map(.state) | join(",") end' <<<"$json")
    outcomes["$state, gate pages $pages"]=$((${outcomes["$state, gate pages $pages"]:-0} + 1))
    state=$(without_retired "$state")
    case "$state" in
    none | active) ;;
    empty)
        "$SUTURE" revert --pid "$pid" >/dev/null ||
            { fail_check "trial $trial: revert did not remove the empty region"; break; }
        ;;
    inactive | partial)
        "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_PAIR" >/dev/null ||
            { fail_check "trial $trial: apply did not heal state $state"; break; }
        check_eq "trial $trial: healed from $state" 2 "$(field "$(ask "$pid" report)" version)"
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
echo "a gate page was left after $gate_pages_seen of $trials kills"
# Gates of a killed suture let go within their 1 s deadline; then a revert
# (and the stop right after it) unmaps whatever no thread refers to. The
# workers pause between calls for it, so that no thread is still running in
# a retired region when those stops look.
sleep 1.2
"$SUTURE" revert --pid "$pid" >/dev/null 2>&1 || true
"$SUTURE" apply --pid "$pid" "$DEMO_PATCH_PAIR" >/dev/null 2>&1 || true
ask "$pid" "calm 5" >/dev/null
"$SUTURE" revert --pid "$pid" >/dev/null 2>&1 || true
check_eq "finally version 1" 1 "$(field "$(ask "$pid" report)" version)"
check_eq "no wrong result in $trials trials" 0 "$(field "$(ask "$pid" report)" bad)"
check_eq "no gate page left" 0 "$("$SUTURE" status --json --pid "$pid" | jq '.processes[0].gate_pages | length')"
check_eq "no region left, explained or not" 0 \
    "$(awk '$2 == "r-xp" && $5 == 0 && $6 == ""' "/proc/$pid/maps" | wc -l)"
finish
