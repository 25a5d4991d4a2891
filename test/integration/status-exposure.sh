#!/usr/bin/env bash
# Exposure on real processes (issue 18): the archive's libssl3
# 3.0.20-1~deb12u2 and the host's own build, the local feed with the shipped
# patchsets and signed advisory data. The headline, the JSON states, the exit
# status, the OpenMetrics and the OpenVEX output, before and after `suture
# update`, then for a CVE without a live patch; the host's build, which no
# index knows, named from the dpkg database.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/exposure-lib.sh"
require_root "ptrace for suture update"
: "${SUTURE_FEED:?}"

exposure_feed
coverage_input "$scratch/coverage.json"
only_shipped_patches "$scratch/coverage.json" "$scratch/patchable.json"
publish_advisories "$scratch/patchable.json"
pass "advisory data signed and refreshed: $(jq '.builds | length' "$scratch/advisories.json") builds"

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
hold archive_pid "$scratch/archive/usr/lib/x86_64-linux-gnu" libssl.so.3
hold host_pid "" libssl.so.3
patches=$(jq '[.builds[] | select(.version == "3.0.20-1~deb12u2") | .cves[]] | length' "$scratch/patchable.json")

# 1. Before the update: exposed, every CVE open with its live patch named.
run 27 "status before the update (exposed)" "$SUTURE" status --json --pid "$archive_pid" --pid "$host_pid"
json=$output
check_eq "archive process: exposure" exposed "$(process_field "$json" "$archive_pid" .exposure)"
check_eq "archive process: open CVEs, each with a live patch" "$patches" \
    "$(process_field "$json" "$archive_pid" '[.cves[] | select(.state == "open" and .patch_id != null)] | length')"
check_eq "summary: 1 exposed" 1 "$(jq .summary.exposure.exposed <<<"$json")"
check_eq "summary: advisory data found" true "$(jq .summary.exposure.advisory_data <<<"$json")"
# The host's own build: not in any index, named from the dpkg database.
check_eq "host process: exposure" unknown "$(process_field "$json" "$host_pid" .exposure)"
check_eq "host libcrypto: no index entry" null "$(library "$json" "$host_pid" libcrypto.so.3 package)"
check_eq "host libcrypto: package from dpkg" libssl3 "$(library "$json" "$host_pid" libcrypto.so.3 installed_package.name)"
check_eq "host libcrypto: version from dpkg" "$(dpkg-query -W -f='${Version}' libssl3:amd64)" \
    "$(library "$json" "$host_pid" libcrypto.so.3 installed_package.version)"
run 27 "headline before the update" "$SUTURE" status --pid "$archive_pid" --pid "$host_pid"
headline=$(head -n 1 <<<"$output")
echo "headline: $headline"
grep -q "^2 processes use OpenSSL: 1 exposed to CVE-.*live patch available: run suture update · 1 unknown" <<<"$headline" &&
    pass "headline: exposed, with the action" || fail_check "headline: $headline"
grep -q "not in the archive index" <<<"$output" && pass "text names the dpkg package" ||
    fail_check "no dpkg naming in the text"
status_to "$scratch/before.vex" 27 --format openvex --pid "$archive_pid"
validate_openvex "$scratch/before.vex" && pass "OpenVEX before the update validates" ||
    fail_check "OpenVEX before the update does not validate"
check_eq "OpenVEX before: every statement affected" "$patches" \
    "$(jq '[.statements[] | select(.status == "affected" and (.action_statement | test("suture update")))] | length' "$scratch/before.vex")"
status_to "$scratch/before.om" 27 --format openmetrics --pid "$archive_pid"
grep -qx 'suture_processes{state="exposed"} 1' "$scratch/before.om" && pass "metrics: 1 exposed" ||
    fail_check "metrics: $(grep suture_processes "$scratch/before.om")"
check_openmetrics "$scratch/before.om" && pass "the OpenMetrics output parses as OpenMetrics 1.0" ||
    fail_check "the OpenMetrics output does not parse"
status_to "$scratch/before.prom" 27 --format prometheus --pid "$archive_pid"
promtool check metrics <"$scratch/before.prom" && pass "promtool accepts the Prometheus text output" ||
    fail_check "promtool check metrics"

# 2. suture update: every CVE patched in memory.
# (update patches every matching process on the host: another test's
# process it cannot patch makes it exit 21; this process's own actions must
# all have applied.)
update_status=0
update=$("$SUTURE" update --json 2>"$scratch/update.err") || update_status=$?
[ "$update_status" = 0 ] || [ "$update_status" = 21 ] && pass "update ran (exit $update_status)" ||
    { fail_check "update: exit $update_status"; cat "$scratch/update.err"; }
