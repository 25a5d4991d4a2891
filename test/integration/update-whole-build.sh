#!/usr/bin/env bash
# One `suture update` against every shipped patchset of a build (issue 17's
# "which single update brings a process of that build to no known CVE open"):
# a process holding the archive's libcrypto and libssl of each build of the
# host's release (debian-12 3.0.20-1~deb12u2 and 3.0.17-1~deb12u2), of
# Debian 11's two (1.1.1w-0+deb11u1 and deb11u8) and of Debian 13's
# 3.5.7-1~deb13u2 (those holders running in a bullseye or trixie root
# filesystem in their own mount and PID namespaces), the shipped
# patchsets and advisory data published as the local feed, one update. Every
# patch for the build must end applied, or held as `superseded` by the
# cumulative patch that carries its fix (docs/operator-guide.md, "Cumulative
# patches": on 3.0.17 CVE-2026-9076 over CVE-2025-9230 and CVE-2026-42766,
# CVE-2026-28388 over CVE-2026-35189; on 3.5.7 CVE-2026-42772 over
# CVE-2026-54873); nothing may fail, the update exits 0,
# the process stays alive and untraced, and `suture status` shows no CVE
# with a live patch left open (a superseded one is patched_by its
# cumulative patch). Then the older history: a 3.0.17 process that got the
# superseded patches first (a `--cve` run) gets them replaced by the
# cumulative ones in the next update, in one stop each; that process is
# CVE-2025-9230's reproducer, so the replacement is seen to keep the fix.
# Prints, per build, how many were applied and superseded, and the update's
# wall time. With SUTURE_UPDATE_FIGURES=FILE (patchsets/openssl/update-
# figures.json, which distro-support/coverage reads into docs/coverage.md's
# "One update" lines) it also records them there, per build, replacing that
# build's earlier record: `applied`, `superseded`, `update_ms` (the whole
# `suture update`, start-up and feed verification included) and
# `stopped_us` (the longest `stopped_us` of the process's applied actions,
# null while the update report has none), `measured` (UTC date).
#
# Usage (meson passes it): update-whole-build.sh REPRODUCER_3.0.17_CVE-2025-9230
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the holders"
: "${SUTURE_FEED:?}"
reproducer_9230=${1:?}

export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
export SUTURE_FEED_CACHE=$scratch/cache
export SUTURE_STATE_DB=$scratch/state.db
"$SOURCE_ROOT/scripts/setup-local-feed" --advisories "$(dirname "$(dirname "$SUTURE_FEED")")" \
    >"$scratch/setup.log" 2>&1 || { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }

# The builds: the host release's two, Debian 11's two and Debian 13's one,
# whose holders run in a bullseye or trixie root filesystem (new mount and
# PID namespaces; suture updates them from the host).
builds=(debian-12/3.0.20-1~deb12u2 debian-12/3.0.17-1~deb12u2
        debian-11/1.1.1w-0+deb11u1 debian-11/1.1.1w-0+deb11u8
        debian-13/3.5.7-1~deb13u2)
