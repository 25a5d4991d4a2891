#!/usr/bin/env bash
# A committed patchset, proven on a live process: its reproducer runs linked
# against the *archive's* library (the downloaded .deb, not the rebuild) and
# exercises the vulnerable code path with the crafted input. The patch turns
# VULNERABLE into FIXED in that same running process, revert turns it back,
# and the API's normal workload keeps working throughout.
#
# Usage (meson passes it): patchset-cve.sh PATCHSET_DIR REPRODUCER_BINARY
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the reproducer"

patchset=${1:?patchset directory}
reproducer=${2:?reproducer binary}
manifest=$patchset/patchset.json
cve=$(jq -r .cve "$manifest")
patch=$patchset/$(jq -r .output "$manifest")
build_id=$(jq -r .library.build_id "$manifest")
soname=$(jq -r .library.soname "$manifest")
echo "$cve: $(jq -r .summary "$manifest")"

fetch_archive_package "$(jq -r .distribution "$manifest")" "$(jq -r .library.package "$manifest")" \
    "$(jq -r .source_version "$manifest")" "$scratch/archive"
library_dir=$scratch/archive$(dirname "$(jq -r .library.path "$manifest")")
check_eq "the archive's $soname build ID" "$build_id" "$(build_id_of "$library_dir/$soname")"
check_eq "the committed patch is for that build" "$build_id" \
    "$(tail -c +33 "$patch" | head -c "$(od -An -t u4 -j 16 -N 4 "$patch" | tr -d ' ')" | jq -r .target.build_id)"

start_program pid "LD_LIBRARY_PATH=$library_dir" -- "$reproducer"
status=$(status_json "$pid")
check_eq "the reproducer maps the archive's $soname" "$build_id" \
    "$(library "$status" "$pid" "$soname" build_id)"

# probe_times N EXPECTED: the crafted input N times in a row.
probe_times() {
    local i answer
    for i in $(seq "$1"); do
        answer=$(ask "$pid" probe)
        if [ "$answer" != "$2" ]; then
            fail_check "probe $i: expected $2, got '$answer'"
            return
        fi
    done
    pass "$1 probes: $2"
}
workload() { check_eq "a valid workload of the patched API ($1)" OK "$(ask "$pid" workload)"; }

probe_times 3 VULNERABLE
workload "before"

"$SUTURE" apply --pid "$pid" "$patch" >"$scratch/apply.out" 2>&1
check_eq "suture apply exit status" 0 "$?"
cat "$scratch/apply.out"
probe_times 5 FIXED
workload "patched"
check_eq "status shows the patch active" active \
    "$(status_json "$pid" | jq -r --argjson pid "$pid" --arg id "$cve" \
        '.processes[] | select(.pid == $pid) | .patches[] | select(.patch_id == $id) | .state')"

"$SUTURE" revert --pid "$pid" "$cve" >/dev/null
check_eq "suture revert exit status" 0 "$?"
probe_times 3 VULNERABLE
workload "reverted"

"$SUTURE" apply --pid "$pid" "$patch" >/dev/null
check_eq "suture apply again" 0 "$?"
probe_times 3 FIXED
workload "patched again"
check_eq "the reproducer is still the same live process" "$pid" "$(ask "$pid" pid)"
finish
