// Exposure (issue 18): the advisory data read strictly, each process's CVEs
// assessed from its builds and active patches, the metrics and OpenVEX made
// from them, and unknown builds named from a dpkg database.
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ScratchDirectory.h"
#include "distro/DpkgDatabase.h"
#include "engine/Documents.h"
#include "engine/Exports.h"
#include "feed-client/PatchsetInfo.h"

using namespace suture;
using json = nlohmann::json;

namespace {

const char* const libssl_id = "aa0eeee44fa27da26d1a3c3b5e3fa7ae2628bc63";
const char* const libcrypto_id = "7d90f38412d00023e58392b03612a24b62fcaede";

json advisory_document() {
    return json::parse(R"({
      "format": "suture-advisories", "format_version": 1,
      "builds": [
        {"build_id": "aa0eeee44fa27da26d1a3c3b5e3fa7ae2628bc63", "soname": "libssl.so.3",
         "distribution": "debian-12", "package": "libssl3", "version": "3.0.20-1~deb12u2",
         "cves": [
           {"id": "CVE-2026-84782", "severity": "High", "status": "patched",
            "patch_id": "CVE-2026-84782", "fixed_in": "3.0.22-1~deb12u2"},
           {"id": "CVE-2026-42767", "severity": "Moderate", "status": "open"}]},
        {"build_id": "7d90f38412d00023e58392b03612a24b62fcaede", "soname": "libcrypto.so.3",
         "distribution": "debian-12", "package": "libssl3", "version": "3.0.20-1~deb12u2",
         "cves": [
           {"id": "CVE-2026-63076", "severity": "Moderate", "status": "patched",
            "patch_id": "CVE-2026-63076"},
           {"id": "CVE-2026-54875", "severity": "Low", "status": "not_affected",
            "reason": "not compiled on amd64"},
           {"id": "CVE-2026-42767", "severity": "Moderate", "status": "open"}]}]})");
}

MappedLibrary library(const std::string& soname, const std::string& build_id) {
    MappedLibrary mapped;
    mapped.soname = soname;
    mapped.build_id = build_id;
    mapped.path = "/usr/lib/x86_64-linux-gnu/" + soname;
    KnownBuild known;
    known.package = "libssl3";
    known.version = "3.0.20-1~deb12u2";
    known.distribution = "debian-12";
    known.architecture = "amd64";
    mapped.package = known;
    return mapped;
}

AppliedPatch active(const std::string& patch_id, const std::string& build_id) {
    AppliedPatch patch;
    patch.marker.patch_id = patch_id;
    patch.marker.target_build_id = build_id;
    patch.marker.level = 1;
    patch.state = PatchState::active;
    return patch;
}

StatusReport one_process(int pid, std::vector<AppliedPatch> patches) {
    StatusReport status;
    ProcessReport process;
    process.info.pid = pid;
    process.info.comm = "nginx";
    process.libraries = {library("libssl.so.3", libssl_id), library("libcrypto.so.3", libcrypto_id)};
    status.scan.processes.push_back(process);
    if (!patches.empty()) {
        status.patches[pid] = std::move(patches);
    }
    return status;
}

const CveExposure& cve_of(const Exposure& exposure, int pid, const std::string& id) {
    for (const CveExposure& cve : exposure.processes.at(pid).cves) {
        if (cve.id == id) {
            return cve;
        }
    }
    FAIL("no " << id);
    throw 0;
}

}  // namespace

TEST_CASE("advisory data is read strictly") {
    auto advisories = feed::parse_advisories(advisory_document(), "advisories.json");
    REQUIRE(advisories);
    CHECK(advisories->builds.size() == 2);
    CHECK(advisories->builds.at(libssl_id).cves.front().cve == "CVE-2026-42767");  // sorted

    json unknown_status = advisory_document();
    unknown_status["builds"][0]["cves"][0]["status"] = "fixed";
    auto refused = feed::parse_advisories(unknown_status, "advisories.json");
    REQUIRE_FALSE(refused);
    CHECK(refused.error().code == ErrorCode::bad_format);

    json patched_without_id = advisory_document();
    patched_without_id["builds"][0]["cves"][0].erase("patch_id");
    CHECK_FALSE(feed::parse_advisories(patched_without_id, "advisories.json"));

    json newer = advisory_document();
    newer["format_version"] = 2;
    CHECK_FALSE(feed::parse_advisories(newer, "advisories.json"));
    CHECK_FALSE(feed::parse_advisories_text("{", "advisories.json"));
}

TEST_CASE("an advisories target's custom metadata has only kind, channel and published") {
    json custom = {{"kind", "advisories"}, {"channel", "stable"}, {"published", "2026-12-01T18:00:00Z"}};
    auto info = feed::parse_patchset_info(custom, "advisories/openssl.json");
    REQUIRE(info);
    CHECK(info->kind == "advisories");
    CHECK(feed::patchset_info_to_json(*info) == custom);
    custom["kind"] = "firmware";
    CHECK_FALSE(feed::parse_patchset_info(custom, "advisories/openssl.json"));
}

