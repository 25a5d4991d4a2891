#include "base/Error.h"

#include <cstring>

namespace suture {

namespace {

ErrorCode code_for_errno(int errno_value) {
    switch (errno_value) {
        case ENOENT:
        case ESRCH:
            return ErrorCode::not_found;
        case EACCES:
        case EPERM:
            return ErrorCode::permission_denied;
        default:
            return ErrorCode::io;
    }
}

}  // namespace

tl::unexpected<Error> fail_errno(std::string subject, int errno_value) {
    subject += ": ";
    subject += std::strerror(errno_value);
    return tl::unexpected<Error>(
        Error{code_for_errno(errno_value), std::move(subject), errno_value});
}

Error with_context(Error error, const std::string& context) {
    error.message = context + ": " + error.message;
    return error;
}

}  // namespace suture
