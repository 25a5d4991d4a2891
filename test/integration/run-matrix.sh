#!/usr/bin/env bash
# The distribution matrix (containers/run-matrix): every Debian row runs here
# in a debootstrap'ed rootfs and must pass (suture identifies the rootfs's own
# libcrypto build and package); the rows that cannot run here (Ubuntu, RHEL)
# must say "not tested", never "passed".
source "$(dirname "$0")/lib.sh"
require_root "debootstrap and chroot"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
run 0 "run-matrix" env SUTURE="$SUTURE" "$SOURCE_ROOT/containers/run-matrix" --engine chroot --json
matrix=$output
jq -r '"\(.row): \(.result): \(.detail)"' <<<"$matrix"
for row in debian-11 debian-12 debian-13; do
    check_eq "$row" passed "$(jq -r --arg row "$row" 'select(.row == $row) | .result' <<<"$matrix")"
done
for row in ubuntu-22.04 ubuntu-24.04 rhel-9; do
    check_eq "$row" "not tested" "$(jq -r --arg row "$row" 'select(.row == $row) | .result' <<<"$matrix")"
done
check_eq "the debian-12 row lists the shipped patchsets" "$(grep -l "\"build_id\": \"7d90f38412d00023e58392b03612a24b62fcaede\"" "$SOURCE_ROOT"/patchsets/openssl/debian-12/*/*/patchset.json | xargs -n1 dirname | xargs -n1 basename | sort | paste -sd" " -)" \
    "$(jq -r 'select(.row == "debian-12") | .patchsets | join(" ")' <<<"$matrix")"
finish
