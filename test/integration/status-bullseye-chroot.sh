#!/usr/bin/env bash
# A process inside a debootstrap'ed Debian 11 (bullseye) root filesystem, in
# its own mount and PID namespaces (the container stand-in on machines without
# a container engine), loading bullseye's own libssl1.1. suture runs on the
# host and must report the container's copy: its build ID (as readelf gives
# it for the file inside the rootfs) and the package version installed there.
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot and unshare"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"

rootfs=$("$SOURCE_ROOT/containers/make-rootfs" debian-11 openssl) ||
    skip "cannot build the bullseye rootfs (archive unreachable?)"

# openssl enc blocks reading its stdin (a fifo we hold open): a long-running
# process that maps libssl.so.1.1 and libcrypto.so.1.1 from the rootfs.
marker="suture-$test_name-$$"
mkfifo "$scratch/stdin"
unshare --mount --pid --fork --kill-child \
    chroot "$rootfs" openssl enc -aes-128-cbc -pbkdf2 -pass "pass:$marker" -out /dev/null \
    <"$scratch/stdin" &
started_pids+=($!)
exec {hold_stdin}>"$scratch/stdin"

pid=""
for _ in $(seq 100); do
    for candidate in $(pgrep -x openssl || true); do
        if grep -qa "$marker" "/proc/$candidate/cmdline" 2>/dev/null &&
            grep -q 'libcrypto.so.1.1' "/proc/$candidate/maps" 2>/dev/null; then
            pid=$candidate
        fi
    done
    [ -n "$pid" ] && break
    sleep 0.1
done
[ -n "$pid" ] || { fail_check "openssl did not start in the bullseye rootfs"; exit 1; }
started_pids+=("$pid")

json=$(status_json "$pid")
echo "$json" | jq -c '.processes[0].libraries[] | {soname, build_id, version, package: .package.version}'
installed=$(dpkg-query --admindir="$rootfs/var/lib/dpkg" -W -f '${Version}' libssl1.1)
check_eq "process is in another mount namespace" true \
    "$(jq -r --argjson pid "$pid" '.processes[] | select(.pid == $pid) | .other_mount_namespace' <<<"$json")"
for soname in libssl.so.1.1 libcrypto.so.1.1; do
    check_eq "$soname path (inside the container)" "/usr/lib/x86_64-linux-gnu/$soname" \
        "$(library "$json" "$pid" "$soname" path)"
    check_eq "$soname build ID" "$(build_id_of "$rootfs/usr/lib/x86_64-linux-gnu/$soname")" \
        "$(library "$json" "$pid" "$soname" build_id)"
    check_eq "$soname package" "libssl1.1 $installed debian-11" \
        "$(library "$json" "$pid" "$soname" 'package | "\(.name) \(.version) \(.distribution)"')"
done
check_eq "libcrypto.so.1.1 version" "1.1.1w" "$(library "$json" "$pid" libcrypto.so.1.1 version)"
# The host has no libssl.so.1.1 at that path: the container's copy is not
# mistaken for a deleted or replaced file.
check_eq "libcrypto.so.1.1 not replaced" false "$(library "$json" "$pid" libcrypto.so.1.1 replaced)"

# With an index that does not know bullseye's builds, the libraries are
# named from the container's own dpkg database (the host has no libssl1.1).
mkdir -p "$scratch/index-without-debian-11"
cp -r "$SOURCE_ROOT/distro-support/debian-12" "$scratch/index-without-debian-11/"
json=$("$SUTURE" --distro-support "$scratch/index-without-debian-11" status --json --pid "$pid" || true)
check_eq "unknown to this index" null "$(library "$json" "$pid" libcrypto.so.1.1 package)"
check_eq "named from the container's dpkg database" "libssl1.1 $installed false" \
    "$(library "$json" "$pid" libcrypto.so.1.1 'installed_package | "\(.name) \(.version) \(.in_archive_index)"')"
exec {hold_stdin}>&-
finish
