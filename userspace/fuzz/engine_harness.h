// SPDX-License-Identifier: GPL-2.0
// fuzz_engine's harness: a sequence of FUSE requests, decoded from the fuzz
// input, through the real Engine and Passthrough over a scratch directory
// (sandbox.h, scratch.h), with every reply checked against the protocol and
// against a model of what the kernel holds (node references, open handles).
// Shared by the libFuzzer target and the GoogleTest regression test, so a
// crash input replays the same way in both.
//
// Input format (README.md has the full story):
//   byte 0      configuration: bit0 no automatic INIT (the input sends its
//               own), bit1 writeback, bit2 xattr, bit3 read-only, bits4-5
//               cache mode (never/metadata/auto/always), bit6 locks off,
//               bit7 recovery off (no journal, no fd store)
//   then frames: u8 ctl, u16le n, n bytes
//     ctl & 3 == 0 or 3: a request; the harness sets its header's len to n
//     ctl & 3 == 1: a request sent exactly as given (len may lie)
//     ctl & 3 == 2: a server restart: the process state is dropped and a new
//                   server attaches to the same state region and takes the
//                   fds back from the (fake) fd store; bytes ignored
//     ctl & 4: the server crashes after handling the request, before its
//              reply reaches the kernel; after the restart the kernel
//              resends it with FUSE_UNIQUE_RESEND (only with recovery on).
//              The result must be as if it ran once.
//   The input's uniques are replaced by a counter, as a kernel numbers its
//   requests (never reusing one on a connection): a kernel resends only
//   what it has no reply for, and only after a restart (ctl & 4).
//
// The model of the kernel: every successful entry reply (LOOKUP, MKNOD,
// MKDIR, SYMLINK, LINK, CREATE, TMPFILE, READDIRPLUS entries) is one node
// reference, FORGET/BATCH_FORGET give them back; every OPEN/OPENDIR/CREATE/
// TMPFILE reply is one open fh, RELEASE/RELEASEDIR end it.  After every
// request the inode and handle tables must hold exactly that.
//
// What the harness does not send, and why:
//   FUSE_INTERRUPT from the input: Passthrough::interrupt() waits ~20 ms for
//     a request that is not blocked; a watchdog sends real INTERRUPTs instead,
//     whenever a SETLKW (POSIX or flock) blocks for more than 3 ms.
//   MKNOD of a FIFO becomes a regular file: opening a FIFO blocks until a
//     peer opens it, and nothing else in this process ever will (CREATE
//     over an existing FIFO still opens it: see avoid() below).
#pragma once

#include "sandbox.h"
#include "fake_store.h"
#include "scratch.h"

#include "daemon/init_record.h"
#include "fs/passthrough.h"
#include "fuse/engine.h"
#include "state/handle_table.h"
#include "state/inode_table.h"
#include "state/journal.h"
#include "state/region.h"
#include "util/log.h"

#include <climits>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>

namespace holdfast::fuzz {

class EngineHarness {
  public:
    static constexpr size_t kMaxFrames = 512;
    static constexpr uint64_t kInodeCap = 48;
    static constexpr uint64_t kHandleCap = 24;
    static constexpr uint64_t kJournalCap = 8;

    EngineHarness() : sb_(Sandbox::get()), scratch_(sb_.base())
    {
        log::set_level(getenv("HOLDFAST_FUZZ_LOG") ? log::Level::debug
                                                   : static_cast<log::Level>(-1));
        // What Engine::reply_payload_size() asks of a transport with default limits.
        area_len_ = size_t(fuse::EngineLimits{}.max_pages) * 4096;
        area_.reset(new std::byte[area_len_]);
        wd_area_.reset(new std::byte[4096]);
        watchdog_ = std::thread([this] { watchdog(); });
        watchdog_.detach();
    }

    // Runs one input; "" when every check held, else what went wrong.
    std::string run(const uint8_t *data, size_t size)
    {
        std::string err;
        sb_.run([&] { err = run_in_sandbox(data, size); });
        return err;
    }

