#!/usr/bin/env bash
# A superseded build that a patchset targets is in the build index and named
# by `suture status`: a process in a Debian 13 (trixie) root filesystem,
# in its own mount and PID namespaces, loading 3.5.7-1~deb13u2 (replaced in
# the archive's Packages indexes by 3.5.7-1~deb13u3, its .deb still in the
# pool; the build debian-13/3.5.7-1~deb13u2/CVE-2026-75805 is for). Before
# generate-index indexed such builds, suture called it "unknown build".
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot and unshare"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"

version=3.5.7-1~deb13u2
libdir=/usr/lib/x86_64-linux-gnu
check_eq "the index has $version as superseded (no suite offers it)" "true []" \
    "$(jq -c --arg v "$version" '[.builds[] | select(.version == $v)] | "\(.[0].superseded) \(.[0].suites)"' -r \
        "$SOURCE_ROOT/distro-support/debian-13/builds.json")"

rootfs=$("$SOURCE_ROOT/containers/make-rootfs" debian-13 gcc libc6-dev libssl-dev) ||
    skip "cannot build the trixie rootfs (archive unreachable?)"
work=$(mktemp -d "$rootfs/tmp/suture-$test_name-XXXXXX")
removed_paths+=("$work")
inside=${work#"$rootfs"}
fetch_archive_package debian-13 libssl3t64 "$version" "$work/archive"
cp "$SOURCE_ROOT/test/targets/hold-openssl.c" "$work/"
chroot "$rootfs" gcc -O2 -o "$inside/hold-openssl" "$inside/hold-openssl.c" -ldl >"$scratch/cc.log" 2>&1 ||
    { cat "$scratch/cc.log"; fail_check "hold-openssl does not compile in the trixie rootfs"; exit 1; }

start_in_rootfs pid "$rootfs" "LD_LIBRARY_PATH=$inside/archive$libdir" -- \
    "$inside/hold-openssl" libssl.so.3 libcrypto.so.3
json=$(status_json "$pid")
for soname in libssl.so.3 libcrypto.so.3; do
    check_eq "$soname build ID" "$(build_id_of "$work/archive$libdir/$soname")" \
        "$(library "$json" "$pid" "$soname" build_id)"
    check_eq "$soname package" "debian-13 libssl3t64 $version" \
        "$(library "$json" "$pid" "$soname" 'package | "\(.distribution) \(.name) \(.version)"')"
done
run 0 "suture status" "$SUTURE" status --pid "$pid"
echo "$output"
grep -q "debian-13 libssl3t64 $version" <<<"$output" && pass "the table names the build" ||
    fail_check "suture status does not name debian-13 libssl3t64 $version"
grep -q "unknown build" <<<"$output" && fail_check "suture status says unknown build" ||
    pass "no unknown build"
finish
