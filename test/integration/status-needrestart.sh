#!/usr/bin/env bash
# needrestart and suture on one host (issue 18): two processes map the
# archive's libssl3 3.0.20-1~deb12u2, whose files are then deleted (as an
# upgrade does). One is live-patched for every CVE the signed advisory data
# knows; the other is not. The real `needrestart -b` (Debian's package) with
# suture's configuration snippet (data/needrestart/suture.conf.in) does not
# report the first for its deleted OpenSSL, and still reports the second.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/exposure-lib.sh"
require_root "ptrace for suture update; needrestart reads every process"
: "${SUTURE_FEED:?}" "${SUTURE_NEEDRESTART_CONF:?}"
command -v needrestart >/dev/null || skip "needs needrestart (scripts/install-deps installs it)"

exposure_feed
coverage_input "$scratch/coverage.json"
only_shipped_patches "$scratch/coverage.json" "$scratch/patchable.json"
publish_advisories "$scratch/patchable.json"

fetch_archive_package debian-12 libssl3 3.0.20-1~deb12u2 "$scratch/archive"
# needrestart ignores mappings under /tmp and /var/tmp (its own blacklist_mappings), so
# the libraries live elsewhere while the processes load them.
libraries=$(mktemp -d /var/lib/suture-needrestart-XXXXXX)
removed_paths+=("$libraries")
mkdir "$libraries/patched" "$libraries/unpatched"
for kind in patched unpatched; do
    cp "$scratch/archive/usr/lib/x86_64-linux-gnu"/lib{ssl,crypto}.so.3 "$libraries/$kind/"
done
hold patched_pid "$libraries/patched" libssl.so.3
# (update patches every matching process on the host: another test's
# process it cannot patch makes it exit 21; the check that counts is the
# first process's state below.)
"$SUTURE" update --json >"$scratch/update.json" 2>"$scratch/update.err" || true
hold unpatched_pid "$libraries/unpatched" libssl.so.3
rm -f "$libraries"/*/*
json=$(status_json "$patched_pid" "$unpatched_pid" || true)  # 27: the second is exposed
check_eq "the first process is fully patched" fully_patched "$(process_field "$json" "$patched_pid" .exposure)"
check_eq "the second is exposed" exposed "$(process_field "$json" "$unpatched_pid" .exposure)"
check_eq "the first maps a deleted libcrypto" true "$(library "$json" "$patched_pid" libcrypto.so.3 deleted)"

# needrestart's own configuration, then suture's snippet, as conf.d would.
cat /etc/needrestart/needrestart.conf "$SUTURE_NEEDRESTART_CONF" >"$scratch/needrestart.conf"
export SUTURE_NEEDRESTART_SUTURE=$SUTURE
run 0 "needrestart -b with suture's snippet" needrestart -b -v -r l -c "$scratch/needrestart.conf"
report=$output
verbose=$errors
grep "NEEDRESTART\|uses" <<<"$report
$verbose" | grep -E "#($patched_pid|$unpatched_pid)\b|NEEDRESTART" | head -20
grep -qE "#$unpatched_pid uses deleted .*/lib(ssl|crypto)\.so\.3" <<<"$verbose" &&
    pass "needrestart reports the unpatched process for its deleted OpenSSL" ||
    fail_check "needrestart does not report the unpatched process $unpatched_pid"
grep -qE "#$patched_pid uses deleted .*/lib(ssl|crypto)\.so\.3" <<<"$verbose" &&
    fail_check "needrestart reports the live-patched process $patched_pid for its deleted OpenSSL" ||
    pass "needrestart does not report the live-patched process for OpenSSL"

# Without the snippet needrestart reports both: the test above is not
# passing for some other reason.
run 0 "needrestart -b without suture's snippet" needrestart -b -v -r l -c /etc/needrestart/needrestart.conf
grep -qE "#$patched_pid uses deleted .*/lib(ssl|crypto)\.so\.3" <<<"$errors" &&
    pass "without the snippet the live-patched process is reported too" ||
    fail_check "without the snippet needrestart does not report $patched_pid either"
finish