    // The sandbox thread must take the wake-up signal that interrupts a
    // blocked lock (without SA_RESTART, as holdfastd installs it).  Called
    // at every run: libFuzzer installs its own SIGUSR2 handler after start.
    static void install_wake_handler()
    {
        struct sigaction sa {};
        sa.sa_handler = [](int) {};
        sigaction(SIGUSR2, &sa, nullptr);
    }

  private:
    static bool avoid(const char *bug) { return avoid_known_bug(bug); }

    // ---------------------------------------------------------------- server
    struct Server {
        std::optional<state::Region> region;
        std::unique_ptr<state::InodeTable> inodes;
        std::unique_ptr<state::HandleTable> handles;
        std::unique_ptr<state::Journal> journal;
        std::unique_ptr<fs::Passthrough> pfs;
        std::unique_ptr<fuse::Engine> engine;

        ~Server() { stop(); }
        void stop()
        {
            engine.reset();
            pfs.reset();
            journal.reset();
            handles.reset();
            inodes.reset();
            region.reset();
        }
    };

    void build(Server &s, bool recovering)
    {
        s.inodes = std::make_unique<state::InodeTable>(*s.region);
        s.handles = std::make_unique<state::HandleTable>(*s.region);
        s.journal = std::make_unique<state::Journal>(*s.region);
        fs::Recovery rec;
        if (use_journal_) {
            rec.journal = s.journal.get();
            rec.store = store_.notifier();
        }
        s.pfs = std::make_unique<fs::Passthrough>(opts_, *s.inodes, *s.handles, rec);
        s.engine = std::make_unique<fuse::Engine>(*s.pfs, fuse::EngineLimits{});
        if (recovering) {
            s.journal->load_previous();
            s.pfs->recover(use_journal_ ? store_.copies() : std::vector<fdstore::NamedFd>{});
            auto &h = s.region->header();
            if (h.init.state.load(std::memory_order_acquire) == state::kLive)
                s.engine->adopt(daemon::load_init(h));
        } else {
            s.pfs->start_fresh();
        }
        state::Region *r = &*s.region;
        s.engine->set_on_init([r](const fuse::Negotiated &n) { daemon::persist_init(r->header(), n); });
    }

    void start(Server &s)
    {
        state::Region::Geometry g;
        g.inode_capacity = kInodeCap;
        g.handle_capacity = kHandleCap;
        g.journal_capacity = kJournalCap;
        s.region.emplace(state::Region::create(g));
        build(s, false);
    }

    // A crash and restart: only the state region survives (no fd store
    // here, so unlinked files come back ESTALE, as documented).
    std::string restart(Server &s)
    {
        Fd memfd(dup(s.region->memfd()));
        if (!memfd)
            return "restart: dup: " + std::string(strerror(errno));
        s.stop();
        try {
            s.region.emplace(state::Region::attach(std::move(memfd)));
            build(s, true);
        } catch (const std::exception &e) {
            return std::string("restart: the region this server wrote was refused: ") + e.what();
        }
        return "";
    }

    // ---------------------------------------------------------- the input
    std::string run_in_sandbox(const uint8_t *data, size_t size)
    {
        install_wake_handler();
        std::string err = scratch_.reset();
        if (!err.empty())
            return err;
        const int fds_before = count_fds();
        uint8_t cfg = size ? data[0] : 0;
        configure(cfg);
        kref_.clear();
        kfh_.clear();
        next_unique_ = 0;
        {
            Server s;
            try {
                start(s);
            } catch (const std::exception &e) {
                return std::string("server start: ") + e.what();
            }
            err = run_frames(s, cfg, data, size);
        }
        store_.clear(); // the mount is gone: so are the fds it kept
        if (!err.empty())
            return err;
        err = scratch_.check_outside();
        if (!err.empty())
            return err;
        int fds_after = count_fds();
        if (fds_after != fds_before)
            return "fd leak: " + std::to_string(fds_before) + " fds open before the input, " +
                   std::to_string(fds_after) + " after the server was torn down";
        return "";
    }

