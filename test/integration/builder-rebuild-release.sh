#!/usr/bin/env bash
# The slow builder test for a release other than the host's (meson
# -Dslow_tests=true): suture-build rebuilds the patchset's source package from
# scratch inside a debootstrap'ed root filesystem of its release, with that
# release's toolchain, checks the archive's libraries byte for byte, and
# re-creates the committed patch byte for byte. Prints the time. Uses its own
# cache, so the rebuild really happens.
#
# Usage (meson passes it): builder-rebuild-release.sh PATCHSET_DIR
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot and the build root"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
: "${SUTURE_BUILD:?}"
patchset=${1:?patchset directory}
manifest=$patchset/patchset.json
build_id=$(jq -r .library.build_id "$manifest")
cve=$(jq -r .cve "$manifest")

started=$(date +%s)
if ! "$SUTURE_BUILD" --verify --cache "$scratch/cache" "$patchset" >"$scratch/build.out" 2>&1; then
    cat "$scratch/build.out"
    grep -q 'cannot fetch\|cannot make a' "$scratch/build.out" && skip "the Debian archive is not reachable"
    fail_check "suture-build --verify $cve from a fresh rebuild"
    finish
fi
seconds=$(($(date +%s) - started))
grep -E 'build root|rebuilt in|verified' "$scratch/build.out"
grep -q "using a $(jq -r .distribution "$manifest") root filesystem as the build root" "$scratch/build.out" &&
    pass "built inside the release's own root filesystem" || fail_check "not built in the release's rootfs"
grep -q "byte-identical to the archive's (build ID $build_id)" "$scratch/build.out" &&
    pass "the rebuild's $(jq -r .library.soname "$manifest") is the archive's, byte for byte" ||
    fail_check "no byte-for-byte check of the patched library in the output"
grep -q "verified: the rebuilt patch is byte-identical" "$scratch/build.out" &&
    pass "$cve re-created byte for byte" || fail_check "$cve not re-created"
echo "figures: $(jq -r .distribution "$manifest") rebuild + patch ${seconds} s (the rootfs is cached)"
finish
