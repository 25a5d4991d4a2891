#!/usr/bin/env bash
# Patches with data (docs/patch-format.md, "Data region" and "Shadow
# region"): demo-data level 1 replaces four functions of libsuture-demo with
# code that counts calls in a new static variable (its data region, read+
# write, never executable) and keeps a count per object in shadow variables,
# which 8 threads update at once. Apply/revert cycles start the static
# afresh and keep the shadows; level 2 gets fresh statics and the same
# shadows; a free and a reuse; then all of it under MDWE.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

# The maps line of the mapping that starts at ADDRESS (0x… hex) in PID.
maps_line_at() { awk -v start="$(printf '%x' "$2")" '{ split($1, r, "-"); if (r[1] == start) print }' "/proc/$1/maps"; }
# The permissions of the mapping that starts at ADDRESS in PID.
perms_at() { maps_line_at "$1" "$2" | awk '{ print $2 }'; }
# The end (decimal) of the mapping that starts at ADDRESS in PID.
end_at() { printf '%d' "0x$(maps_line_at "$1" "$2" | awk '{ split($1, r, "-"); print r[2] }')"; }
# How many mappings of PID are writable and executable at once.
wx_mappings() { awk '$2 ~ /w/ && $2 ~ /x/' "/proc/$1/maps" | wc -l; }
# How many shadow regions PID maps: anonymous rw-p mappings whose first
# bytes are the magic SUTURESH.
shadow_regions() {
    local count=0 start
    for start in $(awk '$2 == "rw-p" && $5 == 0 && $6 == "" { split($1, r, "-"); print r[1] }' "/proc/$1/maps"); do
        [ "$(dd if="/proc/$1/mem" bs=8 count=1 skip=$((0x$start / 8)) status=none 2>/dev/null)" = SUTURESH ] &&
            count=$((count + 1))
    done
    echo "$count"
}
count_of() { field "$(ask "$1" count)" count; }

start_program pid -- "$DATA_TARGET"
check_eq "before: version 1 counts nothing" -1 "$(count_of "$pid")"
check_eq "before: version 1 tags nothing" "tagged=8000 failed=8000" "$(ask "$pid" "tag 8 1")"

# 1. Level 1: a code region r-x and right after it its data region rw-.
json=$("$SUTURE" apply --json --pid "$pid" "$DEMO_DATA_1")
check_eq "apply: functions" 4 "$(jq -r .functions <<<"$json")"
code=$(jq -r .region_address <<<"$json")
check_eq "the code region is read+exec, not writable" r-xp "$(perms_at "$pid" "$code")"
data=$(end_at "$pid" "$code")
check_eq "the data region right after it is read+write, not executable" rw-p "$(perms_at "$pid" "$data")"
status=$("$SUTURE" status --json --pid "$pid")
check_eq "status reads the data region from the marker" "$data" \
    "$(printf '%d' "$(jq -r '.processes[0].patches[0].data_address' <<<"$status")")"
check_eq "no mapping is writable and executable" 0 "$(wx_mappings "$pid")"
check_eq "status lists the shadow region" 0 \
    "$(jq -r '.processes[0].shadow_region.live' <<<"$status")"
check_eq "one shadow region" 1 "$(shadow_regions "$pid")"
check_eq "the new static counts: 1" 1 "$(count_of "$pid")"
check_eq "the new static counts: 2" 2 "$(count_of "$pid")"
check_eq "the new static counts: 3" 3 "$(count_of "$pid")"

# 2. Shadow variables from 8 threads at once: 1000 objects, 50 rounds each.
tag_started=$(date +%s%N)
check_eq "8 threads tag 1000 objects 50 times" "tagged=400000 failed=0" "$(ask "$pid" "tag 8 50")"
echo "figure: 400000 shadow get_or_alloc calls from 8 threads in $(( ($(date +%s%N) - tag_started) / 1000000 )) ms (with the command round trip; not asserted)"
check_eq "every object counted exactly 400 times (no lost or duplicated shadow)" \
    "objects=1000 sum=400000 min=400 max=400" "$(ask "$pid" counts)"
status=$("$SUTURE" status --json --pid "$pid")
check_eq "status: 1000 shadows attached, in 65536 slots" "1000 65536" \
    "$(jq -r '.processes[0].shadow_region | "\(.live) \(.slots)"' <<<"$status")"
echo "shadow records made: $(jq -r '.processes[0].shadow_region.allocations' <<<"$status") (1000 keys; more: records lost to races on one key)"

# 3. Apply/revert cycles: the static starts afresh, the shadows stay.
for cycle in 1 2 3 4 5; do
    "$SUTURE" revert --json --pid "$pid" demo-data >/dev/null
    check_eq "cycle $cycle: after revert, version 1" -1 "$(count_of "$pid")"
    check_eq "cycle $cycle: the data region went with the code region" "" "$(maps_line_at "$pid" "$data")"
    json=$("$SUTURE" apply --json --pid "$pid" "$DEMO_DATA_1")
    code=$(jq -r .region_address <<<"$json")
    data=$(end_at "$pid" "$code")
    check_eq "cycle $cycle: a fresh data region, rw-p" rw-p "$(perms_at "$pid" "$data")"
    check_eq "cycle $cycle: the static counts from 1 again" 1 "$(count_of "$pid")"
    check_eq "cycle $cycle: the shadows survived" "objects=1000 sum=400000 min=400 max=400" \
        "$(ask "$pid" counts)"