    void configure(uint8_t cfg)
    {
        opts_ = fs::Options{};
        opts_.shared_dir = scratch_.jail();
        opts_.switch_creds = false;
        opts_.writeback = cfg & 0x02;
        opts_.xattr = cfg & 0x04;
        opts_.readonly = cfg & 0x08;
        static const fs::CacheMode modes[] = {fs::CacheMode::never, fs::CacheMode::metadata,
                                              fs::CacheMode::automatic, fs::CacheMode::always};
        opts_.cache = modes[(cfg >> 4) & 3];
        opts_.posix_locks = opts_.flock = !(cfg & 0x40);
        use_journal_ = !(cfg & 0x80);
    }

    std::string run_frames(Server &s, uint8_t cfg, const uint8_t *data, size_t size)
    {
        uint64_t auto_unique = 1ull << 40;
        if (!(cfg & 1)) {
            std::string err = send_init(s, auto_unique);
            if (!err.empty())
                return err;
        }
        size_t pos = 1, frames = 0;
        while (pos + 3 <= size && frames < kMaxFrames) {
            uint8_t ctl = data[pos];
            size_t n = size_t(data[pos + 1]) | size_t(data[pos + 2]) << 8;
            pos += 3;
            if (n > size - pos)
                n = size - pos;
            const uint8_t *body = data + pos;
            pos += n;
            frames++;
            std::string err;
            if ((ctl & 3) == 2)
                err = restart(s);
            else
                err = send_frame(s, ctl, body, n);
            if (!err.empty())
                return "frame " + std::to_string(frames) + ": " + err;
        }
        return "";
    }

    std::string send_init(Server &s, uint64_t unique)
    {
        struct {
            fuse_in_header h;
            fuse_init_in in;
        } m{};
        m.h.len = sizeof(m);
        m.h.opcode = FUSE_INIT;
        m.h.unique = unique;
        m.in.major = 7;
        m.in.minor = 40;
        m.in.max_readahead = 128 * 1024;
        // What a 6.x kernel offers.
        uint64_t f = FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_ATOMIC_O_TRUNC |
                     FUSE_EXPORT_SUPPORT | FUSE_BIG_WRITES | FUSE_DONT_MASK | FUSE_FLOCK_LOCKS |
                     FUSE_AUTO_INVAL_DATA | FUSE_DO_READDIRPLUS | FUSE_READDIRPLUS_AUTO |
                     FUSE_ASYNC_DIO | FUSE_WRITEBACK_CACHE | FUSE_PARALLEL_DIROPS |
                     FUSE_HANDLE_KILLPRIV | FUSE_POSIX_ACL | FUSE_MAX_PAGES |
                     FUSE_CACHE_SYMLINKS | FUSE_EXPLICIT_INVAL_DATA | FUSE_HANDLE_KILLPRIV_V2 |
                     FUSE_SETXATTR_EXT | FUSE_INIT_EXT | fuse::kHasResend |
                     fuse::kDirectIoAllowMmap;
        m.in.flags = uint32_t(f);
        m.in.flags2 = uint32_t(f >> 32);
        return send_frame(s, 1, reinterpret_cast<const uint8_t *>(&m), sizeof(m));
    }

