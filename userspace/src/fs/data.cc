// SPDX-License-Identifier: GPL-2.0
// Open files and their data: open/create/tmpfile, read/write, flush,
// release, fsync, fallocate, lseek, copy_file_range.
#include "fs/creds.h"
#include "fs/passthrough.h"

#include "util/log.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace holdfast::fs {

namespace {
// Flags only meaningful at creation, or that would change how the kernel
// above us sees the file, never reach the host open.
constexpr int kStripOnOpen = O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT | O_NOATIME;

bool wants_write(int flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC); }
} // namespace

// With the writeback cache the kernel reads pages of files opened O_WRONLY
// and handles O_APPEND itself (it sends WRITEs at explicit offsets).
static int host_open_flags(int flags, bool writeback)
{
    flags &= ~kStripOnOpen;
    if (writeback) {
        if ((flags & O_ACCMODE) == O_WRONLY)
            flags = (flags & ~O_ACCMODE) | O_RDWR;
        flags &= ~O_APPEND;
    }
    return flags | O_CLOEXEC;
}

int Passthrough::open(const fuse::Ctx &ctx, const fuse_open_in &in, fuse_open_out &out)
{
    auto ino = inodes_.get(ctx.nodeid);
    if (!ino)
        return -ESTALE;
    int flags = int(in.flags);
    if (opts_.readonly && wants_write(flags))
        return -EROFS;
    if (ino->is_dir())
        return -EISDIR;
    int hflags = host_open_flags(flags, writeback_);
    int fd;
    {
        CredScope cred(ctx, opts_.switch_creds, opts_.host_pids);
        if (!cred.ok())
            return cred.error();
        fd = reopen(*ino, hflags);
    }
    if (fd < 0)
        return fd;
    Fd owned(fd);
    if ((in.open_flags & FUSE_OPEN_KILL_SUIDGID) && (flags & O_TRUNC)) {
        int err = kill_suidgid(fd);
        if (err)
            return err;
    }
    return make_handle(std::move(ino), std::move(owned), hflags, false, out);
}

int Passthrough::create(const fuse::Ctx &ctx, const fuse_create_in &in, std::string_view name,
                        fuse_entry_out &entry, fuse_open_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    if (name == "." || name == "..")
        return -EEXIST;
    auto parent = inodes_.get(ctx.nodeid);
    if (!parent)
        return -ESTALE;
    if (!parent->is_dir())
        return -ENOTDIR;
    int flags = int(in.flags);
    // O_NOFOLLOW: an existing symlink at this name must not be followed
    // (it may point out of the jail); the client resolved links already.
    int hflags = host_open_flags(flags, writeback_) | O_CREAT | (flags & O_EXCL) | O_NOFOLLOW;
    std::string n(name);
    Fd fd;
    {
        CredScope cred(ctx, opts_.switch_creds, opts_.host_pids);
        if (!cred.ok())
            return cred.error();
        fd.reset(openat(parent->fd.get(), n.c_str(), hflags, in.mode));
    }
    if (!fd)
        return -errno;
    // The inode's O_PATH fd comes from the open fd, not the name, so a
    // concurrent rename cannot make us describe a different file.
    int pfd = reopen_fd(fd.get(), O_PATH);
    if (pfd < 0)
        return pfd;
    int err = entry_from_fd(Fd(pfd), entry);
    if (err)
        return err;
    auto ino = inodes_.get(entry.nodeid);
    err = ino ? make_handle(std::move(ino), std::move(fd), hflags & ~(O_CREAT | O_EXCL), false, out)
              : -ESTALE;
    if (err)
        forget(entry.nodeid, 1);
    return err;
}

int Passthrough::tmpfile(const fuse::Ctx &ctx, const fuse_create_in &in, fuse_entry_out &entry,
                         fuse_open_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    auto parent = inodes_.get(ctx.nodeid);
    if (!parent)
        return -ESTALE;
    if (!parent->is_dir())
        return -ENOTDIR;
    int hflags = host_open_flags(int(in.flags), writeback_) | O_TMPFILE;
    // O_TMPFILE needs write access: O_WRONLY or O_RDWR must be present.
    if ((hflags & O_ACCMODE) == O_RDONLY)
        hflags |= O_RDWR;
    Fd fd;
    {
        CredScope cred(ctx, opts_.switch_creds, opts_.host_pids);
        if (!cred.ok())
            return cred.error();
        fd.reset(openat(parent->fd.get(), ".", hflags, in.mode));
    }
    if (!fd)
        return -errno;
    int pfd = reopen_fd(fd.get(), O_PATH);
    if (pfd < 0)
        return pfd;
    int err = entry_from_fd(Fd(pfd), entry);
    if (err)
        return err;
    auto ino = inodes_.get(entry.nodeid);
    err = ino ? make_handle(std::move(ino), std::move(fd), hflags & ~O_TMPFILE, false, out)
              : -ESTALE;
    if (err)
        forget(entry.nodeid, 1);
    return err;
}

