#!/usr/bin/env bash
# distro-support/coverage's classification checks (source_absent,
# not_compiled, function_absent, size_overflow_needs_32bit, source_has,
# source_lacks), each kind once true and once false: on a small fixture
# rebuild (a source tree, a build log and a debug file compiled here) and a
# fixture archive cache (a .deb built here whose library carries the
# index's build ID, a source package built here) always, and on the real
# cached rebuild of Debian 12's 3.0.20-1~deb12u2 and the real package of
# 3.0.17-1~deb12u2 when this machine has them. The fixtures are
# classification.json files in a scratch patchsets directory, never in
# patchsets/.
source "$(dirname "$0")/lib.sh"

coverage=$SOURCE_ROOT/distro-support/coverage
distro=debian-12
version=3.0.20-1~deb12u2
crypto_id=$(jq -r '.builds[] | select(.version == "3.0.20-1~deb12u2" and .soname == "libcrypto.so.3") | .build_id' \
    "$SOURCE_ROOT/distro-support/debian-12/builds.json")

# classify DIR CVE CHECK_JSON: a not_affected classification with one check.
classify() {
    mkdir -p "$1/$distro/$version/$2"
    jq -n --arg cve "$2" --argjson check "$3" \
        '{format: "suture-classification", format_version: 1, cve: $cve, severity: "Low",
          summary: "fixture", status: "not_affected", reason: "fixture", checks: [$check]}' \
        > "$1/$distro/$version/$2/classification.json"
}

# verify_set NAME BUILD_CACHE BUILD_ROOT TRUE_CHECKS... -- FALSE_CHECKS...:
# each check in its own classification (the later CVEs of the build serve as
# directory names); --verify-checks must call each true or FALSE as given,
# and exit 1 because of the false ones, 0 once only the true ones are left.
cves=(CVE-2026-35189 CVE-2026-42767 CVE-2026-54872 CVE-2026-75805 CVE-2026-75806 CVE-2026-77696)
verify_set() {
    local name=$1 cache=$2 root=$3 set=$scratch/$1 i=0 check expected=true trues=() line
    shift 3
    for check in "$@"; do
        [ "$check" = -- ] && { expected=FALSE; continue; }
        classify "$set/all" "${cves[$i]}" "$check"
        [ $expected = true ] && trues+=("${cves[$i]}")
        line="$expected $distro $version ${cves[$i]}: $(jq -r '[.kind, .library // empty, .function // .path] | join(" ")' <<<"$check")"
        expected_lines+=("$line")
        i=$((i + 1))
    done
    run 1 "$name: --verify-checks with false checks" \
        "$coverage" --verify-checks --patchsets "$set/all" --build-cache "$cache" --build-root "$root" \
        --output-dir "$set/out"
    for line in "${expected_lines[@]}"; do
        grep -qxF "coverage: $line" <<<"$errors" && pass "$name: $line" ||
            { fail_check "$name: no line '$line'"; printf '%s\n' "$errors"; }
    done
    grep -q "^coverage: 3 classification checks are false" <<<"$errors" &&
        pass "$name: 3 checks false" || fail_check "$name: the false checks are not counted"
    # Classified is classified: a false check fails --verify-checks, not the
    # status (coverage.json must not depend on which caches a machine has).
    check_eq "$name: the classified pairs in coverage.json" "6 not_affected" \
        "$(jq -r --arg v "$version" '.builds[] | select(.version == $v) | .totals.not_affected' "$set/out/patchsets/openssl/coverage.json") not_affected"
    mkdir -p "$set/true/$distro/$version"
    for i in "${trues[@]}"; do
        cp -r "$set/all/$distro/$version/$i" "$set/true/$distro/$version/"
    done
    run 0 "$name: --verify-checks with only true checks" \
        "$coverage" --verify-checks --patchsets "$set/true" --build-cache "$cache" --build-root "$root" \
        --output-dir "$set/out"
    expected_lines=()
}
expected_lines=()