check_eq "update: this process's patches applied" "$patches" \
    "$(jq --argjson pid "$archive_pid" '[.actions[] | select(.pid == $pid and .outcome == "applied")] | length' <<<"$update")"
run 0 "status after the update (not exposed)" "$SUTURE" status --json --pid "$archive_pid"
json=$output
check_eq "after: exposure" fully_patched "$(process_field "$json" "$archive_pid" .exposure)"
check_eq "after: every CVE patched, with its patch id" "$patches" \
    "$(process_field "$json" "$archive_pid" '[.cves[] | select(.state == "patched" and .patch_id != null)] | length')"
check_eq "after: patched_in_memory" "$patches" "$(jq .summary.exposure.patched_in_memory <<<"$json")"
run 0 "headline after the update" "$SUTURE" status --pid "$archive_pid"
check_eq "headline after the update" "1 process uses OpenSSL: 1 fully patched" "$(head -n 1 <<<"$output")"
grep -q "patch CVE-.* level 1: active" <<<"$output" && pass "patches shown under their processes" ||
    fail_check "no patch under the process: $output"
status_to "$scratch/after.vex" 0 --format openvex --pid "$archive_pid"
validate_openvex "$scratch/after.vex" && pass "OpenVEX after the update validates" ||
    fail_check "OpenVEX after the update does not validate"
check_eq "OpenVEX after: every statement fixed" "$patches" \
    "$(jq '[.statements[] | select(.status == "fixed")] | length' "$scratch/after.vex")"
status_to "$scratch/after.om" 0 --format openmetrics --pid "$archive_pid"
grep -qx 'suture_processes{state="fully_patched"} 1' "$scratch/after.om" && pass "metrics: 1 fully patched" ||
    fail_check "metrics after: $(grep suture_processes "$scratch/after.om")"
applied=$(sed -n 's/^suture_patches_applied_total //p' "$scratch/after.om")
[ "${applied:-0}" -ge "$patches" ] && pass "metrics: $applied patches applied" ||
    fail_check "suture_patches_applied_total: '${applied:-}'"
check_openmetrics "$scratch/after.om" && pass "the OpenMetrics output parses after the update" ||
    fail_check "the OpenMetrics output after the update does not parse"
status_to "$scratch/after.prom" 0 --format prometheus --pid "$archive_pid"
promtool check metrics <"$scratch/after.prom" && pass "promtool accepts it after the update" ||
    fail_check "promtool check metrics after the update"

# 3. New advisory data: a CVE of this build without a live patch. The
#    process needs a restart, and says for which CVE.
with_open_cve "$scratch/coverage.json" "$scratch/with-open.json"
publish_advisories "$scratch/with-open.json"
open_cve=$(jq -r '[.builds[] | select(.version == "3.0.20-1~deb12u2") | .cves[] | select(.status == "open" or .status == "not_live_patchable") | .id] | sort | first' "$scratch/with-open.json")
run 27 "status with a CVE without live patch" "$SUTURE" status --json --pid "$archive_pid"
json=$output
check_eq "no live patch: exposure" needs_restart "$(process_field "$json" "$archive_pid" .exposure)"
check_eq "no live patch: $open_cve state" open_no_live_patch \
    "$(process_field "$json" "$archive_pid" ".cves[] | select(.id == \"$open_cve\") | .state")"
check_eq "no live patch: $open_cve has no patch id" null \
    "$(process_field "$json" "$archive_pid" ".cves[] | select(.id == \"$open_cve\") | .patch_id")"
run 27 "headline with a CVE without live patch" "$SUTURE" status --pid "$archive_pid"
headline=$(head -n 1 <<<"$output")
echo "headline: $headline"
grep -q "1 needs a restart: no live patch for .*$open_cve" <<<"$headline" &&
    pass "headline names the restart and the CVE" || fail_check "headline: $headline"
status_to "$scratch/open.vex" 27 --format openvex --pid "$archive_pid"
validate_openvex "$scratch/open.vex" && pass "OpenVEX with an open CVE validates" ||
    fail_check "OpenVEX with an open CVE does not validate"
# Listed for both libraries of the build (it is not known which one a fix
# without a patch goes into): one statement per product.
check_eq "OpenVEX: $open_cve affected, upgrade and restart (libssl and libcrypto)" 2 \
    "$(jq --arg cve "$open_cve" '[.statements[] | select(.vulnerability.name == $cve and .status == "affected" and (.action_statement | test("restart")))] | length' "$scratch/open.vex")"
finish
