// SPDX-License-Identifier: GPL-2.0
// Extended attributes, through the /proc/self/fd magic link of the inode so
// special files are never opened.  For a symlink the magic link resolves to
// the link itself (the O_PATH fd was opened O_NOFOLLOW), never its target.
#include "fs/creds.h"
#include "fs/passthrough.h"

#include <cerrno>
#include <cstdio>
#include <string>
#include <sys/xattr.h>

namespace holdfast::fs {

#define XATTR_INODE(var)                                                                           \
    if (!opts_.xattr)                                                                              \
        return -ENOSYS;                                                                            \
    auto var = inodes_.get(ctx.nodeid);                                                            \
    if (!var)                                                                                      \
        return -ESTALE;                                                                            \
    char path[32];                                                                                 \
    snprintf(path, sizeof(path), "/proc/self/fd/%d", var->fd.get());                               \
    CredScope cred(ctx, creds_for(false), opts_.host_pids);                                        \
    if (!cred.ok())                                                                                \
        return cred.error();

int Passthrough::setxattr(const fuse::Ctx &ctx, const fuse_setxattr_in &in,
                          std::string_view name, std::span<const std::byte> value)
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
