// SPDX-License-Identifier: GPL-2.0
#include "fuse/backend_io.h"

#include <algorithm>
#include <climits>
#include <cstring>
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
    if (op == Op::write)
        if (WriteSource *w = WriteSource::covering(buf, len))
            w->fill(); // preadv2/pwritev2 of one buffer, and on the ring
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
    if (op == Op::write && done == 0)
        if (WriteSource *w = WriteSource::covering(buf, len)) {
            if (write_blocking_from(w->src(), w->skip_for(buf)))
                return;
            w->fill(); // refused: from the stand-in, which is aligned
        }
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
    return op == Op::read && vectored_blocking(dst, skip);
}

bool BackendIo::write_blocking_from(std::span<const iovec> src, uint64_t skip)
{
    return op == Op::write && vectored_blocking(src, skip);
}

bool BackendIo::vectored_blocking(std::span<const iovec> iov, uint64_t skip)
{
    // A chain longer than one preadv()/pwritev() takes goes in turns, as
    // after a short transfer.
    iovec win[IOV_MAX];
    for (;;) {
        const size_t cnt = iov_window(iov, skip + done, next_len(), win);
        // No room left (read) ends it as EOF would, nothing left to write
        // as no progress: a short write.
        ssize_t n = 0;
        if (cnt)
            n = op == Op::read ? preadv(fd, win, int(cnt), off_t(next_off()))
                               : pwritev(fd, win, int(cnt), off_t(next_off()));
        if (n < 0 && errno == EINVAL && done == 0)
            return false;
        if (absorb(n < 0 ? -errno : int(n)))
            return true;
    }
}

namespace {
// Per thread: a transport's worker serves one request at a time, and the
// filesystem writes an append on the thread that asked.
thread_local WriteSource *active_source = nullptr;
} // namespace

WriteSource::WriteSource(std::span<std::byte> stand_in, std::span<const iovec> src, uint64_t skip)
    : stand_in_(stand_in), src_(src), skip_(skip), outer_(active_source)
{
    active_source = this;
}

WriteSource::~WriteSource()
{
    active_source = outer_;
}

WriteSource *WriteSource::covering(const std::byte *p, size_t n)
{
    const auto a = reinterpret_cast<uintptr_t>(p);
    for (WriteSource *w = active_source; w; w = w->outer_) {
        const auto s = reinterpret_cast<uintptr_t>(w->stand_in_.data());
        if (a >= s && n <= w->stand_in_.size() && a - s <= w->stand_in_.size() - n)
            return w;
    }
    return nullptr;
}

uint64_t WriteSource::skip_for(const std::byte *p) const
{
    return skip_ +
           uint64_t(reinterpret_cast<uintptr_t>(p) - reinterpret_cast<uintptr_t>(stand_in_.data()));
}

void WriteSource::fill()
{
    if (filled_)
        return;
    size_t at = 0;
    iovec win[64];
    while (at < stand_in_.size()) {
        const size_t cnt = iov_window(src_, skip_ + at, stand_in_.size() - at, win);
        if (!cnt)
            break; // `src` ends first: zeroes, below
        for (size_t i = 0; i < cnt; i++) {
            std::memcpy(stand_in_.data() + at, win[i].iov_base, win[i].iov_len);
            at += win[i].iov_len;
        }
    }
    std::memset(stand_in_.data() + at, 0, stand_in_.size() - at);
    filled_ = true;
}

} // namespace holdfast::fuse
