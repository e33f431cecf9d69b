// SPDX-License-Identifier: GPL-2.0
#include "fuse/backend_io.h"

#include <algorithm>
#include <climits>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

namespace holdfast::fuse {

namespace {

IoPath learn(int fd)
{
    struct statfs st;
    if (fstatfs(fd, &st) == 0 && (st.f_type == TMPFS_MAGIC || st.f_type == RAMFS_MAGIC))
        return IoPath::inline_;
    return IoPath::ring;
}

} // namespace

size_t iov_window(std::span<const iovec> iov, uint64_t skip, uint64_t max, std::span<iovec> dst)
{
    size_t n = 0;
    for (const iovec &v : iov) {
        if (!max || n == dst.size())
            break;
        if (skip >= v.iov_len) {
            skip -= v.iov_len;
            continue;
        }
        const size_t k = size_t(std::min<uint64_t>(v.iov_len - skip, max));
        dst[n++] = {static_cast<std::byte *>(v.iov_base) + skip, k};
        skip = 0;
        max -= k;
    }
    return n;
}

IoPath direct_io_path(int fd)
{
    return learn(fd);
}

bool BackendIo::try_now()
{
    if ((op != Op::read && op != Op::write) || !how)
        return false; // fsync, fallocate: they wait for the device
    auto path = IoPath(how->load(std::memory_order_relaxed));
    if (path == IoPath::ring)
        return false;
    for (;;) {
        const int flags = path == IoPath::inline_ ? 0 : RWF_NOWAIT;
        iovec v{next_buf(), next_len()};
        ssize_t n = op == Op::read ? preadv2(fd, &v, 1, off_t(next_off()), flags)
                                   : pwritev2(fd, &v, 1, off_t(next_off()), flags);
        if (n < 0 && errno == EOPNOTSUPP && flags) {
            path = learn(fd);
            how->store(uint8_t(path), std::memory_order_relaxed);
            if (path == IoPath::ring)
                return false;
            continue;
        }
        if (n < 0 && errno == EAGAIN && flags) {
            if (path == IoPath::unknown)
                how->store(uint8_t(IoPath::nowait), std::memory_order_relaxed);
            return false; // would wait for the device: the ring's job
        }
        if (path == IoPath::unknown) {
            path = IoPath::nowait;
            how->store(uint8_t(path), std::memory_order_relaxed);
        }
        if (absorb(n < 0 ? -errno : int(n)))
            return true;
        // A short transfer: the rest may not be cached; try it the same way.
    }
}

void BackendIo::run_blocking()
{
    for (;;) {
        ssize_t n;
        switch (op) {
        case Op::read:
            n = pread(fd, next_buf(), next_len(), off_t(next_off()));
            break;
        case Op::write:
            n = pwrite(fd, next_buf(), next_len(), off_t(next_off()));
            break;
        case Op::fsync:
            n = ::fsync(fd);
            break;
        case Op::fdatasync:
            n = ::fdatasync(fd);
            break;
        case Op::fallocate:
            n = ::fallocate(fd, mode, off_t(off), off_t(length));
            break;
        default:
            n = -1;
            errno = EINVAL;
            break;
        }
        if (absorb(n < 0 ? -errno : int(n)))
            return;
    }
}

bool BackendIo::read_blocking_into(std::span<const iovec> dst, uint64_t skip)
{
    if (op != Op::read)
        return false;
    // A chain longer than one preadv() takes is read in turns, as after
    // a short read.
    iovec win[IOV_MAX];
    for (;;) {
        const size_t cnt = iov_window(dst, skip + done, next_len(), win);
        ssize_t n = 0; // no room left: ends the read as EOF would
        if (cnt)
            n = preadv(fd, win, int(cnt), off_t(next_off()));
        if (n < 0 && errno == EINVAL && done == 0)
            return false;
        if (absorb(n < 0 ? -errno : int(n)))
            return true;
    }
}

} // namespace holdfast::fuse
