#!/usr/bin/env bash
# Start-up cost of the suture CLI against /bin/true, in the same run:
# median wall time of N runs (default 200) of `/bin/true`, `suture
# --version`, `suture status --json --pid $$`, and `suture --version` with
# libcurl preloaded (what every start cost while the CLI linked libcurl,
# before the feed client loaded it at its first download), and the shared
# objects each loads. Timestamps from bash's EPOCHREALTIME (no fork per
# sample). Figures only.
# Usage: test/bench/cli-startup.sh SUTURE [N]
suture=${1:?usage: cli-startup.sh SUTURE [N]}
runs=${2:-200}
curl_library=$(ldconfig -p | awk '$1 == "libcurl.so.4" { print $NF; exit }')
# median_us COMMAND...: the median wall time of `runs` runs, in µs.
median_us() {
    local i start end
    for i in $(seq "$runs"); do
        start=$EPOCHREALTIME
        "$@" >/dev/null 2>&1
        end=$EPOCHREALTIME
        echo "$start $end"
    done | awk '{ print ($2 - $1) * 1000000 }' | sort -n |
        awk '{ v[NR] = $1 } END { printf "%d", v[int((NR + 1) / 2)] }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
floor=$(median_us /bin/true)
version=$(median_us "$suture" --version)
status=$(median_us "$suture" status --json --pid $$)
libraries=$(LD_TRACE_LOADED_OBJECTS=1 "$suture" | wc -l)
echo "figures: $runs runs, median: /bin/true ${floor} us;" \
    "suture --version ${version} us ($(ratio "$version" "$floor")x);" \
    "suture status --json --pid (one process) ${status} us; $libraries shared objects loaded"
if [ -n "$curl_library" ]; then
    with_curl=$(LD_PRELOAD=$curl_library median_us "$suture" --version)
    libraries=$(LD_PRELOAD=$curl_library LD_TRACE_LOADED_OBJECTS=1 "$suture" | wc -l)
    echo "figures: suture --version with libcurl preloaded (as when it was linked)" \
        "${with_curl} us ($(ratio "$with_curl" "$floor")x /bin/true," \
        "$(ratio "$with_curl" "$version")x the CLI as it is); $libraries shared objects loaded"
else
    echo "figures: libcurl.so.4 not installed: no comparison with it preloaded"
fi