# The patch ids each build's cumulative patches supersede: what the update
# must hold back as superseded.
declare -A superseded_ids=()
for build in "${builds[@]}"; do
    superseded_ids[${build#*/}]=$(superseded_in "$SOURCE_ROOT/patchsets/openssl/$build")
done
check_eq "3.0.17's cumulative patches supersede some (the test's premise)" yes \
    "$([ -n "${superseded_ids[3.0.17-1~deb12u2]}" ] && echo yes || echo no)"

# actions FILE PID FILTER: the update's actions for PID that match FILTER.
actions() {
    jq --argjson pid "$2" "[.actions[] | select(.pid == \$pid and ($3))]" "$1"
}

# open_with_live_patch PID: the CVEs `suture status` says are open in PID
# although a live patch exists (what an update must leave none of).
open_with_live_patch() {
    status_json "$1" | jq -r '.processes[0].cves | if length == 0 then "no CVE listed: no advisory data?"
        else [.[] | select(.state == "open") | .id] | join(" ") end'
}

# hold_in_rootfs VAR DISTRO PACKAGE VERSION SONAME...: hold-openssl,
# compiled in DISTRO's root filesystem, holding the SONAMEs of the
# archive's PACKAGE VERSION there; VAR is its PID.
declare -A rootfs_of=() rootfs_work=()
hold_in_rootfs() {
    local var=$1 distro=$2 package=$3 version=$4 rootfs work libraries inside
    shift 4
    if [ -z "${rootfs_of[$distro]:-}" ]; then
        rootfs=$("$SOURCE_ROOT/containers/make-rootfs" "$distro" gcc libc6-dev libssl-dev) ||
            { fail_check "cannot build the $distro rootfs (archive unreachable?)"; finish; }
        work=$(mktemp -d "$rootfs/tmp/suture-$test_name-XXXXXX")
        removed_paths+=("$work")
        cp "$SOURCE_ROOT/test/targets/hold-openssl.c" "$work/"
        chroot "$rootfs" gcc -O2 -o "${work#"$rootfs"}/hold-openssl" \
            "${work#"$rootfs"}/hold-openssl.c" -ldl -lpthread ||
            { fail_check "hold-openssl does not compile in the $distro rootfs"; finish; }
        rootfs_of[$distro]=$rootfs
        rootfs_work[$distro]=$work
    fi
    rootfs=${rootfs_of[$distro]}
    work=${rootfs_work[$distro]}
    fetch_archive_package "$distro" "$package" "$version" "$work/archive-$version"
    libraries=$work/archive-$version/usr/lib/x86_64-linux-gnu
    inside=${work#"$rootfs"}
    start_in_rootfs "$var" "$rootfs" "LD_LIBRARY_PATH=${libraries#"$rootfs"}" -- \
        "$inside/hold-openssl" "$@"
    wait_for_line "${target_out[${!var}]}" "^ready " ||
        { cat "${target_out[${!var}]}"; fail_check "hold-openssl did not start in the $distro rootfs"; finish; }
}

for build in "${builds[@]}"; do
    distro=${build%%/*}
    version=${build#*/}
    if [ "$distro" = debian-12 ]; then
        fetch_archive_package debian-12 libssl3 "$version" "$scratch/archive-$version"
        hold holder "$scratch/archive-$version/usr/lib/x86_64-linux-gnu" libcrypto.so.3 libssl.so.3
        sonames=(libcrypto.so.3 libssl.so.3)
    elif [ "$distro" = debian-13 ]; then
        sonames=(libcrypto.so.3 libssl.so.3)
        hold_in_rootfs holder debian-13 libssl3t64 "$version" "${sonames[@]}"
    else
        sonames=(libcrypto.so.1.1 libssl.so.1.1)
        hold_in_rootfs holder debian-11 libssl1.1 "$version" "${sonames[@]}"
    fi
    expected=$(PATCHSET_DISTRO=$distro PATCHSET_VERSION=$version shipped_patch_count "${sonames[@]}")
    start=$EPOCHREALTIME
    status=0
    "$SUTURE" update --json >"$scratch/update-$version.json" 2>"$scratch/update-$version.err" || status=$?
    end=$EPOCHREALTIME
    report=$scratch/update-$version.json
    applied=$(actions "$report" "$holder" '.outcome == "applied"' | jq length)
    superseded=$(actions "$report" "$holder" '.outcome == "held" and .reason == "superseded"' |
        jq -r 'map(.patch_id) | sort | join(" ")')
    others=$(actions "$report" "$holder" '.outcome != "applied" and (.outcome != "held" or .reason != "superseded")' |
        jq -r 'map("\(.patch_id): \(.outcome) \(.reason) \(.message)") | join("; ")')
    check_eq "$version: the update exits 0" 0 "$status"
    check_eq "$version: every patch of the build decided" "$expected" "$(actions "$report" "$holder" 'true' | jq length)"
    check_eq "$version: nothing failed, nothing held but superseded patches" "" "$others"
    check_eq "$version: the superseded patches" "${superseded_ids[$version]}" "$superseded"
    superseded_count=$(wc -w <<<"$superseded")
    check_eq "$version: every other patch applied" "$((expected - superseded_count))" "$applied"
    check_eq "$version: the process is alive" "$holder" "$(ps -o pid= -p "$holder" | tr -d ' ')"
    check_eq "$version: no thread left traced" 0 "$(traced_threads "$holder")"
    check_eq "$version: patches active in memory" "$applied" \
        "$(status_json "$holder" | jq '[.processes[0].patches[] | select(.state == "active")] | length')"
    check_eq "$version: no CVE with a live patch left open" "" "$(open_with_live_patch "$holder")"
    for id in ${superseded_ids[$version]}; do
        check_eq "$version: $id counts as patched, by its cumulative patch" "patched true" \
            "$(status_json "$holder" | jq -r --arg id "$id" \
                '.processes[0].cves[] | select(.id == $id) | "\(.state) \(.patched_by != null)"')"
    done
    update_ms=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
    echo "figures: $distro $version: one update (exit $status), $applied of $expected patches applied," \
        "$superseded_count superseded by a cumulative patch, $update_ms ms"
    actions "$report" "$holder" '.outcome == "applied"' |
        jq --arg d "$distro" --arg v "$version" --arg s "$superseded" --argjson ms "$update_ms" --arg date "$(date -u +%F)" \
            '{distribution: $d, version: $v, applied: length,
              superseded: ($s | split(" ") | map(select(. != ""))), update_ms: $ms,
              stopped_us: ([.[].stopped_us // empty] | max), measured: $date}' \
        >"$scratch/figures-$version.json"
    kill "$holder"
done

# --- the superseded patches already active: replaced in the next update ------
version=3.0.17-1~deb12u2
start_program older "LD_LIBRARY_PATH=$scratch/archive-$version/usr/lib/x86_64-linux-gnu" -- "$reproducer_9230"
check_eq "older: CVE-2025-9230's probe before" VULNERABLE "$(ask "$older" probe)"
# A run selecting only the superseded CVEs holds the cumulative patches back
# (rule `cve`), so the superseded ones go on, as an update before the
# cumulative patches were published would have done.
status=0
"$SUTURE" update --offline --json --cve CVE-2025-9230 --cve CVE-2026-35189 \
    >"$scratch/older-first.json" 2>"$scratch/older-first.err" || status=$?
check_eq "older: the first run exits 0" 0 "$status"
check_eq "older: the first run applies the superseded patches" "CVE-2025-9230 CVE-2026-35189" \
    "$(actions "$scratch/older-first.json" "$older" '.outcome == "applied"' | jq -r 'map(.patch_id) | sort | join(" ")')"
status=0
"$SUTURE" update --offline --json >"$scratch/older-second.json" 2>"$scratch/older-second.err" || status=$?
check_eq "older: CVE-2025-9230's probe after its own patch" FIXED "$(ask "$older" probe)"
check_eq "older: the full update exits 0" 0 "$status"
check_eq "older: CVE-2025-9230's probe after the replacement by CVE-2026-9076" FIXED "$(ask "$older" probe)"
check_eq "older: the workload after the replacement" OK "$(ask "$older" workload)"
check_eq "older: nothing failed" "" \
    "$(actions "$scratch/older-second.json" "$older" '.outcome == "failed"' | jq -r 'map("\(.patch_id): \(.message)") | join("; ")')"
check_eq "older: the cumulative patches applied" "applied applied" \
    "$(actions "$scratch/older-second.json" "$older" '.patch_id == "CVE-2026-9076" or .patch_id == "CVE-2026-28388"' |
        jq -r 'map(.outcome) | join(" ")')"
check_eq "older: the superseded ones held, replaced in this update" "CVE-2025-9230 CVE-2026-35189" \
    "$(actions "$scratch/older-second.json" "$older" '.reason == "superseded" and (.message | test("replaced by it in this update"))' |
        jq -r 'map(.patch_id) | sort | join(" ")')"
# (status exits 27 here: the build has CVEs without a live patch.)
actions "$scratch/older-second.json" "$older" '.reason == "superseded"' |
    jq -r '.[] | "figures: older: \(.patch_id): held, \(.message)"'
active_ids=$(status_json "$older" | jq -r '[.processes[0].patches[] | select(.state == "active") | .patch_id] | sort | join(" ")' || true)
for id in CVE-2025-9230 CVE-2026-35189 CVE-2026-42766; do
    grep -qw -- "$id" <<<"$active_ids" && fail_check "older: $id still active" || pass "older: $id not active"
done
for id in CVE-2026-9076 CVE-2026-28388; do
    grep -qw -- "$id" <<<"$active_ids" && pass "older: $id active" || fail_check "older: $id not active"
done
check_eq "older: the process is alive" "$older" "$(ps -o pid= -p "$older" | tr -d ' ')"
check_eq "older: no thread left traced" 0 "$(traced_threads "$older")"
check_eq "older: no CVE with a live patch left open" "" "$(open_with_live_patch "$older")"
check_eq "older: the database has the superseded applications reverted" "CVE-2025-9230 CVE-2026-35189" \
    "$(sqlite3 "$SUTURE_STATE_DB" "select group_concat(patch_id, ' ') from (select patch_id from applications where pid = $older and state = 'reverted' order by patch_id)" 2>/dev/null)"
status=0
"$SUTURE" update --offline --json >"$scratch/older-third.json" 2>/dev/null || status=$?
check_eq "older: a third run exits 0 and applies nothing" "0 0" \
    "$status $(actions "$scratch/older-third.json" "$older" '.outcome == "applied" or .outcome == "failed"' | jq length)"
kill "$older"

if [ -n "${SUTURE_UPDATE_FIGURES:-}" ]; then
    [ -f "$SUTURE_UPDATE_FIGURES" ] ||
        echo '{"format": "suture-update-figures", "format_version": 1, "generator": "test/integration/update-whole-build.sh (SUTURE_UPDATE_FIGURES=FILE)", "builds": []}' \
            >"$SUTURE_UPDATE_FIGURES"
    jq --slurpfile new <(cat "$scratch"/figures-*.json) \
        '.builds = ([.builds[] | select(. as $b | $new | map(.version == $b.version and .distribution == $b.distribution) | any | not)]
                    + $new | sort_by(.distribution, .version))' \
        "$SUTURE_UPDATE_FIGURES" >"$scratch/figures.json" && mv "$scratch/figures.json" "$SUTURE_UPDATE_FIGURES" &&
        pass "figures recorded in $SUTURE_UPDATE_FIGURES" || fail_check "cannot record the figures in $SUTURE_UPDATE_FIGURES"
fi
finish
