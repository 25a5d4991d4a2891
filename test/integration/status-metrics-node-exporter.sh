#!/usr/bin/env bash
# The metrics monitoring reads (issue 18): sutured keeps the node_exporter
# textfile current (written atomically, at start and after every rescan);
# the real prometheus-node-exporter (Debian's package, textfile collector
# pointed at it, listening on 127.0.0.1) serves the suture metrics, scraped
# with curl; `promtool check metrics` (Debian's prometheus package) accepts
# them. A process on the archive's 3.0.20 build is first exposed, then
# patched by sutured's rescan, and the scraped metrics follow.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/exposure-lib.sh"
require_root "sutured patches processes (ptrace)"
: "${SUTURE_FEED:?}" "${SUTURED:?}"
command -v prometheus-node-exporter >/dev/null || skip "needs prometheus-node-exporter (scripts/install-deps)"
command -v promtool >/dev/null || skip "needs promtool (package prometheus; scripts/install-deps)"

exposure_feed
coverage_input "$scratch/coverage.json"
only_shipped_patches "$scratch/coverage.json" "$scratch/patchable.json"
publish_advisories "$scratch/patchable.json"
fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
hold archive_pid "$scratch/archive/usr/lib/x86_64-linux-gnu" libssl.so.3

textfiles=$scratch/node-exporter
mkdir -p "$textfiles"
# sutured's first (offline) update at start would patch the process before
# anything could see it exposed: updates are disabled until the exposed
# state has been scraped, then enabled for the rescan.
"$SUTURE" disable >/dev/null
start_private_system_bus
start_sutured "$SUTURED" --no-new-processes --rescan-seconds 5 --metrics-textfile "$textfiles/suture.prom"
[ -f "$textfiles/suture.prom" ] && pass "sutured wrote the textfile at start" ||
    { fail_check "no textfile after sutured started"; cat "$scratch/sutured.log"; finish; }
check_eq "textfile mode" 644 "$(stat -c %a "$textfiles/suture.prom")"
first=$(cat "$textfiles/suture.prom")

port=$((20000 + RANDOM % 20000))
prometheus-node-exporter --web.listen-address="127.0.0.1:$port" --collector.disable-defaults \
    --collector.textfile --collector.textfile.directory="$textfiles" >"$scratch/node-exporter.log" 2>&1 &
started_pids+=($!)
scrape() { curl -sf "http://127.0.0.1:$port/metrics"; }
for _ in $(seq 50); do scrape >/dev/null && break; sleep 0.1; done
scraped=$(scrape) || { cat "$scratch/node-exporter.log"; fail_check "node_exporter does not answer"; finish; }
grep '^suture_' <<<"$scraped" | head -20
grep -q '^suture_processes{state="exposed"} [1-9]' <<<"$scraped" &&
    pass "node_exporter serves suture_processes: exposed" || fail_check "scraped: $(grep suture_processes <<<"$scraped")"
grep -q 'node_textfile_scrape_error 0' <<<"$scraped" && pass "node_exporter read the textfile without error" ||
    fail_check "textfile scrape error: $(grep node_textfile <<<"$scraped")"
for family in suture_open_cves suture_patches_applied_total suture_feed_expiry_timestamp_seconds \
    suture_feed_last_refresh_success_timestamp_seconds suture_last_update_timestamp_seconds; do
    grep -q "^$family" <<<"$scraped" && pass "scraped $family" || fail_check "no $family in the scrape"
done
grep -q 'pid=' <<<"$first" && fail_check "per-process labels in the textfile" ||
    pass "no per-process labels by default"
promtool check metrics <"$textfiles/suture.prom" && pass "promtool accepts the textfile" ||
    fail_check "promtool check metrics on the textfile"
grep '^# \(HELP\|TYPE\) suture_\|^suture_' <<<"$scraped" | promtool check metrics &&
    pass "promtool accepts the scraped suture metrics" || fail_check "promtool on the scraped metrics"

# sutured's rescan (an offline update) patches the process; the textfile,
# and what node_exporter serves, follow. The counters are this sutured's own
# (its state database is the test's), so they tell the rewrite apart from
# other processes on the host.
check_eq "before the rescan: no patch applied by this sutured" 0 \
    "$(sed -n 's/^suture_patches_applied_total //p' <<<"$scraped")"
"$SUTURE" enable >/dev/null
for _ in $(seq 60); do
    [ "$(process_field "$(status_json "$archive_pid")" "$archive_pid" .exposure)" = fully_patched ] && break
    sleep 0.5
done
check_eq "the rescan patched the process" fully_patched \
    "$(process_field "$(status_json "$archive_pid")" "$archive_pid" .exposure)"
for _ in $(seq 60); do
    scraped=$(scrape)
    [ "$(sed -n 's/^suture_patches_applied_total //p' <<<"$scraped")" != 0 ] && break
    sleep 0.5
done
applied=$(sed -n 's/^suture_patches_applied_total //p' <<<"$scraped")
[ "${applied:-0}" -gt 0 ] && pass "node_exporter serves the rewritten textfile: suture_patches_applied_total $applied" ||
    fail_check "suture_patches_applied_total '${applied:-}'"
grep -q '^suture_processes{state="fully_patched"} [1-9]' <<<"$scraped" &&
    pass "after sutured's rescan: fully patched processes counted" ||
    fail_check "after the rescan: $(grep suture_processes <<<"$scraped")"
[ "$(sed -n 's/^suture_last_update_timestamp_seconds //p' <<<"$scraped")" != 0 ] &&
    pass "the rescan's update time is exported" || fail_check "suture_last_update_timestamp_seconds is 0"
promtool check metrics <"$textfiles/suture.prom" && pass "promtool accepts the rewritten textfile" ||
    fail_check "promtool check metrics on the rewritten textfile"
leftovers=$(find "$textfiles" -type f ! -name suture.prom | wc -l)
check_eq "no temporary files left beside the textfile" 0 "$leftovers"
finish
