#include "base/MappedFile.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <utility>

namespace suture {

Result<MappedFile> MappedFile::map(const UniqueFD& fd, const std::string& name) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
        return fail_errno(name + ": fstat", errno);
    }
    if (st.st_size == 0) {
        return MappedFile(nullptr, 0);
    }
    void* address =
        ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (address == MAP_FAILED) {
        return fail_errno(name + ": mmap", errno);
    }
    return MappedFile(address, static_cast<std::size_t>(st.st_size));
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : address_(std::exchange(other.address_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
    if (this != &other) {
        unmap();
        address_ = std::exchange(other.address_, nullptr);
        size_ = std::exchange(other.size_, 0);
    }
    return *this;
}

MappedFile::~MappedFile() {
    unmap();
}

void MappedFile::unmap() {
    if (address_ != nullptr) {
        ::munmap(address_, size_);
        address_ = nullptr;
        size_ = 0;
    }
}

}  // namespace suture
