#!/usr/bin/env bash
# nginx serving HTTPS on loopback with the archive's vulnerable libssl3
# 3.0.20-1~deb12u2, under wrk load, while suture applies and reverts a real
# patchset (CVE-2026-63076) across its master and worker processes, again and
# again. Every request must succeed; the throughput and latency of the loaded
# run are printed beside an unpatched run of the same length in the same
# script (figures, never assertions).
#
# SUTURE_NGINX_CYCLES (default 20 in the test suite; 100 for the benchmark)
# and SUTURE_NGINX_SECONDS (default: enough for the cycles) set the size.
source "$(dirname "$0")/lib.sh"
require_root "ptrace of nginx"
command -v nginx >/dev/null || skip "needs nginx (package nginx-light)"
command -v wrk >/dev/null || skip "needs wrk"
cycles=${SUTURE_NGINX_CYCLES:-20}
# Long enough for the cycles (each is six CLI runs, about 0.3 s).
seconds=${SUTURE_NGINX_SECONDS:-$((cycles * 35 / 100 + 2))}
patch=$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2/CVE-2026-63076/CVE-2026-63076.suture

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
library_dir=$scratch/archive/usr/lib/x86_64-linux-gnu
port=$((20000 + RANDOM % 20000))
mkdir -p "$scratch/nginx/logs" "$scratch/www"
head -c 4096 /dev/urandom | base64 >"$scratch/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -keyout "$scratch/nginx/key.pem" -out "$scratch/nginx/cert.pem" 2>/dev/null
cat >"$scratch/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 2;
pid $scratch/nginx/nginx.pid;
error_log $scratch/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $scratch/nginx/cert.pem;
        ssl_certificate_key $scratch/nginx/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $scratch/www;
    }
}
EOF
LD_LIBRARY_PATH=$library_dir nginx -p "$scratch/nginx" -c "$scratch/nginx/nginx.conf" \
    >"$scratch/nginx/stdout" 2>&1 &
started_pids+=($!)
master=$!
for _ in $(seq 50); do
    [ "$(pgrep -P "$master" | wc -l)" -ge 2 ] && break
    sleep 0.1
done
mapfile -t workers < <(pgrep -P "$master")
nginx_pids=("$master" "${workers[@]}")
check_eq "nginx: a master and 2 workers" 3 "${#nginx_pids[@]}"
status=$(status_json "${nginx_pids[@]}")
for pid in "${nginx_pids[@]}"; do
    check_eq "pid $pid maps the archive's libcrypto" 7d90f38412d00023e58392b03612a24b62fcaede \
        "$(library "$status" "$pid" libcrypto.so.3 build_id)"
done
curl_status=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/index.html" || true)
check_eq "nginx answers over TLS" 200 "$curl_status"

# run_wrk OUT: wrk's report of one loaded run.
run_wrk() {
    wrk -t2 -c32 -d"${seconds}s" --latency "https://127.0.0.1:$port/index.html" >"$1" 2>&1
}
field_of() { awk -v key="$2:" '$1 == key { print $2 }' "$1"; }
errors_in() {
    local socket non2xx
    socket=$(grep -o 'Socket errors:.*' "$1" || true)
    non2xx=$(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$1" | awk '{print $NF}' || true)
    echo "${socket:-no socket errors}, ${non2xx:-0} non-2xx"
}

run_wrk "$scratch/baseline.txt"

# The same load while suture applies and reverts across all three processes.
run_wrk "$scratch/patched.txt" &
wrk_pid=$!
sleep 0.5
done_cycles=0
failed_cycles=0
stopped_us=()
while [ "$done_cycles" -lt "$cycles" ] && kill -0 "$wrk_pid" 2>/dev/null; do
    for pid in "${nginx_pids[@]}"; do
        if out=$("$SUTURE" apply --json --pid "$pid" "$patch" 2>&1); then
            stopped_us+=("$(jq -r .stopped_us <<<"$out")")
        else
            failed_cycles=$((failed_cycles + 1))
            echo "apply pid $pid: $out"
        fi
    done
    for pid in "${nginx_pids[@]}"; do
        "$SUTURE" revert --pid "$pid" >/dev/null 2>&1 || { failed_cycles=$((failed_cycles + 1)); echo "revert pid $pid failed"; }
    done
    done_cycles=$((done_cycles + 1))
done
wait "$wrk_pid" || true

check_eq "apply/revert cycles completed during the load" "$cycles" "$done_cycles"
check_eq "cycles that failed" 0 "$failed_cycles"
check_eq "failed requests, unpatched run" "no socket errors, 0 non-2xx" "$(errors_in "$scratch/baseline.txt")"
check_eq "failed requests, patching run" "no socket errors, 0 non-2xx" "$(errors_in "$scratch/patched.txt")"
for pid in "${nginx_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null && pass "nginx pid $pid alive" || fail_check "nginx pid $pid died"
done
median_stop=$(printf '%s\n' "${stopped_us[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
echo "figures: unpatched run: $(field_of "$scratch/baseline.txt" Requests/sec) requests/s," \
    "p50 $(awk '$1 == "50%" { print $2 }' "$scratch/baseline.txt")," \
    "p99 $(awk '$1 == "99%" { print $2 }' "$scratch/baseline.txt")"
echo "figures: while patching ($done_cycles apply+revert cycles on 3 processes):" \
    "$(field_of "$scratch/patched.txt" Requests/sec) requests/s," \
    "p50 $(awk '$1 == "50%" { print $2 }' "$scratch/patched.txt")," \
    "p99 $(awk '$1 == "99%" { print $2 }' "$scratch/patched.txt"); median stop per apply ${median_stop} us"
finish
