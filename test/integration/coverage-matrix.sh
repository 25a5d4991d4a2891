#!/usr/bin/env bash
# The committed coverage matrix (patchsets/openssl/coverage.json,
# docs/coverage.md) is exactly what distro-support/coverage writes from the
# committed patchsets, build indexes and cached archive part
# (distro-support/coverage-archive.json; no network), it is the same on a
# second run, its numbers add up, and the script's errors name what is wrong.
source "$(dirname "$0")/lib.sh"

coverage=$SOURCE_ROOT/distro-support/coverage
json=$SOURCE_ROOT/patchsets/openssl/coverage.json

run 0 "distro-support/coverage --output-dir" "$coverage" --output-dir "$scratch/a"
for file in patchsets/openssl/coverage.json docs/coverage.md; do
    if cmp -s "$SOURCE_ROOT/$file" "$scratch/a/$file"; then
        pass "the committed $file is what the script writes"
    else
        fail_check "the committed $file is not what the script writes (run distro-support/coverage and commit):"
        diff -u "$SOURCE_ROOT/$file" "$scratch/a/$file" | head -40
    fi
done
run 0 "distro-support/coverage --check" "$coverage" --check
run 0 "a second run" "$coverage" --output-dir "$scratch/b"
diff -r "$scratch/a" "$scratch/b" >/dev/null && pass "two runs write the same bytes" ||
    fail_check "two runs differ"

# The numbers add up: per build, the statuses sum to the later CVEs; the
# patched pairs are the patchset directories; the totals are the sums.
check_eq "builds whose statuses do not add up" "" \
    "$(jq -r '.builds[] | select(.totals.later != (.totals.patched + .totals.not_affected + .totals.not_live_patchable + .totals.open)) | .version' "$json")"
check_eq "builds whose totals are not their CVE list's" "" \
    "$(jq -r '.builds[] | select(.totals.later != ([.cves[] | select(.later)] | length) or .totals.patched != ([.cves[] | select(.later and .status == "patched")] | length)) | .version' "$json")"
check_eq "patched entries = patchset directories" \
    "$(cd "$SOURCE_ROOT/patchsets/openssl" && ls -d */*/CVE-*/patchset.json | sed 's|/patchset.json||' | sort)" \
    "$(jq -r '.builds[].cves[] | select(.status == "patched") | .patchset' "$json" | sort)"
check_eq "the all-builds totals" "$(jq -c '[.builds[].totals.later] | add' "$json")" "$(jq .totals.later "$json")"
# The two builds issue 16 is about, and the superseded one that only
# reached the index through its patchset.
check_eq "later CVEs of debian-12 3.0.20-1~deb12u2" 12 \
    "$(jq '.builds[] | select(.version == "3.0.20-1~deb12u2") | .totals.later' "$json")"
check_eq "later CVEs of debian-13 3.5.7-1~deb13u2" 13 \
    "$(jq '.builds[] | select(.version == "3.5.7-1~deb13u2") | .totals.later' "$json")"
check_eq "3.5.7-1~deb13u2 is in the matrix as superseded" true \
    "$(jq '.builds[] | select(.version == "3.5.7-1~deb13u2") | .superseded' "$json")"
# Cross-release findings (issue 17, patchsets/openssl/cross-release.json):
# bookworm's seven later fixes read against Debian 11's deb11u8, six the
# same bug (later CVEs of it: patched where deb11u8 has their patchset,
# else open), one classified not affected.
deb11u8_patchsets=$(ls -d "$SOURCE_ROOT"/patchsets/openssl/debian-11/1.1.1w-0+deb11u8/CVE-*/*.suture 2>/dev/null |
    xargs -r -n1 dirname | xargs -r -n1 basename | grep -cxF -f <(jq -r \
        '.findings[] | select(.build.version == "1.1.1w-0+deb11u8" and .verdict == "affected") | .cve' \
        "$SOURCE_ROOT/patchsets/openssl/cross-release.json") || true)
check_eq "deb11u8's later CVEs: cross-release, open, not affected" "7 7 $((6 - deb11u8_patchsets)) 1" \
    "$(jq -r '.builds[] | select(.version == "1.1.1w-0+deb11u8") | .totals | "\(.later) \(.cross_release) \(.open) \(.not_affected)"' "$json")"
check_eq "deb11u8's CVE-2026-84782 is fixed by bookworm's build" "debian-12 3.0.22-1~deb12u2 affected" \
    "$(jq -r '.builds[] | select(.version == "1.1.1w-0+deb11u8") | .cves[] | select(.id == "CVE-2026-84782") | "\(.fixed_in) \(.cross_release.verdict)"' "$json")"
# The single update per build (issue 17): on 3.0.17 the cumulative patches
# hold back the ids they supersede (their patchset.json "supersedes"), as
# update-whole-build.sh sees it.
release_3017=$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.17-1~deb12u2
superseded_3017=$(superseded_in "$release_3017")
ids_3017=$(ls "$release_3017"/*/*.suture | wc -l)
applied_3017=$((ids_3017 - $(wc -w <<<"$superseded_3017")))
check_eq "3.0.17's one update: applied, superseded" "$applied_3017 $superseded_3017" \
    "$(jq -r '.builds[] | select(.version == "3.0.17-1~deb12u2") | .whole_update | "\(.applied) \(.superseded | sort | join(" "))"' "$json")"
