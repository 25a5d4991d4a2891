#include "cli/StatusTable.h"

#include <unistd.h>

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

struct BuildGroup {
    const MappedLibrary* example = nullptr;
    std::vector<ProcessRef> processes;
    std::set<std::string> paths;
};

std::string describe_package(const MappedLibrary& library) {
    if (!library.package) {
        return "unknown build";
    }
    return library.package->distribution + " " + library.package->package + " " +
           library.package->version;
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

std::string count_of(std::size_t count, const char* singular, const char* plural) {
    return std::to_string(count) + " " + (count == 1 ? singular : plural);
}

}  // namespace

void print_status_table(std::ostream& out, const StatusReport& status, bool list_unreadable) {
    const ScanReport& report = status.scan;
    // Group by (soname, build ID): the unit a patch is made for.
    std::map<std::pair<std::string, std::string>, BuildGroup> groups;
    std::size_t processes_with_openssl = 0;
    for (const ProcessReport& process : report.processes) {
        processes_with_openssl += process.libraries.empty() ? 0 : 1;
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
        out << "  processes  " << group.processes.size() << ":\n";
        print_process_list(out, group.processes, "    ");
        std::vector<ProcessRef> stale;
        for (const ProcessRef& process : group.processes) {
            if (process.library->deleted || process.library->replaced) {
                stale.push_back(process);
            }
        }
        if (!stale.empty()) {
            out << "  ! " << stale.size()
                << " map a file deleted or replaced on disk (restart or patch needed):\n";
            print_process_list(out, stale, "    ");
        }
        out << "\n";
    }

    for (const auto& [pid, patches] : status.patches) {
        for (const AppliedPatch& patch : patches) {
            if (patch.state == PatchState::empty) {
                out << "pid " << pid << ": empty region at "
                    << hex_address(patch.marker.region_address)
                    << " left by an interrupted apply (suture revert removes it)\n";
                continue;
            }
            out << "patch " << patch.marker.patch_id << " level " << patch.marker.level
                << " in pid " << pid << ": " << patch_state_name(patch.state) << " ("
                << patch.jumps_in_place << "/" << patch.marker.functions.size()
                << " functions redirected, build " << patch.marker.target_build_id.substr(0, 12)
                << ")\n";
        }
    }

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
    for (const ProcessReport& process : report.processes) {
        for (const Error& error : process.errors) {
            out << "warning: " << error.message << "\n";
        }
        incomplete += process.errors.empty() ? 0 : 1;
    }
    if (list_unreadable) {
        for (const UnreadableProcess& process : report.unreadable) {
            out << "unreadable: " << process.error.message << "\n";
        }
    }

    out << "Examined " << count_of(report.processes_examined, "process", "processes") << ": "
        << processes_with_openssl << " map OpenSSL, "
        << count_of(groups.size(), "distinct library build", "distinct library builds");
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

}  // namespace suture
