// SPDX-License-Identifier: GPL-2.0
#include "fs/passthrough.h"

#include "fs/creds.h"
#include "fs/inode_keep.h"
#include "util/log.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <utility>

namespace holdfast::fs {

using state::Inode;

const char *cache_mode_name(CacheMode m)
{
    switch (m) {
    case CacheMode::never:
        return "never";
    case CacheMode::metadata:
        return "metadata";
    case CacheMode::automatic:
        return "auto";
    case CacheMode::always:
        return "always";
    }
    return "?";
}

bool parse_cache_mode(const char *s, CacheMode &out)
{
    for (CacheMode m : {CacheMode::never, CacheMode::metadata, CacheMode::automatic,
                        CacheMode::always}) {
        if (strcmp(s, cache_mode_name(m)) == 0) {
            out = m;
            return true;
        }
    }
    return false;
}

Passthrough::Passthrough(Options opts, state::InodeTable &inodes, state::HandleTable &handles,
                         Recovery rec)
    : opts_(std::move(opts)), inodes_(inodes), handles_(handles), rec_(rec)
{
    Fd root(::open(opts_.shared_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!root)
        throw std::runtime_error("cannot open shared directory '" + opts_.shared_dir +
                                 "': " + strerror(errno));
    struct stat st;
    if (fstat(root.get(), &st) < 0)
        throw std::runtime_error("cannot stat shared directory: " + std::string(strerror(errno)));
    root_rdonly_.reset(::open(opts_.shared_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root_rdonly_)
        throw std::runtime_error("cannot open shared directory for reading: " +
                                 std::string(strerror(errno)));
    proc_self_fd_.reset(::open("/proc/self/fd", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!proc_self_fd_)
        throw std::runtime_error("cannot open /proc/self/fd (is /proc mounted?): " +
                                 std::string(strerror(errno)));
    root_path_ = std::move(root);
    keep_budget_ = inode_store_budget(rec_.store ? rec_.store->capacity() : 0);

    switch (opts_.cache) {
    case CacheMode::never:
        entry_timeout_ = attr_timeout_ = 0;
        break;
    case CacheMode::metadata:
    case CacheMode::always:
        entry_timeout_ = attr_timeout_ = 86400;
        break;
    case CacheMode::automatic:
        entry_timeout_ = attr_timeout_ = 1.0;
        break;
    }
    if (opts_.switch_creds && geteuid() != 0) {
        LOG_INFO("not running as root: every file is accessed as uid %d", geteuid());
        opts_.switch_creds = false;
    }
}

uint64_t Passthrough::init_flags(uint64_t kflags)
{
    uint64_t f = FUSE_HANDLE_KILLPRIV_V2 | FUSE_DO_READDIRPLUS |
                 FUSE_READDIRPLUS_AUTO | FUSE_CACHE_SYMLINKS | FUSE_SETXATTR_EXT |
                 fuse::kNoExportSupport;
    if (opts_.posix_locks)
        f |= FUSE_POSIX_LOCKS;
    if (opts_.flock)
        f |= FUSE_FLOCK_LOCKS;
    if (opts_.cache == CacheMode::automatic)
        f |= FUSE_AUTO_INVAL_DATA;
    if (opts_.cache == CacheMode::never || opts_.cache == CacheMode::metadata)
        f |= fuse::kDirectIoAllowMmap; // mmap must work even without a page cache
    if (opts_.writeback && opts_.cache != CacheMode::never)
        f |= FUSE_WRITEBACK_CACHE;
    // Creates then carry the parent's group when it is one of the caller's
    // supplementary groups (the engine hands it over in Ctx::supp_gid).
    if (opts_.switch_creds)
        f |= fuse::kCreateSuppGroup;
    // Kernel passthrough: reads, writes and mmap of regular files go from
    // the kernel straight to our host file.  The kernel ignores it next to
    // the writeback cache (process_init_reply()), so we do not ask then.
    if (opts_.passthrough && backing_ && (kflags & fuse::kPassthrough)) {
        if (f & FUSE_WRITEBACK_CACHE)
            LOG_INFO("passthrough: off, the kernel does not allow it with the writeback cache");
        else
            f |= fuse::kPassthrough;
    } else if (opts_.passthrough && backing_) {
        LOG_INFO("passthrough: off, the kernel does not offer FUSE_PASSTHROUGH");
    }
    return f;
}

void Passthrough::init(const fuse::Negotiated &n)
{
    writeback_ = n.has(FUSE_WRITEBACK_CACHE);
    if (opts_.writeback && !writeback_)
        LOG_WARN("writeback cache requested but not negotiated");
    // What the connection settled, not our option: a restarted server
    // must keep answering opens the way the kernel was told to expect.
    passthrough_ = n.has(fuse::kPassthrough);
    inode_dax_ = n.has(FUSE_HAS_INODE_DAX);
}

void Passthrough::fill_entry(const Inode &ino, const struct stat &st, fuse_entry_out &out) const
{
    out.nodeid = ino.nodeid;
    out.generation = ino.generation;
    out.entry_valid = uint64_t(entry_timeout_);
    out.entry_valid_nsec = 0;
    out.attr_valid = uint64_t(attr_timeout_);
    out.attr_valid_nsec = 0;
    fill_attr(ino, st, out.attr);
}

void Passthrough::fill_attr(const Inode &ino, const struct stat &st, fuse_attr &a) const
{
    a.ino = st.st_ino;
    a.size = st.st_size;
    a.blocks = st.st_blocks;
    a.atime = st.st_atim.tv_sec;
    a.mtime = st.st_mtim.tv_sec;
    a.ctime = st.st_ctim.tv_sec;
    a.atimensec = st.st_atim.tv_nsec;
    a.mtimensec = st.st_mtim.tv_nsec;
    a.ctimensec = st.st_ctim.tv_nsec;
    a.mode = st.st_mode;
    a.nlink = st.st_nlink;
    a.uid = st.st_uid;
    a.gid = st.st_gid;
    a.rdev = st.st_rdev;
    a.blksize = st.st_blksize;
    a.flags = dax_attr_flags(ino, st);
}

bool Passthrough::handle_of(int fd, uint64_t dev, state::FileHandleBlob &fh)
{
    fh.bytes = 0;
    {
        std::lock_guard g(fs_handles_mu_);
        auto [it, first] = fs_handles_.try_emplace(dev, true);
        if (first) {
            // A filesystem we have not met yet (the shared directory, or a
            // mount inside it): is it one whose handles never reopen?
            struct statfs sf;
            if (fstatfs(fd, &sf) == 0 && !handles_reopen(long(sf.f_type), 0)) {
                it->second = false;
                LOG_INFO("device %u:%u is a FUSE mount: its file handles do not reopen "
                         "inodes, the fd store keeps their fds instead",
                         major(dev_t(dev)), minor(dev_t(dev)));
            }
        }
        if (!it->second)
            return false;
    }
    // File handles let a restarted server (or a migration target) reopen
    // the inode without a path; not every filesystem has them.
    struct {
        struct file_handle h;
        unsigned char buf[state::kMaxFileHandle];
    } h;
    h.h.handle_bytes = state::kMaxFileHandle;
    int mnt;
    if (name_to_handle_at(fd, "", &h.h, &mnt, AT_EMPTY_PATH) == 0) {
        fh.type = h.h.handle_type;
        fh.bytes = h.h.handle_bytes;
        memcpy(fh.data, h.h.f_handle, h.h.handle_bytes);
        return true;
    }
    if (errno == EOPNOTSUPP) {
        std::lock_guard g(fs_handles_mu_);
        if (std::exchange(fs_handles_[dev], false))
            LOG_INFO("device %u:%u has no file handles: the fd store keeps its inodes' fds",
                     major(dev_t(dev)), minor(dev_t(dev)));
    }
    return false;
}

int Passthrough::entry_from_fd(Fd owned, fuse_entry_out &out, bool *known)
{
    int fd = owned.get();
    struct stat st;
    if (fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    // Most LOOKUPs revalidate a name whose inode we already hold (entry
    // timeouts of a second): its handle is in the record, and the fd we
    // hold settles its identity, so name_to_handle_at() can be skipped.
    std::shared_ptr<Inode> ino = inodes_.ref_open(st);
    if (known)
        *known = ino != nullptr;
    if (ino) {
        entry_of_held(*ino, st, out);
        return 0;
    }
    state::FileHandleBlob fh;
    const bool by_handle = handle_of(fd, uint64_t(st.st_dev), fh);
    ino = inodes_.ref(std::move(owned), st, fh.bytes ? &fh : nullptr);
    if (!ino)
        return -ENFILE;
    // Before the reply: once the kernel has the node id, a crash must not
    // lose the only way back to it.
    if (!by_handle)
        keep_inode(*ino);
    fill_entry(*ino, st, out);
    return 0;
}

void Passthrough::entry_of_held(const Inode &ino, const struct stat &st, fuse_entry_out &out)
{
    if (!inodes_.record(ino.nodeid).handle_bytes)
        keep_inode(ino);
    fill_entry(ino, st, out);
}

void Passthrough::note_lookup(bool known)
{
    int s = known_score_.load(std::memory_order_relaxed);
    int next = known ? std::min(s + 1, kKnownMax) : std::max(s - 2, 0);
    // Racy on purpose: a lost update only nudges a heuristic.
    if (next != s)
        known_score_.store(next, std::memory_order_relaxed);
}

int Passthrough::do_lookup(const Inode &parent, std::string_view name, fuse_entry_out &out,
                           bool made)
{
    if (!parent.is_dir())
        return -ENOTDIR;
    std::string n(name);
    if (n == "..") {
        // The root's parent is outside the jail: it is the root itself.
        if (parent.nodeid == state::kRootNodeId)
            n = ".";
    }
    // A stat by name costs less than an open and a close, and where the
    // name leads to an inode we hold open that is all a LOOKUP needs (see
    // entry_from_fd()).  Where it leads to a new inode the stat is wasted,
    // so only while most LOOKUPs find known inodes (expired entries being
    // revalidated, rather than a tree met for the first time).
    if (!made && known_score_.load(std::memory_order_relaxed) >= kProbeAt) {
        struct stat st;
        if (fstatat(parent.fd.get(), n.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
            return -errno;
        if (auto ino = inodes_.ref_open(st)) {
            note_lookup(true);
            entry_of_held(*ino, st, out);
            return 0;
        }
    }
    Fd fd(openat(parent.fd.get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (!fd)
        return -errno;
    bool known;
    int err = entry_from_fd(std::move(fd), out, &known);
    if (!err && !made)
        note_lookup(known);
    return err;
}

int Passthrough::reopen_fd(int fd, int flags) const
{
    int r = openat(proc_self_fd_.get(), FdName(fd), (flags & ~O_NOFOLLOW) | O_CLOEXEC);
    return r < 0 ? -errno : r;
}

int Passthrough::reopen(const Inode &ino, int flags) const
{
    // Reopening a symlink through /proc would follow it, possibly out of the jail.
    if (ino.is_lnk())
        return -ELOOP;
    return reopen_fd(ino.fd.get(), flags);
}

std::shared_ptr<state::Handle> Passthrough::handle_for(uint64_t fh, uint64_t nodeid) const
{
    auto h = handles_.get(fh);
    if (!h || !h->inode || h->inode->nodeid != nodeid)
        return nullptr;
    return h;
}

uint32_t Passthrough::open_reply_flags(bool dir) const
{
    switch (opts_.cache) {
    case CacheMode::never:
    case CacheMode::metadata:
        return dir ? 0 : FOPEN_DIRECT_IO;
    case CacheMode::always:
        return dir ? FOPEN_CACHE_DIR | FOPEN_KEEP_CACHE : FOPEN_KEEP_CACHE;
    case CacheMode::automatic:
        return 0;
    }
    return 0;
}

void Passthrough::open_reply(fuse_open_out &out, int32_t backing_id) const
{
    if (backing_id <= 0) {
        out.open_flags = open_reply_flags(false);
        return;
    }
    // The kernel does the I/O on our host file: no page cache of its own
    // to keep or bypass, so the cache mode's FOPEN_* bits do not apply
    // (FOPEN_DIRECT_IO would even override the passthrough).
    out.open_flags = fuse::kFopenPassthrough;
    out.padding = uint32_t(backing_id); // fuse_open_out.backing_id (7.40)
}

int32_t Passthrough::backing_for(const Inode &ino, int fd, uint64_t unique)
{
    if (!passing_through() || !ino.is_reg() || backing_refused_.load(std::memory_order_relaxed))
        return 0;
    int id = backing_ids_.acquire(ino.nodeid, [&] {
        int r = backing_->open(fd);
        if (r > 0)
            return r;
        // EPERM: not CAP_SYS_ADMIN; ELOOP: the host file is on a stacked
        // filesystem deeper than max_stack_depth allows.  The file is
        // served by us instead, which the kernel accepts as long as no
        // other open of the inode is passed through.
        if (r == -EPERM && !backing_refused_.exchange(true))
            LOG_WARN("passthrough: the kernel refuses backing files (%s): serving I/O ourselves",
                     strerror(-r));
        else if (r != -EPERM)
            LOG_DBG("passthrough: no backing file for node %llu: %s",
                    (unsigned long long)ino.nodeid, strerror(-r));
        return 0;
    });
    if (id <= 0)
        return 0;
    // A crash before the handle record names the id would leak it: the
    // journal keeps it so the resent request can let it go.
    if (rec_.journal)
        rec_.journal->note(unique, uint32_t(id));
    pt_opens_.fetch_add(1, std::memory_order_relaxed);
    return id;
}

void Passthrough::backing_put(uint64_t nodeid, int32_t id)
{
    int32_t last = backing_ids_.release(nodeid, id);
    if (!last || !backing_)
        return;
    int r = backing_->close(last);
    // ENOENT: a predecessor closed it just before it died.
    if (r < 0 && r != -ENOENT)
        LOG_WARN("passthrough: cannot close backing id %d: %s", last, strerror(-r));
}

int Passthrough::make_handle(std::shared_ptr<Inode> ino, Fd fd, int flags, bool dir,
                             uint64_t opened_by, fuse_open_out &out, bool pass)
{
    auto h = std::make_shared<state::Handle>();
    h->opened_by = opened_by;
    // Registered before the record goes live, so the record names it.
    if (pass && !dir)
        h->backing_id = backing_for(*ino, fd.get(), opened_by);
    ino->open_count.fetch_add(1, std::memory_order_relaxed);
    h->inode = std::move(ino);
    h->fd = std::move(fd);
    h->flags = flags;
    h->dir = dir;
    auto inode = h->inode;
    const int32_t backing_id = h->backing_id;
    uint64_t fh = handles_.add(std::move(h));
    if (!fh) {
        inode->open_count.fetch_sub(1, std::memory_order_relaxed);
        backing_put(inode->nodeid, backing_id);
        return -ENFILE;
    }
    // An open file's inode, of all, must come back after a crash: where no
    // handle can bring it, it may use the room kept for open files.
    if (!inodes_.record(inode->nodeid).handle_bytes)
        keep_inode(*inode, true);
    out.fh = fh;
    if (dir)
        out.open_flags = open_reply_flags(dir);
    else
        open_reply(out, backing_id);
    return 0;
}

int Passthrough::statfs(const fuse::Ctx &ctx, fuse_statfs_out &out)
{
    auto ino = inodes_.get(ctx.nodeid);
    if (!ino)
        return -ESTALE;
    struct statvfs sv;
    if (fstatvfs(ino->fd.get(), &sv) < 0)
        return -errno;
    out.st.blocks = sv.f_blocks;
    out.st.bfree = sv.f_bfree;
    out.st.bavail = sv.f_bavail;
    out.st.files = sv.f_files;
    out.st.ffree = sv.f_ffree;
    out.st.bsize = sv.f_bsize;
    out.st.namelen = sv.f_namemax;
    out.st.frsize = sv.f_frsize;
    return 0;
}

int Passthrough::access(const fuse::Ctx &ctx, const fuse_access_in &in)
{
    auto ino = inodes_.get(ctx.nodeid);
    if (!ino)
        return -ESTALE;
    if (ino->is_lnk())
        return 0; // permission bits of symlinks are never checked
    if (opts_.readonly && (in.mask & W_OK))
        return -EROFS;
    CredScope cred(ctx, creds_for(false), opts_.host_pids);
    if (!cred.ok())
        return cred.error();
    // AT_EACCESS: check with the effective ids we just switched to.
    if (faccessat(proc_self_fd_.get(), FdName(ino->fd.get()), in.mask, AT_EACCESS) < 0)
        return -errno;
    return 0;
}

int Passthrough::syncfs(const fuse::Ctx &)
{
    if (::syncfs(root_rdonly_.get()) < 0)
        return -errno;
    return 0;
}

} // namespace holdfast::fs
