#include "inject/HeldProcess.h"

#include <thread>
#include <tuple>

namespace suture {

namespace {

bool same_file_mappings(const std::vector<Mapping>& a, const std::vector<Mapping>& b) {
    auto file_mappings = [](const std::vector<Mapping>& mappings) {
        std::vector<std::tuple<std::uint64_t, std::uint64_t, std::uint64_t, std::string, bool>> out;
        for (const Mapping& mapping : mappings) {
            if (mapping.is_file() || mapping.path == "[vdso]") {
                out.emplace_back(mapping.start, mapping.end, mapping.inode, mapping.path,
                                 mapping.executable);
            }
        }
        return out;
    };
    return file_mappings(a) == file_mappings(b);
}

Result<Preparation> prepare_from(int pid, std::vector<Mapping> mappings) {
    Preparation preparation;
    auto objects = read_loaded_objects(pid, mappings);
    if (!objects) {
        return tl::unexpected(objects.error());
    }
    auto site = RemoteSyscall::find_site(*objects);
    if (site) {
        preparation.trampoline_site = *site;
    } else {
        preparation.no_trampoline_site = with_context(site.error(), "pid " + std::to_string(pid));
    }
    preparation.mappings = std::move(mappings);
    preparation.objects = std::move(*objects);
    return preparation;
}

// Re-reads the maps of the stopped process and brings `preparation` up to
// date with them; cheap when nothing changed.
Result<std::vector<Mapping>> refresh(int pid, Preparation& preparation) {
    auto mappings = read_process_maps(pid);
    if (!mappings) {
        return tl::unexpected(mappings.error());
    }
    if (!same_file_mappings(*mappings, preparation.mappings)) {
        auto fresh = prepare_from(pid, *mappings);
        if (!fresh) {
            return tl::unexpected(fresh.error());
        }
        if (auto site = require_trampoline_site(*fresh); !site) {
            return tl::unexpected(site.error());
        }
        fresh->generation = preparation.generation + 1;
        preparation = std::move(*fresh);
    }
    return mappings;
}

// A process that vanishes between two tries died during the operation; one
// that is not there at the first try never existed (as far as we know).
Error died_between_tries(Error error, int attempt) {
    if (attempt > 1 && error.code == ErrorCode::not_found) {
        error.code = ErrorCode::target_died;
        error.message += " (it exited during the operation)";
    }
    return error;
}

}  // namespace

std::string subject_of(int pid) {
    return "pid " + std::to_string(pid);
}

Result<Preparation> prepare_process(int pid, SiteCheck site_check) {
    auto mappings = read_process_maps(pid);
    if (!mappings) {
        return tl::unexpected(mappings.error());
    }
    auto preparation = prepare_from(pid, std::move(*mappings));
    if (preparation && site_check == SiteCheck::now) {
        if (auto site = require_trampoline_site(*preparation); !site) {
            return tl::unexpected(site.error());
        }
    }
    return preparation;
}

bool maps_changed_since(int pid, const Preparation& preparation) {
    auto mappings = read_process_maps(pid);
    return !mappings || !same_file_mappings(*mappings, preparation.mappings);
}

Result<void> require_trampoline_site(const Preparation& preparation) {
    if (preparation.no_trampoline_site) {
        return tl::unexpected(*preparation.no_trampoline_site);
    }
    return {};
}

Result<void> check_memory_not_shared(int pid, SharerSearch search) {
    auto sharers = find_memory_sharers(pid, search);
    if (!sharers) {
        return tl::unexpected(sharers.error());
    }
    if (!sharers->empty()) {
        return fail(ErrorCode::busy, describe_sharer(pid, sharers->front()));
    }
    return {};
}

Result<HeldProcess> hold_process(int pid, Preparation& preparation, int attempt) {
    auto stopped = StoppedProcess::stop(pid);
    if (!stopped) {
        return tl::unexpected(died_between_tries(stopped.error(), attempt));
    }
    // A process sharing the memory may have appeared since the check before
    // the stop (a vfork() or clone(CLONE_VM) in between). Only a task in this
    // memory can create one, and the full search found none but our threads;
    // those are stopped now, and a clone() either returned before the stop
    // (its child is in the creator's /proc/PID/task/TID/children, or in
    // another thread's if the creator has exited) or starts again after it.
    // So the relatives suffice here (docs/architecture.md, "Shared address
    // spaces"). A thread still inside vfork() never stops: stop() gives up on
    // it after its bound.
    if (auto alone = check_memory_not_shared(pid, SharerSearch::relatives); !alone) {
        return tl::unexpected(alone.error());
    }
    auto mappings = refresh(pid, preparation);
    if (!mappings) {
        return tl::unexpected(mappings.error());
    }
    auto memory = RemoteMemory::open(pid, true);
    if (!memory) {
        return tl::unexpected(memory.error());
    }
    return HeldProcess{std::move(*stopped), std::move(*mappings), std::move(*memory), {}, {},
                       attempt};
}

Result<bool> stacks_clear(HeldProcess& held, const std::vector<CodeRange>& ranges) {
    auto blocking =
        find_blocking_threads(held.stopped, ranges, held.mappings, held.memory, &held.stack_check);
    if (!blocking) {
        return tl::unexpected(blocking.error());
    }
    held.blocking = std::move(*blocking);
    return held.blocking.empty();
}

std::string describe_blocking(const std::vector<BlockingThread>& blocking) {
    std::string text;
    for (const BlockingThread& thread : blocking) {
        text += "\n  thread " + std::to_string(thread.tid) + ":";
        for (const std::string& frame : thread.frames) {
            text += "\n    " + frame;
        }
    }
    return text;
}

void sleep_backoff(std::chrono::milliseconds& backoff, const InjectOptions& options) {
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, options.max_backoff);
}

}  // namespace suture
