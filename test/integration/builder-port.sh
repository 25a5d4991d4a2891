#!/usr/bin/env bash
# suture-build --port-to: a fix written for one build becomes a patchset of
# another build, or is refused. On copies of committed patchsets in a
# scratch patchsets tree (the port writes beside the original):
#   1. a fix whose context the target's source does not have (3.5's
#      OSSL_CRMF_ENCRYPTEDVALUE_decrypt, which 3.0 does not have) is refused
#      with the rejected hunk shown, and nothing is written;
#   2. CVE-2026-75805's debian-13 fix ported to the builds a coverage.json
#      lists it open for (--port-to-affected --no-build), debian-12
#      3.0.20-1~deb12u2: the fix re-based onto 3.0.20's lines, patchset.json for
#      that build's libcrypto, README "Ported from", reproducer.c including
#      the original's, and the warning that the original's reproducer does
#      not compile against 3.0 (it uses 3.2's OSSL_CMP_CTX_set1_serialNumber);
#   3. with --build (the slow suite): CVE-2026-35189's debian-12 fix ported
#      to debian-13 3.5.7-1~deb13u2 and built in a trixie root filesystem:
#      the same patch, byte for byte, as the committed port. Prints the time.
# Needs the debian-12 3.0.20-1~deb12u2 source (the cached rebuild, or the
# archive) for 1 and 2.
source "$(dirname "$0")/lib.sh"
: "${SUTURE_BUILD:?}"
committed=$SOURCE_ROOT/patchsets/openssl
root=$scratch/patchsets
mkdir -p "$root"
cp "$committed"/*.h "$root/"
copy_patchset() {
    mkdir -p "$root/$(dirname "$1")"
    cp -r "$committed/$1" "$root/$1"
}

# --- 1: refused ---------------------------------------------------------------
original=debian-13/3.5.7-1~deb13u2/CVE-2026-42767
mkdir -p "$root/$original"
jq '.cve = "CVE-2026-42767" | .patch_id = "CVE-2026-42767" | .output = "CVE-2026-42767.suture"' \
    "$committed/debian-13/3.5.7-1~deb13u2/CVE-2026-75805/patchset.json" > "$root/$original/patchset.json"
cat > "$root/$original/fix.patch" <<'PATCH'
--- a/crypto/crmf/crmf_lib.c
+++ b/crypto/crmf/crmf_lib.c
@@ -824,7 +824,7 @@
     iv_len = EVP_CIPHER_get_iv_length(cipher);
     if ((iv = OPENSSL_malloc(iv_len)) == NULL)
         goto end;
-    if (enc->symmAlg->parameter == NULL
+    if (enc->symmAlg->parameter == NULL /* no IV */
         || ASN1_TYPE_get_octetstring(enc->symmAlg->parameter, iv, iv_len)
             != iv_len) {
         ERR_raise(ERR_LIB_CRMF, CRMF_R_MALFORMED_IV);
PATCH
echo 'int main(void) { return 0; }' > "$root/$original/reproducer.c"
status=0
"$SUTURE_BUILD" --no-build --port-to debian-12/3.0.20-1~deb12u2 "$root/$original" \
    >"$scratch/refused.out" 2>"$scratch/refused.err" || status=$?
if grep -q 'cannot fetch' "$scratch/refused.err"; then
    cat "$scratch/refused.err"
    skip "no cached rebuild of 3.0.20-1~deb12u2 and the Debian archive is not reachable"
fi
check_eq "a fix that does not apply: exit status" 1 "$status"
grep -q "does not apply to debian-12/3.0.20-1~deb12u2's source" "$scratch/refused.err" &&
    pass "the refusal names the build" || { cat "$scratch/refused.err"; fail_check "no refusal message"; }
grep -q 'rejected hunks (debian-12/3.0.20-1~deb12u2, crypto/crmf/crmf_lib.c.rej)' "$scratch/refused.err" &&
    grep -q '^ *+    if (enc->symmAlg->parameter == NULL /\* no IV \*/' "$scratch/refused.err" &&
    pass "the rejected hunk is shown" || fail_check "the rejected hunk is not shown"
[ ! -e "$root/debian-12/3.0.20-1~deb12u2/CVE-2026-42767" ] &&
    pass "nothing written for the refused build" || fail_check "a patchset directory was written for a refused port"

# --- 2: ported (not built) ----------------------------------------------------
original=debian-13/3.5.7-1~deb13u2/CVE-2026-75805
copy_patchset "$original"
port=$root/debian-12/3.0.20-1~deb12u2/CVE-2026-75805
# The builds to port to and the fixed version, from coverage.json (the
# contract's schema): the one other build that has the CVE open.
cat > "$root/coverage.json" <<'JSON'
{"format": "suture-coverage", "format_version": 1, "builds": [
  {"distribution": "debian-13", "version": "3.5.7-1~deb13u2",
   "cves": [{"id": "CVE-2026-75805", "fixed_in": "3.5.7-1~deb13u3", "status": "patched"}]},
  {"distribution": "debian-12", "version": "3.0.20-1~deb12u2",
   "cves": [{"id": "CVE-2026-75805", "fixed_in": "3.0.22-1~deb12u2", "status": "open"},
            {"id": "CVE-2026-63076", "fixed_in": "3.0.22-1~deb12u1", "status": "patched"}]},
  {"distribution": "debian-11", "version": "1.1.1w-0+deb11u1",
   "cves": [{"id": "CVE-2026-63072", "fixed_in": "openssl 3.0.22", "status": "open"}]}]}
JSON
run 0 "port CVE-2026-75805 to the builds coverage.json lists it open for (--no-build)" \
    "$SUTURE_BUILD" --no-build --port-to-affected "$root/$original"
check_eq "ported to exactly the one affected build" "debian-12/3.0.20-1~deb12u2/CVE-2026-75805" \
    "$(cd "$root" && find . -path ./debian-13 -prune -o -name patchset.json -printf '%h\n' | sed 's|^\./||' | sort | paste -sd ' ')"
check_eq "the fix is re-based onto 3.0.20's lines" "@@ -857,7 +857,7 @@" "$(grep '^@@' "$port/fix.patch")"
check_eq "the re-based fix changes the same line" \
    "$(grep '^[-+][^-+]' "$committed/$original/fix.patch")" "$(grep '^[-+][^-+]' "$port/fix.patch")"
check_eq "patchset.json: the target build" "debian-12 3.0.20-1~deb12u2 libssl3 7d90f38412d00023e58392b03612a24b62fcaede" \
    "$(jq -r '"\(.distribution) \(.source_version) \(.library.package) \(.library.build_id)"' "$port/patchset.json")"
check_eq "patchset.json: same patch id, fixed_version, where from" "CVE-2026-75805 3.0.22-1~deb12u2 debian-13/3.5.7-1~deb13u2" \
    "$(jq -r '"\(.patch_id) \(.fixed_version) \(.ported_from)"' "$port/patchset.json")"
grep -q '^\*\*Ported from\*\* \[debian-13/3.5.7-1~deb13u2\]' "$port/README.md" &&
    pass "README: Ported from" || fail_check "README does not say where the port comes from"
grep -q '^#include "../../../debian-13/3.5.7-1~deb13u2/CVE-2026-75805/reproducer.c"$' "$port/reproducer.c" &&
    pass "reproducer.c includes the original's" || fail_check "reproducer.c does not include the original's"
if [ "$(. /etc/os-release && echo "$VERSION_CODENAME")" = bookworm ]; then
    grep -q "the original's reproducer does not compile for debian-12" <<<"$errors" &&
        pass "the original's reproducer is reported as needing an adaptation for 3.0" ||
        fail_check "no warning that the 3.5 reproducer does not compile against 3.0"
    grep -q '^\*\*Adaptation.\*\* TODO' "$port/README.md" && pass "README leaves the adaptation to write" ||
        fail_check "README does not ask for the adaptation"
fi
grep -q "test/integration/patchset-cve.sh $port" <<<"$output" && pass "the next step is printed" ||
    fail_check "no next step printed"
[ ! -e "$port/CVE-2026-75805.suture" ] && pass "--no-build built nothing" || fail_check "--no-build built a patch"

# --- 3: ported and built (slow) -----------------------------------------------
if [ "${1:-}" = --build ]; then
    require_root "building in a trixie root filesystem"
    original=debian-12/3.0.20-1~deb12u2/CVE-2026-35189
    copy_patchset "$original"
    rm -rf "$root/debian-13/3.5.7-1~deb13u2/CVE-2026-35189"
    started=$(date +%s)
    run 0 "port and build CVE-2026-35189 for debian-13" \
        "$SUTURE_BUILD" --port-to debian-13/3.5.7-1~deb13u2 --fixed-version 3.5.7-1~deb13u3 "$root/$original"
    echo "figure: port + build for debian-13 $(($(date +%s) - started)) s"
    cmp -s "$root/debian-13/3.5.7-1~deb13u2/CVE-2026-35189/fix.patch" \
        "$committed/debian-13/3.5.7-1~deb13u2/CVE-2026-35189/fix.patch" &&
        pass "the re-based fix is the committed port's" || fail_check "the re-based fix differs from the committed port's"
    cmp -s "$root/debian-13/3.5.7-1~deb13u2/CVE-2026-35189/CVE-2026-35189.suture" \
        "$committed/debian-13/3.5.7-1~deb13u2/CVE-2026-35189/CVE-2026-35189.suture" &&
        pass "the built patch is the committed port's, byte for byte" || fail_check "the built patch differs from the committed port's"
fi
finish
