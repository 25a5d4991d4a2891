#!/usr/bin/env bash
# New processes of real servers, every way OpenSSL gets into them (issue 24):
# Debian's Postfix, Apache, Python and curl in a bookworm root filesystem
# pinned to the archive's vulnerable libssl3 3.0.20-1~deb12u2, sutured on the
# host with its rescan off (--rescan-seconds 0), so only the exec and library
# events can patch anything. Each part runs first without sutured (the same
# load, the same checks: they must see unpatched processes, which shows they
# can fail) and then with it:
# - Postfix: smtpd reaches libssl through libpostfix-tls (transitive). The
#   master starts a new smtpd every 2 sessions (max_use = 2); a client loop
#   does EHLO, STARTTLS, EHLO, QUIT and, at each smtpd's first session,
#   between the banner (which names the smtpd's PID) and STARTTLS, asks
#   `suture status` for the patches active in it. All of them must be
#   patched, sutured must say "before main() (transitive)", 0 failed sessions.
# - Apache (event MPM, mod_ssl dlopen'ed by the parent): wrk over HTTPS with
#   a new TLS session per request, `apache2ctl graceful` twice during the run
#   (the parent unloads and reloads mod_ssl, which leaves libcrypto and
#   libssl mapped: both are NODELETE; then starts new children). Every
#   live child (zombies of the old generation are skipped), when first seen
#   (sampled every 0.2 s), must have all the
#   patches: with the rescan off, a child is patched either from its first
#   instruction (a fork of a patched parent) or by sutured's fork tracking
#   right after it started (a fork of a parent whose patch had not landed
#   yet; such a child may have served a request before, which the sampling
#   cannot see). 0 failed requests.
# - Python: an HTTPS server whose `import ssl` dlopens libssl; it counts
#   suture's patch regions in itself right before its first handshake.
# - curl (libssl through libcurl): 20 runs, each parked and patched before
#   main().
# Figures (never assertions): per path the share patched before first use,
# and time per exec, session or request with and without sutured.
#
# Usage (meson passes it): servers-new-processes.sh SUTURED
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot, exec events, fanotify and ptrace"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
command -v wrk >/dev/null || skip "wrk is not installed (scripts/install-deps installs it)"
command -v python3 >/dev/null || skip "python3 is not installed"
: "${SUTURE_FEED:?}"
sutured=${1:?}
vulnerable=7d90f38412d00023e58392b03612a24b62fcaede
here=$(cd "$(dirname "$0")" && pwd)

rootfs=$("$SOURCE_ROOT/containers/make-rootfs" --pin libssl3=3.0.20-1~deb12u2 debian-12 \
    apache2 curl postfix python3 swaks) ||
    skip "cannot build the pinned bookworm rootfs (archive unreachable?)"
check_eq "the rootfs's libcrypto is the archive's 3.0.20-1~deb12u2" "$vulnerable" \
    "$(build_id_of "$rootfs/usr/lib/x86_64-linux-gnu/libcrypto.so.3")"
