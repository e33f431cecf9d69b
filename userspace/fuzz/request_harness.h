// SPDX-License-Identifier: GPL-2.0
// fuzz_request's harness: the request decoder with no filesystem behind it,
// fast enough for 10^8 inputs.  One input is used four ways:
//   1. parse_request() on all of it: what it accepts must add up exactly.
//   2. a Reader walked over it by a small op program taken from its tail.
//   3. a Reply driven by the same program: sizes must stay consistent.
//   4. the Engine's decoder and dispatcher on it as one request, against a
//      filesystem that checks every argument it is handed lies inside the
//      request and returns whatever error the request's uid asks for (so
//      out-of-range errors reach the engine's clamp).
//   5. made a WRITE, through Engine::handle_detached() as vhost-user hands
//      it over (headers, length, the rest as a stand-in): answered as the
//      whole request is, with data only from the stand-in.
// Shared by the libFuzzer target and the GoogleTest regression test.
#pragma once

#include "fuse/engine.h"
#include "fuse/request.h"
#include "util/log.h"

#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

namespace holdfast::fuzz {

class RequestHarness {
  public:
    RequestHarness()
    {
        // Below "error": the engine logs every malformed request.
        log::set_level(static_cast<log::Level>(-1));
        area_.reset(new std::byte[kArea]);
        for (int i = 0; i < 2; i++) {
            fs_[i] = std::make_unique<CheckingFs>();
            engine_[i] = std::make_unique<fuse::Engine>(*fs_[i], fuse::EngineLimits{kMaxWrite, 4});
            init(i, i ? FUSE_SETXATTR_EXT | FUSE_INIT_EXT : 0);
        }
    }

    std::string run(const uint8_t *data, size_t size)
    {
        // Exactly sized, so ASan sees a read one byte past the input.
        std::unique_ptr<std::byte[]> buf(new std::byte[size ? size : 1]);
        if (size)
            memcpy(buf.get(), data, size);
        std::span<const std::byte> in(buf.get(), size);
        std::string err = check_parse(in);
        if (err.empty())
            err = check_reader_and_reply(in);
        if (err.empty())
            err = check_engine(in, false);
        if (err.empty() && size >= sizeof(fuse_in_header))
            err = check_engine(in, true);
        if (err.empty())
            err = check_detached(in);
        return err;
    }

  private:
    static constexpr size_t kArea = 4 * 4096;   // reply payload (max_pages 4)
    static constexpr uint32_t kMaxWrite = 8192;

    // ------------------------------------------------------------ parsing
    static std::string check_parse(std::span<const std::byte> in)
    {
        fuse::Request req;
        fuse::ParseError e = fuse::parse_request(in, req);
        if (e != fuse::ParseError::ok)
            return "";
        if (in.size() < sizeof(fuse_in_header) || req.hdr.len != in.size())
            return "parse_request accepted a request whose length is not its size";
        size_t args = req.args.remaining(), ext = req.extensions.size();
        if (sizeof(fuse_in_header) + args + ext != in.size() ||
            ext != size_t(req.hdr.total_extlen) * 8)
            return "parse_request: header + arguments + extensions != request";
        if (req.args.rest().data() != in.data() + sizeof(fuse_in_header) ||
            req.extensions.data() != in.data() + sizeof(fuse_in_header) + args)
            return "parse_request: arguments or extensions not where the request has them";
        return "";
    }

