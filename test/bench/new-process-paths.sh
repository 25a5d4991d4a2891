#!/usr/bin/env bash
# What patching new processes costs and reaches, per path OpenSSL gets in:
#   direct      first-call-direct, linked against libcrypto
#   transitive  first-call-transitive, through a library of its own
#   dlopen      hold-openssl, which dlopen()s libcrypto after its start
# Each program prints what OpenSSL_version() says at its first call; a
# test patch of that function is in the feed. Every path runs N times
# without sutured, with sutured (the library-open watch and the exec
# gate), and with `sutured --no-load-watch` (the exec gate alone), all in
# this one script: the share patched at its first call and the median time
# per run, and the median added against the run without sutured. Figures,
# never assertions.
#
# Usage (meson passes it): new-process-paths.sh SUTURED; SUTURE_BENCH_RUNS
# (default 50) sets N.
source "$(dirname "$0")/../integration/lib.sh"
require_root "fanotify, exec events and ptrace"
sutured=${1:?}
runs=${SUTURE_BENCH_RUNS:-50}
start_private_system_bus
export SUTURE_FEED_ROOT_DIR=$scratch/var
export SUTURE_CONFIG_DIR=$scratch/etc
export SUTURE_FEED_CACHE=$scratch/cache
publish_version_marker

# first_line PATH: the program's first line (hold-openssl: after "loaded X: ").
first_line() {
    case $1 in
        dlopen) echo | HOLD_UNTIL_STDIN_EOF=1 "$HOLD_OPENSSL" "$system_libcrypto" |
            sed -n 's/^loaded [^:]*: //p' ;;
        direct) "$FIRST_CALL_DIRECT" ;;
        transitive) "$FIRST_CALL_TRANSITIVE" ;;
    esac
}
# measure MODE PATH: N runs; records "patched median_us" in results[MODE/PATH].
declare -A results
measure() {
    local mode=$1 path=$2 patched=0 times=() i started
    for i in $(seq "$runs"); do
        started=$(date +%s%N)
        [ "$(first_line "$path")" = "$version_marker" ] && patched=$((patched + 1))
        times+=($((($(date +%s%N) - started) / 1000)))
    done
    results[$mode/$path]="$patched $(percentile 50 "${times[@]}")"
}
paths=(direct transitive dlopen)
for path in "${paths[@]}"; do measure without "$path"; done
start_sutured "$sutured" --rescan-seconds 0
policy=$(awk '$1 == "policy" { print $3 }' "/proc/$daemon_pid/sched" 2>/dev/null || echo "?")
for path in "${paths[@]}"; do measure watch "$path"; done
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
grep -o "new processes: .*" "$scratch/sutured.log" | tail -n 1 | sed 's/^/figures: sutured: /'
: >"$scratch/sutured.log"
start_sutured "$sutured" --rescan-seconds 0 --no-load-watch
for path in "${paths[@]}"; do measure gate "$path"; done
kill -TERM "$daemon_pid"
wait "$daemon_pid" 2>/dev/null || true
grep -o "new processes: .*" "$scratch/sutured.log" | tail -n 1 | sed 's/^/figures: sutured --no-load-watch: /'

echo "figures: $runs runs per path and mode on $(nproc) cores (load $(cut -d' ' -f1 /proc/loadavg)); sutured's scheduling policy $policy (1: real time)"
printf '%-11s %-28s %-18s %-12s %s\n' path mode "patched at first" "median ms" "added ms"
for path in "${paths[@]}"; do
    read -r _ base <<<"${results[without/$path]}"
    for mode in without watch gate; do
        read -r patched median <<<"${results[$mode/$path]}"
        case $mode in
            without) label="without sutured" ;;
            watch) label="sutured" ;;
            gate) label="sutured --no-load-watch" ;;
        esac
        printf '%-11s %-28s %-18s %-12s %s\n' "$path" "$label" "$patched of $runs" \
            "$(awk -v us="$median" 'BEGIN { printf "%.2f", us / 1000 }')" \
            "$(awk -v us="$median" -v base="$base" 'BEGIN { printf "%+.2f", (us - base) / 1000 }')"
    done
done
finish