    std::string send_frame(Server &s, uint8_t ctl, const uint8_t *body, size_t n)
    {
        // An exactly sized heap copy: a read one byte past the request is
        // an ASan report, not a silent read of the next frame.
        std::unique_ptr<std::byte[]> buf(new std::byte[n ? n : 1]);
        if (n)
            memcpy(buf.get(), body, n);
        fuse_in_header h{};
        const bool has_hdr = n >= sizeof(h);
        if (has_hdr) {
            memcpy(&h, buf.get(), sizeof(h));
            if ((ctl & 3) != 1)
                h.len = uint32_t(n);
            // Numbered like a kernel does (a counter per connection, never
            // reused): the journal may rely on it, and the crash flow
            // below is the only way a unique comes twice.
            h.unique = next_unique_ += 2;
            // INTERRUPT comes from the watchdog only (see the top of the file).
            if (h.opcode == FUSE_INTERRUPT)
                return "";
            if (h.opcode == FUSE_MKNOD && n >= sizeof(h) + sizeof(fuse_mknod_in) &&
                avoid("fifo")) {
                fuse_mknod_in mk;
                memcpy(&mk, buf.get() + sizeof(h), sizeof(mk));
                if (S_ISFIFO(mk.mode)) {
                    mk.mode = (mk.mode & ~S_IFMT) | S_IFREG;
                    memcpy(buf.get() + sizeof(h), &mk, sizeof(mk));
                }
            }
            memcpy(buf.get(), &h, sizeof(h));
        }
        std::span<const std::byte> in(buf.get(), n);
        bool crash = (ctl & 4) && use_journal_ && has_hdr;
        if (!crash)
            return dispatch(s, in, true);
        if (no_reply_op(h.opcode)) {
            // Nothing to resend: the kernel expects no reply.
            std::string err = dispatch(s, in, true);
            return err.empty() ? restart(s) : err;
        }
        // The server handles it and dies before the reply is written: the
        // kernel never sees that reply, and resends after the restart.
        std::string err = dispatch(s, in, false);
        if (!err.empty())
            return err;
        err = restart(s);
        if (!err.empty())
            return err;
        h.unique |= fuse::kUniqueResend;
        memcpy(buf.get(), &h, sizeof(h));
        return dispatch(s, in, true);
    }

    // One request through the engine.  `delivered`: the kernel gets the
    // reply (false: the server is about to crash, nothing is checked
    // against the model until the resend).
    std::string dispatch(Server &s, std::span<const std::byte> in, bool delivered)
    {
        // What the engine will see: parse the same way to know what to expect.
        fuse::Request req;
        const bool parsed = fuse::parse_request(in, req) == fuse::ParseError::ok;
        const bool was_init = s.engine->negotiated().done;

        fuse::Reply reply(std::span<std::byte>(area_.get(), area_len_));
        // Only a SETLKW on an initialized connection can wait (a kernel
        // sends no INTERRUPT before INIT either).
        const bool blocking = parsed && req.hdr.opcode == FUSE_SETLKW && was_init;
        if (blocking)
            wd_begin(s.engine.get(), req.hdr.unique & ~fuse::kUniqueResend);
        s.engine->handle(in, reply);
        if (blocking)
            wd_end();
        if (!wd_error_.empty())
            return std::exchange(wd_error_, "");
        if (in.size() < sizeof(fuse_in_header))
            return reply.should_send() ? "reply to a request shorter than its header" : "";
        return check(s, req, parsed, was_init, reply, delivered);
    }

    // ---------------------------------------------------------- the checks
    static std::string op_name(uint32_t op)
    {
        const char *n = fuse::opcode_name(op);
        return n ? n : "opcode " + std::to_string(op);
    }

    template <class T> static T arg_as(const fuse::Reply &r, size_t off = 0)
    {
        T t{};
        memcpy(&t, r.arg_bytes().data() + off, sizeof(T));
        return t;
    }

    template <class T> static bool in_as(const fuse::Request &req, T &out)
    {
        fuse::Reader a = req.args;
        return a.read(out);
    }