    // ------------------------------------------------- Reader and Reply
    static std::string check_reader_and_reply(std::span<const std::byte> in)
    {
        // The program: the last byte says how many ops precede it.
        size_t nops = in.empty() ? 0 : std::to_integer<size_t>(in.back()) % 48;
        if (nops + 1 > in.size())
            nops = in.empty() ? 0 : in.size() - 1;
        const std::byte *ops = in.data() + in.size() - 1 - nops;
        std::span<const std::byte> data = in.first(in.size() - (in.empty() ? 0 : 1) - nops);

        fuse::Reader r(data);
        const std::byte *lo = data.data(), *hi = data.data() + data.size();
        auto inside = [&](const void *p, size_t n) {
            auto *b = static_cast<const std::byte *>(p);
            return b >= lo && b <= hi && n <= size_t(hi - b);
        };
        std::unique_ptr<std::byte[]> area(new std::byte[512]);
        fuse::Reply rep(std::span<std::byte>(area.get(), 512));
        rep.reset(1);
        for (size_t i = 0; i < nops; i++) {
            unsigned op = std::to_integer<unsigned>(ops[i]);
            unsigned arg = op >> 3;
            size_t before = r.remaining();
            const std::byte *pos = r.rest().data();
            size_t used = 0;
            bool ok = true;
            switch (op & 7) {
            case 0: {
                fuse_in_header h;
                ok = r.read(h);
                used = sizeof(h);
                break;
            }
            case 1: {
                uint32_t v;
                ok = r.read(v);
                used = sizeof(v);
                break;
            }
            case 2: {
                std::string_view n;
                ok = r.name(n);
                if (ok) {
                    if (n.empty() || n.size() > NAME_MAX || n.find('/') != n.npos ||
                        memchr(n.data(), 0, n.size()) || !inside(n.data(), n.size() + 1) ||
                        n.data()[n.size()] != 0)
                        return "Reader::name returned an invalid name";
                    used = n.size() + 1;
                } else if (r.remaining() != before) {
                    // A failed name may still consume (the engine never
                    // reuses a Reader after a failure); only bounds matter.
                    used = before - r.remaining();
                }
                break;
            }
            case 3: {
                std::string_view s;
                size_t max = size_t(arg) * 9;
                ok = r.cstring(s, max);
                if (ok) {
                    if (s.size() > max || memchr(s.data(), 0, s.size()) ||
                        !inside(s.data(), s.size() + 1) || s.data()[s.size()] != 0)
                        return "Reader::cstring returned a string it should not";
                    used = s.size() + 1;
                }
                break;
            }
            case 4: {
                std::span<const std::byte> b;
                size_t n = size_t(arg) * 3;
                ok = r.bytes(n, b);
                if (ok && (b.size() != n || !inside(b.data(), b.size())))
                    return "Reader::bytes returned bytes outside the buffer";
                used = n;
                break;
            }
            case 5: // Reply: an argument struct
                if (arg & 1) {
                    auto [e, o] = rep.args2<fuse_entry_out, fuse_open_out>();
                    e->nodeid = 1;
                    o->fh = 2;
                } else {
                    rep.arg<fuse_attr_out>().attr_valid = 1;
                }
                break;
            case 6: // Reply: payload
                switch (arg & 3) {
                case 0:
                    rep.limit_payload(size_t(arg) * 23);
                    break;
                case 1:
                    rep.set_payload_len(size_t(arg) * 37);
                    break;
                case 2:
                    rep.append_payload(data.data(), std::min(data.size(), size_t(arg) * 11));
                    break;
                case 3:
                    rep.set_error(-int(arg));
                    break;
                }
                break;
            case 7:
                if (arg == 0)
                    rep.suppress();
                else
                    rep.reset(arg);
                break;
            }
            if ((op & 7) <= 4) {
                if (ok && before - r.remaining() != used)
                    return "Reader consumed a different number of bytes than it returned";
                if (!ok && (op & 7) != 2 && (r.remaining() != before || r.rest().data() != pos))
                    return "a failed Reader call consumed bytes";
                if (!inside(r.rest().data(), r.remaining()))
                    return "Reader points outside its buffer";
            }
            if (rep.payload().size() > 512 || rep.payload_space().size() > 512 ||
                rep.arg_bytes().size() > fuse::Reply::kArgMax)
                return "Reply grew past its buffers";
            if (rep.total_len() != sizeof(fuse_out_header) + rep.arg_bytes().size() +
                                       rep.payload().size() ||
                rep.header().len != rep.total_len())
                return "Reply length does not add up";
            if (rep.error() && (!rep.arg_bytes().empty() || !rep.payload().empty()))
                return "an error Reply carries data";
        }
        return "";
    }

