#!/usr/bin/env bash
# Targets that forbid writable+executable memory, the way hardened services
# run: the kernel's MDWE (prctl PR_SET_MDWE) and a seccomp filter like
# systemd's MemoryDenyWriteExecute=. suture maps its region read+exec and
# writes it through /proc/PID/mem, so both can be patched. And a target in
# its own PID and mount namespaces (a container), reached by its host PID.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

for restriction in --mdwe --seccomp-mdwe; do
    pid=""
    start_target pid -- 2 "$restriction"
    "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_V2" >/dev/null
    check_eq "$restriction: patched" generation=2 "$(ask "$pid" report | cut -d' ' -f1)"
    "$SUTURE" revert --pid "$pid" >/dev/null
    check_eq "$restriction: reverted" generation=1 "$(ask "$pid" report | cut -d' ' -f1)"
done

# A container stand-in: new PID and mount namespaces.
mkfifo "$scratch/ns.in"
unshare --pid --mount --fork --kill-child "$PATCH_TARGET" 2 <"$scratch/ns.in" >"$scratch/ns.out" 2>&1 &
started_pids+=($!)
exec {ns_in}>"$scratch/ns.in"
wait_for_line "$scratch/ns.out" "^ready " || { cat "$scratch/ns.out"; fail_check "namespaced target did not start"; exit 1; }
check_eq "inside its namespace the target is PID 1" "ready 1" "$(head -n 1 "$scratch/ns.out")"
host_pid=""
for candidate in $(pgrep -f "^$PATCH_TARGET 2\$"); do
    [ "$(readlink "/proc/$candidate/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] && host_pid=$candidate
done
[ -n "$host_pid" ] || { fail_check "namespaced target not found"; exit 1; }
started_pids+=("$host_pid")
"$SUTURE" apply --pid "$host_pid" "$DEMO_PATCH_V2" >/dev/null
echo report >&"$ns_in"
sleep 0.3
check_eq "namespaced target patched" generation=2 "$(tail -n 1 "$scratch/ns.out" | cut -d' ' -f1)"
"$SUTURE" revert --pid "$host_pid" >/dev/null
echo report >&"$ns_in"
sleep 0.3
check_eq "namespaced target reverted" generation=1 "$(tail -n 1 "$scratch/ns.out" | cut -d' ' -f1)"
finish
