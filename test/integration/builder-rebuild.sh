#!/usr/bin/env bash
# The slow builder test (meson -Dslow_tests=true): suture-build rebuilds
# Debian's openssl source package from scratch at the reproducible path,
# checks the archive's libraries byte for byte, and re-creates a committed
# patch byte for byte; then a second patchset on the cached rebuild. Prints
# both times. Uses its own cache, so the rebuild really happens.
source "$(dirname "$0")/lib.sh"
require_root "installing build dependencies and writing /build/reproducible-path"
: "${SUTURE_BUILD:?}"
patchsets=$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2
cache=$scratch/cache

started=$(date +%s)
if ! "$SUTURE_BUILD" --verify --cache "$cache" "$patchsets/CVE-2026-63076" >"$scratch/first.out" 2>&1; then
    cat "$scratch/first.out"
    grep -q 'cannot fetch' "$scratch/first.out" && skip "the Debian archive is not reachable"
    fail_check "suture-build --verify CVE-2026-63076 from a fresh rebuild"
    finish
fi
first=$(($(date +%s) - started))
grep -E 'rebuilt in|verified' "$scratch/first.out"
grep -q "byte-identical to the archive's (build ID 7d90f38412d00023e58392b03612a24b62fcaede)" "$scratch/first.out" &&
    pass "the rebuild's libcrypto is the archive's, byte for byte" ||
    fail_check "no byte-for-byte check of libcrypto in the output"
grep -q "verified: the rebuilt patch is byte-identical" "$scratch/first.out" &&
    pass "CVE-2026-63076 re-created byte for byte" || fail_check "CVE-2026-63076 not re-created"

started_ns=$(date +%s%N)
"$SUTURE_BUILD" --verify --cache "$cache" "$patchsets/CVE-2026-63072" >"$scratch/second.out" 2>&1 &&
    pass "CVE-2026-63072 re-created byte for byte on the cached rebuild" ||
    { cat "$scratch/second.out"; fail_check "CVE-2026-63072 on the cached rebuild"; }
second_ms=$((($(date +%s%N) - started_ns) / 1000000))
grep -q "using the cached rebuild" "$scratch/second.out" && pass "the second patchset used the cached rebuild" ||
    fail_check "the second patchset rebuilt the package again"
echo "figures: fresh rebuild + first patchset ${first} s; second patchset on the cached rebuild ${second_ms} ms"
finish
