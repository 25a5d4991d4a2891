#!/usr/bin/env bash
# Every refusal of `suture apply`/`revert` has its own exit status and a
# message that names the problem, and changes nothing in the target.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

says() {
    grep -q -- "$1" <<<"$errors" && pass "message says '$1'" || fail_check "message lacks '$1': $errors"
}

start_target pid -- 2
v1=$(ask "$pid" report | cut -d' ' -f1-5)

run 4 "no such process" "$SUTURE" apply --pid 1073741 "$DEMO_PATCH_V2"
says "pid 1073741"

hold holder "" libcrypto.so.3
run 6 "library not mapped" "$SUTURE" apply --pid "$holder" "$DEMO_PATCH_V2"
says "does not map libsuture-demo.so"

start_target other env "LD_LIBRARY_PATH=$DEMO_OTHER_BUILD_DIR" -- 2
run 7 "another build of the library" "$SUTURE" apply --pid "$other" "$DEMO_PATCH_V2"
says "the patch is for build"

rewrite_patch "$DEMO_PATCH_V2" "$scratch/wrong-hash.patch" \
    '.functions[1].sha256 = ("0" * 64)'
run 8 "fingerprint mismatch" "$SUTURE" apply --pid "$pid" "$scratch/wrong-hash.patch"
says "demo_compute at 0x"
says "bytes differ"

echo "not a patch" >"$scratch/garbage.patch"
run 11 "a file that is no patch" "$SUTURE" apply --pid "$pid" "$scratch/garbage.patch"
says "not a suture patch file"
head -c 200 "$DEMO_PATCH_V2" >"$scratch/truncated.patch"
run 11 "a truncated patch" "$SUTURE" apply --pid "$pid" "$scratch/truncated.patch"
rewrite_patch "$DEMO_PATCH_V2" "$scratch/undefined.patch" '.imports |= map(select(.symbol != "strtol"))'
run 11 "an import left out of the metadata" "$SUTURE" apply --pid "$pid" "$scratch/undefined.patch"
says "undefined symbol strtol"
run 1 "a patch file that does not exist" "$SUTURE" apply --pid "$pid" "$scratch/missing.patch"

run 13 "revert of a patch that is not applied" "$SUTURE" revert --pid "$pid" demo-fix
says "is not applied"
run 2 "apply without a patch file" "$SUTURE" apply --pid "$pid"

check_eq "after all refusals the target still runs version 1" "$v1" "$(ask "$pid" report | cut -d' ' -f1-5)"
check_eq "no suture region was left behind" 0 \
    "$(awk '$2 == "r-xp" && $5 == 0 && $6 == ""' "/proc/$pid/maps" | wc -l)"
grep -q '^State:.*\(S\|R\)' "/proc/$pid/status" && pass "target not left stopped" ||
    fail_check "target state: $(grep State "/proc/$pid/status")"
check_eq "no thread is left traced" 0 \
    "$(traced_threads "$pid")"
finish
