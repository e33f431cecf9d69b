// SPDX-License-Identifier: GPL-2.0
// Directory streams.  READDIR offsets are the host's d_off cookies, so a
// listing can resume at any offset the kernel hands back, in this process
// or the next one.
#include "fs/creds.h"
#include "fs/passthrough.h"

#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <sys/syscall.h>
#include <fcntl.h>
#include <unistd.h>
#include <vector>

namespace holdfast::fs {

namespace {
struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    uint16_t d_reclen;
    uint8_t d_type;
    char d_name[];
};

size_t dirent_size(size_t namelen) { return FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + namelen); }
size_t direntplus_size(size_t namelen)
{
    return FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + namelen);
}
} // namespace

int Passthrough::opendir(const fuse::Ctx &ctx, const fuse_open_in &in, fuse_open_out &out)
{
    auto ino = inodes_.get(ctx.nodeid);
    if (!ino)
        return -ESTALE;
    if (!ino->is_dir())
        return -ENOTDIR;
    if (auto e = replayed(ctx); e && e->phase == state::kJournalDone)
        return open_from_journal(*e, nullptr, out, true);
    int fd;
    {
        CredScope cred(ctx, creds_for(false), opts_.host_pids);
        if (!cred.ok())
            return cred.error();
        fd = reopen(*ino, O_RDONLY | O_DIRECTORY);
    }
    (void)in;
    if (fd < 0)
        return fd;
    journal_begin(ctx);
    int err = make_handle(std::move(ino), Fd(fd), O_RDONLY | O_DIRECTORY, true, ctx.unique, out);
    journal_done(err, 0, err ? 0 : out.fh);
    return err;
}

int Passthrough::readdir(const fuse::Ctx &ctx, const fuse_read_in &in, bool plus,
                         fuse::Reply &out)
{
    // Every READDIRPLUS entry with a node id is a kernel reference, counted
    // before the reply goes out.  The kernel resends only a request whose
    // reply it never took, so a resend's first attempt delivered none of
    // its references: the journal keeps the node ids it counted, and the
    // resend gives those back before it lists (and counts) again.
    if (!plus || !rec_.journal)
        return list_dir(ctx, in, plus, false, out);
    std::vector<uint64_t> carried;
    if (auto e = replayed(ctx))
        carried = std::move(e->refs);
    // The carried ids go into our record first: a crash while they are
    // given back leaves the rest to the next server, never twice.
    if (!rec_.journal->begin_refs(ctx.opcode, ctx.unique, carried))
        return list_dir(ctx, in, plus, false, out); // a region without lists
    give_back_refs(carried);
    int err = list_dir(ctx, in, plus, true, out);
    journal_done(err);
    return err;
}

int Passthrough::list_dir(const fuse::Ctx &ctx, const fuse_read_in &in, bool plus,
                          bool journaled, fuse::Reply &out)
{
    auto h = handles_.get(in.fh);
    if (!h || !h->dir)
        return bad_handle(in.fh);
    // READDIRPLUS looks entries up: as the caller, so a directory it may
    // list but not search yields names without attributes it couldn't stat.
    CredScope cred(ctx, plus && creds_for(false), opts_.host_pids);
    if (!cred.ok())
        return cred.error();
    std::lock_guard g(h->mu);
    if (::lseek(h->fd.get(), off_t(in.offset), SEEK_SET) < 0)
        return -errno;

    auto space = out.payload_space();
    size_t used = 0;
    alignas(8) char buf[16384];
    bool full = false;
    while (!full) {
        long n = syscall(SYS_getdents64, h->fd.get(), buf, sizeof(buf));
        if (n < 0)
            return used ? 0 : -errno;
        if (n == 0)
            break;
        for (long pos = 0; pos < n;) {
            auto *d = reinterpret_cast<linux_dirent64 *>(buf + pos);
            pos += d->d_reclen;
            size_t namelen = strlen(d->d_name);
            size_t need = plus ? direntplus_size(namelen) : dirent_size(namelen);
            if (used + need > space.size()) {
                full = true;
                break;
            }
            std::byte *dst = space.data() + used;
            fuse_dirent *fd;
            if (plus) {
                auto *dp = reinterpret_cast<fuse_direntplus *>(dst);
                memset(&dp->entry_out, 0, sizeof(dp->entry_out));
                bool dot = strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0;
                if (!dot) {
                    // A reply ends early rather than count more references
                    // than the journal can list; the kernel asks for the rest.
                    if (journaled && rec_.journal->ref_room() == 0) {
                        full = true;
                        break;
                    }
                    // Counts a reference exactly like LOOKUP: the kernel
                    // instantiates a dentry for every entry with a nodeid.
                    int err = do_lookup(*h->inode, d->d_name, dp->entry_out);
                    if (err == 0 && journaled)
                        rec_.journal->add_ref(ctx.unique, dp->entry_out.nodeid);
                    if (err == -ENOENT)
                        continue; // removed since getdents: not part of the listing
                    // Not looked up (EACCES...): the name without attributes;
                    // nodeid 0 tells the kernel to make no dentry of it.
                    if (err)
                        memset(&dp->entry_out, 0, sizeof(dp->entry_out));
                }
                fd = &dp->dirent;
            } else {
                fd = reinterpret_cast<fuse_dirent *>(dst);
            }
            fd->ino = d->d_ino;
            fd->off = uint64_t(d->d_off);
            fd->namelen = uint32_t(namelen);
            fd->type = d->d_type;
            memcpy(fd->name, d->d_name, namelen);
            // Zero the alignment padding: never leak stale buffer bytes.
            size_t hdr = plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET;
            memset(dst + hdr + namelen, 0, need - hdr - namelen);
            used += need;
        }
    }
    out.set_payload_len(used);
    return 0;
}

} // namespace holdfast::fs
