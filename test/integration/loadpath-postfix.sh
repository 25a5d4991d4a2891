#!/usr/bin/env bash
# sutured patches Postfix's smtpd before main(), though smtpd reaches libssl
# only through libpostfix-tls.so (its own DT_NEEDED names no OpenSSL
# library): the exec gate's dependency closure ("path: transitive").
# Debian's postfix runs in the pinned bookworm rootfs (the archive's
# vulnerable libssl3 3.0.20-1~deb12u2) with STARTTLS on loopback; smtpd's
# max_use of 2 and max_idle of 1 s keep the master spawning new smtpd
# processes while a client loop on the host (swaks --tls) sends one message
# per session. Without sutured first, then with it: no session may fail, and
# every smtpd that logged "TLS connection established" must have sutured's
# line that the shipped patchset was applied to it before main() (where the
# kernel refuses sutured real-time priority, "while running" counts too and
# the count before main() is a figure: lib.sh check_each_exec_gated).
# Sessions per second of both runs are printed (figures, never assertions).
#
# Postfix runs in a mount namespace but not a PID namespace: its log names
# smtpd[PID] by the PID its process sees, and sutured logs host PIDs; they
# are the same number only in the host's PID namespace. The master runs in
# a session of its own (master -s calls setsid), killed as a process group.
#
# SUTURE_POSTFIX_SESSIONS (default 40) sets the number of sessions per run.
#
# Usage (meson passes it): loadpath-postfix.sh SUTURED
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot, ptrace of smtpd"
: "${SUTURE_FEED:?}"
sutured=${1:?}
sessions=${SUTURE_POSTFIX_SESSIONS:-40}
command -v swaks >/dev/null || skip "needs swaks (scripts/install-deps)"
loadpath_rootfs

smtpd=$rootfs/usr/lib/postfix/sbin/smtpd
if needed_libraries "$smtpd" | grep -qE '^lib(ssl|crypto)\.so'; then
    fail_check "smtpd names OpenSSL in its own DT_NEEDED: this test would not prove the transitive path"
fi
needed_libraries "$rootfs/usr/lib/postfix/libpostfix-tls.so" | grep -qx libssl.so.3 &&
    pass "smtpd reaches libssl.so.3 only through libpostfix-tls.so" ||
    fail_check "libpostfix-tls.so does not need libssl.so.3"

# A minimal Postfix: its queue and data under $work, smtpd on loopback with
# STARTTLS, mail to localhost discarded, the log in a file (no syslog here).
mkdir -p "$work/postfix" "$work/queue"  # data_directory: `postfix check` makes it, owned by postfix
cat >"$work/postfix/main.cf" <<END_OF_CONFIG
compatibility_level = 3.6
queue_directory = $inside/queue
data_directory = $inside/data
mail_owner = postfix
setgid_group = postdrop
myhostname = suture-test.localdomain
mydestination = localhost
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
maillog_file = $inside/maillog
maillog_file_prefixes = $inside
alias_maps =
alias_database =
local_recipient_maps =
local_transport = discard:
smtpd_relay_restrictions = permit_mynetworks reject
smtpd_tls_cert_file = $inside/cert.pem
smtpd_tls_key_file = $inside/key.pem
smtpd_tls_security_level = may
smtpd_tls_loglevel = 1
max_use = 2
max_idle = 1s
END_OF_CONFIG
# No service chroots (the column after "unpriv"): the rootfs is the chroot.
cat >"$work/postfix/master.cf" <<END_OF_CONFIG
127.0.0.1:$port inet n - n - - smtpd
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
discard   unix  - - n -     - discard
error     unix  - - n -     - error
anvil     unix  - - n -     1 anvil
postlog   unix-dgram n - n - 1 postlogd
END_OF_CONFIG
chmod -R a+rX "$work/postfix"
# `postfix check` creates the queue's directories with their owners.
chroot "$rootfs" postfix -c "$inside/postfix" check >"$scratch/check.out" 2>&1 ||
    { cat "$scratch/check.out" "$work/maillog" 2>/dev/null; fail_check "postfix check"; finish; }

