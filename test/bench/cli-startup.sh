#!/usr/bin/env bash
# Start-up cost of the suture CLI against /bin/true, in the same run:
# median wall time of N runs (default 200) of `/bin/true`, `suture --version`
# and `suture status --json --pid $$`, and the shared libraries the binary
# loads. Figures only.
# Usage: test/bench/cli-startup.sh SUTURE [N]
suture=${1:?usage: cli-startup.sh SUTURE [N]}
runs=${2:-200}
median_us() {
    local i start end
    for i in $(seq "$runs"); do
        start=$(date +%s%N)
        "$@" >/dev/null 2>&1
        end=$(date +%s%N)
        echo $(((end - start) / 1000))
    done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
floor=$(median_us /bin/true)
version=$(median_us "$suture" --version)
status=$(median_us "$suture" status --json --pid $$)
libraries=$(LD_TRACE_LOADED_OBJECTS=1 "$suture" | wc -l)
echo "figures: $runs runs, median: /bin/true ${floor} us; suture --version ${version} us" \
    "($(awk -v a="$version" -v b="$floor" 'BEGIN { printf "%.1f", a / b }')x);" \
    "suture status --json --pid (one process) ${status} us; $libraries shared objects loaded"
