#!/usr/bin/env bash
# The health watch's unit signal: a systemd unit entering `failed`, seen by
# sutured over D-Bus from a real systemd manager. This machine has no
# systemd as PID 1, so the manager is a real `systemd --user` on a session
# bus of the test's own (it runs in a mount namespace that shows it a
# /run/systemd/system, its sign of a systemd-booted host); sutured reads
# it through --systemd-bus. Two services run as transient units of that
# manager, each a program linked with the archive's libcrypto 3.0.20. A
# deliberately bad patch (its replacement of OPENSSL_version_major ends the
# process with exit status 3: no signal, so the crash watch cannot see it;
# packed here with suture-pack) is applied to both by `suture update`; the
# victim's service calls the function and exits 3, its unit enters
# `failed`, and sutured quarantines the patch (reason unit_failed, naming
# the unit) and reverts it from the other unit's process, which stays alive
# and computing right. A unit that fails without a recent apply blames
# nothing.
#
# Usage (meson passes it): health-unit.sh SUTURED
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the services and the proc connector"
: "${SUTURE_FEED:?}" "${SUTURE_PACK:?}" "${OPENSSL_EXIT_OBJECT:?}" "${HOLD_OPENSSL:?}"
sutured=${1:?}
for tool in systemd systemd-run systemctl dbus-daemon busctl unshare; do
    command -v "$tool" >/dev/null || skip "needs $tool"
done

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
library_dir=$scratch/archive/usr/lib/x86_64-linux-gnu
libcrypto=$(readlink -f "$library_dir/libcrypto.so.3")
bad=test-exit-major
pack_test_patchset "$bad" CVE-2099-0201 "$libcrypto" libcrypto.so.3 "$OPENSSL_EXIT_OBJECT" \
    OPENSSL_version_major=OPENSSL_version_major_exits
test_feed init
test_feed add "$scratch/patchsets/$bad"
test_feed publish
use_test_feed
echo "watch_seconds = 300" >"$SUTURE_CONFIG_DIR/suture.conf"

# A real systemd manager: `systemd --user` on a session bus of our own.
export XDG_RUNTIME_DIR=$scratch/xdg
mkdir -p -m 0700 "$XDG_RUNTIME_DIR"
session_bus=unix:path=$XDG_RUNTIME_DIR/bus
dbus-daemon --session --address="$session_bus" --nofork --nopidfile 2>"$scratch/session-bus.log" &
started_pids+=($!)
for _ in $(seq 100); do [ -S "$XDG_RUNTIME_DIR/bus" ] && break; sleep 0.05; done
export DBUS_SESSION_BUS_ADDRESS=$session_bus
[ -d /run/systemd ] || { mkdir /run/systemd && removed_paths+=(/run/systemd); }
unshare --mount --propagation private sh -c \
    'mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system && exec systemd --user' \
    >"$scratch/systemd.log" 2>&1 &
manager=$!
started_pids+=("$manager")
version=""
for _ in $(seq 100); do
    version=$(systemctl --user show -p Version --value 2>/dev/null || true)
    [ -n "$version" ] && break
    sleep 0.1
done
[ -n "$version" ] || { cat "$scratch/systemd.log"; skip "systemd --user did not start here"; }
pass "a real systemd user manager answers on the session bus (version $version)"
stop_manager() {
    systemctl --user exit 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$manager" 2>/dev/null || break; sleep 0.1; done
}

# start_service VAR NAME: a transient unit NAME running the holder on the
# archive's libcrypto, its commands through a fifo; VAR gets its pid.
start_service() {
    local dir=$scratch/$2 fd pid
    mkdir -p "$dir"
    mkfifo "$dir/in"
    systemd-run --user --unit="$2" -p Restart=no \
        -p StandardInput=file:"$dir/in" -p StandardOutput=file:"$dir/out" \
        -E LD_LIBRARY_PATH="$library_dir" "$HOLD_OPENSSL" libcrypto.so.3 libssl.so.3 \
        >>"$scratch/systemd-run.log" 2>&1 || { cat "$scratch/systemd-run.log"; fail_check "systemd-run $2"; finish; }
    exec {fd}>"$dir/in"
    wait_for_line "$dir/out" "^ready" || { fail_check "$2 did not start"; finish; }
    pid=$(systemctl --user show -p MainPID --value "$2")
    target_fd[$pid]=$fd
    target_out[$pid]=$dir/out
    printf -v "$1" '%s' "$pid"
}
start_service victim suture-victim.service
start_service bystander suture-bystander.service
check_eq "the victim runs in its unit" "0::/app.slice/suture-victim.service" \
    "$(grep '^0::' "/proc/$victim/cgroup")"
