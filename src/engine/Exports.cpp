#include "engine/Exports.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <tuple>
#include <set>

#include <nlohmann/json.hpp>

#include "base/Files.h"
#include "config.h"
#include "engine/Documents.h"

namespace suture {

namespace {

using json = nlohmann::json;

// A label value as the exposition formats quote it: backslash, double
// quote and newline escaped; bytes outside printable ASCII replaced, so a
// process's comm (any bytes) cannot break the file.
std::string label_value(const std::string& text) {
    std::string quoted;
    for (char c : text) {
        if (c == '\\' || c == '"') {
            quoted += '\\';
            quoted += c;
        } else if (c == '\n') {
            quoted += "\\n";
        } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
            quoted += '?';
        } else {
            quoted += c;
        }
    }
    return quoted;
}

// Lowercase severity for a label ("High" -> "high"; "" -> "unknown").
std::string severity_label(const std::string& severity) {
    std::string label;
    for (char c : severity) {
        label += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return label.empty() ? "unknown" : label;
}

// Writes metric families in either format.
class MetricsWriter {
  public:
    explicit MetricsWriter(bool openmetrics) : openmetrics_(openmetrics) {}

    // A family: `name` without _total for counters; `unit` "" or "seconds".
    void family(const std::string& name, const char* type, const std::string& help,
                const char* unit = "") {
        std::string exposed = !openmetrics_ && std::string(type) == "counter" ? name + "_total"
                                                                              : name;
        out_ += "# HELP " + exposed + " " + help + "\n";
        out_ += "# TYPE " + exposed + " " + type + "\n";
        if (openmetrics_ && *unit != '\0') {
            out_ += "# UNIT " + exposed + " " + unit + "\n";
        }
    }
    void sample(const std::string& name, const std::string& labels, std::int64_t value) {
        out_ += name + (labels.empty() ? "" : "{" + labels + "}") + " " + std::to_string(value) +
                "\n";
    }
    std::string finish() {
        if (openmetrics_) {
            out_ += "# EOF\n";
        }
        return out_;
    }

  private:
    bool openmetrics_;
    std::string out_;
};

// Step of status_to_metrics: processes by state, open CVEs by severity.
void exposure_metrics(const StatusReport& status, MetricsWriter& out) {
    const ExposureSummary& summary = status.exposure.summary;
    out.family("suture_advisory_data_available", "gauge",
               "1 if the feed's signed advisory data was found, else 0");
    out.sample("suture_advisory_data_available", "", status.exposure.available ? 1 : 0);
    out.family("suture_processes", "gauge",
               "Processes using OpenSSL by exposure state (fully_patched, exposed: a live patch "
               "is available, needs_restart: no live patch, unknown: build not in the advisory "
               "data)");
    for (auto [state, count] :
         std::initializer_list<std::pair<const char*, std::size_t>>{
             {"fully_patched", summary.fully_patched},
             {"exposed", summary.exposed},
             {"needs_restart", summary.needs_restart},
             {"unknown", summary.unknown}}) {
        out.sample("suture_processes", std::string("state=\"") + state + "\"",
                   static_cast<std::int64_t>(count));
    }
    std::map<std::string, std::int64_t> by_severity = {
        {"critical", 0}, {"high", 0}, {"moderate", 0}, {"low", 0}, {"unknown", 0}};
    for (const auto& [id, cve] : summary.open_cves) {
        ++by_severity[severity_label(cve.severity)];
    }
    out.family("suture_open_cves", "gauge",
               "Distinct CVEs open in at least one running process, by upstream severity");
    for (const auto& [severity, count] : by_severity) {
        out.sample("suture_open_cves", "severity=\"" + label_value(severity) + "\"", count);
    }
    out.family("suture_cves_patched_in_memory", "gauge",
               "(process, CVE) pairs fixed in memory by an active live patch");
    out.sample("suture_cves_patched_in_memory", "",
               static_cast<std::int64_t>(summary.patched_in_memory));
}

// Step of status_to_metrics: the history's counters and timestamps.
void history_metrics(const MetricsFacts& facts, MetricsWriter& out) {
    for (auto [name, help, value] :
         std::initializer_list<std::tuple<const char*, const char*, std::int64_t>>{
             {"suture_patches_applied", "Live patches applied (state database history)",
              facts.patches_applied},
             {"suture_patches_failed", "Live patch applies that failed", facts.patches_failed},
             {"suture_patches_reverted", "Live patches reverted", facts.patches_reverted},
             {"suture_patches_quarantined",
              "Live patches the health watch quarantined after a crash",
              facts.patches_quarantined}}) {
        out.family(name, "counter", help);
        out.sample(std::string(name) + "_total", "", value);
    }
    out.family("suture_last_update_timestamp_seconds", "gauge",
               "Unix time of the last suture update run (0: never)", "seconds");
    out.sample("suture_last_update_timestamp_seconds", "", facts.last_update);
    out.family("suture_feed_last_refresh_success_timestamp_seconds", "gauge",
               "Unix time of the last successful feed refresh (0: never)", "seconds");
    out.sample("suture_feed_last_refresh_success_timestamp_seconds", "",
               facts.last_feed_refresh_success);
}

// Step of status_to_metrics: one series per process, only when asked.
void per_process_metrics(const StatusReport& status, MetricsWriter& out) {
    out.family("suture_process_open_cves", "gauge", "Open CVEs per process");
    for (const ProcessReport& process : status.scan.processes) {
        auto found = status.exposure.processes.find(process.info.pid);
        if (found == status.exposure.processes.end()) {
            continue;
        }
        std::int64_t open = 0;
        for (const CveExposure& cve : found->second.cves) {
            open += cve.state == CveState::open || cve.state == CveState::open_no_live_patch;
        }
        out.sample("suture_process_open_cves",
                   "pid=\"" + std::to_string(process.info.pid) + "\",comm=\"" +
                       label_value(process.info.comm) + "\"",
                   open);
    }
}

// "pkg:deb/debian/libssl3@3.0.20-1~deb12u2?arch=amd64&distro=debian-12":
// the purl of a package build (https://github.com/package-url/purl-spec),
// the version percent-encoded where purl asks ("+" is %2B), the qualifiers
// in purl's canonical order (sorted by key); `build_id` one of them when
// not empty.
std::string package_purl(const std::string& package, const std::string& version,
                         const std::string& architecture, const std::string& distribution,
                         const std::string& build_id = "") {
    auto encode = [](const std::string& text) {
        std::string encoded;
        for (unsigned char c : text) {
            if (std::isalnum(c) || c == '.' || c == '-' || c == '_' || c == '~') {
                encoded += static_cast<char>(c);
            } else {
                static const char* hex = "0123456789ABCDEF";
                encoded += '%';
                encoded += hex[c >> 4];
                encoded += hex[c & 15];
            }
        }
        return encoded;
    };
    std::string purl = "pkg:deb/debian/" + encode(package) + "@" + encode(version);
    std::string qualifiers;
    for (const auto& [key, value] : std::map<std::string, std::string>{
             {"arch", architecture}, {"build_id", build_id}, {"distro", distribution}}) {
        if (!value.empty()) {
            qualifiers += (qualifiers.empty() ? "" : "&") + key + "=" + encode(value);
        }
    }
    return qualifiers.empty() ? purl : purl + "?" + qualifiers;
}

// One running build (a library file) and the processes that map it.
struct RunningBuild {
    const MappedLibrary* library = nullptr;
    std::vector<int> pids;
};

// The VEX statement for one (build, CVE), from each process's state.
json vex_statement(const RunningBuild& build, const feed::AdvisoryBuild& advisory_build,
                   const feed::Advisory& advisory, const StatusReport& status) {
    const MappedLibrary& library = *build.library;
    std::string architecture = library.package ? library.package->architecture : "";
    std::string purl = package_purl(advisory_build.package, advisory_build.version, architecture,
                                    advisory_build.distribution);
    json product = {{"@id", package_purl(advisory_build.package, advisory_build.version,
                                         architecture, advisory_build.distribution,
                                         library.build_id)},
                    {"identifiers", {{"purl", purl}}}};
    json statement = {{"vulnerability", {{"name", advisory.cve}}},
                      {"products", json::array({product})}};
    if (!advisory.summary.empty()) {
        statement["vulnerability"]["description"] = advisory.summary;
    }
    if (advisory.status == feed::AdvisoryStatus::not_affected) {
        statement["status"] = "not_affected";
        statement["justification"] = "vulnerable_code_not_present";
        statement["impact_statement"] = advisory.reason;
        return statement;
    }
    std::vector<int> unpatched;
    std::set<std::string> patched_by;  // cumulative patches that fixed it in some process
    for (int pid : build.pids) {
        auto found = status.exposure.processes.find(pid);
        bool patched = false;
        if (found != status.exposure.processes.end()) {
            for (const CveExposure& cve : found->second.cves) {
                bool fixed = cve.id == advisory.cve && cve.state == CveState::patched;
                patched = patched || fixed;
                if (fixed) {
                    patched_by.insert(cve.patched_by.empty() ? advisory.patch_id : cve.patched_by);
                }
            }
        }
        if (!patched) {
            unpatched.push_back(pid);
        }
    }
    std::string processes;
    for (int pid : unpatched) {
        processes += (processes.empty() ? "" : ", ") + std::to_string(pid);
    }
    if (unpatched.empty()) {
        statement["status"] = "fixed";
        std::string patches;
        for (const std::string& id : patched_by) {
            patches += (patches.empty() ? "" : " or ") + id;
        }
        bool cumulative = patched_by.size() != 1 || !patched_by.contains(advisory.patch_id);
        statement["status_notes"] =
            "live-patched in memory by suture patch " + patches +
            (cumulative ? " (cumulative: carries the fix of " + advisory.patch_id + ")" : "") +
            " in every process running this build (" + std::to_string(build.pids.size()) + ")";
    } else if (advisory.status == feed::AdvisoryStatus::patched) {
        statement["status"] = "affected";
        statement["action_statement"] = "live patch " + advisory.patch_id +
                                        " is available: run suture update (processes " +
                                        processes + ")";
    } else {
        statement["status"] = "affected";
        statement["action_statement"] =
            "no live patch: upgrade " + advisory_build.package +
            (advisory.fixed_in.empty() ? "" : " to " + advisory.fixed_in) +
            " and restart the processes running this build (" + processes + ")";
    }
    return statement;
}

std::string kernel_random_uuid() {
    auto uuid = read_file("/proc/sys/kernel/random/uuid");
    return uuid ? uuid->substr(0, uuid->find('\n')) : "00000000-0000-0000-0000-000000000000";
}

}  // namespace

MetricsFacts metrics_facts_from(const std::vector<StateDatabase::HistoryTotal>& totals) {
    MetricsFacts facts;
    for (const StateDatabase::HistoryTotal& total : totals) {
        bool ok = total.outcome == HistoryOutcome::ok;
        if (total.action == HistoryAction::apply && ok) {
            facts.patches_applied += total.count;
        } else if (total.action == HistoryAction::apply && total.outcome == HistoryOutcome::failed) {
            facts.patches_failed += total.count;
        } else if (total.action == HistoryAction::revert && ok) {
            facts.patches_reverted += total.count;
        } else if (total.action == HistoryAction::quarantine) {
            facts.patches_quarantined += total.count;
        } else if (total.action == HistoryAction::update) {
            facts.last_update = std::max(facts.last_update, total.last_at);
        } else if (total.action == HistoryAction::refresh && ok) {
            facts.last_feed_refresh_success =
                std::max(facts.last_feed_refresh_success, total.last_at);
        }
    }
    return facts;
}

std::string status_to_metrics(const StatusReport& status, const MetricsOptions& options) {
    MetricsWriter out(options.openmetrics);
    exposure_metrics(status, out);
    if (options.facts != nullptr) {
        history_metrics(*options.facts, out);
    }
    out.family("suture_feed_expiry_timestamp_seconds", "gauge",
               "Unix time the verified feed metadata expires (0: no feed)", "seconds");
    out.sample("suture_feed_expiry_timestamp_seconds", "", status.feed_expires);
    if (options.per_process) {
        per_process_metrics(status, out);
    }
    return out.finish();
}

json status_to_openvex(const StatusReport& status, const std::string& author, std::time_t now) {
    // 1. The running builds the advisory data describes, with their processes.
    std::map<std::string, RunningBuild> running;
    for (const ProcessReport& process : status.scan.processes) {
        for (const MappedLibrary& library : process.libraries) {
            RunningBuild& build = running[library.build_id];
            build.library = &library;
            build.pids.push_back(process.info.pid);
        }
    }
    // 2. One statement per (build, CVE).
    json statements = json::array();
    for (const auto& [build_id, build] : running) {
        (void)build_id;
        const feed::AdvisoryBuild* advisory_build = status.exposure.advisory_build(build_id);
        if (advisory_build == nullptr) {
            continue;
        }
        for (const feed::Advisory& advisory : advisory_build->cves) {
            statements.push_back(vex_statement(build, *advisory_build, advisory, status));
        }
    }
    // 3. The document.
    return {{"@context", "https://openvex.dev/ns/v0.2.0"},
            {"@id", "urn:uuid:" + kernel_random_uuid()},
            {"author", author},
            {"role", "host operator (generated)"},
            {"timestamp", format_utc_time(now)},
            {"version", 1},
            {"tooling", std::string("suture ") + SUTURE_VERSION},
            {"statements", std::move(statements)}};
}

}  // namespace suture
