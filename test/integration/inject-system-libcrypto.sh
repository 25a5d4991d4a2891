#!/usr/bin/env bash
# The system's real libcrypto in a real process: OpenSSL_version() is
# replaced by a test patch (built at build time against this very library by
# suture-pack) and reverted again.
source "$(dirname "$0")/lib.sh"
require_root "ptrace and /proc/PID/mem of another process"

out="$scratch/holder.out"
mkfifo "$scratch/holder.in"
"$HOLD_OPENSSL" libcrypto.so.3 <"$scratch/holder.in" >"$out" 2>&1 &
pid=$!
started_pids+=("$pid")
exec {holder_in}>"$scratch/holder.in"
wait_for_line "$out" "^ready " || { cat "$out"; fail_check "holder did not start"; exit 1; }
version() {
    local before
    before=$(wc -l <"$out")
    echo version >&"$holder_in"
    for _ in $(seq 100); do
        [ "$(wc -l <"$out")" -gt "$before" ] && { tail -n 1 "$out"; return; }
        sleep 0.05
    done
}
original=$(version)
case "$original" in OpenSSL\ 3.*) pass "before: $original" ;; *) fail_check "before: $original" ;; esac

json=$("$SUTURE" apply --json --pid "$pid" "$SYSTEM_OPENSSL_PATCH")
check_eq "applied to libcrypto" test-openssl-version "$(jq -r .patch_id <<<"$json")"
check_eq "OpenSSL_version() now returns the patched text" "OpenSSL patched by suture (test)" "$(version)"
status=$("$SUTURE" status --json --pid "$pid")
check_eq "status names the patch on the libcrypto build" \
    "$(jq -r '.processes[0].libraries[] | select(.soname == "libcrypto.so.3") | .build_id' <<<"$status")" \
    "$(jq -r '.processes[0].patches[0].target_build_id' <<<"$status")"
"$SUTURE" revert --pid "$pid" test-openssl-version >/dev/null
check_eq "after revert: the original text" "$original" "$(version)"
finish
