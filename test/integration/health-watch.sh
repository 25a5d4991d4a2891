#!/usr/bin/env bash
# The health watch through the real daemon on a private D-Bus bus, with its
# state in a real SQLite file: a deliberately bad patch (its replacement of
# OPENSSL_version_major traps on the first call), packed here with
# suture-pack against the archive's libcrypto and published with a good one
# (OpenSSL_version) in a signed loopback feed; `suture update` applies both
# to ten processes of one executable; a crash of a process suture never
# patched is blamed on nothing; then one process is made to call the bad
# function: it dies of SIGILL, and sutured reverts the bad patch from the
# other nine (alive, computing right, the good patch still applied),
# quarantines it (PatchQuarantined signal, history, `suture quarantine
# list`), and the next `suture update` holds it back as `quarantined`; a
# release lets it be applied again. Last, `suture --direct update --watch`
# without a daemon does the same in the foreground. With canary_seconds,
# only one of ten new processes (the canary) is patched first; it dies;
# the patch is quarantined and the nine are never touched. `suture report`
# on the database of the run says all of it; a new process gets the good
# patch at its start and not the quarantined one. Prints the revert
# latency (from the command that makes the process crash to the last of the
# nine seen unpatched: a figure, not an assertion).
#
# Usage (meson passes it): health-watch.sh SUTURED REPRODUCER_63074
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the holders and the proc connector's exit events"
: "${SUTURE_FEED:?}" "${SUTURE_PACK:?}" "${OPENSSL_CRASH_OBJECT:?}" "${OPENSSL_VERSION_OBJECT:?}"
sutured=${1:?}
reproducer=${2:?}  # a program linked with libcrypto: sutured patches it at its start
command -v dbus-monitor >/dev/null || skip "needs dbus-monitor (package dbus)"

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
library_dir=$scratch/archive/usr/lib/x86_64-linux-gnu
libcrypto=$(readlink -f "$library_dir/libcrypto.so.3")
build_id=$(build_id_of "$libcrypto")

bad=test-crash-major
good=test-good-version
pack_test_patchset "$bad" CVE-2099-0001 "$libcrypto" libcrypto.so.3 "$OPENSSL_CRASH_OBJECT" OPENSSL_version_major=OPENSSL_version_major_crash
pack_test_patchset "$good" CVE-2099-0002 "$libcrypto" libcrypto.so.3 "$OPENSSL_VERSION_OBJECT" OpenSSL_version=OpenSSL_version_suture_test

# The signed loopback feed with both, configured as the test's only remote.
repo=$scratch/repo
# latest_targets_version: the version of the repository's newest targets
# metadata (N of N.targets.json), which the next refresh verifies.
latest_targets_version() {
    ls "$repo" | sed -n 's/^\([0-9]*\)\.targets\.json$/\1/p' | sort -n | tail -n 1
}
# First the good patch alone; the bad one is published later.
test_feed init
test_feed add "$scratch/patchsets/$good"
test_feed publish
good_targets_version=$(latest_targets_version)
use_test_feed
cat >"$SUTURE_CONFIG_DIR/suture.conf" <<EOF
# The health watch blames a crash on what was applied this long before it.
watch_seconds = 300
EOF

start_private_system_bus
dbus-monitor --address "$DBUS_SYSTEM_BUS_ADDRESS" \
    "type='signal',interface='org.suture.Suture1',member='PatchQuarantined'" >"$scratch/signals.log" 2>&1 &
started_pids+=($!)
start_sutured "$sutured" --rescan-seconds 0 --no-new-processes
unset SUTURE_STATE_DB SUTURE_FEED_CACHE  # the CLI goes to the daemon
state=$scratch/state.db

# Ten processes of one executable on the archive's libcrypto; each calls
# OPENSSL_version_major or OpenSSL_version when asked.
holders=()
for _ in $(seq 10); do
    start_program holder "LD_LIBRARY_PATH=$library_dir" -- "$HOLD_OPENSSL" libcrypto.so.3 libssl.so.3
    holders+=("$holder")
