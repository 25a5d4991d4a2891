#include "base/UniqueFD.h"

#include <unistd.h>

namespace suture {

void UniqueFD::reset(int fd) {
    if (fd_ >= 0) {
        // close() may report EINTR, but the descriptor is released either way
        // on Linux, so retrying would risk closing someone else's fd.
        ::close(fd_);
    }
    fd_ = fd;
}

}  // namespace suture
