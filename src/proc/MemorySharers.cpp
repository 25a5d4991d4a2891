#include "proc/MemorySharers.h"

#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <sstream>

#include "base/Files.h"
#include "proc/Process.h"
#include "proc/ProgramRun.h"

namespace suture {

namespace {

std::string task_dir(int tid) {
    return "/proc/" + std::to_string(tid);
}

// Fields 3 (state) and 4 (ppid) of /proc/TID/stat, counted from the last ')'
// since comm may hold both spaces and parentheses; nullopt when it is gone.
struct StatFields {
    char state = '?';
    int ppid = 0;
};
std::optional<StatFields> read_stat_fields(int tid) {
    auto text = read_file(task_dir(tid) + "/stat");
    if (!text) {
        return std::nullopt;
    }
    std::size_t close = text->rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream rest(text->substr(close + 1));
    StatFields fields;
    rest >> fields.state >> fields.ppid;
    return fields;
}

std::string read_wchan(int tid) {
    auto text = read_file(task_dir(tid) + "/wchan");
    return text ? *text : "";
}

// The children thread `tid` of `pid` created (/proc/PID/task/TID/children).
std::vector<int> children_of(int pid, int tid) {
    std::vector<int> children;
    auto text = read_file(task_dir(pid) + "/task/" + std::to_string(tid) + "/children");
    if (text) {
        std::istringstream list(*text);
        for (int child = 0; list >> child;) {
            children.push_back(child);
        }
    }
    return children;
}

// kcmp(2) KCMP_VM: true when `a` and `b` use the same mm. A task gone
// meanwhile (ESRCH) shares nothing; nor, as far as we can tell, does one we
// may not inspect (EPERM: kcmp needs PTRACE_MODE_READ on both, which root
// lacks for some, such as a sandbox's init). A process sharing the target's
// memory shares its dumpability too, so only other credentials (another user
// namespace) could hide one from us that way.
Result<bool> same_memory(int a, int b) {
    long result = ::syscall(SYS_kcmp, a, b, KCMP_VM, 0, 0);
    if (result == 0) {
        return true;
    }
    if (result > 0 || errno == ESRCH || errno == EPERM) {
        return false;
    }
    return fail_errno("pid " + std::to_string(a) + ": kcmp(KCMP_VM) with pid " + std::to_string(b),
                      errno);
}

// Whether some task of `pid` still has memory (a kernel thread has none, a
// process that exited neither).
bool has_memory(int pid) {
    ProcessSighting sighting = sight_process(pid);
    return sighting.kind == ProcessSighting::Kind::running &&
           (sighting.run.exe_inode != 0 || sighting.run.arg_start != 0);
}

// How `sharer` relates to `pid`: a child of one of its threads, its parent,
// or neither; and whether the creator waits in vfork() for the other.
MemorySharer classify(int pid, int sharer_pid, const std::vector<int>& tids, int ppid) {
    MemorySharer sharer{sharer_pid, MemorySharer::Relation::other, 0, false};
    for (int tid : tids) {
        std::vector<int> children = children_of(pid, tid);
        if (std::find(children.begin(), children.end(), sharer_pid) != children.end()) {
            sharer.relation = MemorySharer::Relation::child;
            sharer.creator_tid = tid;
            sharer.vfork_wait = waits_in_vfork(tid);
            return sharer;
        }
    }
    if (sharer_pid == ppid) {
        sharer.relation = MemorySharer::Relation::parent;
        auto parent_tids = list_thread_ids(ppid);
        for (int tid : parent_tids ? *parent_tids : std::vector<int>{}) {
            std::vector<int> children = children_of(ppid, tid);
            if (std::find(children.begin(), children.end(), pid) != children.end()) {
                sharer.vfork_wait = waits_in_vfork(tid);
            }
        }
    }
    return sharer;
}

// The candidates of a search: the parent and the threads' children, or
// every process but `pid` itself.
Result<std::vector<int>> candidates(int pid, SharerSearch search, const std::vector<int>& tids,
                                    int ppid) {
    std::vector<int> found;
    if (search == SharerSearch::every_process) {
        auto pids = list_process_ids();
        if (!pids) {
            return tl::unexpected(pids.error());
        }
        found = std::move(*pids);
    } else {
        found.push_back(ppid);
        for (int tid : tids) {
            std::vector<int> children = children_of(pid, tid);
            found.insert(found.end(), children.begin(), children.end());
        }
    }
    std::erase_if(found, [&](int candidate) { return candidate == pid || candidate <= 0; });
    return found;
}

}  // namespace

Result<std::vector<MemorySharer>> find_memory_sharers(int pid, SharerSearch search) {
    auto tids = list_thread_ids(pid);
    if (!tids) {
        return tl::unexpected(tids.error());
    }
    auto stat = read_stat_fields(pid);
    int ppid = stat ? stat->ppid : 0;
    auto pids = candidates(pid, search, *tids, ppid);
    if (!pids) {
        return tl::unexpected(pids.error());
    }
    std::vector<MemorySharer> sharers;
    for (int candidate : *pids) {
        auto same = same_memory(pid, candidate);
        if (!same) {
            return tl::unexpected(same.error());
        }
        // KCMP_VM compares the tasks' mm pointers, and a task without memory
        // (a kernel thread; a process that has exited) has a null one: such
        // "equal" memories are none. A target without memory has exited.
        if (*same && !has_memory(pid)) {
            return tl::unexpected(Error{
                ErrorCode::not_found, "pid " + std::to_string(pid) + ": no such process (it has exited)",
                ESRCH});
        }
        if (*same && has_memory(candidate)) {
            sharers.push_back(classify(pid, candidate, *tids, ppid));
        }
    }
    return sharers;
}

bool waits_in_vfork(int tid) {
    auto stat = read_stat_fields(tid);
    std::string wchan = read_wchan(tid);
    return stat && stat->state == 'D' &&
           (wchan == "kernel_clone" || wchan == "wait_for_vfork_done");
}

std::string describe_thread_wait(int tid) {
    auto stat = read_stat_fields(tid);
    std::string wchan = read_wchan(tid);
    std::string text = std::string("state ") + (stat ? stat->state : '?');
    return wchan.empty() || wchan == "0" ? text : text + ", wchan " + wchan;
}

std::string describe_sharer(int pid, const MemorySharer& sharer) {
    std::string subject = "pid " + std::to_string(pid);
    std::string other = "pid " + std::to_string(sharer.pid);
    std::string what;
    std::string advice = "try again when it has exec'ed or exited";
    switch (sharer.relation) {
        case MemorySharer::Relation::child:
            what = sharer.vfork_wait
                       ? other + ", a vfork() child that has not exec'ed yet (thread " +
                             std::to_string(sharer.creator_tid) + " waits in vfork() for it)"
                       : other + ", a child made with clone(CLONE_VM)";
            break;
        case MemorySharer::Relation::parent:
            what = sharer.vfork_wait
                       ? other + ", its parent, which waits in vfork() for " + subject +
                             " to exec or exit"
                       : other + ", its parent (" + subject + " was made with clone(CLONE_VM))";
            advice = sharer.vfork_wait ? "patch " + other + " once " + subject + " has exec'ed"
                                       : "try again when either has exec'ed or exited";
            break;
        case MemorySharer::Relation::other:
            what = other + ", another process made with clone(CLONE_VM)";
            break;
    }
    return subject + " shares its memory with " + what +
           ": not patched (a task suture does not stop could run the code being changed); " +
           advice;
}

}  // namespace suture
