// SPDX-License-Identifier: GPL-2.0
// What makes a restart invisible, on the filesystem's side: rebuilding from
// the state region, reopening inodes and files lazily, keeping the fds no
// name can bring back in the fd store, and answering resent requests from
// the journal instead of executing them twice.
#include "fs/passthrough.h"

#include "fs/inode_keep.h"
#include "util/fault.h"
#include "util/log.h"

#include <cerrno>
#include <climits>
#include <cstring>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdexcept>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <unordered_set>

namespace holdfast::fs {

using state::Inode;

void Passthrough::start_fresh()
{
    struct stat st;
    if (fstat(root_path_.get(), &st) < 0)
        throw std::runtime_error("cannot stat shared directory: " + std::string(strerror(errno)));
    inodes_.set_root(std::move(root_path_), st);
    inodes_.set_resolver(
        [this](uint64_t id, const state::InodeRecord &r) { return resolve_inode(id, r); },
        fd_budget());
}

size_t Passthrough::fd_budget()
{
    // Half the fd limit for inodes' O_PATH fds; the rest is for open files,
    // lock owners, clones and the store's traffic.
    rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
        return 1u << 20;
    return size_t(rl.rlim_cur / 2);
}

std::string Passthrough::lock_name(uint64_t nodeid, uint64_t owner)
{
    char b[48];
    snprintf(b, sizeof(b), "l%llu.%llx", (unsigned long long)nodeid, (unsigned long long)owner);
    return b;
}

void Passthrough::drop_crashed_backing(const state::JournalEntry &e)
{
    const int32_t id = int32_t(e.u32);
    if (e.phase != state::kJournalStarted || id <= 0 || !backing_ || backing_ids_.in_use(id))
        return;
    int r = backing_->close(id);
    if (r == 0)
        LOG_INFO("recovery: closed backing id %d a crashed request left", id);
}

void Passthrough::destroy()
{
    // The guest's kernel let go of its mappings with everything else.
    dax_drop_all();
    size_t files = 0, nodes = 0;
    for (uint64_t fh = 1; fh < handles_.high(); fh++) {
        const state::HandleRecord &hr = handles_.record(fh);
        if (hr.state.load(std::memory_order_acquire) != state::kLive)
            continue;
        const bool stored = hr.flags.load(std::memory_order_acquire) & state::kHandleFdStored;
        auto h = handles_.remove(fh);
        if (!h)
            continue;
        files++;
        if (h->inode)
            h->inode->open_count.fetch_sub(1, std::memory_order_relaxed);
        if (stored && rec_.store)
            rec_.store->remove("h" + std::to_string(fh));
    }
    for (uint64_t id = state::kRootNodeId + 1; id < inodes_.high(); id++) {
        if (inodes_.record(id).state.load(std::memory_order_acquire) != state::kLive)
            continue;
        if (uint64_t n = inodes_.nlookup(id)) {
            forget(id, n);
            nodes++;
        }
    }
    // The kernel drops its backing ids with the session.
    backing_ids_.clear();
    // And the next session numbers its requests from the start: a record
    // of this one must never answer (or give back references for) one of
    // the next's.
    if (rec_.journal)
        rec_.journal->clear();
    LOG_INFO("session ended: closed %zu files, forgot %zu inodes", files, nodes);
}

std::vector<state::LentFd> Passthrough::lend_fds(std::vector<std::shared_ptr<const void>> &keep)
{
    std::vector<state::LentFd> out;
    for (uint64_t id = state::kRootNodeId + 1; id < inodes_.high(); id++) {
        if (inodes_.record(id).state.load(std::memory_order_acquire) != state::kLive)
            continue;
        // Only what is open now: opening the rest would cost the downtime
        // what the destination saves (it opens those by handle itself).
        auto ino = inodes_.peek(id);
        if (!ino || !ino->fd)
            continue;
        out.push_back({'i', ino->fd.get(), id, 0});
        {
            std::lock_guard g(ino->lock_mu);
            for (auto &[owner, lo] : ino->lock_fds)
                if (lo.fd)
                    out.push_back({'l', lo.fd.get(), id, owner});
        }
        keep.push_back(std::move(ino));
    }
    for (uint64_t fh = 1; fh < handles_.high(); fh++) {
        if (handles_.record(fh).state.load(std::memory_order_acquire) != state::kLive)
            continue;
        auto h = handles_.get(fh);
        if (!h || !h->fd)
            continue;
        out.push_back({'h', h->fd.get(), fh, 0});
        keep.push_back(std::move(h));
    }
    return out;
}

std::vector<state::MigratedPath> Passthrough::inode_paths(size_t &missing)
{
    std::vector<state::MigratedPath> out;
    missing = 0;
    auto path_of = [this](int fd) {
        char buf[PATH_MAX + 1];
        ssize_t n = readlinkat(proc_self_fd_.get(), FdName(fd), buf, PATH_MAX);
        return n > 0 ? std::string(buf, size_t(n)) : std::string();
    };
    auto root = inodes_.get(state::kRootNodeId);
    if (!root)
        return out;
    // In the sandbox's chroot the shared directory is "/".
    const std::string top = path_of(root->fd.get());
    const std::string prefix = top == "/" ? "/" : top + "/";
    for (uint64_t id = state::kRootNodeId + 1; id < inodes_.high(); id++) {
        const state::InodeRecord &r = inodes_.record(id);
        if (r.state.load(std::memory_order_acquire) != state::kLive)
            continue;
        // What is not open now is opened for the moment only: through the
        // table it would push the others out of the fd budget, one by one.
        // (One the fd store keeps is taken through the table: its fd is
        // there once.)
        Fd transient;
        auto ino = (r.flags & state::kInodeFdStored) ? inodes_.get(id) : inodes_.peek(id);
        int fd = ino ? ino->fd.get() : -1;
        if (!ino) {
            transient = resolve_inode(id, r);
            fd = transient.get();
        }
        if (fd < 0) {
            missing++;
            continue;
        }
        std::string p = path_of(fd);
        struct stat st;
        if (top.empty() || p.compare(0, prefix.size(), prefix) != 0 ||
            fstatat(fd, "", &st, AT_EMPTY_PATH) < 0 ||
            (st.st_nlink == 0 && !S_ISDIR(st.st_mode))) {
            missing++; // unlinked (the kernel says "... (deleted)"), or elsewhere
            continue;
        }
        p.erase(0, prefix.size());
        if (!state::valid_migrated_path(p)) {
            missing++;
            continue;
        }
        out.push_back({id, std::move(p)});
    }
    return out;
}

size_t Passthrough::rebind_by_path(const std::vector<state::MigratedPath> &paths,
                                   std::vector<fdstore::NamedFd> &opened, bool foreign_root)
{
    if (foreign_root) {
        // The source served another directory: its file handles may open
        // its files, outside ours.  Only paths count; what has none stays
        // unresolved.
        size_t pi = 0;
        for (uint64_t id = state::kRootNodeId + 1; id < inodes_.high(); id++) {
            while (pi < paths.size() && paths[pi].nodeid < id)
                pi++;
            if (inodes_.record(id).state.load(std::memory_order_acquire) == state::kLive &&
                !(pi < paths.size() && paths[pi].nodeid == id)) {
                struct stat none {};
                inodes_.rebind(id, none, nullptr);
            }
        }
    }
    std::unordered_set<std::string> lent;
    for (const auto &l : opened)
        lent.insert(l.name);
    size_t found = 0;
    for (const state::MigratedPath &p : paths) {
        std::string name = "i" + std::to_string(p.nodeid);
        const state::InodeRecord &r = inodes_.record(p.nodeid);
        if (lent.count(name) || r.state.load(std::memory_order_acquire) != state::kLive)
            continue;
        // The source's file handle first: on the same file system it is
        // exact, where a path may have been renamed over meanwhile.
        if (!foreign_root)
            if (Fd fd = resolve_inode(p.nodeid, r)) {
                opened.push_back({std::move(name), std::move(fd)});
                continue;
            }
        // The path comes from the stream: it must not lead out of the
        // shared directory, whatever symlinks the guest left on the way.
        struct open_how how {};
        how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        Fd fd(int(syscall(SYS_openat2, root_rdonly_.get(), p.path.c_str(), &how, sizeof(how))));
        struct stat st;
        if (!fd || fstat(fd.get(), &st) < 0 || (st.st_mode & S_IFMT) != (r.mode & S_IFMT)) {
            LOG_DBG("migration: inode %llu: nothing of its type at its path",
                    (unsigned long long)p.nodeid);
            if (foreign_root) {
                struct stat none {};
                inodes_.rebind(p.nodeid, none, nullptr);
            }
            continue;
        }
        state::FileHandleBlob fh;
        const bool by_handle = handle_of(fd.get(), uint64_t(st.st_dev), fh);
        inodes_.rebind(p.nodeid, st, fh.bytes ? &fh : nullptr);
        // With a file handle the table reopens it within its fd budget;
        // holding every fd found here would run out of them first.
        if (!by_handle)
            opened.push_back({std::move(name), std::move(fd)});
        found++;
    }
    return found;
}

std::string Passthrough::take_migrated(bool strict, size_t &unresolved,
                                       std::vector<fdstore::NamedFd> lent,
                                       const std::vector<state::MigratedPath> &paths,
                                       bool foreign_root)
{
    unresolved = 0;
    lent_used_.store(0, std::memory_order_relaxed);
    found_by_path_ = 0;
    borrowed_.clear();
    for (const auto &l : lent)
        if (!l.name.empty() && l.name[0] == 'l')
            lent_used_.fetch_add(1, std::memory_order_relaxed); // recover() hands them over
        else
            borrowed_.insert(l.name);
    // start_fresh() gave the shared directory's fd to the table as node 1;
    // recover() wants it back to check the region against.
    auto root = inodes_.get(state::kRootNodeId);
    if (!root)
        return "the shared directory is not node 1";
    root_path_.reset(fcntl(root->fd.get(), F_DUPFD_CLOEXEC, 0));
    if (!root_path_)
        return std::string("dup of the shared directory: ") + strerror(errno);
    if (!paths.empty() || foreign_root)
        found_by_path_ = rebind_by_path(paths, lent, foreign_root);
    try {
        recover(std::move(lent));
    } catch (const std::runtime_error &e) {
        return e.what();
    }
    // Resolve everything now, while the guest is still paused: a file that
    // is gone must fail the migration (strict) rather than a guest's
    // syscall later.  Open files first: an unlinked one lives only as long
    // as somebody holds it, and the source lets go once the guest runs
    // here; its handle's fd (and the fd store, for our own successor)
    // keeps it.
    std::string which;
    size_t lost_files = 0;
    for (uint64_t fh = 1; fh < handles_.high(); fh++) {
        if (handles_.record(fh).state.load(std::memory_order_acquire) != state::kLive)
            continue;
        auto h = handles_.get(fh);
        if (!h) {
            lost_files++;
            continue;
        }
        keep_if_orphaned(h->inode);
    }
    if (lost_files && strict)
        return std::to_string(lost_files) + " migrated open files do not reopen here";
    const uint64_t high = inodes_.high();
    for (uint64_t id = state::kRootNodeId + 1; id < high; id++) {
        if (inodes_.record(id).state.load(std::memory_order_acquire) != state::kLive)
            continue;
        if (auto ino = inodes_.get(id)) {
            // Migration does not carry the source's store: what no handle
            // of ours brings back goes into our own, for our successor.
            if (!inodes_.record(id).handle_bytes)
                keep_inode(*ino, ino->open_count.load(std::memory_order_relaxed) > 0);
            continue;
        }
        if (++unresolved <= 8)
            which += (which.empty() ? "" : ", ") + std::to_string(id);
    }
    if (unresolved && strict)
        return std::to_string(unresolved) + " migrated inodes do not resolve here (node ids " +
               which + (unresolved > 8 ? ", ...)" : ")");
    if (unresolved || lost_files)
        LOG_WARN("%zu migrated inodes (node ids %s) and %zu open files do not resolve here: the "
                 "guest gets ESTALE for them",
                 unresolved, which.c_str(), lost_files);
    {
        // Everything is resolved: lent fds nobody claimed (their inode or
        // file did not match) are of no further use.
        std::lock_guard g(stored_mu_);
        stored_.clear();
        borrowed_.clear();
    }
    return "";
}

void Passthrough::recover(std::vector<fdstore::NamedFd> stored)
{
    struct stat st;
    if (fstat(root_path_.get(), &st) < 0)
        throw std::runtime_error("cannot stat shared directory: " + std::string(strerror(errno)));
    const state::InodeRecord &root = inodes_.record(state::kRootNodeId);
    if (root.dev != uint64_t(st.st_dev) || root.ino != uint64_t(st.st_ino))
        throw std::runtime_error("refusing state region: it describes another shared directory");

    std::vector<std::pair<std::string, Fd>> locks;
    for (auto &nf : stored) {
        if (!nf.name.empty() && nf.name[0] == 'l')
            locks.emplace_back(std::move(nf.name), std::move(nf.fd));
        else if (!nf.name.empty() && (nf.name[0] == 'i' || nf.name[0] == 'h'))
            stored_[nf.name] = std::move(nf.fd);
    }
    inodes_.recover(std::move(root_path_),
                    [this](uint64_t id, const state::InodeRecord &r) { return resolve_inode(id, r); });
    // The inodes our predecessors put in the store count against its room.
    size_t kept = 0;
    for (uint64_t id = state::kRootNodeId + 1; id < inodes_.high(); id++) {
        const state::InodeRecord &r = inodes_.record(id);
        kept += r.state.load(std::memory_order_acquire) == state::kLive &&
                (r.flags & state::kInodeFdStored);
    }
    kept_inodes_.store(kept, std::memory_order_relaxed);
    inodes_.set_resolver(
        [this](uint64_t id, const state::InodeRecord &r) { return resolve_inode(id, r); },
        fd_budget());
    handles_.recover(
        [this](uint64_t fh, const state::HandleRecord &r) { return resolve_handle(fh, r); },
        inodes_.capacity());
    // The kernel still holds the backing ids live handles were opened with
    // (the connection, and so its id table, outlived our predecessor):
    // count them, so the last RELEASE of each inode closes its id.
    for (uint64_t fh = 1; fh < handles_.high(); fh++) {
        const state::HandleRecord &r = handles_.record(fh);
        if (r.state.load(std::memory_order_acquire) == state::kLive && r.kind == state::kFile)
            backing_ids_.adopt(r.nodeid, r.backing_id);
    }
    if (size_t n = backing_ids_.size())
        LOG_INFO("recovery: %zu inodes have kernel passthrough backing ids", n);
    // Lock owners' fds carry the locks themselves: hand them back to their
    // inodes now, so the next lock request of that owner finds them.
    for (auto &[name, fd] : locks) {
        unsigned long long nodeid, owner;
        if (sscanf(name.c_str(), "l%llu.%llx", &nodeid, &owner) != 2)
            continue;
        auto ino = inodes_.get(nodeid);
        if (!ino) {
            LOG_WARN("recovery: lock fd %s has no inode; dropping it", name.c_str());
            if (rec_.store)
                rec_.store->remove(name);
            continue;
        }
        std::lock_guard g(ino->lock_mu);
        ino->lock_fds[owner].fd = std::move(fd);
    }
}

Fd Passthrough::take_stored(const std::string &name)
{
    std::lock_guard g(stored_mu_);
    auto it = stored_.find(name);
    if (it == stored_.end())
        return Fd();
    // Keep our own copy: the store still holds one, but a handle resolved
    // twice (it can't be, but cheaply safe) must not see a closed fd.
    Fd fd = std::move(it->second);
    stored_.erase(it);
    return fd;
}

int Passthrough::bad_handle(uint64_t fh) const
{
    // The caller's get() already tried to reopen it: only look.
    if (fh > 0 && fh < handles_.high() && !handles_.peek(fh) &&
        handles_.record(fh).state.load(std::memory_order_acquire) == state::kLive)
        return -ESTALE;
    return -EBADF;
}

Fd Passthrough::resolve_inode(uint64_t nodeid, const state::InodeRecord &r)
{
    if (r.flags & state::kInodeFdStored) {
        Fd fd = take_stored("i" + std::to_string(nodeid));
        if (!fd)
            LOG_WARN("recovery: inode %llu should be in the fd store but is not",
                     (unsigned long long)nodeid);
        return fd;
    }
    if (Fd fd = take_stored("i" + std::to_string(nodeid))) {
        // Lent by a migration source on this host: trusted only as far as
        // it is the file the record names.
        struct stat st;
        if (fstat(fd.get(), &st) == 0 && uint64_t(st.st_dev) == r.dev &&
            uint64_t(st.st_ino) == r.ino) {
            if (borrowed_.count("i" + std::to_string(nodeid)))
                lent_used_.fetch_add(1, std::memory_order_relaxed);
            return fd;
        }
        LOG_WARN("migration: the fd lent for inode %llu is another file; opening it by handle",
                 (unsigned long long)nodeid);
    }
    // The record is shared memory a crash may have left half-written:
    // never copy more than the handle buffer holds.
    if (!r.handle_bytes || r.handle_bytes > state::kMaxFileHandle)
        return Fd();
    struct {
        struct file_handle h;
        unsigned char buf[state::kMaxFileHandle];
    } fh;
    fh.h.handle_bytes = r.handle_bytes;
    fh.h.handle_type = r.handle_type;
    memcpy(fh.h.f_handle, r.handle, r.handle_bytes);
    // mount_fd must be a real open file (O_PATH fds are refused with EBADF).
    Fd fd(open_by_handle_at(root_rdonly_.get(), &fh.h, O_PATH | O_CLOEXEC));
    if (!fd) {
        LOG_DBG("recovery: inode %llu: open_by_handle_at: %s", (unsigned long long)nodeid,
                strerror(errno));
        return Fd();
    }
    // A handle names an inode; make sure it is still the one we knew.
    struct stat st;
    if (fstat(fd.get(), &st) < 0 || uint64_t(st.st_dev) != r.dev || uint64_t(st.st_ino) != r.ino)
        return Fd();
    return fd;
}

std::shared_ptr<state::Handle> Passthrough::resolve_handle(uint64_t fh, const state::HandleRecord &r)
{
    auto ino = inodes_.get(r.nodeid);
    if (!ino)
        return nullptr;
    Fd fd = take_stored("h" + std::to_string(fh));
    if (fd && !(r.flags.load(std::memory_order_acquire) & state::kHandleFdStored)) {
        // Lent by a migration source on this host (see resolve_inode()).
        struct stat st;
        if (fstat(fd.get(), &st) < 0 || uint64_t(st.st_dev) != ino->dev ||
            uint64_t(st.st_ino) != ino->ino) {
            LOG_WARN("migration: the fd lent for fh %llu is another file; reopening it",
                     (unsigned long long)fh);
            fd.reset();
        } else if (borrowed_.count("h" + std::to_string(fh))) {
            lent_used_.fetch_add(1, std::memory_order_relaxed);
        }
    }
    int open_flags = int(r.open_flags);
    if (!fd) {
        // Reopen with the flags it had, minus those that act only at open.
        int flags = int(r.open_flags) & ~kOnlyAtOpen;
        if (r.kind == state::kDir)
            flags = O_RDONLY | O_DIRECTORY;
        int nfd = reopen(*ino, flags & ~O_DIRECT);
        if (nfd < 0) {
            LOG_WARN("recovery: cannot reopen fh %llu: %s", (unsigned long long)fh,
                     strerror(-nfd));
            return nullptr;
        }
        fd.reset(nfd);
        // O_DIRECT again (--direct-io), if the file's fs takes it.
        open_flags = direct_flags(nfd, open_flags);
    }
    auto h = std::make_shared<state::Handle>();
    ino->open_count.fetch_add(1, std::memory_order_relaxed);
    h->inode = std::move(ino);
    h->fd = std::move(fd);
    h->flags = open_flags;
    h->dir = r.kind == state::kDir;
    h->opened_by = r.opened_by;
    h->backing_id = r.kind == state::kFile ? r.backing_id : 0;
    return h;
}

void Passthrough::keep_inode(const Inode &ino, bool open)
{
    auto kept = [&] {
        return __atomic_load_n(&inodes_.record(ino.nodeid).flags, __ATOMIC_RELAXED) &
               state::kInodeFdStored;
    };
    // The root comes back from --shared-dir.
    if (!rec_.store || ino.nodeid == state::kRootNodeId || kept())
        return;
    // One at a time: two LOOKUPs of the same new inode must not store it
    // twice, nor both take the store's last free slot.
    std::lock_guard g(keep_mu_);
    if (kept())
        return;
    const size_t limit = inode_keep_limit(keep_budget_, open);
    if (kept_inodes_.load(std::memory_order_relaxed) >= limit) {
        if (!keep_refused_.exchange(true))
            LOG_WARN("the fd store keeps %zu inodes' fds, all it has room for%s: inode %llu "
                     "and further ones that no file handle can reopen will answer ESTALE "
                     "after a crash (raise holdfast-fdstore --max-fds, or systemd's "
                     "FileDescriptorStoreMax=)",
                     limit, open ? "" : " besides open files", (unsigned long long)ino.nodeid);
        return;
    }
    if (rec_.store->store("i" + std::to_string(ino.nodeid), ino.fd.get()) == 0) {
        inodes_.set_record_flags(ino.nodeid, state::kInodeFdStored);
        kept_inodes_.fetch_add(1, std::memory_order_relaxed);
    }
}

void Passthrough::unkeep_inode(uint64_t nodeid)
{
    const std::string name = "i" + std::to_string(nodeid);
    rec_.store->remove(name);
    // Our copy from the store, if the inode was never resolved since (a
    // LOOKUP after the restart brought its own fd).
    take_stored(name);
    kept_inodes_.fetch_sub(1, std::memory_order_relaxed);
}

std::shared_ptr<Inode> Passthrough::known_inode(int dirfd, const std::string &name)
{
    if (!rec_.store)
        return nullptr;
    struct stat st;
    if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode))
        return nullptr;
    return inodes_.find(st.st_dev, st.st_ino);
}

