#pragma once

#include "base/Error.h"

namespace suture {

// suture's exit codes, shared by every subcommand. Documented in `suture
// --help` and docs/operator-guide.md; scripts rely on them, so never renumber.
enum ExitCode : int {
    exit_ok = 0,                 // the command did everything it was asked
    exit_failure = 1,            // the command could not run (missing build index, I/O error …)
    exit_usage = 2,              // bad command line
    exit_partial = 3,            // status: done, but some processes or files could not be read
    exit_no_process = 4,         // no such process
    exit_permission = 5,         // permission denied (attach, /proc/PID/mem)
    exit_not_mapped = 6,         // the patch's library is not mapped by the process
    exit_build_id_mismatch = 7,  // another build of that library is mapped
    exit_fingerprint_mismatch = 8,  // a function's bytes differ from the patch's record
    exit_unsafe = 9,                // threads kept running code being replaced
    exit_target_died = 10,          // the process died during the operation
    exit_bad_patch = 11,            // the patch file is malformed or unsupported
    exit_conflict = 12,             // another patch or foreign bytes in the way
    exit_not_applied = 13,          // revert: the patch is not applied
    exit_feed_expired = 14,         // feed: metadata expired (frozen feed)
    exit_feed_rollback = 15,        // feed: older metadata than already trusted
    exit_feed_bad_signature = 16,   // feed: signatures below the role's threshold
    exit_feed_hash_mismatch = 17,   // feed: a file's length or hash differs from the signed one
    exit_feed_too_large = 18,       // feed: a download exceeded its size cap
    exit_feed_too_slow = 19,        // feed: a download was too slow
    exit_feed_unreachable = 20,     // feed: no remote could be reached
    exit_update_failures = 21,      // update: some processes could not be patched
};

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
        case ErrorCode::target_died:
            return exit_target_died;
        case ErrorCode::bad_format:
        case ErrorCode::unsupported:
            return exit_bad_patch;
        case ErrorCode::conflict:
            return exit_conflict;
        case ErrorCode::not_applied:
            return exit_not_applied;
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
        case ErrorCode::io:
        case ErrorCode::invalid_argument:
            return exit_failure;
    }
    return exit_failure;
}

}  // namespace suture
