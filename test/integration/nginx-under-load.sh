#!/usr/bin/env bash
# nginx from Debian's packages in a bookworm root filesystem pinned to the
# vulnerable libssl3 3.0.20-1~deb12u2, run in new mount and PID namespaces
# (unshare + chroot: the container stand-in), serving HTTPS on loopback under
# wrk load while suture, on the host, applies and reverts a real patchset
# (CVE-2026-63076) across its master and worker processes again and again.
# Every request must succeed; the throughput and latency of the loaded run
# are printed beside an unpatched run of the same length in the same script.
# Then TLS handshakes per second (openssl s_time, a new session each time)
# through nginx unpatched and with all three debian-12 patchsets applied, in
# alternating rounds, client and server on separate cores: the median ratio,
# its range and the unpatched rounds' spread are printed, and the same for
# nginx's CPU time per handshake (figures, never assertions).
#
# Then the same load while a patch that replaces functions *every request
# runs* (test/fixtures/request-path: libssl's tls13_enc and tls1_enc rebuilt
# by suture-build with one nop more) is applied and reverted on the workers:
# no worker may die (the master's children are the same PIDs before and
# after, and the error log names no signal), no request may fail, and the
# unwinder must see the workers' stacks completely (frame counts printed).
#
# Then an entry patch on the same path (test/fixtures/record-layer:
# ssl3_read_bytes and ssl3_write_bytes, where a loaded worker spends much of
# its time) applied and reverted on the workers under the same load with the
# default tries: every apply succeeds, no request fails, no worker dies; the
# apply latency and requests/s are printed beside an untouched run of the
# same length, and how the same patch fares read as strict.
#
# SUTURE_NGINX_CYCLES (default 20 in the test suite; 100 for the benchmark),
# SUTURE_REQUEST_PATH_CYCLES (default 50),
# SUTURE_RECORD_LAYER_CYCLES (default 100),
# SUTURE_NGINX_SECONDS (the unpatched run; default about as long as the
# cycles take on an idle machine) and
# SUTURE_HANDSHAKE_ROUNDS (pairs of rounds, default 3) and
# SUTURE_HANDSHAKE_SECONDS (each round's length, default 2) set the size;
# SUTURE_HANDSHAKE_PIN=0 leaves client and nginx unpinned.
source "$(dirname "$0")/lib.sh"
require_root "debootstrap, chroot and ptrace of nginx"
command -v debootstrap >/dev/null || skip "debootstrap is not installed"
command -v wrk >/dev/null || skip "needs wrk"
cycles=${SUTURE_NGINX_CYCLES:-20}
# Long enough for the cycles (each is six CLI runs, about 0.3 s).
seconds=${SUTURE_NGINX_SECONDS:-$((cycles * 35 / 100 + 2))}
handshake_rounds=${SUTURE_HANDSHAKE_ROUNDS:-3}
handshake_seconds=${SUTURE_HANDSHAKE_SECONDS:-2}
patchsets=$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2
patch=$patchsets/CVE-2026-63076/CVE-2026-63076.suture
request_path_patch=$SOURCE_ROOT/test/fixtures/request-path/request-path.suture
request_path_cycles=${SUTURE_REQUEST_PATH_CYCLES:-50}

rootfs=$("$SOURCE_ROOT/containers/make-rootfs" --pin libssl3=3.0.20-1~deb12u2 debian-12 nginx-light dovecot-imapd) ||
    skip "cannot build the pinned bookworm rootfs (archive unreachable?)"
