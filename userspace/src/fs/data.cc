// SPDX-License-Identifier: GPL-2.0
// Open files and their data: open/create/tmpfile, read/write, flush,
// release, fsync, fallocate, lseek, copy_file_range.
#include "fs/creds.h"
#include "fs/passthrough.h"

#include "util/log.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace holdfast::fs {

namespace {
// Flags only meaningful at creation, or that would change how the kernel
// above us sees the file, never reach the host open.  O_DIRECT comes later,
// with --direct-io, from direct_flags().
constexpr int kStripOnOpen = O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT | O_NOATIME;

bool wants_write(int flags) { return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC); }

// What the host fs needs aligned for direct I/O on `fd`: memory << 32 |
// file offset and length.  Linux 6.1+ tells (STATX_DIOALIGN); a memory
// filesystem needs nothing; anything else that does not tell gets a page,
// which every block device takes.
uint64_t dio_alignment(int fd, fuse::IoPath path)
{
    struct statx stx;
    if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
        (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_mem_align && stx.stx_dio_offset_align)
        return uint64_t(stx.stx_dio_mem_align) << 32 | stx.stx_dio_offset_align;
    if (path == fuse::IoPath::inline_)
        return uint64_t(1) << 32 | 1;
    return uint64_t(4096) << 32 | 4096;
}
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
    // A kernel never sends OPEN for a FIFO, socket or device (it opens
    // those itself); a hostile client might, to block a worker on a FIFO
    // or reach a host device.  Only regular files are opened here.
    if (!ino->is_reg())
        return -EINVAL;
    if (auto e = replayed(ctx)) {
        if (e->phase == state::kJournalDone)
            return open_from_journal(*e, nullptr, out, false);
        drop_crashed_backing(*e);
    }
    journal_begin(ctx);
    int err = open_file(ctx, std::move(ino), in, out);
    journal_done(err, 0, err ? 0 : out.fh);
    return err;
}

int Passthrough::open_from_journal(const state::JournalEntry &e, fuse_entry_out *entry,
                                   fuse_open_out &out, bool dir)
{
    // The predecessor opened (and maybe created) it; the kernel never got
    // the reply.  Its handle is live in the table: answer with it.
    if (e.error)
        return e.error;
    if (entry) {
        int err = entry_for(e.nodeid, *entry);
        if (err)
            return err;
    }
    if (!handles_.get(e.fh))
        return -EBADF;
    out.fh = e.fh;
    // The same backing id as the lost reply: it is registered (the live
    // record names it) and counted, so nothing is registered twice.
    if (dir)
        out.open_flags = open_reply_flags(dir);
    else
        open_reply(out, handles_.record(e.fh).backing_id);
    return 0;
}

int Passthrough::open_file(const fuse::Ctx &ctx, std::shared_ptr<state::Inode> ino,
                           const fuse_open_in &in, fuse_open_out &out)
{
    int flags = int(in.flags);
    int hflags = host_open_flags(flags, writeback_);
    int fd;
    {
        CredScope cred(ctx, creds_for(false), opts_.host_pids);
        if (!cred.ok())
            return cred.error();
        fd = reopen(*ino, hflags);
    }
    if (fd < 0)
        return fd;
    Fd owned(fd);
    hflags = direct_flags(fd, hflags | (flags & O_DIRECT));
    if ((in.open_flags & FUSE_OPEN_KILL_SUIDGID) && (flags & O_TRUNC)) {
        int err = kill_suidgid(fd);
        if (err)
            return err;
    }
    return make_handle(std::move(ino), std::move(owned), hflags, false, ctx.unique, out, true);
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
    auto e = replayed(ctx);
    if (e && e->phase == state::kJournalDone) {
        return open_from_journal(*e, &entry, out, false);
    }
    // Started before a crash: the file may exist because of us; O_EXCL
    // would turn our own success into EEXIST.
    if (e) {
        flags &= ~O_EXCL;
        drop_crashed_backing(*e);
    } else
        journal_begin(ctx);
    int err = create_file(ctx, *parent, name, flags, in.mode, entry, out);
    if (!e)
        journal_done(err, err ? 0 : entry.nodeid, err ? 0 : out.fh);
    return err;
}

