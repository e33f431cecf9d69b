// SPDX-License-Identifier: GPL-2.0
#include "state/region.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/mman.h>
#include <unistd.h>

namespace holdfast::state {

namespace {
size_t align_up(size_t v, size_t a) { return (v + a - 1) & ~(a - 1); }

std::runtime_error sys_error(const char *what)
{
    return std::runtime_error(std::string(what) + ": " + strerror(errno));
}
} // namespace

Region Region::create(const Geometry &g)
{
    size_t inode_off = align_up(sizeof(RegionHeader), 4096);
    size_t handle_off = align_up(inode_off + g.inode_capacity * sizeof(InodeRecord), 4096);
    size_t size = align_up(handle_off + g.handle_capacity * sizeof(HandleRecord), 4096);

    Fd fd(memfd_create("holdfast-state", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!fd)
        throw sys_error("memfd_create");
    if (ftruncate(fd.get(), size) < 0)
        throw sys_error("ftruncate state region");
    // The layout is fixed for the region's life: nobody may shrink it under
    // a mapping (that would SIGBUS every server that has it mapped).
    if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0)
        throw sys_error("seal state region");
    void *base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (base == MAP_FAILED)
        throw sys_error("mmap state region");

    Region r(std::move(fd), base, size);
    RegionHeader &h = r.header();
    h.magic = kMagic;
    h.version = kLayoutVersion;
    h.header_size = sizeof(RegionHeader);
    h.region_size = size;
    h.inode_offset = inode_off;
    h.inode_capacity = g.inode_capacity;
    h.inode_record_size = sizeof(InodeRecord);
    h.handle_record_size = sizeof(HandleRecord);
    h.handle_offset = handle_off;
    h.handle_capacity = g.handle_capacity;
    h.attach_generation.store(1, std::memory_order_release);
    return r;
}

Region::Region(Region &&o) noexcept
    : fd_(std::move(o.fd_)), base_(std::exchange(o.base_, nullptr)), size_(o.size_)
{
}

Region::~Region()
{
    if (base_)
        munmap(base_, size_);
}

InodeRecord *Region::inodes()
{
    return reinterpret_cast<InodeRecord *>(static_cast<char *>(base_) + header().inode_offset);
}

HandleRecord *Region::handles()
{
    return reinterpret_cast<HandleRecord *>(static_cast<char *>(base_) + header().handle_offset);
}

} // namespace holdfast::state