    // ------------------------------------------------------------- engine
    // Every argument the engine hands over must lie inside the request.
    struct CheckingFs final : fuse::Filesystem {
        const std::byte *lo = nullptr, *hi = nullptr;
        std::string err;
        fuse::Reply *reply = nullptr;

        int res(const fuse::Ctx &c)
        {
            // uid picks the result: mostly success, sometimes any errno,
            // sometimes values the engine must clamp.
            switch (c.uid & 3) {
            case 0:
                return 0;
            case 1:
                return -int(c.gid % 600);
            case 2:
                return int(c.gid);
            default:
                return -EIO;
            }
        }
        void str(std::string_view s, const char *what)
        {
            auto *b = reinterpret_cast<const std::byte *>(s.data());
            if (b < lo || b > hi || s.size() + 1 > size_t(hi - b) || s.data()[s.size()] != 0)
                err = std::string(what) + " handed to the filesystem lies outside the request";
            else if (s.empty() || memchr(s.data(), 0, s.size()))
                err = std::string(what) + " handed to the filesystem is empty or holds a NUL";
        }
        void name(std::string_view s)
        {
            str(s, "a name");
            if (s.find('/') != s.npos || s.size() > NAME_MAX)
                err = "a name with '/' or longer than NAME_MAX reached the filesystem";
        }
        void entry(fuse_entry_out &e) { e.nodeid = 2; }
        void payload(fuse::Reply &r, size_t want)
        {
            auto sp = r.payload_space();
            size_t n = std::min(sp.size(), want);
            memset(sp.data(), 'x', n);
            r.set_payload_len(n);
        }

