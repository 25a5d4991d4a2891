#!/usr/bin/env bash
# A committed patchset, proven on a live process: its reproducer runs linked
# against the *archive's* library (the downloaded .deb, not the rebuild) and
# exercises the vulnerable code path with the crafted input. The patch turns
# VULNERABLE into FIXED in that same running process, revert turns it back,
# and the API's normal workload keeps working throughout. A patchset.json
# with "fixed_version" (the distribution's own build that carries the fix)
# also runs the reproducer on that build first: it must say FIXED there, so
# the probe tells the bug apart and the patch behaves like the package update.
#
# Usage (meson passes it): patchset-cve.sh PATCHSET_DIR [REPRODUCER_BINARY]
#
# Without REPRODUCER_BINARY (patchsets for another release than the host's),
# the test runs in a debootstrap'ed root filesystem of the patchset's release
# in new mount and PID namespaces, the container stand-in: the reproducer is
# compiled there by that release's gcc against its libssl-dev, and runs there
# on the archive's library; suture patches it from the host.
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the reproducer"

patchset=${1:?patchset directory}
reproducer=${2:-}
manifest=$patchset/patchset.json
cve=$(jq -r .cve "$manifest")
patch=$patchset/$(jq -r .output "$manifest")
build_id=$(jq -r .library.build_id "$manifest")
soname=$(jq -r .library.soname "$manifest")
echo "$cve: $(jq -r .summary "$manifest")"

distro=$(jq -r .distribution "$manifest")
rootfs=""
work=$scratch
if [ -z "$reproducer" ]; then
    command -v debootstrap >/dev/null || skip "debootstrap is not installed"
    rootfs=$("$SOURCE_ROOT/containers/make-rootfs" "$distro" gcc libc6-dev libssl-dev) ||
        skip "cannot build the $distro rootfs (archive unreachable?)"
    work=$(mktemp -d "$rootfs/tmp/suture-$test_name-XXXXXX")
    removed_paths+=("$work")
fi
fetch_archive_package "$distro" "$(jq -r .library.package "$manifest")" \
    "$(jq -r .source_version "$manifest")" "$work/archive"
library_dir=$work/archive$(dirname "$(jq -r .library.path "$manifest")")
check_eq "the archive's $soname build ID" "$build_id" "$(build_id_of "$library_dir/$soname")"
check_eq "the committed patch is for that build" "$build_id" \
    "$(tail -c +33 "$patch" | head -c "$(od -An -t u4 -j 16 -N 4 "$patch" | tr -d ' ')" | jq -r .target.build_id)"

if [ -n "$rootfs" ]; then
    # Paths as the rootfs sees them. The reproducer is compiled in a copy of
    # patchsets/openssl/, with that directory on the include path as meson
    # has it: it includes reproducer-harness.h (and may include another
    # patchset's reproducer by its relative path).
    inside=${work#"$rootfs"}
    cp -r "$SOURCE_ROOT/patchsets/openssl" "$work/patchsets"
    source_file=${patchset#"$SOURCE_ROOT/patchsets/openssl/"}/$(jq -r .reproducer "$manifest")
    chroot "$rootfs" gcc -O2 -Wall -I "$inside/patchsets" -o "$inside/reproducer" "$inside/patchsets/$source_file" -Wl,--as-needed -lssl -lcrypto \
        >"$scratch/compile.log" 2>&1 || { cat "$scratch/compile.log"; fail_check "the reproducer does not compile in the $distro rootfs"; exit 1; }
fi

# start_reproducer VAR LIBRARY_DIR: the reproducer on the libraries in
# LIBRARY_DIR (a path on this machine), on the host or in the rootfs.
start_reproducer() {
    if [ -z "$rootfs" ]; then
        start_program "$1" "LD_LIBRARY_PATH=$2" -- "$reproducer"
        return
    fi
    start_in_rootfs "$1" "$rootfs" "LD_LIBRARY_PATH=${2#"$rootfs"}" -- "$inside/reproducer"
    check_eq "the reproducer runs in its own PID namespace (PID 1 there)" 1 \
        "$(awk '/^NSpid:/ { print $NF }' "/proc/${!1}/status")"
}

# A patchset whose one probe takes long (patchset.json "probe_seconds": the
# longest one probe may take, e.g. a gigabyte input the library reads
# character by character) is asked once per step, and waited for that long.
probe_seconds=$(jq -r '.probe_seconds // 5' "$manifest")
[[ $probe_seconds =~ ^[1-9][0-9]{0,2}$ ]] ||
    { fail_check "patchset.json probe_seconds: expected whole seconds, 1-999, not '$probe_seconds'"; finish; }
slow_probe=false
if [ "$probe_seconds" != 5 ]; then
    slow_probe=true
    echo "one probe may take up to $probe_seconds s (patchset.json probe_seconds): one probe per step"
fi

# probe_times N EXPECTED [PID]: the crafted input N times in a row (once
# for a slow probe).
probe_times() {
    local i answer rounds=$1
    $slow_probe && rounds=1
    for i in $(seq "$rounds"); do
        answer=$(ask "${3:-$pid}" probe "$probe_seconds")
        if [ "$answer" != "$2" ]; then
            fail_check "probe $i: expected $2, got '$answer'"
            return
        fi
    done
    pass "$rounds probes: $2"
}
workload() { check_eq "a valid workload of the patched API ($1)" OK "$(ask "${2:-$pid}" workload)"; }

fixed_version=$(jq -r '.fixed_version // empty' "$manifest")
if [ -n "$fixed_version" ]; then
    fetch_archive_package "$distro" "$(jq -r .library.package "$manifest")" "$fixed_version" "$work/fixed"
    start_reproducer fixed_pid "$work/fixed$(dirname "$(jq -r .library.path "$manifest")")"
    check_eq "the second reproducer maps $soname of $fixed_version" \
        "$(build_id_of "$work/fixed$(jq -r .library.path "$manifest")")" \
        "$(library "$(status_json "$fixed_pid")" "$fixed_pid" "$soname" build_id)"
    echo "on the distribution's fixed build $fixed_version:"
    probe_times 3 FIXED "$fixed_pid"
    workload "on $fixed_version" "$fixed_pid"
fi

start_reproducer pid "$library_dir"
status=$(status_json "$pid")
check_eq "the reproducer maps the archive's $soname" "$build_id" \
    "$(library "$status" "$pid" "$soname" build_id)"

probe_times 3 VULNERABLE
workload "before"

run 0 "suture apply" "$SUTURE" apply --pid "$pid" "$patch"
echo "$output"  # what apply reports, e.g. how long the threads were stopped
probe_times 5 FIXED
workload "patched"
check_eq "status shows the patch active" active \
    "$(status_json "$pid" | jq -r --argjson pid "$pid" --arg id "$cve" \
        '.processes[] | select(.pid == $pid) | .patches[] | select(.patch_id == $id) | .state')"

run 0 "suture revert" "$SUTURE" revert --pid "$pid" "$cve"
probe_times 3 VULNERABLE
workload "reverted"

run 0 "suture apply again" "$SUTURE" apply --pid "$pid" "$patch"
probe_times 3 FIXED
workload "patched again"
check_eq "the reproducer is still the same live process" \
    "$(awk '/^NSpid:/ { print $NF }' "/proc/$pid/status")" "$(ask "$pid" pid)"
finish
