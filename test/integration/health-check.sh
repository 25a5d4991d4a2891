#!/usr/bin/env bash
# The health check (suture.conf `health_check = NAME: COMMAND`) through the
# real daemon on a private D-Bus bus, its state in a real SQLite file.
# nginx from Debian's packages runs in the pinned bookworm rootfs (the
# archive's libssl 3.0.20-1~deb12u2), a master and two workers, serving
# HTTPS on loopback; the check is curl fetching a page over TLS. A
# deliberately bad patch (its replacement of SSL_do_handshake fails every
# handshake and crashes nothing, packed here with suture-pack) is applied by
# `suture update` to the three processes: no process dies, so only the check
# can tell; sutured's check fails, the patch is quarantined and reverted
# from all three within a few seconds, and nginx serves TLS again with the
# same processes. A good patch under the same check stays applied. A check
# that already failed before the apply blames nothing. Prints how long
# from the apply to the revert (a figure, not an assertion).
#
# Usage (meson passes it): health-check.sh SUTURED
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot, ptrace of nginx"
: "${SUTURE_FEED:?}" "${SUTURE_PACK:?}" "${SSL_HANDSHAKE_FAIL_OBJECT:?}" "${OPENSSL_VERSION_OBJECT:?}"
sutured=${1:?}
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
command -v curl >/dev/null || skip "needs curl"
command -v dbus-monitor >/dev/null || skip "needs dbus-monitor (package dbus)"

rootfs=$("$SOURCE_ROOT/containers/make-rootfs" --pin libssl3=3.0.20-1~deb12u2 debian-12 nginx-light dovecot-imapd) ||
    skip "cannot build the pinned bookworm rootfs (archive unreachable?)"
libssl=$(readlink -f "$rootfs/usr/lib/x86_64-linux-gnu/libssl.so.3")
libcrypto=$(readlink -f "$rootfs/usr/lib/x86_64-linux-gnu/libcrypto.so.3")

bad=test-handshake-fails
good=test-good-version
pack_test_patchset "$bad" CVE-2099-0101 "$libssl" libssl.so.3 "$SSL_HANDSHAKE_FAIL_OBJECT" \
    SSL_do_handshake=SSL_do_handshake_fails
pack_test_patchset "$good" CVE-2099-0102 "$libcrypto" libcrypto.so.3 "$OPENSSL_VERSION_OBJECT" \
    OpenSSL_version=OpenSSL_version_suture_test

test_feed init
test_feed add "$scratch/patchsets/$good"
test_feed add "$scratch/patchsets/$bad"
test_feed publish
use_test_feed

# nginx in the rootfs, in its own mount and PID namespaces.
work=$(mktemp -d "$rootfs/tmp/suture-$test_name-XXXXXX")
removed_paths+=("$work")
inside=${work#"$rootfs"}
port=$((20000 + RANDOM % 20000))
mkdir -p "$work/nginx/logs" "$work/www"
echo healthy >"$work/www/health"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -keyout "$work/nginx/key.pem" -out "$work/nginx/cert.pem" 2>/dev/null
cat >"$work/nginx/nginx.conf" <<END_OF_CONFIG
daemon off;
master_process on;
worker_processes 2;
pid $inside/nginx/nginx.pid;
error_log $inside/nginx/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $inside/nginx/cert.pem;
        ssl_certificate_key $inside/nginx/key.pem;
        root $inside/www;
    }
}
END_OF_CONFIG
chmod -R a+rX "$work"
unshare --mount --pid --fork --kill-child chroot "$rootfs" \
    nginx -p "$inside/nginx" -c "$inside/nginx/nginx.conf" >"$scratch/nginx.out" 2>&1 &
launcher=$!
started_pids+=("$launcher")
master=""
workers=()
for _ in $(seq 100); do
    master=$(pgrep -P "$launcher" || true)
    if [ -n "$master" ]; then
        mapfile -t workers < <(pgrep -P "$master" || true)
        [ "${#workers[@]}" -ge 2 ] && break
    fi
    sleep 0.1
done
[ -n "$master" ] || { cat "$scratch/nginx.out"; fail_check "nginx did not start in the rootfs"; finish; }
nginx_pids=("$master" "${workers[@]}")
check_eq "nginx: a master and 2 workers" 3 "${#nginx_pids[@]}"
nginx_json=$(printf '%s\n' "${nginx_pids[@]}" | jq -s .)
nginx_sql=$(IFS=,; echo "${nginx_pids[*]}")
# ours OUTCOME ID: how many of the update document's actions on nginx's
# processes are OUTCOME for ID (the update patches every matching process
# of the host; the checks count nginx's).
ours() {
    jq --argjson nginx "$nginx_json" --arg outcome "$1" --arg id "$2" \
        '[.actions[] | select((.pid as $p | $nginx | index($p)) and .patch_id == $id and .outcome == $outcome)] | length' <<<"$output"
}
probe="curl -fsSk --max-time 3 https://127.0.0.1:$port/health"
check_eq "before: nginx answers the check over TLS" healthy "$($probe || true)"

cat >"$SUTURE_CONFIG_DIR/suture.conf" <<EOF
watch_seconds = 300
# The check of the nginx processes (their executable is nginx: no unit here).
health_check = nginx: $probe
health_check_interval = 1
health_check_timeout = 5
EOF

start_private_system_bus
dbus-monitor --address "$DBUS_SYSTEM_BUS_ADDRESS" \
    "type='signal',interface='org.suture.Suture1',member='PatchQuarantined'" >"$scratch/signals.log" 2>&1 &
