# shellcheck shell=bash
# Shared helpers for the integration tests: each test is a bash script that
# starts real processes, runs the real `suture` binary, and checks what it
# reports against what readelf/dpkg say independently.
#
# meson passes: SUTURE (the CLI), HOLD_OPENSSL (test/targets/hold-openssl),
# SOURCE_ROOT (top of the source tree).
set -euo pipefail

: "${SUTURE:?}" "${HOLD_OPENSSL:?}" "${SOURCE_ROOT:?}"
test_name=$(basename "$0" .sh)
scratch=$(mktemp -d "/tmp/suture-$test_name-XXXXXX")
chmod 755 "$scratch"
started_pids=()

cleanup() {
    local pid
    for pid in "${started_pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$scratch"
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