    static size_t expected_arg(uint32_t op, const fuse::Request &req, bool &known)
    {
        known = true;
        switch (op) {
        case FUSE_LOOKUP:
        case FUSE_MKNOD:
        case FUSE_MKDIR:
        case FUSE_SYMLINK:
        case FUSE_LINK:
            return sizeof(fuse_entry_out);
        case FUSE_GETATTR:
        case FUSE_SETATTR:
            return sizeof(fuse_attr_out);
        case fuse::kOpStatx:
            return sizeof(fuse::fuse_statx_out);
        case FUSE_OPEN:
        case FUSE_OPENDIR:
            return sizeof(fuse_open_out);
        case FUSE_CREATE:
        case FUSE_TMPFILE:
            return sizeof(fuse_entry_out) + sizeof(fuse_open_out);
        case FUSE_WRITE:
        case FUSE_COPY_FILE_RANGE:
            return sizeof(fuse_write_out);
        case FUSE_STATFS:
            return sizeof(fuse_statfs_out);
        case FUSE_GETLK:
            return sizeof(fuse_lk_out);
        case FUSE_LSEEK:
            return sizeof(fuse_lseek_out);
        case FUSE_INIT:
            return sizeof(fuse_init_out);
        case FUSE_GETXATTR:
        case FUSE_LISTXATTR: {
            fuse_getxattr_in in{};
            in_as(req, in);
            return in.size == 0 ? sizeof(fuse_getxattr_out) : 0;
        }
        case FUSE_READ:
        case FUSE_READDIR:
        case FUSE_READDIRPLUS:
        case FUSE_READLINK:
        case FUSE_UNLINK:
        case FUSE_RMDIR:
        case FUSE_RENAME:
        case FUSE_RENAME2:
        case FUSE_RELEASE:
        case FUSE_RELEASEDIR:
        case FUSE_FSYNC:
        case FUSE_FSYNCDIR:
        case FUSE_SETXATTR:
        case FUSE_REMOVEXATTR:
        case FUSE_FLUSH:
        case FUSE_SETLK:
        case FUSE_SETLKW:
        case FUSE_ACCESS:
        case FUSE_FALLOCATE:
        case FUSE_SYNCFS:
        case FUSE_DESTROY:
            return 0;
        default:
            known = false;
            return 0;
        }
    }

    // Most payload a successful reply may carry.
    static size_t payload_limit(uint32_t op, const fuse::Request &req)
    {
        switch (op) {
        case FUSE_READ:
        case FUSE_READDIR:
        case FUSE_READDIRPLUS: {
            fuse_read_in in{};
            in_as(req, in);
            return in.size;
        }
        case FUSE_GETXATTR:
        case FUSE_LISTXATTR: {
            fuse_getxattr_in in{};
            in_as(req, in);
            return in.size;
        }
        case FUSE_READLINK:
            return PATH_MAX;
        default:
            return 0;
        }
    }

    static bool parsed_release(const fuse::Request &req)
    {
        return req.hdr.opcode == FUSE_RELEASE || req.hdr.opcode == FUSE_RELEASEDIR;
    }

    static bool no_reply_op(uint32_t op)
    {
        return op == FUSE_FORGET || op == FUSE_BATCH_FORGET || op == FUSE_INTERRUPT ||
               op == FUSE_NOTIFY_REPLY;
    }

