#include "base/Files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <memory>

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

// 1. Open without blocking (a FIFO with no writer would block the open);
// 2. only a regular file; 3. read until EOF or one byte past the cap.
Result<std::string> read_regular_file(const std::string& path, std::size_t max_size) {
    int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (raw < 0) {
        return fail_errno(path, errno);
    }
    UniqueFD fd(raw);
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) {
        return fail_errno(path + ": stat", errno);
    }
    if (!S_ISREG(info.st_mode)) {
        return fail(ErrorCode::bad_format, path + ": not a regular file");
    }
    std::string contents;
    char buffer[16384];
    while (contents.size() <= max_size) {
        ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return fail_errno(path + ": read", errno);
        }
        if (n == 0) {
            return contents;
        }
        contents.append(buffer, static_cast<std::size_t>(n));
    }
    return fail(ErrorCode::bad_format,
                path + ": larger than " + std::to_string(max_size) + " bytes");
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

Result<void> write_file_atomically(const std::string& path, std::span<const std::byte> bytes,
                                   mode_t mode) {
    std::string temporary = path + ".tmp";
    ::unlink(temporary.c_str());  // a leftover must not lend us its mode
    UniqueFD fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
    if (!fd.is_valid()) {
        return fail_errno(temporary + ": create", errno);
    }
    std::size_t written = 0;
    while (written < bytes.size()) {
        ssize_t n = ::write(fd.get(), bytes.data() + written, bytes.size() - written);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            auto error = fail_errno(temporary + ": write", errno);
            ::unlink(temporary.c_str());
            return error;
        }
        written += static_cast<std::size_t>(n);
    }
    if (::fsync(fd.get()) != 0 || ::rename(temporary.c_str(), path.c_str()) != 0) {
        auto error = fail_errno(path + ": write", errno);
        ::unlink(temporary.c_str());
        return error;
    }
    return {};
}

Result<void> make_directories(const std::string& path, mode_t mode) {
    std::size_t slash = 0;
    while ((slash = path.find('/', slash + 1)) != std::string::npos) {
        std::string prefix = path.substr(0, slash);
        if (::mkdir(prefix.c_str(), mode) != 0 && errno != EEXIST) {
            return fail_errno(prefix, errno);
        }
    }
    if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
        return fail_errno(path, errno);
    }
    return {};
}

void remove_tree(const std::string& path) {
    struct stat info {};
    if (::lstat(path.c_str(), &info) != 0) {
        return;
    }
    if (!S_ISDIR(info.st_mode)) {
        ::unlink(path.c_str());
        return;
    }
    for (const std::string& name : directory_entries(path)) {
        remove_tree(path + "/" + name);
    }
    ::rmdir(path.c_str());
}

std::vector<std::string> directory_entries(const std::string& directory) {
    std::vector<std::string> names;
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(directory.c_str()), ::closedir);
    if (!dir) {
        return names;
    }
    while (const dirent* entry = ::readdir(dir.get())) {
        std::string name = entry->d_name;
        if (name != "." && name != "..") {
            names.push_back(std::move(name));
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

}  // namespace suture
