#!/usr/bin/env bash
# A process using the system's own libssl/libcrypto is reported with the
# build IDs readelf gives for those files, and the package the index (or
# nothing, for a build the archive no longer offers) names.
source "$(dirname "$0")/lib.sh"

hold pid "" libssl.so.3
json=$(status_json "$pid")

for soname in libssl.so.3 libcrypto.so.3; do
    path=$(library "$json" "$pid" "$soname" path)
    [ -n "$path" ] || { fail_check "$soname not reported for pid $pid"; continue; }
    mapped=$(awk -v p="$path" '$6 == p { print $6; exit }' "/proc/$pid/maps")
    check_eq "$soname path is what maps shows" "$path" "$mapped"
    check_eq "$soname build ID" "$(build_id_of "$path")" "$(library "$json" "$pid" "$soname" build_id)"
    check_eq "$soname deleted" false "$(library "$json" "$pid" "$soname" deleted)"
    check_eq "$soname replaced" false "$(library "$json" "$pid" "$soname" replaced)"
    expected_package=$(jq -r -s --arg id "$(build_id_of "$path")" \
        '[.[].builds[] | select(.build_id == $id) | "\(.package) \(.version)"] | first // ""' \
        "$SOURCE_ROOT"/distro-support/*/builds.json)
    actual_package=$(library "$json" "$pid" "$soname" 'package | if . == null then "" else "\(.name) \(.version)" end')
    check_eq "$soname package (from the index, empty if unknown)" "$expected_package" "$actual_package"
done

# The version string is the one the library itself returns from OpenSSL_version().
check_eq "libcrypto version_text" "$(sed -n 's/^loaded libssl.so.3: //p' "$scratch"/holder-*.out)" \
    "$(library "$json" "$pid" libcrypto.so.3 version_text)"
check_eq "libssl has no version string of its own" null "$(library "$json" "$pid" libssl.so.3 version)"
finish