started_pids+=($!)
start_sutured "$sutured" --rescan-seconds 0 --no-new-processes
unset SUTURE_STATE_DB SUTURE_FEED_CACHE  # the CLI goes to the daemon
state=$scratch/state.db
# active_in PATCH-ID: how many nginx processes carry PATCH-ID active.
active_in() {
    local args=()
    for pid in "${nginx_pids[@]}"; do args+=(--pid "$pid"); done
    "$SUTURE" status --json "${args[@]}" |
        jq --arg id "$1" '[.processes[].patches[] | select(.state == "active" and .patch_id == $id)] | length'
}
nginx_alive() {
    local alive=0
    for pid in "${nginx_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=$((alive + 1)); done
    echo "$alive"
}

# 1. A good patch under the check: applied to the three, stays applied
# while the check runs (every second) and passes.
# (The first update refreshes the feed, in sutured's cache.)
run 0 "suture update: the good patch" "$SUTURE" update --cve CVE-2099-0102 --json
check_eq "the good patch applied to the three" 3 "$(ours applied "$good")"
check_eq "no problem before the apply (the check's baseline passed)" '[]' "$(jq -c '.problems' <<<"$output")"
sleep 4
check_eq "the good patch stays applied under the check" 3 "$(active_in "$good")"
check_eq "nothing quarantined" '[]' "$("$SUTURE" quarantine list --json | jq -c '.quarantined')"

# 2. The bad patch: nginx keeps running, every handshake fails, the check
# fails, sutured quarantines and reverts it.
start_ns=$(date +%s%N)
run 0 "suture update: the bad patch" "$SUTURE" update --offline --cve CVE-2099-0101 --json
check_eq "the bad patch applied to the three" 3 "$(ours applied "$bad")"
remaining=3
for _ in $(seq 150); do
    remaining=$(active_in "$bad")
    [ "$remaining" = 0 ] && break
    sleep 0.1
done
end_ns=$(date +%s%N)
check_eq "the bad patch reverted from the three" 0 "$remaining"
echo "figure: from the bad apply to the last of 3 nginx processes seen unpatched: $(((end_ns - start_ns) / 1000000)) ms (check every 1 s)"
check_eq "no nginx process died" 3 "$(nginx_alive)"
check_eq "the same master's children" "${workers[*]}" "$(pgrep -P "$master" | tr '\n' ' ' | sed 's/ $//')"
check_eq "nginx answers over TLS again" healthy "$($probe || true)"
check_eq "the good patch is still applied" 3 "$(active_in "$good")"
run 0 "suture quarantine list --json" "$SUTURE" quarantine list --json
check_eq "quarantined: the bad patch alone, reason health_check" "$bad health_check" \
    "$(jq -r '[.quarantined[] | "\(.patch_id) \(.reason)"] | join(",")' <<<"$output")"
grep -q "failed health_check nginx" <<<"$(jq -r '.quarantined[0].message' <<<"$output")" &&
    pass "the quarantine names the check" || fail_check "quarantine message: $output"
check_eq "history: a quarantine entry for the bad patch, reason health_check" 1 \
    "$(sqlite3 "$state" "select count(*) from history where action = 'quarantine' and patch_id = '$bad' and reason = 'health_check'")"
check_eq "history: its reverts from the three" 3 \
    "$(sqlite3 "$state" "select count(*) from history where action = 'revert' and patch_id = '$bad' and outcome = 'ok' and pid in ($nginx_sql)")"
sleep 0.5
grep -q "string \"$bad\"" "$scratch/signals.log" && pass "PatchQuarantined signal for $bad" ||
    fail_check "no PatchQuarantined signal: $(cat "$scratch/signals.log")"
run 0 "the next update holds it back" "$SUTURE" update --offline --cve CVE-2099-0101 --json
check_eq "held: quarantined, for the three" 3 "$(ours held "$bad")"

# 3. A check that fails before the apply blames nothing: the good patch
# reverted, the check made to fail always, the good patch applied again.
run 0 "revert the good patch" "$SUTURE" revert --cve CVE-2099-0102 --json
sed -i "s|^health_check = .*|health_check = nginx: curl -fsSk --max-time 1 https://127.0.0.1:1/|" \
    "$SUTURE_CONFIG_DIR/suture.conf"
run 0 "suture update with a check already failing" "$SUTURE" update --offline --cve CVE-2099-0102 --json
check_eq "the update says the check failed before the apply" 1 \
    "$(jq '[.problems[] | select(test("health_check nginx failed before the apply"))] | length' <<<"$output")"
sleep 4
check_eq "the good patch stays applied: a failing check that was failing before blames nothing" 3 \
    "$(active_in "$good")"
check_eq "still one quarantine" 1 "$(sqlite3 "$state" "select count(*) from quarantine")"

# 4. A bad health_check line is refused with the file and line.
echo "health_check = nginx" >>"$SUTURE_CONFIG_DIR/suture.conf"
run 1 "suture update --dry-run with a bad health_check line" "$SUTURE" update --dry-run --offline
grep -q "suture.conf:[0-9]*: health_check is NAME: COMMAND" <<<"$output$errors" &&
    pass "the refusal names the file, the line and the form" || fail_check "refusal: $output $errors"
kill -0 "$daemon_pid" && pass "sutured is alive" || fail_check "sutured died"
finish
