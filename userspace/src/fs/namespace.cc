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

#define WITH_CREDS_IF(ctx, creates)                                                                \
    CredScope cred_(ctx, creds_for(creates), opts_.host_pids);                                     \
    if (!cred_.ok())                                                                               \
        return cred_.error();
// Ops that only use or remove objects: as the caller unless CredsPolicy says not.
#define WITH_CREDS(ctx) WITH_CREDS_IF(ctx, false)
// Ops that create an object, which must belong to the caller.
#define WITH_CREATE_CREDS(ctx) WITH_CREDS_IF(ctx, true)

int Passthrough::entry_op(const fuse::Ctx &ctx, const state::Inode &parent, std::string_view name,
                          fuse_entry_out &out, const std::function<int()> &make)
{
    if (auto e = replayed(ctx)) {
        if (e->phase == state::kJournalDone)
            return e->error ? e->error : entry_for(e->nodeid, out);
        // Started but not finished: if the name exists now, our predecessor
        // made it; answering EEXIST would report our own success as failure.
        int err = make();
        if (err && err != -EEXIST)
            return err;
        return do_lookup(parent, name, out, true);
    }
    journal_begin(ctx);
    int err = make();
    if (!err)
        err = do_lookup(parent, name, out, true);
    journal_done(err, err ? 0 : out.nodeid);
    return err;
}

int Passthrough::remove_op(const fuse::Ctx &ctx, const std::function<int()> &op)
{
    if (auto e = replayed(ctx)) {
        if (e->phase == state::kJournalDone)
            return e->error;
        // Started: a name already gone was removed by our predecessor.
        int err = op();
        return err == -ENOENT ? 0 : err;
    }
    journal_begin(ctx);
    int err = op();
    journal_done(err);
    return err;
}

int Passthrough::lookup(const fuse::Ctx &ctx, std::string_view name, fuse_entry_out &out)
{
    PARENT_DIR(parent, ctx.nodeid);
    // LOOKUP is journaled for its side effect: each reply is one kernel
    // reference (nlookup), which a resend must not count twice.
    if (auto e = replayed(ctx); e && e->phase == state::kJournalDone)
        return e->error ? e->error : entry_for(e->nodeid, out);
    WITH_CREDS(ctx);
    journal_begin(ctx);
    int err = do_lookup(*parent, name, out);
    journal_done(err, err ? 0 : out.nodeid);
    return err;
}

void Passthrough::forget(uint64_t nodeid, uint64_t nlookup)
{
    // Unlocked: a concurrent ref() may be reusing the slot.
    bool stored = nodeid < inodes_.capacity() &&
                  (__atomic_load_n(&inodes_.record(nodeid).flags, __ATOMIC_RELAXED) &
                   state::kInodeFdStored);
    if (inodes_.forget(nodeid, nlookup) && stored && rec_.store)
        unkeep_inode(nodeid);
}

int Passthrough::mknod(const fuse::Ctx &ctx, const fuse_mknod_in &in, std::string_view name,
                       fuse_entry_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    if (is_dot(name))
        return -EEXIST;
    PARENT_DIR(parent, ctx.nodeid);
    WITH_CREATE_CREDS(ctx);
    std::string n(name);
    return entry_op(ctx, *parent, name, out, [&] {
        return mknodat(parent->fd.get(), n.c_str(), in.mode, in.rdev) < 0 ? -errno : 0;
    });
}

int Passthrough::mkdir(const fuse::Ctx &ctx, const fuse_mkdir_in &in, std::string_view name,
                       fuse_entry_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    if (is_dot(name))
        return -EEXIST;
    PARENT_DIR(parent, ctx.nodeid);
    WITH_CREATE_CREDS(ctx);
    std::string n(name);
    return entry_op(ctx, *parent, name, out, [&] {
        return mkdirat(parent->fd.get(), n.c_str(), in.mode) < 0 ? -errno : 0;
    });
}

int Passthrough::symlink(const fuse::Ctx &ctx, std::string_view name, std::string_view target,
                         fuse_entry_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    if (is_dot(name))
        return -EEXIST;
    PARENT_DIR(parent, ctx.nodeid);
    WITH_CREATE_CREDS(ctx);
    // The target is stored, never resolved here: the client resolves it.
    std::string n(name), t(target);
    return entry_op(ctx, *parent, name, out, [&] {
        return symlinkat(t.c_str(), parent->fd.get(), n.c_str()) < 0 ? -errno : 0;
    });
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
    return remove_op(ctx, [&] {
        auto victim = known_inode(parent->fd.get(), n);
        if (unlinkat(parent->fd.get(), n.c_str(), 0) < 0)
            return -errno;
        keep_if_orphaned(std::move(victim));
        return 0;
    });
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
    return remove_op(ctx, [&] {
        return unlinkat(parent->fd.get(), n.c_str(), AT_REMOVEDIR) < 0 ? -errno : 0;
    });
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
    return remove_op(ctx, [&] {
        auto victim = (flags & RENAME_EXCHANGE) ? nullptr : known_inode(to->fd.get(), b);
        if (renameat2(from->fd.get(), a.c_str(), to->fd.get(), b.c_str(), flags) < 0)
            return -errno;
        keep_if_orphaned(std::move(victim));
        return 0;
    });
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
        return entry_op(ctx, *parent, newname, out, [&] {
            return linkat(ino->fd.get(), "", parent->fd.get(), n.c_str(), AT_EMPTY_PATH) < 0
                       ? -errno
                       : 0;
        });
    }
    WITH_CREDS(ctx);
    // linkat() through the /proc magic link names the inode itself (even a
    // symlink or an O_TMPFILE), without CAP_DAC_READ_SEARCH for AT_EMPTY_PATH.
    const FdName name(ino->fd.get());
    return entry_op(ctx, *parent, newname, out, [&] {
        return linkat(proc_self_fd_.get(), name, parent->fd.get(), n.c_str(), AT_SYMLINK_FOLLOW) < 0
                   ? -errno
                   : 0;
    });
}

} // namespace holdfast::fs
