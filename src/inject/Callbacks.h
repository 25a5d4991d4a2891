#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/Error.h"
#include "inject/LoadedObjects.h"
#include "inject/PatchImage.h"
#include "inject/RegionMarker.h"
#include "inject/RemoteCall.h"
#include "inject/StackCheck.h"
#include "patch/PatchFile.h"

namespace suture {

struct HeldProcess;

// A patch's callbacks (docs/architecture.md, "Callbacks"): `int fn(void)`
// functions of the patch object that suture runs inside the target, on one
// thread, while the others stay stopped:
//   pre_apply    after the region is mapped and filled, before the jumps;
//                non-zero refuses the apply, which then changes nothing
//   post_apply   after the jumps; a failure is reported, not undone
//   pre_revert   before the original bytes go back; non-zero refuses the
//                revert
//   post_revert  after, before the region is released; reported
// An upgrade runs the new level's pre_apply and post_apply only (the old
// level's revert callbacks do not run: the new level takes its state over,
// as with the kernel's atomic replace).
enum class CallbackKind { pre_apply, post_apply, pre_revert, post_revert };
std::string callback_kind_name(CallbackKind kind);

// What became of one callback, for the reports, --json and the state
// database.
struct CallbackOutcome {
    enum class Status {
        ran,            // returned 0
        failed,         // returned `code` (non-zero)
        skipped,        // declared, not run (the reason says why)
        refused_busy,   // a stopped thread held a lock it may need (after the retries)
        timeout,        // still running at the hard bound: left to finish alone
    };
    CallbackKind kind = CallbackKind::pre_apply;
    Status status = Status::skipped;
    int code = 0;
    int tid = 0;  // the thread that ran it
    std::chrono::nanoseconds duration{};
    bool over_deadline = false;  // returned, but after the deadline
    std::string reason;          // skipped / refused_busy / timeout: why
};
std::string callback_status_name(CallbackOutcome::Status status);

// Where the callbacks `patch` declares go in its region as `layout` lays
// it out (offsets into the region, for the marker; 0: none).
MarkedCallbacks callback_offsets(const PatchFile& patch, const PatchLayout& layout);

// The region offset of callback `kind` in `callbacks` (0: none).
std::uint64_t callback_offset(const MarkedCallbacks& callbacks, CallbackKind kind);

// The code a callback would wait for if a stopped thread were in it: every
// function of glibc's allocator (malloc, free, calloc, realloc, memalign,
// posix_memalign, aligned_alloc, valloc, pvalloc, malloc_trim, mallopt,
// malloc_stats, malloc_info, mallinfo ... resolved from libc's .dynsym, so
// their internal helpers are covered through the return address into them),
// fork (which holds the arena locks), dl_iterate_phdr and the dl* functions
// of libc, and the whole of the dynamic loader (ld.so), whose lock
// dlopen, dlsym, lazy binding and TLS allocation take.
Result<std::vector<CodeRange>> lock_holding_code(const std::vector<LoadedObject>& objects);

// The threads whose stack touches `lock_ranges` (any frame inside them);
// empty when a callback may run. Each thread's frames name the function.
Result<std::vector<BlockingThread>> threads_holding_locks(HeldProcess& held,
                                                          const std::vector<CodeRange>& lock_ranges);

// Runs the callback at `address` (see RemoteCall.h for the safety rules)
// and tells its outcome. Errors only for what ends the operation: the
// target died (target_died), or ptrace failed.
Result<CallbackOutcome> run_callback(HeldProcess& held, const RemoteSyscall& syscall,
                                     CallbackKind kind, RemoteAddress address,
                                     const std::vector<CodeRange>& avoid,
                                     const RemoteCallBounds& bounds);

// The refusal of an apply or revert by a callback outcome (failed or
// timeout): "pid 12: demo-cb: pre_apply returned 42 ...".
Error callback_refusal(const std::string& subject, const std::string& patch_id,
                       const CallbackOutcome& outcome, const std::string& what_stays);

}  // namespace suture
