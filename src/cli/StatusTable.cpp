#include "cli/StatusTable.h"

#include <unistd.h>

#include <algorithm>
#include <map>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "base/Files.h"
#include "engine/Engine.h"

namespace suture {

namespace {

struct ProcessRef {
    int pid;
    std::string comm;
    const MappedLibrary* library;
    bool other_mount_namespace;
};

// Processes of one build that read the same: the same verdict, open CVEs
// and patches (so a thousand nginx workers are one line, not a thousand).
struct ProcessGroup {
    std::string headline;               // "fully patched", "exposed: …"
    std::vector<std::string> patches;   // "CVE-2026-84782 level 1 active (5/5 functions)"
    std::vector<ProcessRef> processes;
};

struct BuildGroup {
    const MappedLibrary* example = nullptr;
    std::vector<ProcessRef> processes;
    std::set<std::string> paths;
};

std::string describe_package(const MappedLibrary& library) {
    if (library.package) {
        return library.package->distribution + " " + library.package->package + " " +
               library.package->version;
    }
    if (library.installed) {
        return library.installed->package + " " + library.installed->version +
               " (from the dpkg database; not in the archive index)";
    }
    return "unknown build";
}

std::string count_of(std::size_t count, const char* singular, const char* plural) {
    return std::to_string(count) + " " + (count == 1 ? singular : plural);
}

// "1201 nginx, 1202 nginx, …" wrapped at `width` columns with `indent`.
void print_process_list(std::ostream& out, const std::vector<ProcessRef>& processes,
                        const std::string& indent, std::size_t width = 100) {
    std::size_t column = indent.size();
    out << indent;
    for (std::size_t i = 0; i < processes.size(); ++i) {
        std::string item = std::to_string(processes[i].pid) + " " + processes[i].comm;
        if (processes[i].other_mount_namespace) {
            item += " [container]";
        }
        if (i + 1 < processes.size()) {
            item += ",";
        }
        if (column + item.size() + 1 > width && column > indent.size()) {
            out << "\n" << indent;
            column = indent.size();
        } else if (i > 0) {
            out << " ";
            ++column;
        }
        out << item;
        column += item.size();
    }
    out << "\n";
}

// Upstream severities, worst first; unknown ones last.
int severity_rank(const std::string& severity) {
    for (int rank = 0; const char* name : {"Critical", "High", "Moderate", "Medium", "Low"}) {
        if (severity == name) {
            return rank;
        }
        ++rank;
    }
    return 9;
}

// "CVE-2026-84782 (High), CVE-2026-63072 (Moderate)": worst first.
std::string cve_list(std::vector<std::pair<std::string, std::string>> cves) {
    std::stable_sort(cves.begin(), cves.end(), [](const auto& a, const auto& b) {
        return severity_rank(a.second) < severity_rank(b.second);
    });
    std::string text;
    for (const auto& [id, severity] : cves) {
        text += (text.empty() ? "" : ", ") + id + (severity.empty() ? "" : " (" + severity + ")");
    }
    return text;
}

// The headline: how many processes use OpenSSL and, by verdict, what to do.
void print_headline(std::ostream& out, const StatusReport& status) {
    const Exposure& exposure = status.exposure;
    const ExposureSummary& summary = exposure.summary;
    out << count_of(summary.processes, "process uses", "processes use") << " OpenSSL";
    if (!exposure.available) {
        out << "; no advisory data (a feed with advisory data tells which CVEs they are open "
               "to: docs/operator-guide.md, \"Exposure\")\n";
        return;
    }
    std::vector<std::pair<std::string, std::string>> with_patch;
    std::vector<std::pair<std::string, std::string>> without_patch;
    for (const auto& [id, cve] : summary.open_cves) {
        (cve.live_patch_available ? with_patch : without_patch).emplace_back(id, cve.severity);
    }
    std::vector<std::string> parts;
    if (summary.fully_patched > 0) {
        parts.push_back(std::to_string(summary.fully_patched) + " fully patched");
    }
    if (summary.exposed > 0) {
        parts.push_back(std::to_string(summary.exposed) + " exposed to " + cve_list(with_patch) +
                        ", live patch available: run suture update");
    }
    if (summary.needs_restart > 0) {
        parts.push_back(std::to_string(summary.needs_restart) + " " +
                        (summary.needs_restart == 1 ? "needs" : "need") +
                        " a restart: no live patch for " + cve_list(without_patch));
    }
    if (summary.unknown > 0) {
        parts.push_back(std::to_string(summary.unknown) +
                        " unknown: build not in the advisory data");
    }
    for (std::size_t i = 0; i < parts.size(); ++i) {
        out << (i == 0 ? ": " : " · ") << parts[i];
    }
    out << "\n";
}

// What one process's exposure says, in a line ("exposed: CVE-… (High) open, …").
std::string process_headline(const ProcessExposure* exposure) {
    if (exposure == nullptr) {
        return "no advisory data";
    }
    std::vector<std::pair<std::string, std::string>> open;
    std::vector<std::pair<std::string, std::string>> no_patch;
    std::size_t patched = 0;
    for (const CveExposure& cve : exposure->cves) {
        if (cve.state == CveState::open) {
            open.emplace_back(cve.id, cve.severity);
        } else if (cve.state == CveState::open_no_live_patch) {
            no_patch.emplace_back(cve.id, cve.severity);
        }
        patched += cve.state == CveState::patched ? 1 : 0;
    }
    std::string line;
    switch (exposure->verdict) {
        case ProcessVerdict::fully_patched:
            line = "fully patched";
            break;
        case ProcessVerdict::exposed:
            line = "exposed";
            break;
        case ProcessVerdict::needs_restart:
            line = "needs a restart";
            break;
        case ProcessVerdict::unknown:
            line = "no advisory data for its build";
            break;
    }
    if (patched > 0) {
        line += "; " + std::to_string(patched) + " CVE" + (patched == 1 ? "" : "s") +
                " patched in memory";
    }
    if (!open.empty()) {
        line += "; open, live patch available (run suture update): " + cve_list(open);
    }
    if (!no_patch.empty()) {
        line += "; open, no live patch (upgrade and restart): " + cve_list(no_patch);
    }
    return line;
}

std::string describe_patch(const AppliedPatch& patch) {
    if (patch.state == PatchState::empty) {
        return "empty region at " + hex_address(patch.marker.region_address) +
               " left by an interrupted apply (suture revert removes it)";
    }
    return "patch " + patch.marker.patch_id + " level " + std::to_string(patch.marker.level) +
           ": " + patch_state_name(patch.state) + " (" + std::to_string(patch.jumps_in_place) +
           "/" + std::to_string(patch.marker.functions.size()) + " functions redirected, build " +
           patch.marker.target_build_id.substr(0, 12) + ")";
}

// The CVEs of one build, as the advisory data lists them, in a line each.
void print_build_cves(std::ostream& out, const feed::AdvisoryBuild* build) {
    if (build == nullptr) {
        return;
    }
    std::map<std::string, std::vector<std::string>> by_status;
    for (const feed::Advisory& advisory : build->cves) {
        std::string item = advisory.cve + (advisory.severity.empty() ? "" : " (" + advisory.severity + ")");
        by_status[feed::advisory_status_name(advisory.status)].push_back(item);
    }
    out << "  CVEs       " << build->cves.size() << " known";
    for (const auto& [status, items] : by_status) {
        std::string label = status == "patched"              ? "live patch"
                            : status == "not_affected"       ? "not affected"
                            : status == "not_live_patchable" ? "no live patch (restart after upgrading)"
                                                             : "no live patch yet (restart after upgrading)";
        out << "\n    " << label << ": ";
        for (std::size_t i = 0; i < items.size(); ++i) {
            out << (i == 0 ? "" : ", ") << items[i];
        }
    }
    out << "\n";
}

// Step of print_status_table: the processes of one build, grouped.
void print_build_processes(std::ostream& out, const StatusReport& status, const BuildGroup& group) {
    std::map<std::pair<std::string, std::vector<std::string>>, ProcessGroup> groups;
    for (const ProcessRef& process : group.processes) {
        auto exposure = status.exposure.processes.find(process.pid);
        std::string headline = process_headline(
            exposure == status.exposure.processes.end() ? nullptr : &exposure->second);
        std::vector<std::string> patches;
        if (auto found = status.patches.find(process.pid); found != status.patches.end()) {
            for (const AppliedPatch& patch : found->second) {
                if (patch.state != PatchState::empty &&
                    patch.marker.target_build_id == process.library->build_id) {
                    patches.push_back(describe_patch(patch));
                }
            }
        }
        ProcessGroup& slot = groups[{headline, patches}];
        slot.headline = headline;
        slot.patches = patches;
        slot.processes.push_back(process);
    }
    out << "  processes  " << group.processes.size() << ":\n";
    for (const auto& [key, processes] : groups) {
        out << "    " << count_of(processes.processes.size(), "process", "processes") << ": "
            << processes.headline << "\n";
        for (const std::string& patch : processes.patches) {
            out << "      " << patch << "\n";
        }
        print_process_list(out, processes.processes, "      ");
    }
    std::vector<ProcessRef> stale;
    for (const ProcessRef& process : group.processes) {
        if (process.library->deleted || process.library->replaced) {
            stale.push_back(process);
        }
    }
    if (!stale.empty()) {
        out << "  ! " << stale.size()
            << " map a file deleted or replaced on disk (they run the old code):\n";
        print_process_list(out, stale, "    ");
    }
}

// Step of print_status_table: the regions print_build_processes did not show.
void print_other_regions(std::ostream& out, const StatusReport& status) {
    std::map<int, std::set<std::string>> mapped;
    for (const ProcessReport& process : status.scan.processes) {
        for (const MappedLibrary& library : process.libraries) {
            mapped[process.info.pid].insert(library.build_id);
        }
    }
    for (const auto& [pid, patches] : status.patches) {
        for (const AppliedPatch& patch : patches) {
            if (patch.state == PatchState::empty ||
                !mapped[pid].contains(patch.marker.target_build_id)) {
                out << "pid " << pid << ": " << describe_patch(patch) << "\n";
            }
        }
    }
}

// Step of print_status_table: gate pages and the closing counts.
void print_footer(std::ostream& out, const StatusReport& status, std::size_t builds,
                  bool list_unreadable) {
    const ScanReport& report = status.scan;
    for (const auto& [pid, pages] : status.gate_pages) {
        for (const GatePage& page : pages) {
            out << "pid " << pid << ": gate page at " << hex_address(page.address)
                << " of a strict apply (" << page.header.gates << " gates, " << page.arrived
                << " reached; "
                << (page.released || page.deadline_passed
                        ? "released: the next apply, revert or release unmaps it once no thread is "
                          "in it"
                        : "holding threads for suture pid " + std::to_string(page.header.owner_pid))
                << ")\n";
        }
    }
    std::size_t incomplete = 0;
    std::size_t processes_with_openssl = 0;
    for (const ProcessReport& process : report.processes) {
        for (const Error& error : process.errors) {
            out << "warning: " << error.message << "\n";
        }
        incomplete += process.errors.empty() ? 0 : 1;
        processes_with_openssl += process.libraries.empty() ? 0 : 1;
    }
    for (const std::string& problem : status.exposure.problems) {
        out << "warning: advisory data: " << problem << "\n";
    }
    if (list_unreadable) {
        for (const UnreadableProcess& process : report.unreadable) {
            out << "unreadable: " << process.error.message << "\n";
        }
    }
    out << "Examined " << count_of(report.processes_examined, "process", "processes") << ": "
        << processes_with_openssl << " map OpenSSL, "
        << count_of(builds, "distinct library build", "distinct library builds");
    if (report.processes_vanished > 0) {
        out << ", " << report.processes_vanished << " exited during the scan";
    }
    out << ".\n";
    if (!report.unreadable.empty() || incomplete > 0) {
        out << count_of(report.unreadable.size(), "process", "processes") << " could not be read, "
            << incomplete << " only partly";
        if (!list_unreadable && !report.unreadable.empty()) {
            out << " (--verbose lists them" << (::geteuid() == 0 ? "" : "; run as root to see all")
                << ")";
        }
        out << ".\n";
    }
}

}  // namespace

void print_status_table(std::ostream& out, const StatusReport& status, bool list_unreadable) {
    // 1. The headline: what an operator asks first.
    print_headline(out, status);
    out << "\n";
    // 2. Per build (soname, build ID: the unit a patch is made for), its
    //    CVEs, then its processes with their state and patches.
    std::map<std::pair<std::string, std::string>, BuildGroup> groups;
    for (const ProcessReport& process : status.scan.processes) {
        for (const MappedLibrary& library : process.libraries) {
            BuildGroup& group = groups[{library.soname, library.build_id}];
            group.example = &library;
            group.processes.push_back(
                {process.info.pid, process.info.comm, &library, process.other_mount_namespace});
            group.paths.insert(library.path);
        }
    }
    for (const auto& [key, group] : groups) {
        const MappedLibrary& library = *group.example;
        out << library.soname << "  " << library.version_text.value_or("(no version string)")
            << "  " << describe_package(library) << "\n";
        out << "  build ID   " << library.build_id << "\n";
        for (const std::string& path : group.paths) {
            out << "  path       " << path << "\n";
        }
        print_build_cves(out, status.exposure.advisory_build(library.build_id));
        print_build_processes(out, status, group);
        out << "\n";
    }
    // 3. Regions not under a build above: empty ones an interrupted apply
    //    left, patches for a build the process does not map.
    print_other_regions(out, status);
    // 4. Gate pages, warnings and counts.
    print_footer(out, status, groups.size(), list_unreadable);
}

}  // namespace suture
