#!/usr/bin/env bash
# sutured patches curl before main(), though curl reaches libssl only
# through libcurl.so.4 (its own DT_NEEDED names no OpenSSL library): the
# exec gate's dependency closure ("path: transitive"). curl runs 30 times in
# the pinned bookworm rootfs (chroot: the archive's vulnerable libssl3
# 3.0.20-1~deb12u2) against tls-hello-server.py there. Without sutured
# first, then with it: no run may fail, and every curl PID must have
# sutured's line that the shipped patchset was applied to it before main()
# (or while running, where sutured has no real-time priority: lib.sh
# check_each_exec_gated).
# The median time per run of both, and the difference (what parking and
# patching add to an exec), are printed (figures, never assertions).
#
# SUTURE_CURL_RUNS (default 30) sets the number of runs.
#
# Usage (meson passes it): loadpath-curl.sh SUTURED
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot, ptrace of curl"
: "${SUTURE_FEED:?}"
sutured=${1:?}
runs=${SUTURE_CURL_RUNS:-30}
loadpath_rootfs

needed_libraries "$rootfs/usr/bin/curl" | grep -qE '^lib(ssl|crypto)\.so' &&
    fail_check "curl names OpenSSL in its own DT_NEEDED: this test would not prove the transitive path"
needed_libraries "$(readlink -f "$rootfs/usr/lib/x86_64-linux-gnu/libcurl.so.4")" | grep -qx libssl.so.3 &&
    pass "curl reaches libssl.so.3 only through libcurl.so.4" ||
    fail_check "libcurl.so.4 does not need libssl.so.3"

# The server starts before sutured: only curl is under test here.
start_tls_hello_server server

# curl_loop NAME: $runs runs of the rootfs's curl, one after another; checks
# that none failed; sets curl_pids and run_ms (per run, in ms).
curl_loop() {
    local failed=0 started answer pid _
    curl_pids=()
    run_ms=()
    for _ in $(seq "$runs"); do
        started=$(date +%s%N)
        # In the background only to learn its PID: chroot execs curl in it.
        chroot "$rootfs" /usr/bin/curl -fsSk --max-time 5 -o "$inside/answer" "https://127.0.0.1:$port/" \
            2>>"$scratch/curl.err" &
        pid=$!
        wait "$pid" && answer=$(cat "$work/answer") || answer=""
        run_ms+=($((($(date +%s%N) - started) / 1000000)))
        curl_pids+=("$pid")
        [ "$answer" = hello ] || failed=$((failed + 1))
        rm -f "$work/answer"
    done
    check_eq "$1: failed runs of $runs" 0 "$failed"
    [ "$failed" = 0 ] || tail -n 5 "$scratch/curl.err"
}

# 1. Without sutured: the baseline, after one run that fills the page cache
# (else the first runs make the baseline's median the slower one).
chroot "$rootfs" /usr/bin/curl -fsSk --max-time 5 -o /dev/null "https://127.0.0.1:$port/" ||
    fail_check "the warm-up run of curl failed"
curl_loop "without sutured"
baseline_median=$(percentile 50 "${run_ms[@]}")

# 2. With sutured: every run parked at its entry and patched.
start_loadpath_sutured "$sutured"
curl_loop "with sutured"
patched_median=$(percentile 50 "${run_ms[@]}")
echo "figures: a curl run, median of $runs: $baseline_median ms without sutured, $patched_median ms with it" \
    "($((patched_median - baseline_median)) ms added per exec)"
stop_sutured
check_each_exec_gated "curl runs patched through libcurl" transitive "${curl_pids[@]}"
finish
