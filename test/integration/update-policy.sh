#!/usr/bin/env bash
# Assessment and policy through the real daemon on a private D-Bus bus, with
# its state in a real SQLite file: `suture update --dry-run` changes nothing
# (database dump and processes the same) and says exactly what the following
# real run does (the JSON of both compared); outside the maintenance window
# (the clock set with SUTURE_TEST_NOW, a test-only hook) an automatic run
# applies only patches at or above immediate_severity; inside it, the rest;
# a process started outside the window afterwards still gets everything the
# host applied before; --cve, --exclude-cve and --min-severity select a
# one-time run; the host's rollout bucket is shown.
#
# Usage (meson passes it): update-policy.sh SUTURED
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the holders"
: "${SUTURE_FEED:?}"
sutured=${1:?}
start_private_system_bus

export SUTURE_FEED_ROOT_DIR=$scratch/var
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
"$SUTURE" feed refresh >/dev/null || { fail_check "feed refresh"; finish; }
# 2026-12-02 is a Wednesday: 14:00 is outside Mon-Fri 02:00-05:00, 03:00 inside.
export TZ=UTC
outside=$(date -d '2026-12-02 14:00' +%s)
inside=$(date -d '2026-12-02 03:00' +%s)
cat >"$SUTURE_CONFIG_DIR/suture.conf" <<CONF
# The policy of automatic runs (docs/operator-guide.md, "Policy").
window = Mon-Fri 02:00-05:00
immediate_severity = High
CONF
echo 0123456789abcdef0123456789abcdef >"$scratch/machine-id"
export SUTURE_MACHINE_ID_FILE=$scratch/machine-id

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
library_dir=$scratch/archive/usr/lib/x86_64-linux-gnu
start_holder_fleet 3 "$library_dir"
ours=$(printf '%s\n' "${fleet[@]}" | jq -s .)
per_process=$(shipped_patch_count libcrypto.so.3 libssl.so.3)

# The daemon gets the clock: its runs are the ones tested.
export SUTURE_TEST_NOW=$outside
start_sutured "$sutured" --rescan-seconds 0 --no-new-processes
unset SUTURE_STATE_DB SUTURE_FEED_CACHE  # the CLI goes to the daemon
state=$scratch/state.db

# pairs OUTCOME...: our holders' (pid, patch id, level, reason) with one of
# these outcomes in $output, sorted, one JSON array.
pairs() {
    jq -c --argjson ours "$ours" --args '[.actions[] | select((.pid as $p | $ours | index($p)) and
        (.outcome as $o | $ARGS.positional | index($o))) | [.pid, .patch_id, .level, .reason]] | sort' \
        "$@" <<<"$output"
}
patches_in_holders() {
    "$SUTURE" status --json "${pid_args[@]}" |
        jq '[.processes[].patches[] | select(.state == "active")] | length'
}
database_dump() { sqlite3 "$state" .dump | sha256sum; }
# new_holder: one more holder, ready; sets fleet and pid_args to it alone
# (start_holder_fleet counts every "ready" line of holders.out so far).
new_holder() {
    local before pid
    before=$(grep -c '^ready' "$scratch/holders.out")
    LD_LIBRARY_PATH=$library_dir "$HOLD_OPENSSL" libcrypto.so.3 libssl.so.3 </dev/null >>"$scratch/holders.out" 2>&1 &
    pid=$!
    disown
    started_pids+=("$pid")
    for _ in $(seq 100); do
        [ "$(grep -c '^ready' "$scratch/holders.out")" -gt "$before" ] && break
        sleep 0.1
    done
    check_eq "holder $pid ready" 1 "$(($(grep -c '^ready' "$scratch/holders.out") - before))"
    fleet=("$pid")
    pid_args=(--pid "$pid")
}

# A first run that applies nothing (no such CVE) creates the database.
run 0 "an update of no CVE" "$SUTURE" update --offline --cve CVE-0000-0 --json
check_eq "it applies nothing" 0 "$(jq '[.actions[] | select(.outcome == "applied")] | length' <<<"$output")"
check_eq "it holds every pair back by the cve rule" "$((3 * per_process))" "$(pairs held | jq '[.[] | select(.[3] == "cve")] | length')"

# 1. Outside the window: the dry run, then the real run.
dump_before=$(database_dump)
run 0 "dry run, automatic, outside the window" "$SUTURE" update --offline --automatic --dry-run --json
dry=$output
check_eq "the dry run says so" true "$(jq .dry_run <<<"$dry")"
check_eq "the window is closed" outside "$(jq -r .window <<<"$dry")"
check_eq "the host's rollout bucket is shown" true "$(jq '.rollout_bucket | type == "number"' <<<"$dry")"
would=$(pairs would_apply)
held=$(pairs held)
check_eq "would apply: the High patch to each holder" \
    "$(jq -c --argjson ours "$ours" '[$ours[] | [., "CVE-2026-84782", 1, ""]] | sort' <<<null)" "$would"
check_eq "held back by the window: the other $((per_process - 1)) per holder" "$((3 * (per_process - 1)))" \
    "$(jq '[.[] | select(.[3] == "window")] | length' <<<"$held")"
check_eq "the dry run changed no record" "$dump_before" "$(database_dump)"
check_eq "the dry run patched nothing" 0 "$(patches_in_holders)"
check_eq "the dry run left no holder stopped" 0 "$(for pid in "${fleet[@]}"; do awk '{ print $3 }' /proc/$pid/stat; done | grep -c '^[tT]' || true)"
# The text form names the rule of each held pair.
run 0 "dry run as text" "$SUTURE" update --offline --automatic --dry-run
grep -q "held (window: outside the maintenance window, Moderate is below immediate_severity High)" <<<"$output" &&
    pass "the text names the window rule" || fail_check "no window rule in: $(head -5 <<<"$output")"

