#!/usr/bin/env bash
# The crash lockfile (Canonical Livepatch's rule) on real processes with a
# real SQLite state file: an update that applies patches leaves
# crash-lock.json beside the database; a `kill -9` of the update right after
# its first apply leaves it too; after a simulated unclean stop (the boot id
# changes: SUTURE_TEST_BOOT_ID, a test-only hook, is the marker the boot
# path reads) the boot path (`suture --direct update --offline --automatic`,
# as suture-boot.service runs it) holds those patches back with the rule
# crash_lock and says why, `suture status` says so, `suture crash-lock
# --release` lets them be applied again (recorded), and a run in the same
# boot after watch_seconds removes the lock. A clean shutdown (`suture
# crash-lock --clean-shutdown`) removes its own boot's lock and keeps an
# earlier one.
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the holders"
: "${SUTURE_FEED:?}"
export SUTURE_FEED_ROOT_DIR=$scratch/var
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
"$SUTURE" feed refresh >/dev/null || { fail_check "feed refresh"; finish; }
echo "watch_seconds = 300" >"$SUTURE_CONFIG_DIR/suture.conf"
lock=$scratch/crash-lock.json  # beside $SUTURE_STATE_DB
fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
library_dir=$scratch/archive/usr/lib/x86_64-linux-gnu
per_process=$(shipped_patch_count libcrypto.so.3 libssl.so.3)
ours_of() { printf '%s\n' "${fleet[@]}" | jq -s -c .; }
# count OUTCOME [RULE]: our holders' actions in $output with that outcome (and reason).
count() {
    jq --argjson ours "$(ours_of)" --arg o "$1" --arg r "${2:-}" \
        '[.actions[] | select((.pid as $p | $ours | index($p)) and .outcome == $o and ($r == "" or .reason == $r))] | length' <<<"$output"
}
boot() { SUTURE_TEST_BOOT_ID=$1 "$SUTURE" --direct update --offline --automatic --json; }
# holders N: N fresh holders (start_holder_fleet counts the "ready" lines of
# holders.out, so it starts empty each time).
holders() {
    : >"$scratch/holders.out"
    start_holder_fleet "$1" "$library_dir"
}

# 1. An apply in boot 1 leaves the lock, naming every patch it applied.
holders 2
run 0 "boot 1: the automatic run" boot boot-1
check_eq "it applies every patch to both holders" "$((2 * per_process))" "$(count applied)"
[ -f "$lock" ] && pass "crash-lock.json is there" || fail_check "no crash lock after an apply"
check_eq "the lock is of boot 1" boot-1 "$(jq -r .boot_id "$lock")"
check_eq "the lock names the $per_process patches" "$per_process" "$(jq '.patches | length' "$lock")"
check_eq "the lock is mode 0600" 600 "$(stat -c %a "$lock")"

# 2. A simulated unclean stop: the boot id changes, fresh processes start,
# the boot path runs. Nothing of the lock is applied; it says why.
kill -9 "${fleet[@]}"
holders 2
run 0 "boot 2: the boot path" boot boot-2
check_eq "nothing applied after the unclean stop" 0 "$(count applied)"
check_eq "every pair held by the crash lock" "$((2 * per_process))" "$(count held crash_lock)"
jq -r '.actions[] | select(.reason == "crash_lock") | .message' <<<"$output" | head -1 |
    grep -q "went down within watch_seconds" && pass "the reason says why" || fail_check "no reason in: $output"
run 0 "a manual run is the operator's decision: dry run" env SUTURE_TEST_BOOT_ID=boot-2 "$SUTURE" --direct update --offline --dry-run --json
check_eq "a manual run would apply them" "$((2 * per_process))" "$(count would_apply)"
# (status exits 0, 3 or 27 depending on the host's other processes)
output=$(SUTURE_TEST_BOOT_ID=boot-2 "$SUTURE" status --json 2>/dev/null || true)
check_eq "status: the crash lock holds" true "$(jq .crash_lock.holding <<<"$output")"
output=$(SUTURE_TEST_BOOT_ID=boot-2 "$SUTURE" status 2>/dev/null || true)
grep -q "crash lock .*automatic runs hold back" <<<"$output" && pass "status text says so" ||
    fail_check "status text: $(tail -3 <<<"$output")"

