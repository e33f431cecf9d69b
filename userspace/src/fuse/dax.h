// SPDX-License-Identifier: GPL-2.0
// virtio-fs DAX: the guest maps ranges of host files into a window of its
// device's memory (a VIRTIO shared memory region) with FUSE_SETUPMAPPING
// and drops them with FUSE_REMOVEMAPPING.  Only the transport can reach the
// window (vhost-user: SHMEM_MAP/UNMAP on the back-end request channel), so
// it hands the filesystem this interface, as BackingFiles does for kernel
// passthrough.  No transport but vhost-user has one: the ops stay ENOSYS.
#pragma once

#include "fuse/abi.h"

#include <cstdint>

namespace holdfast::fuse {

// Offsets and lengths are multiples of this; INIT announces it as
// map_alignment (log2) when the kernel asks with FUSE_MAP_ALIGNMENT.
constexpr uint32_t kDaxPageShift = 12;
constexpr uint64_t kDaxPage = 1ULL << kDaxPageShift;
// FUSE_REMOVEMAPPING_MAX_ENTRY: a page of fuse_removemapping_one.
constexpr uint32_t kRemoveMappingMax = 4096 / sizeof(fuse_removemapping_one);
// fuse_setupmapping_in.fh when the kernel names no open file.
constexpr uint64_t kDaxNoFh = ~0ULL;
constexpr uint64_t kSetupMappingFlags = FUSE_SETUPMAPPING_FLAG_WRITE | FUSE_SETUPMAPPING_FLAG_READ;

class DaxWindow {
  public:
    virtual ~DaxWindow() = default;
    // Bytes in the window (> 0).
    virtual uint64_t size() const = 0;
    // Maps `len` bytes of `fd` at `fd_offset` at `win_offset` in the
    // window.  0 or -errno: -EREMOTEIO when the front-end refused (nothing
    // was mapped), -ENOTCONN or -EAGAIN when nothing was sent (no channel,
    // or one the front-end does not read); anything else leaves it unknown
    // whether the range is mapped.
    virtual int map(int fd, uint64_t fd_offset, uint64_t win_offset, uint64_t len,
                    bool writable) = 0;
    // Unmaps exactly one earlier map().  Same errors.
    virtual int unmap(uint64_t win_offset, uint64_t len) = 0;
};

// Whether [off, off + len) is a page-aligned, non-empty range inside a
// window of `window` bytes.  nullptr if so, else what is wrong.
const char *check_window_range(uint64_t off, uint64_t len, uint64_t window);
// The checks on a SETUPMAPPING that need no filesystem: flags, alignment,
// overflow of the file range, the window range.
const char *check_setupmapping(const fuse_setupmapping_in &in, uint64_t window);

} // namespace holdfast::fuse
