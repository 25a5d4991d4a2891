#!/usr/bin/env bash
# sutured patches processes as they start: 100 short programs linked
# against the archive's vulnerable libcrypto each run the CVE-2026-63074
# check first thing in main() and exit. Counts how many saw the patched
# behaviour from their first call (the target: all). Before sutured runs
# (and with --no-new-processes), the same program must see VULNERABLE, which
# shows the count can fail. A crash lock of another boot holds the patch
# back from new processes too.
#
# Usage (meson passes it): daemon-new-processes.sh SUTURED REPRODUCER_63074
source "$(dirname "$0")/lib.sh"
require_root "exec events (netlink proc connector) and ptrace"
: "${SUTURE_FEED:?}"
sutured=${1:?}
program=${2:?}
runs=${SUTURE_NEW_PROCESS_RUNS:-100}
start_private_system_bus

export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
SUTURE_FEED_CACHE=$scratch/cache "$SUTURE" feed refresh >/dev/null

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
export LD_LIBRARY_PATH_FOR_PROGRAM=$scratch/archive/usr/lib/x86_64-linux-gnu
run_program() { LD_LIBRARY_PATH=$LD_LIBRARY_PATH_FOR_PROGRAM "$program" --once 2>&1; }

# count_fixed N: runs the program N times, prints how many said FIXED.
count_fixed() { count_answers "$1" FIXED run_program; }

started=$(date +%s%N)
check_eq "without sutured: $runs runs, none fixed" 0 "$(count_fixed "$runs")"
baseline_ms=$((($(date +%s%N) - started) / 1000000))

start_daemon() { start_sutured "$sutured" "$@"; }
# sutured takes real-time priority (SCHED_FIFO) to win the race against a
# new process's loader. Where the kernel refuses it (a container without
# real-time runtime; sutured then runs at nice -15), that race can be lost
# now and then, and the checks that every run was parked in time cannot
# hold: race_check then prints what it saw, says why it is not asserted,
# and the test asserts only that gating works at all.
sutured_realtime() { [ "$(awk '$1 == "policy" { print $3 }' "/proc/$daemon_pid/sched" 2>/dev/null)" = 1 ]; }
race_check() {
    if sutured_realtime; then
        check_eq "$@"
    else
        echo "not asserted here: $1: expected '$2', got '$3' (sutured has no real-time priority on this machine)"
    fi
}

start_daemon --no-new-processes
check_eq "sutured --no-new-processes: 5 runs, none fixed" 0 "$(count_fixed 5)"
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
# --new-processes-under limits the daemon to one directory's programs (the
# OpenSSL self-test's copied tree): others start unpatched, those under it
# patched. At exit sutured logs its counts of new processes.
start_daemon --rescan-seconds 0 --new-processes-under "$scratch/elsewhere"
check_eq "sutured --new-processes-under another directory: 5 runs, none fixed" 0 "$(count_fixed 5)"
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
# A crash lock of another boot (docs/state.md: the host went down within
# watch_seconds of an apply) holds its patch back from new processes as
# from every automatic run; released, the patch reaches them again.
crash_lock=$(dirname "$SUTURE_STATE_DB")/crash-lock.json
printf '{"boot_id": "an-earlier-boot", "at": %s, "patches": [{"patch_id": "CVE-2026-63074", "level": 1}]}\n' \
    "$(date +%s)" >"$crash_lock"
start_daemon --rescan-seconds 0 --new-processes-under "$(dirname "$(readlink -f "$program")")"
check_eq "sutured with a crash lock of another boot naming the patch: 5 runs, none fixed" 0 "$(count_fixed 5)"
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
rm -f "$crash_lock"
start_daemon --rescan-seconds 0 --new-processes-under "$(dirname "$(readlink -f "$program")")"
sutured_realtime && realtime=yes || realtime=no
[ "$realtime" = yes ] || echo "NOTE: sutured could not take real-time priority here (SCHED_FIFO refused by the kernel): the every-run-parked checks are figures, not assertions"
race_check "sutured --new-processes-under the program's directory: 5 runs, all fixed" 5 "$(count_fixed 5)"
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
counts=$(grep -o "new processes: .*" "$scratch/sutured.log" | tail -n 1)
echo "sutured at exit: $counts"
[[ "$counts" =~ ([0-9]+)\ patched\ before\ main ]] && counted=${BASH_REMATCH[1]} || counted=0
if [ "$realtime" = yes ]; then
    [ "$counted" -ge 5 ] && pass "sutured counts the 5 processes it patched before main() at exit" ||
        fail_check "sutured's counts at exit: '$counts'"
