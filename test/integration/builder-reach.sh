#!/usr/bin/env bash
# What the builder reaches on a library built like bookworm's libcrypto
# (C without endbr64, its globals made local by a version script, so the
# linker relaxes their GOT loads to lea): one patch from suture-make-patch
# that replaces
#   - reach_read, whose GOT load of shared_state the linker relaxed to lea,
#   - reach_five (5 bytes) and reach_eight (8 bytes): the jump at offset 0,
#   - reach_zero (3 bytes, static) through its two callers,
# applied to a live process changes what each computes, and the revert
# restores it. The injector refuses a 5-8-byte function that starts with
# endbr64 (no room for the jump after it) even when the patch claims one.
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the target"
: "${SUTURE_MAKE_PATCH:?}" "${SUTURE_PACK:?}"
cd "$scratch"

# 1. The library, its fix, and a target that prints what the functions return.
cat >reach.c <<'EOF'
extern int shared_state;
#define KEEP __attribute__((noipa))
KEEP int reach_read(int x) { return shared_state * 2 + x; }
KEEP long reach_five(long x) { return x + 1; }
KEEP int reach_eight(int x) { return x * 9 + 100000; }
KEEP static int reach_zero(void) { return 0; }
KEEP int reach_use_zero(int x) { return reach_zero() + x * 3; }
KEEP int reach_use_zero_too(int x) { return reach_zero() - x; }
EOF
sed -e 's/shared_state \* 2/shared_state * 3/' -e 's/return x + 1;/return x + 2;/' \
    -e 's/100000/200000/' -e 's/return 0; }/return 7; }/' reach.c >reach-fixed.c
echo 'int shared_state = 21;' >state.c
echo '{ global: reach_*; local: *; };' >reach.map
cat >reach-target.c <<'EOF'
#include <stdio.h>
#include <string.h>
int reach_read(int), reach_eight(int), reach_use_zero(int), reach_use_zero_too(int);
long reach_five(long);
int main(void) {
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "values", 6) == 0) {
            printf("read=%d five=%ld eight=%d zero=%d zero_too=%d\n", reach_read(1), reach_five(1),
                   reach_eight(1), reach_use_zero(1), reach_use_zero_too(1));
        }
    }
    return 0;
}
EOF
compile() { gcc -c -fPIC -O2 -ffunction-sections -fdata-sections "$@"; }
compile -fcf-protection=none -o reach.o reach.c
compile -fcf-protection=none -o reach-fixed.o reach-fixed.c
compile -fcf-protection=none -o state.o state.c
gcc -shared -Wl,--build-id -Wl,-soname,libreach.so -Wl,--version-script=reach.map \
    -o libreach.so reach.o state.o
gcc -O2 -o reach-target reach-target.c -L. -lreach -Wl,-rpath,"$scratch"
disassembly=$(objdump -d libreach.so)
[ "$(grep -A1 '<reach_read>:' <<<"$disassembly" | grep -c 'lea ')" = 1 ] &&
    pass "the library reads shared_state through lea (the linker relaxed the GOT load)" ||
    fail_check "no relaxed lea in reach_read: the test's premise does not hold"

# 2. The patch.
run 0 "suture-make-patch builds the patch" "$SUTURE_MAKE_PATCH" --library libreach.so \
    --debug-symbols libreach.so --unit reach.o:reach-fixed.o --id reach-fix -o reach.patch
echo "$output"
grep -q 'relaxed  reach_read +0x1: mov GOT -> lea' <<<"$output" &&
    pass "the report names the relaxation" || fail_check "no relaxation reported"
grep -q 'short    reach_zero (3 bytes): through reach_use_zero, reach_use_zero_too' <<<"$output" &&
    pass "the report says which callers stand in for reach_zero" ||
    fail_check "no stand-in callers reported"
check_eq "replaced functions" "reach_eight/8 reach_five/5 reach_read/13 reach_use_zero/17 reach_use_zero_too/12" \
    "$(patch_metadata reach.patch | jq -r '[.functions[] | "\(.symbol)/\(.size)"] | sort | join(" ")')"

# 3. Live: before, patched, reverted.
start_program pid -- ./reach-target
before="read=43 five=2 eight=100009 zero=3 zero_too=-1"
check_eq "before the patch" "$before" "$(ask "$pid" values)"
run 0 "apply" "$SUTURE" apply --pid "$pid" reach.patch
check_eq "patched" "read=64 five=3 eight=200009 zero=10 zero_too=6" "$(ask "$pid" values)"
run 0 "revert" "$SUTURE" revert --pid "$pid" reach-fix
check_eq "reverted" "$before" "$(ask "$pid" values)"

# 4. The injector's own rule: a function starting with endbr64 needs 9
#    bytes. A library compiled with it, a patch for its 9-byte reach_five
#    rewritten to claim 8 bytes (with the hash of those 8): refused.
compile -fcf-protection=full -o reach-ibt.o reach.c
compile -fcf-protection=full -o state-ibt.o state.c
mkdir ibt
gcc -shared -Wl,--build-id -Wl,-soname,libreach.so -Wl,--version-script=reach.map \
    -o ibt/libreach.so reach-ibt.o state-ibt.o
echo 'long reach_five_v2(long x) { return x + 2; }' >five.c
compile -fcf-protection=full -fno-asynchronous-unwind-tables -o five.o five.c
run 0 "suture-pack for the endbr64 build's 9-byte reach_five" "$SUTURE_PACK" --target ibt/libreach.so \
    --object five.o --id reach-ibt --level 1 --replace reach_five=reach_five_v2 -o ibt.patch
offset=$(patch_metadata ibt.patch | jq -r '.functions[0].offset')
file_offset=
while read -r type load_offset vaddr _ filesz _; do
    if [ "$type" = LOAD ] && ((vaddr <= offset && offset < vaddr + filesz)); then
        file_offset=$((offset - vaddr + load_offset))
    fi
done < <(readelf -lW ibt/libreach.so)
[ -n "$file_offset" ] || { fail_check "reach_five at $offset is in no LOAD segment"; finish; }
# (head then tail: a tail feeding head dies of SIGPIPE, which pipefail and
# set -e would make the test's end.)
sha=$(head -c $((file_offset + 8)) ibt/libreach.so | tail -c 8 | sha256sum | cut -d' ' -f1)
rewrite_patch ibt.patch ibt-8.patch ".functions[0].size = 8 | .functions[0].sha256 = \"$sha\""
start_program ibt_pid LD_LIBRARY_PATH="$scratch/ibt" -- ./reach-target
check_eq "the endbr64 build before" "$before" "$(ask "$ibt_pid" values)"
run 0 "the 9-byte function with endbr64 takes the jump after it" "$SUTURE" apply --pid "$ibt_pid" ibt.patch
check_eq "patched after the endbr64" "read=43 five=3 eight=100009 zero=3 zero_too=-1" "$(ask "$ibt_pid" values)"
run 0 "revert" "$SUTURE" revert --pid "$ibt_pid" reach-ibt
run 11 "a claimed 8-byte function with endbr64 is refused" "$SUTURE" apply --pid "$ibt_pid" ibt-8.patch
grep -q 'reach_five at 0x[0-9a-f]*: 8 bytes starting with endbr64 cannot hold a 5-byte jump after it' <<<"$errors" &&
    pass "the refusal says why" || fail_check "unexpected refusal: $errors"
check_eq "unchanged after the refusal" "$before" "$(ask "$ibt_pid" values)"
finish
