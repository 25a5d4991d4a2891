#!/usr/bin/env bash
# The automatic cycle on real processes: the shipped patchsets published as
# the local feed (scripts/setup-local-feed), reproducers running the
# archive's vulnerable libcrypto, `suture update` patching them all, a second
# run doing nothing, a "reboot" (fresh processes, feed gone) patched from the
# cache, and a `kill -9` of update that leaves the database intact.
#
# Usage (meson passes it): update-cycle.sh REPRODUCER_63076 REPRODUCER_63072
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the reproducers"
: "${SUTURE_FEED:?}"
reproducer_cmp=${1:?}
reproducer_cms=${2:?}

export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
export SUTURE_FEED_CACHE=$scratch/cache
export SUTURE_STATE_DB=$scratch/state.db
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
pass "local feed published: $(tail -1 "$scratch/setup.log")"

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
library_dir=$scratch/archive/usr/lib/x86_64-linux-gnu

start_targets() {
    start_program cmp "LD_LIBRARY_PATH=$library_dir" -- "$reproducer_cmp"
    start_program cms "LD_LIBRARY_PATH=$library_dir" -- "$reproducer_cms"
    start_program system_cmp -- "$reproducer_cmp"  # the host's own libcrypto: no patch for it
}
expect_probes() {
    check_eq "$1: CMP reproducer" "$2" "$(ask "$cmp" probe)"
    check_eq "$1: CMS reproducer" "$2" "$(ask "$cms" probe)"
}

start_targets
expect_probes "before update" VULNERABLE
# Each of the two archive-build processes gets every shipped libcrypto patch.
expected=$((2 * $(shipped_patch_count libcrypto.so.3)))

run 0 "update" "$SUTURE" update --json
# `suture update` patches every matching process on the machine. ours FILTER:
# how many of the last update's actions on our two processes pass FILTER.
ours() { jq --argjson a "$cmp" --argjson b "$cms" "[.actions[] | select((.pid == \$a or .pid == \$b) and $1)] | length" <<<"$output"; }
check_eq "patches applied to the two archive-build processes" "$expected" "$(ours '.outcome == "applied"')"
check_eq "the host-build process is left alone" 0 \
    "$(jq --argjson pid "$system_cmp" '[.actions[] | select(.pid == $pid)] | length' <<<"$output")"
expect_probes "after update" FIXED
check_eq "workload still works" OK "$(ask "$cmp" workload)"

run 0 "second update" "$SUTURE" update --json
check_eq "second update: nothing applied" 0 \
    "$(jq '[.actions[] | select(.outcome == "applied")] | length' <<<"$output")"
check_eq "second update: all already active" "$expected" "$(ours '.outcome == "already"')"
check_eq "state database: $expected active applications" "$expected" \
    "$(sqlite3 "$SUTURE_STATE_DB" "select count(*) from applications where state = 'active' and pid in ($cmp, $cms)")"
check_eq "state database file mode" 600 "$(stat -c %a "$SUTURE_STATE_DB")"

# "Reboot": the processes go, the feed becomes unreachable, fresh processes
# start; the boot command applies from the cache alone.
kill -9 "$cmp" "$cms" "$system_cmp"
mv "$SUTURE_FEED_ROOT_DIR/feed" "$SUTURE_FEED_ROOT_DIR/feed.gone"
start_targets
expect_probes "after reboot, before the boot run" VULNERABLE
run 0 "boot run" "$SUTURE" update --offline --json
expect_probes "after the boot run (no feed reachable)" FIXED
[ "$(jq .closed <<<"$output")" -ge "$expected" ] && pass "boot run closed the records of the killed processes" ||
    fail_check "boot run closed $(jq .closed <<<"$output") records, expected at least $expected"
run 0 "an update with the feed unreachable (it succeeds from the cache)" "$SUTURE" update
grep -q "not refreshed" <<<"$output$errors" && pass "it says the feed was not refreshed" ||
    fail_check "no word of the unreachable feed: $output$errors"

# kill -9 of suture update at random moments: the database stays intact and
# the next run reconciles (everything active, nothing lost).
mv "$SUTURE_FEED_ROOT_DIR/feed.gone" "$SUTURE_FEED_ROOT_DIR/feed"
"$SUTURE" revert --pid "$cmp" >/dev/null
for delay in 0.01 0.03 0.05 0.1 0.2; do
    "$SUTURE" update >/dev/null 2>&1 &
    sleep "$delay"
    kill -9 $! 2>/dev/null || true
    wait $! 2>/dev/null || true
    check_eq "after kill -9 at ${delay}s: integrity" ok "$(sqlite3 "$SUTURE_STATE_DB" 'pragma integrity_check')"
    "$SUTURE" revert --pid "$cmp" >/dev/null 2>&1 || true
done
run 0 "after the kills, update" "$SUTURE" update --json
expect_probes "after the kills and a final update" FIXED
check_eq "every target alive" "$cmp $cms" "$(ask "$cmp" pid) $(ask "$cms" pid)"

# The global switch and the audit log.
"$SUTURE" disable >/dev/null
"$SUTURE" revert --pid "$cms" >/dev/null
run 0 "disabled: update" "$SUTURE" update --json
check_eq "disabled: update does nothing" "false 0" "$(jq -r '"\(.enabled) \(.actions | length)"' <<<"$output")"
check_eq "disabled: the reverted process stays unpatched" VULNERABLE "$(ask "$cms" probe)"
"$SUTURE" enable >/dev/null
"$SUTURE" update >/dev/null
check_eq "enabled again: patched" FIXED "$(ask "$cms" probe)"
"$SUTURE" history --json --limit 1000 >"$scratch/history.json"
for action in apply close refresh update settings; do
    [ "$(jq --arg a "$action" '[.history[] | select(.action == $a)] | length' "$scratch/history.json")" -gt 0 ] &&
        pass "history records $action" || fail_check "history has no $action entry"
done
finish