int Passthrough::create_file(const fuse::Ctx &ctx, const state::Inode &parent,
                             std::string_view name, int flags, uint32_t mode,
                             fuse_entry_out &entry, fuse_open_out &out)
{
    // O_NOFOLLOW: an existing symlink at this name must not be followed
    // (it may point out of the jail); the client resolved links already.
    int hflags = host_open_flags(flags, writeback_) | O_CREAT | (flags & O_EXCL) | O_NOFOLLOW;
    std::string n(name);
    Fd fd;
    {
        CredScope cred(ctx, creds_for(true), opts_.host_pids);
        if (!cred.ok())
            return cred.error();
        // Create exclusively first.  If the name exists (and the caller
        // did not ask for O_EXCL) open what is there only if it is a
        // regular file: opening an existing FIFO would block this worker
        // and a device node would open the host's device.
        fd.reset(openat(parent.fd.get(), n.c_str(), hflags | O_EXCL, mode));
        if (!fd && errno == EEXIST && !(flags & O_EXCL)) {
            Fd path(openat(parent.fd.get(), n.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
            struct stat st;
            if (!path || fstat(path.get(), &st) < 0)
                return -errno;
            if (!S_ISREG(st.st_mode))
                return S_ISDIR(st.st_mode) ? -EISDIR : S_ISLNK(st.st_mode) ? -ELOOP : -EINVAL;
            int r = reopen_fd(path.get(), hflags & ~(O_CREAT | O_EXCL));
            if (r < 0)
                return r;
            fd.reset(r);
        }
    }
    if (!fd)
        return -errno;
    hflags = direct_flags(fd.get(), hflags | (flags & O_DIRECT));
    // The inode's O_PATH fd comes from the open fd, not the name, so a
    // concurrent rename cannot make us describe a different file.
    int pfd = reopen_fd(fd.get(), O_PATH);
    if (pfd < 0)
        return pfd;
    int err = entry_from_fd(Fd(pfd), entry);
    if (err)
        return err;
    auto ino = inodes_.get(entry.nodeid);
    err = ino ? make_handle(std::move(ino), std::move(fd), hflags & ~(O_CREAT | O_EXCL), false,
                            ctx.unique, out, true)
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
    if (auto e = replayed(ctx)) {
        if (e->phase == state::kJournalDone)
            return open_from_journal(*e, &entry, out, false);
        drop_crashed_backing(*e);
    }
    journal_begin(ctx);
    int err = tmpfile_create(ctx, *parent, in, entry, out);
    journal_done(err, err ? 0 : entry.nodeid, err ? 0 : out.fh);
    return err;
}

int Passthrough::tmpfile_create(const fuse::Ctx &ctx, const state::Inode &parent,
                                const fuse_create_in &in, fuse_entry_out &entry,
                                fuse_open_out &out)
{
    int hflags = host_open_flags(int(in.flags), writeback_) | O_TMPFILE;
    // O_TMPFILE needs write access: O_WRONLY or O_RDWR must be present.
    if ((hflags & O_ACCMODE) == O_RDONLY)
        hflags |= O_RDWR;
    Fd fd;
    {
        CredScope cred(ctx, creds_for(true), opts_.host_pids);
        if (!cred.ok())
            return cred.error();
        fd.reset(openat(parent.fd.get(), ".", hflags, in.mode));
    }
    if (!fd)
        return -errno;
    hflags = direct_flags(fd.get(), hflags | (int(in.flags) & O_DIRECT));
    int pfd = reopen_fd(fd.get(), O_PATH);
    if (pfd < 0)
        return pfd;
    int err = entry_from_fd(Fd(pfd), entry);
    if (err)
        return err;
    auto ino = inodes_.get(entry.nodeid);
    // No name will ever bring an O_TMPFILE back: only its fd can.
    if (ino)
        keep_inode(*ino, true);
    err = ino ? make_handle(std::move(ino), std::move(fd), hflags & ~O_TMPFILE, false, ctx.unique,
                            out, true)
              : -ESTALE;
    if (err)
        forget(entry.nodeid, 1);
    return err;
}

int Passthrough::read(const fuse::Ctx &ctx, const fuse_read_in &in, fuse::Reply &out)
{
    fuse::BackendIo io;
    int err = prep_read(ctx, in, out, io);
    if (err != kDeferred)
        return err;
    io.run_blocking();
    if (io.result < 0)
        return io.result;
    out.set_payload_len(size_t(io.result)); // short at EOF: the kernel learns so
    return 0;
}

int Passthrough::write(const fuse::Ctx &ctx, const fuse_write_in &in,
                       std::span<const std::byte> data, fuse_write_out &out)
{
    if (opts_.readonly)
        return -EROFS;
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return bad_handle(in.fh);
    // Appends are the one write that is not idempotent: a resent append
    // must not land twice.  The size before it tells whether it landed.
    const bool append = (h->flags & O_APPEND) != 0;
    uint64_t eof = 0;
    if (append) {
        struct stat st;
        if (fstat(h->fd.get(), &st) < 0)
            return -errno;
        eof = uint64_t(st.st_size);
        if (auto e = replayed(ctx)) {
            if (e->phase == state::kJournalDone) {
                out.size = e->u32;
                return e->error;
            }
            if (uint64_t(st.st_size) >= e->u64 + data.size()) {
                out.size = uint32_t(data.size());
                return 0;
            }
        }
        journal_begin(ctx, uint64_t(st.st_size));
    }
    fuse::BackendIo io;
    int err = describe_write(io, *h, in, data, eof);
    if (err) {
        if (append)
            journal_done(err);
        return err;
    }
    io.run_blocking();
    if (io.result == -EINVAL && append && io.fd == h->fd.get() && (h->flags & O_DIRECT)) {
        // Another append moved the end since fstat(), to where direct I/O
        // cannot go: this one goes through the page cache.
        fuse::BackendIo again;
        describe_write(again, *h, in, data, eof);
        err = use_plain_fd(again, *h, 1);
        if (err < 0)
            again.result = err;
        else
            again.run_blocking();
        io.result = again.result;
    }
    if (io.result < 0) {
        if (append)
            journal_done(io.result);
        return io.result;
    }
    const uint32_t done = uint32_t(io.result);
    if (append)
        journal_done(0, 0, 0, done);
    // We write as root, whom the host never strips of suid; the kernel
    // tells us when the writer could not have kept it.
    if (in.write_flags & FUSE_WRITE_KILL_SUIDGID) {
        int err = kill_suidgid(h->fd.get());
        if (err)
            LOG_WARN("write: cannot clear suid/sgid: %s", strerror(-err));
    }
    out.size = done;
    return 0;
}

int Passthrough::describe_write(fuse::BackendIo &io, state::Handle &h, const fuse_write_in &in,
                                std::span<const std::byte> data, uint64_t eof) const
{
    io.op = fuse::BackendIo::Op::write;
    // Only ever read from: the request stays intact.
    io.buf = const_cast<std::byte *>(data.data());
    io.len = uint32_t(data.size());
    io.off = in.offset;
    return pick_fd(io, h, true, io.buf, (h.flags & O_APPEND) ? eof : io.off, io.len);
}

int Passthrough::direct_flags(int fd, int flags) const
{
    if (!(flags & O_DIRECT))
        return flags;
    flags &= ~O_DIRECT;
    if (!opts_.direct_io)
        return flags;
    // Set on the open fd rather than asked of open(): where the host fs has
    // no direct I/O (EINVAL) the file is still opened (or created) and
    // served through the page cache, as it was before --direct-io.
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_DIRECT) < 0) {
        LOG_DBG("direct-io: no O_DIRECT for this file: %s", strerror(errno));
        return flags;
    }
    return flags | O_DIRECT;
}

