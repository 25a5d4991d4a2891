#include "engine/NewProcesses.h"

#include <sys/stat.h>
#include <unistd.h>

#include "base/Files.h"
#include "base/Log.h"
#include "elf/ElfFile.h"
#include "inject/EntryGate.h"
#include "proc/Process.h"

namespace suture {

namespace {

bool is_openssl_soname(const std::string& name) {
    return name.starts_with("libssl.so") || name.starts_with("libcrypto.so");
}

}  // namespace

NewProcessPatcher::NewProcessPatcher(Engine& engine, UpdateOptions options)
    : engine_(engine), options_(std::move(options)) {}

Result<void> NewProcessPatcher::reload() {
    auto cached = list_feeds(resolve_feed_options(options_.feed));
    if (!cached) {
        return tl::unexpected(cached.error());
    }
    std::vector<std::string> problems;
    patches_ = load_usable_patches(*cached, problems);
    auto enabled = is_enabled(options_.state_database);
    enabled_ = !enabled || *enabled;
    return {};
}

// Does the process's executable name libssl or libcrypto in DT_NEEDED?
// Cached per file (device, inode, modification time).
bool NewProcessPatcher::needs_openssl(int pid) {
    std::string exe = "/proc/" + std::to_string(pid) + "/exe";
    struct stat info {};
    if (::stat(exe.c_str(), &info) != 0) {
        return false;
    }
    auto key = std::make_tuple(static_cast<std::uint64_t>(info.st_dev),
                               static_cast<std::uint64_t>(info.st_ino),
                               static_cast<std::int64_t>(info.st_mtime));
    if (auto known = executables_.find(key); known != executables_.end()) {
        return known->second;
    }
    bool needs = false;
    if (auto fd = open_read_only(exe)) {
        if (auto elf = ElfFile::open(*fd, exe)) {
            if (auto needed = elf->needed()) {
                for (const std::string& name : *needed) {
                    needs = needs || is_openssl_soname(name);
                }
            }
        }
    }
    executables_[key] = needs;
    return needs;
}

std::vector<UpdateAction> NewProcessPatcher::apply_matching(int pid, std::uint64_t start_time,
                                                            const std::string& comm,
                                                            StateDatabase* database) {
    std::vector<UpdateAction> actions;
    StatusReport status = engine_.status({pid});
    for (const ProcessReport& process : status.scan.processes) {
        for (const MappedLibrary& library : process.libraries) {
            auto found = patches_.find(library.build_id);
            if (found == patches_.end()) {
                continue;
            }
            for (const UsablePatch& candidate : found->second) {
                const PatchMetadata& metadata = candidate.patch.metadata;
                UpdateAction action{
                    {pid, start_time}, comm, metadata.patch_id, metadata.level, "", "", ""};
                apply_and_record(engine_, database, candidate, options_.inject, "", "new process",
                                 action);
                actions.push_back(std::move(action));
            }
        }
    }
    return actions;
}

std::optional<NewProcessOutcome> NewProcessPatcher::on_exec(int pid) {
    ++statistics_.execs;
    // Only cheap, cached checks before parking: the loader is racing us.
    if (pid == ::getpid() || !enabled_ || patches_.empty() || !needs_openssl(pid)) {
        return std::nullopt;
    }
    ++statistics_.candidates;
    auto parked = park_at_entry(pid);
    if (!parked) {
        log::debug("new process: " + parked.error().message);
        return std::nullopt;
    }
    if (!*parked) {
        log::debug("new process: pid " + std::to_string(pid) + " is past its loader already");
    }
    auto info = read_process_info(pid);
    if (!info) {
        if (*parked) {
            (void)release_parked(**parked);
        }
        return std::nullopt;  // gone already
    }
    // Exclusions are read fresh (the process waits parked meanwhile), so a
    // `suture exclude` takes effect for the very next process.
    auto database = StateDatabase::open(resolve_state_database(options_.state_database));
    if (database) {
        if (auto excluded = Exclusions::load(*database).reason(pid)) {
            log::debug("new process: pid " + std::to_string(pid) + ": " + *excluded);
            if (*parked) {
                (void)release_parked(**parked);
            }
            return std::nullopt;
        }
    }
    NewProcessOutcome outcome;
    outcome.pid = pid;
    if (*parked) {
        // 1. Wait until the loader is done and it spins at its entry.
        if (auto ready = wait_until_parked(**parked, std::chrono::seconds(5)); !ready) {
            log::warning("new process: " + ready.error().message);
            (void)release_parked(**parked);
            return std::nullopt;
        }
        outcome.parked = true;
        ++statistics_.parked;
    }
    // 2. Apply what matches the libraries it mapped.
    outcome.actions =
        apply_matching(pid, info->start_time, info->comm, database ? &*database : nullptr);
    bool any_applied = false;
    for (const UpdateAction& action : outcome.actions) {
        any_applied = any_applied || action.outcome == "applied";
    }
    // 3. Into main(), patched.
    if (*parked) {
        if (auto released = release_parked(**parked); !released) {
            log::error("new process: cannot release pid " + std::to_string(pid) + ": " +
                       released.error().message);
        }
    }
    if (any_applied) {
        ++(outcome.parked ? statistics_.patched_before_main : statistics_.patched_late);
    }
    return outcome;
}

}  // namespace suture
