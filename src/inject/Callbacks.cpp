#include "inject/Callbacks.h"

#include <algorithm>
#include <set>

#include "base/Files.h"
#include "elf/ElfFile.h"
#include "inject/HeldProcess.h"

namespace suture {

namespace {

// glibc's allocator entry points (and fork, which holds every arena lock
// while it forks), as libc.so.6 exports them; internal helpers such as
// _int_malloc run only below one of these, whose return address then shows.
constexpr const char* allocator_functions[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
    "aligned_alloc", "valloc", "pvalloc", "malloc_trim", "malloc_usable_size", "mallopt",
    "mallinfo", "mallinfo2", "malloc_stats", "malloc_info", "cfree", "__libc_malloc",
    "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign", "__libc_valloc",
    "__libc_pvalloc", "__libc_mallopt", "__libc_mallinfo", "fork", "_Fork", "__libc_fork",
};
// libc's side of the dynamic loader's lock.
constexpr const char* loader_functions[] = {
    "dl_iterate_phdr", "dlopen", "dlclose", "dlsym", "dlvsym", "dladdr", "dladdr1", "dlinfo",
    "dlmopen", "dlerror", "__libc_dlopen_mode", "__libc_dlsym", "__libc_dlclose",
};

bool is_libc(const LoadedObject& object) {
    return object.soname && object.soname->starts_with("libc.so");
}

bool is_loader(const LoadedObject& object) {
    return object.soname && object.soname->starts_with("ld-linux");
}

// The named functions of libc's .dynsym, one range per address.
Result<std::vector<CodeRange>> libc_lock_ranges(const LoadedObject& libc) {
    auto fd = open_read_only(libc.open_path);
    if (!fd) {
        return tl::unexpected(fd.error());
    }
    auto elf = ElfFile::open(*fd, libc.path);
    if (!elf) {
        return tl::unexpected(elf.error());
    }
    auto symbols = elf->dynamic_symbols();
    if (!symbols) {
        return tl::unexpected(symbols.error());
    }
    std::set<std::string> allocator(std::begin(allocator_functions), std::end(allocator_functions));
    std::set<std::string> loader(std::begin(loader_functions), std::end(loader_functions));
    std::set<std::uint64_t> seen;
    std::vector<CodeRange> ranges;
    for (const ElfFile::Symbol& symbol : *symbols) {
        bool holds_allocator = allocator.contains(symbol.name);
        if (!symbol.defined || symbol.size == 0 || (symbol.type != STT_FUNC) ||
            (!holds_allocator && !loader.contains(symbol.name)) ||
            !seen.insert(symbol.value).second) {
            continue;
        }
        RemoteAddress start = libc.base + symbol.value;
        ranges.push_back(CodeRange{start.raw(), (start + symbol.size).raw(),
                                   symbol.name + " (" + *libc.soname +
                                       (holds_allocator ? ": the allocator's lock)"
                                                        : ": the dynamic loader's lock)")});
    }
    return ranges;
}

}  // namespace

std::string callback_kind_name(CallbackKind kind) {
    switch (kind) {
        case CallbackKind::pre_apply:
            return "pre_apply";
        case CallbackKind::post_apply:
            return "post_apply";
        case CallbackKind::pre_revert:
            return "pre_revert";
        case CallbackKind::post_revert:
            return "post_revert";
    }
    return "unknown";
}

std::string callback_status_name(CallbackOutcome::Status status) {
    switch (status) {
        case CallbackOutcome::Status::ran:
            return "ran";
        case CallbackOutcome::Status::failed:
            return "failed";
        case CallbackOutcome::Status::skipped:
            return "skipped";
        case CallbackOutcome::Status::refused_busy:
            return "refused-busy";
        case CallbackOutcome::Status::timeout:
            return "timeout";
    }
    return "unknown";
}

MarkedCallbacks callback_offsets(const PatchFile& patch, const PatchLayout& layout) {
    auto offset_of = [&](const std::string& symbol) -> std::uint64_t {
        if (symbol.empty()) {
            return 0;
        }
        const RelocatableObject::Symbol* function = patch.object.find_defined(symbol);
        // parse_patch() checked that it is a loaded function.
        return function == nullptr ? 0 : layout.section_offsets[function->section] + function->value;
    };
    const PatchCallbacks& callbacks = patch.metadata.callbacks;
    return MarkedCallbacks{offset_of(callbacks.pre_apply), offset_of(callbacks.post_apply),
                           offset_of(callbacks.pre_revert), offset_of(callbacks.post_revert)};
}

std::uint64_t callback_offset(const MarkedCallbacks& callbacks, CallbackKind kind) {
    switch (kind) {
        case CallbackKind::pre_apply:
            return callbacks.pre_apply;
        case CallbackKind::post_apply:
            return callbacks.post_apply;
        case CallbackKind::pre_revert:
            return callbacks.pre_revert;
        case CallbackKind::post_revert:
            return callbacks.post_revert;
    }
    return 0;
}

Result<std::vector<CodeRange>> lock_holding_code(const std::vector<LoadedObject>& objects) {
    std::vector<CodeRange> ranges;
    for (const LoadedObject& object : objects) {
        if (is_loader(object)) {
            ranges.push_back(CodeRange{object.start.raw(), object.end.raw(),
                                       *object.soname + " (the dynamic loader's lock)"});
        } else if (is_libc(object)) {
            auto libc = libc_lock_ranges(object);
            if (!libc) {
                return tl::unexpected(libc.error());
            }
            std::move(libc->begin(), libc->end(), std::back_inserter(ranges));
        }
    }
    return ranges;
}

Result<std::vector<BlockingThread>> threads_holding_locks(
    HeldProcess& held, const std::vector<CodeRange>& lock_ranges) {
    return find_blocking_threads(held.stopped, lock_ranges, held.mappings, held.memory);
}

Result<CallbackOutcome> run_callback(HeldProcess& held, const RemoteSyscall& syscall,
                                     CallbackKind kind, RemoteAddress address,
                                     const std::vector<CodeRange>& avoid,
                                     const RemoteCallBounds& bounds) {
    CallbackOutcome outcome;
    outcome.kind = kind;
    auto called = call_in_target(held.stopped, held.memory, held.mappings, syscall, address, avoid,
                                 bounds);
    if (!called) {
        if (called.error().code == ErrorCode::unsupported) {
            // No thread could run it: nothing ran, nothing changed.
            outcome.status = CallbackOutcome::Status::skipped;
            outcome.reason = called.error().message;
            return outcome;
        }
        return tl::unexpected(called.error());
    }
    outcome.tid = called->tid;
    outcome.duration = called->duration;
    if (called->kind == RemoteCallResult::Kind::timed_out) {
        outcome.status = CallbackOutcome::Status::timeout;
        outcome.reason = "still running after " + std::to_string(bounds.hard_bound.count()) +
                         " ms: left to finish on thread " + std::to_string(called->tid) +
                         " once the process runs again";
        return outcome;
    }
    outcome.code = called->value;
    outcome.status =
        called->value == 0 ? CallbackOutcome::Status::ran : CallbackOutcome::Status::failed;
    outcome.over_deadline = called->duration > bounds.deadline;
    return outcome;
}

Error callback_refusal(const std::string& subject, const std::string& patch_id,
                       const CallbackOutcome& outcome, const std::string& what_stays) {
    std::string what =
        outcome.status == CallbackOutcome::Status::failed
            ? "returned " + std::to_string(outcome.code)
            : outcome.status == CallbackOutcome::Status::timeout ? "timed out (" + outcome.reason + ")"
                                                                 : "did not run (" + outcome.reason + ")";
    return Error{ErrorCode::refused,
                 subject + ": " + patch_id + ": " + callback_kind_name(outcome.kind) + " " + what +
                     ": refused; " + what_stays,
                 0};
}

}  // namespace suture