check_eq "before: OPENSSL_version_major" "major 3" "$(ask "$victim" major)"

start_private_system_bus
start_sutured "$sutured" --rescan-seconds 0 --no-new-processes --systemd-bus "$session_bus"
unset SUTURE_STATE_DB SUTURE_FEED_CACHE  # the CLI goes to the daemon
state_db=$scratch/state.db
for _ in $(seq 50); do
    grep -q "watching systemd's units" "$scratch/sutured.log" && break
    sleep 0.1
done
grep -q "watching systemd's units for the failed state" "$scratch/sutured.log" &&
    pass "sutured subscribed to the manager's units" || fail_check "sutured: $(cat "$scratch/sutured.log")"
active_in() {
    "$SUTURE" status --json --pid "$1" |
        jq --arg id "$bad" '[.processes[].patches[] | select(.state == "active" and .patch_id == $id)] | length'
}

# 1. A unit that fails with nothing applied in it recently: nothing blamed.
start_service idle suture-idle.service
kill -KILL "$idle"  # (a SIGTERM would be a clean stop for systemd)
for _ in $(seq 50); do
    [ "$(systemctl --user show -p ActiveState --value suture-idle.service)" = failed ] && break
    sleep 0.1
done
check_eq "an unpatched service's unit failed" failed "$(systemctl --user show -p ActiveState --value suture-idle.service)"
sleep 0.5
check_eq "and nothing is quarantined" '[]' "$("$SUTURE" quarantine list --json | jq -c '.quarantined')"

# 2. The bad patch applied to both services.
run 0 "suture update: the bad patch" "$SUTURE" update --cve CVE-2099-0201 --json
check_eq "applied to the victim" 1 "$(active_in "$victim")"
check_eq "applied to the bystander" 1 "$(active_in "$bystander")"
check_eq "recorded with its unit" "suture-victim.service" \
    "$(sqlite3 "$state_db" "select unit from applications where pid = $victim and patch_id = '$bad'")"

# 3. The victim calls it: exit 3, no signal; its unit fails; sutured
# quarantines the patch and reverts it from the bystander.
start_ns=$(date +%s%N)
echo major >&"${target_fd[$victim]}"
for _ in $(seq 50); do
    [ "$(systemctl --user show -p ActiveState --value suture-victim.service)" = failed ] && break
    sleep 0.1
done
unit_property() { systemctl --user show -p "$1" --value suture-victim.service; }
check_eq "the victim's unit failed: exit status 3, no signal" "failed exit-code 3" \
    "$(unit_property ActiveState) $(unit_property Result) $(unit_property ExecMainStatus)"
remaining=1
for _ in $(seq 100); do
    remaining=$(active_in "$bystander")
    [ "$remaining" = 0 ] && break
    sleep 0.05
done
end_ns=$(date +%s%N)
check_eq "the bad patch reverted from the bystander" 0 "$remaining"
echo "figure: from the call that ends the victim to the bystander seen unpatched: $(((end_ns - start_ns) / 1000000)) ms"
kill -0 "$bystander" && pass "the bystander is alive" || fail_check "the bystander died"
check_eq "and computes right" "major 3" "$(ask "$bystander" major)"
run 0 "suture quarantine list --json" "$SUTURE" quarantine list --json
check_eq "quarantined: the bad patch, reason unit_failed" "$bad unit_failed" \
    "$(jq -r '[.quarantined[] | "\(.patch_id) \(.reason)"] | join(",")' <<<"$output")"
grep -q "suture-victim.service which entered failed" <<<"$(jq -r '.quarantined[0].message' <<<"$output")" &&
    pass "the quarantine names the unit" || fail_check "quarantine: $output"
check_eq "history: the victim's record closed (unit_failed)" 1 \
    "$(sqlite3 "$state_db" "select count(*) from history where action = 'close' and pid = $victim and reason = 'unit_failed'")"
check_eq "history: one quarantine" 1 "$(sqlite3 "$state_db" "select count(*) from history where action = 'quarantine' and reason = 'unit_failed'")"
run 0 "the next update holds it back" "$SUTURE" update --offline --cve CVE-2099-0201 --json
check_eq "held for the bystander: quarantined" "held quarantined" \
    "$(jq -r --argjson pid "$bystander" '.actions[] | select(.pid == $pid) | "\(.outcome) \(.reason)"' <<<"$output")"
kill -0 "$daemon_pid" && pass "sutured is alive" || fail_check "sutured died"
systemctl --user stop suture-bystander.service 2>/dev/null || true
stop_manager
finish
