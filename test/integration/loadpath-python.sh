#!/usr/bin/env bash
# sutured patches a Python program when `import ssl` dlopens the _ssl
# extension (which needs libssl and libcrypto), before that dlopen returns
# ("path: dlopen"): python3 itself names no OpenSSL library, so the exec
# gate has nothing to do. tls-hello-server.py runs in the pinned bookworm
# rootfs (the archive's vulnerable libssl3 3.0.20-1~deb12u2) in its own
# mount and PID namespaces and prints "ready" once its TLS listener is
# wrapped; curl on the host does 10 handshakes. Without sutured first, then
# with it: every handshake must succeed, and the server must have sutured's
# dlopen-path line and carry the shipped patchset active (`suture status`).
#
# Usage (meson passes it): loadpath-python.sh SUTURED
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot, ptrace of python3"
: "${SUTURE_FEED:?}"
sutured=${1:?}
command -v curl >/dev/null || skip "needs curl"
loadpath_rootfs
handshakes=10

python=$(readlink -f "$rootfs/usr/bin/python3")
extension=$(ls "$rootfs"/usr/lib/python3*/lib-dynload/_ssl.*.so)
needed_libraries "$python" | grep -qE '^lib(ssl|crypto)\.so' &&
    fail_check "python3 names OpenSSL in its own DT_NEEDED: this test would not prove the dlopen path"
needed_libraries "$extension" | grep -qx libssl.so.3 &&
    pass "python3 reaches libssl.so.3 only by loading $(basename "$extension")" ||
    fail_check "$(basename "$extension") does not need libssl.so.3"

# handshake_loop NAME: $handshakes requests over TLS; checks all answered,
# prints the figures.
handshake_loop() {
    local answered started elapsed_ms
    started=$(date +%s%N)
    answered=$(count_answers "$handshakes" hello curl -fsSk --max-time 5 "https://127.0.0.1:$port/")
    elapsed_ms=$((($(date +%s%N) - started) / 1000000))
    check_eq "$1: handshakes answered" "$handshakes" "$answered"
    echo "figures: $1: $handshakes handshakes in $elapsed_ms ms"
}

# 1. Without sutured: the baseline.
start_tls_hello_server server
pass "the Python server is ready (pid $server)"
handshake_loop "without sutured"
kill -9 "$server"

# 2. With sutured: patched while it imports ssl.
start_loadpath_sutured "$sutured"
start_tls_hello_server server
handshake_loop "with sutured"
check_eq "the server carries $loadpath_patch_id active" active \
    "$(status_json "$server" | jq -r --argjson pid "$server" --arg id "$loadpath_patch_id" \
        '[.processes[] | select(.pid == $pid) | .patches[]? | select(.patch_id == $id) | .state] | first // "none"')"
check_eq "this test's sutured applied it to the server" 1 "$(applied_here "$server")"
grep -q "handshake failed\|session failed" "${target_out[$server]}" &&
    fail_check "the server logged failures: $(grep failed "${target_out[$server]}" | head -n 3)" ||
    pass "the server logged no failed handshake"
stop_sutured
check_each_pid_logged "the Python server patched as it dlopened _ssl" \
    "applied before its first call \(path: dlopen\)" "$server"
finish
