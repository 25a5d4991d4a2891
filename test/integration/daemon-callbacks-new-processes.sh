#!/usr/bin/env bash
# A patch with a callback (pre_apply) reaches new processes before main():
# sutured cannot run a callback inside the dynamic loader (its lock is
# held, libc is not initialised yet), so a start caught at the open of its
# libcrypto (the library-open watch) is parked at its entry point as well,
# let out of the loader, and patched there with the callback run. A program
# linked against the system libcrypto, and one that reaches it through a
# library of its own, print what OpenSSL_version() says at their first
# call: every start must print the patch's text, and sutured must log each
# as applied before main(), none failed. A dlopen() gets it once its loader
# is done (while running). Prints the added time per start against the
# same starts without sutured (a figure, never asserted).
#
# Usage (meson passes it): daemon-callbacks-new-processes.sh SUTURED
source "$(dirname "$0")/lib.sh"
require_root "fanotify permission events and ptrace"
: "${SUTURE_FEED:?}" "${SUTURE_PACK:?}" "${OPENSSL_VERSION_CALLBACKS_OBJECT:?}" "${HOLD_OPENSSL:?}"
: "${FIRST_CALL_DIRECT:?}" "${FIRST_CALL_TRANSITIVE:?}"
sutured=${1:?}
runs=10
start_private_system_bus
export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
export SUTURE_FEED_CACHE=$scratch/cache

libcrypto=$(readlink -f /usr/lib/x86_64-linux-gnu/libcrypto.so.3)
[ -f "$libcrypto" ] || skip "no system libcrypto.so.3"
patch=test-version-callbacks
marker="OpenSSL patched by suture (test, with a callback)"
pack_test_patchset "$patch" CVE-2099-0311 "$libcrypto" libcrypto.so.3 \
    "$OPENSSL_VERSION_CALLBACKS_OBJECT" OpenSSL_version=OpenSSL_version_suture_callbacks
test_feed init
test_feed add "$scratch/patchsets/$patch"
test_feed publish
use_test_feed
"$SUTURE" feed refresh >/dev/null

# starts PROGRAM: how many of `runs` starts printed the marker.
starts() { count_answers "$runs" "$marker" "$1"; }

started=$(date +%s%N)
check_eq "without sutured: no start patched" 0 "$(starts "$FIRST_CALL_DIRECT")"
baseline_ms=$((($(date +%s%N) - started) / 1000000))

start_sutured "$sutured" --rescan-seconds 0
grep -q "patching libraries loaded later" "$scratch/sutured.log" ||
    { cat "$scratch/sutured.log"; fail_check "sutured does not watch library opens"; finish; }
started=$(date +%s%N)
check_eq "direct: $runs starts patched at their first call" "$runs" "$(starts "$FIRST_CALL_DIRECT")"
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
check_eq "transitive: $runs starts patched at their first call" "$runs" "$(starts "$FIRST_CALL_TRANSITIVE")"
# logged_before_main PROGRAM: how many of its starts sutured logs as patched
# before main(), once all `runs` are logged (sutured logs an apply after it
# has let the process go: up to 10 s).
logged_before_main() {
    local count=0 tries
    for tries in $(seq 100); do
        count=$(grep -c "($1): $patch applied before main()" "$scratch/sutured.log" || true)
        [ "$count" -ge "$runs" ] && break
        sleep 0.1
    done
    echo "$count"
}
for program in first-call-dire first-call-tran; do
    check_eq "$program: sutured logs every start as applied before main()" "$runs" \
        "$(logged_before_main "$program")"
done
check_eq "no apply failed" "" "$(grep "$patch failed" "$scratch/sutured.log" | head -n 3)"
echo "figures: $runs starts with sutured $elapsed_ms ms, without $baseline_ms ms:" \
    "$(((elapsed_ms - baseline_ms) * 1000 / runs)) us more per start (park, patch with its callback, release)"

# A dlopen(): the loader is held; the patch follows once it is done.
sleep 3 | HOLD_UNTIL_STDIN_EOF=1 timeout 30 "$HOLD_OPENSSL" "$libcrypto" >"$scratch/hold.out" 2>&1 &
loader_pid=$!
wait_for_line "$scratch/sutured.log" "(hold-openssl): $patch " ||
    fail_check "sutured says nothing of the dlopen"
wait "$loader_pid" || true
check_eq "dlopen: the patch went in once the loader was done" "applied while running" \
    "$(grep -o "(hold-openssl): $patch [a-z ]*" "$scratch/sutured.log" | sed "s/(hold-openssl): $patch //; s/ *$//" | head -n 1)"
check_eq "sutured still answers" 0 "$(kill -0 "$daemon_pid" 2>/dev/null; echo $?)"
finish
