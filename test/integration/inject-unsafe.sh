#!/usr/bin/env bash
# A thread sleeping inside a function to be replaced blocks the apply: after
# its retries suture reports that thread and the frame, changing nothing.
# Once the thread has left the function, the same apply succeeds. (The patch
# is strict: the first apply gates the sleeper on its way out of
# demo_sleep_inside, but it does not return within the wait, and the tries
# after that see its redirected return: it stays in the way, as it should.)
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

start_target pid -- 2
check_eq "a thread goes to sleep inside demo_sleep_inside" sleeping "$(ask "$pid" "sleep 6000")"
sleep 0.2
started=$(date +%s%N)
run 9 "unsafe" "$SUTURE" apply --json --attempts 4 --backoff-ms 20 --pid "$pid" "$DEMO_PATCH_V2"
check_eq "unsafe: reason" unsafe "$(jq -r .error.reason <<<"$output")"
frames=$(jq -r '.error.blocking_threads[].frames[]' <<<"$output")
echo "$frames"
grep -q "demo_sleep_inside (libsuture-demo.so+" <<<"$frames" &&
    pass "the blocking frame is named" || fail_check "blocking frames: $frames"
check_eq "nothing applied" generation=1 "$(ask "$pid" report | cut -d' ' -f1)"
check_eq "the JSON lists each blocking thread once" \
    "$(jq '.error.blocking_threads | length' <<<"$output")" \
    "$(jq '[.error.blocking_threads[].tid] | unique | length' <<<"$output")"
# The text report names each blocking thread once (it used to print the
# list in the message and then again). The sleeper's thread, not whichever
# is first: a worker passing through a replaced function can be listed too,
# and be gone by the next run.
blocking_tid=$(jq -r '[.error.blocking_threads[]
    | select(any(.frames[]; contains("demo_sleep_inside")))][0].tid' <<<"$output")
run 9 "unsafe, as text" "$SUTURE" apply --attempts 2 --backoff-ms 20 --pid "$pid" "$DEMO_PATCH_V2"
echo "$errors"
check_eq "the text names blocking thread $blocking_tid once" 1 \
    "$(grep -c "^  thread $blocking_tid:" <<<"$errors")"

# The sleeper leaves after 6 s (long enough for the two refused applies
# above on a loaded machine, where each can take a second or two); an apply
# with enough patience succeeds.
# Only while it is still asleep must that take more than one try (on a
# loaded machine the runs above can outlast the sleep).
asleep_ms=$(( ($(date +%s%N) - started) / 1000000 + 200 ))
json=$("$SUTURE" apply --json --attempts 40 --backoff-ms 100 --pid "$pid" "$DEMO_PATCH_V2")
check_eq "applied once the thread left" demo-fix "$(jq -r .patch_id <<<"$json")"
if [ "$asleep_ms" -lt 5800 ]; then
    [ "$(jq -r .attempts <<<"$json")" -gt 1 ] && pass "it took more than one try" ||
        fail_check "applied at the first try although a thread was inside"
else
    echo "note: the sleeper had slept ${asleep_ms} ms of 6000 before this apply: not checking that it needed more than one try"
fi
check_eq "version 2 now" generation=2 "$(ask "$pid" report | cut -d' ' -f1)"
"$SUTURE" revert --pid "$pid" >/dev/null
check_eq "reverted" generation=1 "$(ask "$pid" report | cut -d' ' -f1)"
check_eq "no wrong result seen" 0 "$(field "$(ask "$pid" report)" bad)"
finish
