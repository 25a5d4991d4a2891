#!/usr/bin/env bash
# An unwind that cannot be completed is never "safe". A thread sleeps in a
# function without unwind information while holding, on its stack, a pointer
# to where demo_compute leads (as a stale return address would): the scan
# sees the word, no unwinder can step past that frame, so apply must refuse
# as unsafe with "cannot unwind thread N" and change nothing; once the thread
# is gone it goes through. A revert never waits: with the pointer into the
# patch region it restores the bytes at once, and the region stays mapped,
# retired, until a later stop proves no thread refers to it. Then the same target in a chroot, in new
# mount and PID namespaces (the path in /proc/PID/maps is relative to *our*
# root there): every thread unwinds completely, and busy threads are patched
# and unpatched with every result right.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

start_target pid -- 2
check_eq "a thread sleeps without unwind information" sleeping "$(ask "$pid" "nounwind 3000")"
sleep 0.2
stacks=$("$SUTURE" stacks --json --pid "$pid")
check_eq "suture stacks: exactly one thread cannot be unwound" 1 \
    "$(jq '[.threads[] | select(.complete | not)] | length' <<<"$stacks")"
echo "incomplete: $(jq -r '.threads[] | select(.complete | not) | .incomplete_reason' <<<"$stacks")"
echo "frame counts: $(jq -r '[.threads[] | "\(.tid):\(.frames | length)\(if .complete then "" else "(incomplete)" end)"] | join(" ")' <<<"$stacks")"
run 9 "apply: unsafe" "$SUTURE" apply --json --attempts 3 --backoff-ms 20 --pid "$pid" "$DEMO_PATCH_V2"
check_eq "apply: reason" unsafe "$(jq -r .error.reason <<<"$output")"
grep -q "cannot unwind thread [0-9]*: frame #[0-9]* at 0x[0-9a-f]*: " <<<"$(jq -r .error.message <<<"$output")" &&
    pass "the message says which thread cannot be unwound and where" ||
    fail_check "message: $(jq -r .error.message <<<"$output")"
check_eq "the blocking thread's reason is in the document" 1 \
    "$(jq '[.error.blocking_threads[] | select(.cannot_unwind != null)] | length' <<<"$output")"
check_eq "nothing applied" generation=1 "$(ask "$pid" report | cut -d' ' -f1)"
sleep 3
json=$("$SUTURE" apply --json --pid "$pid" "$DEMO_PATCH_V2")
check_eq "applied once the thread left" demo-fix "$(jq -r .patch_id <<<"$json")"
check_eq "version 2 runs" generation=2 "$(ask "$pid" report | cut -d' ' -f1)"

# A revert never waits: the sleeping thread now holds a pointer into the
# region, yet the original bytes go back at once. The region stays mapped,
# retired, as long as no stop can prove that no thread refers to it; the
# next operation's stop unmaps it once the thread has left.
check_eq "a thread sleeps without unwind information, pointing into the region" sleeping \
    "$(ask "$pid" "nounwind 3000")"
sleep 0.2
json=$("$SUTURE" revert --json --attempts 3 --backoff-ms 20 --pid "$pid")
check_eq "reverted at once, busy thread or not" generation=1 "$(ask "$pid" report | cut -d' ' -f1)"
check_eq "the region stays while the thread may return into it" 0 \
    "$(jq -r '.reverted[0].released_regions' <<<"$json")"
check_eq "status shows it retired" retired \
    "$("$SUTURE" status --json --pid "$pid" | jq -r '.processes[0].patches[0].state')"
sleep 3
# `suture update` (what the daemon's rescan runs) is such an operation: a
# local feed of the shipped patchsets, none of which is for the demo library.
export SUTURE_FEED_ROOT_DIR=$scratch/var SUTURE_CONFIG_DIR=$scratch/etc
export SUTURE_FEED_CACHE=$scratch/cache SUTURE_STATE_DB=$scratch/state.db
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
run 0 "update" "$SUTURE" update --offline --json
check_eq "the update's stop unmapped it once the thread left" 1 "$(jq -r .released_regions <<<"$output")"
check_eq "no region left" 0 "$("$SUTURE" status --json --pid "$pid" | jq '.processes[0].patches | length')"
"$SUTURE" apply --pid "$pid" "$DEMO_PATCH_V2" >/dev/null
json=$("$SUTURE" revert --json --pid "$pid")
check_eq "an idle revert unmaps its region in its own stop" 1 "$(jq -r '.reverted[0].released_regions' <<<"$json")"

check_eq "no wrong result seen" 0 "$(field "$(ask "$pid" report)" bad)"

# The target chrooted into a tree of its own files, in new mount and PID
# namespaces: the maps show paths under that tree, relative to our root.
jail=$scratch/jail
mkdir -p "$jail/tmp"
libraries=$(for program in "$PATCH_TARGET" /usr/bin/env; do
    ldd "$program" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'
done | sort -u)
for file in "$PATCH_TARGET" /usr/bin/env $libraries; do
    mkdir -p "$jail$(dirname "$file")"
    cp -L "$file" "$jail$file"
done
chmod -R a+rX "$jail"
# No /proc in the jail, so ld.so cannot expand $ORIGIN: name the directory.
start_in_rootfs jailed "$jail" LD_LIBRARY_PATH="$(dirname "$PATCH_TARGET")" -- "$PATCH_TARGET" 4
grep -q "$jail" "/proc/$jailed/maps" && pass "the jailed target's maps name files under $jail" ||
    fail_check "the jailed target's maps do not show the jail's prefix"
stacks=$("$SUTURE" stacks --json --pid "$jailed")
check_eq "jailed: every thread unwinds completely" 0 \
    "$(jq '[.threads[] | select(.complete | not)] | length' <<<"$stacks")"
check_eq "jailed: every thread has more than 2 frames" 0 \
    "$(jq '[.threads[] | select((.frames | length) <= 2)] | length' <<<"$stacks")"
echo "jailed frame counts: $(jq -r '[.threads[] | "\(.tid):\(.frames | length)"] | join(" ")' <<<"$stacks")"
applied=0
reverted=0
for _ in $(seq 20); do
    "$SUTURE" apply --attempts 40 --pid "$jailed" "$DEMO_PATCH_V2" >/dev/null && applied=$((applied + 1))
    "$SUTURE" revert --attempts 40 --pid "$jailed" >/dev/null && reverted=$((reverted + 1))
done
check_eq "jailed, 4 busy threads: applies" 20 "$applied"
check_eq "jailed, 4 busy threads: reverts" 20 "$reverted"
report=$(ask "$jailed" report)
check_eq "jailed: alive, no wrong result" 0 "$(field "$report" bad)"
[ "$(field "$report" calls)" -gt 0 ] && pass "jailed workers ran $(field "$report" calls) calls" ||
    fail_check "jailed workers made no calls"
finish
