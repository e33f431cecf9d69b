// SPDX-License-Identifier: GPL-2.0
// Attributes: getattr, setattr, statx, readlink.
#include "fs/creds.h"
#include "fs/passthrough.h"

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace holdfast::fs {

int Passthrough::getattr(const fuse::Ctx &ctx, const fuse_getattr_in &in, fuse_attr_out &out)
{
    auto ino = inodes_.get(ctx.nodeid);
    if (!ino)
        return -ESTALE;
    struct stat st;
    int r;
    std::shared_ptr<state::Handle> h;
    if ((in.getattr_flags & FUSE_GETATTR_FH) && (h = handle_for(in.fh, ctx.nodeid)))
        r = fstat(h->fd.get(), &st);
    else
        r = fstatat(ino->fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    if (r < 0)
        return -errno;
    fill_attr(*ino, st, out.attr);
    out.attr_valid = uint64_t(attr_timeout_);
    return 0;
}

int Passthrough::setattr(const fuse::Ctx &ctx, const fuse_setattr_in &in, fuse_attr_out &out)
{
    auto ino = inodes_.get(ctx.nodeid);
    if (!ino)
        return -ESTALE;
    const uint32_t v = in.valid;
    if (opts_.readonly &&
        (v & (FATTR_MODE | FATTR_UID | FATTR_GID | FATTR_SIZE | FATTR_ATIME | FATTR_MTIME |
              FATTR_ATIME_NOW | FATTR_MTIME_NOW | FATTR_CTIME)))
        return -EROFS;
    std::shared_ptr<state::Handle> h;
    if (v & FATTR_FH)
        h = handle_for(in.fh, ctx.nodeid);
    const int hfd = h ? h->fd.get() : -1;
    // Relative to the /proc/self/fd we opened at start: it resolves in a
    // chroot sandbox too, where "/proc/self/fd/N" paths do not.
    const FdName name(ino->fd.get());

    CredScope cred(ctx, creds_for(false), opts_.host_pids);
    if (!cred.ok())
        return cred.error();

    if (v & FATTR_MODE) {
        // chmod of a symlink is meaningless on Linux; never follow it.
        if (ino->is_lnk())
            return -EOPNOTSUPP;
        int r = hfd >= 0 ? fchmod(hfd, in.mode) : fchmodat(proc_self_fd_.get(), name, in.mode, 0);
        if (r < 0)
            return -errno;
    }
    if (v & (FATTR_UID | FATTR_GID)) {
        uid_t uid = (v & FATTR_UID) ? in.uid : uid_t(-1);
        gid_t gid = (v & FATTR_GID) ? in.gid : gid_t(-1);
        if (fchownat(ino->fd.get(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
            return -errno;
    }
    if (v & FATTR_SIZE) {
        if (!ino->is_reg())
            return ino->is_dir() ? -EISDIR : -EINVAL;
        int r;
        if (hfd >= 0) {
            r = ftruncate(hfd, in.size);
        } else {
            int wfd = reopen_fd(ino->fd.get(), O_WRONLY);
            if (wfd < 0)
                return wfd;
            Fd w(wfd);
            r = ftruncate(w.get(), in.size);
        }
        // FATTR_KILL_SUIDGID needs nothing more: the kernel only sets it for
        // callers without CAP_FSETID, and the host kernel clears the bits
        // itself when such a caller (whose identity we run as) truncates.
        if (r < 0)
            return -errno;
        // Unless we truncated as ourselves (CredsPolicy::create_only).
        if ((v & FATTR_KILL_SUIDGID) && !creds_for(false)) {
            int err = kill_suidgid(ino->fd.get());
            if (err)
                return err;
        }
    }
    if (v & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)) {
        struct timespec ts[2];
        ts[0].tv_nsec = UTIME_OMIT;
        ts[1].tv_nsec = UTIME_OMIT;
        if (v & FATTR_ATIME_NOW)
            ts[0].tv_nsec = UTIME_NOW;
        else if (v & FATTR_ATIME)
            ts[0] = {time_t(in.atime), long(in.atimensec)};
        if (v & FATTR_MTIME_NOW)
            ts[1].tv_nsec = UTIME_NOW;
        else if (v & FATTR_MTIME)
            ts[1] = {time_t(in.mtime), long(in.mtimensec)};
        int r;
        if (hfd >= 0)
            r = futimens(hfd, ts);
        else if (ino->is_lnk())
            r = utimensat(ino->fd.get(), "", ts, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
        else
            r = utimensat(proc_self_fd_.get(), name, ts, 0);
        if (r < 0)
            return -errno;
    }
    struct stat st;
    if (fstatat(ino->fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    fill_attr(*ino, st, out.attr);
    out.attr_valid = uint64_t(attr_timeout_);
    return 0;
}

int Passthrough::kill_suidgid(int fd) const
{
    struct stat st;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH) < 0)
        return -errno;
    mode_t kill = S_ISUID;
    // setgid without group-exec marks mandatory locking, not privilege.
    if ((st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
        kill |= S_ISGID;
    if (!(st.st_mode & kill))
        return 0;
    if (fchmodat(proc_self_fd_.get(), FdName(fd), st.st_mode & ~kill & 07777, 0) < 0)
        return -errno;
    return 0;
}

int Passthrough::statx(const fuse::Ctx &ctx, const fuse::fuse_statx_in &in,
                       fuse::fuse_statx_out &out)
{
    auto ino = inodes_.get(ctx.nodeid);
    if (!ino)
        return -ESTALE;
    struct statx sx;
    std::shared_ptr<state::Handle> h;
    int fd = ino->fd.get();
    if ((in.getattr_flags & FUSE_GETATTR_FH) && (h = handle_for(in.fh, ctx.nodeid)))
        fd = h->fd.get();
    int flags = AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | (in.sx_flags & AT_STATX_SYNC_TYPE);
    if (::statx(fd, "", flags, in.sx_mask | STATX_BASIC_STATS, &sx) < 0)
        return -errno;
    auto &s = out.stat;
    s.mask = sx.stx_mask;
    s.blksize = sx.stx_blksize;
    s.attributes = sx.stx_attributes;
    s.nlink = sx.stx_nlink;
    s.uid = sx.stx_uid;
    s.gid = sx.stx_gid;
    s.mode = sx.stx_mode;
    s.ino = sx.stx_ino;
    s.size = sx.stx_size;
    s.blocks = sx.stx_blocks;
    s.attributes_mask = sx.stx_attributes_mask;
    s.atime = {sx.stx_atime.tv_sec, sx.stx_atime.tv_nsec, 0};
    s.btime = {sx.stx_btime.tv_sec, sx.stx_btime.tv_nsec, 0};
    s.ctime = {sx.stx_ctime.tv_sec, sx.stx_ctime.tv_nsec, 0};
    s.mtime = {sx.stx_mtime.tv_sec, sx.stx_mtime.tv_nsec, 0};
    s.rdev_major = sx.stx_rdev_major;
    s.rdev_minor = sx.stx_rdev_minor;
    s.dev_major = sx.stx_dev_major;
    s.dev_minor = sx.stx_dev_minor;
    out.attr_valid = uint64_t(attr_timeout_);
    return 0;
}

int Passthrough::readlink(const fuse::Ctx &ctx, fuse::Reply &out)
{
    auto ino = inodes_.get(ctx.nodeid);
    if (!ino)
        return -ESTALE;
    if (!ino->is_lnk())
        return -EINVAL;
    auto space = out.payload_space();
    ssize_t n = readlinkat(ino->fd.get(), "", reinterpret_cast<char *>(space.data()),
                           space.size());
    if (n < 0)
        return -errno;
    out.set_payload_len(size_t(n));
    return 0;
}

} // namespace holdfast::fs
