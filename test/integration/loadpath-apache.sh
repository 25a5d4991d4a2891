#!/usr/bin/env bash
# sutured patches Apache when its parent dlopens mod_ssl (which needs libssl
# and libcrypto), before that dlopen returns ("path: dlopen"): the apache2
# executable names no OpenSSL library, so the exec gate has nothing to do.
# Debian's apache2 runs in the pinned bookworm rootfs (the archive's
# vulnerable libssl3 3.0.20-1~deb12u2), event MPM, three children, HTTPS on
# loopback without keep-alive (a TLS handshake per request); wrk loads it
# for 6 s and `apache2 -k graceful` runs in the middle. Without sutured
# first, then with it. wrk must see no error (socket errors or non-2xx
# answers) in either run, the parent must have sutured's dlopen-path line,
# and every child alive after the graceful, forked from the parent after
# it, must carry the shipped patchset active (`suture status`: children
# inherit the parent's memory, patch regions included). Requests per
# second of both runs are printed (figures, never assertions).
#
# A graceful restart unloads and reloads the modules, but not OpenSSL:
# strace of the parent (apache2 2.4.68, libssl3 3.0.20) shows mod_ssl.so
# unmapped and opened again (at the same address), and libssl.so.3 and
# libcrypto.so.3 neither unmapped nor opened: OpenSSL pins both libraries
# in memory (OPENSSL_atexit keeps a reference to the code of its handlers),
# so the second dlopen of mod_ssl finds them loaded. The patch applied at
# the start stays, and the graceful opens no OpenSSL file for a dlopen gate
# to see. The test prints what /proc/PID/maps shows of libssl before and
# after the graceful (the same start address and inode: the mapping did not
# change), as a figure.
#
# Usage (meson passes it): loadpath-apache.sh SUTURED
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot, ptrace of apache2"
: "${SUTURE_FEED:?}"
sutured=${1:?}
command -v wrk >/dev/null || skip "needs wrk (scripts/install-deps)"
command -v nsenter >/dev/null || skip "needs nsenter (util-linux)"
loadpath_rootfs

needed_libraries "$rootfs/usr/sbin/apache2" | grep -qE '^lib(ssl|crypto)\.so' &&
    fail_check "apache2 names OpenSSL in its own DT_NEEDED: this test would not prove the dlopen path"
needed_libraries "$rootfs/usr/lib/apache2/modules/mod_ssl.so" | grep -qx libssl.so.3 &&
    pass "apache2 reaches libssl.so.3 only by loading mod_ssl.so" ||
    fail_check "mod_ssl.so does not need libssl.so.3"

mkdir -p "$work/apache/run" "$work/www"
echo hello >"$work/www/index.html"
config=$inside/apache/apache2.conf
cat >"$work/apache/apache2.conf" <<END_OF_CONFIG
ServerRoot /usr/lib/apache2
ServerName localhost
DefaultRuntimeDir $inside/apache/run
PidFile $inside/apache/run/apache2.pid
ErrorLog $inside/apache/error.log
LogLevel warn
LoadModule mpm_event_module modules/mod_mpm_event.so
LoadModule authz_core_module modules/mod_authz_core.so
LoadModule socache_shmcb_module modules/mod_socache_shmcb.so
LoadModule ssl_module modules/mod_ssl.so
User www-data
Group www-data
Listen 127.0.0.1:$port
StartServers 3
ServerLimit 8
ThreadsPerChild 8
MinSpareThreads 8
MaxSpareThreads 64
MaxRequestWorkers 64
KeepAlive Off
SSLEngine on
SSLCertificateFile $inside/cert.pem
SSLCertificateKeyFile $inside/key.pem
SSLSessionCache shmcb:$inside/apache/run/ssl_scache(512000)
DocumentRoot $inside/www
<Directory $inside/www>
    Require all granted
</Directory>
END_OF_CONFIG
chmod -R a+rX "$work"
url=https://127.0.0.1:$port/index.html

# start_apache: apache2 in the foreground in the rootfs, in its own mount
# and PID namespaces; sets parent (its host PID) once it has three children
# and answers over HTTPS.
start_apache() {
    unshare --mount --pid --fork --kill-child chroot "$rootfs" \
        /usr/sbin/apache2 -f "$config" -DFOREGROUND >"$scratch/apache.out" 2>&1 &
    launcher=$!
    started_pids+=("$launcher")
    parent=""
    for _ in $(seq 150); do
        parent=$(pgrep -P "$launcher" || true)
        if [ -n "$parent" ] && [ "$(pgrep -c -P "$parent")" -ge 3 ] &&
            [ "$(curl -fsSk --max-time 2 "$url" 2>/dev/null)" = hello ]; then
            return 0
        fi
        sleep 0.1
    done
    cat "$scratch/apache.out" "$work/apache/error.log"
    fail_check "apache2 did not start in the rootfs"
    finish
}
stop_apache() {
    kill -TERM "$parent"
    wait "$launcher" 2>/dev/null || true
}
# graceful: `apache2 -k graceful` inside apache's namespaces (its pid file
# holds the PID its namespace gives it).
graceful() {
    nsenter --target "$parent" --pid --mount --root --wd \
        /usr/sbin/apache2 -f "$config" -k graceful >"$scratch/graceful.out" 2>&1 ||
        { cat "$scratch/graceful.out"; fail_check "apache2 -k graceful"; }
}
children() { pgrep -P "$parent" | sort -n; }
# libssl_mapping PID: the start address and inode of PID's first mapping
# of libssl.so.3.
libssl_mapping() { awk '$6 ~ /\/libssl\.so\.3$/ { print $1, $5; exit }' "/proc/$1/maps"; }

