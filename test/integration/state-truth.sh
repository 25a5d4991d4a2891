#!/usr/bin/env bash
# The state database tells the truth (docs/state.md), over real processes on
# Debian's vulnerable libcrypto 3.0.20-1~deb12u2 from the local signed feed:
#  1. the operation lock: held, a second operation waits or is refused
#     (exit 23, naming the holder); status never takes it;
#  2. two `suture update --offline` started together over SUTURE_STATE_FLEET
#     (200) processes: no duplicate active rows, and the applied outcomes of
#     both runs add up to the patches in memory (the other run says already);
#     2b. two updates under different lock files (as without the lock): the
#     injector's check in the stop still keeps a patch from being claimed
#     applied twice;
#  3. ten double first runs on a new database all succeed;
#  4. a full filesystem (a small tmpfs in this test's own mount namespace):
#     the update fails loudly (exit 24, the lost records listed in --json),
#     the next run with space records everything;
#  5. a damaged interior page: reported (exit 25, naming `suture state
#     rebuild`), and the rebuilt database equals what status reads from
#     memory;
#  6. revert leaves the database saying reverted;
#  7. an empty region (an apply killed right after its mmap) is removed by
#     update.
# Figures (times) are printed, never asserted on.
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the fleet, and a tmpfs in a private mount namespace"
: "${SUTURE_FEED:?}"
command -v sqlite3 >/dev/null || skip "sqlite3 is not installed"
# The whole test in a mount namespace of its own, so its small tmpfs is seen
# by nobody else (the targets start inside it too).
if [ -z "${SUTURE_STATE_TRUTH_UNSHARED:-}" ]; then
    rm -rf "$scratch"
    exec unshare -m --propagation private env SUTURE_STATE_TRUTH_UNSHARED=1 "$0" "$@"
fi
count=${SUTURE_STATE_FLEET:-200}
# What an update applies to each holder (it maps libcrypto and libssl): the
# shipped patchsets for the two, counted from patchsets/openssl/.
per_process=$(shipped_patch_count libcrypto.so.3 libssl.so.3)

export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
export SUTURE_FEED_CACHE=$scratch/cache
export SUTURE_STATE_DB=$scratch/state.db
export SUTURE_LOCK_FILE=$scratch/run/lock
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
"$SUTURE" feed refresh >/dev/null || { fail_check "feed refresh"; finish; }
fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
library_dir=$scratch/archive/usr/lib/x86_64-linux-gnu
milliseconds() { echo $(($(date +%s%N) / 1000000)); }

# start_fleet N: N idle holders of the archive's libcrypto and libssl; their
# PIDs in `fleet`, as a JSON array in `ours`.
start_fleet() {
    fleet=()
    : >"$scratch/holders.out"
    for _ in $(seq "$1"); do
        LD_LIBRARY_PATH=$library_dir "$HOLD_OPENSSL" libcrypto.so.3 libssl.so.3 </dev/null >>"$scratch/holders.out" 2>&1 &
        fleet+=($!)
        started_pids+=($!)
    done
    disown -a
    for _ in $(seq 300); do
        [ "$(grep -c '^ready' "$scratch/holders.out")" -ge "$1" ] && break
        sleep 0.1
    done
    check_eq "holders ready" "$1" "$(grep -c '^ready' "$scratch/holders.out")"
    ours=$(printf '%s\n' "${fleet[@]}" | jq -s .)
}
stop_fleet() {
    kill -9 "${fleet[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
# active_in_memory: "pid patch level" lines of every active patch of the fleet.
active_in_memory() {
    local pid_args=() pid
    for pid in "${fleet[@]}"; do pid_args+=(--pid "$pid"); done
    "$SUTURE" status --json "${pid_args[@]}" |
        jq -r '.processes[] | .pid as $p | .patches[] | select(.state == "active") | "\($p) \(.patch_id) \(.level)"' |
        sort
}
# active_in_database [DB]: the same lines from the database's active rows of the fleet.
active_in_database() {
    sqlite3 "${1:-$SUTURE_STATE_DB}" "select pid || ' ' || patch_id || ' ' || level from applications
        where state = 'active' and pid in ($(IFS=,; echo "${fleet[*]}"))" | sort
}
duplicate_rows() {
    sqlite3 "$SUTURE_STATE_DB" "select count(*) from (select 1 from applications where state = 'active'
        group by pid, start_time, patch_id having count(*) > 1)"
}
# applied_in JSON: how many actions of the fleet the document says applied / already.
outcomes_in() {
    jq --argjson ours "$ours" --arg outcome "$2" \
        '[.actions[] | select(.outcome == $outcome and (.pid as $p | $ours | index($p)))] | length' "$1"
}

