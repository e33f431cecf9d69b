// SPDX-License-Identifier: GPL-2.0
// RAII owner of a file descriptor.
#pragma once

#include <cstdio>
#include <unistd.h>
#include <utility>

namespace holdfast {

class Fd {
  public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    Fd(Fd &&o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    Fd &operator=(Fd &&o) noexcept
    {
        if (this != &o)
            reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~Fd() { reset(); }

    int get() const { return fd_; }
    explicit operator bool() const { return fd_ >= 0; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1)
    {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = fd;
    }

  private:
    int fd_ = -1;
};

// An fd's name in /proc/self/fd, for the *at() calls relative to an open
// /proc/self/fd directory (works where the absolute path does not resolve,
// e.g. after chroot).
class FdName {
  public:
    explicit FdName(int fd) { std::snprintf(s_, sizeof(s_), "%d", fd); }
    operator const char *() const { return s_; }

  private:
    char s_[12];
};

} // namespace holdfast
