#include "base/Files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

namespace suture {

Result<UniqueFD> open_read_only(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return fail_errno(path, errno);
    }
    return UniqueFD(fd);
}

Result<std::string> read_file(const std::string& path) {
    auto fd = open_read_only(path);
    if (!fd) {
        return tl::unexpected(fd.error());
    }
    std::string contents;
    char buffer[16384];
    for (;;) {
        ssize_t n = ::read(fd->get(), buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return fail_errno(path + ": read", errno);
        }
        if (n == 0) {
            break;
        }
        contents.append(buffer, static_cast<std::size_t>(n));
    }
    return contents;
}

std::string hex_address(std::uint64_t address) {
    char text[24];
    std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(address));
    return text;
}

std::string to_hex(const unsigned char* data, std::size_t size) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex;
    hex.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        hex += digits[data[i] >> 4];
        hex += digits[data[i] & 0xf];
    }
    return hex;
}

}  // namespace suture