# start_postfix: the master in the rootfs; sets master once it is listening.
start_postfix() {
    local launcher
    unshare --mount --fork --kill-child chroot "$rootfs" \
        /usr/lib/postfix/sbin/master -s -c "$inside/postfix" >"$scratch/master.out" 2>&1 &
    launcher=$!
    started_pids+=("$launcher")
    master=""
    for _ in $(seq 100); do
        master=$(pgrep -P "$launcher" || true)
        [ -n "$master" ] && timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && break
        sleep 0.1
    done
    [ -n "$master" ] || { cat "$scratch/master.out" "$work/maillog"; fail_check "postfix did not start"; finish; }
    started_groups+=("$master")
}
# stop_postfix: SIGTERM to the master, which takes its process group down;
# waits until none of it is left.
stop_postfix() {
    kill -TERM "$master"
    for _ in $(seq 100); do
        pgrep -g "$master" >/dev/null || return 0
        sleep 0.1
    done
    kill -9 -- "-$master" 2>/dev/null || true
}

# client_loop OUT: $sessions STARTTLS sessions, one after another; OUT gets
# "ok" or "failed" per session; prints the elapsed milliseconds.
client_loop() {
    local started i
    started=$(date +%s%N)
    for i in $(seq "$sessions"); do
        if swaks --server "127.0.0.1:$port" --tls --from suture@localhost --to "test$i@localhost" \
            --timeout 10 >"$scratch/swaks.out" 2>&1; then
            echo ok
        else
            echo failed
            sed 's/^/  swaks: /' "$scratch/swaks.out" | tail -n 5 >&2
        fi
    done >"$1"
    echo $((($(date +%s%N) - started) / 1000000))
}
# figures NAME FILE MS: sessions per second and ms per session.
figures() {
    echo "figures: $1: $(grep -c '^ok' "$2") of $sessions sessions in $3 ms:" \
        "$(awk -v n="$sessions" -v ms="$3" 'BEGIN { printf "%.1f sessions/s, %.1f ms per session", n * 1000 / ms, ms / n }')"
}
# handshake_pids FROM_LINE: the smtpd PIDs that logged a TLS handshake
# after line FROM_LINE of the mail log.
handshake_pids() {
    tail -n +"$(($1 + 1))" "$work/maillog" |
        sed -n 's/.* postfix\/smtpd\[\([0-9]*\)\]: .*TLS connection established.*/\1/p' | sort -un
}

# 1. Without sutured: the baseline.
start_postfix
pass "postfix listens on 127.0.0.1:$port (STARTTLS)"
baseline_ms=$(client_loop "$scratch/baseline.txt")
check_eq "without sutured: failed sessions" 0 "$(grep -c '^failed' "$scratch/baseline.txt" || true)"
figures "without sutured" "$scratch/baseline.txt" "$baseline_ms"
mapfile -t baseline_smtpd < <(handshake_pids 0)
echo "figures: without sutured: ${#baseline_smtpd[@]} smtpd processes completed a TLS handshake"
stop_postfix

# 2. With sutured: the same workload, every smtpd patched before main().
start_loadpath_sutured "$sutured"
log_start=$(wc -l <"$work/maillog")
start_postfix
patched_ms=$(client_loop "$scratch/patched.txt")
check_eq "with sutured: failed sessions" 0 "$(grep -c '^failed' "$scratch/patched.txt" || true)"
figures "with sutured" "$scratch/patched.txt" "$patched_ms"
mapfile -t smtpd_pids < <(handshake_pids "$log_start")
echo "figures: with sutured: ${#smtpd_pids[@]} smtpd processes completed a TLS handshake"
[ "${#smtpd_pids[@]}" -ge $((sessions / 2)) ] &&
    pass "max_use kept the master spawning smtpd processes (${#smtpd_pids[@]} for $sessions sessions)" ||
    fail_check "only ${#smtpd_pids[@]} smtpd processes for $sessions sessions"
stop_postfix
stop_sutured
check_each_exec_gated "smtpd processes with a TLS handshake patched through libpostfix-tls.so" \
    transitive "${smtpd_pids[@]}"
echo "figures: sutured logged $(grep -cE 'pid [0-9]+ \(smtpd\): .* applied before main\(\)' "$scratch/sutured.log" || true)" \
    "smtpd applications before main()"
finish
