// SPDX-License-Identifier: GPL-2.0
// virtio-fs DAX: FUSE_SETUPMAPPING maps a range of a host file into the
// guest's DAX window, FUSE_REMOVEMAPPING unmaps ranges (fuse/dax.h).  The
// engine has checked flags, alignment and bounds; what is left is the
// inode, the handle, the right to write, and the mapping table
// (state/dax_table.h), which is in the state region so that a successor
// knows what is mapped.
//
// The front-end maps exactly what it is told, refuses a map that overlaps
// another one, and unmaps only a range it mapped as a whole.  So each
// record is one SHMEM_MAP, a SETUPMAPPING over ranges that are mapped
// already unmaps them first (the guest does that to make a read-only range
// writable), and a request that would cut a mapping in two is refused.
#include "fs/passthrough.h"

#include "util/log.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

namespace holdfast::fs {

namespace {
// Nothing was mapped or unmapped: the front-end said no, or never heard.
bool not_done(int r)
{
    return r == -EREMOTEIO || r == -ENOTCONN || r == -EAGAIN;
}
} // namespace

uint64_t Passthrough::dax_window_size() const
{
    if (!dax_ || !dax_table_ || !dax_table_->valid())
        return 0;
    return dax_->size();
}

size_t Passthrough::dax_mappings() const
{
    std::lock_guard g(dax_mu_);
    return dax_table_ && dax_table_->valid() ? dax_table_->used() : 0;
}

uint32_t Passthrough::dax_attr_flags(const state::Inode &ino, const struct stat &st) const
{
    // Only a guest that asked (dax=inode) reads the flag, and only a
    // window can serve it (the engine negotiates FUSE_HAS_INODE_DAX only
    // with one).
    if (!inode_dax_ || !S_ISREG(st.st_mode))
        return 0;
    switch (opts_.dax_inode) {
    case DaxInodePolicy::all:
        return FUSE_ATTR_DAX;
    case DaxInodePolicy::none:
        return 0;
    case DaxInodePolicy::min_size:
        return uint64_t(st.st_size) >= opts_.dax_inode_min_size ? FUSE_ATTR_DAX : 0;
    case DaxInodePolicy::flag:
        break;
    }
    // FS_IOC_FSGETXATTR needs an open file, not our O_PATH fd.  A file we
    // cannot open (or a filesystem without the attribute, such as tmpfs)
    // has no flag: the guest goes through the page cache.
    int fd = reopen(ino, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return 0;
    Fd owned(fd);
    struct fsxattr fa {};
    if (ioctl(fd, FS_IOC_FSGETXATTR, &fa) < 0)
        return 0;
    return (fa.fsx_xflags & FS_XFLAG_DAX) ? FUSE_ATTR_DAX : 0;
}

int Passthrough::dax_unmap(const state::DaxMapping &m)
{
    dax_table_->begin_unmap(m.slot);
    int r = dax_->unmap(m.win_offset, m.len);
    if (r == 0 || r == -EREMOTEIO) {
        // Refused: the front-end has no such mapping.  That is what a
        // record left uncertain by a crash, or one that names the window
        // of a device since replaced, comes to: the range is free.
        if (r)
            LOG_DBG("DAX: the front-end has no mapping at %#llx+%#llx; forgetting it",
                    (unsigned long long)m.win_offset, (unsigned long long)m.len);
        dax_table_->release(m.slot);
        return 0;
    }
    // Nothing went out, or we cannot tell: the record stays (uncertain) and
    // the next request over the range tries again.
    return -EIO;
}

int Passthrough::setupmapping(const fuse::Ctx &ctx, const fuse_setupmapping_in &in)
{
    if (!dax_window_size())
        return -ENOSYS;
    auto ino = inodes_.get(ctx.nodeid);
    if (!ino)
        return -ESTALE;
    if (!ino->is_reg())
        return -EINVAL;
    const bool writable = in.flags & FUSE_SETUPMAPPING_FLAG_WRITE;
    if (writable && opts_.readonly)
        return -EROFS;
    if (in.fh != fuse::kDaxNoFh) {
        // An open file of this very inode, open for writing if the mapping
        // is to be written through.
        auto h = handles_.get(in.fh);
        if (!h || h->dir || !h->inode || h->inode->nodeid != ino->nodeid)
            return -EBADF;
        if (writable && (h->flags & O_ACCMODE) == O_RDONLY)
            return -EACCES;
    }
    // A fresh fd with just the access the mapping needs (an O_WRONLY
    // handle cannot be mapped at all); the front-end keeps its own copy.
    int fd = reopen(*ino, writable ? O_RDWR : O_RDONLY);
    if (fd < 0)
        return fd;
    Fd owned(fd);

    std::lock_guard g(dax_mu_);
    const uint64_t end = in.moffset + in.len;
    auto over = dax_table_->overlapping(in.moffset, in.len);
    for (const auto &m : over) {
        // A live mapping that reaches out of the new range would lose its
        // other part: refuse.  An uncertain one is unmapped whatever it is.
        if (!m.uncertain() && (m.win_offset < in.moffset || m.end() > end)) {
            LOG_WARN("SETUPMAPPING %#llx+%#llx cuts the mapping at %#llx+%#llx: refused",
                     (unsigned long long)in.moffset, (unsigned long long)in.len,
                     (unsigned long long)m.win_offset, (unsigned long long)m.len);
            return -EINVAL;
        }
    }
    for (const auto &m : over)
        if (int r = dax_unmap(m))
            return r;
    int64_t slot = dax_table_->begin_map(in.moffset, in.len, ino->nodeid, in.foffset, writable);
    if (slot < 0) {
        LOG_WARN("SETUPMAPPING: the DAX table is full (%llu mappings)",
                 (unsigned long long)dax_table_->capacity());
        return -ENOSPC;
    }
    int r = dax_->map(owned.get(), in.foffset, in.moffset, in.len, writable);
    if (r) {
        // Refused or never sent: nothing is mapped.  Otherwise the record
        // stays pending (uncertain) and is unmapped before its range is
        // used again.
        if (not_done(r))
            dax_table_->release(uint64_t(slot));
        return -EIO;
    }
    dax_table_->publish(uint64_t(slot));
    return 0;
}

int Passthrough::removemapping(const fuse::Ctx &ctx, std::span<const fuse_removemapping_one> ranges)
{
    (void)ctx;
    if (!dax_window_size())
        return -ENOSYS;
    std::lock_guard g(dax_mu_);
    // All or nothing as far as we can tell in advance: no range may cut a
    // live mapping in two.
    for (const auto &one : ranges) {
        for (const auto &m : dax_table_->overlapping(one.moffset, one.len)) {
            if (!m.uncertain() && (m.win_offset < one.moffset || m.end() > one.moffset + one.len)) {
                LOG_WARN("REMOVEMAPPING %#llx+%#llx cuts the mapping at %#llx+%#llx: refused",
                         (unsigned long long)one.moffset, (unsigned long long)one.len,
                         (unsigned long long)m.win_offset, (unsigned long long)m.len);
                return -EINVAL;
            }
        }
    }
    // A range with nothing mapped is fine: a REMOVEMAPPING re-sent after a
    // crash finds its work done.
    int err = 0;
    for (const auto &one : ranges)
        for (const auto &m : dax_table_->overlapping(one.moffset, one.len))
            if (int r = dax_unmap(m))
                err = r;
    return err;
}

void Passthrough::dax_drop_all()
{
    if (!dax_window_size())
        return;
    std::lock_guard g(dax_mu_);
    size_t n = 0, failed = 0;
    for (const auto &m : dax_table_->all()) {
        n++;
        if (dax_unmap(m))
            failed++;
    }
    // What could not be unmapped stays, uncertain, and is unmapped again
    // before its range is used.
    if (n)
        LOG_INFO("DAX: dropped %zu mappings (%zu not confirmed)", n, failed);
}

} // namespace holdfast::fs
