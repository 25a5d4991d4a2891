#!/usr/bin/env bash
# No regression, judged by OpenSSL's own test suite: the test programs and
# recipes of a build's own source tree (suture-build's cached rebuild), run
# on the archive's libraries, once unpatched and once with every patchset of
# that build live-applied to every test process by sutured (parked at its
# entry point, patched, then let into main()). The two runs must give the
# same result recipe by recipe: each recipe's outcome, its counts of passed,
# failed and skipped subtests, and its failed subtests by name.
#
# Usage: openssl-selftest.sh SUTURED [DISTRIBUTION SOURCE_VERSION]
#   (default debian-12 3.0.20-1~deb12u2; meson's slow suite runs both
#   debian-12 3.0.20-1~deb12u2 and debian-13 3.5.7-1~deb13u2)
# Environment:
#   OPENSSL_SELFTEST_TESTS  recipe names (test_evp test_cmp_client ...) to
#                           run instead of all of them
#   HARNESS_JOBS            recipes run at once (default 2)
#   OPENSSL_SELFTEST_PATCHSETS  patch IDs (CVE-2026-54874 ...) to apply instead
#                           of all of the build's
#   OPENSSL_SELFTEST_KEEP   a directory to keep the logs and results in (the
#                           recipes' TAP, results.tsv of each run, sutured.log)
#   OPENSSL_SELFTEST_RUN_ROOT  a root filesystem to run the copy in instead
#                           of the build's own build root (to try the
#                           container path with the host's build, e.g. the
#                           Debian 13 build root for debian-12's 3.0.20)
#   OPENSSL_SELFTEST_BASELINE  the kept "unpatched" directory of an earlier
#                           run of the same build and recipes: its results
#                           stand for the unpatched run (it is not run again;
#                           the unpatched results do not depend on the
#                           patchsets, so a rerun after new patchsets takes
#                           half the time). Its build.txt must match.
#
# The rebuild tree is never touched: the test copies it (under suture-build's
# tree lock, so no fix is half applied in the copy), puts the archive's
# libcrypto, libssl, providers and engines in place of the rebuilt ones
# (same build IDs: the rebuild is verified bit for bit, but the archive's
# files are the ones people run), and runs there. For a release other than
# the host's, the copy and the runs are inside the release's root filesystem
# (suture-build's build root), in new mount and PID namespaces; sutured runs
# on the host and patches them there.
source "$(dirname "$0")/lib.sh"
require_root "exec events (netlink proc connector) and ptrace"
: "${SUTURE_FEED:?}"
sutured=${1:?sutured binary}
distro=${2:-debian-12}
version=${3:-3.0.20-1~deb12u2}
jobs=${HARNESS_JOBS:-2}
read -r -a only_tests <<<"${OPENSSL_SELFTEST_TESTS:-}"
descriptor=$SOURCE_ROOT/distro-support/$distro/distro.json
[ -f "$descriptor" ] || { fail_check "no descriptor $descriptor"; keep_outputs; finish; }
build_cache=/var/cache/suture-build/$distro/openssl/$version
patchset_dir=$SOURCE_ROOT/patchsets/openssl/$distro/$version
export SUTURE_FEED_ROOT_DIR=$scratch/var SUTURE_CONFIG_DIR=$scratch/etc
started_test=$(date +%s)

