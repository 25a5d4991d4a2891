# shellcheck shell=bash
# Shared helpers for the integration tests: each test is a bash script that
# starts real processes, runs the real `suture` binary, and checks what it
# reports against what readelf/dpkg say independently.
#
# meson passes: SUTURE (the CLI), HOLD_OPENSSL (test/targets/hold-openssl),
# SOURCE_ROOT (top of the source tree).
set -euo pipefail

: "${SUTURE:?}" "${HOLD_OPENSSL:?}" "${SOURCE_ROOT:?}"
# meson puts the directories of every shared library a test depends on into
# LD_LIBRARY_PATH, in no fixed order; the tests choose libraries explicitly.
unset LD_LIBRARY_PATH
test_name=$(basename "$0" .sh)
scratch=$(mktemp -d "/tmp/suture-$test_name-XXXXXX")
chmod 755 "$scratch"
# Each test its own operation lock (docs/state.md), so tests running side by
# side do not wait for each other; state-truth.sh tests the lock itself.
export SUTURE_LOCK_FILE=$scratch/run/suture.lock
# And its own state database (revert records what it reverted): a test
# never writes the host's /var/lib/suture; tests that look at the database
# set their own path.
export SUTURE_STATE_DB=$scratch/state.db
# And no feed of the host's: a host that ran scripts/main has /etc/suture's
# local remote and its advisory data cached, which would change what
# `suture status` says (and its exit status, 27 when exposed). Tests with a
# feed set up their own in $scratch (setup-local-feed with these).
export SUTURE_CONFIG_DIR=$scratch/etc
export SUTURE_FEED_CACHE=$scratch/cache
started_pids=()
started_groups=() # process groups killed at exit: a server that forks its own helpers
removed_paths=() # also removed at exit, e.g. work directories inside a rootfs

cleanup() {
    local pid group
    for pid in "${started_pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    for group in "${started_groups[@]}"; do
        kill -9 -- "-$group" 2>/dev/null || true
    done
    rm -rf "$scratch" "${removed_paths[@]}"
}
trap cleanup EXIT

# Exit 77 tells meson the test was skipped; the line says why.
skip() {
    echo "SKIP: $*"
    exit 77
}

failures=0
pass() { echo "ok: $*"; }
fail_check() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}
finish() {
    if [ "$failures" -gt 0 ]; then
        echo "$test_name: $failures check(s) failed"
        exit 1
    fi
    echo "$test_name: all checks passed"
}

# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
    if [ "$2" = "$3" ]; then
        pass "$1 = $3"
    else
        fail_check "$1: expected '$2', got '$3'"
    fi
}

# run EXPECTED_STATUS DESCRIPTION COMMAND...: runs COMMAND and checks its exit
# status; its standard output is then in $output, its standard error in
# $errors. A failing COMMAND does not end the test (set -e would, before the
# check could say so); a wrong status prints both streams.
run() {
    local expected=$1 description=$2 status=0
    shift 2
    output=$("$@" 2>"$scratch/run.err") || status=$?
    errors=$(cat "$scratch/run.err")
    check_eq "$description: exit status" "$expected" "$status"
    if [ "$status" != "$expected" ]; then
        printf '%s\n' "--- stdout of $*:" "$output" "--- stderr:" "$errors"
    fi
}

require_root() {
    [ "$(id -u)" = 0 ] || skip "needs root: $*"
}

build_id_of() { readelf -n "$1" | awk '/Build ID:/ { print $3; exit }'; }

# fetch_archive_package DISTRO PACKAGE VERSION DEST: unpack a real archive
# package, or skip the test if the archive cannot be reached.
fetch_archive_package() {
    "$SOURCE_ROOT/distro-support/fetch-package" "$@" >"$scratch/fetch.log" 2>&1 ||
        { cat "$scratch/fetch.log"; skip "cannot fetch $2=$3 from the $1 archive (offline?)"; }
}