# --- the fixture rebuild ------------------------------------------------------
fixture=$scratch/fixture
tree=$fixture/root/build/reproducible-path/openssl-3.0.20
rebuild=$fixture/cache/$distro/openssl/$version/rebuild
mkdir -p "$tree/crypto" "$rebuild/root/usr/lib/debug/.build-id/${crypto_id:0:2}"
echo "$version" > "$tree/.suture-rebuild"
touch "$rebuild/verified"
cat > "$tree/crypto/linked.c" <<'EOF'
static int fixture_local(int x) { return x * 3; }
int fixture_global(int x) { return fixture_local(x) + 1; }
EOF
echo 'int fixture_static_only(void) { return 2; }' > "$tree/crypto/static_only.c"
echo 'int fixture_never(void) { return 1; }' > "$tree/crypto/never.c"
# The shapes of OpenSSL 3's build log: make's directory lines, the shared
# library's compile lines (-shlib- objects), the static library's (also in
# build_shared/), the link command continued over several lines.
cat > "$rebuild/build.log" <<'EOF'
make[1]: Entering directory '/build/reproducible-path/openssl-3.0.20/build_shared'
gcc -I. -O2 -fPIC -c -o crypto/libcrypto-shlib-linked.o ../crypto/linked.c
gcc -I. -O2 -c -o crypto/libcrypto-lib-static_only.o ../crypto/static_only.c
ar qc libcrypto.a crypto/libcrypto-lib-static_only.o
gcc -fPIC -O2 -shared \
	-o libcrypto.so.3 -Wl,--version-script=libcrypto.ld \
	crypto/libcrypto-shlib-linked.o \
	-ldl -pthread
make[1]: Leaving directory '/build/reproducible-path/openssl-3.0.20/build_shared'
make[1]: Entering directory '/build/reproducible-path/openssl-3.0.20/build_static'
gcc -I. -O2 -c -o crypto/libcrypto-lib-never.o ../crypto/never.c
make[1]: Leaving directory '/build/reproducible-path/openssl-3.0.20/build_static'
EOF
cc -O0 -g -shared -fPIC -o "$rebuild/root/usr/lib/debug/.build-id/${crypto_id:0:2}/${crypto_id:2}.debug" \
    "$tree/crypto/linked.c" || { fail_check "cannot compile the fixture debug file"; finish; }

echo "--- the fixture rebuild"
verify_set fixture "$fixture/cache" "$fixture/root" \
    '{"kind": "source_absent", "path": "crypto/gone.c"}' \
    '{"kind": "not_compiled", "path": "crypto/static_only.c"}' \
    '{"kind": "function_absent", "library": "libcrypto.so.3", "function": "fixture_gone"}' \
    -- \
    '{"kind": "source_absent", "path": "crypto/linked.c"}' \
    '{"kind": "not_compiled", "path": "crypto/linked.c"}' \
    '{"kind": "function_absent", "library": "libcrypto.so.3", "function": "fixture_local"}'

# --- no cached rebuild: every check is listed as unverified -----------------
classify "$scratch/unverified" CVE-2026-35189 '{"kind": "source_absent", "path": "crypto/linked.c"}'
run 0 "no rebuild cache: --verify-checks does not fail" "$coverage" --verify-checks \
    --patchsets "$scratch/unverified" --build-cache "$scratch/no-cache" --build-root "$fixture/root" \
    --output-dir "$scratch/unverified-out"
grep -q "^coverage: UNVERIFIED $distro $version CVE-2026-35189: source_absent crypto/linked.c (no verified rebuild in " \
    <<<"$errors" && pass "the check is named as unverified, with the reason" ||
    { fail_check "no UNVERIFIED line"; printf '%s\n' "$errors"; }
grep -q "^coverage: 1 classification checks could not be verified" <<<"$errors" &&
    pass "the unverified checks are counted" || fail_check "the unverified checks are not counted"

