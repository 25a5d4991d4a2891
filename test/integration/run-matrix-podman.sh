#!/usr/bin/env bash
# The distribution matrix in real podman containers (containers/run-matrix
# --engine podman, with the project's containers/containers.conf through
# CONTAINERS_CONF): every Debian row's image is imported from its
# debootstrap'ed rootfs, a long-running openssl runs in a container of it,
# and suture on the host identifies its libcrypto and (debian-12, whose
# build has shipped patchsets) applies and reverts a patch by host PID. The
# Ubuntu and RHEL rows must say "not tested".
#
# Then the proof that a patch changes what the container's process runs:
# the CVE-2026-63076 reproducer (built here against bookworm's OpenSSL, so
# it runs on the debian-12 image's own libcrypto 3.0.20-1~deb12u2) in a
# podman container; `suture status` on the host names its build, package,
# container and exposure; `suture apply --pid HOSTPID` turns its probe from
# VULNERABLE to FIXED, `suture revert` back.
#
# Usage (meson passes it): run-matrix-podman.sh REPRODUCER_63076
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/exposure-lib.sh"
require_root "podman as root, debootstrap, ptrace"
: "${SUTURE_FEED:?}"
reproducer=${1:?}
command -v podman >/dev/null && command -v runc >/dev/null ||
    skip "needs podman and runc (apt install podman runc; scripts/install-deps has them)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
export CONTAINERS_CONF=$SOURCE_ROOT/containers/containers.conf
podman info >/dev/null 2>"$scratch/podman-info.err" ||
    { cat "$scratch/podman-info.err"; fail_check "podman info fails with $CONTAINERS_CONF"; finish; }

# 1. The matrix.
run 0 "run-matrix --engine podman" env SUTURE="$SUTURE" "$SOURCE_ROOT/containers/run-matrix" --engine podman --json
matrix=$output
jq -r '"\(.row): \(.result): \(.detail)"' <<<"$matrix"
row_field() { jq -r --arg row "$1" "select(.row == \$row) | .$2" <<<"$matrix"; }
for row in debian-11 debian-12 debian-13; do
    check_eq "$row" passed "$(row_field "$row" result)"
    check_eq "$row ran in" podman "$(row_field "$row" engine)"
done
grep -q "applied and reverted by host pid" <<<"$(row_field debian-12 detail)" &&
    pass "debian-12: a patch applied and reverted by host pid" ||
    fail_check "debian-12: $(row_field debian-12 detail)"
for row in ubuntu-22.04 ubuntu-24.04 rhel-9; do
    check_eq "$row" "not tested" "$(row_field "$row" result)"
done

# 2. Advisory data for the shipped patchsets, so status shows exposure.
exposure_feed
coverage_input "$scratch/coverage.json"
only_shipped_patches "$scratch/coverage.json" "$scratch/patchable.json"
publish_advisories "$scratch/patchable.json"

# 3. The reproducer in a container of run-matrix's debian-12 image.
image=$(podman image ls --sort created --format '{{.Repository}}:{{.Tag}}' localhost/suture-matrix-debian-12 | head -n 1)
[ -n "$image" ] || { fail_check "no debian-12 image after run-matrix"; finish; }
container=suture-test-reproducer-$$
start_program client -- podman run -i --rm --network none --name "$container" \
    -v "$reproducer:/usr/local/bin/reproducer:ro" "$image" /usr/local/bin/reproducer
stop_container() { podman rm -f "$container" >/dev/null 2>&1 || true; }
trap 'stop_container; cleanup' EXIT
target=$(podman inspect -f '{{.State.Pid}}' "$container")
target_fd[$target]=${target_fd[$client]}
target_out[$target]=${target_out[$client]}
check_eq "the container's process is not the podman client" false "$([ "$target" = "$client" ] && echo true || echo false)"
check_eq "before: the reproducer in the container" VULNERABLE "$(ask "$target" probe)"

run 27 "suture status of the container's process (exposed)" "$SUTURE" status --json --pid "$target"
json=$output
check_eq "its libcrypto build" 7d90f38412d00023e58392b03612a24b62fcaede "$(library "$json" "$target" libcrypto.so.3 build_id)"
check_eq "the build ID of the image's file" "$(build_id_of "/proc/$target/root/usr/lib/x86_64-linux-gnu/libcrypto.so.3")" \
    "$(library "$json" "$target" libcrypto.so.3 build_id)"
check_eq "its package" "libssl3 3.0.20-1~deb12u2" \
    "$(library "$json" "$target" libcrypto.so.3 'package | "\(.name) \(.version)"')"
check_eq "seen as in another mount namespace" true \
    "$(jq -r --argjson pid "$target" '.processes[] | select(.pid == $pid) | .other_mount_namespace' <<<"$json")"
check_eq "exposure" exposed "$(jq -r --argjson pid "$target" '.processes[] | select(.pid == $pid) | .exposure' <<<"$json")"
check_eq "CVE-2026-63076 open with a live patch" "open CVE-2026-63076" \
    "$(jq -r --argjson pid "$target" '.processes[] | select(.pid == $pid) | .cves[] | select(.id == "CVE-2026-63076") | "\(.state) \(.patch_id)"' <<<"$json")"

patch=$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2/CVE-2026-63076/CVE-2026-63076.suture
run 0 "suture apply by host pid" "$SUTURE" --direct apply --pid "$target" "$patch"
check_eq "after apply: the reproducer in the container" FIXED "$(ask "$target" probe)"
run 27 "suture status after apply (the other CVEs stay open)" "$SUTURE" status --json --pid "$target"
check_eq "status: CVE-2026-63076 active" active \
    "$(jq -r --argjson pid "$target" '.processes[] | select(.pid == $pid) | .patches[] | select(.patch_id == "CVE-2026-63076") | .state' <<<"$output")"
check_eq "status: CVE-2026-63076 patched" patched \
    "$(jq -r --argjson pid "$target" '.processes[] | select(.pid == $pid) | .cves[] | select(.id == "CVE-2026-63076") | .state' <<<"$output")"
run 0 "suture revert by host pid" "$SUTURE" --direct revert --pid "$target" CVE-2026-63076
check_eq "after revert: the reproducer in the container" VULNERABLE "$(ask "$target" probe)"
check_eq "the process survived it all" "$target" "$(podman inspect -f '{{.State.Pid}}' "$container")"
finish