# shipped_patch_count SONAME...: how many of the patchsets shipped for the
# archive's openssl $PATCHSET_VERSION (default 3.0.20-1~deb12u2) of
# $PATCHSET_DISTRO (default debian-12), those with a built patch, target
# one of these libraries: what `suture update` applies to a process that
# maps them from that build.
shipped_patch_count() {
    local manifest count=0
    for manifest in "$SOURCE_ROOT"/patchsets/openssl/"${PATCHSET_DISTRO:-debian-12}"/"${PATCHSET_VERSION:-3.0.20-1~deb12u2}"/*/patchset.json; do
        [ -f "$(dirname "$manifest")/$(jq -r .output "$manifest")" ] || continue
        printf '%s\n' "$@" | grep -qxF "$(jq -r .library.soname "$manifest")" && count=$((count + 1))
    done
    echo "$count"
}

# hold VAR LIBRARY_PATH LIBRARY...: runs hold-openssl with LD_LIBRARY_PATH
# (empty for the system's libraries), waits for "ready", sets VAR to its PID.
hold() {
    local hold_var=$1 library_path=$2 hold_out hold_pid
    shift 2
    hold_out="$scratch/holder-$RANDOM.out"
    LD_LIBRARY_PATH=$library_path "$HOLD_OPENSSL" "$@" </dev/null >"$hold_out" 2>&1 &
    hold_pid=$!
    started_pids+=("$hold_pid")
    wait_for_line "$hold_out" "^ready " || { cat "$hold_out"; fail_check "hold-openssl $* did not start"; exit 1; }
    printf -v "$hold_var" '%s' "$hold_pid"
}

# count_answers N EXPECTED COMMAND [ARGS...]: runs COMMAND N times, prints
# how many of the runs printed exactly EXPECTED.
count_answers() {
    local count=$1 expected=$2 matched=0 i
    shift 2
    for i in $(seq "$count"); do
        [ "$("$@")" = "$expected" ] && matched=$((matched + 1))
    done
    echo "$matched"
}

# superseded_in DIR: the patch ids the cumulative patchsets of one build's
# directory (patchsets/openssl/DISTRO/VERSION) supersede, from their
# patchset.json "supersedes", sorted and space-separated: what an update
# holds back as superseded.
superseded_in() { cat "$1"/*/patchset.json | jq -r '.supersedes[]?' | sort -u | paste -sd' '; }