# --- a not_compiled check on a file that is not there is an error -----------
classify "$scratch/misused" CVE-2026-35189 '{"kind": "not_compiled", "path": "crypto/gone.c"}'
run 1 "not_compiled of a missing file" "$coverage" --verify-checks --patchsets "$scratch/misused" \
    --build-cache "$fixture/cache" --build-root "$fixture/root" --output-dir "$scratch/misused-out"
grep -q "not_compiled crypto/gone.c: the file is not in the source tree (that is source_absent)" <<<"$errors" &&
    pass "it says to use source_absent" || { fail_check "unclear error"; printf '%s\n' "$errors"; }

# --- size_overflow_needs_32bit: the build's own package from the archive ------
# A fixture archive cache with the build's package: its libcrypto.so.3 is a
# library compiled here (64-bit, this machine's) given the index's build ID.
fixture_deb() { # ARCHIVE_CACHE BUILD_ID
    local tree=$scratch/deb-$2 debs=$1/apt/$distro/debs
    mkdir -p "$tree/DEBIAN" "$tree/usr/lib/x86_64-linux-gnu" "$debs"
    printf '%s\n' "Package: libssl3" "Version: $version" "Architecture: amd64" \
        "Maintainer: fixture <fixture@example.org>" "Description: fixture" > "$tree/DEBIAN/control"
    cc -O0 -shared -fPIC -Wl,--build-id=0x$2 -o "$tree/usr/lib/x86_64-linux-gnu/libcrypto.so.3" \
        "$fixture/root/build/reproducible-path/openssl-3.0.20/crypto/linked.c" &&
        dpkg-deb --root-owner-group -b "$tree" "$debs/libssl3_${version}_amd64.deb" >/dev/null
}
size_check() { # FUNCTION MULTIPLIER
    jq -nc --arg f "$1" --argjson m "$2" '{kind: "size_overflow_needs_32bit", library: "libcrypto.so.3", function: $f, multiplier: $m}'
}
echo "--- size_overflow_needs_32bit on a fixture archive cache"
if command -v dpkg-deb >/dev/null && fixture_deb "$scratch/archive" "$crypto_id"; then
    classify "$scratch/size/all" CVE-2026-35189 "$(size_check fixture_global 3)"
    classify "$scratch/size/all" CVE-2026-42767 "$(size_check fixture_local 3)"
    classify "$scratch/size/all" CVE-2026-54872 "$(size_check fixture_global 128)"
    SUTURE_ARCHIVE_CACHE=$scratch/archive run 1 "size checks with false ones: --verify-checks fails" \
        "$coverage" --verify-checks --patchsets "$scratch/size/all" --build-cache "$scratch/no-cache" \
        --output-dir "$scratch/size/out"
    for line in "true $distro $version CVE-2026-35189: size_overflow_needs_32bit libcrypto.so.3 fixture_global ×3 (libcrypto.so.3 is ELF64 x86-64" \
        "FALSE $distro $version CVE-2026-42767: size_overflow_needs_32bit libcrypto.so.3 fixture_local ×3 (fixture_local is not a dynamic symbol of libcrypto.so.3" \
        "FALSE $distro $version CVE-2026-54872: size_overflow_needs_32bit libcrypto.so.3 fixture_global ×128 (an object of up to 2^57 bytes (x86-64) times 128 can wrap a 64-bit size_t)"; do
        grep -qF "coverage: $line" <<<"$errors" && pass "size: ${line%% (*}" ||
            { fail_check "size: no line '$line'"; printf '%s\n' "$errors"; }
    done
    grep -q "^coverage: 2 classification checks are false" <<<"$errors" &&
        pass "size: 2 checks false" || fail_check "size: the false checks are not counted"
    mkdir -p "$scratch/size/true/$distro/$version"
    cp -r "$scratch/size/all/$distro/$version/CVE-2026-35189" "$scratch/size/true/$distro/$version/"
    SUTURE_ARCHIVE_CACHE=$scratch/archive run 0 "size: --verify-checks with only the true check" \
        "$coverage" --verify-checks --patchsets "$scratch/size/true" --build-cache "$scratch/no-cache" \
        --output-dir "$scratch/size/out"

    # A package whose library is not the indexed build proves nothing: false.
    fixture_deb "$scratch/other-archive" 0123456789abcdef0123456789abcdef01234567
    SUTURE_ARCHIVE_CACHE=$scratch/other-archive run 1 "size: another build's library: --verify-checks fails" \
        "$coverage" --verify-checks --patchsets "$scratch/size/true" --build-cache "$scratch/no-cache" \
        --output-dir "$scratch/size/out"
    grep -qF "FALSE $distro $version CVE-2026-35189: size_overflow_needs_32bit libcrypto.so.3 fixture_global ×3 (libcrypto.so.3 in libssl3 $version has build ID 0123456789abcdef0123456789abcdef01234567, the index says $crypto_id)" \
        <<<"$errors" && pass "size: it names both build IDs" || { fail_check "size: unclear error"; printf '%s\n' "$errors"; }

    # No package at hand and no --verify-checks (no network): unverified.
    SUTURE_ARCHIVE_CACHE=$scratch/empty-archive run 0 "size: no cached package, no --verify-checks" \
        "$coverage" --patchsets "$scratch/size/true" --build-cache "$scratch/no-cache" --output-dir "$scratch/size/out"
    grep -qF "UNVERIFIED $distro $version CVE-2026-35189: size_overflow_needs_32bit libcrypto.so.3 fixture_global ×3 (libssl3 $version is not in the archive cache $scratch/empty-archive (--verify-checks fetches it))" \
        <<<"$errors" && pass "size: listed as unverified, with the reason" || { fail_check "size: no UNVERIFIED line"; printf '%s\n' "$errors"; }