run 0 "real automatic run, outside the window" "$SUTURE" update --offline --automatic --json
check_eq "applied = what the dry run said would be" "$would" "$(pairs applied | jq -c '[.[] | .[3] = ""]')"
check_eq "held = what the dry run said would be" "$held" "$(pairs held)"
check_eq "the holders carry only the High patch" 3 "$(patches_in_holders)"

# 2. Inside the window: the rest. The daemon reads the clock at each run;
# it was started with SUTURE_TEST_NOW, so restart it with the new time.
kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
export SUTURE_TEST_NOW=$inside
start_sutured "$sutured" --rescan-seconds 0 --no-new-processes
run 0 "dry run inside the window" "$SUTURE" update --offline --automatic --dry-run --json
check_eq "the window is open" inside "$(jq -r .window <<<"$output")"
would=$(pairs would_apply)
check_eq "would apply the other $((per_process - 1)) per holder" "$((3 * (per_process - 1)))" "$(jq length <<<"$would")"
run 0 "real automatic run inside the window" "$SUTURE" update --offline --automatic --json
check_eq "applied = the dry run's" "$would" "$(pairs applied | jq -c '[.[] | .[3] = ""]')"
check_eq "every holder carries all $per_process" "$((3 * per_process))" "$(patches_in_holders)"

# 3. Outside the window again, a new process: it gets everything the host
# applied before (no process stays unpatched because of the clock).
kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
export SUTURE_TEST_NOW=$outside
start_sutured "$sutured" --rescan-seconds 0 --no-new-processes
first_fleet=("${fleet[@]}")
new_holder
newcomer=${fleet[0]}
ours="[$newcomer]"
run 0 "automatic run outside the window, a new process" "$SUTURE" update --offline --automatic --json
check_eq "the new process gets all $per_process already applied on the host" "$per_process" \
    "$(pairs applied | jq length)"
check_eq "nothing held back for it" 0 "$(pairs held | jq length)"

# 4. One-time selections (manual runs: the window does not apply), on
# another new process.
new_holder
ours="[${fleet[0]}]"
run 0 "--min-severity Moderate, dry run" "$SUTURE" update --offline --dry-run --min-severity Moderate --json
check_eq "--min-severity Moderate: the High and the two Moderate patches" \
    '["CVE-2026-63072","CVE-2026-63076","CVE-2026-84782"]' "$(pairs would_apply | jq -c '[.[][1]] | sort')"
check_eq "the rest held by min_severity" "$((per_process - 3))" "$(pairs held | jq '[.[] | select(.[3] == "min_severity")] | length')"
run 0 "--cve CVE-2026-63076 CVE-2026-35189 --exclude-cve CVE-2026-35189" \
    "$SUTURE" update --offline --cve CVE-2026-63076 CVE-2026-35189 --exclude-cve CVE-2026-35189 --json
check_eq "only CVE-2026-63076 applied" '["CVE-2026-63076"]' "$(pairs applied | jq -c '[.[][1]]')"
check_eq "CVE-2026-35189 held by exclude_cve" '["CVE-2026-35189"]' \
    "$(pairs held | jq -c '[.[] | select(.[3] == "exclude_cve") | .[1]]')"
run 2 "an unknown severity is a usage error" "$SUTURE" update --min-severity Severe

# 5. auto_apply = none: an automatic run applies nothing, a manual one does.
echo "auto_apply = none" >>"$SUTURE_CONFIG_DIR/suture.conf"
run 0 "automatic run with auto_apply = none" "$SUTURE" update --offline --automatic --json
check_eq "nothing applied" 0 "$(pairs applied | jq length)"
check_eq "every pair held by auto_apply" "$((per_process - 1))" "$(pairs held | jq '[.[] | select(.[3] == "auto_apply")] | length')"
echo "colour = blue" >>"$SUTURE_CONFIG_DIR/suture.conf"
run 1 "a bad suture.conf fails the run" "$SUTURE" update --offline --automatic
grep -q "suture.conf:.*unknown key colour" <<<"$errors" && pass "the error names the file and line" ||
    fail_check "error: $errors"
check_eq "history names the held back pairs" 1 \
    "$(sqlite3 "$state" "select count(*) from history where action = 'update' and message like '%held back (automatic)%'" | awk '{print ($1 > 0)}')"

# 6. The rollback plan: one CVE's patch out of every process of the host,
# through the daemon, recorded. (It also reverts that patch from any other
# process on the host that has it: CVE-2026-35189 is a Low one no other
# test looks at.) The first three holders have every patch.
ours=$(printf '%s\n' "${first_fleet[@]}" | jq -s .)
run 0 "suture revert --cve CVE-2026-35189" "$SUTURE" revert --cve CVE-2026-35189 --json
check_eq "reverted from each of the first three holders" \
    "$(jq -c --argjson ours "$ours" '[$ours[] | [., "CVE-2026-35189", 1, ""]] | sort' <<<null)" "$(pairs reverted)"
check_eq "their other patches stay" "$((3 * (per_process - 1)))" \
    "$("$SUTURE" status --json $(printf -- '--pid %s ' "${first_fleet[@]}") | jq '[.processes[].patches[] | select(.state == "active")] | length')"
check_eq "the database records the reverts" 3 \
    "$(sqlite3 "$state" "select count(*) from applications where patch_id = 'CVE-2026-35189' and state = 'reverted' and pid in ($(IFS=,; echo "${first_fleet[*]}"))")"
run 2 "revert needs --pid, --cve or --all" "$SUTURE" revert
run 2 "--pid and --all together are a usage error" "$SUTURE" revert --pid 1 --all
finish
