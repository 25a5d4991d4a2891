#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "base/Error.h"

namespace suture {

// A process outside a target's thread group whose tasks run in the target's
// memory (the same mm; kcmp(2) KCMP_VM): a vfork() child that has not
// exec'ed yet, a clone(CLONE_VM) child without CLONE_THREAD, the parent that
// made the target so, or any other process made with CLONE_VM.
struct MemorySharer {
    enum class Relation {
        child,   // created by `creator_tid`, a thread of the target
        parent,  // the target's parent
        other,   // neither: a CLONE_VM sibling, or one reparented
    };
    int pid = 0;
    Relation relation = Relation::other;
    int creator_tid = 0;  // child: the target's thread that created it (0 if not found)
    // child: its creator waits in vfork() for it; parent: the parent waits in
    // vfork() for the target. Read from /proc/TID/stat and wchan.
    bool vfork_wait = false;
};

// Where to look for sharers.
enum class SharerSearch {
    // The target's parent and every thread's children (/proc/PID/stat,
    // /proc/PID/task/TID/children): enough while every thread of the target
    // is stopped and no sharer existed before (HeldProcess.cpp says why).
    relatives,
    // Every process in /proc: the only complete search, since a process made
    // with CLONE_VM can be anyone's child once its creator exits.
    every_process,
};

// The processes sharing the memory of `pid`, found by `search`. A candidate
// that exits during the search is no sharer. Errors: not_found when `pid`
// itself is gone; a kcmp(2) that fails otherwise than ESRCH or EPERM
// (ENOSYS: a kernel without CONFIG_KCMP) is an error too, since no answer
// would be a guess.
Result<std::vector<MemorySharer>> find_memory_sharers(int pid, SharerSearch search);

// "pid 1234 shares its memory with pid 1240, a vfork() child ...": what
// the sharer is and what to do about it, for a refusal's message.
std::string describe_sharer(int pid, const MemorySharer& sharer);

// Whether thread `tid` waits in vfork() for its child to exec or exit: an
// uninterruptible sleep ('D') in kernel_clone / wait_for_vfork_done.
bool waits_in_vfork(int tid);

// What /proc says thread `tid` is doing ("state D, wchan kernel_clone"),
// for the message about a thread that did not stop.
std::string describe_thread_wait(int tid);

}  // namespace suture
