#!/usr/bin/env bash
# The kill points an apply's staging adds (Injector.cpp, step 0b: the region
# mapped and filled with one thread held, before the all-threads stop),
# made deterministic with gdb. At each the injector is killed; the target
# must run on unharmed and untraced, `suture status` must explain what is
# left, and the next operation must leave no region behind but its own:
#  staged    the region filled, marked retired, the all-threads stop not begun
#  taken     in the stop, the region taken over (its retired mark about to go)
#  no-jump   in the stop, the region in use, no jump written yet
#  one-jump  in the stop, one of the six jumps written
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"
command -v gdb >/dev/null || skip "gdb is not installed"

# The regions suture mapped in `pid`: anonymous r-xp mappings.
regions() { awk '$2 == "r-xp" && $5 == 0 && $6 == ""' "/proc/$1/maps" | wc -l; }
states() {
    "$SUTURE" status --json --pid "$1" |
        jq -r '.processes[0].patches | if length == 0 then "none" else map(.state) | join(",") end'
}

# kill_at NAME PID GDB-BREAK-ARGS…: runs `suture apply` under gdb, kills it
# at the break point, prints gdb's output to $scratch/NAME.gdb. Without
# return gates: a gate page's writes (when a worker is caught inside the
# patched code, as happens on a loaded host) would shift the counted writes.
kill_at() {
    local name=$1 pid=$2
    shift 2
    gdb -q -batch "$@" -ex "run apply --no-return-gates --pid $pid $DEMO_PATCH_V2" -ex 'bt 12' \
        -ex 'kill' "$SUTURE" \
        >"$scratch/$name.gdb" 2>&1 || true
}

# RemoteMemory::write calls of a staged apply: staging writes the
# trampoline, the intent record, the held thread's resume values, the region
# and the trampoline site's bytes back (5); the stop then clears the region's
# retired mark (6th) and writes the six jumps (7th to 12th).
declare -A ignore=([taken]=5 [no-jump]=6 [one-jump]=7)
declare -A where=([staged]='StoppedProcess::stop' [taken]='mark_in_use|region_in_stop'
    [no-jump]='write_jumps' [one-jump]='write_jumps')
declare -A expect=([staged]=retired [taken]=retired [no-jump]=inactive [one-jump]=partial)

for point in staged taken no-jump one-jump; do
    start_target pid -- 4
    before=$(field "$(ask "$pid" report)" calls)
    if [ "$point" = staged ]; then
        kill_at "$point" "$pid" -ex 'break suture::StoppedProcess::stop'
    else
        kill_at "$point" "$pid" -ex 'break suture::RemoteMemory::write' -ex "ignore 1 ${ignore[$point]}"
    fi
    if ! grep -qE "${where[$point]}" "$scratch/$point.gdb"; then
        cat "$scratch/$point.gdb"
        fail_check "$point: gdb did not stop where expected (${where[$point]}); the order of writes changed"
        kill "$pid"
        continue
    fi
    pass "$point: the injector was killed there"
    answer=$(ask "$pid" report)
    [ -n "$answer" ] && [ "$(field "$answer" calls)" -gt "$before" ] &&
        pass "$point: the target runs on" || fail_check "$point: the target stopped or is gone"
    check_eq "$point: no thread is left traced" 0 "$(traced_threads "$pid")"
    check_eq "$point: status explains the region" "${expect[$point]}" "$(states "$pid")"
    check_eq "$point: no wrong result" 0 "$(field "$(ask "$pid" report)" bad)"
    # The next apply heals or replaces it and releases what is left; a
    # revert then leaves nothing mapped.
    "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_V2" >/dev/null || fail_check "$point: the next apply failed"
    check_eq "$point: the next apply works" generation=2 "$(ask "$pid" report | cut -d' ' -f1)"
    "$SUTURE" revert --pid "$pid" >/dev/null || fail_check "$point: the revert failed"
    for _ in 1 2 3 4 5; do
        [ "$(states "$pid")" = none ] && break
        "$SUTURE" revert --pid "$pid" >/dev/null 2>&1 || true  # releases what is still retired
    done
    check_eq "$point: status is clean after a revert" none "$(states "$pid")"
    check_eq "$point: no region is left mapped" 0 "$(regions "$pid")"
    check_eq "$point: still no wrong result" 0 "$(field "$(ask "$pid" report)" bad)"
    kill "$pid"
done
finish