done
check_eq "still one shadow region" 1 "$(shadow_regions "$pid")"

# 4. Level 2 replaces level 1: fresh statics (level 2 counts 1002, 1004 …),
# the same shadows.
json=$("$SUTURE" apply --json --pid "$pid" "$DEMO_DATA_2")
check_eq "level 2 replaced level 1" "2 1" "$(jq -r '"\(.level) \(.replaced_level)"' <<<"$json")"
check_eq "level 2's static starts afresh" 1002 "$(count_of "$pid")"
check_eq "level 2 sees level 1's shadows" "objects=1000 sum=400000 min=400 max=400" \
    "$(ask "$pid" counts)"
check_eq "level 2 tags on" "tagged=80000 failed=0" "$(ask "$pid" "tag 8 10")"
check_eq "counts after level 2's tags" "objects=1000 sum=480000 min=480 max=480" \
    "$(ask "$pid" counts)"

# 5. Free, then reuse: a freed shadow comes back zeroed.
check_eq "every shadow freed" "untagged=1000 failed=0" "$(ask "$pid" untag)"
check_eq "no shadow left" "objects=0 sum=0 min=0 max=0" "$(ask "$pid" counts)"
check_eq "tag again after the free" "tagged=8000 failed=0" "$(ask "$pid" "tag 8 1")"
check_eq "new shadows start from zero" "objects=1000 sum=8000 min=8 max=8" "$(ask "$pid" counts)"

"$SUTURE" revert --json --pid "$pid" demo-data >/dev/null
check_eq "after the last revert: version 1" -1 "$(count_of "$pid")"
check_eq "no suture code region left" 0 \
    "$(awk '$2 == "r-xp" && $5 == 0 && $6 == ""' "/proc/$pid/maps" | wc -l)"
check_eq "the shadow region stays for the process's life" 1 "$(shadow_regions "$pid")"
kill -0 "$pid" && pass "the target is alive" || fail_check "the target died"

# 6. Under MDWE (prctl PR_SET_MDWE, Linux 6.3 and later).
start_program mdwe -- "$DATA_TARGET" --mdwe
if grep -q '^mdwe=on' "${target_out[$mdwe]}"; then
    json=$("$SUTURE" apply --json --pid "$mdwe" "$DEMO_DATA_1")
    check_eq "MDWE: applied" 4 "$(jq -r .functions <<<"$json")"
    code=$(jq -r .region_address <<<"$json")
    check_eq "MDWE: code r-xp" r-xp "$(perms_at "$mdwe" "$code")"
    check_eq "MDWE: data rw-p" rw-p "$(perms_at "$mdwe" "$(end_at "$mdwe" "$code")")"
    check_eq "MDWE: the static counts" 1 "$(count_of "$mdwe")"
    check_eq "MDWE: shadows from 8 threads" "tagged=80000 failed=0" "$(ask "$mdwe" "tag 8 10")"
    check_eq "MDWE: counts" "objects=1000 sum=80000 min=80 max=80" "$(ask "$mdwe" counts)"
    "$SUTURE" revert --json --pid "$mdwe" demo-data >/dev/null
    check_eq "MDWE: reverted" -1 "$(count_of "$mdwe")"
    kill -0 "$mdwe" && pass "MDWE: the target is alive" || fail_check "MDWE: the target died"
else
    echo "note: this kernel refuses PR_SET_MDWE ($(uname -r)): the MDWE part was not run"
fi

# 7. Under a seccomp filter like systemd's MemoryDenyWriteExecute=.
start_program filtered -- "$DATA_TARGET" --seccomp-mdwe
check_eq "seccomp: the filter refuses W+X" 1 "$(grep -c '^seccomp-mdwe=on' "${target_out[$filtered]}")"
json=$("$SUTURE" apply --json --pid "$filtered" "$DEMO_DATA_1")
check_eq "seccomp: applied" 4 "$(jq -r .functions <<<"$json")"
check_eq "seccomp: the static counts" 1 "$(count_of "$filtered")"
check_eq "seccomp: shadows from 8 threads" "tagged=80000 failed=0" "$(ask "$filtered" "tag 8 10")"
check_eq "seccomp: counts" "objects=1000 sum=80000 min=80 max=80" "$(ask "$filtered" counts)"
"$SUTURE" revert --json --pid "$filtered" demo-data >/dev/null
check_eq "seccomp: reverted" -1 "$(count_of "$filtered")"
kill -0 "$filtered" && pass "seccomp: the target is alive" || fail_check "seccomp: the target died"
finish
