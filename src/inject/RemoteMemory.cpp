#include "inject/RemoteMemory.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "base/Files.h"

namespace suture {

Result<RemoteMemory> RemoteMemory::open(int pid, bool writable) {
    std::string path = "/proc/" + std::to_string(pid) + "/mem";
    int fd = ::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
        return fail_errno("pid " + std::to_string(pid) + ": open mem", errno);
    }
    return RemoteMemory(pid, UniqueFD(fd));
}

Result<std::vector<std::byte>> RemoteMemory::read(RemoteAddress address, std::size_t size) const {
    std::vector<std::byte> bytes(size);
    std::size_t done = 0;
    while (done < size) {
        ssize_t n = ::pread(fd_.get(), bytes.data() + done, size - done,
                            static_cast<off_t>((address + done).raw()));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return fail_errno("pid " + std::to_string(pid_) + ": read " + std::to_string(size) +
                                  " bytes at " + hex_address(address),
                              n == 0 ? EIO : errno);
        }
        done += static_cast<std::size_t>(n);
    }
    return bytes;
}

Result<void> RemoteMemory::write(RemoteAddress address, std::span<const std::byte> bytes) const {
    std::size_t done = 0;
    while (done < bytes.size()) {
        ssize_t n = ::pwrite(fd_.get(), bytes.data() + done, bytes.size() - done,
                             static_cast<off_t>((address + done).raw()));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return fail_errno("pid " + std::to_string(pid_) + ": write " +
                                  std::to_string(bytes.size()) + " bytes at " +
                                  hex_address(address),
                              n == 0 ? EIO : errno);
        }
        done += static_cast<std::size_t>(n);
    }
    return {};
}

}  // namespace suture
