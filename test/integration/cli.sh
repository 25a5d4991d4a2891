#!/usr/bin/env bash
# The command line: help, version, usage errors and failures map onto the
# documented exit statuses with messages that say what is wrong.
source "$(dirname "$0")/lib.sh"

run 0 "--help" "$SUTURE" --help
grep -q "Exit status:" <<<"$output" && pass "--help documents exit statuses" || fail_check "--help lacks exit statuses"
# 23-25 are the state database's and the lock's; a callback's refusal is 26.
grep -q "^  23  another suture operation is running" <<<"$output" &&
    pass "--help: 23 is another operation holding the lock" || fail_check "--help: 23 is not the lock"
grep -q "^  26  the patch's pre_apply or pre_revert callback refused" <<<"$output" &&
    pass "--help: 26 is a callback's refusal" || fail_check "--help: 26 is not a callback's refusal"
grep -q "^  27  status: some process is open to a CVE" <<<"$output" &&
    pass "--help: 27 is status's exposed" || fail_check "--help: 27 is not status's exposed"
run 0 "status --help" "$SUTURE" status --help
grep -q -- "--json" <<<"$output" && pass "status --help lists --json" || fail_check "status --help lacks --json"
run 0 "--version" "$SUTURE" --version
check_eq "--version text" "suture $(sed -n "s/^  version : '\(.*\)',$/\1/p" "$SOURCE_ROOT/meson.build")" "$output"
# Start-up loads only what every command needs: libcurl comes at the first
# download, libsystemd when the CLI first looks for sutured (dlopen).
loaded=$(LD_TRACE_LOADED_OBJECTS=1 "$SUTURE" 2>&1)
grep -q "libc.so.6" <<<"$loaded" || fail_check "the loader's list of the CLI's libraries is empty: $loaded"
for library in libcurl.so libsystemd.so libstdc++.so; do
    grep -q "$library" <<<"$loaded" && fail_check "suture loads $library at every start" ||
        pass "suture does not load $library at start"
done
# Its exceptions unwind with the unwinder linked in, not libunwind.so's
# exported _Unwind_* (CLI11 ends --version with one).
bindings=$(LD_DEBUG=bindings "$SUTURE" --version 2>&1 >/dev/null)
grep -q "normal symbol .__libc_start_main" <<<"$bindings" ||
    fail_check "LD_DEBUG=bindings shows no bindings at all: $(head -n 3 <<<"$bindings")"
grep -q "to .*libunwind[^ ]* .*symbol ._Unwind_" <<<"$bindings" &&
    fail_check "exceptions unwind through libunwind.so: $(grep -m 2 "_Unwind_" <<<"$bindings")" ||
    pass "exceptions unwind with the unwinder linked in (no _Unwind_* bound to libunwind.so)"
run 2 "no subcommand" "$SUTURE"
run 2 "unknown option" "$SUTURE" status --no-such-option
run 2 "--pid not a number" "$SUTURE" status --pid abc
run 2 "--distro-support not a directory" "$SUTURE" --distro-support /nonexistent status

mkdir "$scratch/empty"
run 1 "empty build index directory" "$SUTURE" --distro-support "$scratch/empty" status
grep -q "no \*/builds.json" <<<"$errors" && pass "says no index found" || fail_check "unclear message: $errors"

mkdir -p "$scratch/broken/debian-99"
echo '{"format": "suture-build-index", "format_version": 1' >"$scratch/broken/debian-99/builds.json"
run 1 "malformed build index" "$SUTURE" --distro-support "$scratch/broken" status
grep -q "debian-99/builds.json" <<<"$errors" && pass "names the malformed file" || fail_check "unclear message: $errors"

run 3 "a PID that does not exist" "$SUTURE" status --json --pid 1073741823
check_eq "a PID that does not exist: reason" not_found "$(jq -r '.unreadable[0].reason' <<<"$output")"

hold pid "" libcrypto.so.3
run 0 "a readable PID" "$SUTURE" status --json --pid "$pid"

# A comm is any bytes (a program's file name): JSON output replaces invalid
# UTF-8 instead of aborting (it used to end with exit 134).
start_not_utf8 odd
run 0 "status of a process whose comm is not UTF-8" "$SUTURE" status --json --pid "$odd"
check_eq "its comm, invalid bytes replaced" $'\xef\xbf\xbd\xef\xbf\xbdsleep' \
    "$(jq -r '.processes[0].comm' <<<"$output")"
finish
