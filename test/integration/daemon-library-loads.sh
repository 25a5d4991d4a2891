#!/usr/bin/env bash
# sutured patches a library a process loads later, before its first call:
# hold-openssl dlopen()s the system's real libcrypto and calls
# OpenSSL_version() right after dlopen() returns. With a test patch of
# OpenSSL_version() in the feed, every run must print the patched text from
# that first call (the loader was held, patched, let go: LoadHold.h). Before
# sutured runs, the same runs print the real version, which shows the count
# can fail. Also: starts of programs that need libcrypto directly and
# through a library are caught at the open too; a program that only reads
# the file is let go unharmed; a dlopen from a second thread, or in a
# process started by vfork() + exec, is caught the same way; sutured killed while
# it holds a loader leaves the process to go on by itself, unpatched and
# alive, within the hold's bound; the added time per dlopen is printed (a
# figure, never asserted).
#
# Usage (meson passes it): daemon-library-loads.sh SUTURED
source "$(dirname "$0")/lib.sh"
require_root "fanotify permission events and ptrace"
: "${SUTURE_FEED:?}" "${SUTURE_PACK:?}" "${OPENSSL_VERSION_OBJECT:?}" "${HOLD_OPENSSL:?}"
: "${FIRST_CALL_DIRECT:?}" "${FIRST_CALL_TRANSITIVE:?}" "${SECCOMP_EXEC:?}"
sutured=${1:?}
runs=${SUTURE_LIBRARY_LOAD_RUNS:-30}
start_private_system_bus
export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
export SUTURE_FEED_CACHE=$scratch/cache

publish_version_marker
patch=test-version-marker
libcrypto=$system_libcrypto
marker=$version_marker

# first_call [ARGS...]: what hold-openssl's first OpenSSL_version() call
# said, right after its dlopen() of the system libcrypto.
first_call() {
    echo | HOLD_UNTIL_STDIN_EOF=1 timeout 30 "$HOLD_OPENSSL" "$@" "$libcrypto" 2>&1 | sed -n 's/^loaded [^:]*: //p' | head -n 1
}
# count_patched N [ARGS...]: runs it N times, prints how many saw the patch.
count_patched() {
    local count=$1
    shift
    count_answers "$count" "$marker" first_call "$@"
}

started=$(date +%s%N)
check_eq "without sutured: $runs dlopen()s, none patched at its first call" 0 "$(count_patched "$runs")"
baseline_ms=$((($(date +%s%N) - started) / 1000000))

# --rescan-seconds 0: no offline update, so only the load path can patch.
start_sutured "$sutured" --rescan-seconds 0
grep -q "patching libraries loaded later" "$scratch/sutured.log" ||
    { cat "$scratch/sutured.log"; fail_check "sutured does not watch library opens"; finish; }
started=$(date +%s%N)
patched=$(count_patched "$runs")
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
check_eq "with sutured: every dlopen() patched before its first call" "$runs" "$patched"
[ "$patched" = "$runs" ] || sed "s/pid [0-9]*/pid N/g; s/thread [0-9]*/thread N/g" "$scratch/sutured.log" | sort | uniq -c | sort -rn | head -12
echo "figures: $runs dlopen runs in $elapsed_ms ms with sutured, $baseline_ms ms without:" \
    "$(((elapsed_ms - baseline_ms) * 1000 / runs)) us more per run (catch, hold, apply, release)"
held=$(grep -c "(hold-openssl): $patch applied before its first call (path: dlopen" "$scratch/sutured.log" || true)
check_eq "sutured logs each as applied before its first call (path: dlopen)" "$runs" "$held"

# Starts: a program linked against libcrypto, and one that reaches it only
# through a library of its own. The system libcrypto is watched, so their
# loaders wait at its open: every start is caught, whatever the priority.
for path in direct transitive; do
    binary=FIRST_CALL_${path^^}
    caught=$(count_answers 10 "$marker" "${!binary}")
    check_eq "a program needing libcrypto $path: 10 starts patched before main()" 10 "$caught"