TEST_CASE("a process is exposed until every CVE with a live patch has it active") {
    auto advisories = feed::parse_advisories(advisory_document(), "advisories.json");
    REQUIRE(advisories);
    // Without the open CVE: patches make the process fully patched.
    for (auto& [id, build] : advisories->builds) {
        std::erase_if(build.cves, [](const feed::Advisory& a) { return a.cve == "CVE-2026-42767"; });
    }
    StatusReport before = one_process(10, {});
    Exposure exposed = assess_exposure(before, &*advisories);
    CHECK(exposed.processes.at(10).verdict == ProcessVerdict::exposed);
    CHECK(cve_of(exposed, 10, "CVE-2026-84782").state == CveState::open);
    CHECK(cve_of(exposed, 10, "CVE-2026-54875").state == CveState::not_affected);
    CHECK(any_exposed(exposed));

    // A patch active for another build does not count.
    StatusReport wrong_build =
        one_process(10, {active("CVE-2026-84782", libcrypto_id), active("CVE-2026-63076", libcrypto_id)});
    CHECK(assess_exposure(wrong_build, &*advisories).processes.at(10).verdict == ProcessVerdict::exposed);

    StatusReport after =
        one_process(10, {active("CVE-2026-84782", libssl_id), active("CVE-2026-63076", libcrypto_id)});
    Exposure patched = assess_exposure(after, &*advisories);
    CHECK(patched.processes.at(10).verdict == ProcessVerdict::fully_patched);
    CHECK(patched.summary.patched_in_memory == 2);
    CHECK_FALSE(any_exposed(patched));
}

TEST_CASE("a CVE without a live patch needs a restart, listed once per process") {
    auto advisories = feed::parse_advisories(advisory_document(), "advisories.json");
    REQUIRE(advisories);
    StatusReport status =
        one_process(10, {active("CVE-2026-84782", libssl_id), active("CVE-2026-63076", libcrypto_id)});
    Exposure exposure = assess_exposure(status, &*advisories);
    CHECK(exposure.processes.at(10).verdict == ProcessVerdict::needs_restart);
    CHECK(cve_of(exposure, 10, "CVE-2026-42767").state == CveState::open_no_live_patch);
    CHECK(exposure.processes.at(10).cves.size() == 4);  // 42767 of both libraries once
    REQUIRE(exposure.summary.open_cves.count("CVE-2026-42767") == 1);
    CHECK_FALSE(exposure.summary.open_cves.at("CVE-2026-42767").live_patch_available);
}

TEST_CASE("without advisory data every process is unknown, none exposed") {
    Exposure exposure = assess_exposure(one_process(10, {}), nullptr);
    CHECK_FALSE(exposure.available);
    CHECK(exposure.processes.at(10).verdict == ProcessVerdict::unknown);
    CHECK_FALSE(any_exposed(exposure));
}

TEST_CASE("metrics follow the naming conventions, per-process series only when asked") {
    auto advisories = feed::parse_advisories(advisory_document(), "advisories.json");
    REQUIRE(advisories);
    StatusReport status = one_process(10, {});
    status.exposure = assess_exposure(status, &*advisories);
    MetricsFacts facts{.patches_applied = 3, .patches_failed = 1};
    std::string openmetrics = status_to_metrics(status, {.openmetrics = true, .facts = &facts});
    CHECK(openmetrics.find("suture_processes{state=\"needs_restart\"} 1\n") != std::string::npos);
    CHECK(openmetrics.find("# TYPE suture_patches_applied counter\n") != std::string::npos);
    CHECK(openmetrics.find("suture_patches_applied_total 3\n") != std::string::npos);
    CHECK(openmetrics.find("suture_open_cves{severity=\"high\"} 1\n") != std::string::npos);
    CHECK(openmetrics.ends_with("# EOF\n"));
    CHECK(openmetrics.find("pid=") == std::string::npos);
    std::string text = status_to_metrics(status, {.openmetrics = false, .per_process = true});
    CHECK(text.find("# TYPE suture_processes gauge\n") != std::string::npos);
    CHECK(text.find("suture_patches_applied") == std::string::npos);  // no facts: no counters
    CHECK(text.find("suture_process_open_cves{pid=\"10\",comm=\"nginx\"} 3\n") != std::string::npos);
    CHECK(text.find("# EOF") == std::string::npos);
}