# keep_outputs: the logs and results into OPENSSL_SELFTEST_KEEP, if set.
keep_outputs() {
    [ -n "${OPENSSL_SELFTEST_KEEP:-}" ] || return 0
    mkdir -p "$OPENSSL_SELFTEST_KEEP"
    cp "$scratch"/*.log "$OPENSSL_SELFTEST_KEEP/" 2>/dev/null || true
    for run in unpatched patched; do
        [ -d "${work:-/nonexistent}/$run" ] && cp -r "$work/$run" "$OPENSSL_SELFTEST_KEEP/"
    done
    echo "logs and results kept in $OPENSSL_SELFTEST_KEEP"
}

# --- 1. where the rebuild is: the host or the release's root filesystem ----

upstream=${version#*:}
upstream=${upstream%-*}
tree=$(jq -r .rebuild.path "$descriptor")
tree=${tree//\{source\}/openssl}
tree=${tree//\{upstream_version\}/$upstream}
build_root=""
if [ "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" != "$(jq -r .codename "$descriptor")" ]; then
    # suture-build's build root for this release (distro-support/lib/archive.sh).
    build_root=/var/cache/suture-archive/rootfs/$distro-build-essential-dpkg-dev-fakeroot
    [ -f "$build_root/.suture-rootfs-complete" ] ||
        skip "no $distro build root ($build_root): run suture-build for a $distro $version patchset first"
fi
tree_dir=$build_root$tree
run_root=${OPENSSL_SELFTEST_RUN_ROOT:-$build_root}

# run_in_build_root COMMAND: the bash COMMAND with a clean environment, on
# the host or chrooted into the build root in new mount and PID namespaces
# (as suture-build runs the package build).
run_in_build_root() {
    local environment=(PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8)
    if [ -z "$run_root" ]; then
        env -i "${environment[@]}" bash -c "$1"
        return
    fi
    unshare --mount --pid --fork --kill-child sh -c '
        mount -t proc proc "$1/proc" && root=$1 && shift &&
        exec chroot "$root" /usr/bin/env -i "$@"' sh "$run_root" "${environment[@]}" bash -c "$1"
}

# --- 2. a copy of the cached rebuild, with the archive's libraries ---------

# copy_rebuild_tree DEST: the tree without the static build (the tests run
# in build_shared), taken under suture-build's tree lock.
copy_rebuild_tree() {
    local lock=$(dirname "$tree_dir")/.$(basename "$tree_dir").suture-lock
    mkdir -p "$1"
    (
        exec {fd}>"$lock"
        flock -n "$fd" || { echo "waiting for suture-build to release $tree_dir ($lock)"; flock "$fd"; }
        [ -f "$tree_dir/.suture-rebuild" ] && [ "$(cat "$tree_dir/.suture-rebuild")" = "$version" ] &&
            [ -f "$build_cache/rebuild/verified" ] || exit 3
        tar -C "$tree_dir" --exclude=./build_static --exclude=./debian/tmp -cf - . | tar -C "$1" -xf -
    )
}

# use_archive_libraries BUILD_DIR ARCHIVE_LIB_DIR: each archive file over
# its rebuilt twin, keeping the twin's modification time (make must not
# relink anything), after checking that both have the same build ID.
use_archive_libraries() {
    local pair archive rebuilt
    for pair in libcrypto.so.3:libcrypto.so.3 libssl.so.3:libssl.so.3 \
        ossl-modules/legacy.so:providers/legacy.so engines-3/afalg.so:engines/afalg.so \
        engines-3/loader_attic.so:engines/loader_attic.so engines-3/padlock.so:engines/padlock.so; do
        archive=$2/${pair%%:*}
        rebuilt=$1/${pair#*:}
        [ -f "$archive" ] && [ -f "$rebuilt" ] || continue
        if [ "$(build_id_of "$archive")" != "$(build_id_of "$rebuilt")" ]; then
            fail_check "${pair#*:}: the archive's build ID $(build_id_of "$archive") is not the rebuild's $(build_id_of "$rebuilt")"
            continue
        fi
        cp "$archive" "$rebuilt.archive"
        touch -r "$rebuilt" "$rebuilt.archive"
        mv "$rebuilt.archive" "$rebuilt"
        echo "  ${pair#*:}: the archive's file (build ID $(build_id_of "$archive"))"
    done
}

archive=$build_cache/archive/usr/lib/x86_64-linux-gnu
[ -f "$archive/libcrypto.so.3" ] ||
    skip "no archive package in $build_cache/archive: run suture-build for a $distro $version patchset first"
mkdir -p "$run_root/tmp"
work=$(mktemp -d "$run_root/tmp/openssl-selftest-XXXXXX")
removed_paths+=("$work")
inside=${work#"$run_root"}
started=$(date +%s)
copy_rebuild_tree "$work/tree" ||
    skip "no verified cached rebuild of $distro openssl $version in $tree_dir: run suture-build for one of its patchsets first"
echo "copied $tree_dir (without build_static) in $(($(date +%s) - started)) s: $(du -sh "$work/tree" | cut -f1)"
use_archive_libraries "$work/tree/build_shared" "$archive"
# util/wrap.pl (which starts every test program) and configdata.pm (which
# the recipes load) name the source tree by its absolute path: the copy's
# instead (same modes and modification times, for make).
for generated in util/wrap.pl configdata.pm; do
    file=$work/tree/build_shared/$generated
    sed "s|$tree/|$inside/tree/|g; s|$tree'|$inside/tree'|g; s|$tree\"|$inside/tree\"|g" "$file" >"$file.copy"
    chmod --reference="$file" "$file.copy"
    touch -r "$file" "$file.copy"
    mv "$file.copy" "$file"
done
cp "$(dirname "$0")/openssl-selftest-run.pl" "$work/run.pl"
# The test programs, built in the copy (the package build compiled them
# already: make finds nothing, or only what the copy changed, to do).
run_in_build_root "cd '$inside/tree/build_shared' && make -s build_programs_nodep build_modules_nodep link-utils" \
    >"$scratch/make.log" 2>&1 || { cat "$scratch/make.log"; fail_check "the test programs do not build"; keep_outputs; finish; }
programs=$(find "$work/tree/build_shared/test" -maxdepth 1 -type f -perm -u+x)
shared=0
for program in $programs; do
    if readelf -d "$program" 2>/dev/null | grep -E 'NEEDED.*lib(ssl|crypto)\.so' >/dev/null; then
        shared=$((shared + 1))
    fi
done
echo "test programs: $(wc -w <<<"$programs") in test/, $shared of them linked to the shared libcrypto/libssl" \
    "(the others link libcrypto.a to reach internals: no live patch reaches them, as for any static" \
    "program), plus apps/openssl; $(grep -c . "$scratch/make.log" || true) line(s) of make output"

# --- 3. the patchsets of this build -----------------------------------------

# The feed sutured gets holds these patchsets only: setup-local-feed run from
# a source root whose patchsets/ has just them (OPENSSL_SELFTEST_PATCHSETS
# names some, to find which one changes a result).
read -r -a wanted_patchsets <<<"${OPENSSL_SELFTEST_PATCHSETS:-}"
feed_root=$scratch/feed-root
mkdir -p "$feed_root/scripts" "$feed_root/patchsets/openssl/$distro/$version"
cp "$SOURCE_ROOT/scripts/setup-local-feed" "$feed_root/scripts/"
patch_ids=()
superseded=" "  # ids a cumulative patchset here carries: applied instead of them
for manifest in "$patchset_dir"/*/patchset.json; do
    [ -f "$(dirname "$manifest")/$(jq -r .output "$manifest")" ] || continue
    id=$(jq -r .patch_id "$manifest")
    if [ ${#wanted_patchsets[@]} -gt 0 ] && [[ " ${wanted_patchsets[*]} " != *" $id "* ]]; then
        continue
    fi
    patch_ids+=("$id")
    superseded+="$(jq -r '(.supersedes // [])[]' "$manifest" | tr '\n' ' ')"
    ln -s "$(dirname "$manifest")" "$feed_root/patchsets/openssl/$distro/$version/"
    echo "patchset: $(jq -r '"\(.cve) (\(.library.soname)): \(.summary)"' "$manifest")"
done
[ ${#patch_ids[@]} -gt 0 ] || skip "no built patchset in $patchset_dir"

# --- 4. the two runs ----------------------------------------------------------

# run_suite NAME: all recipes (or OPENSSL_SELFTEST_TESTS), results in
# $work/NAME/results.tsv; prints the wall time.
run_suite() {
    local started=$(date +%s) status=0
    run_in_build_root "cd '$inside/tree/build_shared' && SRCTOP=.. BLDTOP=. PERL=/usr/bin/perl \
        FIPSKEY=\$(sed -n 's/^FIPSKEY=//p' Makefile) EXE_EXT= HARNESS_JOBS=$jobs \
        perl '$inside/run.pl' '$inside/$1' ${only_tests[*]}" >"$scratch/$1.log" 2>&1 || status=$?
    echo "$1 run: $(($(date +%s) - started)) s wall; run_tests summary: $(grep -E '^(Files=|Result:)' "$scratch/$1.log" | tail -n 2 | paste -sd' ')"
    [ -f "$work/$1/results.tsv" ] || { tail -n 30 "$scratch/$1.log"; fail_check "the $1 run wrote no results (status $status)"; keep_outputs; finish; }
    if awk -F'\t' '$1 ~ /^prep_/ && $2 == "failed" { found = 1 } END { exit !found }' "$work/$1/results.tsv"; then
        tail -n 30 "$scratch/$1.log"
        fail_check "the $1 run: a 00-prep recipe failed, so no recipe ran"
        keep_outputs
        finish
    fi
}

# foreign_sutured: sutured processes not started here that could patch the
# unpatched run's processes (another test's daemon). One limited to another
# directory without rescans (another self-test's) cannot.
foreign_sutured() {
    local pid arguments
    for pid in $(pgrep -x sutured || true); do
        [ "$pid" != "${daemon_pid:-0}" ] || continue
        arguments=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || continue  # gone
        if [[ "$arguments" == *"--rescan-seconds 0 "* && "$arguments" == *"--new-processes-under "* &&
            "$arguments" != *"--new-processes-under $work/tree "* ]]; then
            continue
        fi
        echo "$pid"
    done | paste -sd' '
}

watch_foreign_sutured() {
    while sleep 2; do
        foreign_sutured
    done | sed '/^$/d' >"$scratch/foreign-sutured" &
    watcher_pid=$!
    started_pids+=("$watcher_pid")
}

# What the unpatched results depend on: the build, its libraries, the recipes.
build_stamp() {
    echo "$distro $version libcrypto $(build_id_of "$work/tree/build_shared/libcrypto.so.3")" \
        "libssl $(build_id_of "$work/tree/build_shared/libssl.so.3") recipes ${only_tests[*]:-all}"
}

if [ -n "${OPENSSL_SELFTEST_BASELINE:-}" ]; then
    [ "$(cat "$OPENSSL_SELFTEST_BASELINE/build.txt" 2>/dev/null)" = "$(build_stamp)" ] ||
        { fail_check "$OPENSSL_SELFTEST_BASELINE/build.txt is not '$(build_stamp)'"; keep_outputs; finish; }
    cp -r "$OPENSSL_SELFTEST_BASELINE" "$work/unpatched"
    echo "unpatched run: the results of $OPENSSL_SELFTEST_BASELINE (made $(date -r "$OPENSSL_SELFTEST_BASELINE/results.tsv" -u '+%F %R UTC'))"
else
    for _ in $(seq 150); do  # up to 5 min
        [ -z "$(foreign_sutured)" ] && break
        sleep 2
    done
    [ -z "$(foreign_sutured)" ] || { fail_check "another sutured runs (pid $(foreign_sutured)): the unpatched run would not be unpatched"; keep_outputs; finish; }
    watch_foreign_sutured
    run_suite unpatched
    kill "$watcher_pid" 2>/dev/null || true
    if [ -s "$scratch/foreign-sutured" ]; then
        fail_check "another sutured ran during the unpatched run (pids $(sort -u "$scratch/foreign-sutured" | paste -sd' ')): it may have patched it"
    fi
    build_stamp >"$work/unpatched/build.txt"
fi

start_private_system_bus
"$feed_root/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; keep_outputs; finish; }
SUTURE_FEED_CACHE=$scratch/cache "$SUTURE" feed refresh >/dev/null
# Some recipes crash on purpose (test_abort's aborttest dies of SIGABRT
# right after its start): the health watch would quarantine the patches it
# got and keep them from every later test process. The watch is off here;
# a crash the patches caused shows as a recipe that differs.
mkdir -p "$SUTURE_CONFIG_DIR"
echo "watch_seconds = 0" >>"$SUTURE_CONFIG_DIR/suture.conf"
# Only the copy's programs (the tests' processes) are parked and patched:
# the rest of the machine, other tests' processes on the same archive build
# included, is left alone; no rescan for the same reason.
start_sutured "$sutured" --rescan-seconds 0 --new-processes-under "$work/tree"
grep -q "patching new processes" "$scratch/sutured.log" ||
    { cat "$scratch/sutured.log"; fail_check "sutured does not watch exec events"; keep_outputs; finish; }
run_suite patched
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true

# --- 5. the patches reached the test processes --------------------------------

applied_lines() { grep -E "sutured: new pid [0-9]+ \(.*\): $1 applied" "$scratch/sutured.log" || true; }
echo "sutured: $(grep -o 'new processes: .*' "$scratch/sutured.log" | tail -n 1)"
processes_patched=$(applied_lines 'CVE-[0-9-]+' | sed -E 's/.*new pid ([0-9]+) .*/\1/' | sort -u | wc -l)
echo "processes of the patched run with at least one patch applied: $processes_patched, by program:"
applied_lines 'CVE-[0-9-]+' | sed -E 's/.*new pid ([0-9]+) \(([^)]*)\).*/\2 \1/' | sort -u |
    awk '{ count[$1]++ } END { for (p in count) print count[p], p }' | sort -rn | head -n 25 |
    awk '{ printf "  %6d %s\n", $1, $2 }'
quarantines=$(grep -c "quarantined" "$scratch/sutured.log" || true)
check_eq "no patch quarantined during the patched run" 0 "$quarantines"
for id in "${patch_ids[@]}"; do
    count=$(applied_lines "$id" | wc -l)
    late=$(applied_lines "$id" | grep -c "while running" || true)
    echo "  $id: applied in $count processes ($late of them while running, the rest before main())"
    if [[ "$superseded" == *" $id "* ]]; then
        check_eq "$id, superseded by a cumulative patch here, applied to no test process" 0 "$count"
        continue
    fi
    [ "$count" -gt 0 ] && pass "$id was applied to the test processes" || fail_check "$id was never applied"
done
# Other outcomes: a process that exited before or while it was patched
# (a short-lived openssl command the daemon reached late) is no failure of
# the patch; anything else is listed.
others=$(grep -E "sutured: new pid [0-9]+ \(.*\): CVE-[0-9-]+ [a-z_]+ " "$scratch/sutured.log" | grep -v " applied " || true)
gone=$(grep -cE "exited (during the operation|while being stopped)|[Nn]o such process" <<<"$others" || true)
echo "outcomes other than applied: $(grep -c . <<<"$others" || true) ($gone for processes that exited meanwhile)"
refused=$({ grep -vE "exited (during the operation|while being stopped)|[Nn]o such process" <<<"$others" || true; } | sed '/^$/d')
if [ -n "$refused" ]; then
    sed -E 's/.*\): (CVE-[0-9-]+ [a-z_]+.*)/\1/; s/pid [0-9]+/pid N/g' <<<"$refused" | sort | uniq -c | sort -rn | head -n 10 | sed 's/^/  /'
fi
# Every patch reaches every test process it is for: one that fails to go
# into a process that lives on leaves that test unpatched.
check_eq "no patch failed in a test process that lived on" 0 "$(grep -c . <<<"$refused" || true)"

# --- 6. the same results, recipe by recipe -------------------------------------

# figures NAME: totals over a results.tsv.
figures() {
    awk -F'\t' -v run="$1" '{ recipes++; result[$2]++; run_ += $4; passed += $5; failed += $6; skipped += $7 }
        END { printf "%s: %d recipes (%d ok, %d failed, %d skipped); %d subtests run, %d passed, %d failed, %d skipped\n",
              run, recipes, result["ok"], result["failed"], result["skipped"], run_, passed, failed, skipped }' \
        "$work/$1/results.tsv"
}
figures unpatched
figures patched
# Every column but the skip reason (openssl-selftest-run.pl names them).
compare_key() { cut -f 1-10 "$work/$1/results.tsv" | sort; }
differences=$(diff <(compare_key unpatched) <(compare_key patched) || true)
if [ -z "$differences" ]; then
    pass "the patched run gives the unpatched run's results, recipe by recipe ($(grep -c . "$work/unpatched/results.tsv") recipes)"
else
    fail_check "the runs differ (< unpatched, > patched; name, result, planned, run, passed, failed, skipped, todo, exit status, failed subtests):"
    printf '%s\n' "$differences" | grep '^[<>]'
fi
failed_both=$(awk -F'\t' '$2 == "failed" { print $1 " (" $10 ")" }' "$work/unpatched/results.tsv")
[ -z "$failed_both" ] || printf 'recipes that fail unpatched too (the build'"'"'s own state, not a regression):\n%s\n' "$failed_both"
echo "figures: $distro $version, ${#patch_ids[@]} patchsets (${patch_ids[*]}), HARNESS_JOBS=$jobs," \
    "${only_tests[*]:-all recipes}: $(($(date +%s) - started_test)) s in all"
keep_outputs
finish