else
    fail_check "cannot build the fixture package (cc, dpkg-deb)"
fi
classify "$scratch/size-bad" CVE-2026-35189 '{"kind": "size_overflow_needs_32bit", "library": "libcrypto.so.3", "function": "f", "multiplier": "3"}'
run 1 "size: a multiplier that is not an integer" "$coverage" --patchsets "$scratch/size-bad" --output-dir "$scratch/size/out"
grep -qF "check 1 (size_overflow_needs_32bit) needs 'multiplier', an integer of at least 2" <<<"$errors" &&
    pass "size: it says what multiplier must be" || { fail_check "size: unclear error"; printf '%s\n' "$errors"; }

# The committed classification of CVE-2026-31789 on 3.0.17, against the real
# package when the archive cache has it (scripts and tests that ran against
# Debian 12 fetched it).
real_deb=$(ls "${SUTURE_ARCHIVE_CACHE:-/var/cache/suture-archive}"/apt/debian-12/debs/libssl3_3.0.17-1~deb12u2_amd64.deb 2>/dev/null)
if [ -n "$real_deb" ]; then
    mkdir -p "$scratch/real-size/debian-12/3.0.17-1~deb12u2"
    cp -r "$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.17-1~deb12u2/CVE-2026-31789" "$scratch/real-size/debian-12/3.0.17-1~deb12u2/"
    run 0 "the committed CVE-2026-31789 classification: --verify-checks" "$coverage" --verify-checks \
        --patchsets "$scratch/real-size" --build-cache "$scratch/no-cache" --output-dir "$scratch/real-size-out"
    check_eq "its checks that hold" 2 "$(grep -c '^coverage: true debian-12 3.0.17-1~deb12u2 CVE-2026-31789: size_overflow_needs_32bit' <<<"$errors")"
else
    echo "NOTE: no libssl3 3.0.17-1~deb12u2 package in the archive cache: CVE-2026-31789's classification was not verified here"
