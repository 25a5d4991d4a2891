#!/usr/bin/env bash
# A mail server patched while clients keep connecting: Debian's dovecot IMAPS
# in a bookworm root filesystem pinned to the vulnerable libssl3
# 3.0.20-1~deb12u2, in its own mount and PID namespaces, on loopback. A client
# loop on the host opens IMAPS sessions one after another (TLS handshake,
# LOGIN, LOGOUT) while suture, on the host, applies and reverts a real
# patchset (CVE-2026-63076) on every dovecot process that maps the
# vulnerable libcrypto. No session may fail; sessions per second with and
# without patching are printed (figures, never assertions).
#
# dovecot runs its login processes in "performance mode" (long-lived
# imap-login processes that terminate TLS for many sessions) as a busy
# server would; the per-session imap processes come and go, so each cycle
# scans for the current processes and counts an apply to one that exited in
# between as "gone", not as a failure.
#
# SUTURE_MAIL_CYCLES (default 10; 50 for the benchmark) sets the size.
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot and ptrace of dovecot"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
cycles=${SUTURE_MAIL_CYCLES:-10}
patch=$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2/CVE-2026-63076/CVE-2026-63076.suture
vulnerable=7d90f38412d00023e58392b03612a24b62fcaede

rootfs=$("$SOURCE_ROOT/containers/make-rootfs" --pin libssl3=3.0.20-1~deb12u2 debian-12 nginx-light dovecot-imapd) ||
    skip "cannot build the pinned bookworm rootfs (archive unreachable?)"
work=$(mktemp -d "$rootfs/tmp/suture-$test_name-XXXXXX")
removed_paths+=("$work")
inside=${work#"$rootfs"}
port=$((20000 + RANDOM % 20000))
mkdir -p "$work/run" "$work/state" "$work/home"
chown 65534:65534 "$work/home"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
echo "suture:{PLAIN}secret" >"$work/users"
cat >"$work/dovecot.conf" <<END_OF_CONFIG
base_dir = $inside/run
state_dir = $inside/state
log_path = $inside/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <$inside/cert.pem
ssl_key = <$inside/key.pem
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = scheme=PLAIN $inside/users
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=$inside/home/%u
}
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = $port
  }
  service_count = 0
  process_min_avail = 2
}
END_OF_CONFIG
chmod -R a+rX "$work"
unshare --mount --pid --fork --kill-child chroot "$rootfs" \
    dovecot -F -c "$inside/dovecot.conf" >"$scratch/dovecot.out" 2>&1 &
launcher=$!
started_pids+=("$launcher")

# session: one IMAPS session; succeeds if LOGIN and LOGOUT are answered OK.
session() {
    local answer
    answer=$(printf 'a LOGIN suture secret\r\nb LOGOUT\r\n' |
        timeout 10 openssl s_client -connect "127.0.0.1:$port" -quiet 2>/dev/null) || true
    grep -q '^a OK' <<<"$answer" && grep -q '^b OK' <<<"$answer"
}
for _ in $(seq 100); do
    session && break
    sleep 0.1
done
session || { cat "$scratch/dovecot.out" "$work/dovecot.log" 2>/dev/null; fail_check "dovecot does not answer IMAPS"; exit 1; }
pass "dovecot answers IMAPS (TLS, LOGIN, LOGOUT)"

# dovecot_pids: the processes of the dovecot namespace that map the
# vulnerable libcrypto, as suture sees them.
dovecot_pids() {
    local pid candidates=()
    for pid in $(pgrep -f 'dovecot|imap' || true); do
        # Login processes chroot again, into a directory inside the rootfs.
        [[ "$(readlink "/proc/$pid/root" 2>/dev/null)" == "$rootfs"* ]] && candidates+=("$pid")
    done
    [ ${#candidates[@]} -gt 0 ] || return 0
    status_json "${candidates[@]}" 2>/dev/null | jq -r --arg id "$vulnerable" \
        '.processes[] | select(any(.libraries[]; .build_id == $id)) | "\(.pid) \(.comm)"'
}
initial=$(dovecot_pids)
echo "dovecot processes on the vulnerable libcrypto:"
echo "$initial"
check_eq "the dovecot master is PID 1 of its namespace" 1 \
    "$(awk '/^NSpid:/ { print $NF }' "/proc/$(pgrep -P "$launcher" | head -n 1)/status")"
[ "$(grep -c imap-login <<<"$initial")" -ge 1 ] && pass "imap-login processes map the vulnerable libcrypto" ||
    fail_check "no imap-login process maps the vulnerable libcrypto"

# client_loop SECONDS OUT: sessions back to back; OUT gets "ok" or "failed"
# per session.
client_loop() {
    local until=$((SECONDS + $1))
    while [ "$SECONDS" -lt "$until" ]; do
        if session; then echo ok; else echo failed; fi
    done >"$2"
}
loop_seconds=$((cycles + 3))
client_loop "$loop_seconds" "$scratch/baseline.txt"

client_loop "$loop_seconds" "$scratch/patched.txt" &
loop_pid=$!
applied=0
reverted=0
gone=0
failed=0
patched_names=()
for cycle in $(seq "$cycles"); do
    pids=()
    while read -r pid name; do
        [ -n "$pid" ] || continue
        pids+=("$pid")
        if "$SUTURE" apply --pid "$pid" "$patch" >"$scratch/apply.out" 2>&1; then
            applied=$((applied + 1))
            patched_names+=("$name")
        elif kill -0 "$pid" 2>/dev/null; then
            failed=$((failed + 1))
            echo "cycle $cycle: apply to $pid ($name) failed: $(cat "$scratch/apply.out")"
        else
            gone=$((gone + 1))
        fi
    done < <(dovecot_pids)
    sleep 0.5
    for pid in "${pids[@]}"; do
        if "$SUTURE" revert --pid "$pid" >"$scratch/revert.out" 2>&1; then
            reverted=$((reverted + 1))
        elif kill -0 "$pid" 2>/dev/null; then
            failed=$((failed + 1))
            echo "cycle $cycle: revert of $pid failed: $(cat "$scratch/revert.out")"
        else
            gone=$((gone + 1))
        fi
    done
    sleep 0.5
done
wait "$loop_pid" || true

sessions() { grep -c "^$1" "$2" || true; }
echo "applies $applied, reverts $reverted, to processes that had exited $gone, failed $failed;" \
    "patched: $(printf '%s\n' "${patched_names[@]}" | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')"
check_eq "apply or revert failures on live processes" 0 "$failed"
[ "$applied" -ge "$cycles" ] && pass "at least one apply per cycle ($applied)" ||
    fail_check "only $applied applies in $cycles cycles"
check_eq "failed sessions, unpatched run" 0 "$(sessions failed "$scratch/baseline.txt")"
check_eq "failed sessions, while patching" 0 "$(sessions failed "$scratch/patched.txt")"
echo "figures: unpatched: $(sessions ok "$scratch/baseline.txt") IMAPS sessions in $loop_seconds s" \
    "($(awk -v n="$(sessions ok "$scratch/baseline.txt")" -v s="$loop_seconds" 'BEGIN { printf "%.1f", n / s }')/s)"
echo "figures: while patching ($cycles apply+revert cycles): $(sessions ok "$scratch/patched.txt") sessions in $loop_seconds s" \
    "($(awk -v n="$(sessions ok "$scratch/patched.txt")" -v s="$loop_seconds" 'BEGIN { printf "%.1f", n / s }')/s)"
finish