done
starts=$(grep -c "(first-call-tran): $patch applied before main() (path: transitive)" "$scratch/sutured.log" || true)
check_eq "sutured logs the transitive starts as such" 10 "$starts"

# The same from a second thread (the catch holds the thread that opens).
check_eq "dlopen() from a second thread: patched before its first call" 5 \
    "$(count_patched 5 --thread)"

# Started with vfork() + exec (Python's subprocess, as posix_spawn does):
# caught the same way.
if command -v python3 >/dev/null; then
    spawned=$(HOLD_UNTIL_STDIN_EOF=1 python3 -c '
import subprocess, sys
for _ in range(5):
    out = subprocess.run([sys.argv[1], sys.argv[2]], input=b"", capture_output=True).stdout
    print(out.decode().splitlines()[0].split(": ", 1)[-1])
' "$HOLD_OPENSSL" "$libcrypto" | grep -c -F "$marker" || true)
    check_eq "started by vfork() + exec (Python subprocess): patched before its first call" 5 "$spawned"
else
    echo "SKIP (part): python3 is not installed: the vfork + exec check did not run"
fi

# Under a seccomp filter the loader is not held (the filter could refuse
# the wait's ppoll): the process runs on unharmed and is patched right
# after its load, which sutured logs as "while running".
filtered=$(sleep 1 | HOLD_UNTIL_STDIN_EOF=1 timeout 30 "$SECCOMP_EXEC" "$HOLD_OPENSSL" "$libcrypto" 2>&1 |
    sed -n 's/^loaded [^:]*: //p')
[ -n "$filtered" ] && pass "under a seccomp filter: the dlopen works and the program goes on ($filtered)" ||
    fail_check "under a seccomp filter: no output"
sleep 0.5
late=$(grep -c "(hold-openssl): $patch applied while running (path: dlopen)" "$scratch/sutured.log" || true)
check_eq "under a seccomp filter: not held, patched right after its load" 1 "$late"

# A program that reads the file without loading it: let go, unharmed.
started=$(date +%s%N)
sum=$(sha256sum "$libcrypto" | cut -d' ' -f1)
read_ms=$((($(date +%s%N) - started) / 1000000))
check_eq "sha256sum of the watched file is right" "$(sha256sum <"$libcrypto" | cut -d' ' -f1)" "$sum"
echo "figures: sha256sum of the watched library took $read_ms ms (followed until the step limit, then let go)"

# sutured killed while it holds a loader (gdb stops it as it starts to
# apply, then SIGKILL): the process goes on by itself within the hold's
# bound (10 s), unpatched, alive.
if command -v gdb >/dev/null; then
    timeout 120 gdb -q -p "$daemon_pid" -batch -ex 'break suture::NewProcessPatcher::on_library_load' \
        -ex continue -ex 'signal SIGKILL' >"$scratch/gdb.log" 2>&1 &
    gdb_pid=$!
    for _ in $(seq 600); do
        grep -q "^Breakpoint 1 at" "$scratch/gdb.log" && break
        sleep 0.1
    done
    sleep 0.5
    started=$(date +%s%N)
    orphan=$(first_call)
    orphan_ms=$((($(date +%s%N) - started) / 1000000))
    wait "$gdb_pid" || true
    kill -0 "$daemon_pid" 2>/dev/null && fail_check "sutured still runs after SIGKILL"
    check_eq "sutured killed while holding a loader: the process goes on, unpatched" \
        "$(openssl version | awk '{print "OpenSSL " $2}')" "$(cut -d' ' -f1-2 <<<"$orphan")"
    [ "$orphan_ms" -lt 15000 ] && pass "it went on by itself after $orphan_ms ms (bound: 10 s)" ||
        fail_check "the orphaned load took $orphan_ms ms"
else
    echo "SKIP (part): gdb is not installed: the kill-while-held check did not run"
fi
finish