int Passthrough::plain_fd(state::Handle &h) const
{
    std::lock_guard g(h.dio_mu);
    if (!h.dio_plain) {
        int r = reopen_fd(h.fd.get(), h.flags & ~(O_DIRECT | kOnlyAtOpen));
        if (r < 0)
            return r;
        h.dio_plain.reset(r);
    }
    return h.dio_plain.get();
}

int Passthrough::pick_fd(fuse::BackendIo &io, state::Handle &h, bool write, const void *buf,
                         uint64_t off, uint32_t len) const
{
    const int dir = write ? 1 : 0;
    io.fd = h.fd.get();
    io.how = &h.io_path[dir];
    if (!(h.flags & O_DIRECT))
        return 0;
    uint64_t align = h.dio_align.load(std::memory_order_acquire);
    if (!align) {
        // Before the handle's first transfer (every one comes through
        // here): its IoPaths are set, not learnt (direct_io_path()).
        const auto path = fuse::direct_io_path(h.fd.get());
        h.io_path[0].store(uint8_t(path), std::memory_order_relaxed);
        h.io_path[1].store(uint8_t(path), std::memory_order_relaxed);
        align = dio_alignment(h.fd.get(), path);
        h.dio_align.store(align, std::memory_order_release);
    }
    const uint64_t mem = align >> 32, blk = uint32_t(align);
    if (reinterpret_cast<uintptr_t>(buf) % mem == 0 && off % blk == 0 && len % blk == 0)
        return 0;
    // The application's O_DIRECT on the mount never needed this alignment:
    // instead of an EINVAL it never saw, the transfer goes through the
    // host page cache, which the kernel keeps coherent with direct I/O.
    return use_plain_fd(io, h, dir);
}