check_eq "builds whose one update does not add up" "" \
    "$(jq -r '.builds[] | select(.whole_update.applied + (.whole_update.superseded | length) != .whole_update.patch_ids) | .version' "$json")"
grep -q "^\*\*One update:\*\* \`suture update\` (the feed publishing the shipped patchsets) applies $applied_3017 of its $ids_3017 patch ids" \
    "$SOURCE_ROOT/docs/coverage.md" && pass "docs/coverage.md tells 3.0.17's one update" ||
    fail_check "docs/coverage.md has no one-update line for 3.0.17"
grep -q "^Generated by \`distro-support/coverage\`" "$SOURCE_ROOT/docs/coverage.md" &&
    pass "docs/coverage.md says it is generated, and by what" || fail_check "no 'Generated by' line"

# --- errors ------------------------------------------------------------------
# expect_error NAME MESSAGE_PART: the script on $scratch/p fails naming it.
expect_error() {
    run 1 "$1" "$coverage" --patchsets "$scratch/p" --output-dir "$scratch/err"
    grep -qF -- "$2" <<<"$errors" && pass "$1: says '$2'" ||
        { fail_check "$1: the error does not say '$2'"; printf '%s\n' "$errors"; }
    rm -rf "$scratch/p"
}
# The classification cases need a pair that is open (whichever the
# committed coverage lists first). With none open any more, a patched pair
# of 3.0.20 that nothing else names (no port, no cross-release reading)
# stands for one: each copy drops its patchset. The registration
# case needs a CVE id with no proof test at all.
# pair_with STATUS REGEX: the first DISTRO/VERSION/CVE of that status matching it.
pair_with() {
    jq -r --arg status "$1" --arg only "$2" '[.builds[] | .distribution as $d | .version as $v |
        .cves[] | select(.status == $status) | "\($d)/\($v)/\(.id)" | select(test($only))] | first // empty' "$json"
}
open_pair=$(pair_with open .)
dropped=""
if [ -z "$open_pair" ]; then
    open_pair=$(pair_with patched '^debian-12/3[.]0[.]20-1~deb12u2/CVE-2026-(63074|42767)$')
    dropped=$open_pair
fi
[ -n "$open_pair" ] || { fail_check "no pair to classify in the error cases"; finish; }
fresh() {
    rm -rf "$scratch/p"
    cp -r "$SOURCE_ROOT/patchsets/openssl" "$scratch/p"
    [ -z "$dropped" ] || rm -rf "${scratch:?}/p/$dropped"
}
open_cve=${open_pair##*/}
classified=$scratch/p/$open_pair
unregistered=$scratch/p/debian-12/3.0.20-1~deb12u2/CVE-2026-99999
patchset=$scratch/p/debian-12/3.0.20-1~deb12u2/CVE-2026-63072

fresh; mkdir -p "$classified"; echo '{"format": "suture-classification",' > "$classified/classification.json"
expect_error "a classification that is not JSON" "$classified/classification.json: cannot read classification.json"

fresh; mkdir -p "$classified"
jq -n --arg cve "$open_cve" '{format: "suture-classification", format_version: 1, cve: $cve, severity: "Low",
        summary: "s", status: "not_affected", reason: "r", checks: [{kind: "file_missing", path: "x.c"}]}' \
    > "$classified/classification.json"
expect_error "an unknown check kind" "check 1: unknown kind 'file_missing' (known: function_absent, not_compiled, size_overflow_needs_32bit, source_absent, source_has, source_lacks)"

fresh; mkdir -p "$classified"
jq -n --arg cve "$open_cve" '{format: "suture-classification", format_version: 1, cve: $cve, severity: "Low",
        summary: "s", status: "not_affected", reason: "r", checks: []}' > "$classified/classification.json"
expect_error "not_affected without checks" "not_affected needs at least one check"

fresh; mkdir -p "$classified"
jq -n --arg cve "$open_cve" '{format: "suture-classification", format_version: 1, cve: $cve, severity: "Low",
        summary: "s", status: "not_live_patchable", reason: "r", checks: []}' > "$classified/classification.json"
expect_error "not_live_patchable without a justification" "not_live_patchable needs a justification"

fresh; mkdir -p "$classified"
jq -n --arg cve "$open_cve" '{format: "suture-classification", format_version: 1, cve: $cve, severity: "Low",
        summary: "s", status: "fixed", reason: "r", checks: []}' > "$classified/classification.json"
