// Errors are values: every fallible function returns Result<T>, and only main()
// turns an Error into a message and an exit code.
#pragma once

#include <cerrno>
#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace suture {

// What went wrong, coarse enough for a caller to branch on and for the CLI to
// map onto an exit code. The message carries the detail.
enum class ErrorCode {
    io,                 // a read, open or stat failed (errno says why)
    not_found,          // the subject does not exist (also: a process that exited)
    permission_denied,  // EACCES / EPERM
    bad_format,         // input that does not parse: a malformed ELF, maps line, index file
    unsupported,        // well-formed input this version cannot handle
    invalid_argument,   // a caller passed something unusable
    // Refusals of the injector, each its own exit status in the CLI:
    library_not_mapped,    // the target does not map the patch's library
    build_id_mismatch,     // it maps that library, but another build of it
    fingerprint_mismatch,  // a function's bytes differ from what the patch was made for
    unsafe,                // threads kept running code being replaced (after retries)
    busy,                  // the process cannot be held now: another process shares its
                           // memory, a thread would not stop within the bound, or another
                           // tracer (a debugger) holds it; try again later
    target_died,           // the target exited or was killed during the operation
    conflict,              // memory the patch needs is not what it should be
    not_applied,           // revert: no such patch in the process
    refused,               // the patch's own pre_apply / pre_revert callback refused
                           // (a non-zero code, or it ran past its hard bound)
    // Refusals of the feed client (docs/feed-format.md), each its own exit
    // status in the CLI:
    expired,        // metadata past its expiry (a frozen feed)
    rollback,       // a version lower than one already trusted
    bad_signature,  // fewer valid signatures than the role's threshold
    hash_mismatch,  // a file's length or SHA-256 is not what signed metadata says
    too_large,      // a download exceeded its size cap (endless data)
    too_slow,       // a download fell below the minimum speed (slow retrieval)
    unreachable,    // the server could not be reached or kept failing
    // The state (docs/state.md), each its own exit status in the CLI:
    locked,   // another suture operation holds the host lock (HostLock.h)
    corrupt,  // the state database is damaged (`suture state rebuild` recovers it)
};

// `message` reads subject first: "pid 1234: maps: Permission denied".
struct Error {
    ErrorCode code;
    std::string message;
    int errno_value = 0;  // 0 when the error did not come from a system call
};

template <typename T>
using Result = tl::expected<T, Error>;

// The unexpected value for a Result, so `return fail(...)` reads naturally.
inline tl::unexpected<Error> fail(ErrorCode code, std::string message) {
    return tl::unexpected<Error>(Error{code, std::move(message), 0});
}

// An error from a failed system call: picks the code from errno and appends
// strerror, e.g. fail_errno("pid 12: open maps", ENOENT) gives
// "pid 12: open maps: No such file or directory".
tl::unexpected<Error> fail_errno(std::string subject, int errno_value);

// Prefixes the message of an existing error with more context
// ("libcrypto.so.3: " + "build id: note truncated").
Error with_context(Error error, const std::string& context);

}  // namespace suture
