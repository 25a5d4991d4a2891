#!/usr/bin/env bash
# The cost of exposure (issue 18): `suture status --json` over many idle
# processes on the archive's 3.0.20 build, with the feed's signed advisory
# data (the verified cache read, each process assessed) and, in the same
# run, without it (no feed configured: the scan as before). Alternating
# runs; prints the medians and their ratio (the aim: within 1.2x) as
# figures, never as assertions. The documents are checked for content.
#
# SUTURE_EXPOSURE_PROCESSES sets the size (default 200 in the test suite;
# the benchmark figure in docs/benchmarks.md uses 1000).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/exposure-lib.sh"
require_root "reads every holder's map_files"
: "${SUTURE_FEED:?}"
count=${SUTURE_EXPOSURE_PROCESSES:-200}
rounds=${SUTURE_EXPOSURE_ROUNDS:-5}

exposure_feed
coverage_input "$scratch/coverage.json"
with_open_cve "$scratch/coverage.json" "$scratch/with-open.json"
publish_advisories "$scratch/with-open.json"
mkdir -p "$scratch/no-feed/remotes.d"

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
library_dir=$scratch/archive/usr/lib/x86_64-linux-gnu
start_holder_fleet "$count" "$library_dir"
milliseconds() { echo $(($(date +%s%N) / 1000000)); }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# cpu_ms FILE: user + system CPU milliseconds GNU time wrote to FILE ("%U %S"):
# on a shared machine steadier than the wall time. (Its last line: GNU time
# first says "Command exited with non-zero status 27" when it did.)
cpu_ms() { tail -n 1 "$1" | awk '{ printf "%d\n", ($1 + $2) * 1000 }'; }
with=()
without=()
with_cpu=()
without_cpu=()
for round in $(seq "$rounds"); do
    started=$(milliseconds)
    SUTURE_CONFIG_DIR=$scratch/no-feed /usr/bin/time -f "%U %S" -o "$scratch/without.time" \
        "$SUTURE" status --json "${pid_args[@]}" >"$scratch/without.json" || true
    without+=($(($(milliseconds) - started)))
    without_cpu+=("$(cpu_ms "$scratch/without.time")")
    started=$(milliseconds)
    /usr/bin/time -f "%U %S" -o "$scratch/with.time" \
        "$SUTURE" status --json "${pid_args[@]}" >"$scratch/with.json" || true
    with+=($(($(milliseconds) - started)))
    with_cpu+=("$(cpu_ms "$scratch/with.time")")
done
check_eq "without advisory data: no exposure assessed" false "$(jq .summary.exposure.advisory_data "$scratch/without.json")"
check_eq "with advisory data: every holder needs a restart" "$count" "$(jq .summary.exposure.needs_restart "$scratch/with.json")"
with_ms=$(printf '%s\n' "${with[@]}" | median)
without_ms=$(printf '%s\n' "${without[@]}" | median)
echo "figure: suture status --json over $count processes, median of $rounds: ${without_ms} ms without advisory data, ${with_ms} ms with it"
awk -v a="$with_ms" -v b="$without_ms" 'BEGIN { printf "figure: ratio with/without %.2f (aim: at most 1.20)\n", (b > 0 ? a / b : 0) }'
echo "figure: runs without: ${without[*]} ms; with: ${with[*]} ms"
with_cpu_ms=$(printf '%s\n' "${with_cpu[@]}" | median)
without_cpu_ms=$(printf '%s\n' "${without_cpu[@]}" | median)
echo "figure: CPU (user + system), median: ${without_cpu_ms} ms without, ${with_cpu_ms} ms with"
awk -v a="$with_cpu_ms" -v b="$without_cpu_ms" 'BEGIN { printf "figure: CPU ratio with/without %.2f\n", (b > 0 ? a / b : 0) }'
echo "figure: sizes of the documents: $(stat -c %s "$scratch/without.json") bytes without, $(stat -c %s "$scratch/with.json") with"
finish
