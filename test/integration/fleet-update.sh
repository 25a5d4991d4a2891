#!/usr/bin/env bash
# The fleet case: `suture update` over many processes that map Debian's
# vulnerable libcrypto 3.0.20-1~deb12u2 (idle hold-openssl processes), from
# the local signed feed, with a private state database. Every process must
# end with every shipped debian-12 patchset for its two libraries active
# (shipped_patch_count) and none may be left stopped.
# Prints the update's wall time, the cost per process, and as a baseline in
# the same run `suture status --json` of the same processes (scan only) —
# figures, never assertions.
#
# SUTURE_FLEET_PROCESSES sets the size (default 100 in the test suite; the
# benchmark figure uses 1000); SUTURE_FLEET_PARALLEL, if set, is passed as
# `suture update --parallel` (processes patched at once; default: cores).
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the fleet"
: "${SUTURE_FEED:?}"
count=${SUTURE_FLEET_PROCESSES:-100}

export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
export SUTURE_FEED_CACHE=$scratch/cache
export SUTURE_STATE_DB=${SUTURE_FLEET_STATE_DB:-$scratch/state.db}
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
"$SUTURE" feed refresh >/dev/null || { fail_check "feed refresh"; finish; }

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
library_dir=$scratch/archive/usr/lib/x86_64-linux-gnu

# The fleet: each holder loads libcrypto.so.3 and libssl.so.3 from the
# archive build, prints "ready" and waits.
start_holder_fleet "$count" "$library_dir"
milliseconds() { echo $(($(date +%s%N) / 1000000)); }

started=$(milliseconds)
"$SUTURE" status --json "${pid_args[@]}" >"$scratch/status-before.json"
status_ms=$(($(milliseconds) - started))
check_eq "every holder maps the vulnerable libcrypto" "$count" \
    "$(jq '[.processes[] | select(any(.libraries[]; .build_id == "7d90f38412d00023e58392b03612a24b62fcaede"))] | length' \
        "$scratch/status-before.json")"

started=$(milliseconds)
parallel=()
[ -n "${SUTURE_FLEET_PARALLEL:-}" ] && parallel=(--parallel "$SUTURE_FLEET_PARALLEL")
run 0 "update" "$SUTURE" update --offline --json "${parallel[@]}"
update_ms=$(($(milliseconds) - started))
# What failed, if anything (any process on the host with the build counts).
jq -r '.actions[] | select(.outcome == "failed") | "failed: pid \(.pid) \(.comm) \(.patch_id): \(.reason): \(.message)"' \
    <<<"$output" 2>/dev/null | head -n 20

stopped=0
for pid in "${fleet[@]}"; do
    case $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) in
        t | T) stopped=$((stopped + 1)) ;;
        "") stopped=$((stopped + 1)); echo "holder $pid is gone" ;;
    esac
done
check_eq "holders left stopped or dead" 0 "$stopped"
ours=$(printf '%s\n' "${fleet[@]}" | jq -s .)
per_process=$(shipped_patch_count libcrypto.so.3 libssl.so.3)
check_eq "patches applied to the fleet ($per_process per process)" $((count * per_process)) \
    "$(jq --argjson ours "$ours" '[.actions[] | select(.outcome == "applied" and (.pid as $p | $ours | index($p)))] | length' \
        <<<"$output")"
"$SUTURE" status --json "${pid_args[@]}" >"$scratch/status-after.json"
check_eq "holders with all $per_process patches active" "$count" \
    "$(jq --argjson n "$per_process" '[.processes[] | select([.patches[] | select(.state == "active")] | length == $n)] | length' \
        "$scratch/status-after.json")"

echo "figures: $count processes: suture update (scan, match, apply $per_process patches each, record) ${update_ms} ms," \
    "$(awk -v t="$update_ms" -v n="$count" 'BEGIN { printf "%.2f", t / n }') ms per process;" \
    "baseline suture status --json of the same processes ${status_ms} ms" \
    "(update / status $(awk -v a="$update_ms" -v b="$status_ms" 'BEGIN { printf "%.1f", a / b }')x)"
finish
