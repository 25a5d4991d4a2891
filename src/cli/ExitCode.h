#pragma once

#include <string>

#include "base/Error.h"

namespace suture {

// suture's exit codes, shared by every subcommand; what each means is
// written once, in `exit_statuses` below, which `suture --help` prints
// (docs/operator-guide.md repeats it for readers). Scripts rely on them, so
// never renumber.
enum ExitCode : int {
    exit_ok = 0,
    exit_failure = 1,
    exit_usage = 2,
    exit_partial = 3,
    exit_no_process = 4,
    exit_permission = 5,
    exit_not_mapped = 6,
    exit_build_id_mismatch = 7,
    exit_fingerprint_mismatch = 8,
    exit_unsafe = 9,
    exit_target_died = 10,
    exit_bad_patch = 11,
    exit_conflict = 12,
    exit_not_applied = 13,
    exit_feed_expired = 14,
    exit_feed_rollback = 15,
    exit_feed_bad_signature = 16,
    exit_feed_hash_mismatch = 17,
    exit_feed_too_large = 18,
    exit_feed_too_slow = 19,
    exit_feed_unreachable = 20,
    exit_update_failures = 21,
    exit_busy = 22,
    exit_locked = 23,
    exit_records_lost = 24,
    exit_state_corrupt = 25,
    exit_callback_refused = 26,
    exit_exposed = 27,
};

struct ExitStatusMeaning {
    const char* heading;  // non-null: a heading line printed before this status
    ExitCode code;
    const char* meaning;
};

inline constexpr ExitStatusMeaning exit_statuses[] = {
    {nullptr, exit_ok, "success"},
    {nullptr, exit_failure,
     "failure: the command could not run (for example the build index is missing)"},
    {nullptr, exit_usage, "usage error: bad option or argument"},
    {nullptr, exit_partial,
     "status: done, but some processes or mapped files could not be read; they are listed\n"
     "(in --json under \"unreadable\" and per-process \"errors\")"},
    {nullptr, exit_exposed,
     "status: some process is open to a CVE (with or without a live patch: the headline and\n"
     "--json \"summary.exposure\" say which); takes precedence over 3"},
    {nullptr, exit_no_process, "no such process"},
    {nullptr, exit_permission, "permission denied"},
    {nullptr, exit_not_mapped, "library not mapped by the process"},
    {nullptr, exit_build_id_mismatch, "another build of the library"},
    {nullptr, exit_fingerprint_mismatch, "function bytes differ from the build the patch was made for"},
    {nullptr, exit_unsafe, "unsafe: threads kept running code being replaced (the blocking frames are listed)"},
    {nullptr, exit_target_died,
     "the process died during the operation: it exited, became a zombie or exec'ed (the\n"
     "message says which)"},
    {nullptr, exit_bad_patch, "bad or unsupported patch file"},
    {nullptr, exit_conflict, "conflict: another patch or foreign bytes"},
    {nullptr, exit_not_applied, "revert: the patch is not applied"},
    {nullptr, exit_busy,
     "busy: the process cannot be held now (another process shares its memory, a thread\n"
     "did not stop within 1 s, or another tracer holds it); nothing changed, try again later"},
    {nullptr, exit_callback_refused,
     "the patch's pre_apply or pre_revert callback refused (its code is in the message);\n"
     "nothing changed"},
    {"feed refresh (the first failing remote's reason; the cache stays as it was):",
     exit_feed_expired, "metadata expired (frozen feed)"},
    {nullptr, exit_feed_rollback, "rollback to older metadata"},
    {nullptr, exit_feed_bad_signature, "signatures below the threshold"},
    {nullptr, exit_feed_hash_mismatch, "length or hash differs from the signed metadata"},
    {nullptr, exit_feed_too_large, "a download exceeded its size cap"},
    {nullptr, exit_feed_too_slow, "a download was too slow"},
    {nullptr, exit_feed_unreachable, "the remote could not be reached"},
    {"update:", exit_ok, "every matching process is patched (or there was nothing to do)"},
    {nullptr, exit_update_failures, "some processes could not be patched (each is listed with its reason)"},
    {nullptr, exit_records_lost,
     "the state database failed to record some of what was done (a full disk, an I/O\n"
     "error): memory is right, the records are not; the lost ones are listed (in --json under\n"
     "\"lost_records\"); the next update with a working database adopts them"},
    {"state database and operation lock (docs/state.md):", exit_locked,
     "another suture operation is running (its pid is named) and did not finish within\n"
     "--wait; nothing changed"},
    {nullptr, exit_state_corrupt,
     "the state database is damaged: `suture state rebuild` rebuilds it from the patches in\n"
     "memory (the damaged file is kept aside)"},
};

// The "Exit status:" block of `suture --help`, from `exit_statuses`.
inline std::string exit_status_help() {
    std::string text = "Exit status:\n";
    for (const ExitStatusMeaning& status : exit_statuses) {
        if (status.heading != nullptr) {
            text += std::string(" ") + status.heading + "\n";
        }
        std::string number = std::to_string(static_cast<int>(status.code));
        std::string indent(6, ' ');
        text += std::string(4 - number.size(), ' ') + number + "  ";
        for (const char* c = status.meaning; *c != '\0'; ++c) {
            text += *c;
            if (*c == '\n') {
                text += indent;
            }
        }
        text += "\n";
    }
    return text;
}

// The exit status for an error of the injector or the patch parser.
inline int exit_code_for(ErrorCode code) {
    switch (code) {
        case ErrorCode::not_found:
            return exit_no_process;
        case ErrorCode::permission_denied:
            return exit_permission;
        case ErrorCode::library_not_mapped:
            return exit_not_mapped;
        case ErrorCode::build_id_mismatch:
            return exit_build_id_mismatch;
        case ErrorCode::fingerprint_mismatch:
            return exit_fingerprint_mismatch;
        case ErrorCode::unsafe:
            return exit_unsafe;
        case ErrorCode::busy:
            return exit_busy;
        case ErrorCode::target_died:
            return exit_target_died;
        case ErrorCode::bad_format:
        case ErrorCode::unsupported:
            return exit_bad_patch;
        case ErrorCode::conflict:
            return exit_conflict;
        case ErrorCode::not_applied:
            return exit_not_applied;
        case ErrorCode::refused:
            return exit_callback_refused;
        case ErrorCode::expired:
            return exit_feed_expired;
        case ErrorCode::rollback:
            return exit_feed_rollback;
        case ErrorCode::bad_signature:
            return exit_feed_bad_signature;
        case ErrorCode::hash_mismatch:
            return exit_feed_hash_mismatch;
        case ErrorCode::too_large:
            return exit_feed_too_large;
        case ErrorCode::too_slow:
            return exit_feed_too_slow;
        case ErrorCode::unreachable:
            return exit_feed_unreachable;
        case ErrorCode::locked:
            return exit_locked;
        case ErrorCode::corrupt:
            return exit_state_corrupt;
        case ErrorCode::io:
        case ErrorCode::invalid_argument:
            return exit_failure;
    }
    return exit_failure;
}

}  // namespace suture