# --- 1. the lock -----------------------------------------------------------
mkdir -p "$scratch/run"
echo 424242 >"$SUTURE_LOCK_FILE"
flock -o "$SUTURE_LOCK_FILE" sleep 30 </dev/null >/dev/null 2>&1 &  # -o: sleep does not inherit the lock
holder=$!
started_pids+=($holder)
sleep 0.3
run 23 "update while another operation holds the lock, --wait 0" "$SUTURE" update --offline --wait 0
grep -q "another suture operation is running (pid 424242" <<<"$errors" &&
    pass "the refusal names the holder" || fail_check "refusal: $errors"
started=$(milliseconds)
run 23 "update with --wait 1" "$SUTURE" update --offline --wait 1
echo "figure: a refused --wait 1 took $(($(milliseconds) - started)) ms"
grep -q "waiting up to 1 s" <<<"$errors" && pass "it said it waits" || fail_check "no wait message: $errors"
run 23 "update --json while locked" "$SUTURE" update --offline --wait 0 --json
check_eq "its error document" locked "$(jq -r '.error.reason' <<<"$output" 2>/dev/null)"
run 23 "revert while locked" "$SUTURE" --direct revert --wait 0 --pid $$
run 23 "disable while locked" "$SUTURE" --direct disable --wait 0
run 0 "status never takes the lock" "$SUTURE" status --pid $$
run 0 "history never takes the lock" "$SUTURE" --direct history
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true

# --- 2. two updates at once -------------------------------------------------
start_fleet "$count"
started=$(milliseconds)
"$SUTURE" --direct update --offline --json >"$scratch/first.json" 2>"$scratch/first.err" &
first=$!
"$SUTURE" --direct update --offline --json >"$scratch/second.json" 2>"$scratch/second.err" &
second=$!
first_status=0 second_status=0
wait "$first" || first_status=$?
wait "$second" || second_status=$?
echo "figure: two concurrent updates over $count processes took $(($(milliseconds) - started)) ms in all"
check_eq "first update: exit status" 0 "$first_status"
check_eq "second update: exit status" 0 "$second_status"
memory=$(active_in_memory)
patches=$(grep -c . <<<"$memory" || true)
check_eq "patches active in memory ($per_process per process)" $((count * per_process)) "$patches"
applied=$(($(outcomes_in "$scratch/first.json" applied) + $(outcomes_in "$scratch/second.json" applied)))
already=$(($(outcomes_in "$scratch/first.json" already) + $(outcomes_in "$scratch/second.json" already)))
adopted=$(($(outcomes_in "$scratch/first.json" adopted) + $(outcomes_in "$scratch/second.json" adopted)))
echo "figure: outcomes over both runs: applied $applied, already $already, adopted $adopted"
# Each run reports each (process, patch) pair once. Nothing is claimed
# applied twice; anything not applied by either run was found applied
# (by whoever else patched the host's processes meanwhile: another test's
# suture, not under this test's lock) and is reported as such, never as
# applied.
check_eq "pairs reported by both runs" $((2 * patches)) $((applied + already + adopted))
[ "$applied" -le "$patches" ] && pass "no patch claimed applied by both runs ($applied of $patches)" ||
    fail_check "applied across both runs: $applied > $patches patches in memory"
if [ "$applied" -eq "$patches" ]; then
    pass "applied across both runs = patches in memory ($patches); the other run: already"
    check_eq "the other run: already" "$patches" "$already"
else
    echo "note: $((patches - applied)) patch(es) were applied by someone outside this test meanwhile"
fi
check_eq "duplicate active rows" 0 "$(duplicate_rows)"
[ "$(active_in_database)" = "$memory" ] && pass "the database's active rows are memory's" ||
    fail_check "database and memory differ: $(diff <(active_in_database) <(echo "$memory") | head)"
grep -q "waiting up to" "$scratch/first.err" "$scratch/second.err" && pass "one run said it waited" ||
    echo "note: neither run had to wait (the first finished before the second started)"

# --- 6. revert --------------------------------------------------------------
victim=${fleet[0]}
run 0 "revert one process" "$SUTURE" --direct revert --pid "$victim"
check_eq "its rows: reverted" "$per_process" \
    "$(sqlite3 "$SUTURE_STATE_DB" "select count(*) from applications where pid = $victim and state = 'reverted'")"
check_eq "its rows: active" 0 \
    "$(sqlite3 "$SUTURE_STATE_DB" "select count(*) from applications where pid = $victim and state = 'active'")"
check_eq "its revert history" "$per_process" \
    "$(sqlite3 "$SUTURE_STATE_DB" "select count(*) from history where pid = $victim and action = 'revert' and outcome = 'ok'")"
run 13 "revert again: not applied" "$SUTURE" --direct revert --pid "$victim"
check_eq "the failed revert is in the history" 1 \
    "$(sqlite3 "$SUTURE_STATE_DB" "select count(*) from history where pid = $victim and action = 'revert' and outcome = 'failed'")"