# load_with_graceful NAME: wrk for 6 s, a graceful restart after 3; checks
# that the graceful replaced the children and wrk saw no error, prints the
# figures. Sets children_after.
load_with_graceful() {
    local name=$1 before mapping_before mapping_after requests errors
    mapfile -t before < <(children)
    mapping_before=$(libssl_mapping "$parent")
    wrk -t 2 -c 8 -d 6s "$url" >"$scratch/wrk-$name.out" 2>&1 &
    local wrk_pid=$!
    sleep 3
    graceful
    wait "$wrk_pid" || { cat "$scratch/wrk-$name.out"; fail_check "$name: wrk failed"; }
    # The old children finish their requests and exit; the new ones stay.
    for _ in $(seq 100); do
        mapfile -t children_after < <(children)
        [ -z "$(comm -12 <(printf '%s\n' "${before[@]}") <(printf '%s\n' "${children_after[@]}"))" ] && break
        sleep 0.1
    done
    check_eq "$name: children of the old generation left after the graceful" "" \
        "$(comm -12 <(printf '%s\n' "${before[@]}") <(printf '%s\n' "${children_after[@]}") | paste -sd' ' -)"
    [ "${#children_after[@]}" -ge 3 ] && pass "$name: ${#children_after[@]} children after the graceful" ||
        fail_check "$name: ${#children_after[@]} children after the graceful"
    mapping_after=$(libssl_mapping "$parent")
    if [ "$mapping_before" = "$mapping_after" ]; then
        echo "figures: $name: the parent's libssl.so.3 mapping is the same before and after the graceful ($mapping_after)"
    else
        echo "figures: $name: the parent's libssl.so.3 mapping changed across the graceful ($mapping_before -> $mapping_after)"
    fi
    requests=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$scratch/wrk-$name.out")
    errors=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1 \2 \3 \4/p' \
        "$scratch/wrk-$name.out" | awk '{ print $1 + $2 + $3 + $4 }')
    check_eq "$name: wrk socket errors" 0 "${errors:-0}"
    check_eq "$name: wrk non-2xx answers" 0 \
        "$(sed -n 's/.*Non-2xx or 3xx responses: \([0-9]*\).*/\1/p' "$scratch/wrk-$name.out" | grep . || echo 0)"
    [ "${requests:-0}" -gt 0 ] && pass "$name: wrk got answers" || { cat "$scratch/wrk-$name.out"; fail_check "$name: no requests"; }
    echo "figures: $name: ${requests:-0} requests in 6 s with a graceful restart," \
        "$(sed -n 's/^Requests\/sec: *//p' "$scratch/wrk-$name.out") requests/s (a TLS handshake each)"
}

# 1. Without sutured: the baseline.
start_apache
pass "apache2 answers over HTTPS: a parent and $(pgrep -c -P "$parent") children"
load_with_graceful "without sutured"
stop_apache

# 2. With sutured: the parent patched as it loads mod_ssl; the children
# forked after the graceful carry the patch.
start_loadpath_sutured "$sutured"
start_apache
load_with_graceful "with sutured"
# patched_among PID...: how many of these processes carry the patch active.
patched_among() {
    status_json "$@" | jq --arg id "$loadpath_patch_id" \
        '[.processes[] | select(any(.patches[]?; .patch_id == $id and .state == "active"))] | length'
}
check_eq "the parent carries $loadpath_patch_id active after the graceful" 1 "$(patched_among "$parent")"
check_eq "this test's sutured applied it to the parent" 1 "$(applied_here "$parent")"
check_eq "children alive after the graceful carrying $loadpath_patch_id active" \
    "${#children_after[@]}" "$(patched_among "${children_after[@]}")"
echo "figures: sutured logged $(grep -cE "pid $parent \(" "$scratch/sutured.log" || true) lines for the parent" \
    "($(grep -cE 'path: dlopen' "$scratch/sutured.log" || true) dlopen-path lines in all, the graceful's helper included)"
stop_apache
stop_sutured
check_each_pid_logged "apache2's parent patched as it dlopened mod_ssl" \
    "applied before its first call \(path: dlopen\)" "$parent"
finish
