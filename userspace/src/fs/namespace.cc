// SPDX-License-Identifier: GPL-2.0
// Names: lookup/forget and everything that creates or removes a name.
#include "fs/creds.h"
#include "fs/passthrough.h"

#include <cerrno>
#include <cstdio>
#include <fcntl.h>
#include <linux/fs.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace holdfast::fs {

namespace {
// "." and ".." name no new object; ops that create or remove refuse them.
bool is_dot(std::string_view n) { return n == "." || n == ".."; }
} // namespace

#define PARENT_DIR(var, id)                                                                        \
    auto var = inodes_.get(id);                                                                    \
    if (!var)                                                                                      \
        return -ESTALE;                                                                            \
    if (!var->is_dir())                                                                            \
        return -ENOTDIR;

#define WITH_CREDS(ctx)                                                                            \
    CredScope cred_(ctx, opts_.switch_creds, opts_.host_pids);                                     \
    if (!cred_.ok())                                                                               \
        return cred_.error();

int Passthrough::lookup(const fuse::Ctx &ctx, std::string_view name, fuse_entry_out &out)
{
    PARENT_DIR(parent, ctx.nodeid);
    WITH_CREDS(ctx);
    return do_lookup(*parent, name, out);
}

void Passthrough::forget(uint64_t nodeid, uint64_t nlookup) { inodes_.forget(nodeid, nlookup); }

int Passthrough::mknod(const fuse::Ctx &ctx, const fuse_mknod_in &in, std::string_view name,
                       fuse_entry_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    if (is_dot(name))
        return -EEXIST;
    PARENT_DIR(parent, ctx.nodeid);
    WITH_CREDS(ctx);
    std::string n(name);
    if (mknodat(parent->fd.get(), n.c_str(), in.mode, in.rdev) < 0)
        return -errno;
    return do_lookup(*parent, name, out);
}

int Passthrough::mkdir(const fuse::Ctx &ctx, const fuse_mkdir_in &in, std::string_view name,
                       fuse_entry_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    if (is_dot(name))
        return -EEXIST;
    PARENT_DIR(parent, ctx.nodeid);
    WITH_CREDS(ctx);
    std::string n(name);
    if (mkdirat(parent->fd.get(), n.c_str(), in.mode) < 0)
        return -errno;
    return do_lookup(*parent, name, out);
}

int Passthrough::symlink(const fuse::Ctx &ctx, std::string_view name, std::string_view target,
                         fuse_entry_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    if (is_dot(name))
        return -EEXIST;
    PARENT_DIR(parent, ctx.nodeid);
    WITH_CREDS(ctx);
    // The target is stored, never resolved here: the client resolves it.
    std::string n(name), t(target);
    if (symlinkat(t.c_str(), parent->fd.get(), n.c_str()) < 0)
        return -errno;
    return do_lookup(*parent, name, out);
}

int Passthrough::unlink(const fuse::Ctx &ctx, std::string_view name)
{
    if (opts_.readonly)
        return -EROFS;
    if (is_dot(name))
        return -EISDIR;
    PARENT_DIR(parent, ctx.nodeid);
    WITH_CREDS(ctx);
    std::string n(name);
    if (unlinkat(parent->fd.get(), n.c_str(), 0) < 0)
        return -errno;
    return 0;
}

int Passthrough::rmdir(const fuse::Ctx &ctx, std::string_view name)
{
    if (opts_.readonly)
        return -EROFS;
    if (name == ".")
        return -EINVAL;
    if (name == "..")
        return -ENOTEMPTY;
    PARENT_DIR(parent, ctx.nodeid);
    WITH_CREDS(ctx);
    std::string n(name);
    if (unlinkat(parent->fd.get(), n.c_str(), AT_REMOVEDIR) < 0)
        return -errno;
    return 0;
}

int Passthrough::rename(const fuse::Ctx &ctx, std::string_view name, uint64_t newdir,
                        std::string_view newname, uint32_t flags)
{
    if (opts_.readonly)
        return -EROFS;
    if (is_dot(name) || is_dot(newname))
        return -EINVAL;
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT))
        return -EINVAL;
    PARENT_DIR(from, ctx.nodeid);
    PARENT_DIR(to, newdir);
    WITH_CREDS(ctx);
    std::string a(name), b(newname);
    if (renameat2(from->fd.get(), a.c_str(), to->fd.get(), b.c_str(), flags) < 0)
        return -errno;
    return 0;
}

int Passthrough::link(const fuse::Ctx &ctx, uint64_t oldnode, std::string_view newname,
                      fuse_entry_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    if (is_dot(newname))
        return -EEXIST;
    PARENT_DIR(parent, ctx.nodeid);
    auto ino = inodes_.get(oldnode);
    if (!ino)
        return -ESTALE;
    if (ino->is_dir())
        return -EPERM;
    std::string n(newname);
    if (ino->is_lnk()) {
        // A symlink must not be reached through /proc (it could be followed):
        // link it by fd, which needs our own capabilities, after checking
        // that the caller may write the directory.
        {
            WITH_CREDS(ctx);
            if (faccessat(parent->fd.get(), "", W_OK | X_OK, AT_EACCESS | AT_EMPTY_PATH) < 0)
                return -errno;
        }
        if (linkat(ino->fd.get(), "", parent->fd.get(), n.c_str(), AT_EMPTY_PATH) < 0)
            return -errno;
        return do_lookup(*parent, newname, out);
    }
    WITH_CREDS(ctx);
    // linkat() through the /proc magic link names the inode itself (even a
    // symlink or an O_TMPFILE), without CAP_DAC_READ_SEARCH for AT_EMPTY_PATH.
    char path[32];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", ino->fd.get());
    if (linkat(AT_FDCWD, path, parent->fd.get(), n.c_str(), AT_SYMLINK_FOLLOW) < 0)
        return -errno;
    return do_lookup(*parent, newname, out);
}

} // namespace holdfast::fs