        uint64_t init_flags(uint64_t k) override { return k; }
        int lookup(const fuse::Ctx &c, std::string_view n, fuse_entry_out &e) override
        {
            name(n);
            entry(e);
            return res(c);
        }
        void forget(uint64_t, uint64_t) override {}
        int getattr(const fuse::Ctx &c, const fuse_getattr_in &, fuse_attr_out &) override
        {
            return res(c);
        }
        int setattr(const fuse::Ctx &c, const fuse_setattr_in &, fuse_attr_out &) override
        {
            return res(c);
        }
        int statx(const fuse::Ctx &c, const fuse::fuse_statx_in &, fuse::fuse_statx_out &) override
        {
            return res(c);
        }
        int readlink(const fuse::Ctx &c, fuse::Reply &r) override
        {
            payload(r, 17);
            return res(c);
        }
        int symlink(const fuse::Ctx &c, std::string_view n, std::string_view t,
                    fuse_entry_out &e) override
        {
            name(n);
            str(t, "a symlink target");
            entry(e);
            return res(c);
        }
        int mknod(const fuse::Ctx &c, const fuse_mknod_in &, std::string_view n,
                  fuse_entry_out &e) override
        {
            name(n);
            entry(e);
            return res(c);
        }
        int mkdir(const fuse::Ctx &c, const fuse_mkdir_in &, std::string_view n,
                  fuse_entry_out &e) override
        {
            name(n);
            entry(e);
            return res(c);
        }
        int unlink(const fuse::Ctx &c, std::string_view n) override
        {
            name(n);
            return res(c);
        }
        int rmdir(const fuse::Ctx &c, std::string_view n) override
        {
            name(n);
            return res(c);
        }
        int rename(const fuse::Ctx &c, std::string_view a, uint64_t, std::string_view b,
                   uint32_t) override
        {
            name(a);
            name(b);
            return res(c);
        }
        int link(const fuse::Ctx &c, uint64_t, std::string_view n, fuse_entry_out &e) override
        {
            name(n);
            entry(e);
            return res(c);
        }
        int open(const fuse::Ctx &c, const fuse_open_in &, fuse_open_out &o) override
        {
            o.fh = 3;
            return res(c);
        }
        int create(const fuse::Ctx &c, const fuse_create_in &, std::string_view n,
                   fuse_entry_out &e, fuse_open_out &o) override
        {
            name(n);
            entry(e);
            o.fh = 3;
            return res(c);
        }
        int tmpfile(const fuse::Ctx &c, const fuse_create_in &, fuse_entry_out &e,
                    fuse_open_out &) override
        {
            entry(e);
            return res(c);
        }
        int read(const fuse::Ctx &c, const fuse_read_in &in, fuse::Reply &r) override
        {
            payload(r, in.size);
            return res(c);
        }
        int write(const fuse::Ctx &c, const fuse_write_in &in, std::span<const std::byte> d,
                  fuse_write_out &o) override
        {
            if (d.data() < lo || d.data() > hi || d.size() > size_t(hi - d.data()) ||
                d.size() != in.size || in.size > kMaxWrite)
                err = "WRITE data handed to the filesystem is not the request's";
            o.size = uint32_t(d.size());
            return res(c);
        }
        int flush(const fuse::Ctx &c, const fuse_flush_in &) override { return res(c); }
        int release(const fuse::Ctx &c, const fuse_release_in &, bool) override { return res(c); }
        int fsync(const fuse::Ctx &c, const fuse_fsync_in &, bool) override { return res(c); }
        int fallocate(const fuse::Ctx &c, const fuse_fallocate_in &) override { return res(c); }
        int lseek(const fuse::Ctx &c, const fuse_lseek_in &, fuse_lseek_out &) override
        {
            return res(c);
        }
        int copy_file_range(const fuse::Ctx &c, const fuse_copy_file_range_in &,
                            fuse_write_out &) override
        {
            return res(c);
        }
        int opendir(const fuse::Ctx &c, const fuse_open_in &, fuse_open_out &o) override
        {
            o.fh = 4;
            return res(c);
        }
        int readdir(const fuse::Ctx &c, const fuse_read_in &in, bool, fuse::Reply &r) override
        {
            payload(r, in.size);
            return res(c);
        }
        int statfs(const fuse::Ctx &c, fuse_statfs_out &) override { return res(c); }
        int access(const fuse::Ctx &c, const fuse_access_in &) override { return res(c); }
        int syncfs(const fuse::Ctx &c) override { return res(c); }
        int setxattr(const fuse::Ctx &c, const fuse_setxattr_in &in, std::string_view n,
                     std::span<const std::byte> v) override
        {
            str(n, "an xattr name");
            if (v.size() != in.size ||
                (v.size() && (v.data() < lo || v.data() > hi || v.size() > size_t(hi - v.data()))))
                err = "an xattr value handed to the filesystem is not the request's";
            return res(c);
        }
        int getxattr(const fuse::Ctx &c, std::string_view n, uint32_t size, fuse::Reply &r) override
        {
            str(n, "an xattr name");
            if (size == 0)
                r.arg<fuse_getxattr_out>().size = 5;
            else
                payload(r, size);
            return res(c);
        }
        int listxattr(const fuse::Ctx &c, uint32_t size, fuse::Reply &r) override
        {
            if (size == 0)
                r.arg<fuse_getxattr_out>().size = 5;
            else
                payload(r, size);
            return res(c);
        }
        int removexattr(const fuse::Ctx &c, std::string_view n) override
        {
            str(n, "an xattr name");
            return res(c);
        }
        int getlk(const fuse::Ctx &c, const fuse_lk_in &, fuse_lk_out &) override
        {
            return res(c);
        }
        int setlk(const fuse::Ctx &c, const fuse_lk_in &, bool) override { return res(c); }
    };

    void init(int i, uint64_t flags)
    {
        struct {
            fuse_in_header h;
            fuse_init_in in;
        } m{};
        m.h.len = sizeof(m);
        m.h.opcode = FUSE_INIT;
        m.h.unique = 1;
        m.in.major = 7;
        m.in.minor = 40;
        m.in.flags = uint32_t(flags);
        m.in.flags2 = uint32_t(flags >> 32);
        fuse::Reply rep(std::span<std::byte>(area_.get(), kArea));
        engine_[i]->handle(std::span<const std::byte>(reinterpret_cast<std::byte *>(&m), sizeof(m)),
                           rep);
    }