else
    [ "$counted" -ge 1 ] && pass "sutured counts the processes it patched before main() at exit ($counted)" ||
        fail_check "sutured's counts at exit: '$counts'"
fi
: >"$scratch/sutured.log"  # the checks below count this log's lines afresh
# The applies sutured records (one transaction per start): history rows.
recorded_applies() {
    sqlite3 "$scratch/state.db" "select count(*) from history where action = 'apply' and outcome = 'ok'"
}
applies_before=$(recorded_applies)

start_daemon
grep -q "patching new processes" "$scratch/sutured.log" ||
    { cat "$scratch/sutured.log"; fail_check "sutured does not watch exec events"; finish; }
started=$(date +%s%N)
fixed=$(count_fixed "$runs")
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
echo "figures: $fixed of $runs new processes saw the patched behaviour from their first call" \
    "($elapsed_ms ms for all $runs runs; without sutured $baseline_ms ms: about" \
    "$(((elapsed_ms - baseline_ms) * 1000 / runs)) us more per process, with its patches)"
race_check "new processes patched before main()" "$runs" "$fixed"
[ "$fixed" -ge 1 ] && pass "exec gating works: $fixed of $runs patched before main()" ||
    fail_check "no new process was patched before main()"
[ "$fixed" = "$runs" ] || sed "s/pid [0-9]*/pid N/g; s/0x[0-9a-f]*/ADDRESS/g" "$scratch/sutured.log" | sort | uniq -c | sort -rn | head -12
before_main=$(grep -c "before main()" "$scratch/sutured.log" || true)
echo "figures: sutured reports $before_main patch applications before main()"
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
counts=$(grep -o "new processes: .*" "$scratch/sutured.log" | tail -n 1)
echo "figures: sutured at exit: $counts"
logged_applies=$(grep -c " applied \(before main()\|while running\)" "$scratch/sutured.log" || true)
[ "$logged_applies" -gt 0 ] && check_eq "every apply to the $runs starts is in the state database's history" \
    "$logged_applies" "$(($(recorded_applies) - applies_before))" ||
    fail_check "no apply logged for the $runs starts"
[[ "$counts" =~ ([0-9]+)\ left\ to\ the\ library-open\ watch ]] && left=${BASH_REMATCH[1]} || left=0
# The program's libcrypto is watched from its first start on: later starts
# wait at its open for the library-open watch, which cannot lose the race.
[ "$left" -ge $((runs - 5)) ] &&
    pass "starts left to the library-open watch once the library is watched: $left of $runs" ||
    fail_check "only $left of $runs starts left to the library-open watch"
# Only the starts exec'ed before the watch is in place race the loader (the
# first, and on a busy machine one or two more exec'ed before sutured has
# marked the file: their exec event's time tells, and they are parked);
# every start left to the watch waits at its open, whatever sutured's
# priority, so each of those is patched before main().
[ "$fixed" -ge "$left" ] &&
    pass "with the library-open watch, every start left to it patched before main(): $fixed of $runs ($left left to it)" ||
    fail_check "with the library-open watch: only $fixed of $runs patched before main(), $left left to it"
# A burst of starts at once on a fresh sutured: the library file is marked
# once the first start is handled, after the others' exec and maybe after
# their loader opened it. Such a start must not be left to the watch (its
# open was not caught: nothing would patch it before the next rescan): it is
# parked, or patched while it runs. The starts stay alive (the reproducer
# answers commands), so each is probed once sutured has handled them all.
burst=8
start_daemon
burst_inputs=()
for i in $(seq "$burst"); do
    mkfifo "$scratch/burst.$i.in"
    LD_LIBRARY_PATH=$LD_LIBRARY_PATH_FOR_PROGRAM "$program" <"$scratch/burst.$i.in" >"$scratch/burst.$i.out" 2>&1 &
    started_pids+=($!)
    exec {input}>"$scratch/burst.$i.in"
    burst_inputs+=("$input")