fi

# --- source_has / source_lacks: the rebuild's tree, else the source package --
# source_set NAME ARCHIVE_CACHE BUILD_CACHE EXPECTED_FALSE CHECK_JSON=WORD...:
# each check in its own classification; WORD (true, FALSE, UNVERIFIED) is
# what --verify-checks must call it; exit 1 if any is FALSE.
source_check() { # KIND PATH FUNCTION TEXT
    jq -nc --arg k "$1" --arg p "$2" --arg f "$3" --arg t "$4" '{kind: $k, path: $p, function: $f, text: $t}'
}
source_set() {
    local name=$1 archive=$2 cache=$3 falses=$4 set=$scratch/source-$1 i=0 pair check word subject
    shift 4
    for pair in "$@"; do
        classify "$set" "${cves[$i]}" "${pair%=*}"
        i=$((i + 1))
    done
    SUTURE_ARCHIVE_CACHE=$archive run $([ "$falses" = 0 ] && echo 0 || echo 1) "$name: --verify-checks" \
        "$coverage" --verify-checks --patchsets "$set" --build-cache "$cache" --build-root "$fixture/root" \
        --output-dir "$set-out"
    i=0
    for pair in "$@"; do
        check=${pair%=*} word=${pair##*=}
        subject="$(jq -r '.kind + " " + .path + " " + .function + ": " + (.text | gsub("\\s+"; " "))' <<<"$check")"
        grep -qF "coverage: $word $distro $version ${cves[$i]}: $subject" <<<"$errors" &&
            pass "$name: $word $subject" || { fail_check "$name: not $word: $subject"; printf '%s\n' "$errors"; }
        i=$((i + 1))
    done
    [ "$falses" = 0 ] || { grep -q "^coverage: $falses classification checks are false" <<<"$errors" &&
        pass "$name: $falses checks false" || fail_check "$name: the false checks are not counted"; }
}
echo "--- source_has and source_lacks on the fixture rebuild's tree"
# Only the named function's definition counts: linked.c has "return 1;"
# nowhere, "fixture_local" in fixture_global's body; white space is free.
source_set rebuild "$scratch/empty-archive" "$fixture/cache" 3 \
    "$(source_check source_has crypto/linked.c fixture_global 'return  fixture_local(x)
        + 1;')=true" \
    "$(source_check source_lacks crypto/never.c fixture_never 'fixture_local')=true" \
    "$(source_check source_lacks crypto/linked.c fixture_global 'fixture_local')=FALSE" \
    "$(source_check source_has crypto/linked.c fixture_local 'return 1;')=FALSE" \
    "$(source_check source_has crypto/linked.c fixture_gone 'return')=FALSE"
grep -qF "crypto/linked.c in the rebuild's tree has no definition of fixture_gone" <<<"$errors" &&
    pass "a function with no definition is named" || fail_check "no 'has no definition' reason"

# No rebuild: the build's source package from the archive cache, unpacked
# by dpkg-source with its debian/patches applied (a 3.0 (quilt) fixture
# package: the text its patch adds is there, the unpatched line is not).
echo "--- source_has and source_lacks on a fixture source package"
if command -v dpkg-source >/dev/null; then
    pkg=$scratch/pkg/openssl-3.0.20 sources=$scratch/src-archive/apt/$distro/sources
    mkdir -p "$pkg/crypto" "$sources"
    printf '%s\n' 'int fixture_global(int x)' '{' '    return x + 1;' '}' > "$pkg/crypto/linked.c"
    tar -C "$scratch/pkg" -czf "$sources/openssl_3.0.20.orig.tar.gz" openssl-3.0.20
    mkdir -p "$pkg/debian/source" "$pkg/debian/patches"
    echo "3.0 (quilt)" > "$pkg/debian/source/format"
    printf '%s\n' 'Source: openssl' 'Maintainer: fixture <fixture@example.org>' '' 'Package: libssl3' \
        'Architecture: any' 'Description: fixture' > "$pkg/debian/control"
    printf '%s\n' "openssl ($version) bookworm; urgency=medium" '' '  * fixture' '' \
        ' -- fixture <fixture@example.org>  Thu, 01 Jan 2026 00:00:00 +0000' > "$pkg/debian/changelog"
    printf '%s\n' '--- a/crypto/linked.c' '+++ b/crypto/linked.c' '@@ -1,4 +1,5 @@' ' int fixture_global(int x)' \
        ' {' '+    if (x < 0) return 0; /* debian/patches */' '     return x + 1;' ' }' > "$pkg/debian/patches/fix.patch"
    echo fix.patch > "$pkg/debian/patches/series"
    (cd "$sources" && dpkg-source -b "$pkg" >/dev/null 2>&1) && [ -f "$sources/openssl_$version.dsc" ] ||
        fail_check "cannot build the fixture source package"
    source_set package "$scratch/src-archive" "$scratch/no-cache" 1 \
        "$(source_check source_has crypto/linked.c fixture_global 'if (x < 0) return 0;')=true" \
        "$(source_check source_lacks crypto/linked.c fixture_global 'return x + 2;')=true" \
        "$(source_check source_has crypto/gone.c fixture_global 'return')=FALSE"
    grep -qF "source openssl $version from the archive" <<<"$errors" &&
        pass "package: the checks name the source package as their tree" || fail_check "package: no origin named"
    # Neither a rebuild nor the package, and no --verify-checks: unverified.
    classify "$scratch/source-none" CVE-2026-35189 "$(source_check source_has crypto/linked.c fixture_global 'return')"
    SUTURE_ARCHIVE_CACHE=$scratch/empty-archive run 0 "no tree: without --verify-checks" "$coverage" \
        --patchsets "$scratch/source-none" --build-cache "$scratch/no-cache" --output-dir "$scratch/source-none-out"
    grep -qF "UNVERIFIED $distro $version CVE-2026-35189: source_has crypto/linked.c fixture_global: return (no verified rebuild, and source openssl $version is not in the archive cache $scratch/empty-archive (--verify-checks fetches it))" \
        <<<"$errors" && pass "no tree: listed as unverified, with the reason" || { fail_check "no tree: no UNVERIFIED line"; printf '%s\n' "$errors"; }
else
    fail_check "no dpkg-source: cannot build the fixture source package"
fi

# --- the real cached rebuild ------------------------------------------------
cache=/var/cache/suture-build
real_tree=/build/reproducible-path/openssl-3.0.20
if [ -f "$cache/$distro/openssl/$version/rebuild/verified" ] &&
    [ "$(cat "$real_tree/.suture-rebuild" 2>/dev/null)" = "$version" ]; then
    echo "--- the cached rebuild of $distro $version ($cache, $real_tree)"
    # crypto/armcap.c is ARM's capability probe: in the tree, not built on
    # amd64. cms_kek_cipher is a static (local) function of cms_kari.c.
    verify_set real "$cache" "" \
        '{"kind": "source_absent", "path": "crypto/ec/ecp_sm2p256.c"}' \
        '{"kind": "not_compiled", "path": "crypto/armcap.c"}' \
        '{"kind": "function_absent", "library": "libcrypto.so.3", "function": "ossl_ec_GFp_sm2p256_group_init"}' \
        -- \
        '{"kind": "source_absent", "path": "crypto/cms/cms_kari.c"}' \
        '{"kind": "not_compiled", "path": "crypto/cms/cms_kari.c"}' \
        '{"kind": "function_absent", "library": "libcrypto.so.3", "function": "cms_kek_cipher"}'
else
    echo "NOTE: no cached rebuild of $distro $version on this machine ($cache/$distro/openssl/$version," \
        "$real_tree): the checks were tested on the fixture rebuild only"
fi
finish