expected=$(shipped_patch_count libcrypto.so.3 libssl.so.3)
work=$(mktemp -d "$rootfs/tmp/suture-$test_name-XXXXXX")
removed_paths+=("$work")
inside=${work#"$rootfs"}
chmod 755 "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 644 "$work/key.pem"

start_private_system_bus
export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
"$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" >"$scratch/setup.log" 2>&1 ||
    { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
SUTURE_FEED_CACHE=$scratch/cache "$SUTURE" feed refresh >/dev/null

# The servers daemonize (Apache) or outlive their launcher (Postfix's master):
# stopped at exit, before lib.sh's cleanup removes their directory.
stop_servers() {
    local pid
    for pid in $(cat "$rootfs/var/spool/postfix/pid/master.pid" "$work/apache-run/apache2.pid" 2>/dev/null); do
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
}
trap 'stop_servers; cleanup' EXIT

# in_rootfs CMD...: CMD in the rootfs, in a mount namespace of its own with
# /proc mounted (PIDs stay the host's, so the checks can name them).
in_rootfs() {
    unshare --mount --fork sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' "$rootfs" "$@"
}
# active PID: how many patches `suture status` shows active in PID.
# (A process `suture status` did not list, or a status that failed, is
# "absent", not 0: the two must not be mistaken for "no patch".)
active() {
    local count
    count=$(status_json "$1" 2>/dev/null | jq -r --argjson pid "$1" \
        '[.processes[] | select(.pid == $pid)] as $found |
         if ($found | length) == 0 then "absent"
         else [$found[0].patches[]? | select(.state == "active")] | length end' || true)
    echo "${count:-absent}"
}
stop_daemon() {
    "$SUTURE" statistics --json >"$scratch/statistics-$1.json" 2>/dev/null || true
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null || true
}
statistic() { jq -r "$2" "$scratch/statistics-$1.json"; }
mean() { jq -s 'if length == 0 then 0 else (add / length * 10 | round / 10) end'; }

# --- Postfix ------------------------------------------------------------
smtp_port=$((20000 + RANDOM % 20000))
mkdir -p "$work/postfix" "$work/postfix-data"
chown "$(chroot "$rootfs" id -u postfix):$(chroot "$rootfs" id -g postfix)" "$work/postfix-data"
cat >"$work/postfix/main.cf" <<END_OF_CONFIG
compatibility_level = 3.6
queue_directory = /var/spool/postfix
data_directory = $inside/postfix-data
mail_owner = postfix
myhostname = localhost
mydestination =
alias_maps =
alias_database =
inet_protocols = ipv4
smtpd_banner = \$myhostname ESMTP pid=\$process_id
smtpd_tls_security_level = may
smtpd_tls_cert_file = $inside/cert.pem
smtpd_tls_key_file = $inside/key.pem
smtpd_tls_session_cache_database =
max_use = 2
max_idle = 10
maillog_file = $inside/postfix.log
maillog_file_prefixes = /tmp
smtpd_peername_lookup = no
END_OF_CONFIG
cat >"$work/postfix/master.cf" <<END_OF_CONFIG
127.0.0.1:$smtp_port inet n - n - 4 smtpd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
anvil     unix  -       -       n       -       1       anvil
postlog   unix-dgram n  -       n       -       1       postlogd
proxymap  unix  -       -       n       -       -       proxymap
END_OF_CONFIG
in_rootfs postfix -c "$inside/postfix" start-fg >"$scratch/postfix.out" 2>&1 &
started_pids+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$smtp_port") 2>/dev/null && break
    sleep 0.1
done
sessions=${SUTURE_SMTP_SESSIONS:-40}
python3 "$here/smtp-starttls-client.py" "$smtp_port" "$sessions" "$SUTURE" >"$scratch/smtp-without.json" ||
    { cat "$scratch/postfix.out" "$work/postfix.log" 2>/dev/null | tail -20; fail_check "the SMTP client failed"; }
check_eq "without sutured: SMTP sessions that failed" 0 "$(jq .failed "$scratch/smtp-without.json")"
[ "$(jq .failed "$scratch/smtp-without.json")" = 0 ] ||
    { jq -c .failures "$scratch/smtp-without.json"; tail -5 "$work/postfix.log"; }
check_eq "without sutured: smtpd processes patched at their first session" 0 \
    "$(jq '[.smtpd_first_session_patches[] | select(. > 0)] | length' "$scratch/smtp-without.json")"

# The unpatched run leaves an idle smtpd with a use left (the readiness
# probe took one): it would serve the first session below, started before
# sutured, and nothing (no rescan) would patch it. Ended here, by PID; the
# master starts new ones on demand.
master=$(tr -d ' ' <"$rootfs/var/spool/postfix/pid/master.pid")
leftover=$(pgrep -P "$master" -x smtpd || true)
for pid in $leftover; do kill "$pid" 2>/dev/null || true; done
for pid in $leftover; do
    for _ in $(seq 50); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
done
echo "figures: postfix: $(echo $leftover | wc -w) idle smtpd left by the unpatched run ended before sutured starts"
start_sutured "$sutured" --rescan-seconds 0
grep -q "patching libraries as they are loaded" "$scratch/sutured.log" ||
    fail_check "sutured does not watch library loads: $(grep -i fanotify "$scratch/sutured.log" | head -1 || true)"
python3 "$here/smtp-starttls-client.py" "$smtp_port" "$sessions" "$SUTURE" >"$scratch/smtp-with.json" ||
    fail_check "the SMTP client failed"
smtpds=$(jq '.smtpd_first_session_patches | length' "$scratch/smtp-with.json")
patched_smtpds=$(jq --argjson n "$expected" '[.smtpd_first_session_patches[] | select(. == $n)] | length' "$scratch/smtp-with.json")
check_eq "with sutured: SMTP sessions that failed" 0 "$(jq .failed "$scratch/smtp-with.json")"
[ "$smtpds" -ge $((sessions / 2 - 1)) ] && pass "the master started $smtpds smtpd processes" ||
    fail_check "only $smtpds smtpd processes served $sessions sessions (max_use = 2)"
check_eq "smtpd processes with all $expected patches at their first session, before STARTTLS" "$smtpds" "$patched_smtpds"
before_main=0
for pid in $(jq -r '.smtpd_first_session_patches | keys[]' "$scratch/smtp-with.json"); do
    grep -q "new pid $pid (smtpd): .* applied before main() (transitive)" "$scratch/sutured.log" &&
        before_main=$((before_main + 1))
done
check_eq "smtpd processes sutured patched before main() through the transitive path" "$smtpds" "$before_main"
[ "$before_main" = "$smtpds" ] || { jq -c .smtpd_first_session_patches "$scratch/smtp-with.json"; grep -E "smtpd|new process" "$scratch/sutured.log" | head -30 || true; }
echo "figures: postfix smtpd: $patched_smtpds of $smtpds patched before first use;" \
    "session $(jq '.session_ms[]' "$scratch/smtp-without.json" | mean) ms without sutured," \
    "$(jq '.session_ms[]' "$scratch/smtp-with.json" | mean) ms with (one new smtpd every 2 sessions)"

# --- Apache -----------------------------------------------------------------
https_port=$((20000 + RANDOM % 20000))
mkdir -p "$work/htdocs" "$work/apache-run"
echo ok >"$work/htdocs/index.html"
cat >"$work/apache.conf" <<END_OF_CONFIG
ServerRoot /etc/apache2
ServerName localhost
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule socache_shmcb_module /usr/lib/apache2/modules/mod_socache_shmcb.so
LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
Listen 127.0.0.1:$https_port https
PidFile $inside/apache-run/apache2.pid
DefaultRuntimeDir $inside/apache-run
Mutex file:$inside/apache-run default
ErrorLog $inside/apache-error.log
User nobody
Group nogroup
StartServers 2
ServerLimit 8
ThreadsPerChild 8
MaxRequestWorkers 32
MinSpareThreads 8
MaxSpareThreads 16
MaxConnectionsPerChild 300
DocumentRoot $inside/htdocs
<Directory $inside/htdocs>
  Require all granted
</Directory>
SSLEngine on
SSLCertificateFile $inside/cert.pem
SSLCertificateKeyFile $inside/key.pem
SSLSessionCache none
END_OF_CONFIG
chmod -R a+rX "$work"
apache() { in_rootfs env APACHE_ARGUMENTS="-f $inside/apache.conf" apache2ctl "$@"; }
# apache_parent: the Apache parent's PID (host PIDs: no PID namespace).
apache_parent() { cat "$work/apache-run/apache2.pid" 2>/dev/null || true; }
# apache_run OUT: wrk over HTTPS (a new TLS session per request) for 9 s,
# two graceful restarts during it; every child seen is checked for patches
# (OUT.children: "pid active-patches" at first sight).
apache_run() {
    local out=$1 until child parent
    : >"$out.children"
    wrk -t 2 -c 4 -d 9s -H "Connection: close" "https://127.0.0.1:$https_port/index.html" >"$out" 2>&1 &
    local wrk_pid=$!
    until=$((SECONDS + 9))
    local graceful_at=(3 6)
    local started=$SECONDS
    while [ "$SECONDS" -lt "$until" ]; do
        if [ ${#graceful_at[@]} -gt 0 ] && [ $((SECONDS - started)) -ge "${graceful_at[0]}" ]; then
            apache graceful >>"$scratch/graceful.out" 2>&1 || echo "graceful failed" >>"$out.errors"
            graceful_at=("${graceful_at[@]:1}")
        fi
        parent=$(apache_parent)
        for child in $(pgrep -P "$parent" -x apache2 || true); do
            grep -q "^$child " "$out.children" && continue
            # A zombie (an old child gone after a graceful restart, not yet
            # reaped) has no memory left to patch or to serve from: not a
            # child to judge (measured: every child seen "without patches"
            # after a graceful restart was one, state Z, no mappings).
            [ "$(awk '{print $3}' "/proc/$child/stat" 2>/dev/null)" = S ] ||
                [ "$(awk '{print $3}' "/proc/$child/stat" 2>/dev/null)" = R ] || continue
            local count
            count=$(active "$child")
            echo "$child $count" >>"$out.children"
            # A child short of patches: what status says of it and of its
            # parent at that moment, for the report.
            [ "$count" = "${expected:-}" ] || echo "child $child at ${SECONDS}s: $(status_json "$child" "$parent" 2>/dev/null |
                jq -c '[.processes[] | {pid, patches: [.patches[]? | .state]}]' || echo 'status failed');" \
                "libcrypto mappings $(grep -c libcrypto "/proc/$child/maps" 2>/dev/null || true)," \
                "state $(awk '{print $3}' "/proc/$child/stat" 2>/dev/null)," \
                "threads $(ls "/proc/$child/task" 2>/dev/null | wc -l)" >>"$out.detail"
        done
        sleep 0.2
    done
    wait "$wrk_pid" || true
}
wrk_errors() {
    local socket non2xx
    socket=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1+\2+\3+\4/p' "$1")
    non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: \([0-9]*\).*/\1/p' "$1")
    echo $((${socket:-0} + ${non2xx:-0}))
}
wrk_rate() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }

stop_daemon postfix
apache start >"$scratch/apache.out" 2>&1 || { cat "$scratch/apache.out" "$work/apache-error.log"; fail_check "apache2ctl start"; }
for _ in $(seq 100); do
    curl -sk "https://127.0.0.1:$https_port/index.html" >/dev/null && break
    sleep 0.1
done
apache_run "$scratch/wrk-without"
check_eq "without sutured: failed requests (wrk, graceful twice)" 0 "$(wrk_errors "$scratch/wrk-without")"
check_eq "without sutured: Apache children seen patched" 0 "$(awk '$2 ~ /^[0-9]+$/ && $2 > 0' "$scratch/wrk-without.children" | wc -l)"
apache stop >/dev/null 2>&1 || true
for _ in $(seq 50); do pgrep -x apache2 >/dev/null || break; sleep 0.1; done

start_sutured "$sutured" --rescan-seconds 0
apache start >"$scratch/apache.out" 2>&1 || fail_check "apache2ctl start"
for _ in $(seq 100); do
    curl -sk "https://127.0.0.1:$https_port/index.html" >/dev/null && break
    sleep 0.1
done
apache_run "$scratch/wrk-with"
children=$(wc -l <"$scratch/wrk-with.children")
patched_children=$(awk -v n="$expected" '$2 == n' "$scratch/wrk-with.children" | wc -l)
check_eq "with sutured: failed requests (wrk, graceful twice)" 0 "$(wrk_errors "$scratch/wrk-with")"
[ "$children" -ge 4 ] && pass "$children Apache children seen (graceful restarts started new ones)" ||
    fail_check "only $children Apache children seen"
check_eq "Apache children with all $expected patches when first seen" "$children" "$patched_children"
[ "$children" = "$patched_children" ] || { echo "children (pid, active patches at first sight):" $(cat "$scratch/wrk-with.children"); cat "$scratch/wrk-with.detail" 2>/dev/null || true; grep -E "apache2|library loaded" "$scratch/sutured.log" | cut -c1-200 | head -12 || true; }
grep -q "library loaded by pid .* (apache2): .* applied after dlopen" "$scratch/sutured.log" &&
    pass "sutured patched an Apache process after its dlopen of mod_ssl" ||
    fail_check "no dlopen patch of an Apache process in the log"
echo "figures: apache: $patched_children of $children children patched before their first request;" \
    "$(wrk_rate "$scratch/wrk-without") requests/s without sutured, $(wrk_rate "$scratch/wrk-with") with" \
    "(each a new TLS session, two graceful restarts)"

# --- curl -----------------------------------------------------------------
curl_runs=${SUTURE_CURL_RUNS:-20}
curl_loop() {
    local ok=0 i
    for i in $(seq "$curl_runs"); do
        [ "$(chroot "$rootfs" curl -sk "https://127.0.0.1:$https_port/index.html")" = ok ] && ok=$((ok + 1))
    done
    echo "$ok"
}
stop_daemon apache
started=$(date +%s%N)
check_eq "without sutured: curl runs that fetched the page" "$curl_runs" "$(curl_loop)"
curl_without_ms=$((($(date +%s%N) - started) / 1000000))
start_sutured "$sutured" --rescan-seconds 0
started=$(date +%s%N)
check_eq "with sutured: curl runs that fetched the page" "$curl_runs" "$(curl_loop)"
curl_with_ms=$((($(date +%s%N) - started) / 1000000))
curl_before_main=$(grep "new pid [0-9]* (curl): .* applied before main() (transitive)" "$scratch/sutured.log" |
    sed 's/.*new pid \([0-9]*\) .*/\1/' | sort -u | wc -l)
check_eq "curl runs patched before main() through the transitive path" "$curl_runs" "$curl_before_main"
echo "figures: curl: $curl_before_main of $curl_runs runs patched before main();" \
    "$((curl_without_ms * 1000 / curl_runs)) us per run without sutured," \
    "$((curl_with_ms * 1000 / curl_runs)) us with: $(((curl_with_ms - curl_without_ms) * 1000 / curl_runs)) us added per exec"
apache stop >/dev/null 2>&1 || true

# --- Python -----------------------------------------------------------------
python_port=$((20000 + RANDOM % 20000))
cp "$here/tls-server.py" "$work/tls-server.py"
# python_run OUT: the server, then 3 HTTPS requests right after "ready".
python_run() {
    in_rootfs python3 "$inside/tls-server.py" "$python_port" "$inside/cert.pem" "$inside/key.pem" 3 >"$1" 2>&1 &
    local server=$! i
    wait_for_line "$1" "^ready" || { cat "$1"; fail_check "the Python server did not start"; }
    for i in 1 2 3; do
        curl -sk --max-time 5 "https://127.0.0.1:$python_port/" >>"$1.client" || echo "request failed" >>"$1.client"
    done
    wait "$server" || true
}
stop_daemon curl
python_run "$scratch/python-without"
check_eq "without sutured: Python's first handshake saw patch regions" 0 \
    "$(sed -n 's/^handshake 0 regions //p' "$scratch/python-without")"
start_sutured "$sutured" --rescan-seconds 0
python_run "$scratch/python-with"
check_eq "with sutured: Python HTTPS requests answered" "ok ok ok" "$(tr '\n' ' ' <"$scratch/python-with.client" | sed 's/ $//')"
regions=$(sed -n 's/^handshake 0 regions //p' "$scratch/python-with")
[ "${regions:-0}" -ge 1 ] && pass "Python was patched before its first handshake ($regions patch regions)" ||
    fail_check "Python's first handshake saw ${regions:-no} patch regions: $(cat "$scratch/python-with")"
echo "figures: python: $(grep -h '^patched\|^not patched' "$scratch/python-with");" \
    "ready $(sed -n 's/^ready //p' "$scratch/python-without") after start without sutured," \
    "$(sed -n 's/^ready //p' "$scratch/python-with") with"
stop_daemon python

# --- The statistics -------------------------------------------------------
for part in postfix apache curl python; do
    echo "figures: sutured statistics ($part): $(jq -c '{caught, not_parked, closure_cache, library_events, patched_before_main, patched_late}' "$scratch/statistics-$part.json")"
done
[ "$(statistic postfix .caught.transitive)" -ge "$smtpds" ] &&
    pass "the statistics count the smtpd processes as caught transitively" ||
    fail_check "statistics: $(jq -c .caught "$scratch/statistics-postfix.json")"
[ "$(statistic apache .caught.dlopen)" -ge 1 ] && pass "the statistics count Apache's dlopen" ||
    fail_check "statistics: $(jq -c .caught "$scratch/statistics-apache.json")"
[ "$(statistic python .caught.dlopen)" -ge 1 ] && pass "the statistics count Python's dlopen" ||
    fail_check "statistics: $(jq -c .caught "$scratch/statistics-python.json")"
check_eq "no rescan ran (--rescan-seconds 0)" 0 "$(statistic python .caught.rescan)"
finish
