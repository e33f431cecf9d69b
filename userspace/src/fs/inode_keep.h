// SPDX-License-Identifier: GPL-2.0
// How an inode the kernel knows comes back after a restart: by its host
// file handle (open_by_handle_at), or, where no handle can bring it back,
// from the fd store, which keeps its O_PATH fd for the next server.
#pragma once

#include <cstddef>

namespace holdfast::fs {

constexpr long kFuseSuperMagic = 0x65735546; // FUSE_SUPER_MAGIC, also virtio-fs

// Whether a file handle of an inode on a filesystem of type `f_type`
// brings the inode back in a later process.  `handle_errno` is 0 when
// name_to_handle_at() gave a handle, else its errno.
//
// A FUSE mount's handle does not, whatever name_to_handle_at() says: it
// is the FUSE node id, which the kernel decodes only while it still has
// the inode cached, unless the FUSE server negotiated FUSE_EXPORT_SUPPORT
// (invisible from here) and also still remembers that node id, which a
// server may forget at the FORGET our own crash causes.  A server that
// declares FUSE_NO_EXPORT_SUPPORT (7.40, Linux 6.9+; holdfastd does) gives
// no handle at all (EOPNOTSUPP); any other gives one that
// open_by_handle_at() refuses with ESTALE once the kernel evicted the inode.
constexpr bool handles_reopen(long f_type, int handle_errno)
{
    return f_type != kFuseSuperMagic && handle_errno == 0;
}

// holdfast-fdstore's default capacity, assumed when the store does not say.
constexpr size_t kDefaultStoreCapacity = 8192;

// The names of the stored fds reach the next server in one environment
// string, LISTEN_FDNAMES, which the kernel takes up to 128 KiB
// (MAX_ARG_STRLEN; systemd's exec would fail past it): 8192 names
// "i<nodeid>" of up to 10 bytes each leave a third of it for the others.
constexpr size_t kMaxKeptInodes = 8192;

// How many inodes' fds may go to a store holding at most `capacity` fds
// (0: it did not say).  A quarter stays free for what the store is there
// for first: the state region, the /dev/fuse fd and its clones, lock
// owners' fds, open files holding flock() locks.
constexpr size_t inode_store_budget(size_t capacity)
{
    if (!capacity)
        capacity = kDefaultStoreCapacity;
    const size_t budget = capacity - capacity / 4;
    return budget < kMaxKeptInodes ? budget : kMaxKeptInodes;
}

// How many kept inodes a new one finds room beside, out of `budget`: a
// listing of a big directory must not take the room an open file needs
// later, so the last quarter is only for inodes of open files.
constexpr size_t inode_keep_limit(size_t budget, bool open)
{
    return open ? budget : budget - budget / 4;
}

} // namespace holdfast::fs