# wait_for_line FILE REGEX: up to 10 s.
wait_for_line() {
    local tries
    for tries in $(seq 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# status_json PID...: `suture status --json` for these processes.
status_json() {
    local args=() pid
    for pid in "$@"; do
        args+=(--pid "$pid")
    done
    "$SUTURE" status --json "${args[@]}"
}

# library JSON PID SONAME FIELD: one field of one library of one process.
library() {
    jq -r --argjson pid "$2" --arg soname "$3" \
        ".processes[] | select(.pid == \$pid) | .libraries[] | select(.soname == \$soname) | .$4" <<<"$1"
}

# --- long-running targets that answer commands on stdin ------------------
# start_program VAR [NAME=VALUE...] -- PROGRAM ARGS...: starts PROGRAM with
# that environment, waits for its "ready" line, sets VAR to its PID. Talk to
# it with `ask PID CMD`.
declare -A target_fd target_out
start_program() {
    local start_var=$1 dir start_pid fd
    shift
    local environment=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        environment+=("$1")
        shift
    done
    [ "${1:-}" = "--" ] && shift
    dir=$(mktemp -d "$scratch/target-XXXXXX")
    mkfifo "$dir/in"
    env "${environment[@]}" "$@" <"$dir/in" >"$dir/out" 2>&1 &
    start_pid=$!
    exec {fd}>"$dir/in"
    started_pids+=("$start_pid")
    wait_for_line "$dir/out" "^ready" || { cat "$dir/out"; fail_check "$* did not start"; exit 1; }
    target_fd[$start_pid]=$fd
    target_out[$start_pid]="$dir/out"
    printf -v "$start_var" '%s' "$start_pid"
}

# wait_for_exec PID PATH: until process PID runs PATH (a child started with
# `PATH &` may not have exec'ed yet); fails the test after 5 s.
wait_for_exec() {
    local tries
    for tries in $(seq 100); do
        [ "$(readlink "/proc/$1/exe" 2>/dev/null)" = "$2" ] && return 0
        sleep 0.05
    done
    fail_check "pid $1 does not run $2"
    exit 1
}

# start_not_utf8 VAR: a sleeping process whose comm is not UTF-8 (its file
# name starts with the bytes ff fe); VAR gets its PID.
start_not_utf8() {
    local name="$scratch/"$'\xff\xfe'"sleep" started
    cp "$(command -v sleep)" "$name"
    "$name" 60 &
    started=$!
    started_pids+=("$started")
    wait_for_exec "$started" "$name"
    printf -v "$1" '%s' "$started"
}

# start_in_rootfs VAR ROOTFS [NAME=VALUE...] -- PROGRAM ARGS...: start_program
# for PROGRAM (a path inside ROOTFS), run by chroot into ROOTFS in new mount
# and PID namespaces: the container stand-in. VAR gets the program's PID as
# the host sees it (`ask` works with it); the namespace ends with the test.
start_in_rootfs() {
    local start_var=$1 rootfs=$2 launcher program_pid
    shift 2
    local environment=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        environment+=("$1")
        shift
    done
    [ "${1:-}" = "--" ] && shift
    start_program launcher -- unshare --mount --pid --fork --kill-child \
        chroot "$rootfs" /usr/bin/env "${environment[@]}" "$@"
    # unshare forks once; the child execs chroot, env and then PROGRAM.
    program_pid=$(pgrep -P "$launcher" | head -n 1)
    [ -n "$program_pid" ] || { fail_check "$* did not start in $rootfs"; exit 1; }
    target_fd[$program_pid]=${target_fd[$launcher]}
    target_out[$program_pid]=${target_out[$launcher]}
    printf -v "$start_var" '%s' "$program_pid"
}

# start_target VAR [NAME=VALUE...] -- ARGS...: start_program for
# patch-target (the injector tests' demo program).
start_target() {
    local before=() rest=("${@:2}")
    while [ ${#rest[@]} -gt 0 ] && [ "${rest[0]}" != "--" ]; do
        before+=("${rest[0]}")
        rest=("${rest[@]:1}")
    done
    start_program "$1" "${before[@]}" -- "$PATCH_TARGET" "${rest[@]:1}"
}

# ask PID COMMAND [SECONDS]: sends one command, prints the answer line
# (empty if the target did not answer within SECONDS, default 5: dead or
# stopped).
ask() {
    local ask_pid=$1 before tries
    before=$(wc -l <"${target_out[$ask_pid]}")
    echo "$2" >&"${target_fd[$ask_pid]}" 2>/dev/null || return 0
    for tries in $(seq $((${3:-5} * 20))); do
        if [ "$(wc -l <"${target_out[$ask_pid]}")" -gt "$before" ]; then
            sed -n "$((before + 1))p" "${target_out[$ask_pid]}"
            return 0
        fi
        sleep 0.05
    done
}

# field LINE NAME: the value of NAME=value in a report line.
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# patch_metadata PATCH: the metadata JSON of a patch file
# (docs/patch-format.md: a 32-byte header whose bytes 16..19 hold its size).
patch_metadata() {
    head -c $((32 + $(od -An -t u4 -j 16 -N 4 "$1" | tr -d ' '))) "$1" | tail -c +33
}

# rewrite_patch IN OUT JQ-FILTER: a copy of a patch file whose metadata went
# through the filter (the container's header gets the new size), to make
# tampered or mismatching inputs. (Each slice is head then tail: a tail
# feeding head dies of SIGPIPE once the file is larger than a pipe's buffer,
# which pipefail and set -e would make the test's end.)
rewrite_patch() {
    local in=$1 out=$2 meta_size new_size
    meta_size=$(od -An -t u4 -j 16 -N 4 "$in" | tr -d ' ')
    head -c $((32 + meta_size)) "$in" | tail -c "$meta_size" | jq -c "$3" >"$scratch/meta.json"
    new_size=$(stat -c %s "$scratch/meta.json")
    {
        head -c 16 "$in"
        printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((new_size & 255)) $(((new_size >> 8) & 255)) \
            $(((new_size >> 16) & 255)) $(((new_size >> 24) & 255)))"
        head -c 32 "$in" | tail -c 12
        cat "$scratch/meta.json"
        tail -c +$((33 + meta_size)) "$in"
    } >"$out"
}

# --- sutured on a private D-Bus system bus --------------------------------
# start_private_system_bus [POLICY_XML]: a dbus-daemon with the system bus's
# rules for suture's name (data/org.suture.Suture1.conf), and POLICY_XML (more
# <policy> elements, e.g. who may own polkit's name); exports
# DBUS_SYSTEM_BUS_ADDRESS so suture and sutured use it.
start_private_system_bus() {
    local extra_policy=${1:-}
    command -v dbus-daemon >/dev/null || skip "needs dbus-daemon (package dbus)"
    cat >"$scratch/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=$scratch/bus</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
  $extra_policy
  <include>$SOURCE_ROOT/data/org.suture.Suture1.conf</include>
</busconfig>
EOF
    dbus-daemon --config-file="$scratch/bus.conf" --nofork --nopidfile 2>"$scratch/bus.log" &
    started_pids+=($!)
    for _ in $(seq 50); do [ -S "$scratch/bus" ] && break; sleep 0.1; done
    chmod 777 "$scratch/bus"
    export DBUS_SYSTEM_BUS_ADDRESS=unix:path=$scratch/bus
}

# start_sutured SUTURED [OPTIONS...]: starts the daemon with its state, feed
# configuration and cache in $scratch, waits until it owns its name, and sets
# daemon_pid. Its log ($scratch/sutured.log) has info lines; with
# SUTURED_VERBOSITY=-vv in the environment, debug lines too.
start_sutured() {
    local binary=$1 metrics=()
    shift
    # The metrics textfile in $scratch unless the test chooses one: never the
    # host's /var/lib/prometheus/node-exporter.
    [[ " $* " == *" --metrics-textfile "* ]] || metrics=(--metrics-textfile "$scratch/suture.prom")
    "$binary" ${SUTURED_VERBOSITY:--v} "$@" "${metrics[@]}" --state "$scratch/state.db" --config-dir "$scratch/etc" \
        --cache-dir "$scratch/cache" >>"$scratch/sutured.log" 2>&1 &
    daemon_pid=$!
    started_pids+=("$daemon_pid")
    # It takes its name after a first offline update of every process (the
    # boot case): seconds on a loaded host.
    for _ in $(seq 300); do
        timeout 5 busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" status org.suture.Suture1 \
            >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$scratch/sutured.log"
    fail_check "sutured did not take its bus name"
    finish
}

# traced_threads PID: how many threads of PID have a tracer (TracerPid != 0).
traced_threads() { grep -h TracerPid /proc/"$1"/task/*/status | awk '$2 != 0' | wc -l; }

# The fault-injection tests' checks after each kill of suture, for trial
# TRIAL; each fails the trial and returns 1 when the target was harmed.
# answered_after_kill PID TRIAL QUESTION: the target's answer, into `answer`.
answered_after_kill() {
    answer=$(ask "$1" "$3")
    if [ -z "$answer" ]; then
        fail_check "trial $2: the target did not answer after the kill"
        grep -E 'State|TracerPid' "/proc/$1/status" || echo "target gone"
        return 1
    fi
}

# untraced_after_kill PID TRIAL: no thread of the target is left traced.
untraced_after_kill() {
    local traced
    traced=$(traced_threads "$1")
    if [ "$traced" != 0 ]; then
        fail_check "trial $2: $traced threads still traced"
        return 1
    fi
}

# percentile P VALUES...: the P-th percentile of VALUES (nearest rank).
percentile() {
    local p=$1
    shift
    printf '%s\n' "$@" | sort -n | awk -v p="$p" '{ a[NR] = $1 } END { i = int((NR - 1) * p / 100 + 0.5) + 1; print a[i] }'
}

# first_line_of_error OUTPUT: "reason: first line of the message" of a
# failure document, else the output's first line.
first_line_of_error() { jq -r '"\(.error.reason): \(.error.message | split("\n")[0])"' <<<"$1" 2>/dev/null || head -n 1 <<<"$1"; }

# without_retired STATES: the comma-separated patch states of `suture status`
# without the retired ones ("none" when nothing else is left). A retired
# region is explained by its marker and unmapped by a later stop.
without_retired() {
    local state=${1//,retired/}
    state=${state//retired,/}
    [ "$state" = retired ] && state=none
    echo "$state"
}

# start_holder_fleet COUNT LIBRARY_DIR: COUNT hold-openssl processes that
# load libcrypto.so.3 and libssl.so.3 from LIBRARY_DIR, print "ready" and
# wait; sets fleet (their pids) and pid_args (--pid PID for each) once all
# are ready (a check says how many were).
start_holder_fleet() {
    local count=$1 library_dir=$2 _ pid
    fleet=()
    for _ in $(seq "$count"); do
        LD_LIBRARY_PATH=$library_dir "$HOLD_OPENSSL" libcrypto.so.3 libssl.so.3 </dev/null >>"$scratch/holders.out" 2>&1 &
        fleet+=($!)
        disown
        started_pids+=($!)
    done
    for _ in $(seq 600); do
        [ "$(grep -c '^ready' "$scratch/holders.out")" -ge "$count" ] && break
        sleep 0.1
    done
    check_eq "holders ready" "$count" "$(grep -c '^ready' "$scratch/holders.out")"
    pid_args=()
    for pid in "${fleet[@]}"; do
        pid_args+=(--pid "$pid")
    done
}

# Test patchsets served by a signed loopback feed (the health tests).
# pack_test_patchset ID CVE LIBRARY SONAME OBJECT REPLACEMENT: the patchset
# directory $scratch/patchsets/ID as suture-feed adds it: its patch packed
# by suture-pack from OBJECT against LIBRARY (a file of the archive's
# 3.0.20-1~deb12u2 build), replacing OLD=NEW, and its patchset.json
# (severity High).
pack_test_patchset() {
    local id=$1 cve=$2 library=$3 soname=$4 object=$5 replacement=$6
    local directory=$scratch/patchsets/$1 build_id
    build_id=$(build_id_of "$library")
    mkdir -p "$directory"
    "$SUTURE_PACK" --target "$library" --object "$object" --id "$id" --level 1 --consistency entry \
        --description "$test_name test patch $id" --replace "$replacement" -o "$directory/$id.suture" \
        >>"$scratch/pack.log" 2>&1 || { cat "$scratch/pack.log"; fail_check "suture-pack $id"; finish; }
    jq -n --arg id "$id" --arg cve "$cve" --arg build_id "$build_id" --arg soname "$soname" \
        --arg summary "$test_name test patch" '{
        format: "suture-patchset", format_version: 1, cve: $cve, severity: "High",
        summary: $summary, distribution: "debian-12",
        source_package: "openssl", source_version: "3.0.20-1~deb12u2",
        library: {package: "libssl3", path: ("/usr/lib/x86_64-linux-gnu/" + $soname),
                  soname: $soname, build_id: $build_id},
        patch_id: $id, level: 1, output: ($id + ".suture")}' >"$directory/patchset.json"
}
# test_feed ARGS...: suture-feed on the repository $scratch/repo (keys in
# $scratch/keys); a failure ends the test.
test_feed() {
    "$SUTURE_FEED" --repo "$scratch/repo" --keys "$scratch/keys" "$@" >>"$scratch/publisher.log" 2>&1 ||
        { cat "$scratch/publisher.log"; fail_check "suture-feed $*"; finish; }
}
# use_test_feed: $scratch/repo (initialized) as the only remote, its first
# root pinned, channel stable.
use_test_feed() {
    mkdir -p "$SUTURE_CONFIG_DIR/remotes.d" "$SUTURE_CONFIG_DIR/roots"
    cp "$scratch/repo/1.root.json" "$SUTURE_CONFIG_DIR/roots/test.json"
    printf '[remote]\nurl=file://%s/\nroot=%s\nchannel=stable\n' "$scratch/repo" \
        "$SUTURE_CONFIG_DIR/roots/test.json" >"$SUTURE_CONFIG_DIR/remotes.d/test.conf"
}

# --- the load-path tests (loadpath-*.sh) ------------------------------------
# Real servers from Debian's packages in one pinned bookworm rootfs (one
# package list, so the four tests share one cache entry: make-rootfs keys its
# cache by distribution and sorted package list, then by the pins), patched
# by sutured's gating paths as they start or load OpenSSL.
loadpath_packages=(apache2 ca-certificates curl postfix python3)
# The shipped patchset they use: CVE-2026-75803 replaces libcrypto's
# EVP_EncryptUpdate and EVP_DecryptUpdate, which every TLS 1.3 record goes
# through (tls13_enc calls EVP_CipherUpdate), so the servers run the patched
# code on every session.
loadpath_patchset=$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2/CVE-2026-75803
loadpath_patch_id=CVE-2026-75803

# loadpath_rootfs: sets rootfs (the pinned tree), work (a directory of this
# test inside it, removed at exit), inside (work as the rootfs sees it) and
# port (a loopback port); work gets key.pem and cert.pem, a self-signed
# P-256 certificate for localhost. Skips when the tree cannot be built.
loadpath_rootfs() {
    command -v debootstrap >/dev/null || skip "debootstrap is not installed"
    rootfs=$("$SOURCE_ROOT/containers/make-rootfs" --pin libssl3=3.0.20-1~deb12u2 debian-12 \
        "${loadpath_packages[@]}") || skip "cannot build the pinned bookworm rootfs (archive unreachable?)"
    work=$(mktemp -d "$rootfs/tmp/suture-$test_name-XXXXXX")
    removed_paths+=("$work")
    inside=${work#"$rootfs"}
    port=$((20000 + RANDOM % 20000))
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
        -addext basicConstraints=critical,CA:FALSE -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
    chmod 755 "$work"
    chmod 644 "$work/key.pem" "$work/cert.pem"
}

# needed_libraries ELF: its DT_NEEDED names, one a line.
needed_libraries() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }

# start_loadpath_sutured SUTURED: the shipped patchset published on a test
# feed (the only remote), refreshed into the cache, and sutured started on a
# private bus with --rescan-seconds 0 (no whole-host update at start and no
# rescan: whatever a process gets from here on came from a gating path, exec
# or dlopen) and --new-processes-under the rootfs (every program under test
# runs from it; other work's programs on the same archive libcrypto, such as
# another checkout's tests, are left alone).
start_loadpath_sutured() {
    test_feed init
    test_feed add "$loadpath_patchset"
    test_feed publish
    use_test_feed
    "$SUTURE" feed refresh >"$scratch/refresh.log" 2>&1 ||
        { cat "$scratch/refresh.log"; fail_check "suture feed refresh"; finish; }
    start_private_system_bus
    start_sutured "$1" --rescan-seconds 0 --new-processes-under "$rootfs"
    # sutured takes real-time priority (SCHED_FIFO) to win the race against
    # a new process's loader; where the kernel refuses it, it can lose that
    # race now and then (daemon-new-processes.sh saw 93 to 99 of 100 here).
    loadpath_realtime=no
    [ "$(awk '$1 == "policy" { print $3 }' "/proc/$daemon_pid/sched" 2>/dev/null)" = 1 ] &&
        loadpath_realtime=yes
    [ "$loadpath_realtime" = yes ] ||
        echo "NOTE: sutured has no real-time priority here (SCHED_FIFO refused): exec-path lines 'applied while running' are accepted, and how many were before main() is a figure"
}

# stop_sutured: SIGTERM, then prints the statistics line it logs at exit.
stop_sutured() {
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null || true
    echo "figures: $(grep -o 'sutured: new processes:.*' "$scratch/sutured.log" | tail -n 1 || true)"
}

# check_each_pid_logged DESCRIPTION PATTERN PID...: every PID has a line
# `sutured: [new ]pid PID (COMM): PATCH_ID PATTERN` in sutured's log (PATTERN
# an extended regular expression); one check, with the count and the PIDs
# that have none. An empty list fails: there was nothing to prove.
check_each_pid_logged() {
    local description=$1 pattern=$2 pid missing=()
    shift 2
    if [ $# -eq 0 ]; then
        fail_check "$description: no processes to check"
        return 0
    fi
    for pid in "$@"; do
        grep -qE "sutured: (new )?pid $pid \(.*\): [^ ]+ $pattern" "$scratch/sutured.log" || missing+=("$pid")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        pass "$description: all $# processes"
    else
        fail_check "$description: $(($# - ${#missing[@]})) of $# processes; none for pid ${missing[*]}"
        grep -E "sutured: (new )?pid (${missing[*]// /|}) " "$scratch/sutured.log" | head -n 5 || true
    fi
}

# applied_here PID: how many applies of the shipped patch to PID this test's
# sutured recorded (its state database). A `suture update` of other work on
# this host patches every matching process too, ours included; this tells
# whose patch a process carries.
applied_here() {
    sqlite3 "$scratch/state.db" "select count(*) from history where action = 'apply' and outcome = 'ok'
        and patch_id = '$loadpath_patch_id' and pid = $1"
}

# check_each_exec_gated DESCRIPTION PATH PID...: check_each_pid_logged for
# the exec gate's line with "(path: PATH)": applied before main(), or, where
# sutured has no real-time priority, before main() or while running (then
# how many were before main() is printed as a figure, not asserted).
check_each_exec_gated() {
    local description=$1 path=$2 pid before_main=0
    shift 2
    if [ "$loadpath_realtime" = yes ]; then
        check_each_pid_logged "$description" "applied before main\(\) \(path: $path\)" "$@"
        return 0
    fi
    check_each_pid_logged "$description (before main() or while running: no real-time priority)" \
        "applied (before main\(\)|while running) \(path: $path\)" "$@"
    for pid in "$@"; do
        grep -qE "sutured: new pid $pid \(.*\): [^ ]+ applied before main\(\) \(path: $path\)" \
            "$scratch/sutured.log" && before_main=$((before_main + 1))
    done
    echo "figures: $before_main of $# patched before main() (path: $path)"
}

# start_tls_hello_server VAR: tls-hello-server.py (Python's ssl module:
# `import ssl` dlopens _ssl, which needs libssl) in the rootfs on $port, in
# its own mount and PID namespaces; VAR gets its host PID once it listens.
start_tls_hello_server() {
    cp "$SOURCE_ROOT/test/integration/tls-hello-server.py" "$work/"
    chmod 644 "$work/tls-hello-server.py"
    start_in_rootfs "$1" "$rootfs" -- /usr/bin/python3 "$inside/tls-hello-server.py" "$port" \
        "$inside/cert.pem" "$inside/key.pem"
}

# publish_version_marker: a test feed ($scratch/repo, used as the only
# remote, its cache refreshed) with one patch for the system's libcrypto
# whose OpenSSL_version() returns $version_marker instead of the version;
# sets version_marker and system_libcrypto. Skips without a system
# libcrypto.so.3.
publish_version_marker() {
    system_libcrypto=$(readlink -f /usr/lib/x86_64-linux-gnu/libcrypto.so.3)
    [ -f "$system_libcrypto" ] || skip "no system libcrypto.so.3"
    pack_test_patchset test-version-marker CVE-2099-0301 "$system_libcrypto" libcrypto.so.3 \
        "${OPENSSL_VERSION_OBJECT:?}" OpenSSL_version=OpenSSL_version_suture_test
    test_feed init
    test_feed add "$scratch/patchsets/test-version-marker"
    test_feed publish
    use_test_feed
    "$SUTURE" feed refresh >/dev/null
    version_marker="OpenSSL patched by suture (test)"
}