    std::string check(Server &s, const fuse::Request &req, bool parsed, bool was_init,
                      const fuse::Reply &r, bool delivered)
    {
        const uint32_t op = req.hdr.opcode;
        const std::string what = op_name(op) + " (unique " + std::to_string(req.hdr.unique) + ")";
        if (!r.should_send()) {
            // Only the no-reply opcodes stay silent, and only once the
            // header could be trusted.
            if (!parsed || !no_reply_op(op))
                return what + ": no reply";
        } else {
            if (parsed && was_init && no_reply_op(op))
                return what + ": replied to a request that takes no reply";
            fuse_out_header oh = r.header();
            if (oh.len != r.total_len() ||
                oh.len != sizeof(fuse_out_header) + r.arg_bytes().size() + r.payload().size())
                return what + ": reply header length " + std::to_string(oh.len) +
                       " differs from what is sent";
            if (oh.error > 0 || oh.error <= -512)
                return what + ": error " + std::to_string(oh.error) + " outside (-512, 0]";
            if (oh.error != r.error())
                return what + ": header error differs";
            if (oh.unique != req.hdr.unique && parsed)
                return what + ": reply unique " + std::to_string(oh.unique) + " is not the request's";
            if (oh.error && (!r.arg_bytes().empty() || !r.payload().empty()))
                return what + ": error reply carries data";
            if (r.payload().size() > area_len_)
                return what + ": payload larger than the transport buffer";
            if (!r.payload().empty() &&
                memmem(r.payload().data(), r.payload().size(), kSecret, sizeof(kSecret) - 1))
                return what + ": jail escape: reply carries the contents of outside/secret";
        }
        if (!parsed || !was_init || !r.should_send() || r.error())
            return model_update(s, req, r, what, delivered, parsed && was_init);

        bool known;
        size_t want = expected_arg(op, req, known);
        if (!known)
            return what + ": success for an opcode the engine does not implement";
        if (r.arg_bytes().size() != want)
            return what + ": reply argument is " + std::to_string(r.arg_bytes().size()) +
                   " bytes, the kernel expects " + std::to_string(want);
        if (r.payload().size() > payload_limit(op, req))
            return what + ": payload of " + std::to_string(r.payload().size()) +
                   " bytes, more than the " + std::to_string(payload_limit(op, req)) +
                   " asked for";
        if (op == FUSE_WRITE) {
            fuse_write_in in{};
            in_as(req, in);
            if (arg_as<fuse_write_out>(r).size > in.size)
                return what + ": wrote more than it was given";
        }
        if (op == FUSE_READDIR || op == FUSE_READDIRPLUS) {
            std::string e = check_dirents(s, r, op == FUSE_READDIRPLUS, delivered);
            if (!e.empty())
                return what + ": " + e;
        }
        if (op == FUSE_OPEN || op == FUSE_OPENDIR || op == FUSE_CREATE || op == FUSE_TMPFILE) {
            size_t off = (op == FUSE_CREATE || op == FUSE_TMPFILE) ? sizeof(fuse_entry_out) : 0;
            auto o = arg_as<fuse_open_out>(r, off);
            uint64_t node = off ? arg_as<fuse_entry_out>(r).nodeid : req.hdr.nodeid;
            if (o.fh == 0 || o.fh >= s.handles->capacity())
                return what + ": fh " + std::to_string(o.fh) + " is not a handle slot";
            auto &hr = s.handles->record(o.fh);
            if (hr.state.load() != state::kLive || hr.nodeid != node ||
                hr.kind != (op == FUSE_OPENDIR ? state::kDir : state::kFile))
                return what + ": fh " + std::to_string(o.fh) + " does not describe this open";
        }
        return model_update(s, req, r, what, delivered, parsed && was_init);
    }

    std::string check_entry(Server &s, const fuse_entry_out &e, const std::string &what)
    {
        if (e.nodeid == 0 || e.nodeid >= s.inodes->capacity())
            return what + ": entry with node id " + std::to_string(e.nodeid);
        const auto &rec = s.inodes->record(e.nodeid);
        if (rec.state.load() != state::kLive)
            return what + ": entry names free slot " + std::to_string(e.nodeid);
        if (e.nodeid != state::kRootNodeId && rec.generation != e.generation)
            return what + ": entry generation differs from the slot's";
        if ((e.attr.mode & S_IFMT) != rec.mode || e.attr.ino != rec.ino)
            return what + ": entry attributes are not the slot's inode";
        return "";
    }