expect_error "an unknown status" "status 'fixed' is neither not_affected nor not_live_patchable"

fresh; mkdir -p "$scratch/p/debian-12/3.0.99-1~deb12u1"
cp -r "$patchset" "$scratch/p/debian-12/3.0.99-1~deb12u1/"
expect_error "a patchset for a build not in the index" \
    "patchsets for debian-12 3.0.99-1~deb12u1, a build that no distro-support/debian-12/builds.json indexes"

fresh; jq '.library.build_id = "0000000000000000000000000000000000000000"' "$patchset/patchset.json" > "$scratch/m"
mv "$scratch/m" "$patchset/patchset.json"
expect_error "a patchset for another build ID" "library.build_id 0000000000000000000000000000000000000000 is not the index's"

fresh; rm "$patchset/CVE-2026-63072.suture"
expect_error "a patchset without its built patch" "the built patch 'CVE-2026-63072.suture' is not there"

fresh; cp "$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2/CVE-2026-84782/CVE-2026-84782.suture" \
    "$patchset/CVE-2026-63072.suture"
expect_error "a .suture made for another library" \
    "CVE-2026-63072.suture: made for libssl.so.3 aa0eeee44fa27da26d1a3c3b5e3fa7ae2628bc63, not libcrypto.so.3 7d90f38412d00023e58392b03612a24b62fcaede"

fresh; cp "$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2/CVE-2026-84782/CVE-2026-84782.suture" \
    "$patchset/CVE-2026-63072.suture"
jq '.library.soname = "libssl.so.3" | .library.build_id = "aa0eeee44fa27da26d1a3c3b5e3fa7ae2628bc63"' \
    "$patchset/patchset.json" > "$scratch/m" && mv "$scratch/m" "$patchset/patchset.json"
expect_error "a .suture of another patch" "patch_id 'CVE-2026-84782' is not the patchset's 'CVE-2026-63072'"

fresh; cp -r "$patchset" "$unregistered"
jq '.cve = "CVE-2026-99999"' "$patchset/patchset.json" > "$scratch/m"
mv "$scratch/m" "$unregistered/patchset.json"
expect_error "a patchset without a registered proof test" \
    "no proof test is registered for debian-12/3.0.20-1~deb12u2/CVE-2026-99999"

fresh; rm "$patchset/reproducer.c"
expect_error "a patchset without its reproducer" "reproducer 'reproducer.c' is not there"

cross=$scratch/p/cross-release.json
finding() { # JQ_UPDATE: the first finding changed
    jq "$1" "$SOURCE_ROOT/patchsets/openssl/cross-release.json" > "$scratch/m" && mv "$scratch/m" "$cross"
}
fresh; finding '.findings[0].cve = "CVE-2026-28388" | .findings[0].fix_read = "debian-12/3.0.20-1~deb12u2/CVE-2026-28388"'
expect_error "a cross-release finding of a CVE the release fixes" \
    "finding 1 (CVE-2026-28388): the archive part has no debian-12 build 3.0.22-1~deb12u2 that fixes CVE-2026-28388"
fresh; finding '.findings[0].build.version = "1.1.1w-0+deb11u1" | .findings[0].cve = "CVE-2026-9076"'
expect_error "a cross-release finding of a CVE already later by the archive" \
    "already a later CVE of debian-11 1.1.1w-0+deb11u1 by the archive's data"
fresh; finding '.findings[0].fixed_by.version = "3.0.22-1~deb12u1"'
expect_error "a cross-release finding with the wrong fixing build" \
    "the archive part has no debian-12 build 3.0.22-1~deb12u1 that fixes CVE-2026-35189 (it says: 3.0.22-1~deb12u2)"
fresh; finding '.findings[0].verdict = "not_affected"'
expect_error "a not_affected finding without its classification" \
    "verdict not_affected needs a not_affected classification.json in debian-11/1.1.1w-0+deb11u8/CVE-2026-35189/"
fresh; finding '(.findings[] | select(.cve == "CVE-2026-75803") | .verdict) = "affected"'
expect_error "an affected finding that a classification contradicts" \
    "verdict affected, but debian-11/1.1.1w-0+deb11u8/CVE-2026-75803/ classifies it not_affected"
fresh; finding '.findings[0].checks[0].kind = "source_contains"'
expect_error "a finding with an unknown check kind" "finding 1 (CVE-2026-35189): check 1: unknown kind 'source_contains'"

fresh; jq -n '{format: "suture-classification", format_version: 1, cve: "CVE-2026-63072", severity: "Low",
        summary: "s", status: "not_affected", reason: "r", checks: [{kind: "source_absent", path: "x.c"}]}' \
    > "$patchset/classification.json"
expect_error "a patchset and a classification in one directory" "needs exactly one of patchset.json and classification.json"
finish
