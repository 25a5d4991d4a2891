#!/usr/bin/env bash
# Targets that go away while suture applies to them: each exits, exec's
# another program (or itself again) or becomes a zombie a random 0-20 ms
# after the apply starts. Every apply must end truthfully: applied (it won
# the race), 4 "no such process", or 10 saying the process exited or
# exec'ed; an apply that started after an exec into a program without the
# library may say 6 "does not map". Never "bad patch file", "permission
# denied", an import no object defines, or an I/O error. Afterwards no
# surviving process is left stopped or traced. Last, a process another
# tracer holds (a debugger's stand-in) is refused naming that tracer.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"
: "${VANISHING_TARGET:?}" "${TRACE_HOLDER:?}"
trials=${SUTURE_RACE_TRIALS:-100}

# untraced PID: no task of PID (if it still runs) is traced or in a stop;
# prints the offending task and returns 1 otherwise.
untraced() {
    local task tracer state
    for task in /proc/"$1"/task/*; do
        tracer=$(awk '/^TracerPid:/ { print $2 }' "$task/status" 2>/dev/null) || continue
        state=$(awk '/^State:/ { print $2 }' "$task/status" 2>/dev/null) || continue
        if [ "${tracer:-0}" != 0 ] || [ "$state" = t ] || [ "$state" = T ]; then
            echo "task ${task##*/} of pid $1: TracerPid $tracer, state $state"
            return 1
        fi
    done
}

# judge MODE STATUS STDERR: the outcome name if STATUS and its message are
# truthful for MODE, else "untruthful" (a hang, killed by timeout, is 124).
judge() {
    local mode=$1 status=$2 message=$3 claim
    # What the error claims; "(what failed then: …)" after it only quotes
    # the read that failed on the way.
    claim=${message%%(what failed then:*}
    if grep -qiE "bad patch|permission denied|not permitted|defines|no loaded object|Input/output|No child" <<<"$claim"; then
        echo untruthful
        return
    fi
    case "$status" in
    0) echo applied ;;
    4) grep -q "no such process" <<<"$message" && echo no-such-process || echo untruthful ;;
    10)
        if grep -q "exec'ed" <<<"$message"; then
            [[ "$mode" == exec-* ]] && echo "died-exec'ed" || echo untruthful
        elif grep -q "exited during the operation\|exited while being stopped" <<<"$message"; then
            echo died-exited
        else
            echo untruthful
        fi
        ;;
    6)
        # Only after an exec into a program without the library, before the
        # apply began (one that began before would say "exec'ed").
        [[ "$mode" == exec-true || "$mode" == exec-sleep ]] &&
            grep -q "does not map libsuture-demo.so" <<<"$message" && echo not-mapped-after-exec ||
            echo untruthful
        ;;
    22)
        # An exec of the same program before the apply began, caught while
        # its dynamic loader kept mapping libraries for all of the 20 ms suture waits.
        [[ "$mode" == exec-* ]] && grep -q "dynamic loader kept loading" <<<"$message" &&
            echo loader-busy-after-exec || echo untruthful
        ;;
    *) echo untruthful ;;
    esac
}

# The delays count from when suture starts working on the target: its own
# start (the engine's build index) takes some tens of ms, measured here on
# a process that does not exist.
startup_ms=1000
for _ in 1 2 3; do
    started=$(date +%s%N)
    "$SUTURE" apply --pid 1073741 "$DEMO_PATCH_V2" >/dev/null 2>&1 || true
    elapsed_ms=$((($(date +%s%N) - started) / 1000000))
    [ "$elapsed_ms" -lt "$startup_ms" ] && startup_ms=$elapsed_ms
done
echo "race: suture starts in $startup_ms ms; each target goes $startup_ms + 0-20 ms after the apply"

modes=(exit exec-true exec-sleep exec-self zombie)
declare -A outcomes=()
untruthful=0
left_held=0
slowest_ms=0
for trial in $(seq "$trials"); do
    mode=${modes[$((trial % ${#modes[@]}))]}
    delay=$((RANDOM % 21))
    start_program launcher -- "$VANISHING_TARGET" "$mode"
    pid=$(sed -n 's/^ready //p' "${target_out[$launcher]}" | head -n 1)
    started=$(date +%s%N)
    echo "go $((startup_ms + delay))" >&"${target_fd[$launcher]}"
    status=0
    timeout 20 "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_V2" >"$scratch/out" 2>"$scratch/err" ||
        status=$?
    elapsed_ms=$((($(date +%s%N) - started) / 1000000))
    [ "$elapsed_ms" -gt "$slowest_ms" ] && slowest_ms=$elapsed_ms
    outcome=$(judge "$mode" "$status" "$(cat "$scratch/err")")
    outcomes["$mode $status $outcome"]=$((${outcomes["$mode $status $outcome"]:-0} + 1))
    [ -n "${SUTURE_RACE_VERBOSE:-}" ] && echo "trial $trial ($mode after $delay ms): exit $status in $elapsed_ms ms: $(cat "$scratch/err")"
    if [ "$outcome" = untruthful ]; then
        untruthful=$((untruthful + 1))
        echo "trial $trial ($mode after $delay ms): exit $status: $(cat "$scratch/err")"
    fi
    # Whatever still runs (the target, what it exec'ed, the zombie's
    # parent) runs free.
    for survivor in "$pid" "$launcher"; do
        untraced "$survivor" || left_held=$((left_held + 1))
    done
    kill -9 "$launcher" "$pid" 2>/dev/null || true
    wait "$launcher" 2>/dev/null || true
done
for outcome in "${!outcomes[@]}"; do
    echo "race: $outcome: ${outcomes[$outcome]} of $trials"
done | sort
echo "race: slowest apply $slowest_ms ms"
check_eq "every apply of $trials ended truthfully" 0 "$untruthful"
check_eq "no process was left stopped or traced" 0 "$left_held"

# --- a process another tracer holds ----------------------------------------
start_program target -- "$VANISHING_TARGET" idle
start_program holder -- "$TRACE_HOLDER" "$target"
check_eq "the trace holder holds the target" "$holder" \
    "$(awk '/^TracerPid:/ { print $2 }' "/proc/$target/status")"
for verb in apply revert stacks; do
    case "$verb" in
    apply) args=(apply --pid "$target" "$DEMO_PATCH_V2") ;;
    revert) args=(revert --pid "$target") ;;
    stacks) args=(stacks --pid "$target") ;;
    esac
    run 22 "$verb of a traced process: busy" "$SUTURE" "${args[@]}"
    echo "$errors"
    grep -qF "pid $target is already traced by pid $holder (trace-holder)" <<<"$errors" &&
        pass "$verb: the tracer is named" || fail_check "$verb: the tracer is not named: $errors"
done
run 22 "the refusal in JSON" "$SUTURE" apply --json --pid "$target" "$DEMO_PATCH_V2"
check_eq "its reason" busy "$(jq -r .error.reason <<<"$output")"

kill "$holder"
wait "$holder" 2>/dev/null || true
run 0 "once the tracer has gone, the apply succeeds" "$SUTURE" apply --pid "$target" "$DEMO_PATCH_V2"
untraced "$target" && pass "the target runs untraced" || fail_check "the target is held"
finish