stop_fleet

# --- 2b. without the lock: still no patch claimed applied twice -------------
# Two updates under different lock files (as a suture without the lock
# would run): the injector finds a patch the other run applied in its stop
# and says `already`, never `applied` (a process both stop at the same
# moment may fail for one of them: that is what the lock is for).
start_fleet 50
export SUTURE_STATE_DB=$scratch/unlocked.db
SUTURE_LOCK_FILE=$scratch/run/a.lock "$SUTURE" --direct update --offline --json >"$scratch/a.json" 2>/dev/null &
a=$!
SUTURE_LOCK_FILE=$scratch/run/b.lock "$SUTURE" --direct update --offline --json >"$scratch/b.json" 2>/dev/null &
b=$!
wait "$a" || true
wait "$b" || true
applied=$(($(outcomes_in "$scratch/a.json" applied) + $(outcomes_in "$scratch/b.json" applied)))
already=$(($(outcomes_in "$scratch/a.json" already) + $(outcomes_in "$scratch/b.json" already)))
failed=$(($(outcomes_in "$scratch/a.json" failed) + $(outcomes_in "$scratch/b.json" failed)))
patches=$(active_in_memory | grep -c . || true)
echo "figure: two unlocked updates over 50 processes: applied $applied, already $already, failed $failed; $patches patches in memory"
[ "$applied" -le "$patches" ] && pass "unlocked: no patch claimed applied by both runs ($applied of $patches)" ||
    fail_check "unlocked: $applied claimed applied, $patches in memory"
export SUTURE_STATE_DB=$scratch/state.db
stop_fleet

# --- 3. ten double first runs -----------------------------------------------
first_failures=0
for round in $(seq 10); do
    db=$scratch/first-$round.db
    # An update and a reader at once, as suture-boot and sutured at first
    # boot (the operation lock does not serialise opening the database).
    SUTURE_STATE_DB=$db "$SUTURE" --direct update --offline >/dev/null 2>"$scratch/a.err" &
    a=$!
    SUTURE_STATE_DB=$db "$SUTURE" --direct history >/dev/null 2>"$scratch/b.err" &
    b=$!
    wait "$a" || { first_failures=$((first_failures + 1)); cat "$scratch/a.err"; }
    wait "$b" || { first_failures=$((first_failures + 1)); cat "$scratch/b.err"; }
done
check_eq "failed first runs of 20" 0 "$first_failures"
check_eq "schema of the tenth new database" "$(sqlite3 "$scratch/first-1.db" 'PRAGMA user_version')" \
    "$(sqlite3 "$scratch/first-10.db" 'PRAGMA user_version')"

# --- 4. a full filesystem ---------------------------------------------------
small=20
start_fleet "$small"
full=$scratch/full
mkdir -p "$full"
mount -t tmpfs -o size=1m tmpfs "$full"
export SUTURE_STATE_DB=$full/state.db
run 0 "a new database on the small filesystem" "$SUTURE" --direct history
dd if=/dev/zero of="$full/filler" bs=4k 2>/dev/null || true
# With no connection open, SQLite cannot even create the WAL index (-shm):
# the run fails before it touches any process.
run 1 "update on a full filesystem, the database not open anywhere" "$SUTURE" --direct update --offline
grep -q "state database" <<<"$errors" && pass "it says why: $(head -n 1 <<<"$errors")" || fail_check "message: $errors"
# With a connection open elsewhere (sutured's, as on a real host), the
# database opens and every write fails.
rm -f "$full/filler"
mkfifo "$scratch/keep-open"
sqlite3 "$SUTURE_STATE_DB" <"$scratch/keep-open" >/dev/null 2>&1 &
keeper=$!
started_pids+=($keeper)
exec 7>"$scratch/keep-open"
echo "select count(*) from history;" >&7
sleep 0.3
dd if=/dev/zero of="$full/filler" bs=4k 2>/dev/null || true
run 24 "update on a full filesystem" "$SUTURE" --direct update --offline --json
lost=$(jq '.lost_records | length' <<<"$output" 2>/dev/null || echo 0)
[ "$lost" -gt 0 ] && pass "the document lists $lost lost record(s)" || fail_check "no lost records: $output"
grep -q "not recorded: apply pid" <<<"$errors" && pass "stderr names the lost records" ||
    fail_check "stderr: $(head -c 600 <<<"$errors")"