done
for i in $(seq "$burst"); do wait_for_line "$scratch/burst.$i.out" ready || true; done
sleep 0.5  # sutured handles the exec events it has read
for input in "${burst_inputs[@]}"; do printf 'probe\nquit\n' >&"$input"; exec {input}>&-; done
for i in $(seq "$burst"); do wait_for_line "$scratch/burst.$i.out" "FIXED\|VULNERABLE\|ERROR" || true; done
burst_fixed=$(cat "$scratch"/burst.*.out | grep -c "^FIXED$" || true)
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
counts=$(grep -o "new processes: .*" "$scratch/sutured.log" | tail -n 1)
echo "figures: a burst of $burst starts at once; sutured at exit: $counts"
check_eq "a burst of $burst starts at once: each patched before main() or while running" "$burst" "$burst_fixed"
[[ "$counts" =~ ([0-9]+)\ left\ to\ the\ library-open\ watch ]] && left=${BASH_REMATCH[1]} || left=-1
[[ "$counts" =~ ([0-9]+)\ library\ loads\ caught ]] && caught=${BASH_REMATCH[1]} || caught=-1
[ "$left" -ge 0 ] && [ "$caught" -ge "$left" ] &&
    pass "a burst of starts: every start left to the library-open watch was caught at its open ($left left, $caught caught)" ||
    fail_check "a burst of starts: $left left to the library-open watch, only $caught library loads caught"
# Parking from here on: without the library-open watch every start is parked.
start_daemon --no-load-watch
if [ "$realtime" = yes ]; then
    [ "$before_main" -ge "$runs" ] && pass "sutured applied the patch before main() each time" ||
        fail_check "only $before_main applications before main()"
else
    echo "not asserted here: sutured applied the patch before main() each time: $before_main applications for $runs runs (no real-time priority)"
fi
# sutured killed while a new process is parked at its entry (gdb stops it
# right there, then SIGKILL): the process waits, spinning, instead of dying;
# the next sutured finds it and lets it run.
if command -v gdb >/dev/null && [ "$realtime" = no ]; then
    echo "SKIP (part): the kill-while-parked check needs the new process parked for sure (no real-time priority here)"
elif command -v gdb >/dev/null; then
    timeout 120 gdb -q -p "$daemon_pid" -batch -ex 'break suture::wait_until_parked' \
        -ex continue -ex 'signal SIGKILL' >"$scratch/gdb.log" 2>&1 &
    gdb_pid=$!
    for _ in $(seq 600); do  # until gdb has attached and let sutured go on
        grep -q "^Breakpoint 1 at" "$scratch/gdb.log" && break
        sleep 0.1
    done
    sleep 0.5
    run_program >"$scratch/parked.out" &
    parked_pid=$!
    wait "$gdb_pid" || true
    sleep 0.3
    if kill -0 "$parked_pid" 2>/dev/null && [ ! -s "$scratch/parked.out" ]; then
        pass "the daemon died with a process parked: it waits, alive, before main()"
    else
        fail_check "parked process: alive=$(kill -0 "$parked_pid" 2>/dev/null && echo yes || echo no) output='$(cat "$scratch/parked.out")'; gdb: $(tail -3 "$scratch/gdb.log")"
    fi
    start_daemon --no-load-watch
    wait "$parked_pid" || true
    check_eq "the next sutured released it, and it ran to the end" VULNERABLE "$(cat "$scratch/parked.out")"
    wait_for_line "$scratch/sutured.log" "released from its entry point" && pass "sutured says it released it" ||
        fail_check "no word of the release in the log"
else
    echo "SKIP (part): gdb is not installed; the kill-while-parked check did not run"
fi

# Without the library-open watch, libraries loaded later with dlopen are
# caught by the periodic rescan (the safety net); exclusions keep new
# processes untouched.
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
start_daemon --rescan-seconds 1 --no-load-watch
hold holder "" "$scratch/archive/usr/lib/x86_64-linux-gnu/libcrypto.so.3"
patched=""
expected=$(shipped_patch_count libcrypto.so.3)
for _ in $(seq 40); do
    patched=$("$SUTURE" status --json --pid "$holder" |
        jq -r --argjson pid "$holder" '[.processes[] | select(.pid == $pid) | .patches[]? | select(.state == "active")] | length')
    [ "$patched" = "$expected" ] && break
    sleep 0.1
done
check_eq "a library dlopen'ed after start is patched by the rescan" "$expected" "$patched"
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
start_daemon
"$SUTURE" exclude --state "$scratch/state.db" --executable "$(readlink -f "$program")" >/dev/null
check_eq "an excluded executable starts unpatched" VULNERABLE "$(run_program)"
"$SUTURE" exclude --state "$scratch/state.db" --remove --executable "$(readlink -f "$program")" >/dev/null
race_check "no longer excluded: patched before main() again" FIXED "$(run_program)"

run 0 "sutured is alive and serving (busctl status)" \
    timeout 5 busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" status org.suture.Suture1
finish
