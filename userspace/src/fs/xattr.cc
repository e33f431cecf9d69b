// SPDX-License-Identifier: GPL-2.0
// Extended attributes, through the /proc/self/fd magic link of the inode so
// special files are never opened.  For a symlink the magic link resolves to
// the link itself (the O_PATH fd was opened O_NOFOLLOW), never its target.
#include "fs/creds.h"
#include "fs/passthrough.h"

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <string>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

namespace holdfast::fs {

namespace {

// The xattr system calls take no O_PATH fd (no *xattrat before Linux 6.13),
// so they name the inode by path.  "/proc/self/fd/N" resolves unless the
// sandbox chrooted away from /proc; then the name is "N" relative to a cwd
// of our /proc/self/fd directory, which each thread sets once for itself
// after unshare(CLONE_FS) so that no thread's cwd moves under another's.
// Returns "" when neither works.
const char *xattr_path(int proc_self_fd, int fd, char (&buf)[32])
{
    static std::atomic<int> absolute{-1};
    thread_local bool cwd_is_proc = false;

    int a = absolute.load(std::memory_order_relaxed);
    if (a < 0) {
        // procfs, not merely a path that exists: under chroot a guest could
        // have made "proc/self/fd/N" in the shared directory.
        struct statfs sf;
        a = statfs("/proc/self/fd", &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC;
        absolute.store(a, std::memory_order_relaxed);
    }
    if (a) {
        snprintf(buf, sizeof(buf), "/proc/self/fd/%d", fd);
        return buf;
    }
    if (!cwd_is_proc) {
        if (unshare(CLONE_FS) < 0 || fchdir(proc_self_fd) < 0)
            return "";
        cwd_is_proc = true;
    }
    snprintf(buf, sizeof(buf), "%d", fd);
    return buf;
}

} // namespace

#define XATTR_INODE(var)                                                                           \
    if (!opts_.xattr)                                                                              \
        return -ENOSYS;                                                                            \
    auto var = inodes_.get(ctx.nodeid);                                                            \
    if (!var)                                                                                      \
        return -ESTALE;                                                                            \
    char path_buf[32];                                                                             \
    const char *path = xattr_path(proc_self_fd_.get(), var->fd.get(), path_buf);                   \
    CredScope cred(ctx, creds_for(false), opts_.host_pids);                                        \
    if (!cred.ok())                                                                                \
        return cred.error();

int Passthrough::setxattr(const fuse::Ctx &ctx, const fuse_setxattr_in &in, std::string_view name,
                          std::span<const std::byte> value)
{
    if (opts_.readonly && opts_.xattr)
        return -EROFS;
    XATTR_INODE(ino);
    std::string n(name);
    if (::setxattr(path, n.c_str(), value.data(), value.size(), int(in.flags)) < 0)
        return -errno;
    return 0;
}

int Passthrough::getxattr(const fuse::Ctx &ctx, std::string_view name, uint32_t size,
                          fuse::Reply &out)
{
    XATTR_INODE(ino);
    std::string n(name);
    if (size == 0) {
        ssize_t r = ::getxattr(path, n.c_str(), nullptr, 0);
        if (r < 0)
            return -errno;
        out.arg<fuse_getxattr_out>().size = uint32_t(r);
        return 0;
    }
    auto space = out.payload_space();
    ssize_t r = ::getxattr(path, n.c_str(), space.data(), space.size());
    if (r < 0)
        return -errno;
    out.set_payload_len(size_t(r));
    return 0;
}

int Passthrough::listxattr(const fuse::Ctx &ctx, uint32_t size, fuse::Reply &out)
{
    XATTR_INODE(ino);
    if (size == 0) {
        ssize_t r = ::listxattr(path, nullptr, 0);
        if (r < 0)
            return -errno;
        out.arg<fuse_getxattr_out>().size = uint32_t(r);
        return 0;
    }
    auto space = out.payload_space();
    ssize_t r = ::listxattr(path, reinterpret_cast<char *>(space.data()), space.size());
    if (r < 0)
        return -errno;
    out.set_payload_len(size_t(r));
    return 0;
}

int Passthrough::removexattr(const fuse::Ctx &ctx, std::string_view name)
{
    if (opts_.readonly && opts_.xattr)
        return -EROFS;
    XATTR_INODE(ino);
    std::string n(name);
    if (::removexattr(path, n.c_str()) < 0)
        return -errno;
    return 0;
}

} // namespace holdfast::fs
