// SPDX-License-Identifier: GPL-2.0
// The interface between the FUSE engine and a filesystem.  The engine decodes
// and validates; a filesystem sees typed arguments and never a raw buffer.
// Every op returns 0 or a negative errno.
#pragma once

#include "fuse/abi.h"
#include "fuse/backend_io.h"
#include "fuse/request.h"

#include <cerrno>
#include <cstdint>
#include <span>
#include <string_view>

namespace holdfast::fuse {

// Who is asking, about what.  `nodeid` is the header's node id as sent:
// filesystems validate it against their tables.  `unique` is stripped of
// FUSE_UNIQUE_RESEND; `resent` says the kernel re-sent the request after a
// server restart, so it may already have taken effect.
struct Ctx {
    uint64_t unique;
    uint64_t nodeid;
    uint32_t opcode;
    uint32_t uid;
    uint32_t gid;
    uint32_t pid;
    bool resent = false;
    // Creating ops only, with FUSE_CREATE_SUPP_GROUP: the kernel found the
    // parent directory's group among the caller's supplementary groups (and
    // it is not the caller's gid), so the create should run with it.
    bool has_supp_gid = false;
    uint32_t supp_gid = 0;
};

// What INIT settled; filesystems adapt to it (writeback, max sizes).
struct Negotiated {
    uint32_t major = 0;
    uint32_t minor = 0;
    uint64_t kernel_flags = 0; // what the kernel offered
    uint64_t flags = 0;        // what we accepted
    uint32_t max_write = 0;
    uint32_t max_readahead = 0;
    uint16_t max_pages = 0;
    bool done = false;

    bool has(uint64_t f) const { return (flags & f) != 0; }
    bool kernel_has(uint64_t f) const { return (kernel_flags & f) != 0; }
};

class Filesystem {
  public:
    virtual ~Filesystem() = default;

    // Flags the filesystem wants, given what the kernel offers.
    virtual uint64_t init_flags(uint64_t kernel_flags) = 0;
    virtual void init(const Negotiated &) {}
    virtual void destroy() {}

    virtual int lookup(const Ctx &, std::string_view name, fuse_entry_out &) = 0;
    virtual void forget(uint64_t nodeid, uint64_t nlookup) = 0;
    virtual int getattr(const Ctx &, const fuse_getattr_in &, fuse_attr_out &) = 0;
    virtual int setattr(const Ctx &, const fuse_setattr_in &, fuse_attr_out &) = 0;
    virtual int statx(const Ctx &, const fuse_statx_in &, fuse_statx_out &) = 0;
    virtual int readlink(const Ctx &, Reply &) = 0;
    virtual int symlink(const Ctx &, std::string_view name, std::string_view target,
                        fuse_entry_out &) = 0;
    virtual int mknod(const Ctx &, const fuse_mknod_in &, std::string_view name,
                      fuse_entry_out &) = 0;
    virtual int mkdir(const Ctx &, const fuse_mkdir_in &, std::string_view name,
                      fuse_entry_out &) = 0;
    virtual int unlink(const Ctx &, std::string_view name) = 0;
    virtual int rmdir(const Ctx &, std::string_view name) = 0;
    virtual int rename(const Ctx &, std::string_view name, uint64_t newdir,
                       std::string_view newname, uint32_t flags) = 0;
    // ctx.nodeid is the new parent; `oldnode` the inode gaining a name.
    virtual int link(const Ctx &, uint64_t oldnode, std::string_view newname,
                     fuse_entry_out &) = 0;

    virtual int open(const Ctx &, const fuse_open_in &, fuse_open_out &) = 0;
    virtual int create(const Ctx &, const fuse_create_in &, std::string_view name,
                       fuse_entry_out &, fuse_open_out &) = 0;
    virtual int tmpfile(const Ctx &, const fuse_create_in &, fuse_entry_out &,
                        fuse_open_out &) = 0;
    virtual int read(const Ctx &, const fuse_read_in &, Reply &) = 0;
    virtual int write(const Ctx &, const fuse_write_in &, std::span<const std::byte> data,
                      fuse_write_out &) = 0;
    virtual int flush(const Ctx &, const fuse_flush_in &) = 0;
    virtual int release(const Ctx &, const fuse_release_in &, bool dir) = 0;
    virtual int fsync(const Ctx &, const fuse_fsync_in &, bool dir) = 0;
    virtual int fallocate(const Ctx &, const fuse_fallocate_in &) = 0;
    virtual int lseek(const Ctx &, const fuse_lseek_in &, fuse_lseek_out &) = 0;
    virtual int copy_file_range(const Ctx &, const fuse_copy_file_range_in &,
                                fuse_write_out &) = 0;

    // The same four data ops, for a transport that carries out backing-file
    // I/O itself (fuse/backend_io.h): a filesystem may describe the operation
    // in `io` and return kDeferred instead of doing it.  By default, and for
    // whatever it wants to keep synchronous (journaled appends), it serves
    // the request as above.
    static constexpr int kDeferred = 1;
    virtual int prep_read(const Ctx &ctx, const fuse_read_in &in, Reply &out, BackendIo &)
    {
        return read(ctx, in, out);
    }
    virtual int prep_write(const Ctx &ctx, const fuse_write_in &in, std::span<const std::byte> data,
                           fuse_write_out &out, BackendIo &)
    {
        return write(ctx, in, data, out);
    }
    virtual int prep_fsync(const Ctx &ctx, const fuse_fsync_in &in, bool dir, BackendIo &)
    {
        return fsync(ctx, in, dir);
    }
    virtual int prep_fallocate(const Ctx &ctx, const fuse_fallocate_in &in, BackendIo &)
    {
        return fallocate(ctx, in);
    }

    virtual int opendir(const Ctx &, const fuse_open_in &, fuse_open_out &) = 0;
    virtual int readdir(const Ctx &, const fuse_read_in &, bool plus, Reply &) = 0;

    virtual int statfs(const Ctx &, fuse_statfs_out &) = 0;
    virtual int access(const Ctx &, const fuse_access_in &) = 0;
    virtual int syncfs(const Ctx &) = 0;

    virtual int setxattr(const Ctx &, const fuse_setxattr_in &, std::string_view name,
                         std::span<const std::byte> value) = 0;
    // size == 0 asks for the value's size (fuse_getxattr_out); else the value.
    virtual int getxattr(const Ctx &, std::string_view name, uint32_t size, Reply &) = 0;
    virtual int listxattr(const Ctx &, uint32_t size, Reply &) = 0;
    virtual int removexattr(const Ctx &, std::string_view name) = 0;

    virtual int getlk(const Ctx &, const fuse_lk_in &, fuse_lk_out &) = 0;
    virtual int setlk(const Ctx &, const fuse_lk_in &, bool wait) = 0;

    // The kernel asks to interrupt request `unique` (which may be done already).
    virtual void interrupt(uint64_t unique) { (void)unique; }

    // virtio-fs DAX (fuse/dax.h): the window's size, 0 without one (the
    // engine then answers SETUPMAPPING and REMOVEMAPPING with ENOSYS and
    // never negotiates FUSE_MAP_ALIGNMENT).  The engine has checked
    // flags, alignment, overflow and the window's bounds; the entries of a
    // REMOVEMAPPING are all checked before the first one is handed over.
    virtual uint64_t dax_window_size() const { return 0; }
    virtual int setupmapping(const Ctx &, const fuse_setupmapping_in &) { return -ENOSYS; }
    virtual int removemapping(const Ctx &, std::span<const fuse_removemapping_one>)
    {
        return -ENOSYS;
    }
};

} // namespace holdfast::fuse