int Passthrough::use_plain_fd(fuse::BackendIo &io, state::Handle &h, int dir) const
{
    int fd = plain_fd(h);
    if (fd < 0)
        return fd;
    io.fd = fd;
    io.how = &h.dio_plain_path[dir];
    return 0;
}

// The deferred forms hand the transport the same operation the synchronous
// ones carry out, with the same checks first.  What has to happen after the
// host write (journaling an append, clearing suid) stays synchronous.

int Passthrough::prep_read(const fuse::Ctx &, const fuse_read_in &in, fuse::Reply &out,
                           fuse::BackendIo &io)
{
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return bad_handle(in.fh);
    auto space = out.payload_space();
    io.op = fuse::BackendIo::Op::read;
    io.buf = space.data();
    io.len = uint32_t(in.size < space.size() ? in.size : space.size());
    io.off = in.offset;
    int err = pick_fd(io, *h, false, io.buf, io.off, io.len);
    if (err)
        return err;
    io.pin = std::move(h);
    return kDeferred;
}

int Passthrough::prep_write(const fuse::Ctx &ctx, const fuse_write_in &in,
                            std::span<const std::byte> data, fuse_write_out &out,
                            fuse::BackendIo &io)
{
    if (opts_.readonly)
        return -EROFS;
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return bad_handle(in.fh);
    if ((h->flags & O_APPEND) || (in.write_flags & FUSE_WRITE_KILL_SUIDGID))
        return write(ctx, in, data, out);
    int err = describe_write(io, *h, in, data);
    if (err)
        return err;
    io.pin = std::move(h);
    return kDeferred;
}

int Passthrough::prep_fsync(const fuse::Ctx &ctx, const fuse_fsync_in &in, bool dir,
                            fuse::BackendIo &io)
{
    if (dir)
        return fsync(ctx, in, dir);
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return bad_handle(in.fh);
    io.op = (in.fsync_flags & FUSE_FSYNC_FDATASYNC) ? fuse::BackendIo::Op::fdatasync
                                                    : fuse::BackendIo::Op::fsync;
    io.fd = h->fd.get();
    io.pin = std::move(h);
    return kDeferred;
}

int Passthrough::prep_fallocate(const fuse::Ctx &, const fuse_fallocate_in &in, fuse::BackendIo &io)
{
    if (opts_.readonly)
        return -EROFS;
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return bad_handle(in.fh);
    io.op = fuse::BackendIo::Op::fallocate;
    io.fd = h->fd.get();
    io.off = in.offset;
    io.length = in.length;
    io.mode = int(in.mode);
    io.pin = std::move(h);
    return kDeferred;
}

int Passthrough::flush(const fuse::Ctx &, const fuse_flush_in &in)
{
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return bad_handle(in.fh);
    // close() drops the caller's POSIX locks on this inode: those live on the
    // owner's own fd (see locks.cc), so closing that fd does exactly that.
    if (h->inode) {
        Fd owner_fd;
        {
            std::lock_guard g(h->inode->lock_mu);
            auto it = h->inode->lock_fds.find(in.lock_owner);
            if (it != h->inode->lock_fds.end()) {
                owner_fd = std::move(it->second.fd);
                h->inode->lock_fds.erase(it);
            }
        }
        if (owner_fd && rec_.store)
            rec_.store->remove(lock_name(h->inode->nodeid, in.lock_owner));
    }
    // Let the host filesystem see a close (NFS-style flush-on-close).
    int d = dup(h->fd.get());
    if (d < 0)
        return -errno;
    if (::close(d) < 0)
        return -errno;
    return 0;
}

