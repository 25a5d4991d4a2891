#!/usr/bin/env bash
# A signed feed whose targets carry wrong-typed custom metadata
# (docs/feed-format.md, "Target names and custom metadata"), served over
# loopback HTTP: sutured meets it in an update and in its rescans and keeps
# running (it still answers on its bus), the one good target is still
# applied, and `suture feed list` names each refused target and exits 1
# (bad_format) instead of aborting.
#
# The bad targets are signed with the feed's own targets key, as a publisher
# whose tool wrote the wrong types would: suture-feed itself writes only
# well-typed custom metadata, so this test signs them with openssl.
#
# Usage (meson passes it): feed-bad-custom.sh SUTURED REPRODUCER_63076
source "$(dirname "$0")/lib.sh"
require_root "ptrace of the reproducer, and owning sutured's bus name"
: "${SUTURE_FEED:?}"
sutured=${1:?}
reproducer=${2:?}
python=/usr/bin/python3
[ -x "$python" ] || skip "needs $python for feed-server.py"
for tool in jq openssl xxd; do
    command -v "$tool" >/dev/null || skip "needs $tool"
done

patchsets=$SOURCE_ROOT/patchsets/openssl/debian-12/3.0.20-1~deb12u2
repo=$scratch/repo
keys=$scratch/keys

# feed ARGS...: suture-feed on the test's repository; a failure ends the test.
feed() {
    "$SUTURE_FEED" --repo "$repo" --keys "$keys" "$@" >>"$scratch/publisher.log" 2>&1 ||
        { cat "$scratch/publisher.log"; fail_check "suture-feed $*"; finish; }
}

# copy_patchset CVE NAME: a patchset directory whose file is CVE's patch
# under another name, so the feed lists one more target.
copy_patchset() {
    mkdir -p "$scratch/$2"
    cp "$patchsets/$1/$1.suture" "$scratch/$2/$2.suture"
    jq --arg output "$2.suture" '.output = $output' "$patchsets/$1/patchset.json" \
        >"$scratch/$2/patchset.json"
}

# resign_targets JQ-FILTER: the latest targets metadata, its signed part
# changed by the filter, as the next version signed with the targets key.
# Canonical bytes (sorted keys, no whitespace) are jq -cS for this ASCII-only
# metadata; libsodium's secret key is seed || public key, and openssl takes
# the seed in PKCS#8 (RFC 8410).
resign_targets() {
    local latest next key_file key_id signature
    latest=$(find "$repo" -maxdepth 1 -name '*.targets.json' -printf '%f\n' | sort -n | tail -n 1)
    latest=${latest%%.*}
    next=$((latest + 1))
    jq -cS --argjson version "$next" ".signed | .version = \$version | $1" \
        "$repo/$latest.targets.json" | tr -d '\n' >"$scratch/signed.json"
    key_file=$keys/targets-1.key
    key_id=$(jq -r .public "$key_file" | xxd -r -p | sha256sum | cut -c 1-64)
    echo "302e020100300506032b657004220420$(jq -r .secret "$key_file" | cut -c 1-64)" |
        xxd -r -p >"$scratch/targets-key.der"
    signature=$(openssl pkeyutl -sign -rawin -keyform DER -inkey "$scratch/targets-key.der" \
        -in "$scratch/signed.json" | xxd -p -c 64)
    rm -f "$scratch/targets-key.der"
    jq -n --slurpfile signed "$scratch/signed.json" --arg keyid "$key_id" --arg sig "$signature" \
        '{signatures: [{keyid: $keyid, sig: $sig}], signed: $signed[0]}' >"$repo/$next.targets.json"
}

# custom_of FILE FILTER: a jq filter changing the custom metadata of the
# target whose name ends in /FILE.
custom_of() {
    echo ".targets |= with_entries(if (.key | endswith(\"/$1\")) then .value.custom |= ($2) else . end)"
}

# --- a feed with one good target and seven with wrong types ------------------
feed init
copy_patchset CVE-2026-63072 cves-number
copy_patchset CVE-2026-63074 no-patch-id
copy_patchset CVE-2026-63072 build-id-number
copy_patchset CVE-2026-63074 published-not-a-date
copy_patchset CVE-2026-63072 supersedes-not-a-list
feed add "$patchsets/CVE-2026-63076" "$patchsets/CVE-2026-63072" "$patchsets/CVE-2026-63074" \
    "$scratch/cves-number" "$scratch/no-patch-id" "$scratch/build-id-number" \
    "$scratch/published-not-a-date" "$scratch/supersedes-not-a-list"
resign_targets "$(custom_of CVE-2026-63072.suture '.level = "1"') |
    $(custom_of CVE-2026-63074.suture '.cves = "CVE-2026-63074"') |
    $(custom_of cves-number.suture '.cves = [63072]') |
    $(custom_of no-patch-id.suture 'del(.patch_id)') |
    $(custom_of build-id-number.suture '.build_id = 7') |
    $(custom_of published-not-a-date.suture '.published = "last Tuesday"') |
    $(custom_of supersedes-not-a-list.suture '.supersedes = "CVE-2026-63076"')"
feed publish
refused_names="CVE-2026-63072.suture CVE-2026-63074.suture build-id-number.suture cves-number.suture no-patch-id.suture published-not-a-date.suture supersedes-not-a-list.suture"