done
check_eq "before: OPENSSL_version_major" "major 3" "$(ask "${holders[0]}" major)"
pid_args=()
for pid in "${holders[@]}"; do pid_args+=(--pid "$pid"); done
# active_in PATCH-ID PID...: how many of these processes carry PATCH-ID active.
active_in() {
    local id=$1
    shift
    local args=()
    for pid in "$@"; do args+=(--pid "$pid"); done
    "$SUTURE" status --json "${args[@]}" |
        jq --arg id "$id" '[.processes[].patches[] | select(.state == "active" and .patch_id == $id)] | length'
}
ours='[.actions[] | select(.pid as $p | $holders | index($p))]'
# wait_for_end PID: sets `status` to the wait status of our child PID once
# it ended; one still alive after 5 s is killed (SIGKILL: 137), so the test
# never hangs. (Not in a command substitution: a subshell cannot wait.)
wait_for_end() {
    status=0
    for _ in $(seq 100); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.05
    done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || status=$?
}
holders_json=$(printf '%s\n' "${holders[@]}" | jq -s .)

applied_of() {
    jq --argjson holders "$holders_json" --arg id "$1" "[$ours[] | select(.patch_id == \$id and .outcome == \"applied\")] | length" <<<"$output"
}

# 1. A good patch under the watch: applied, called in every process, stays.
run 0 "suture update (through sutured): the good patch" "$SUTURE" update --json
check_eq "the good patch applied to the ten" 10 "$(applied_of "$good")"
check_eq "the good patch works in all ten" 10 \
    "$(for pid in "${holders[@]}"; do ask "$pid" version; done | grep -c '^OpenSSL patched by suture (test)$')"
sleep 1
check_eq "the good patch stays applied under the watch" 10 "$(active_in "$good" "${holders[@]}")"
check_eq "nothing quarantined" '[]' "$("$SUTURE" quarantine list --json | jq -c '.quarantined')"

# 2. The bad patch published and applied by the next update (a later apply
# than the good one's: the watch blames the last apply of a process).
test_feed add "$scratch/patchsets/$bad"
test_feed publish
bad_targets_version=$(latest_targets_version)
sleep 1
run 0 "suture update (through sutured): the bad patch" "$SUTURE" update --json
check_eq "the bad patch applied to the ten" 10 "$(applied_of "$bad")"

# 3. A crash of a process suture never patched: blamed on nothing.
sleep 600 &
stranger=$!
started_pids+=("$stranger")
# Not before it runs sleep: a signal that reached the forked shell before
# its exec was seen lost, and the wait below then waited 600 s.
wait_for_exec "$stranger" "$(readlink -f "$(command -v sleep)")"
kill -SEGV "$stranger"
wait "$stranger" 2>/dev/null || true
sleep 1
check_eq "a crash of an unpatched process quarantines nothing" '[]' \
    "$("$SUTURE" quarantine list --json | jq -c '.quarantined')"
check_eq "and reverts nothing" 10 "$(active_in "$bad" "${holders[@]}")"

# 4. The first call of the bad function: the process dies of SIGILL.
victim=${holders[0]}
others=("${holders[@]:1}")
start_ns=$(date +%s%N)
echo major >&"${target_fd[$victim]}"
wait_for_end "$victim"
check_eq "the process that called the bad function died of SIGILL (128+4)" 132 "$status"
# Within a few seconds (asserted loosely; the figure is printed) the other
# nine are unpatched.
remaining=9
for _ in $(seq 200); do
    remaining=$(active_in "$bad" "${others[@]}")
    [ "$remaining" = 0 ] && break
    sleep 0.02
done
end_ns=$(date +%s%N)
check_eq "the bad patch reverted from the other nine" 0 "$remaining"
echo "figure: revert latency from the crashing call to the last of 9 processes seen unpatched: $(((end_ns - start_ns) / 1000000)) ms"
grep -o "reverted from 9 process(es) in [0-9]* ms" "$scratch/sutured.log" | head -n 1 |
    sed 's/^/figure: sutured: /' || true
