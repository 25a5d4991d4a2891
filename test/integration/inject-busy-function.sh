#!/usr/bin/env bash
# A function that is never idle: busy-cmp (test/targets/busy-cmp.c) runs 8
# threads that validate PBM-protected CMP messages non-stop on the
# archive's libcrypto 3.0.20-1~deb12u2, so at any moment nearly every thread
# is inside ossl_cmp_calc_protection, the one function the CVE-2026-63076
# patch replaces. That patch is an `entry` patch (docs/patch-format.md,
# "Consistency"): only a thread on the 5 bytes a jump overwrites is in the
# way, so every apply must succeed within the default tries. The same patch
# rewritten to `strict` must end `unsafe` (exit 9) without return gates (the
# busy threads are in the way and nothing changes in the process), and go in
# with them. A revert never waits
# for busy code (docs/architecture.md), so each cycle's revert happens under
# the same busy threads, which run on in the retired region until they
# leave it.
#
# SUTURE_BUSY_CYCLES (default 100) apply/revert cycles; the target checks
# every result (bad=0). The time to a successful apply (wall clock of the
# CLI), the time stopped and the tries it took are printed (median, p99).
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the busy target"
: "${BUSY_CMP:?}"
cycles=${SUTURE_BUSY_CYCLES:-100}
patch=$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2/CVE-2026-63076/CVE-2026-63076.suture

check_eq "the CVE-2026-63076 patch is an entry patch" entry "$(patch_metadata "$patch" | jq -r '.consistency // "strict"')"
rewrite_patch "$patch" "$scratch/strict.suture" '.consistency = "strict"'
check_eq "its copy rewritten to strict reads as strict" strict "$(patch_metadata "$scratch/strict.suture" | jq -r .consistency)"

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
library_dir=$scratch/archive/usr/lib/x86_64-linux-gnu
start_program pid "LD_LIBRARY_PATH=$library_dir" -- "$BUSY_CMP" 8 10000
status=$(status_json "$pid")
check_eq "busy-cmp maps the archive's libcrypto" 7d90f38412d00023e58392b03612a24b62fcaede \
    "$(library "$status" "$pid" libcrypto.so.3 build_id)"

# threads_inside: how many of the target's threads have the PC or a return
# address inside the replaced function (from `suture stacks`).
function_start=$(patch_metadata "$patch" | jq -r '.functions[0].offset')
function_size=$(patch_metadata "$patch" | jq -r '.functions[0].size')
library_base=$((16#$(awk -v path="$(readlink -f "$library_dir/libcrypto.so.3")" \
    '$6 == path && $3 == "00000000" { sub(/-.*/, "", $1); print $1; exit }' "/proc/$pid/maps")))
threads_inside() {
    "$SUTURE" stacks --json --pid "$pid" | jq -r '.threads[] | [.frames[]] | join(" ")' |
        while read -r frames; do
            for frame in $frames; do
                offset=$((frame - library_base))
                if [ "$offset" -ge "$function_start" ] && [ "$offset" -lt $((function_start + function_size)) ]; then
                    echo inside
                    break
                fi
            done
        done | wc -l
}
samples=()
for _ in 1 2 3 4 5; do
    samples+=("$(threads_inside)")
done
echo "threads inside ossl_cmp_calc_protection, 5 samples of 8: ${samples[*]}"
busiest=$(printf '%s\n' "${samples[@]}" | sort -n | tail -n 1)
[ "$busiest" -ge 6 ] && pass "most threads are inside the replaced function ($busiest of 8 at most)" ||
    fail_check "at most $busiest of 8 threads inside ossl_cmp_calc_protection: the target is not busy there"

# Before: the strict patch, without return gates, finds the busy threads in
# the way at every try and gives up.
run 9 "the strict copy under 8 busy threads, no return gates: unsafe" \
    "$SUTURE" apply --json --no-return-gates --pid "$pid" "$scratch/strict.suture"
echo "strict without gates: reason $(jq -r .error.reason <<<"$output" 2>/dev/null)," \
    "threads in the way in the last try: $(jq '.error.blocking_threads | length' <<<"$output" 2>/dev/null)"
check_eq "after the refused strict apply, nothing is in the process" 0 \
    "$(status_json "$pid" | jq '.processes[0].patches | length')"
# With return gates (the default) the strict copy goes in too: each busy
# thread is caught on its way out of ossl_cmp_calc_protection.
run 0 "the strict copy under 8 busy threads, with return gates" \
    "$SUTURE" apply --json --pid "$pid" "$scratch/strict.suture"
echo "strict with gates: $(jq -c '{attempts, gated_threads, gate_rounds, stopped_us}' <<<"$output")"
[ "$(jq -r .gated_threads <<<"$output")" -ge 1 ] && pass "busy threads were caught at return gates" ||
    fail_check "no thread gated: $output"
run 0 "the strict copy reverted under the busy threads" "$SUTURE" revert --json --pid "$pid"

# After: the entry patch, applied and reverted under the busy threads again
# and again.
apply_ms=()
stopped_us=()
tries=()
least_inside=8
failed=0
for cycle in $(seq "$cycles"); do
    if [ $((cycle % 10)) = 1 ]; then
        inside=$(threads_inside)
        [ "$inside" -lt "$least_inside" ] && least_inside=$inside
    fi
    started=$(date +%s%N)
    if out=$("$SUTURE" apply --json --pid "$pid" "$patch" 2>&1) &&
        [ "$(jq -r .already_applied <<<"$out")" = false ]; then
        apply_ms+=("$((($(date +%s%N) - started) / 1000000))")
        stopped_us+=("$(jq -r .stopped_us <<<"$out")")
        tries+=("$(jq -r .attempts <<<"$out")")
    else
        failed=$((failed + 1))
        echo "cycle $cycle: apply: $(first_line_of_error "$out")"
    fi
    if ! out=$("$SUTURE" revert --json --pid "$pid" 2>&1); then
        failed=$((failed + 1))
        echo "cycle $cycle: revert: $(first_line_of_error "$out")"
    fi
done
check_eq "applies (default tries) and reverts under 8 busy threads that failed in $cycles cycles" 0 "$failed"
[ "$least_inside" -ge 6 ] && pass "every 10th apply found at least $least_inside of 8 threads inside the replaced function" ||
    fail_check "only $least_inside of 8 threads inside ossl_cmp_calc_protection before one of the applies"
report=$(ask "$pid" report)
check_eq "wrong CMP results in the busy threads" 0 "$(field "$report" bad)"
calls=$(field "$report" calls)
[ "${calls:-0}" -gt 0 ] && pass "the threads kept validating ($calls calls)" || fail_check "no calls: $report"
kill -0 "$pid" 2>/dev/null && pass "busy-cmp alive" || fail_check "busy-cmp died"
check_eq "after the last revert, no patch is in effect (a region left is retired)" 0 \
    "$(status_json "$pid" | jq '[.processes[0].patches[] | select(.state != "retired")] | length')"

if [ "${#apply_ms[@]}" -gt 0 ]; then
    echo "figures: entry apply under 8 busy threads, ${#apply_ms[@]} applies:" \
        "time to a successful apply (CLI wall clock) median $(percentile 50 "${apply_ms[@]}") ms," \
        "p99 $(percentile 99 "${apply_ms[@]}") ms; stopped median $(percentile 50 "${stopped_us[@]}") us," \
        "p99 $(percentile 99 "${stopped_us[@]}") us; tries median $(percentile 50 "${tries[@]}")," \
        "max $(percentile 100 "${tries[@]}")"
fi
finish