# 3. Released: the boot path applies them again, and a new lock of boot 2
# covers that apply.
run 0 "crash-lock --release" env SUTURE_TEST_BOOT_ID=boot-2 "$SUTURE" crash-lock --release
check_eq "the history records the release" 1 \
    "$(sqlite3 "$SUTURE_STATE_DB" "select count(*) from history where message = 'crash lock released'")"
run 0 "boot 2, after the release" boot boot-2
check_eq "every patch applied" "$((2 * per_process))" "$(count applied)"
check_eq "a new lock of boot 2" boot-2 "$(jq -r .boot_id "$lock")"

# 4. The watch is over (the clock 301 s later, same boot): the next run
# removes the lock; a reboot then holds nothing back.
old_at=$(jq .at "$lock")
later=$((old_at + 301))
run 0 "boot 2, watch_seconds later" env SUTURE_TEST_NOW=$later SUTURE_TEST_BOOT_ID=boot-2 "$SUTURE" --direct update --offline --automatic --json
# (Gone, unless that run applied something again, which makes a new one.)
[ ! -e "$lock" ] || [ "$(jq .at "$lock")" = "$later" ] && pass "the watched lock is gone after watch_seconds" ||
    fail_check "the old lock is still there: $(cat "$lock")"

# 5. A kill -9 of the update right after its first apply: the lock is on
# disk before the apply, so the next boot holds at least that patch back.
kill -9 "${fleet[@]}"
# (Gone before the update looks: on a loaded machine a dying holder still
# in /proc could take the killed run's one apply, which the next boot then
# has no live process to hold back for.)
for _ in $(seq 500); do
    alive=0
    for pid in "${fleet[@]}"; do [ -e "/proc/$pid/exe" ] && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.01
done
holders 1
SUTURE_TEST_BOOT_ID=boot-3 "$SUTURE" --direct update --offline --automatic >/dev/null 2>&1 &
updater=$!
for _ in $(seq 200); do [ -f "$lock" ] && break; sleep 0.01; done
kill -9 "$updater" 2>/dev/null || true
wait "$updater" 2>/dev/null || true
[ -f "$lock" ] && pass "the lock survived the kill -9 ($(jq '.patches | length' "$lock") patch(es))" ||
    fail_check "no lock after the kill"
covered=$(jq '.patches | length' "$lock" 2>/dev/null || echo 0)
kill -9 "${fleet[@]}"
holders 1
run 0 "boot 4: the boot path after the kill" boot boot-4
check_eq "what the killed run covered is held back" "$covered" "$(count held crash_lock)"
check_eq "the rest is applied" "$((per_process - covered))" "$(count applied)"

# 6. A clean shutdown (suture-shutdown.service's ExecStop) clears its own
# boot's lock, so the next boot reapplies everything; at the shutdown of a
# later boot, an earlier boot's lock (an unclean end) is kept.
run 0 "release the killed run's lock" env SUTURE_TEST_BOOT_ID=boot-5 "$SUTURE" crash-lock --release
kill -9 "${fleet[@]}"
holders 1
run 0 "boot 5: an apply" boot boot-5
check_eq "boot 5: everything applied" "$per_process" "$(count applied)"
check_eq "boot 5: a lock of boot 5" boot-5 "$(jq -r .boot_id "$lock")"
run 0 "the shutdown of another boot" env SUTURE_TEST_BOOT_ID=boot-6 "$SUTURE" crash-lock --clean-shutdown
check_eq "it says there is no lock of its boot" "no crash lock of this boot" "$output"
check_eq "and keeps boot 5's lock" boot-5 "$(jq -r .boot_id "$lock" 2>/dev/null || echo gone)"
run 0 "boot 5's clean shutdown" env SUTURE_TEST_BOOT_ID=boot-5 "$SUTURE" crash-lock --clean-shutdown
check_eq "it clears the lock" "crash lock of this boot cleared (clean shutdown)" "$output"
[ ! -e "$lock" ] && pass "no lock after the clean shutdown" || fail_check "lock left: $(cat "$lock")"
check_eq "the history records it" 1 \
    "$(sqlite3 "$SUTURE_STATE_DB" "select count(*) from history where message = 'crash lock cleared: a clean shutdown of its boot'")"
kill -9 "${fleet[@]}"
holders 1
run 0 "boot 6, after the clean reboot" boot boot-6
check_eq "boot 6: everything reapplied" "$per_process" "$(count applied)"
check_eq "boot 6: nothing held by the crash lock" 0 "$(count held crash_lock)"
run 2 "--clean-shutdown with --release: a usage error" "$SUTURE" crash-lock --clean-shutdown --release
finish