alive=0
for pid in "${others[@]}"; do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done
check_eq "the other nine are alive" 9 "$alive"
check_eq "and compute right: OPENSSL_version_major is the original's" "major 3" "$(ask "${others[0]}" major)"
check_eq "every one of them: the original's" 9 \
    "$(for pid in "${others[@]}"; do ask "$pid" major; done | grep -c '^major 3$')"
check_eq "the good patch stays applied in the nine" 9 "$(active_in "$good" "${others[@]}")"
check_eq "and still works" "OpenSSL patched by suture (test)" "$(ask "${others[2]}" version)"
kill -0 "$daemon_pid" && pass "sutured is alive" || fail_check "sutured died"

# 5. Quarantined, and said so: the list, the history, the signal.
run 0 "suture quarantine list --json" "$SUTURE" quarantine list --json
check_eq "quarantined: the bad patch id alone" "[\"$bad\"]" "$(jq -c '[.quarantined[].patch_id]' <<<"$output")"
check_eq "the crash named: pid, signal, reason" "$victim 4 crash" \
    "$(jq -r '.quarantined[0] | "\(.pid) \(.signal) \(.reason)"' <<<"$output")"
run 0 "suture quarantine list (text)" "$SUTURE" quarantine list
grep -q "^$bad level 1: quarantined at .*killed by SIGILL" <<<"$output" && pass "the text names the crash" ||
    fail_check "text: $output"
check_eq "history: a quarantine entry for the bad patch" 1 \
    "$(sqlite3 "$state" "select count(*) from history where action = 'quarantine' and patch_id = '$bad' and pid = $victim and outcome = 'ok' and message like '%killed by SIGILL%reverted from 9 process(es)'")"
check_eq "history: nine reverts of it" 9 \
    "$(sqlite3 "$state" "select count(*) from history where action = 'revert' and patch_id = '$bad' and outcome = 'ok'")"
check_eq "history: the crashed process's records closed as crashed" 2 \
    "$(sqlite3 "$state" "select count(*) from history where action = 'close' and pid = $victim and reason = 'crashed'")"
check_eq "the database: the quarantine row" "$bad|1|$victim|4" \
    "$(sqlite3 "$state" "select patch_id, level, pid, signal from quarantine")"
sleep 0.5
grep -q "string \"$bad\"" "$scratch/signals.log" && grep -q "int32 $victim" "$scratch/signals.log" &&
    pass "PatchQuarantined signal for $bad, pid $victim" ||
    fail_check "no PatchQuarantined signal: $(cat "$scratch/signals.log")"
check_eq "the good patch is not quarantined" 0 "$(sqlite3 "$state" "select count(*) from quarantine where patch_id = '$good'")"
check_eq "0 other crashes: no other quarantine entry" 1 \
    "$(sqlite3 "$state" "select count(*) from history where action = 'quarantine'")"

