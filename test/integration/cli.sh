#!/usr/bin/env bash
# The command line: help, version, usage errors and failures map onto the
# documented exit statuses with messages that say what is wrong.
source "$(dirname "$0")/lib.sh"

run() { # run EXPECTED_STATUS DESCRIPTION ARGS...: output in $output
    local expected=$1 description=$2 status=0
    shift 2
    output=$("$SUTURE" "$@" 2>&1) || status=$?
    check_eq "$description: exit status" "$expected" "$status"
}

run 0 "--help" --help
grep -q "Exit status:" <<<"$output" && pass "--help documents exit statuses" || fail_check "--help lacks exit statuses"
run 0 "status --help" status --help
grep -q -- "--json" <<<"$output" && pass "status --help lists --json" || fail_check "status --help lacks --json"
run 0 "--version" --version
check_eq "--version text" "suture $(sed -n "s/^  version : '\(.*\)',$/\1/p" "$SOURCE_ROOT/meson.build")" "$output"
run 2 "no subcommand"
run 2 "unknown option" status --no-such-option
run 2 "--pid not a number" status --pid abc
run 2 "--distro-support not a directory" --distro-support /nonexistent status

mkdir "$scratch/empty"
run 1 "empty build index directory" --distro-support "$scratch/empty" status
grep -q "no \*/builds.json" <<<"$output" && pass "says no index found" || fail_check "unclear message: $output"

mkdir -p "$scratch/broken/debian-99"
echo '{"format": "suture-build-index", "format_version": 1' >"$scratch/broken/debian-99/builds.json"
run 1 "malformed build index" --distro-support "$scratch/broken" status
grep -q "debian-99/builds.json" <<<"$output" && pass "names the malformed file" || fail_check "unclear message: $output"

status=0
json=$("$SUTURE" status --json --pid 1073741823) || status=$?
check_eq "a PID that does not exist: exit status" 3 "$status"
check_eq "a PID that does not exist: reason" not_found "$(jq -r '.unreadable[0].reason' <<<"$json")"

hold pid "" libcrypto.so.3
status=0
"$SUTURE" status --json --pid "$pid" >/dev/null || status=$?
check_eq "a readable PID: exit status" 0 "$status"
finish
