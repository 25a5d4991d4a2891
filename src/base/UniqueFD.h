#pragma once

#include <utility>

namespace suture {

// Owns one file descriptor and closes it on destruction. No copies, no
// implicit conversion to int: the owner is always visible.
class UniqueFD {
  public:
    UniqueFD() = default;
    explicit UniqueFD(int fd) : fd_(fd) {}
    UniqueFD(UniqueFD&& other) noexcept : fd_(other.release()) {}
    UniqueFD& operator=(UniqueFD&& other) noexcept {
        reset(other.release());
        return *this;
    }
    UniqueFD(const UniqueFD&) = delete;
    UniqueFD& operator=(const UniqueFD&) = delete;
    ~UniqueFD() { reset(); }

    int get() const { return fd_; }
    bool is_valid() const { return fd_ >= 0; }

    // Gives up ownership; the caller must close the returned descriptor.
    [[nodiscard]] int release() { return std::exchange(fd_, -1); }

    // Closes the current descriptor (if any) and takes ownership of `fd`.
    void reset(int fd = -1);

  private:
    int fd_ = -1;
};

}  // namespace suture