# 6. Never applied again automatically: dry run and real run hold it back.
run 0 "dry run after the quarantine" "$SUTURE" update --dry-run --json
check_eq "dry run: the bad patch held (quarantined) for the nine" 9 \
    "$(jq --argjson holders "$holders_json" --arg id "$bad" "[$ours[] | select(.patch_id == \$id and .outcome == \"held\" and .reason == \"quarantined\")] | length" <<<"$output")"
run 0 "a second suture update" "$SUTURE" update --json
check_eq "second update: the bad patch held (quarantined) for the nine" 9 \
    "$(jq --argjson holders "$holders_json" --arg id "$bad" "[$ours[] | select(.patch_id == \$id and .outcome == \"held\" and .reason == \"quarantined\")] | length" <<<"$output")"
check_eq "second update: the bad patch applied nowhere" 0 \
    "$(jq --arg id "$bad" '[.actions[] | select(.patch_id == $id and .outcome == "applied")] | length' <<<"$output")"
check_eq "the nine are still free of it" 0 "$(active_in "$bad" "${others[@]}")"
run 0 "suture update --automatic" "$SUTURE" update --automatic --json
check_eq "automatic run: applied nowhere" 0 \
    "$(jq --arg id "$bad" '[.actions[] | select(.patch_id == $id and .outcome == "applied")] | length' <<<"$output")"

# 7. Released: an update applies it again, then it is reverted by hand.
run 0 "suture quarantine release $bad" "$SUTURE" quarantine release "$bad"
run 1 "releasing it again: not quarantined" "$SUTURE" quarantine release "$bad"
check_eq "history: the release" 1 \
    "$(sqlite3 "$state" "select count(*) from history where action = 'release' and patch_id = '$bad'")"
run 0 "update after the release" "$SUTURE" update --json
check_eq "after the release it is applied again to the nine" 9 "$(active_in "$bad" "${others[@]}")"
run 0 "revert it everywhere" "$SUTURE" revert --cve CVE-2099-0001 --json

# 8. Without a daemon: suture --direct update --watch in the foreground.
kill "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
export SUTURE_STATE_DB=$state SUTURE_FEED_CACHE=$scratch/cache
"$SUTURE" --direct update --offline --watch --watch-seconds 8 --json >"$scratch/watch.json" 2>"$scratch/watch.err" &
watcher=$!
started_pids+=("$watcher")
for _ in $(seq 100); do
    [ "$(active_in "$bad" "${others[@]}")" = 9 ] && break
    sleep 0.1
done
check_eq "--direct --watch: applied to the nine" 9 "$(active_in "$bad" "${others[@]}")"
if [ "$(active_in "$bad" "${others[0]}")" != 1 ]; then
    # Nothing to make crash: say why and stop (a wait would never end).
    kill "$watcher" 2>/dev/null || true
    cat "$scratch/watch.err"
    finish
fi
victim=${others[0]}
others=("${others[@]:1}")
echo major >&"${target_fd[$victim]}"
wait_for_end "$victim"
check_eq "--direct --watch: the caller died of SIGILL" 132 "$status"
status=0
wait "$watcher" || status=$?
check_eq "--direct --watch: exit status" 0 "$status"
check_eq "--direct --watch: its report names the crash and the eight reverts" "$victim 4 $bad 8" \
    "$(jq -r '.health[0] | "\(.pid) \(.signal) \(.quarantined[0].patch_id) \([.reverted.actions[] | select(.outcome == "reverted")] | length)"' "$scratch/watch.json")"
check_eq "--direct --watch: the eight unpatched" 0 "$(active_in "$bad" "${others[@]}")"
check_eq "--direct --watch: quarantined again" "$bad" "$(sqlite3 "$state" "select patch_id from quarantine")"
echo "figure: --direct --watch: revert took $(jq '.health[0].revert_ms' "$scratch/watch.json") ms in the watcher"

# 9. Canaries inside the host (canary_seconds): with the bad patch released
# and the canary on, only one process of the executable is patched first;
# it dies calling the bad function; the patch is quarantined and the other
# nine are never touched.
for pid in "${others[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
run 0 "release the bad patch once more" "$SUTURE" quarantine release "$bad"
cat >>"$SUTURE_CONFIG_DIR/suture.conf" <<CONF
# One process per executable first, watched this long.
canary_seconds = 6
CONF
start_sutured "$sutured" --rescan-seconds 0 --no-new-processes
unset SUTURE_STATE_DB SUTURE_FEED_CACHE
fleet=()
for _ in $(seq 10); do
    start_program holder "LD_LIBRARY_PATH=$library_dir" -- "$HOLD_OPENSSL" libcrypto.so.3 libssl.so.3
    fleet+=("$holder")
done
holders_json=$(printf '%s\n' "${fleet[@]}" | jq -s .)
# The dry run names the canary: one process of the fleet first, the nine after.
phases() { jq -c --argjson holders "$holders_json" --arg id "$bad" "[$ours[] | select(.patch_id == \$id) | {pid, phase}] | sort_by(.pid)" "$1"; }
"$SUTURE" update --offline --dry-run --cve CVE-2099-0001 --json >"$scratch/canary-dry.json"
check_eq "dry run: one canary in the fleet" 1 \
    "$(phases "$scratch/canary-dry.json" | jq '[.[] | select(.phase == "canary")] | length')"
check_eq "dry run: nine after the canary" 9 \
    "$(phases "$scratch/canary-dry.json" | jq '[.[] | select(.phase == "after_canary")] | length')"
dry_canary=$(phases "$scratch/canary-dry.json" | jq -r '.[] | select(.phase == "canary") | .pid')
"$SUTURE" update --offline --cve CVE-2099-0001 --json >"$scratch/canary.json" 2>"$scratch/canary.err" &
updater=$!
started_pids+=("$updater")
# carriers: the pids of the fleet with the bad patch active, one status call.
carriers() {
    local args=()
    for pid in "${fleet[@]}"; do args+=(--pid "$pid"); done
    "$SUTURE" status --json "${args[@]}" |
        jq -r --arg id "$bad" '[.processes[] | select(any(.patches[]; .state == "active" and .patch_id == $id)) | .pid] | join(" ")'
}
canary=""
for _ in $(seq 100); do
    carrying=$(carriers)
    [ -n "$carrying" ] && break
    sleep 0.05
done
canary=${carrying%% *}
[ -n "$canary" ] && pass "a canary (pid $canary) got the bad patch first" || fail_check "no canary was patched"
check_eq "only the canary carries it while it is watched" "$canary" "$carrying"
echo major >&"${target_fd[$canary]}"
status=0
wait "$canary" || status=$?
check_eq "the canary died of SIGILL" 132 "$status"
status=0
wait "$updater" || status=$?
check_eq "the canary update: exit status" 0 "$status"
rest=()
for pid in "${fleet[@]}"; do [ "$pid" != "$canary" ] && rest+=("$pid"); done
check_eq "the canary update: the other nine held (quarantined: its canary crashed)" 9 \
    "$(jq --argjson holders "$holders_json" --arg id "$bad" "[$ours[] | select(.patch_id == \$id and .outcome == \"held\" and .reason == \"quarantined\" and (.message | startswith(\"its canary crashed\")))] | length" "$scratch/canary.json")"
check_eq "the canary update: applied to the canary alone" "[$canary]" \
    "$(jq -c --argjson holders "$holders_json" --arg id "$bad" "[$ours[] | select(.patch_id == \$id and .outcome == \"applied\") | .pid]" "$scratch/canary.json")"
check_eq "the canary update: a canary group (at least ours)" true "$(jq '.canaries >= 1' "$scratch/canary.json")"
check_eq "the dry run named this canary" "$dry_canary" "$canary"
check_eq "the real run's phases are the dry run's" "$(phases "$scratch/canary-dry.json")" "$(phases "$scratch/canary.json")"
check_eq "the dry run counted the real run's canary groups" "$(jq .canaries "$scratch/canary.json")" \
    "$(jq .canaries "$scratch/canary-dry.json")"
check_eq "the other nine never carried it" 0 "$(active_in "$bad" "${rest[@]}")"
check_eq "no revert was needed: none of the nine was touched" 0 \
    "$(sqlite3 "$state" "select count(*) from history where action = 'revert' and patch_id = '$bad' and pid in ($(IFS=,; echo "${rest[*]}"))")"
check_eq "the nine are alive and compute right" 9 \
    "$(for pid in "${rest[@]}"; do ask "$pid" major; done | grep -c '^major 3$')"
check_eq "quarantined, naming the canary" "$bad|$canary|4" "$(sqlite3 "$state" "select patch_id, pid, signal from quarantine")"
# 10. The audit report of this run's database: per patch, where and by whom
# it was applied, from which feed, how each application ended, what the
# health watch saw.
run 0 "suture report --format json" "$SUTURE" report --state "$state" --format json
report=$output
bad_report() { jq -c --arg id "$bad" ".patches[] | select(.patch_id == \$id) | $1" <<<"$report"; }
check_eq "report: the bad patch's feed (remote, digest of the published file)" \
    "\"test $(sha256sum "$scratch/patchsets/$bad/$bad.suture" | cut -d' ' -f1) CVE-2099-0001\"" \
    "$(bad_report '.feed | "\(.remote) \(.sha256) \(.cves)"')"
check_eq "report: the canary's application ended by the crash" '"crash"' \
    "$(bad_report ".applications[] | select(.pid == $canary) | .ended_by")"
check_eq "report: the first victim's too, and its build" "\"crash $build_id\"" \
    "$(bad_report ".applications[] | select(.pid == ${holders[0]}) | \"\\(.ended_by) \\(.build_id)\"")"
check_eq "report: applied by uid 0, by hand (an operator's suture update)" '"0 false applied"' \
    "$(bad_report ".applications[] | select(.pid == $canary) | \"\\(.caller_uid) \\(.automatic) \\(.how)\"")"
check_eq "report: the quarantine names the canary" "$canary" "$(bad_report '.quarantine.pid')"
# The feed metadata of each apply: the targets version that listed the
# patch (the good one's first apply came before the bad one was published)
# and the targets key of the feed's root.json that signed it.
targets_keys=$(jq -c '.signed.roles.targets.keyids | sort' "$repo/1.root.json")
check_eq "the two publications are two targets versions" true \
    "$([ "$bad_targets_version" -gt "$good_targets_version" ] && echo true || echo false)"
check_eq "report: the canary's apply came from the targets version that published the bad patch" \
    "$bad_targets_version $targets_keys" \
    "$(bad_report ".applications[] | select(.pid == $canary) | \"\\(.targets_version) \\(.signing_keys)\"" | jq -r .)"
check_eq "report: the good patch's first apply came from the version before" \
    "$good_targets_version $targets_keys" \
    "$(jq -r --arg id "$good" '.patches[] | select(.patch_id == $id) | .applications[0] | "\(.targets_version) \(.signing_keys | tojson)"' <<<"$report")"
# unit_of PID: the systemd unit of /proc/PID/cgroup ("" for none), as suture reads it.
unit_of() {
    { sed -n 's/^0:://p; s/^[0-9]*:name=systemd://p' "/proc/$1/cgroup" | tr '/' '\n' |
        grep -E '\.(service|scope)$' || true; } | tail -n 1
}
check_eq "report: the canary's unit at apply time (the test's, which started it)" \
    "\"$(unit_of $$)\"" "$(bad_report ".applications[] | select(.pid == $canary) | .unit")"
check_eq "report: the watch's events: three quarantines, two releases" "3 2" \
    "$(bad_report '[.events[] | select(.action == "quarantine")] | length' | tr -d '\n') $(bad_report '[.events[] | select(.action == "release")] | length')"
check_eq "report: the good patch is not quarantined" null \
    "$(jq -c --arg id "$good" '.patches[] | select(.patch_id == $id) | .quarantine' <<<"$report")"
run 0 "suture report (Markdown)" "$SUTURE" report --state "$state"
grep -q "^## $bad level 1$" <<<"$output" && grep -q "^\*\*Quarantined\*\* at .*pid $canary" <<<"$output" &&
    grep -q "^| $canary | .* | targets v$bad_targets_version, signed by \`$(jq -r '.[0]' <<<"$targets_keys")\` |" <<<"$output" &&
    pass "the Markdown report names the patch, its quarantine and the canary with its feed metadata" ||
    fail_check "Markdown report: $(head -20 <<<"$output")"
run 0 "suture report --since a future day" "$SUTURE" report --state "$state" --since 2099-01-01 --format json
check_eq "nothing applied since then" 0 "$(jq '.patches | length' <<<"$output")"
run 2 "suture report --since a bad date" "$SUTURE" report --state "$state" --since yesterday
# 11. New processes: sutured (limited to the reproducers' directory)
# patches a program linked with libcrypto at its start with the good patch
# and not the quarantined one.
kill "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
start_sutured "$sutured" --rescan-seconds 0 --new-processes-under "$(dirname "$reproducer")"
start_program newcomer "LD_LIBRARY_PATH=$library_dir" -- "$reproducer"
for _ in $(seq 50); do
    [ "$(active_in "$good" "$newcomer")" = 1 ] && break
    sleep 0.1
done
check_eq "a new process gets the good patch" 1 "$(active_in "$good" "$newcomer")"
check_eq "and not the quarantined one" 0 "$(active_in "$bad" "$newcomer")"
finish
