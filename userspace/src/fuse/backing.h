// SPDX-License-Identifier: GPL-2.0
// Kernel FUSE passthrough (7.40): a host file registered with the kernel
// under a backing id, which an OPEN/CREATE reply names with
// FOPEN_PASSTHROUGH so the kernel does the file's I/O itself.  Registering
// is an ioctl on the /dev/fuse fd, which only the transport has: it hands
// the filesystem this interface, and the filesystem never sees the device.
#pragma once

#include <cstdint>

namespace holdfast::fuse {

class BackingFiles {
  public:
    virtual ~BackingFiles() = default;
    // Registers the open file `fd`; returns its backing id (> 0) or -errno.
    virtual int open(int fd) = 0;
    // Unregisters `id`; 0 or -errno.  Files the kernel opened through the
    // id keep their own reference: closing only stops new opens naming it.
    virtual int close(int32_t id) = 0;
};

} // namespace holdfast::fuse