check_eq "patched all the same" $((small * per_process)) "$(active_in_memory | grep -c .)"
rm -f "$full/filler"
exec 7>&-
wait "$keeper" 2>/dev/null || true
run 0 "update with space again" "$SUTURE" --direct update --offline --json
check_eq "it adopted what was lost" $((small * per_process)) "$(jq --argjson ours "$ours" '[.actions[] | select(.outcome == "adopted" and (.pid as $p | $ours | index($p)))] | length' <<<"$output")"
[ "$(active_in_database)" = "$(active_in_memory)" ] && pass "now the database records everything" ||
    fail_check "database and memory differ after the run with space"

# --- 5. a damaged page ------------------------------------------------------
sqlite3 "$SUTURE_STATE_DB" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
page_size=$(sqlite3 "$SUTURE_STATE_DB" 'PRAGMA page_size')
# page_type TABLE: the b-tree page type of TABLE's root page (5: interior).
page_type() {
    local root
    root=$(sqlite3 "$SUTURE_STATE_DB" "select rootpage from sqlite_master where name = '$1'")
    od -An -tu1 -j $(((root - 1) * page_size)) -N1 "$SUTURE_STATE_DB" | tr -d ' '
}
table=applications
[ "$(page_type applications)" = 5 ] || table=history
check_eq "the root page of $table is an interior page" 5 "$(page_type "$table")"
root=$(sqlite3 "$SUTURE_STATE_DB" "select rootpage from sqlite_master where name = '$table'")
# Its cell pointers and cells overwritten with junk, the header left alone.
head -c 2048 /dev/urandom | dd of="$SUTURE_STATE_DB" bs=1 seek=$(((root - 1) * page_size + 12)) conv=notrunc 2>/dev/null
run 25 "update on a damaged database" "$SUTURE" --direct update --offline
grep -q "suture state rebuild" <<<"$errors" && pass "the message names the way back" ||
    fail_check "message: $errors"
run 25 "history on a damaged database" "$SUTURE" --direct history
started=$(milliseconds)
run 0 "state rebuild" "$SUTURE" state rebuild --json
echo "figure: state rebuild took $(($(milliseconds) - started)) ms"
kept=$(jq -r '.kept_as' <<<"$output")
[ -f "$kept" ] && pass "the damaged file is kept aside as $(basename "$kept")" || fail_check "kept_as: $output"
check_eq "integrity of the rebuilt database" ok "$(sqlite3 "$SUTURE_STATE_DB" 'PRAGMA integrity_check')"
[ "$(active_in_database)" = "$(active_in_memory)" ] && pass "the rebuilt database equals memory" ||
    fail_check "rebuilt database and memory differ: $(diff <(active_in_database) <(active_in_memory) | head)"
check_eq "its history: one rebuild entry" 1 "$(sqlite3 "$SUTURE_STATE_DB" "select count(*) from history where action = 'rebuild'")"
run 0 "update after the rebuild" "$SUTURE" --direct update --offline --json
check_eq "nothing applied or adopted after it" 0 "$(jq --argjson ours "$ours" '[.actions[] | select(.outcome != "already" and (.pid as $p | $ours | index($p)))] | length' <<<"$output")"
export SUTURE_STATE_DB=$scratch/state.db
stop_fleet
umount "$full"

# --- 7. an empty region -----------------------------------------------------
if command -v gdb >/dev/null; then
    start_fleet 1
    pid=${fleet[0]}
    patch=$("$SUTURE" feed list --json | jq -r '[.patchsets[] | select(.usable and
        .custom.build_id == "7d90f38412d00023e58392b03612a24b62fcaede")][0].path')
    # As inject-killed-at-mmap: the fourth RemoteMemory::write of an apply
    # fills the region just mapped; killed there, the region stays empty.
    gdb -q -batch -ex 'break suture::RemoteMemory::write' -ex 'ignore 1 3' \
        -ex "run --direct apply --pid $pid $patch" -ex 'bt 4' -ex 'kill' "$SUTURE" \
        >"$scratch/gdb.out" 2>&1 || true
    states=$("$SUTURE" status --json --pid "$pid" | jq -r '[.processes[0].patches[].state] | join(",")')
    # The fill is map_fixed_and_fill's (RemoteMapping.cpp), for map_region.
    if grep -qE 'map_region|map_fixed_and_fill' "$scratch/gdb.out" && [ "$states" = empty ]; then
        run 0 "update over an empty region" "$SUTURE" --direct update --offline --json
        check_eq "update removed it" 1 "$(jq '.removed_empty_regions' <<<"$output")"
        check_eq "and patched the process" "$(yes active | head -n "$per_process" | paste -sd,)" \
            "$("$SUTURE" status --json --pid "$pid" | jq -r '[.processes[0].patches[].state] | join(",")')"
    else
        fail_check "gdb did not leave an empty region (states: $states): $(tail -n 5 "$scratch/gdb.out")"
    fi
    stop_fleet
else
    echo "note: gdb is not installed: the empty-region case is not run"
fi
finish
