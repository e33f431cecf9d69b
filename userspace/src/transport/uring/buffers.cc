// SPDX-License-Identifier: GPL-2.0
#include "transport/uring/buffers.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

namespace holdfast::uring {

namespace {
std::runtime_error sys_error(const std::string &what)
{
    return std::runtime_error(what + ": " + strerror(errno));
}

// Maps `fd` at exactly `want`, or returns nullptr with errno set.  Kernels
// before 4.17 ignore MAP_FIXED_NOREPLACE and treat it as a hint: a mapping
// elsewhere is undone and reported as EEXIST.
void *map_at(int fd, size_t size, uint64_t want)
{
    void *p = mmap(reinterpret_cast<void *>(want), size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
    if (p == MAP_FAILED)
        return nullptr;
    if (reinterpret_cast<uint64_t>(p) != want) {
        munmap(p, size);
        errno = EEXIST;
        return nullptr;
    }
    return p;
}
} // namespace

Buffers Buffers::create(size_t size)
{
    Fd fd(memfd_create("holdfast-uring", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd)
        throw sys_error("memfd_create for the io_uring buffers");
    if (ftruncate(fd.get(), off_t(size)) < 0)
        throw sys_error("sizing the io_uring buffers");
    // A successor maps the whole file: it must not shrink under a mapping.
    if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
        throw sys_error("sealing the io_uring buffers");
    void *p = nullptr;
    for (uint64_t base : kPreferredBases)
        if ((p = map_at(fd.get(), size, base)))
            break;
    if (!p) {
        p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
        if (p == MAP_FAILED)
            throw sys_error("mmap of the io_uring buffers");
    }
    return Buffers(std::move(fd), static_cast<std::byte *>(p), size);
}

Buffers Buffers::adopt(Fd memfd, uint64_t base, size_t size)
{
    struct stat st;
    if (fstat(memfd.get(), &st) < 0)
        throw sys_error("stat of the stored io_uring buffers");
    if (size == 0 || size % 4096 || uint64_t(st.st_size) != size)
        throw std::runtime_error("the stored io_uring buffers are " + std::to_string(st.st_size) +
                                 " bytes, the state region says " + std::to_string(size));
    if (base == 0 || base % 4096)
        throw std::runtime_error("the state region's io_uring buffer address is not a page");
    void *p = map_at(memfd.get(), size, base);
    if (!p)
        throw sys_error("mapping the stored io_uring buffers at their address");
    return Buffers(std::move(memfd), static_cast<std::byte *>(p), size);
}

Buffers::Buffers(Buffers &&o) noexcept
    : fd_(std::move(o.fd_)), base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0))
{
}

Buffers &Buffers::operator=(Buffers &&o) noexcept
{
    if (this != &o) {
        if (base_)
            munmap(base_, size_);
        fd_ = std::move(o.fd_);
        base_ = std::exchange(o.base_, nullptr);
        size_ = std::exchange(o.size_, 0);
    }
    return *this;
}

Buffers::~Buffers()
{
    if (base_)
        munmap(base_, size_);
}

} // namespace holdfast::uring
