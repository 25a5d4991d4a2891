#!/usr/bin/env bash
# The fraction of Debian 12's libcrypto (3.0.20-1~deb12u2) that the builder
# can patch: every function of the library's symbol table (the rebuild's
# -dbgsym debug file), each tried alone by test/tools/patchable_probe.cpp
# with its C unit compiled the way suture-build compiles it (the build log's
# command line in build_shared/ plus -ffunction-sections -fdata-sections).
# Prints the fraction before issue 14 part 6 (no linker relaxations, 9-byte
# minimum, no callers for short functions) and now, what each new rule
# gained, and the reasons for the functions still refused, grouped.
#
# Usage: builder-patchable-fraction.sh [all]
#   default: a fixed sample of units (every 40th C unit of libcrypto, and
#            two that show a rule each), for the integration suite; the
#            fractions are over their functions
#   all:     every C unit (about 870 compiles: the slow suite)
# SUTURE_FRACTION_OBJECTS=DIR keeps the compiled objects there between runs.
# Needs suture-build's cached rebuild (run patchset-cve or suture-build once).
source "$(dirname "$0")/lib.sh"
: "${PATCHABLE_PROBE:?}"
mode=${1:-sample}
cache=${SUTURE_BUILD_CACHE:-/var/cache/suture-build}/debian-12/openssl/3.0.20-1~deb12u2
tree=/build/reproducible-path/openssl-3.0.20
library=$cache/archive/usr/lib/x86_64-linux-gnu/libcrypto.so.3
[ -f "$cache/rebuild/verified" ] && [ -f "$cache/rebuild/build.log" ] && [ -f "$library" ] ||
    skip "no verified rebuild of openssl 3.0.20-1~deb12u2 in $cache (suture-build makes it)"
[ -f "$tree/.suture-rebuild" ] && [ -d "$tree/build_shared" ] ||
    skip "no rebuilt tree at $tree (suture-build makes it)"

# 1. The debug symbols of the archive's libcrypto, from the rebuild's -dbgsym.
build_id=$(build_id_of "$library")
dpkg-deb -x "$(ls "$cache"/rebuild/debs/libssl3-dbgsym_*.deb)" "$scratch/dbgsym"
debug=$scratch/dbgsym/usr/lib/debug/.build-id/${build_id:0:2}/${build_id:2}.debug
[ -f "$debug" ] || { fail_check "no $debug in libssl3-dbgsym"; finish; }

# 2. The compile line of every C unit of libcrypto (libcrypto-shlib, and the
#    default provider and common objects linked into it), as suture-build
#    finds them: make was in build_shared/.
awk '
    /: Entering directory / { directory = $NF; gsub(/[\047`]/, "", directory); stack[++depth] = directory; next }
    /: Leaving directory / { if (depth > 0) depth--; next }
    depth > 0 && stack[depth] ~ /\/build_shared$/ && / -c -o / && $NF ~ /\.c$/ { print }' \
    "$cache/rebuild/build.log" |
    grep -E -- ' -c -o [^ ]*/(libcrypto-shlib|libdefault-lib|libcommon-lib)-[^ ]*\.o ' >"$scratch/lines" || true
if [ "$mode" != all ]; then
    # Every 40th unit, and two that show a rule each: cpuid.c reads
    # OPENSSL_ia32cap_P through a relaxed GOT load, bss_null.c has 1-byte
    # functions whose address its method table takes.
    awk 'NR % 40 == 1 || $NF == "../crypto/cpuid.c" || $NF == "../crypto/bio/bss_null.c"' \
        "$scratch/lines" >"$scratch/sample"
    mv "$scratch/sample" "$scratch/lines"
fi
echo "$(wc -l <"$scratch/lines") C units ($mode)"

# 3. Compile each (two at a time) with the package's flags plus sections.
objects=${SUTURE_FRACTION_OBJECTS:-$scratch/objects}
mkdir -p "$objects"
compile_one() {
    local line=$1 object name flags
    object=$(sed -E 's/.* -c -o ([^ ]*) .*/\1/' <<<"$line")
    name=${object//\//_}
    [ -s "$objects/$name" ] && return 0
    flags=${line#gcc }
    flags=${flags% -c -o *}
    flags=$(printf '%s' "$flags" | sed -e 's/ -MMD -MF [^ ]*//' -e 's/ -MT [^ ]*//')
    (cd "$tree/build_shared" && eval "gcc $flags -ffunction-sections -fdata-sections -c -o '$objects/$name.tmp' '${line##* }'") &&
        mv "$objects/$name.tmp" "$objects/$name"
}
export -f compile_one
export objects tree
started=$(date +%s)
tr '\n' '\0' <"$scratch/lines" | xargs -0 -P2 -n1 bash -c 'compile_one "$1"' _ ||
    fail_check "some units did not compile"
echo "figures: compiled in $(($(date +%s) - started)) s"
list=()
while read -r line; do
    object=$(sed -E 's/.* -c -o ([^ ]*) .*/\1/' <<<"$line")
    list+=("$objects/${object//\//_}")
done <"$scratch/lines"

# 4. Every function, alone.
started=$(date +%s)
sample_env=()
[ "$mode" = all ] || sample_env=(PROBE_SAMPLE=1)
if ! env "${sample_env[@]}" "$PATCHABLE_PROBE" "$library" "$debug" "${list[@]}" >"$scratch/probe.out" 2>"$scratch/probe.err"; then
    cat "$scratch/probe.err"
    fail_check "the probe failed"
    finish
fi
echo "figures: probed in $(($(date +%s) - started)) s"
cat "$scratch/probe.out"
fraction() { sed -n "s/^patchable $1: \([0-9]*\) of \([0-9]*\) functions.*/\1 \2/p" "$scratch/probe.out"; }
read -r before total < <(fraction before)
read -r now _ < <(fraction now)
[ "${total:-0}" -gt 0 ] && pass "$total functions tried" || fail_check "no functions tried"
[ "${now:-0}" -ge "${before:-0}" ] && pass "nothing the old rules patched is refused now" ||
    fail_check "fewer functions patchable now ($now) than before ($before)"
[ "${now:-0}" -gt "${before:-0}" ] && pass "the new rules patch more functions ($before -> $now)" ||
    fail_check "the new rules gained nothing ($before -> $now)"
grep -q '^ *[0-9]*  linker relaxation accepted' "$scratch/probe.out" &&
    pass "functions with a relaxed GOT load are patchable" || fail_check "no relaxation accepted"
grep -q '^ *[0-9]*  5-8 bytes, no endbr64' "$scratch/probe.out" &&
    pass "5-8-byte functions are patchable" || fail_check "no 5-8-byte function patched"
grep -q 'too short for the entry jump, and it cannot be patched through its callers: its address is taken' "$scratch/probe.out" &&
    pass "short functions whose address is taken are refused, saying so" ||
    fail_check "no precise refusal of a short function whose address is taken"
if [ "$mode" = all ]; then
    symbols=$(readelf -sW "$debug" | awk '$4 == "FUNC" && $3 != "0" && $7 != "UND"' | awk '{ print $2 }' | sort -u | wc -l)
    check_eq "functions tried = the symbol table's functions (distinct addresses)" "$symbols" "$total"
fi
finish
