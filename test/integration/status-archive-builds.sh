#!/usr/bin/env bash
# Processes running Debian 12's archive builds 3.0.17-1~deb12u2 and
# 3.0.20-1~deb12u2, each loaded from its own directory, report the build ID
# readelf gives for those very files and the package version they came from.
source "$(dirname "$0")/lib.sh"

libdir=usr/lib/x86_64-linux-gnu
declare -A pids
for version in 3.0.17-1~deb12u2 3.0.20-1~deb12u2; do
    fetch_archive_package debian-12 libssl3 "$version" "$scratch/$version"
    hold "pids[$version]" "$scratch/$version/$libdir" libssl.so.3
done

json=$(status_json "${pids[@]}")
for version in "${!pids[@]}"; do
    pid=${pids[$version]}
    for soname in libssl.so.3 libcrypto.so.3; do
        file="$scratch/$version/$libdir/$soname"
        check_eq "$version $soname path" "$file" "$(library "$json" "$pid" "$soname" path)"
        check_eq "$version $soname build ID" "$(build_id_of "$file")" \
            "$(library "$json" "$pid" "$soname" build_id)"
        check_eq "$version $soname package" "libssl3 $version" \
            "$(library "$json" "$pid" "$soname" 'package | "\(.name) \(.version)"')"
        check_eq "$version $soname distribution" debian-12 \
            "$(library "$json" "$pid" "$soname" package.distribution)"
    done
    check_eq "$version libcrypto version" "${version%%-*}" "$(library "$json" "$pid" libcrypto.so.3 version)"
done
# The two builds are told apart (a patch made for one must never match the other).
[ "$(library "$json" "${pids[3.0.17-1~deb12u2]}" libcrypto.so.3 build_id)" != \
  "$(library "$json" "${pids[3.0.20-1~deb12u2]}" libcrypto.so.3 build_id)" ] &&
    pass "3.0.17 and 3.0.20 have different build IDs" || fail_check "3.0.17 and 3.0.20 build IDs equal"
finish