int Passthrough::read(const fuse::Ctx &ctx, const fuse_read_in &in, fuse::Reply &out)
{
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return -EBADF;
    (void)ctx;
    auto space = out.payload_space();
    size_t want = in.size < space.size() ? in.size : space.size();
    size_t done = 0;
    while (done < want) {
        ssize_t n = pread(h->fd.get(), space.data() + done, want - done, off_t(in.offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (done)
                break;
            return -errno;
        }
        if (n == 0)
            break; // EOF: a short reply tells the kernel so
        done += size_t(n);
    }
    out.set_payload_len(done);
    return 0;
}

int Passthrough::write(const fuse::Ctx &ctx, const fuse_write_in &in,
                       std::span<const std::byte> data, fuse_write_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return -EBADF;
    (void)ctx;
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = pwrite(h->fd.get(), data.data() + done, data.size() - done,
                           off_t(in.offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (done)
                break;
            return -errno;
        }
        done += size_t(n);
    }
    // We write as root, whom the host never strips of suid; the kernel
    // tells us when the writer could not have kept it.
    if (in.write_flags & FUSE_WRITE_KILL_SUIDGID) {
        int err = kill_suidgid(h->fd.get());
        if (err)
            LOG_WARN("write: cannot clear suid/sgid: %s", strerror(-err));
    }
    out.size = uint32_t(done);
    return 0;
}

int Passthrough::flush(const fuse::Ctx &, const fuse_flush_in &in)
{
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return -EBADF;
    // close() drops the caller's POSIX locks on this inode: those live on the
    // owner's own fd (see locks.cc), so closing that fd does exactly that.
    if (h->inode) {
        Fd owner_fd;
        {
            std::lock_guard g(h->inode->lock_mu);
            auto it = h->inode->lock_fds.find(in.lock_owner);
            if (it != h->inode->lock_fds.end()) {
                owner_fd = std::move(it->second);
                h->inode->lock_fds.erase(it);
            }
        }
    }
    // Let the host filesystem see a close (NFS-style flush-on-close).
    int d = dup(h->fd.get());
    if (d < 0)
        return -errno;
    if (::close(d) < 0)
        return -errno;
    return 0;
}

int Passthrough::release(const fuse::Ctx &, const fuse_release_in &in, bool dir)
{
    auto h = handles_.remove(in.fh);
    if (!h)
        return -EBADF;
    if (h->dir != dir)
        LOG_WARN("release of fh %llu with the wrong kind", (unsigned long long)in.fh);
    if (in.release_flags & FUSE_RELEASE_FLOCK_UNLOCK)
        flock(h->fd.get(), LOCK_UN);
    return 0;
}

int Passthrough::fsync(const fuse::Ctx &, const fuse_fsync_in &in, bool dir)
{
    auto h = handles_.get(in.fh);
    if (!h || h->dir != dir)
        return -EBADF;
    int r = (in.fsync_flags & FUSE_FSYNC_FDATASYNC) ? fdatasync(h->fd.get()) : ::fsync(h->fd.get());
    return r < 0 ? -errno : 0;
}

int Passthrough::fallocate(const fuse::Ctx &, const fuse_fallocate_in &in)
{
    if (opts_.readonly)
        return -EROFS;
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return -EBADF;
    if (::fallocate(h->fd.get(), int(in.mode), off_t(in.offset), off_t(in.length)) < 0)
        return -errno;
    return 0;
}

int Passthrough::lseek(const fuse::Ctx &, const fuse_lseek_in &in, fuse_lseek_out &out)
{
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return -EBADF;
    off_t r = ::lseek(h->fd.get(), off_t(in.offset), int(in.whence));
    if (r < 0)
        return -errno;
    out.offset = uint64_t(r);
    return 0;
}

int Passthrough::copy_file_range(const fuse::Ctx &, const fuse_copy_file_range_in &in,
                                 fuse_write_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    auto hin = handles_.get(in.fh_in);
    auto hout = handles_.get(in.fh_out);
    if (!hin || !hout || hin->dir || hout->dir)
        return -EBADF;
    loff_t off_in = loff_t(in.off_in), off_out = loff_t(in.off_out);
    ssize_t n = ::copy_file_range(hin->fd.get(), &off_in, hout->fd.get(), &off_out,
                                  size_t(in.len), unsigned(in.flags));
    if (n < 0)
        return -errno;
    out.size = uint32_t(n);
    return 0;
}

} // namespace holdfast::fs
