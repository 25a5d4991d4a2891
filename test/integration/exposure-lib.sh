# shellcheck shell=bash
# Helpers of the exposure tests (status-exposure.sh, status-needrestart.sh,
# status-metrics-node-exporter.sh): a local signed feed with the shipped
# patchsets and advisory data made from coverage-shaped input.

# Debian's own Python, with the validators scripts/install-deps installs
# (python3-jsonschema, python3-prometheus-client), whatever python3 is first
# in PATH.
debian_python=/usr/bin/python3
"$debian_python" -c 'import jsonschema, prometheus_client' 2>/dev/null ||
    skip "needs python3-jsonschema and python3-prometheus-client (scripts/install-deps)"

# exposure_feed: the shipped patchsets published as the local feed
# (scripts/setup-local-feed) in $scratch, its remote configured.
exposure_feed() {
    export SUTURE_FEED_ROOT_DIR=$scratch/var
    export SUTURE_CONFIG_DIR=$scratch/etc
    export SUTURE_FEED_CACHE=$scratch/cache
    "$SOURCE_ROOT/scripts/setup-local-feed" "$(dirname "$(dirname "$SUTURE_FEED")")" \
        >"$scratch/setup.log" 2>&1 || { cat "$scratch/setup.log"; fail_check "setup-local-feed"; finish; }
}

# coverage_input FILE: the coverage data (patchsets/openssl/coverage.json, or
# until it exists the same shape derived from the patchsets' metadata).
coverage_input() {
    "$SOURCE_ROOT/distro-support/generate-advisories" --write-coverage "$1" -o "$scratch/unused.json"
}

# only_shipped_patches IN OUT: the coverage with, for debian-12 3.0.20, only
# the CVEs whose live patch is shipped (a built .suture): a build suture
# update can patch completely.
only_shipped_patches() {
    python3 - "$1" "$2" "$SOURCE_ROOT/patchsets/openssl" <<'PY'
import json, os, sys
coverage = json.load(open(sys.argv[1]))
for build in coverage["builds"]:
    if build["distribution"] == "debian-12" and build["version"] == "3.0.20-1~deb12u2":
        def shipped(cve):
            if cve["status"] != "patched":
                return False
            manifest = os.path.join(sys.argv[3], cve["patchset"], "patchset.json")
            output = json.load(open(manifest))["output"]
            return os.path.exists(os.path.join(os.path.dirname(manifest), output))
        build["cves"] = [c for c in build["cves"] if shipped(c)]
json.dump(coverage, open(sys.argv[2], "w"), indent=2)
PY
}

# with_open_cve IN OUT: the coverage, with for debian-12 3.0.20 at least one
# CVE that has no live patch: the coverage's own if it lists one, else
# CVE-2026-42767 (a later CVE of that build, fixed in 3.0.22-1~deb12u1,
# for which no live patch exists yet).
with_open_cve() {
    python3 - "$1" "$2" <<'PY'
import json, sys
coverage = json.load(open(sys.argv[1]))
for build in coverage["builds"]:
    if build["distribution"] == "debian-12" and build["version"] == "3.0.20-1~deb12u2":
        if not any(c["status"] in ("open", "not_live_patchable") for c in build["cves"]):
            build["cves"].append({"id": "CVE-2026-42767", "severity": "Moderate",
                                  "summary": "CRMF OSSL_CRMF_ENCRYPTEDVALUE_get1_encCert NULL dereference",
                                  "fixed_in": "3.0.22-1~deb12u1", "status": "open"})
json.dump(coverage, open(sys.argv[2], "w"), indent=2)
PY
}

# publish_advisories COVERAGE: advisory data generated from COVERAGE, signed
# into the local feed, published, and the feed refreshed.
publish_advisories() {
    local repo=$SUTURE_FEED_ROOT_DIR/feed keys=$SUTURE_FEED_ROOT_DIR/feed-keys
    "$SOURCE_ROOT/distro-support/generate-advisories" --coverage "$1" -o "$scratch/advisories.json" &&
        "$SUTURE_FEED" --repo "$repo" --keys "$keys" advisories "$scratch/advisories.json" >/dev/null &&
        "$SUTURE_FEED" --repo "$repo" --keys "$keys" publish >/dev/null &&
        "$SUTURE" feed refresh >/dev/null ||
        { fail_check "publishing the advisory data of $1"; finish; }
}

# validate_openvex FILE: against the schema written from the OpenVEX
# specification (test/fixtures/openvex).
validate_openvex() {
    "$debian_python" - "$SOURCE_ROOT/test/fixtures/openvex/openvex.schema.json" "$1" <<'PY'
import json, sys
import jsonschema
schema = json.load(open(sys.argv[1]))
document = json.load(open(sys.argv[2]))
errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(document), key=str)
for error in errors:
    print("openvex: %s: %s" % ("/".join(map(str, error.absolute_path)), error.message))
sys.exit(1 if errors else 0)
PY
}

# process_field JSON PID FILTER: a jq FILTER on one process of a status document.
process_field() {
    jq -r --argjson pid "$2" ".processes[] | select(.pid == \$pid) | $3" <<<"$1"
}

# check_openmetrics FILE: parsed by an OpenMetrics 1.0 parser (the Python
# prometheus_client's, strict: # EOF, counter and unit naming).
check_openmetrics() {
    "$debian_python" - "$1" <<'PY'
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
families = list(text_string_to_metric_families(open(sys.argv[1]).read()))
print("openmetrics: %d families parsed" % len(families))
PY
}

# status_to FILE EXPECTED_STATUS ARGS...: `suture status ARGS` into FILE,
# its exit status checked (27 when exposed: set -e must not end the test).
status_to() {
    local file=$1 expected=$2 status=0
    shift 2
    "$SUTURE" status "$@" >"$file" || status=$?
    check_eq "status $*: exit status" "$expected" "$status"
}