    std::string check_dirents(Server &s, const fuse::Reply &r, bool plus, bool delivered)
    {
        auto p = r.payload();
        size_t off = 0;
        while (off < p.size()) {
            size_t hdr = plus ? FUSE_NAME_OFFSET_DIRENTPLUS : FUSE_NAME_OFFSET;
            if (p.size() - off < hdr)
                return "truncated dirent";
            fuse_dirent d;
            memcpy(&d, p.data() + off + (plus ? sizeof(fuse_entry_out) : 0), sizeof(d));
            if (d.namelen == 0 || d.namelen > NAME_MAX)
                return "dirent name length " + std::to_string(d.namelen);
            size_t sz = FUSE_DIRENT_ALIGN(hdr + d.namelen);
            if (p.size() - off < sz)
                return "dirent runs past the payload";
            const char *name = reinterpret_cast<const char *>(p.data() + off + hdr);
            for (size_t i = 0; i < d.namelen; i++)
                if (name[i] == '/' || name[i] == 0)
                    return "dirent name contains '/' or NUL";
            for (size_t i = hdr + d.namelen; i < sz; i++)
                if (p[off + i] != std::byte{0})
                    return "dirent padding not zeroed";
            if (plus) {
                fuse_entry_out e;
                memcpy(&e, p.data() + off, sizeof(e));
                if (e.nodeid) {
                    std::string err = check_entry(s, e, "READDIRPLUS entry");
                    if (!err.empty())
                        return err;
                    if (e.nodeid != state::kRootNodeId && delivered)
                        kref_[e.nodeid]++;
                }
            }
            off += sz;
        }
        return "";
    }

    void forget_model(uint64_t node, uint64_t n)
    {
        auto it = kref_.find(node);
        if (it == kref_.end())
            return;
        it->second = n >= it->second ? 0 : it->second - n;
        if (!it->second)
            kref_.erase(it);
    }

    // The kernel's view: every entry reply is one reference, FORGET gives
    // them back.  The inode table must hold exactly that.
    std::string model_update(Server &s, const fuse::Request &req, const fuse::Reply &r,
                             const std::string &what, bool delivered, bool executed)
    {
        const uint32_t op = req.hdr.opcode;
        if (r.should_send() && !r.error() && delivered) {
            switch (op) {
            case FUSE_LOOKUP:
            case FUSE_MKNOD:
            case FUSE_MKDIR:
            case FUSE_SYMLINK:
            case FUSE_LINK:
            case FUSE_CREATE:
            case FUSE_TMPFILE: {
                auto e = arg_as<fuse_entry_out>(r);
                std::string err = check_entry(s, e, what);
                if (!err.empty())
                    return err;
                if (e.nodeid != state::kRootNodeId)
                    kref_[e.nodeid]++;
                if (op == FUSE_CREATE || op == FUSE_TMPFILE)
                    kfh_.insert(arg_as<fuse_open_out>(r, sizeof(fuse_entry_out)).fh);
                break;
            }
            case FUSE_OPEN:
            case FUSE_OPENDIR:
                kfh_.insert(arg_as<fuse_open_out>(r).fh);
                break;
            default:
                break;
            }
        }
        // DESTROY ends the session: the server closes every handle and
        // forgets every inode but the root (Passthrough::destroy), as the
        // kernel, unmounting, lets go of them without RELEASE or FORGET.
        if (executed && op == FUSE_DESTROY) {
            kfh_.clear();
            kref_.clear();
        }
        // The kernel forgets an fh when it sends RELEASE, whatever the answer.
        if (executed && parsed_release(req)) {
            fuse_release_in in;
            if (in_as(req, in))
                kfh_.erase(in.fh);
        }
        if (executed && !r.should_send()) {
            fuse::Reader a = req.args;
            if (op == FUSE_FORGET) {
                fuse_forget_in in;
                if (a.read(in))
                    forget_model(req.hdr.nodeid, in.nlookup);
            } else if (op == FUSE_BATCH_FORGET) {
                fuse_batch_forget_in in;
                if (a.read(in)) {
                    size_t fit = a.remaining() / sizeof(fuse_forget_one);
                    for (size_t i = 0; i < in.count && i < fit; i++) {
                        fuse_forget_one one;
                        a.read(one);
                        forget_model(one.nodeid, one.nlookup);
                    }
                }
            }
        }
        if (!delivered)
            return ""; // the table is ahead of the kernel until the resend
        for (uint64_t fh = 1; fh < s.handles->capacity(); fh++) {
            bool live = s.handles->record(fh).state.load() == state::kLive;
            if (live != (kfh_.count(fh) != 0))
                return what + ": fh " + std::to_string(fh) +
                       (live ? " is open in the table but not in the kernel"
                             : " is open in the kernel but free in the table");
        }
        for (uint64_t id = state::kRootNodeId + 1; id < s.inodes->capacity(); id++) {
            const auto &rec = s.inodes->record(id);
            bool live = rec.state.load() == state::kLive;
            auto it = kref_.find(id);
            uint64_t want = it == kref_.end() ? 0 : it->second;
            if (live != (want != 0) || (live && rec.nlookup.load() != want))
                return what + ": node " + std::to_string(id) + " has nlookup " +
                       (live ? std::to_string(rec.nlookup.load()) : "<free slot>") +
                       ", the kernel holds " + std::to_string(want) + " references";
        }
        return "";
    }

