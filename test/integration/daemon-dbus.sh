#!/usr/bin/env bash
# sutured on a real (private) D-Bus system bus: the CLI reaches it, it patches
# a real process and records it, it emits ProcessPatched, an unprivileged
# caller is refused on mutating methods but may read, and a `kill -9` of the
# daemon in the middle of an update leaves a state the next run reconciles.
#
# Usage (meson passes it): daemon-dbus.sh SUTURED REPRODUCER_63076
source "$(dirname "$0")/lib.sh"
require_root "ptrace, and running the unprivileged caller with setpriv"
: "${SUTURE_FEED:?}"
sutured=${1:?}
reproducer=${2:?}
start_private_system_bus

export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
state=$scratch/state.db  # start_sutured gives the daemon this database
start_daemon() { start_sutured "$sutured" "$@"; }
start_daemon
pass "sutured owns org.suture.Suture1"
check_eq "Version property" "s \"$("$SUTURE" --version | awk '{print $2}')\"" \
    "$(busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" get-property org.suture.Suture1 /org/suture/Suture1 org.suture.Suture1 Version)"

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
start_program target "LD_LIBRARY_PATH=$scratch/archive/usr/lib/x86_64-linux-gnu" -- "$reproducer"
check_eq "before: the target" VULNERABLE "$(ask "$target" probe)"

dbus-monitor --address "$DBUS_SYSTEM_BUS_ADDRESS" \
    "type='signal',interface='org.suture.Suture1',member='ProcessPatched'" >"$scratch/signals.log" 2>&1 &
started_pids+=($!)
sleep 0.3

# The CLI, without --direct and without any state path of its own: the work
# is done by the daemon, and recorded in the daemon's database.
unset SUTURE_STATE_DB SUTURE_FEED_CACHE
run 0 "suture update through the daemon" "$SUTURE" update --json
check_eq "the target" FIXED "$(ask "$target" probe)"
check_eq "the daemon's database records the applications" "$(shipped_patch_count libcrypto.so.3)" \
    "$(sqlite3 "$state" "select count(*) from applications where pid = $target and state = 'active'")"
sleep 0.3
grep -q "int32 $target" "$scratch/signals.log" && pass "ProcessPatched signals for pid $target" ||
    fail_check "no ProcessPatched signal: $(cat "$scratch/signals.log")"

# An unprivileged caller: may read, may not change anything.
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
run 5 "unprivileged update: refused" as_nobody "$SUTURE" update
grep -q "not allowed" <<<"$errors" && pass "the refusal says why" ||
    fail_check "refusal message: $errors"
run 5 "unprivileged revert: refused" as_nobody "$SUTURE" revert --pid "$target"
run 5 "unprivileged disable: refused" as_nobody "$SUTURE" disable
check_eq "the target is still patched" FIXED "$(ask "$target" probe)"
run 0 "unprivileged history: allowed" as_nobody "$SUTURE" history --json
[ "$(jq '.history | length' <<<"$output")" -gt 0 ] && pass "it reads the daemon's history" ||
    fail_check "empty history for the unprivileged caller"

# Input sutured cannot choose: a process whose comm is not UTF-8. Status
# answers (invalid bytes replaced), and the daemon lives on.
start_not_utf8 odd
run 0 "Status of a process whose comm is not UTF-8" as_nobody busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" \
    call org.suture.Suture1 /org/suture/Suture1 org.suture.Suture1 Status ai 1 "$odd"
grep -q 'sleep' <<<"$output" && pass "the Status document names it" || fail_check "Status reply: $output"
kill -0 "$daemon_pid" 2>/dev/null && pass "sutured still runs" || fail_check "sutured died on a Status call"

# The operation lock held by another operation: sutured answers `locked`
# without blocking, and the CLI asks again until its --wait is over.
mkdir -p "$(dirname "$SUTURE_LOCK_FILE")"
flock -o "$SUTURE_LOCK_FILE" sleep 30 </dev/null >/dev/null 2>&1 &
locker=$!
started_pids+=($locker)
sleep 0.3
run 23 "update through the daemon while another operation holds the lock" "$SUTURE" update --wait 1
grep -q "another suture operation is running" <<<"$errors" && pass "the refusal says why" ||
    fail_check "refusal message: $errors"
run 23 "disable through the daemon while the lock is held" "$SUTURE" disable --wait 0
run 0 "the daemon still answers Status meanwhile" as_nobody busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" \
    call org.suture.Suture1 /org/suture/Suture1 org.suture.Suture1 Status ai 1 "$target"
kill "$locker"
wait "$locker" 2>/dev/null || true

# Root through the daemon: revert, apply, the switch.
"$SUTURE" revert --pid "$target" CVE-2026-63076 >/dev/null
check_eq "revert through the daemon" VULNERABLE "$(ask "$target" probe)"
check_eq "the daemon's database says reverted" "reverted" \
    "$(sqlite3 "$state" "select group_concat(state) from applications where pid = $target and patch_id = 'CVE-2026-63076'")"
check_eq "and has the revert in its history" 1 \
    "$(sqlite3 "$state" "select count(*) from history where pid = $target and action = 'revert' and outcome = 'ok'")"
"$SUTURE" apply --pid "$target" \
    "$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2/CVE-2026-63076/CVE-2026-63076.suture" >/dev/null
check_eq "apply through the daemon" FIXED "$(ask "$target" probe)"
"$SUTURE" disable >/dev/null
check_eq "Enabled after disable" "b false" \
    "$(busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" get-property org.suture.Suture1 /org/suture/Suture1 org.suture.Suture1 Enabled)"
"$SUTURE" enable >/dev/null

# kill -9 of the daemon while it runs an update; a new daemon reconciles.
"$SUTURE" revert --pid "$target" >/dev/null
"$SUTURE" update >/dev/null 2>&1 &
sleep 0.05
kill -9 "$daemon_pid"
wait $! 2>/dev/null || true
check_eq "database intact after kill -9 of sutured" ok "$(sqlite3 "$state" 'pragma integrity_check')"
start_daemon
run 0 "update after the restart" "$SUTURE" update --json
check_eq "the target after the restart" FIXED "$(ask "$target" probe)"
check_eq "the target survived it all" "$target" "$(ask "$target" pid)"
kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" 2>/dev/null || status=$?
check_eq "sutured exits 0 on SIGTERM" 0 "$status"
finish
