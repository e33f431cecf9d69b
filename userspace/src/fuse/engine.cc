// SPDX-License-Identifier: GPL-2.0
#include "fuse/engine.h"

#include "fuse/dax.h"

#include "util/fault.h"
#include "util/log.h"

#include <cerrno>
#include <climits>
#include <linux/limits.h>
#include <vector>

namespace holdfast::fuse {

namespace {

// Flags we accept whenever the kernel offers them: they only tell the kernel
// what we can do and carry no policy.  Policy flags come from the filesystem.
constexpr uint64_t kAlwaysFlags = FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES |
                                  FUSE_MAX_PAGES | FUSE_PARALLEL_DIROPS | FUSE_ASYNC_DIO |
                                  FUSE_INIT_EXT;

struct Malformed {};
struct NameTooLong {};

// The kernel sends names up to 1024 bytes (FUSE_NAME_MAX): longer than
// NAME_MAX is a valid request that fails with ENAMETOOLONG, not garbage.
constexpr size_t kFuseNameMax = 1024;

void take_name(Reader &a, std::string_view &out)
{
    if (!a.cstring(out, kFuseNameMax) || out.empty() ||
        out.find('/') != std::string_view::npos)
        throw Malformed{};
    if (out.size() > NAME_MAX)
        throw NameTooLong{};
}

} // namespace

void Engine::handle(std::span<const std::byte> in, Reply &out, bool resubmitted)
{
    serve(in, in.size(), nullptr, out, resubmitted, nullptr, true);
}

void Engine::handle(std::span<const std::byte> in, Reply &out, bool resubmitted, BackendIo &io,
                    bool now)
{
    io = BackendIo{};
    serve(in, in.size(), nullptr, out, resubmitted, &io, now);
}

void Engine::handle_detached(std::span<const std::byte> head, uint64_t total,
                             std::span<const std::byte> stand_in, Reply &out, bool resubmitted,
                             BackendIo &io, bool now)
{
    io = BackendIo{};
    serve(head, total, &stand_in, out, resubmitted, &io, now);
}

namespace {
uint32_t io_opcode(BackendIo::Op op)
{
    switch (op) {
    case BackendIo::Op::read:
        return FUSE_READ;
    case BackendIo::Op::write:
        return FUSE_WRITE;
    case BackendIo::Op::fsync:
    case BackendIo::Op::fdatasync:
        return FUSE_FSYNC;
    case BackendIo::Op::fallocate:
        return FUSE_FALLOCATE;
    case BackendIo::Op::none:
        break;
    }
    return 0;
}
} // namespace

void Engine::complete(BackendIo &io, Reply &out)
{
    const uint32_t op = io_opcode(io.op);
    int err = io.result < 0 ? io.result : 0;
    if (err < -511)
        err = -EIO;
    if (!err && io.op == BackendIo::Op::read)
        out.set_payload_len(uint32_t(io.result));
    else if (!err && io.op == BackendIo::Op::write)
        out.arg<fuse_write_out>().size = uint32_t(io.result);
    io = BackendIo{}; // drops the pin: the file may close now
    fault::point(op, fault::Point::after);
    if (err) {
        if (op && op < kMaxOpcode)
            stats_.errors[op].fetch_add(1, std::memory_order_relaxed);
        out.set_error(err);
    }
}

void Engine::serve(std::span<const std::byte> in, uint64_t total,
                   const std::span<const std::byte> *stand_in, Reply &out, bool resubmitted,
                   BackendIo *io, bool now)
{
    Request req;
    ParseError pe = parse_request(in, total, req);
    req.resubmitted = resubmitted;
    if (pe != ParseError::ok) {
        stats_.malformed.fetch_add(1, std::memory_order_relaxed);
        uint64_t unique = 0;
        if (in.size() >= sizeof(fuse_in_header))
            std::memcpy(&unique, in.data() + offsetof(fuse_in_header, unique), sizeof(unique));
        LOG_WARN("malformed request (%zu bytes, unique %#llx): %s", in.size(),
                 (unsigned long long)unique, parse_error_str(pe));
        out.reset(unique);
        // Without a trustworthy header there is nobody to answer.
        if (pe == ParseError::short_header)
            out.suppress();
        else
            out.set_error(-EIO);
        return;
    }

    out.reset(req.hdr.unique);
    uint32_t op = req.hdr.opcode;
    if (op < kMaxOpcode)
        stats_.requests[op].fetch_add(1, std::memory_order_relaxed);

    fault::point(op, fault::Point::before);
    int err = dispatch(req, stand_in, out, io);
    if (io && io->pending()) {
        if (err == Filesystem::kDeferred) {
            // What needs no device (cached data, tmpfs) is done here; the
            // rest waits on the transport's ring, and complete() ends it.
            if (now && io->try_now())
                complete(*io, out);
            return;
        }
        LOG_ERR("opcode %u described backing-file I/O but returned %d", op, err);
        *io = BackendIo{};
        if (!err)
            err = -EIO;
    }
    fault::point(op, fault::Point::after);
    if (err > 0 || err < -511) {
        // The kernel rejects replies outside (-512, 0]; a bug must not turn
        // into a protocol error that takes the request down with it.
        LOG_ERR("opcode %u returned out-of-range error %d", op, err);
        err = -EIO;
    }
    if (err) {
        if (op < kMaxOpcode)
            stats_.errors[op].fetch_add(1, std::memory_order_relaxed);
        out.set_error(err);
    }
}

int Engine::do_init(const Request &req, Reply &out)
{
    // Old kernels send a shorter fuse_init_in; read what is there.
    fuse_init_in in{};
    Reader r = req.args;
    auto avail = r.remaining();
    size_t need = offsetof(fuse_init_in, flags) + sizeof(in.flags);
    if (avail < need) {
        stats_.malformed.fetch_add(1, std::memory_order_relaxed);
        LOG_WARN("malformed INIT (%zu bytes of arguments)", avail);
        return -EINVAL;
    }
    std::span<const std::byte> raw;
    r.bytes(avail < sizeof(in) ? avail : sizeof(in), raw);
    std::memcpy(&in, raw.data(), raw.size());

    if (neg_.done) {
        if (!limits_.reinit || (req.hdr.unique & kUniqueResend)) {
            LOG_ERR("second INIT on an initialized connection refused");
            return -EIO;
        }
        LOG_INFO("INIT again without DESTROY (the guest rebooted): ending the old session");
        fs_.destroy();
        std::lock_guard g(neg_mu_);
        neg_ = Negotiated{};
    }
    auto &o = out.arg<fuse_init_out>();
    if (in.major < 7) {
        LOG_ERR("kernel FUSE protocol %u.%u too old", in.major, in.minor);
        return -EPROTO;
    }
    o.major = FUSE_KERNEL_VERSION;
    o.minor = kOurMinor;
    if (in.major > 7)
        return 0; // the kernel retries with 7.x

    uint64_t kflags = in.flags;
    if (kflags & FUSE_INIT_EXT)
        kflags |= uint64_t(in.flags2) << 32;
    uint64_t want = (kAlwaysFlags | fs_.init_flags(kflags) | limits_.extra_flags) & kflags;
    // A guest mounted with dax asks for our alignment, and one mounted with
    // dax=inode for per-file DAX (FUSE_ATTR_DAX in attributes); without a
    // window we leave both off and it never maps anything.
    if (fs_.dax_window_size())
        want |= kflags & (FUSE_MAP_ALIGNMENT | FUSE_HAS_INODE_DAX);

    std::unique_lock neg_lock(neg_mu_);
    neg_.major = 7;
    neg_.minor = in.minor < kOurMinor ? in.minor : kOurMinor;
    neg_.kernel_flags = kflags;
    neg_.flags = want;
    neg_.max_write = limits_.max_write;
    neg_.max_readahead = limits_.max_readahead ? limits_.max_readahead : in.max_readahead;
    neg_.max_pages = limits_.max_pages;

    o.minor = neg_.minor;
    o.max_readahead = neg_.max_readahead;
    o.flags = uint32_t(want);
    o.flags2 = uint32_t(want >> 32);
    o.max_background = 64;
    o.congestion_threshold = 48;
    o.max_write = limits_.max_write;
    o.time_gran = 1;
    o.max_pages = limits_.max_pages;
    // fuse_init_out.max_stack_depth (7.40, the first of `unused`): without
    // it the kernel ignores FUSE_PASSTHROUGH.  1 lets backing files live on
    // any non-stacked filesystem and keeps the mount usable as a layer of
    // an overlayfs; a backing file on overlayfs is refused (ELOOP) and
    // that file is served without passthrough.
    if (want & kPassthrough)
        o.unused[0] = kPassthroughStackDepth;
    // log2 of the alignment of SETUPMAPPING/REMOVEMAPPING offsets; the
    // kernel refuses more than its 2 MiB range size (FUSE_DAX_SHIFT).
    if (want & FUSE_MAP_ALIGNMENT)
        o.map_alignment = kDaxPageShift;
    fs_.init(neg_);
    neg_.done = true;
    neg_lock.unlock();
    if (on_init_)
        on_init_(neg_);
    LOG_INFO("INIT: kernel %u.%u, using 7.%u, flags %#llx, kernel offers resend: %s", in.major,
             in.minor, neg_.minor, (unsigned long long)want,
             (kflags & kHasResend) ? "yes" : "no");
    return 0;
}

int Engine::unimplemented(uint32_t op)
{
    stats_.unknown.fetch_add(1, std::memory_order_relaxed);
    LOG_DBG("opcode %u (%s) not implemented", op, opcode_name(op) ? opcode_name(op) : "unknown");
    return -ENOSYS;
}

int Engine::bad_mapping(const Ctx &ctx, const char *what, const char *why)
{
    stats_.malformed.fetch_add(1, std::memory_order_relaxed);
    LOG_WARN("%s refused (unique %#llx, node %llu): %s", what, (unsigned long long)ctx.unique,
             (unsigned long long)ctx.nodeid, why);
    return -EINVAL;
}

#define NEED(expr)                                                                                 \
    do {                                                                                           \
        if (!(expr))                                                                               \
            throw Malformed{};                                                                     \
    } while (0)

int Engine::dispatch(const Request &req, const std::span<const std::byte> *stand_in, Reply &out,
                     BackendIo *io)
{
    const uint32_t op = req.hdr.opcode;
    if (stand_in && op != FUSE_WRITE) {
        // A transport's mistake: nothing else is ever split off its data.
        LOG_ERR("opcode %u handed over without its data", op);
        return -EIO;
    }
    const bool resent = (req.hdr.unique & kUniqueResend) != 0 || req.resubmitted;
    Ctx ctx{req.hdr.unique & ~kUniqueResend, req.hdr.nodeid, op, req.hdr.uid, req.hdr.gid,
            req.hdr.pid, resent};
    if (resent)
        stats_.resent.fetch_add(1, std::memory_order_relaxed);
    Reader a = req.args;

    if (op == FUSE_INIT)
        return do_init(req, out);
    if (!neg_.done) {
        LOG_WARN("opcode %u before INIT", op);
        return -EIO;
    }

    // Ops that create an object may carry the caller's supplementary group
    // (FUSE_CREATE_SUPP_GROUP).  The extension is as untrusted as the rest.
    if (neg_.has(kCreateSuppGroup) && !req.extensions.empty() &&
        (op == FUSE_MKNOD || op == FUSE_MKDIR || op == FUSE_SYMLINK || op == FUSE_CREATE ||
         op == FUSE_TMPFILE)) {
        int r = find_supp_group(req.extensions, ctx.supp_gid);
        if (r < 0) {
            stats_.malformed.fetch_add(1, std::memory_order_relaxed);
            LOG_WARN("malformed request extension (opcode %u, unique %#llx, %zu bytes)", op,
                     (unsigned long long)ctx.unique, req.extensions.size());
            return -EINVAL;
        }
        ctx.has_supp_gid = r > 0;
    }

    try {
        switch (op) {
        case FUSE_LOOKUP: {
            std::string_view name;
            take_name(a, name);
            return fs_.lookup(ctx, name, out.arg<fuse_entry_out>());
        }
        case FUSE_FORGET: {
            fuse_forget_in in;
            out.suppress();
            NEED(a.read(in));
            fs_.forget(ctx.nodeid, in.nlookup);
            return 0;
        }
        case FUSE_BATCH_FORGET: {
            fuse_batch_forget_in in;
            out.suppress();
            NEED(a.read(in));
            // Never trust the count: only entries fully inside the buffer count.
            size_t fit = a.remaining() / sizeof(fuse_forget_one);
            if (in.count > fit) {
                stats_.malformed.fetch_add(1, std::memory_order_relaxed);
                LOG_WARN("BATCH_FORGET claims %u entries, %zu present", in.count, fit);
            }
            size_t n = in.count < fit ? in.count : fit;
            for (size_t i = 0; i < n; i++) {
                fuse_forget_one one;
                a.read(one);
                fs_.forget(one.nodeid, one.nlookup);
            }
            return 0;
        }
        case FUSE_GETATTR: {
            fuse_getattr_in in;
            NEED(a.read(in));
            return fs_.getattr(ctx, in, out.arg<fuse_attr_out>());
        }
        case FUSE_SETATTR: {
            fuse_setattr_in in;
            NEED(a.read(in));
            return fs_.setattr(ctx, in, out.arg<fuse_attr_out>());
        }
        case kOpStatx: {
            fuse_statx_in in;
            NEED(a.read(in));
            return fs_.statx(ctx, in, out.arg<fuse_statx_out>());
        }
        case FUSE_READLINK:
            return fs_.readlink(ctx, out);
        case FUSE_SYMLINK: {
            std::string_view name, target;
            take_name(a, name);
            NEED(a.cstring(target, PATH_MAX - 1) && !target.empty());
            return fs_.symlink(ctx, name, target, out.arg<fuse_entry_out>());
        }
        case FUSE_MKNOD: {
            fuse_mknod_in in;
            std::string_view name;
            NEED(a.read(in));
            take_name(a, name);
            return fs_.mknod(ctx, in, name, out.arg<fuse_entry_out>());
        }
        case FUSE_MKDIR: {
            fuse_mkdir_in in;
            std::string_view name;
            NEED(a.read(in));
            take_name(a, name);
            return fs_.mkdir(ctx, in, name, out.arg<fuse_entry_out>());
        }
        case FUSE_UNLINK:
        case FUSE_RMDIR: {
            std::string_view name;
            take_name(a, name);
            return op == FUSE_UNLINK ? fs_.unlink(ctx, name) : fs_.rmdir(ctx, name);
        }
        case FUSE_RENAME: {
            fuse_rename_in in;
            std::string_view from, to;
            NEED(a.read(in));
            take_name(a, from);
            take_name(a, to);
            return fs_.rename(ctx, from, in.newdir, to, 0);
        }
        case FUSE_RENAME2: {
            fuse_rename2_in in;
            std::string_view from, to;
            NEED(a.read(in));
            take_name(a, from);
            take_name(a, to);
            return fs_.rename(ctx, from, in.newdir, to, in.flags);
        }
        case FUSE_LINK: {
            fuse_link_in in;
            std::string_view name;
            NEED(a.read(in));
            take_name(a, name);
            return fs_.link(ctx, in.oldnodeid, name, out.arg<fuse_entry_out>());
        }
        case FUSE_OPEN:
        case FUSE_OPENDIR: {
            fuse_open_in in;
            NEED(a.read(in));
            auto &o = out.arg<fuse_open_out>();
            return op == FUSE_OPEN ? fs_.open(ctx, in, o) : fs_.opendir(ctx, in, o);
        }
        case FUSE_CREATE: {
            fuse_create_in in;
            std::string_view name;
            NEED(a.read(in));
            take_name(a, name);
            auto [e, o] = out.args2<fuse_entry_out, fuse_open_out>();
            return fs_.create(ctx, in, name, *e, *o);
        }
        case FUSE_TMPFILE: {
            fuse_create_in in;
            std::string_view ignored; // the VFS names a tmpfile dentry "/"
            NEED(a.read(in) && a.cstring(ignored, NAME_MAX));
            auto [e, o] = out.args2<fuse_entry_out, fuse_open_out>();
            return fs_.tmpfile(ctx, in, *e, *o);
        }
        case FUSE_READ: {
            fuse_read_in in;
            NEED(a.read(in));
            NEED(in.size <= reply_payload_size());
            out.limit_payload(in.size);
            return io ? fs_.prep_read(ctx, in, out, *io) : fs_.read(ctx, in, out);
        }
        case FUSE_WRITE: {
            fuse_write_in in;
            std::span<const std::byte> data;
            NEED(a.read(in));
            NEED(in.size <= limits_.max_write);
            if (stand_in) {
                // The data is not in `a`: the request's length says how
                // much of it there is (parse_request() checked that the
                // extensions fit).
                const uint64_t args = uint64_t(req.hdr.len) - sizeof(fuse_in_header) -
                                      uint64_t(req.hdr.total_extlen) * 8;
                NEED(a.remaining() == 0 && in.size <= args - sizeof(in) &&
                     in.size <= stand_in->size());
                data = stand_in->first(in.size);
            } else {
                NEED(a.bytes(in.size, data));
            }
            auto &wo = out.arg<fuse_write_out>();
            return io ? fs_.prep_write(ctx, in, data, wo, *io) : fs_.write(ctx, in, data, wo);
        }
        case FUSE_STATFS:
            return fs_.statfs(ctx, out.arg<fuse_statfs_out>());
        case FUSE_RELEASE:
        case FUSE_RELEASEDIR: {
            fuse_release_in in;
            NEED(a.read(in));
            return fs_.release(ctx, in, op == FUSE_RELEASEDIR);
        }
        case FUSE_FSYNC:
        case FUSE_FSYNCDIR: {
            fuse_fsync_in in;
            NEED(a.read(in));
            const bool dir = op == FUSE_FSYNCDIR;
            return io ? fs_.prep_fsync(ctx, in, dir, *io) : fs_.fsync(ctx, in, dir);
        }
        case FUSE_SETXATTR: {
            fuse_setxattr_in in{};
            // Without SETXATTR_EXT the kernel sends the 8-byte compat struct.
            if (neg_.has(FUSE_SETXATTR_EXT)) {
                NEED(a.read(in));
            } else {
                NEED(a.read(in.size) && a.read(in.flags));
            }
            std::string_view name;
            std::span<const std::byte> value;
            NEED(a.cstring(name, XATTR_NAME_MAX) && !name.empty());
            NEED(in.size <= XATTR_SIZE_MAX && a.bytes(in.size, value));
            return fs_.setxattr(ctx, in, name, value);
        }
        case FUSE_GETXATTR: {
            fuse_getxattr_in in;
            std::string_view name;
            NEED(a.read(in) && a.cstring(name, XATTR_NAME_MAX) && !name.empty());
            out.limit_payload(in.size);
            return fs_.getxattr(ctx, name, in.size, out);
        }
        case FUSE_LISTXATTR: {
            fuse_getxattr_in in;
            NEED(a.read(in));
            out.limit_payload(in.size);
            return fs_.listxattr(ctx, in.size, out);
        }
        case FUSE_REMOVEXATTR: {
            std::string_view name;
            NEED(a.cstring(name, XATTR_NAME_MAX) && !name.empty());
            return fs_.removexattr(ctx, name);
        }
        case FUSE_FLUSH: {
            fuse_flush_in in;
            NEED(a.read(in));
            return fs_.flush(ctx, in);
        }
        case FUSE_GETLK: {
            fuse_lk_in in;
            NEED(a.read(in));
            return fs_.getlk(ctx, in, out.arg<fuse_lk_out>());
        }
        case FUSE_SETLK:
        case FUSE_SETLKW: {
            fuse_lk_in in;
            NEED(a.read(in));
            return fs_.setlk(ctx, in, op == FUSE_SETLKW);
        }
        case FUSE_ACCESS: {
            fuse_access_in in;
            NEED(a.read(in));
            return fs_.access(ctx, in);
        }
        case FUSE_INTERRUPT: {
            fuse_interrupt_in in;
            out.suppress();
            NEED(a.read(in));
            fs_.interrupt(in.unique & ~kUniqueResend);
            return 0;
        }
        case FUSE_DESTROY:
            fs_.destroy();
            destroyed_.store(true, std::memory_order_release);
            // A virtio-fs guest that unmounts may mount the same device
            // again: that INIT starts a new session.
            if (limits_.reinit) {
                std::lock_guard g(neg_mu_);
                neg_ = Negotiated{};
            }
            return 0;
        case FUSE_READDIR:
        case FUSE_READDIRPLUS: {
            fuse_read_in in;
            NEED(a.read(in));
            NEED(in.size <= reply_payload_size());
            out.limit_payload(in.size);
            return fs_.readdir(ctx, in, op == FUSE_READDIRPLUS, out);
        }
        case FUSE_FALLOCATE: {
            fuse_fallocate_in in;
            NEED(a.read(in));
            return io ? fs_.prep_fallocate(ctx, in, *io) : fs_.fallocate(ctx, in);
        }
        case FUSE_LSEEK: {
            fuse_lseek_in in;
            NEED(a.read(in));
            return fs_.lseek(ctx, in, out.arg<fuse_lseek_out>());
        }
        case FUSE_COPY_FILE_RANGE: {
            fuse_copy_file_range_in in;
            NEED(a.read(in));
            return fs_.copy_file_range(ctx, in, out.arg<fuse_write_out>());
        }
        case FUSE_SYNCFS: {
            fuse_syncfs_in in;
            NEED(a.read(in));
            return fs_.syncfs(ctx);
        }
        case FUSE_SETUPMAPPING: {
            const uint64_t window = fs_.dax_window_size();
            if (!window)
                return unimplemented(op);
            fuse_setupmapping_in in;
            NEED(a.read(in));
            if (const char *why = check_setupmapping(in, window))
                return bad_mapping(ctx, "SETUPMAPPING", why);
            return fs_.setupmapping(ctx, in);
        }
        case FUSE_REMOVEMAPPING: {
            const uint64_t window = fs_.dax_window_size();
            if (!window)
                return unimplemented(op);
            fuse_removemapping_in in;
            NEED(a.read(in));
            // The kernel sends exactly `count` entries, at most a page of them.
            if (in.count == 0 || in.count > kRemoveMappingMax)
                return bad_mapping(ctx, "REMOVEMAPPING", "entry count out of range");
            if (a.remaining() != size_t(in.count) * sizeof(fuse_removemapping_one))
                return bad_mapping(ctx, "REMOVEMAPPING", "entry count does not match the length");
            std::vector<fuse_removemapping_one> v(in.count);
            for (auto &one : v) {
                a.read(one);
                if (const char *why = check_window_range(one.moffset, one.len, window))
                    return bad_mapping(ctx, "REMOVEMAPPING", why);
            }
            return fs_.removemapping(ctx, v);
        }
        case FUSE_NOTIFY_REPLY:
            // We never send NOTIFY_RETRIEVE, so there is nothing to match.
            out.suppress();
            return 0;
        default:
            // IOCTL, POLL, BMAP and anything newer.
            return unimplemented(op);
        }
    } catch (const NameTooLong &) {
        return -ENAMETOOLONG;
    } catch (const Malformed &) {
        stats_.malformed.fetch_add(1, std::memory_order_relaxed);
        LOG_WARN("malformed %s request (unique %#llx, %u bytes)",
                 opcode_name(op) ? opcode_name(op) : "unknown", (unsigned long long)ctx.unique,
                 req.hdr.len);
        return -EINVAL;
    }
}

} // namespace holdfast::fuse