int Passthrough::release(const fuse::Ctx &ctx, const fuse_release_in &in, bool dir)
{
    if (in.fh == 0 || in.fh >= handles_.capacity())
        return -EBADF;
    const state::HandleRecord &hr = handles_.record(in.fh);
    const bool live = hr.state.load(std::memory_order_acquire) == state::kLive;
    if (auto e = replayed(ctx)) {
        if (e->phase == state::kJournalDone)
            return e->error;
        // Started: our predecessor may have released it already, and the
        // slot may since hold another open file.  Only the handle the
        // request meant may go.  If it went, its backing id may not have.
        if (!live || hr.opened_by != e->u64) {
            drop_crashed_backing(*e);
            return 0;
        }
    }
    bool stored = hr.flags.load(std::memory_order_acquire) & state::kHandleFdStored;
    const int32_t backing_id = live && !dir ? hr.backing_id : 0;
    const uint64_t nodeid = hr.nodeid;
    journal_begin(ctx, live ? hr.opened_by : 0);
    // Before the record goes: a crash between freeing it and closing the
    // id leaves the id only here.
    if (backing_id > 0 && rec_.journal)
        rec_.journal->note(ctx.unique, uint32_t(backing_id));
    auto h = handles_.remove(in.fh);
    if (h && backing_id > 0)
        backing_put(nodeid, backing_id);
    // A resent RELEASE whose handle is gone was carried out before the crash.
    int err = h ? 0 : (ctx.resent ? 0 : -EBADF);
    journal_done(err);
    if (!h)
        return err;
    if (h->inode) {
        h->inode->open_count.fetch_sub(1, std::memory_order_relaxed);
        // An OFD lock belongs to the open file, and the kernel tells us
        // nothing when that file goes but this RELEASE.  POSIX owners that
        // locked through it were dropped by the FLUSH before.
        std::vector<uint64_t> gone;
        {
            std::lock_guard g(h->inode->lock_mu);
            for (auto it = h->inode->lock_fds.begin(); it != h->inode->lock_fds.end();) {
                if (it->second.fh == in.fh) {
                    gone.push_back(it->first);
                    it = h->inode->lock_fds.erase(it);
                } else {
                    ++it;
                }
            }
        }
        if (rec_.store)
            for (uint64_t owner : gone)
                rec_.store->remove(lock_name(h->inode->nodeid, owner));
    }
    if (stored && rec_.store)
        rec_.store->remove("h" + std::to_string(in.fh));
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
        return bad_handle(in.fh);
    int r = (in.fsync_flags & FUSE_FSYNC_FDATASYNC) ? fdatasync(h->fd.get()) : ::fsync(h->fd.get());
    return r < 0 ? -errno : 0;
}

int Passthrough::fallocate(const fuse::Ctx &, const fuse_fallocate_in &in)
{
    if (opts_.readonly)
        return -EROFS;
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return bad_handle(in.fh);
    if (::fallocate(h->fd.get(), int(in.mode), off_t(in.offset), off_t(in.length)) < 0)
        return -errno;
    return 0;
}

int Passthrough::lseek(const fuse::Ctx &, const fuse_lseek_in &in, fuse_lseek_out &out)
{
    auto h = handles_.get(in.fh);
    if (!h || h->dir)
        return bad_handle(in.fh);
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
    // Through the page cache for O_DIRECT handles: a copy at any offset
    // and length worked before --direct-io.
    int fd_in = (hin->flags & O_DIRECT) ? plain_fd(*hin) : hin->fd.get();
    int fd_out = (hout->flags & O_DIRECT) ? plain_fd(*hout) : hout->fd.get();
    if (fd_in < 0 || fd_out < 0)
        return fd_in < 0 ? fd_in : fd_out;
    loff_t off_in = loff_t(in.off_in), off_out = loff_t(in.off_out);
    ssize_t n =
        ::copy_file_range(fd_in, &off_in, fd_out, &off_out, size_t(in.len), unsigned(in.flags));
    if (n < 0)
        return -errno;
    out.size = uint32_t(n);
    return 0;
}

} // namespace holdfast::fs
