#!/usr/bin/env bash
# suture is SIGKILLed while a patch callback runs inside the target, over and
# over (SUTURE_FAULT_TRIALS, default 120): the patch's pre_apply sleeps 100 ms
# in a raw nanosleep system call; each trial waits until a thread of the
# target is in that nanosleep, then kills suture a random 0-30 ms later.
# After every kill the target must run on: it answers, no thread is stopped
# or traced, no thread saw a wrong result, the callback's thread came back
# (its registers, signal mask and vector state put back by the call
# trampoline itself), and `suture status` explains the state from the region
# marker (inactive: mapped, no jump written; active if the kill came after
# the jumps). A revert then leaves it clean.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"
trials=${SUTURE_FAULT_TRIALS:-120}

start_target pid -- 4
# True while a thread of the target sits in nanosleep (syscall 35): only the
# callback makes that call in this target.
in_callback() { grep -qs '^35 ' /proc/"$pid"/task/*/syscall; }
stopped_threads() { awk '/^State:/ { print $2 }' /proc/"$pid"/task/*/status | grep -c '[tT]' || true; }

declare -A outcomes=()
landed_inside=0
for trial in $(seq "$trials"); do
    "$SUTURE" apply --pid "$pid" "$CALLBACKS_PATCH_SLEEPS" >/dev/null 2>&1 &
    injector=$!
    for wait in $(seq 400); do
        in_callback && break
        kill -0 "$injector" 2>/dev/null || break
        sleep 0.005
    done
    sleep "0.0$(printf '%02d' $((RANDOM % 30)))"
    if in_callback; then
        landed_inside=$((landed_inside + 1))
    fi
    kill -9 "$injector" 2>/dev/null || true
    wait "$injector" 2>/dev/null || true

    answered_after_kill "$pid" "$trial" report || break
    if [ "$(field "$answer" bad)" != 0 ]; then
        fail_check "trial $trial: a thread saw a wrong result: $answer"
        break
    fi
    traced=$(traced_threads "$pid")
    stopped=$(stopped_threads)
    if [ "$traced" != 0 ] || [ "$stopped" != 0 ]; then
        fail_check "trial $trial: $traced threads traced, $stopped stopped"
        break
    fi
    # The callback finishes on its own; then no thread is in it any more.
    for wait in $(seq 100); do in_callback || break; sleep 0.01; done
    if in_callback; then
        fail_check "trial $trial: a thread is still in the callback's nanosleep after 1 s"
        break
    fi
    json=$("$SUTURE" status --json --pid "$pid") || { fail_check "trial $trial: status failed"; break; }
    state=$(jq -r '.processes[0].patches | if length == 0 then "none" else map(.state) | join(",") end' <<<"$json")
    outcomes[$state]=$((${outcomes[$state]:-0} + 1))
    case "$(without_retired "$state")" in
    none | active | inactive | empty) ;;
    *)
        fail_check "trial $trial: unexpected state $state"
        break
        ;;
    esac
    if [ "$state" != none ]; then
        "$SUTURE" revert --pid "$pid" >/dev/null 2>&1 ||
            { fail_check "trial $trial: revert did not clean state $state up"; break; }
    fi
    again=$(ask "$pid" report | cut -d' ' -f1)
    if [ "$again" != generation=1 ]; then
        fail_check "trial $trial: after the revert: $again"
        break
    fi
done
for state in "${!outcomes[@]}"; do
    echo "after a kill, state $state: ${outcomes[$state]} times"
done
echo "the kill landed while the callback slept in $landed_inside of $trials trials"
[ "$landed_inside" -ge 100 ] && pass "at least 100 kills inside the callback" ||
    fail_check "only $landed_inside kills inside the callback"
"$SUTURE" revert --pid "$pid" >/dev/null 2>&1 || true
check_eq "finally version 1" generation=1 "$(ask "$pid" report | cut -d' ' -f1)"
check_eq "no wrong result in $trials trials" 0 "$(field "$(ask "$pid" report)" bad)"
check_eq "no thread traced" 0 "$(traced_threads "$pid")"
finish