void Passthrough::keep_if_orphaned(std::shared_ptr<Inode> ino)
{
    // Only a file somebody still has open can be reached after its last
    // name is gone; only then is the fd store its sole way back.
    if (!ino || !ino->open_count.load(std::memory_order_relaxed))
        return;
    struct stat st;
    if (fstatat(ino->fd.get(), "", &st, AT_EMPTY_PATH) == 0 && st.st_nlink == 0)
        keep_inode(*ino, true);
}

std::optional<state::JournalEntry> Passthrough::replayed(const fuse::Ctx &ctx)
{
    if (!ctx.resent || !rec_.journal)
        return std::nullopt;
    auto e = rec_.journal->take(ctx.unique);
    if (e && e->opcode != ctx.opcode) {
        LOG_WARN("journal: unique %#llx was opcode %u, resent as %u; ignoring the record",
                 (unsigned long long)ctx.unique, e->opcode, ctx.opcode);
        return std::nullopt;
    }
    if (e)
        replayed_.fetch_add(1, std::memory_order_relaxed);
    return e;
}

void Passthrough::journal_begin(const fuse::Ctx &ctx, uint64_t u64)
{
    if (rec_.journal)
        rec_.journal->begin(ctx.opcode, ctx.unique, u64);
}

void Passthrough::journal_done(int err, uint64_t nodeid, uint64_t fh, uint32_t u32)
{
    if (rec_.journal)
        fault::point(rec_.journal->mine().opcode, fault::Point::mid);
    if (rec_.journal)
        rec_.journal->done(err, nodeid, fh, u32);
}

void Passthrough::give_back_refs(const std::vector<uint64_t> &refs)
{
    if (refs.empty())
        return;
    for (size_t i = 0; i < refs.size(); i++) {
        // Off the list first: a crash between the two leaks the reference
        // (the next server does not give it back again), never one the
        // kernel holds.
        rec_.journal->drop_ref(i);
        forget(refs[i], 1);
    }
    rec_.journal->clear_refs();
    LOG_INFO("journal: resent READDIRPLUS gave back the %zu references its first reply counted",
             refs.size());
}

int Passthrough::entry_for(uint64_t nodeid, fuse_entry_out &out)
{
    auto ino = inodes_.get(nodeid);
    if (!ino)
        return -ESTALE;
    struct stat st;
    if (fstatat(ino->fd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    fill_entry(*ino, st, out);
    return 0;
}

} // namespace holdfast::fs