work=$(mktemp -d "$rootfs/tmp/suture-$test_name-XXXXXX")
removed_paths+=("$work")
inside=${work#"$rootfs"}
port=$((20000 + RANDOM % 20000))
mkdir -p "$work/nginx/logs" "$work/www"
head -c 4096 /dev/urandom | base64 >"$work/www/index.html"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -keyout "$work/nginx/key.pem" -out "$work/nginx/cert.pem" 2>/dev/null
cat >"$work/nginx/nginx.conf" <<END_OF_CONFIG
daemon off;
master_process on;
worker_processes 2;
pid $inside/nginx/nginx.pid;
error_log $inside/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$port ssl;
        ssl_certificate $inside/nginx/cert.pem;
        ssl_certificate_key $inside/nginx/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
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
[ -n "$master" ] || { cat "$scratch/nginx.out"; fail_check "nginx did not start in the rootfs"; exit 1; }
nginx_pids=("$master" "${workers[@]}")
check_eq "nginx: a master and 2 workers" 3 "${#nginx_pids[@]}"
check_eq "nginx runs in its own PID namespace (the master is PID 1 there)" 1 \
    "$(awk '/^NSpid:/ { print $NF }' "/proc/$master/status")"
status=$(status_json "${nginx_pids[@]}")
for pid in "${nginx_pids[@]}"; do
    check_eq "pid $pid maps the rootfs's pinned libcrypto (the archive's build)" \
        "7d90f38412d00023e58392b03612a24b62fcaede /usr/lib/x86_64-linux-gnu/libcrypto.so.3" \
        "$(library "$status" "$pid" libcrypto.so.3 build_id) $(library "$status" "$pid" libcrypto.so.3 path)"
done
curl_status=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/index.html" || true)
check_eq "nginx answers over TLS" 200 "$curl_status"

# run_wrk OUT: wrk's report of one loaded run.
run_wrk() {
    wrk -t2 -c32 -d"${seconds}s" --latency "https://127.0.0.1:$port/index.html" >"$1" 2>&1
}
# start_load OUT: load that lasts until stop_load (wrk reports on SIGINT),
# so the cycles run under load however slow a busy machine makes them; an
# hour at most.
start_load() {
    wrk -t2 -c32 -d3600s --latency "https://127.0.0.1:$port/index.html" >"$1" 2>&1 &
    wrk_pid=$!
    started_pids+=("$wrk_pid") # killed at exit should the test die first
    sleep 0.5
}
stop_load() {
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" || true
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
start_load "$scratch/patched.txt"
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
stop_load

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

# The request path: tls13_enc/tls1_enc run for every record of every request.
stacks_complete=true
for worker in "${workers[@]}"; do
    stacks=$("$SUTURE" stacks --json --pid "$worker")
    echo "worker $worker stacks: $(jq -r '[.threads[] | "\(.tid): \(.frames | length) frames\(if .complete then ", complete" else ", INCOMPLETE: \(.incomplete_reason)" end)"] | join("; ")' <<<"$stacks")"
    [ "$(jq '[.threads[] | select((.complete | not) or (.frames | length) <= 2)] | length' <<<"$stacks")" = 0 ] ||
        stacks_complete=false
done
check_eq "every worker thread in the rootfs unwinds completely, more than 2 frames" true "$stacks_complete"
workers_before=$(pgrep -P "$master" | sort | tr '\n' ' ')
start_load "$scratch/request-path.txt"
done_cycles=0
failed_operations=0
unwound=0
complete_unwinds=0
deepest=0
released=0
record_figures() {
    unwound=$((unwound + $(jq -r '[.. | objects | select(has("stack_check")) | .stack_check.unwound] | add // 0' <<<"$1")))
    complete_unwinds=$((complete_unwinds + $(jq -r '[.. | objects | select(has("stack_check")) | .stack_check.complete_unwinds] | add // 0' <<<"$1")))
    released=$((released + $(jq -r '[.. | objects | select(has("released_regions")) | .released_regions] | max // 0' <<<"$1")))
    local deep
    deep=$(jq -r '[.. | objects | select(has("stack_check")) | .stack_check.deepest_frames] | max // 0' <<<"$1")
    [ "$deep" -gt "$deepest" ] && deepest=$deep
    return 0
}
# no_worker_exit_logged WHAT: passes "nginx's error log WHAT" unless the log
# reports a worker that exited.
no_worker_exit_logged() {
    if grep -E "exited on signal|worker process [0-9]+ exited" "$work/nginx/logs/error.log"; then
        fail_check "nginx's error log reports a worker exit"
    else
        pass "nginx's error log $1"
    fi
}
while [ "$done_cycles" -lt "$request_path_cycles" ] && kill -0 "$wrk_pid" 2>/dev/null; do
    for worker in "${workers[@]}"; do
        if out=$("$SUTURE" apply --json --pid "$worker" "$request_path_patch" 2>&1); then
            record_figures "$out"
        else
            failed_operations=$((failed_operations + 1))
            echo "apply pid $worker: $out"
        fi
    done
    for worker in "${workers[@]}"; do
        if out=$("$SUTURE" revert --json --pid "$worker" 2>&1); then
            record_figures "$out"
        else
            failed_operations=$((failed_operations + 1))
            echo "revert pid $worker: $out"
        fi
    done
    done_cycles=$((done_cycles + 1))
done
stop_load
workers_after=$(pgrep -P "$master" | sort | tr '\n' ' ')
check_eq "request-path apply/revert cycles completed under load" "$request_path_cycles" "$done_cycles"
check_eq "request-path operations that failed" 0 "$failed_operations"
check_eq "no nginx worker died or was replaced (the master's children)" "$workers_before" "$workers_after"
no_worker_exit_logged "reports no worker exit"
check_eq "failed requests, request-path run" "no socket errors, 0 non-2xx" "$(errors_in "$scratch/request-path.txt")"
echo "figures: request path ($done_cycles cycles on ${#workers[@]} workers):" \
    "$(field_of "$scratch/request-path.txt" Requests/sec) requests/s," \
    "p99 $(awk '$1 == "99%" { print $2 }' "$scratch/request-path.txt");" \
    "threads unwound $unwound, complete $complete_unwinds, deepest $deepest frames;" \
    "retired regions released by later stops: $released"

# An entry patch on every request's path (test/fixtures/record-layer:
# ssl3_read_bytes and ssl3_write_bytes rebuilt by suture-build with one nop
# more): each TLS read and write of a loaded worker runs in them. With the
# default tries every apply and revert must succeed (a revert never waits
# for busy code), no request fail, no worker die.
# The load's figures are printed beside an untouched run of the same length.
record_layer_patch=$SOURCE_ROOT/test/fixtures/record-layer/record-layer.suture
record_layer_cycles=${SUTURE_RECORD_LAYER_CYCLES:-100}
record_layer_consistency=$(patch_metadata "$record_layer_patch" | jq -r '.consistency // "strict"')
echo "record-layer patch: $(patch_metadata "$record_layer_patch" | jq -r '[.functions[].symbol] | join(", ")'), consistency $record_layer_consistency"
check_eq "the record-layer patch is an entry patch" entry "$record_layer_consistency"
workers_before=$(pgrep -P "$master" | sort | tr '\n' ' ')
start_load "$scratch/record-layer.txt"
load_started=$(date +%s%N)
done_cycles=0
failed_operations=0
apply_ms=()
apply_stopped_us=()
apply_tries=()
while [ "$done_cycles" -lt "$record_layer_cycles" ] && kill -0 "$wrk_pid" 2>/dev/null; do
    for worker in "${workers[@]}"; do
        started=$(date +%s%N)
        if out=$("$SUTURE" apply --json --pid "$worker" "$record_layer_patch" 2>&1); then
            apply_ms+=("$((($(date +%s%N) - started) / 1000000))")
            apply_stopped_us+=("$(jq -r .stopped_us <<<"$out")")
            apply_tries+=("$(jq -r .attempts <<<"$out")")
        else
            failed_operations=$((failed_operations + 1))
            echo "record-layer apply pid $worker: $(first_line_of_error "$out")"
        fi
    done
    for worker in "${workers[@]}"; do
        if ! out=$("$SUTURE" revert --json --pid "$worker" 2>&1); then
            failed_operations=$((failed_operations + 1))
            echo "record-layer revert pid $worker: $(first_line_of_error "$out")"
        fi
    done
    done_cycles=$((done_cycles + 1))
done
stop_load
load_seconds=$((($(date +%s%N) - load_started + 999999999) / 1000000000))
wrk -t2 -c32 -d"${load_seconds}s" --latency "https://127.0.0.1:$port/index.html" >"$scratch/record-layer-untouched.txt" 2>&1
workers_after=$(pgrep -P "$master" | sort | tr '\n' ' ')
check_eq "record-layer apply/revert cycles completed under load" "$record_layer_cycles" "$done_cycles"
check_eq "record-layer applies and reverts (default tries) that failed" 0 "$failed_operations"
check_eq "no nginx worker died or was replaced during the record-layer cycles" "$workers_before" "$workers_after"
no_worker_exit_logged "still reports no worker exit"
check_eq "failed requests, record-layer run" "no socket errors, 0 non-2xx" "$(errors_in "$scratch/record-layer.txt")"
check_eq "failed requests, its untouched run" "no socket errors, 0 non-2xx" "$(errors_in "$scratch/record-layer-untouched.txt")"
if [ "${#apply_ms[@]}" -gt 0 ]; then
    echo "figures: record layer, entry ($done_cycles cycles on ${#workers[@]} workers, ${load_seconds} s):" \
        "apply (CLI wall clock) median $(percentile 50 "${apply_ms[@]}") ms, p99 $(percentile 99 "${apply_ms[@]}") ms;" \
        "stopped median $(percentile 50 "${apply_stopped_us[@]}") us, p99 $(percentile 99 "${apply_stopped_us[@]}") us;" \
        "tries median $(percentile 50 "${apply_tries[@]}"), max $(percentile 100 "${apply_tries[@]}")"
fi
echo "figures: record layer: $(field_of "$scratch/record-layer.txt" Requests/sec) requests/s while patching," \
    "p99 $(awk '$1 == "99%" { print $2 }' "$scratch/record-layer.txt");" \
    "untouched run of ${load_seconds} s: $(field_of "$scratch/record-layer-untouched.txt" Requests/sec) requests/s," \
    "p99 $(awk '$1 == "99%" { print $2 }' "$scratch/record-layer-untouched.txt")"
# The same patch read as strict, for comparison (a figure, not a check):
# the workers are inside ssl3_read_bytes or ssl3_write_bytes often enough
# that the default tries may not find a moment.
rewrite_patch "$record_layer_patch" "$scratch/record-layer-strict.suture" '.consistency = "strict"'
start_load "$scratch/record-layer-strict.txt"
strict_applied=0
strict_tries=10
for _ in $(seq "$strict_tries"); do
    if "$SUTURE" apply --pid "${workers[0]}" "$scratch/record-layer-strict.suture" >/dev/null 2>&1; then
        strict_applied=$((strict_applied + 1))
        "$SUTURE" revert --pid "${workers[0]}" >/dev/null 2>&1 ||
            fail_check "the strict record-layer copy could not be reverted"
    fi
done
stop_load
check_eq "failed requests, strict record-layer tries" "no socket errors, 0 non-2xx" "$(errors_in "$scratch/record-layer-strict.txt")"
echo "figures: record layer read as strict: $strict_applied of $strict_tries applies succeeded within the default tries"

# Handshakes per second through nginx: a new TLS session per connection.
# Rounds of SUTURE_HANDSHAKE_SECONDS each, unpatched and with all three
# patchsets on every nginx process, in the order U P, P U, U P, ... (a slow
# drift of the machine hits both sides alike, and each pair costs one apply
# or one revert). With two cores or more the client runs on CPU 0 and every
# nginx process on CPU 1 during the rounds, so they do not compete for one
# core; the spread of the unpatched rounds is printed as the noise the
# ratio has to be read against. Beside the rate, nginx's own CPU time per
# handshake (schedstat of its threads): what the patches could cost the
# server, much less sensitive to how the client is scheduled.
cores=$(nproc)
pinned() { [ "$cores" -ge 2 ] && [ "${SUTURE_HANDSHAKE_PIN:-1}" = 1 ]; }
pin_server() {
    local pid
    for pid in "${nginx_pids[@]}"; do taskset -pc "$1" "$pid" >/dev/null; done
}
# nginx's CPU time so far, in ns (every thread's schedstat).
server_cpu_ns() {
    local pid
    for pid in "${nginx_pids[@]}"; do cat "/proc/$pid"/task/*/schedstat; done |
        awk '{ sum += $1 } END { printf "%.0f\n", sum }'
}
# handshake_round: "RATE CPU" for one round: handshakes per second, and
# nginx's CPU time per handshake in µs (what a patch could cost the server,
# whatever the scheduling of the client).
handshake_round() {
    local client=() before after
    pinned && client=(taskset -c 0)
    before=$(server_cpu_ns)
    "${client[@]}" openssl s_time -connect "127.0.0.1:$port" -new -time "$handshake_seconds" 2>/dev/null \
        >"$scratch/s_time.out"
    after=$(server_cpu_ns)
    awk -v cpu=$((after - before)) '$2 == "connections" && $5 == "real" && $1 > 0 {
        printf "%.1f %.1f\n", $1 / $4, cpu / 1000 / $1; exit }' "$scratch/s_time.out"
}
apply_all_three() {
    local pid cve
    for pid in "${nginx_pids[@]}"; do
        for cve in CVE-2026-63076 CVE-2026-63072 CVE-2026-63074; do
            "$SUTURE" apply --pid "$pid" "$patchsets/$cve/$cve.suture" >/dev/null 2>"$scratch/handshake.err" ||
                { applied_all=false; echo "apply $cve to $pid: $(head -n 3 "$scratch/handshake.err")"; }
        done
    done
}
revert_all() {
    local pid
    for pid in "${nginx_pids[@]}"; do
        "$SUTURE" revert --pid "$pid" >/dev/null 2>"$scratch/handshake.err" ||
            { applied_all=false; echo "revert $pid: $(head -n 3 "$scratch/handshake.err")"; }
    done
}
pinned && pin_server 1
handshake_round >/dev/null # warm-up: session caches, page cache, CPU frequency
ratios=()
cpu_ratios=()
unpatched_rates=()
applied_all=true
for round in $(seq "$handshake_rounds"); do
    if [ $((round % 2)) = 1 ]; then
        read -r unpatched unpatched_cpu < <(handshake_round)
        apply_all_three
        read -r patched patched_cpu < <(handshake_round)
    else
        read -r patched patched_cpu < <(handshake_round)
        revert_all
        read -r unpatched unpatched_cpu < <(handshake_round)
    fi
    if [ -z "$unpatched_cpu" ] || [ -z "$patched_cpu" ]; then
        fail_check "openssl s_time gave no figure in round $round"
        break
    fi
    ratio=$(awk -v p="$patched" -v u="$unpatched" 'BEGIN { printf "%.3f", p / u }')
    cpu_ratio=$(awk -v p="$patched_cpu" -v u="$unpatched_cpu" 'BEGIN { printf "%.3f", p / u }')
    echo "handshake round $round: unpatched $unpatched/s ($unpatched_cpu us of nginx CPU each)," \
        "patched $patched/s ($patched_cpu us), rate ratio $ratio, CPU ratio $cpu_ratio"
    ratios+=("$ratio")
    cpu_ratios+=("$cpu_ratio")
    unpatched_rates+=("$unpatched")
done
[ $((handshake_rounds % 2)) = 1 ] && revert_all
pinned && pin_server "0-$((cores - 1))"
check_eq "three patchsets applied and reverted on every nginx process in every round" true "$applied_all"
median_ratio=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
ratio_range=$(printf '%s\n' "${ratios[@]}" | sort -n | awk 'NR == 1 { low = $1 } { high = $1 } END { print low " to " high }')
noise=$(printf '%s\n' "${unpatched_rates[@]}" | sort -n |
    awk 'NR == 1 { low = $1 } { high = $1 } END { if (low > 0) printf "%.3f", high / low }')
placement=$(pinned && echo "client on CPU 0, nginx on CPU 1" || echo "client and nginx not pinned")
echo "figures: TLS handshakes/s through nginx, patched / unpatched, median of ${#ratios[@]} rounds of ${handshake_seconds} s: $median_ratio (rounds $ratio_range; unpatched rounds max/min $noise; $placement)"
median_cpu=$(printf '%s\n' "${cpu_ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
cpu_range=$(printf '%s\n' "${cpu_ratios[@]}" | sort -n | awk 'NR == 1 { low = $1 } { high = $1 } END { print low " to " high }')
echo "figures: nginx CPU time per handshake, patched / unpatched, median of ${#cpu_ratios[@]} rounds: $median_cpu (rounds $cpu_range)"
finish