TEST_CASE("OpenVEX: fixed, affected with an action, not_affected with a justification") {
    auto advisories = feed::parse_advisories(advisory_document(), "advisories.json");
    REQUIRE(advisories);
    StatusReport status =
        one_process(10, {active("CVE-2026-84782", libssl_id), active("CVE-2026-63076", libcrypto_id)});
    status.exposure = assess_exposure(status, &*advisories);
    json vex = status_to_openvex(status, "suture on test", 1795450000);
    CHECK(vex["@context"] == "https://openvex.dev/ns/v0.2.0");
    std::map<std::string, std::string> statuses;
    for (const json& statement : vex["statements"]) {
        std::string product = statement["products"][0]["@id"];
        std::string name = statement["vulnerability"]["name"];
        std::string build_id = product.substr(product.find("build_id=") + 9, 40);
        statuses[name + " " + build_id.substr(32)] = statement["status"];
        if (statement["status"] == "affected") {
            CHECK(statement.contains("action_statement"));
        }
        if (statement["status"] == "not_affected") {
            CHECK(statement["justification"] == "vulnerable_code_not_present");
        }
        CHECK(product.starts_with("pkg:deb/debian/libssl3@3.0.20-1~deb12u2?arch=amd64&build_id="));
        CHECK(product.ends_with("&distro=debian-12"));
        CHECK(statement["products"][0]["identifiers"]["purl"] ==
              "pkg:deb/debian/libssl3@3.0.20-1~deb12u2?arch=amd64&distro=debian-12");
    }
    CHECK(statuses.at("CVE-2026-84782 2628bc63") == "fixed");
    CHECK(statuses.at("CVE-2026-42767 2628bc63") == "affected");
    CHECK(statuses.at("CVE-2026-54875 62fcaede") == "not_affected");
    CHECK(statuses.at("CVE-2026-63076 62fcaede") == "fixed");
}

TEST_CASE("a CVE fixed by an active cumulative patch that supersedes its patch counts as patched") {
    // A cumulative CVE-2026-9076 on libcrypto carries CVE-2026-63076's fix
    // (feed custom "supersedes").
    auto advisories = feed::parse_advisories(advisory_document(), "advisories.json");
    REQUIRE(advisories);
    Supersessions supersessions{{{libcrypto_id, "CVE-2026-9076", 1}, {"CVE-2026-63076"}}};
    StatusReport status = one_process(
        10, {active("CVE-2026-84782", libssl_id), active("CVE-2026-9076", libcrypto_id)});
    status.exposure = assess_exposure(status, &*advisories, supersessions);
    const CveExposure& cve = cve_of(status.exposure, 10, "CVE-2026-63076");
    CHECK(cve.state == CveState::patched);
    CHECK(cve.patch_id == "CVE-2026-63076");
    CHECK(cve.patched_by == "CVE-2026-9076");
    CHECK(cve_of(status.exposure, 10, "CVE-2026-84782").patched_by.empty());  // its own patch
    CHECK(status.exposure.summary.patched_in_memory == 2);
    json vex = status_to_openvex(status, "suture on test", 1795450000);
    bool noted = false;
    for (const json& statement : vex["statements"]) {
        if (statement["vulnerability"]["name"] == "CVE-2026-63076") {
            CHECK(statement["status"] == "fixed");
            noted = statement["status_notes"].get<std::string>().find(
                        "CVE-2026-9076 (cumulative") != std::string::npos;
        }
    }
    CHECK(noted);

    // Without the supersession, or for another level or another build, it is open.
    CHECK(cve_of(assess_exposure(status, &*advisories), 10, "CVE-2026-63076").state ==
          CveState::open);
    Supersessions level_two{{{libcrypto_id, "CVE-2026-9076", 2}, {"CVE-2026-63076"}}};
    CHECK(cve_of(assess_exposure(status, &*advisories, level_two), 10, "CVE-2026-63076").state ==
          CveState::open);
    Supersessions other_build{{{libssl_id, "CVE-2026-9076", 1}, {"CVE-2026-63076"}}};
    CHECK(cve_of(assess_exposure(status, &*advisories, other_build), 10, "CVE-2026-63076").state ==
          CveState::open);
}

TEST_CASE("an unknown build is named from the root's own dpkg database") {
    ScratchDirectory root;
    std::filesystem::create_directories(root.file("var/lib/dpkg/info"));
    std::ofstream(root.file("var/lib/dpkg/info/libssl3:amd64.list"))
        << "/.\n/usr\n/usr/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu/libcrypto.so.3\n";
    std::ofstream(root.file("var/lib/dpkg/info/zlib1g:amd64.list")) << "/usr/lib/x86_64-linux-gnu/libz.so.1\n";
    std::ofstream(root.file("var/lib/dpkg/status"))
        << "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:1.2.13\n\n"
        << "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\n"
        << "Version: 3.0.19-1~deb12u2\n";
    auto owner = dpkg_owner(root.path(), "/usr/lib/x86_64-linux-gnu/libcrypto.so.3");
    REQUIRE(owner);
    CHECK(owner->package == "libssl3");
    CHECK(owner->architecture == "amd64");
    CHECK(owner->version == "3.0.19-1~deb12u2");
    // A prefix of a listed path is not that path; an unlisted file has no owner.
    CHECK_FALSE(dpkg_owner(root.path(), "/usr/lib/x86_64-linux-gnu/libcrypto.so"));
    CHECK_FALSE(dpkg_owner(root.path(), "/opt/libcrypto.so.3"));
    // No database at all.
    CHECK_FALSE(dpkg_owner(root.file("nothing"), "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"));
}
