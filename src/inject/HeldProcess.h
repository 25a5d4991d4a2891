#pragma once

#include <cerrno>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/Injector.h"
#include "inject/LoadedObjects.h"
#include "inject/RemoteMemory.h"
#include "inject/RemoteSyscall.h"
#include "inject/StackCheck.h"
#include "inject/StoppedProcess.h"
#include "proc/MemorySharers.h"
#include "proc/ProcessMaps.h"

namespace suture {

// "pid 1234", the subject of a message about a process.
std::string subject_of(int pid);

// What can be learnt about a process without stopping it: the slow part of
// an apply (opening every mapped ELF file, resolving imports, finding a
// syscall instruction). Inside the stop it is reused only if the maps have
// not changed meanwhile; otherwise it is done again there.
struct Preparation {
    std::vector<Mapping> mappings;
    std::vector<LoadedObject> objects;
    RemoteSyscall::Site trampoline_site;
    // Why there is no trampoline_site, when no loaded object has room.
    std::optional<Error> no_trampoline_site;
    int generation = 0;  // counts re-preparations inside stops
};

// Whether prepare_process() fails when no object has room for the
// trampoline, or leaves that to the caller (require_trampoline_site()): an
// apply first names a missing library, the truer reason for a process that
// runs another program (one just exec'ed has only itself and ld.so mapped).
enum class SiteCheck { now, by_caller };

// Reads the maps of `pid` and prepares from them, without a stop.
Result<Preparation> prepare_process(int pid, SiteCheck site_check = SiteCheck::now);

// Whether the file mappings of `pid` differ now from those `preparation`
// was made from (true when they cannot be read).
bool maps_changed_since(int pid, const Preparation& preparation);

// The error of a preparation without a trampoline site.
Result<void> require_trampoline_site(const Preparation& preparation);

// Refuses (`busy`, the message from describe_sharer()) when a process
// outside the thread group of `pid` shares its memory: a vfork() child that
// has not exec'ed yet, a clone(CLONE_VM) child or parent. Such a task runs
// the code being changed but is neither stopped nor stack-checked with the
// threads, and a revert would unmap code it may be running. Before any
// stop, with SharerSearch::every_process; in each stop again, with
// SharerSearch::relatives (hold_process() says why that suffices there).
Result<void> check_memory_not_shared(int pid, SharerSearch search);

// One try's hold on the process: every thread stopped, the maps read again
// (and the preparation brought up to date with them), its memory open; and
// what the try's stack check found.
struct HeldProcess {
    StoppedProcess stopped;
    std::vector<Mapping> mappings;
    RemoteMemory memory;
    StackCheckFigures stack_check;
    std::vector<BlockingThread> blocking;  // threads in the way, if any
    int attempt = 1;                       // which try this is
};

// Stops every thread of `pid` for try number `attempt` (a process gone at a
// later try died during the operation: target_died), checks again that no
// other process shares its memory, reads its maps again, redoing
// `preparation` if a file mapping changed, and opens its memory.
Result<HeldProcess> hold_process(int pid, Preparation& preparation, int attempt);

// The stack check of a try: true when no thread's PC or return address lies
// in `ranges`; otherwise the threads in the way are in `held.blocking`.
Result<bool> stacks_clear(HeldProcess& held, const std::vector<CodeRange>& ranges);

// The threads and frames, one line each, for a message.
std::string describe_blocking(const std::vector<BlockingThread>& blocking);

// True for the `busy` error of a stop in which a thread did not stop within
// the bound (StoppedProcess.h): a loaded machine can cause it, so it is
// tried again like a try whose threads were in the way.
inline bool stop_timed_out(const Error& error) {
    return error.code == ErrorCode::busy && error.errno_value == ETIMEDOUT;
}

// Sleeps `backoff`, then doubles it up to `options.max_backoff`.
void sleep_backoff(std::chrono::milliseconds& backoff, const InjectOptions& options);

// What a try that went through gave, and what its stop cost.
template <typename T>
struct DoneInStop {
    T value;
    int attempts = 0;
    std::size_t threads = 0;
    StackCheckFigures stack_check;
    std::chrono::nanoseconds stopped_for{};
};

// Runs `one_try(HeldProcess&)` with every thread of `pid` stopped: the
// "with the process stopped" of apply and revert. The try returns its value,
// or nullopt when its stack check found threads in the way; then the process
// runs for a backoff (doubling up to max_backoff) and the next try stops it
// again, up to `options.attempts` tries, after which it fails `unsafe`
// ("threads are <what_blocks>"), naming the last try's threads and frames in
// the message and in `blocking_out`. A stop in which a thread did not stop
// within the bound is tried again the same way, and ends `busy`. Every path
// out, errors included, resumes the process (HeldProcess's StoppedProcess
// detaches in its destructor) after the try's own objects are gone. `instead_of_backoff`
// (if given) runs after a blocked try has resumed the process; when it
// returns true (it waited for something of its own: gated threads reaching
// their gates, ReturnGates.h) the next try follows without a backoff.
template <typename T, typename OneTry>
Result<DoneInStop<T>> with_process_stopped(int pid, Preparation& preparation,
                                           const InjectOptions& options,
                                           const std::string& what_blocks,
                                           std::vector<BlockingThread>* blocking_out,
                                           const OneTry& one_try,
                                           const std::function<bool()>& instead_of_backoff = {}) {
    std::chrono::milliseconds backoff = options.first_backoff;
    for (int attempt = 1;; ++attempt) {
        auto held = hold_process(pid, preparation, attempt);
        if (!held && stop_timed_out(held.error()) && attempt < options.attempts) {
            sleep_backoff(backoff, options);  // every thread was released: try again
            continue;
        }
        if (!held) {
            return tl::unexpected(held.error());
        }
        Result<std::optional<T>> tried = one_try(*held);
        if (!tried) {
            return tl::unexpected(tried.error());
        }
        if (*tried) {
            DoneInStop<T> done{
                std::move(**tried), attempt, held->stopped.threads().size(), held->stack_check, {}};
            done.stopped_for = held->stopped.resume();
            return done;
        }
        held->stopped.resume();
        std::string frames = describe_blocking(held->blocking);
        if (blocking_out != nullptr) {
            *blocking_out = std::move(held->blocking);
        }
        if (attempt >= options.attempts) {
            return fail(ErrorCode::unsafe, subject_of(pid) + ": threads are " + what_blocks +
                                               " (gave up after " + std::to_string(attempt) +
                                               " tries):" + frames);
        }
        if (!instead_of_backoff || !instead_of_backoff()) {
            sleep_backoff(backoff, options);
        }
    }
}

}  // namespace suture
