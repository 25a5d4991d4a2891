#!/usr/bin/env bash
# A multithreaded process linked against libsuture-demo gets version 2 of
# five functions (one calling a static helper of the library, one reading a
# global variable of the library, one calling libc and libcrypto) and back,
# then level 2 replacing level 1 in one stop, all in the same process, while
# its threads keep calling them and checking every result.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

start_target pid -- 4
v1="generation=1 compute=10 helper=120 global=40 libc=12346"
v2="generation=2 compute=15 helper=1200 global=1040 libc=54322"
v3="generation=3 compute=20 helper=120 global=40 libc=12346"
results() { ask "$pid" report | cut -d' ' -f1-5; }

check_eq "before: version 1" "$v1" "$(results)"

json=$("$SUTURE" apply --json --pid "$pid" "$DEMO_PATCH_V2")
check_eq "apply: patch id" "demo-fix" "$(jq -r .patch_id <<<"$json")"
check_eq "apply: functions" 6 "$(jq -r .functions <<<"$json")"
check_eq "after apply: version 2 from every function" "$v2" "$(results)"

status=$("$SUTURE" status --json --pid "$pid")
check_eq "status reads the marker: patch" "demo-fix 1 active 6" \
    "$(jq -r '.processes[0].patches[0] | "\(.patch_id) \(.level) \(.state) \(.jumps_in_place)"' <<<"$status")"

json=$("$SUTURE" apply --json --pid "$pid" "$DEMO_PATCH_V2")
check_eq "applying again changes nothing" true "$(jq -r .already_applied <<<"$json")"

json=$("$SUTURE" apply --json --pid "$pid" "$DEMO_PATCH_V3")
check_eq "level 2 replaced level 1" "2 1" "$(jq -r '"\(.level) \(.replaced_level)"' <<<"$json")"
check_eq "after the upgrade: level 2 functions, the rest original" "$v3" "$(results)"
status=$("$SUTURE" status --json --pid "$pid")
check_eq "one region left after the upgrade" 1 "$(jq '.processes[0].patches | length' <<<"$status")"
run 12 "older level refused" "$SUTURE" apply --pid "$pid" "$DEMO_PATCH_V2"

json=$("$SUTURE" revert --json --pid "$pid" demo-fix)
check_eq "revert: what" "demo-fix 2" "$(jq -r '.reverted[0] | "\(.patch_id) \(.level)"' <<<"$json")"
check_eq "after revert: version 1" "$v1" "$(results)"
status=$("$SUTURE" status --json --pid "$pid")
check_eq "no patch left" 0 "$(jq '.processes[0].patches | length' <<<"$status")"
check_eq "no suture region left in the maps" 0 \
    "$(awk '$2 == "r-xp" && $5 == 0 && $6 == ""' "/proc/$pid/maps" | wc -l)"

check_eq "the threads never saw a wrong result" 0 "$(field "$(ask "$pid" report)" bad)"
kill -0 "$pid" && pass "the target is alive" || fail_check "the target died"
finish
