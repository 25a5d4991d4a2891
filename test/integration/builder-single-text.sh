#!/usr/bin/env bash
# A function the package build's assembler sized otherwise than a compile
# with -ffunction-sections can: in the file's single .text, jump_target's
# tail call to its static neighbour helper is a 2-byte jump; in its own
# section it is a 5-byte jump with a relocation, so the -ffunction-sections
# compile of the unchanged source is 3 bytes longer than the library's
# function and cannot prove it. suture-make-patch
#   - refuses the fix with the two usual objects, saying why;
#   - proves the function against a third object, the unit compiled with
#     the package build's flags alone, and builds the patch, which changes
#     what the live process computes (its call to helper reaches the
#     library's) until it is reverted;
#   - refuses a third object whose bytes are not the library's (compiled
#     from other source), naming both mismatches.
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the target"
: "${SUTURE_MAKE_PATCH:?}"
cd "$scratch"

cat >unit.c <<'EOF'
#define KEEP __attribute__((noipa))
KEEP static int helper(int x) { return x * 7 + 1; }
KEEP int jump_target(int x) { if (x > 100) return helper(x - 100); return x + 1; }
EOF
sed -e 's/return x + 1;/return x + 2;/' unit.c >unit-fixed.c
cat >target.c <<'EOF'
#include <stdio.h>
#include <string.h>
int jump_target(int);
int main(void) {
    char line[64];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof line, stdin)) {
        if (strncmp(line, "values", 6) == 0) {
            printf("small=%d large=%d\n", jump_target(1), jump_target(101));
        }
    }
    return 0;
}
EOF
# The package build: one .text per file. The builder's compiles: one
# section per function.
package_flags=(-c -fPIC -O2 -fcf-protection=none)
gcc "${package_flags[@]}" -o unit-single.o unit.c
gcc "${package_flags[@]}" -o unit-fixed-single.o unit-fixed.c
gcc "${package_flags[@]}" -ffunction-sections -fdata-sections -o unit.o unit.c
gcc "${package_flags[@]}" -ffunction-sections -fdata-sections -o unit-fixed.o unit-fixed.c
gcc -shared -Wl,--build-id -Wl,-soname,libsingle.so -o libsingle.so unit-single.o
gcc -O2 -o target target.c -L. -lsingle -Wl,-rpath,"$scratch"
size_of() { readelf -sW "$1" | awk -v name="$2" '$8 == name { print $3; exit }'; }
library_size=$(size_of libsingle.so jump_target)
sections_size=$(size_of unit.o jump_target)
((sections_size > library_size)) &&
    pass "jump_target is $sections_size bytes in its own section, $library_size in the library" ||
    fail_check "jump_target: $sections_size bytes in its own section, $library_size in the library: the test's premise does not hold"

make_patch() {
    "$SUTURE_MAKE_PATCH" --library libsingle.so --debug-symbols libsingle.so --id single-fix "$@"
}
run 1 "two objects: refused" make_patch --unit unit.o:unit-fixed.o -o refused.patch
grep -q "jump_target is $sections_size bytes, the library's $library_size" <<<"$errors" &&
    pass "the refusal names the sizes" || fail_check "unexpected refusal: $errors"
[ ! -e refused.patch ] && pass "nothing written" || fail_check "refused.patch was written"

run 0 "with the single-.text compile: built" make_patch --unit unit.o:unit-fixed.o:unit-single.o -o single.patch
echo "$output"
grep -q "proven   jump_target: $sections_size bytes with -ffunction-sections, $library_size as the package build compiled it" <<<"$output" &&
    pass "the report says how jump_target was proven" || fail_check "no single-.text proof reported"
check_eq "replaced" "jump_target/$library_size" \
    "$(patch_metadata single.patch | jq -r '[.functions[] | "\(.symbol)/\(.size)"] | join(" ")')"

run 1 "a single-.text object of other source: refused" \
    make_patch --unit unit.o:unit-fixed.o:unit-fixed-single.o -o other.patch
grep -q "jump_target is $sections_size bytes, the library's $library_size.*(and the single-.text compile unit-fixed-single.o differs too: " <<<"$errors" &&
    pass "the refusal names both mismatches" || fail_check "unexpected refusal: $errors"
run 2 "a fourth object is a usage error" make_patch --unit unit.o:unit-fixed.o:unit-single.o:x.o -o x.patch

start_program pid -- ./target
before="small=2 large=8"
check_eq "before the patch" "$before" "$(ask "$pid" values)"
run 0 "apply" "$SUTURE" apply --pid "$pid" single.patch
check_eq "patched (the call to helper reaches the library's)" "small=3 large=8" "$(ask "$pid" values)"
run 0 "revert" "$SUTURE" revert --pid "$pid" single-fix
check_eq "reverted" "$before" "$(ask "$pid" values)"
finish