"$python" "$SOURCE_ROOT/test/integration/feed-server.py" "$repo" 0 \
    >"$scratch/server.out" 2>"$scratch/server.log" &
started_pids+=($!)
wait_for_line "$scratch/server.out" "^port " || { cat "$scratch/server.log"; fail_check "feed-server.py did not start"; finish; }
port=$(awk '/^port / { print $2 }' "$scratch/server.out")
mkdir -p "$scratch/etc/remotes.d" "$scratch/etc/roots"
cp "$repo/1.root.json" "$scratch/etc/roots/bad.json"
cat >"$scratch/etc/remotes.d/bad.conf" <<EOF
[remote]
url=http://127.0.0.1:$port/
root=$scratch/etc/roots/bad.json
attempts=1
EOF

# --- sutured meets it --------------------------------------------------------
start_private_system_bus
start_sutured "$sutured" --rescan-seconds 1
daemon_answers() {
    busctl --address="$DBUS_SYSTEM_BUS_ADDRESS" get-property org.suture.Suture1 /org/suture/Suture1 \
        org.suture.Suture1 Version >/dev/null 2>&1 && kill -0 "$daemon_pid" 2>/dev/null &&
        echo answers || echo "does not answer"
}

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
start_program target "LD_LIBRARY_PATH=$scratch/archive/usr/lib/x86_64-linux-gnu" -- "$reproducer"
check_eq "before: the target" VULNERABLE "$(ask "$target" probe)"

unset SUTURE_STATE_DB SUTURE_FEED_CACHE
status=0
"$SUTURE" update --json >"$scratch/update.json" 2>"$scratch/update.err" || status=$?
check_eq "suture update through the daemon, over the bad feed" 0 "$status"
check_eq "sutured after the update" answers "$(daemon_answers)"
check_eq "the good target is applied" FIXED "$(ask "$target" probe)"
check_eq "no refused target is applied" CVE-2026-63076 \
    "$(sqlite3 "$scratch/state.db" "select group_concat(patch_id) from applications where pid = $target and state = 'active'" 2>/dev/null)"
check_eq "the update names each refused target among its problems" "$refused_names" \
    "$(jq -r '[.problems[] | capture("/(?<file>[^/: ]+\\.suture): custom: ").file] | sort | join(" ")' \
        "$scratch/update.json" 2>/dev/null)"

# The rescan (offline, every second) meets the refused targets again in
# the cache: revert the good patch and let it re-apply.
"$SUTURE" revert --pid "$target" >/dev/null || fail_check "revert through the daemon"
check_eq "reverted" VULNERABLE "$(ask "$target" probe)"
for _ in $(seq 50); do
    [ "$(ask "$target" probe)" = FIXED ] && break
    sleep 0.1
done
check_eq "a rescan re-applied the good target" FIXED "$(ask "$target" probe)"
# (sutured logs the apply after it has let the process go: wait for it.)
wait_for_line "$scratch/sutured.log" "rescan: pid $target .*CVE-2026-63076 applied" &&
    pass "sutured's log: the rescan applied it" || fail_check "no rescan in sutured's log"
check_eq "sutured after its rescans" answers "$(daemon_answers)"

# --- suture feed list ----------------------------------------------------------
list_args=(--config-dir "$scratch/etc" --cache-dir "$scratch/cache")
status=0
"$SUTURE" feed list "${list_args[@]}" >"$scratch/list.out" 2>"$scratch/list.err" || status=$?
check_eq "feed list: exit status (bad_format)" 1 "$status"
grep -q "^CVE-2026-63076 level 1" "$scratch/list.out" && pass "feed list shows the good target" ||
    fail_check "feed list does not show CVE-2026-63076: $(cat "$scratch/list.out")"
check_eq "feed list names each refused target, with its reason" \
    "CVE-2026-63072.suture:level CVE-2026-63074.suture:cves build-id-number.suture:build_id cves-number.suture:cves no-patch-id.suture:patch_id published-not-a-date.suture:published supersedes-not-a-list.suture:supersedes" \
    "$(sed -n 's|^refused .*/\([^/ ]*\.suture\): custom: "\([a-z_]*\)".*|\1:\2|p' "$scratch/list.out" | sort | xargs)"
status=0
"$SUTURE" feed list --json "${list_args[@]}" >"$scratch/list.json" 2>"$scratch/list-json.err" || status=$?
check_eq "feed list --json: exit status (bad_format)" 1 "$status"
check_eq "feed list --json: the good target" "CVE-2026-63076 true" \
    "$(jq -r '[.patchsets[] | "\(.custom.patch_id) \(.usable)"] | join(",")' "$scratch/list.json" 2>/dev/null)"
check_eq "feed list --json: the refused targets, all bad_format" "7 bad_format" \
    "$(jq -r '"\(.refused | length) \([.refused[].error.reason] | unique | join(","))"' "$scratch/list.json" 2>/dev/null)"

kill -TERM "$daemon_pid"
status=0
wait "$daemon_pid" 2>/dev/null || status=$?
check_eq "sutured exits 0 on SIGTERM" 0 "$status"
[ "$failures" = 0 ] || { echo "--- sutured.log"; tail -n 40 "$scratch/sutured.log"; }
finish
