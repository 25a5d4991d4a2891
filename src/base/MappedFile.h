#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "base/Error.h"
#include "base/UniqueFD.h"

namespace suture {

// A read-only private mapping of a whole file, unmapped on destruction.
class MappedFile {
  public:
    // Maps the file open on `fd` (which the caller keeps). `name` is only
    // used in error messages. An empty file gives an empty mapping.
    static Result<MappedFile> map(const UniqueFD& fd, const std::string& name);

    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile();

    std::span<const std::byte> bytes() const {
        return {static_cast<const std::byte*>(address_), size_};
    }

  private:
    MappedFile(void* address, std::size_t size) : address_(address), size_(size) {}
    void unmap();

    void* address_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace suture
