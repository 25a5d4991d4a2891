#!/usr/bin/env bash
# The worst moment to kill the injector, made deterministic with gdb: the
# target's mmap has just returned, the injector has not filled the region,
# and one target thread still runs on borrowed registers at the system
# call's exit. After the kill the target must run on unharmed, `suture
# status` must explain the empty region (intent record), and `suture revert`
# must remove it.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"
command -v gdb >/dev/null || skip "gdb is not installed"

start_target pid -- 2
before=$(field "$(ask "$pid" report)" calls)
# RemoteMemory::write calls of an apply: the trampoline, the intent record,
# the thread's resume values, then the region (the one we stop at).
gdb -q -batch -ex 'break suture::RemoteMemory::write' -ex 'ignore 1 3' \
    -ex "run apply --pid $pid $DEMO_PATCH_V2" -ex 'bt 4' -ex 'kill' "$SUTURE" \
    >"$scratch/gdb.out" 2>&1 || true
# The fill is map_fixed_and_fill's (RemoteMapping.cpp), for map_region's
# code mapping.
if ! grep -qE 'map_region|map_fixed_and_fill' "$scratch/gdb.out"; then
    cat "$scratch/gdb.out"
    fail_check "gdb did not stop inside map_region's fill; the count of writes before it changed"
    finish
fi
pass "the injector was killed with the region mapped but not filled"

answer=$(ask "$pid" report)
[ -n "$answer" ] && pass "the target answers after the kill" || fail_check "the target is gone"
[ "$(field "$answer" calls)" -gt "$before" ] && pass "its threads keep running" ||
    fail_check "its threads stopped"
check_eq "no thread is left traced" 0 "$(traced_threads "$pid")"
status=$("$SUTURE" status --json --pid "$pid")
check_eq "status explains the region" empty "$(jq -r '.processes[0].patches[0].state' <<<"$status")"
"$SUTURE" revert --pid "$pid"
check_eq "revert removed it" 0 "$(awk '$2 == "r-xp" && $5 == 0 && $6 == ""' "/proc/$pid/maps" | wc -l)"
check_eq "status is clean" 0 "$("$SUTURE" status --json --pid "$pid" | jq '.processes[0].patches | length')"
"$SUTURE" apply --pid "$pid" "$DEMO_PATCH_V2" >/dev/null
check_eq "a new apply works" generation=2 "$(ask "$pid" report | cut -d' ' -f1)"
check_eq "no wrong result" 0 "$(field "$(ask "$pid" report)" bad)"
finish
