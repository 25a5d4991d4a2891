#!/usr/bin/env bash
# One `suture update` against every shipped patchset of a build (issue 17's
# "which single update brings a process of that build to no known CVE open"):
# a process holding the archive's libcrypto and libssl of each host-release
# build (debian-12 3.0.20-1~deb12u2 and 3.0.17-1~deb12u2), the shipped
# patchsets published as the local feed, one update. Every patch for the
# build must end applied or refused as a `conflict` (another patch id
# already replaces one of its functions: the injector never stacks two ids
# on one function); nothing else may fail, and the process must stay alive
# and untraced. Prints, per build, how many were applied, which were
# refused as conflicts, and the update's wall time (figures only).
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the holders"
: "${SUTURE_FEED:?}"

export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
export SUTURE_FEED_CACHE=$scratch/cache
export SUTURE_STATE_DB=$scratch/state.db
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }

for version in 3.0.20-1~deb12u2 3.0.17-1~deb12u2; do
    fetch_archive_package debian-12 libssl3 "$version" "$scratch/archive-$version"
    hold holder "$scratch/archive-$version/usr/lib/x86_64-linux-gnu" libcrypto.so.3 libssl.so.3
    expected=$(PATCHSET_VERSION=$version shipped_patch_count libcrypto.so.3 libssl.so.3)
    start=$EPOCHREALTIME
    status=0
    "$SUTURE" update --json >"$scratch/update-$version.json" 2>"$scratch/update-$version.err" || status=$?
    end=$EPOCHREALTIME
    actions() { jq --argjson pid "$holder" "[.actions[] | select(.pid == \$pid and ($1))]" "$scratch/update-$version.json"; }
    applied=$(actions '.outcome == "applied"' | jq length)
    conflicts=$(actions '.outcome == "failed" and .reason == "conflict"' | jq -r 'map(.patch_id) | join(" ")')
    others=$(actions '.outcome != "applied" and (.outcome != "failed" or .reason != "conflict")' |
        jq -r 'map("\(.patch_id): \(.outcome) \(.reason) \(.message)") | join("; ")')
    check_eq "$version: every patch of the build decided" "$expected" "$(actions 'true' | jq length)"
    check_eq "$version: nothing failed but conflicts" "" "$others"
    [ "$applied" -gt 0 ] && pass "$version: $applied applied" || fail_check "$version: nothing applied"
    check_eq "$version: the process is alive" "$holder" "$(ps -o pid= -p "$holder" | tr -d ' ')"
    check_eq "$version: no thread left traced" 0 "$(traced_threads "$holder")"
    check_eq "$version: patches active in memory" "$applied" \
        "$(status_json "$holder" | jq '[.processes[0].patches[] | select(.state == "active")] | length')"
    echo "figures: debian-12 $version: one update (exit $status), $applied of $expected patches applied," \
        "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", (b - a) * 1000 }') ms;" \
        "refused as conflict: ${conflicts:-none}"
    kill "$holder"
done
finish