    static bool no_reply_op(uint32_t op)
    {
        return op == FUSE_FORGET || op == FUSE_BATCH_FORGET || op == FUSE_INTERRUPT ||
               op == FUSE_NOTIFY_REPLY;
    }

    std::string check_engine(std::span<const std::byte> in, bool fix_len)
    {
        std::unique_ptr<std::byte[]> copy;
        fuse_in_header h{};
        if (in.size() >= sizeof(h)) {
            memcpy(&h, in.data(), sizeof(h));
            if (fix_len) {
                copy.reset(new std::byte[in.size()]);
                memcpy(copy.get(), in.data(), in.size());
                h.len = uint32_t(in.size());
                memcpy(copy.get(), &h, sizeof(h));
                in = {copy.get(), in.size()};
            }
        }
        // INTERRUPT makes no filesystem call here (interrupt() is a no-op).
        int which = h.padding & 1;
        CheckingFs &fs = *fs_[which];
        fs.lo = in.data();
        fs.hi = in.data() + in.size();
        fs.err.clear();
        fuse::Reply rep(std::span<std::byte>(area_.get(), kArea));
        engine_[which]->handle(in, rep);
        if (!fs.err.empty())
            return fs.err;
        fuse::Request req;
        bool parsed = fuse::parse_request(in, req) == fuse::ParseError::ok;
        if (!rep.should_send()) {
            if (in.size() >= sizeof(h) && !(parsed && no_reply_op(h.opcode)))
                return "no reply to a request with a header";
            return "";
        }
        if (in.size() < sizeof(h))
            return "reply to a request shorter than its header";
        if (parsed && no_reply_op(h.opcode) && h.opcode != FUSE_INIT)
            return "reply to a request that takes none";
        auto oh = rep.header();
        if (oh.len != rep.total_len() || oh.error > 0 || oh.error <= -512 ||
            (oh.error && (rep.arg_bytes().size() || rep.payload().size())))
            return "reply header inconsistent or error out of range";
        if (parsed && oh.unique != h.unique)
            return "reply unique is not the request's";
        if (rep.payload().size() > kArea)
            return "reply payload larger than the transport buffer";
        return "";
    }

    std::string check_detached(std::span<const std::byte> in)
    {
        constexpr size_t head = fuse::Engine::kWriteHeadLen;
        if (in.size() < head)
            return "";
        std::unique_ptr<std::byte[]> copy(new std::byte[in.size()]);
        memcpy(copy.get(), in.data(), in.size());
        fuse_in_header h;
        memcpy(&h, copy.get(), sizeof(h));
        h.opcode = FUSE_WRITE;
        if (h.padding & 2)
            h.len = uint32_t(in.size());
        memcpy(copy.get(), &h, sizeof(h));
        const std::span<const std::byte> w(copy.get(), in.size());
        const int which = h.padding & 1;
        CheckingFs &fs = *fs_[which];
        fs.lo = w.data();
        fs.hi = w.data() + w.size();
        fs.err.clear();
        fuse::Reply whole(std::span<std::byte>(area_.get(), kArea));
        engine_[which]->handle(w, whole);
        if (!fs.err.empty())
            return fs.err;
        const auto wh = whole.header();
        const bool sent = whole.should_send();
        // The data may come from the stand-in only.
        fs.lo = w.data() + head;
        fuse::Reply part(std::span<std::byte>(area_.get(), kArea));
        fuse::BackendIo io;
        engine_[which]->handle_detached(w.first(head), w.size(), w.subspan(head), part, false, io,
                                        false);
        if (!fs.err.empty())
            return "detached " + fs.err;
        if (io.pending())
            return "detached WRITE left pending by a filesystem that writes at once";
        const auto ph = part.header();
        if (part.should_send() != sent || ph.error != wh.error || ph.len != wh.len ||
            ph.unique != wh.unique)
            return "detached WRITE answered otherwise than the whole request";
        return "";
    }

    std::unique_ptr<std::byte[]> area_;
    std::unique_ptr<CheckingFs> fs_[2];
    std::unique_ptr<fuse::Engine> engine_[2];
};

} // namespace holdfast::fuzz