    static int count_fds()
    {
        int n = 0;
        if (DIR *d = opendir("/proc/self/fd")) {
            while (readdir(d))
                n++;
            closedir(d);
        }
        return n;
    }

    // ------------------------------------------------------------ watchdog
    // Plays the kernel's part when a caller waiting for a lock is signalled:
    // an INTERRUPT for the blocked request, from another thread.
    void wd_begin(fuse::Engine *e, uint64_t unique)
    {
        std::lock_guard g(wd_mu_);
        wd_engine_ = e;
        wd_unique_ = unique;
        wd_active_ = true;
        wd_seq_++;
        wd_cv_.notify_all();
    }

    void wd_end()
    {
        std::unique_lock l(wd_mu_);
        wd_active_ = false;
        wd_cv_.notify_all();
        // The INTERRUPT must be done with the engine before it can go away.
        wd_cv_.wait(l, [&] { return !wd_busy_; });
    }

    void watchdog()
    {
        std::unique_lock l(wd_mu_);
        for (;;) {
            wd_cv_.wait(l, [&] { return wd_active_; });
            uint64_t seq = wd_seq_;
            if (wd_cv_.wait_for(l, std::chrono::milliseconds(3),
                                [&] { return !wd_active_ || wd_seq_ != seq; }))
                continue;
            wd_busy_ = true;
            fuse::Engine *e = wd_engine_;
            uint64_t target = wd_unique_;
            l.unlock();
            struct {
                fuse_in_header h;
                fuse_interrupt_in in;
            } m{};
            m.h.len = sizeof(m);
            m.h.opcode = FUSE_INTERRUPT;
            m.h.unique = (wd_next_unique_ += 2) | fuse::kInterruptBit;
            m.in.unique = target;
            fuse::Reply rep(std::span<std::byte>(wd_area_.get(), 4096));
            e->handle(std::span<const std::byte>(reinterpret_cast<std::byte *>(&m), sizeof(m)),
                      rep);
            l.lock();
            if (rep.should_send())
                wd_error_ = "INTERRUPT got a reply";
            wd_busy_ = false;
            wd_cv_.notify_all();
            wd_cv_.wait(l, [&] { return !wd_active_ || wd_seq_ != seq; });
        }
    }

    Sandbox &sb_;
    Scratch scratch_;
    fs::Options opts_;
    bool use_journal_ = true;
    FakeStore store_;
    uint64_t next_unique_ = 0;
    std::map<uint64_t, uint64_t> kref_; // node id -> references the kernel holds
    std::set<uint64_t> kfh_;            // fhs the kernel holds open
    std::unique_ptr<std::byte[]> area_;
    size_t area_len_ = 0;

    std::thread watchdog_;
    std::mutex wd_mu_;
    std::condition_variable wd_cv_;
    fuse::Engine *wd_engine_ = nullptr;
    uint64_t wd_unique_ = 0;
    uint64_t wd_seq_ = 0;
    uint64_t wd_next_unique_ = 1ull << 50;
    bool wd_active_ = false;
    bool wd_busy_ = false;
    std::string wd_error_;
    std::unique_ptr<std::byte[]> wd_area_;
};

} // namespace holdfast::fuzz
