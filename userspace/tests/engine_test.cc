// SPDX-License-Identifier: GPL-2.0
// The FUSE engine driven with hand-built request bytes against a recording
// fake filesystem.  The engine is the only thing between a hostile kernel or
// guest buffer and the filesystem, so besides every opcode's decoding these
// tests feed it a corpus of malformed requests and a seeded mutation fuzzer:
// a bad request must cost exactly one error reply (or none, for no-reply
// opcodes), never a filesystem call, and never the connection.
#include "fuse/engine.h"
#include "quiet_log.h"
#include "util/log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <functional>
#include <linux/limits.h>
#include <random>
#include <string>
#include <sys/xattr.h>
#include <vector>

using namespace holdfast;
using namespace holdfast::fuse;

namespace {

// ---------------------------------------------------------------------------
// A filesystem that records what the engine decoded.

struct Call {
    std::string op;
    Ctx ctx{};
    std::string name, name2;
    uint64_t a = 0, b = 0; // op-specific: newdir/flags, oldnode, size, nodeid/nlookup
    bool flag = false;     // dir / plus / wait
    std::vector<std::byte> in;
    std::vector<std::byte> data;
    const std::byte *data_ptr = nullptr; // where the engine's span pointed
    size_t space = 0;                    // payload space the op was offered

    template <class T> T in_as() const {
        T t{};
        EXPECT_EQ(in.size(), sizeof(T)) << op;
        if (!in.empty())
            std::memcpy(&t, in.data(), std::min(in.size(), sizeof(T)));
        return t;
    }
    std::string data_str() const {
        return std::string(reinterpret_cast<const char *>(data.data()), data.size());
    }
};

template <class T> std::vector<std::byte> bytes_of(const T &v) {
    std::vector<std::byte> out(sizeof(T));
    std::memcpy(out.data(), &v, sizeof(T));
    return out;
}

constexpr uint64_t kEntryNode = 1234;
constexpr uint64_t kOpenFh = 4321;

class FakeFs final : public Filesystem {
  public:
    std::vector<Call> calls;
    int result = 0;       // what every int-returning op returns
    uint64_t want = 0;    // init_flags() answer
    uint64_t offered = 0; // init_flags() argument
    int inits = 0;
    Negotiated seen;

    uint64_t init_flags(uint64_t kernel_flags) override {
        offered = kernel_flags;
        return want;
    }
    void init(const Negotiated &n) override {
        inits++;
        seen = n;
    }
    void destroy() override { rec("destroy", Ctx{}); }

    int lookup(const Ctx &c, std::string_view name, fuse_entry_out &o) override {
        rec("lookup", c).name = name;
        entry(o);
        return result;
    }
    void forget(uint64_t nodeid, uint64_t nlookup) override {
        auto &k = rec("forget", Ctx{});
        k.a = nodeid;
        k.b = nlookup;
    }
    int getattr(const Ctx &c, const fuse_getattr_in &in, fuse_attr_out &o) override {
        rec("getattr", c, in);
        o.attr.ino = 77;
        return result;
    }
    int setattr(const Ctx &c, const fuse_setattr_in &in, fuse_attr_out &o) override {
        rec("setattr", c, in);
        o.attr.size = in.size;
        return result;
    }
    int statx(const Ctx &c, const fuse_statx_in &in, fuse_statx_out &o) override {
        rec("statx", c, in);
        o.stat.ino = 88;
        return result;
    }
    int readlink(const Ctx &c, Reply &r) override {
        rec("readlink", c).space = r.payload_space().size();
        r.append_payload("target", 6);
        return result;
    }
    int symlink(const Ctx &c, std::string_view name, std::string_view target,
                fuse_entry_out &o) override {
        auto &k = rec("symlink", c);
        k.name = name;
        k.name2 = target;
        entry(o);
        return result;
    }
    int mknod(const Ctx &c, const fuse_mknod_in &in, std::string_view name,
              fuse_entry_out &o) override {
        rec("mknod", c, in).name = name;
        entry(o);
        return result;
    }
    int mkdir(const Ctx &c, const fuse_mkdir_in &in, std::string_view name,
              fuse_entry_out &o) override {
        rec("mkdir", c, in).name = name;
        entry(o);
        return result;
    }
    int unlink(const Ctx &c, std::string_view name) override {
        rec("unlink", c).name = name;
        return result;
    }
    int rmdir(const Ctx &c, std::string_view name) override {
        rec("rmdir", c).name = name;
        return result;
    }
    int rename(const Ctx &c, std::string_view name, uint64_t newdir, std::string_view newname,
               uint32_t flags) override {
        auto &k = rec("rename", c);
        k.name = name;
        k.name2 = newname;
        k.a = newdir;
        k.b = flags;
        return result;
    }
    int link(const Ctx &c, uint64_t oldnode, std::string_view newname, fuse_entry_out &o) override {
        auto &k = rec("link", c);
        k.a = oldnode;
        k.name = newname;
        entry(o);
        return result;
    }
    int open(const Ctx &c, const fuse_open_in &in, fuse_open_out &o) override {
        rec("open", c, in);
        o.fh = kOpenFh;
        return result;
    }
    int create(const Ctx &c, const fuse_create_in &in, std::string_view name, fuse_entry_out &e,
               fuse_open_out &o) override {
        rec("create", c, in).name = name;
        entry(e);
        o.fh = kOpenFh;
        return result;
    }
    int tmpfile(const Ctx &c, const fuse_create_in &in, fuse_entry_out &e,
                fuse_open_out &o) override {
        rec("tmpfile", c, in);
        entry(e);
        o.fh = kOpenFh;
        return result;
    }
    // prep_* describe the operation (for the ring only: no IoPath)
    // instead of doing it, and return `result` if it is an error.
    bool defer = false;
    int prep_read(const Ctx &c, const fuse_read_in &in, Reply &r, BackendIo &io) override {
        if (!defer)
            return Filesystem::prep_read(c, in, r, io);
        rec("prep_read", c, in).space = r.payload_space().size();
        io.op = BackendIo::Op::read;
        io.buf = r.payload_space().data();
        io.len = uint32_t(std::min<size_t>(in.size, r.payload_space().size()));
        io.off = in.offset;
        return result ? result : kDeferred;
    }
    int prep_write(const Ctx &c, const fuse_write_in &in, std::span<const std::byte> data,
                   fuse_write_out &o, BackendIo &io) override {
        if (!defer)
            return Filesystem::prep_write(c, in, data, o, io);
        rec("prep_write", c, in).data_ptr = data.data();
        io.op = BackendIo::Op::write;
        io.buf = const_cast<std::byte *>(data.data());
        io.len = uint32_t(data.size());
        io.off = in.offset;
        return result ? result : kDeferred;
    }
    int prep_fsync(const Ctx &c, const fuse_fsync_in &in, bool dir, BackendIo &io) override {
        if (!defer)
            return Filesystem::prep_fsync(c, in, dir, io);
        rec("prep_fsync", c, in);
        io.op = BackendIo::Op::fsync;
        return result ? result : kDeferred;
    }
    int read(const Ctx &c, const fuse_read_in &in, Reply &r) override {
        auto &k = rec("read", c, in);
        fill_payload(k, r, in.size, 'r');
        return result;
    }
    int write(const Ctx &c, const fuse_write_in &in, std::span<const std::byte> data,
              fuse_write_out &o) override {
        auto &k = rec("write", c, in);
        k.data.assign(data.begin(), data.end());
        k.data_ptr = data.data();
        o.size = uint32_t(data.size());
        return result;
    }
    int flush(const Ctx &c, const fuse_flush_in &in) override {
        rec("flush", c, in);
        return result;
    }
    int release(const Ctx &c, const fuse_release_in &in, bool dir) override {
        rec("release", c, in).flag = dir;
        return result;
    }
    int fsync(const Ctx &c, const fuse_fsync_in &in, bool dir) override {
        rec("fsync", c, in).flag = dir;
        return result;
    }
    int fallocate(const Ctx &c, const fuse_fallocate_in &in) override {
        rec("fallocate", c, in);
        return result;
    }
    int lseek(const Ctx &c, const fuse_lseek_in &in, fuse_lseek_out &o) override {
        rec("lseek", c, in);
        o.offset = in.offset + 1;
        return result;
    }
    int copy_file_range(const Ctx &c, const fuse_copy_file_range_in &in,
                        fuse_write_out &o) override {
        rec("copy_file_range", c, in);
        o.size = uint32_t(in.len);
        return result;
    }
    int opendir(const Ctx &c, const fuse_open_in &in, fuse_open_out &o) override {
        rec("opendir", c, in);
        o.fh = kOpenFh + 1;
        return result;
    }
    int readdir(const Ctx &c, const fuse_read_in &in, bool plus, Reply &r) override {
        auto &k = rec("readdir", c, in);
        k.flag = plus;
        fill_payload(k, r, in.size, 'd');
        return result;
    }
    int statfs(const Ctx &c, fuse_statfs_out &o) override {
        rec("statfs", c);
        o.st.bsize = 4096;
        return result;
    }
    int access(const Ctx &c, const fuse_access_in &in) override {
        rec("access", c, in);
        return result;
    }
    int syncfs(const Ctx &c) override {
        rec("syncfs", c);
        return result;
    }
    int setxattr(const Ctx &c, const fuse_setxattr_in &in, std::string_view name,
                 std::span<const std::byte> value) override {
        auto &k = rec("setxattr", c, in);
        k.name = name;
        k.data.assign(value.begin(), value.end());
        k.data_ptr = value.data();
        return result;
    }
    int getxattr(const Ctx &c, std::string_view name, uint32_t size, Reply &r) override {
        auto &k = rec("getxattr", c);
        k.name = name;
        k.a = size;
        k.space = r.payload_space().size();
        if (size == 0)
            r.arg<fuse_getxattr_out>().size = 5;
        else if (!r.append_payload("value", 5))
            return -ERANGE;
        return result;
    }
    int listxattr(const Ctx &c, uint32_t size, Reply &r) override {
        auto &k = rec("listxattr", c);
        k.a = size;
        k.space = r.payload_space().size();
        if (size == 0)
            r.arg<fuse_getxattr_out>().size = 7;
        else if (!r.append_payload("user.a", 7))
            return -ERANGE;
        return result;
    }
    int removexattr(const Ctx &c, std::string_view name) override {
        rec("removexattr", c).name = name;
        return result;
    }
    int getlk(const Ctx &c, const fuse_lk_in &in, fuse_lk_out &o) override {
        rec("getlk", c, in);
        o.lk.type = F_UNLCK;
        return result;
    }
    int setlk(const Ctx &c, const fuse_lk_in &in, bool wait) override {
        rec("setlk", c, in).flag = wait;
        return result;
    }
    void interrupt(uint64_t unique) override { rec("interrupt", Ctx{}).a = unique; }

    uint64_t window = 0; // dax_window_size()
    uint64_t dax_window_size() const override { return window; }
    int setupmapping(const Ctx &c, const fuse_setupmapping_in &in) override {
        rec("setupmapping", c, in);
        return result;
    }
    int removemapping(const Ctx &c, std::span<const fuse_removemapping_one> v) override {
        auto &k = rec("removemapping", c);
        k.a = v.size();
        auto *b = reinterpret_cast<const std::byte *>(v.data());
        k.data.assign(b, b + v.size_bytes());
        return result;
    }

  private:
    Call &rec(const char *op, const Ctx &c) {
        calls.emplace_back();
        calls.back().op = op;
        calls.back().ctx = c;
        return calls.back();
    }
    template <class T> Call &rec(const char *op, const Ctx &c, const T &in) {
        Call &k = rec(op, c);
        k.in = bytes_of(in);
        return k;
    }
    static void entry(fuse_entry_out &o) {
        o.nodeid = kEntryNode;
        o.generation = 5;
        o.attr.ino = 99;
    }
    static void fill_payload(Call &k, Reply &r, uint32_t size, char c) {
        auto sp = r.payload_space();
        k.space = sp.size();
        size_t n = std::min<size_t>(size, sp.size());
        std::memset(sp.data(), c, n);
        r.set_payload_len(n);
    }
};

// ---------------------------------------------------------------------------
// Request builder: header + in-struct + names, len filled in at the end.

class Msg {
  public:
    explicit Msg(uint32_t opcode, uint64_t nodeid = 1) {
        static uint64_t next_unique = 2;
        hdr_.opcode = opcode;
        hdr_.nodeid = nodeid;
        hdr_.unique = next_unique += 2;
        hdr_.uid = 1000;
        hdr_.gid = 1001;
        hdr_.pid = 4242;
    }
    template <class T> Msg &in(const T &v) { return raw(&v, sizeof(T)); }
    // The first n bytes of a struct: a truncated argument.
    template <class T> Msg &part(const T &v, size_t n) { return raw(&v, std::min(n, sizeof(T))); }
    Msg &name(std::string_view s) {
        raw(s.data(), s.size());
        return raw("", 1);
    }
    Msg &raw(std::string_view s) { return raw(s.data(), s.size()); }
    Msg &raw(const void *p, size_t n) {
        auto *b = static_cast<const std::byte *>(p);
        body_.insert(body_.end(), b, b + n);
        return *this;
    }
    Msg &fill(size_t n, char c) {
        body_.insert(body_.end(), n, std::byte(c));
        return *this;
    }
    // Request extensions (security context, supplementary group) go last.
    Msg &ext(size_t units) {
        fill(units * 8, 'E');
        hdr_.total_extlen = uint16_t(hdr_.total_extlen + units);
        return *this;
    }
    // Declares the last `units` * 8 bytes already in the body extensions.
    Msg &mark_ext(size_t units) {
        hdr_.total_extlen = uint16_t(hdr_.total_extlen + units);
        return *this;
    }
    Msg &unique(uint64_t u) {
        hdr_.unique = u;
        return *this;
    }
    uint64_t unique() const { return hdr_.unique; }
    uint32_t opcode() const { return hdr_.opcode; }

    std::vector<std::byte> bytes() const {
        fuse_in_header h = hdr_;
        h.len = uint32_t(sizeof(h) + body_.size());
        std::vector<std::byte> v(sizeof(h));
        std::memcpy(v.data(), &h, sizeof(h));
        v.insert(v.end(), body_.begin(), body_.end());
        return v;
    }

  private:
    fuse_in_header hdr_{};
    std::vector<std::byte> body_;
};

using test::QuietLog;

constexpr EngineLimits kLimits{64 * 1024, 16}; // 64 KiB writes, 64 KiB replies

constexpr uint64_t kKernelFlags = FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_ATOMIC_O_TRUNC |
                                  FUSE_BIG_WRITES | FUSE_WRITEBACK_CACHE | FUSE_MAX_PAGES |
                                  FUSE_PARALLEL_DIROPS | FUSE_ASYNC_DIO | FUSE_SETXATTR_EXT |
                                  FUSE_INIT_EXT | FUSE_SECURITY_CTX | kHasResend;

fuse_init_in init_in(uint32_t major = 7, uint32_t minor = 40, uint64_t flags = kKernelFlags) {
    fuse_init_in in{};
    in.major = major;
    in.minor = minor;
    in.max_readahead = 128 * 1024;
    in.flags = uint32_t(flags);
    in.flags2 = uint32_t(flags >> 32);
    return in;
}

class EngineTest : public ::testing::Test {
  protected:
    EngineTest() : area(engine.reply_payload_size()), reply(area) {}

    Reply &send(const std::vector<std::byte> &req) {
        engine.handle(req, reply);
        return reply;
    }
    Reply &send(const Msg &m) { return send(m.bytes()); }

    // A completed INIT; clears the fake's call log.
    void init(uint64_t kernel_flags = kKernelFlags, uint64_t want = 0) {
        fs.want = want;
        send(Msg(FUSE_INIT, 0).in(init_in(7, 40, kernel_flags)));
        ASSERT_EQ(reply.error(), 0);
        ASSERT_TRUE(engine.negotiated().done);
        fs.calls.clear();
    }

    template <class T> T out() const {
        T t{};
        EXPECT_EQ(reply.arg_bytes().size(), sizeof(T));
        std::memcpy(&t, reply.arg_bytes().data(), std::min(reply.arg_bytes().size(), sizeof(T)));
        return t;
    }
    std::string payload() const {
        auto p = reply.payload();
        return std::string(reinterpret_cast<const char *>(p.data()), p.size());
    }

    // The single call a request made, which must be `op`.
    const Call &one(const char *op) {
        static const Call none;
        EXPECT_EQ(fs.calls.size(), 1u) << "expected exactly one call to " << op;
        if (fs.calls.size() != 1)
            return none;
        EXPECT_EQ(fs.calls[0].op, op);
        return fs.calls[0];
    }

    // Sends a valid request and expects a successful reply: the engine is
    // still serving.
    void expect_still_serving() {
        fs.calls.clear();
        fuse_getattr_in in{};
        send(Msg(FUSE_GETATTR, 1).in(in));
        EXPECT_TRUE(reply.should_send());
        EXPECT_EQ(reply.error(), 0);
        EXPECT_EQ(fs.calls.size(), 1u);
        fs.calls.clear();
    }

    uint64_t malformed() const { return engine.stats().malformed.load(); }

    QuietLog quiet;
    FakeFs fs;
    Engine engine{fs, kLimits};
    std::vector<std::byte> area;
    Reply reply;
};

// ---------------------------------------------------------------------------
// Before INIT

TEST_F(EngineTest, RequestsBeforeInitGetEio) {
    fuse_getattr_in g{};
    Msg m = Msg(FUSE_GETATTR, 1).in(g);
    send(m);
    EXPECT_TRUE(reply.should_send());
    EXPECT_EQ(reply.error(), -EIO);
    EXPECT_EQ(reply.unique(), m.unique());

    send(Msg(FUSE_LOOKUP, 1).name("x"));
    EXPECT_EQ(reply.error(), -EIO);
    send(Msg(FUSE_STATFS, 1));
    EXPECT_EQ(reply.error(), -EIO);
    EXPECT_TRUE(fs.calls.empty());
    EXPECT_FALSE(engine.negotiated().done);
}

// ---------------------------------------------------------------------------
// INIT

TEST_F(EngineTest, InitReplyFields) {
    Msg m = Msg(FUSE_INIT, 0).in(init_in(7, 40));
    send(m);
    ASSERT_EQ(reply.error(), 0);
    EXPECT_TRUE(reply.should_send());
    EXPECT_EQ(reply.unique(), m.unique());
    auto o = out<fuse_init_out>();
    EXPECT_EQ(o.major, 7u);
    EXPECT_EQ(o.minor, 40u);
    EXPECT_EQ(o.max_readahead, 128u * 1024);
    EXPECT_EQ(o.max_write, kLimits.max_write);
    EXPECT_EQ(o.max_pages, kLimits.max_pages);
    EXPECT_GT(o.max_background, 0);
    EXPECT_GT(o.time_gran, 0u);
    EXPECT_EQ(reply.header().len, sizeof(fuse_out_header) + sizeof(fuse_init_out));

    const Negotiated &n = engine.negotiated();
    EXPECT_TRUE(n.done);
    EXPECT_EQ(n.major, 7u);
    EXPECT_EQ(n.minor, 40u);
    EXPECT_EQ(n.max_write, kLimits.max_write);
    EXPECT_EQ(n.max_pages, kLimits.max_pages);
    EXPECT_EQ(n.max_readahead, 128u * 1024);
    EXPECT_EQ(fs.inits, 1);
    EXPECT_EQ(fs.seen.minor, 40u);
    EXPECT_EQ(fs.seen.flags, n.flags);
}

TEST(EngineInit, ReadaheadFromLimits) {
    QuietLog quiet;
    FakeFs fs;
    EngineLimits l = kLimits;
    l.max_readahead = 1u << 20; // more than the kernel's 128 KiB offer
    Engine engine(fs, l);
    std::vector<std::byte> area(engine.reply_payload_size());
    Reply reply(area);
    engine.handle(Msg(FUSE_INIT, 0).in(init_in(7, 40)).bytes(), reply);
    ASSERT_EQ(reply.error(), 0);
    fuse_init_out o{};
    ASSERT_EQ(reply.arg_bytes().size(), sizeof(o));
    std::memcpy(&o, reply.arg_bytes().data(), sizeof(o));
    EXPECT_EQ(o.max_readahead, 1u << 20);
    EXPECT_EQ(engine.negotiated().max_readahead, 1u << 20);
}

TEST_F(EngineTest, InitMinorIsMinOfKernelAndOurs) {
    send(Msg(FUSE_INIT, 0).in(init_in(7, 45)));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(out<fuse_init_out>().minor, kOurMinor);
    EXPECT_EQ(engine.negotiated().minor, kOurMinor);
}

TEST_F(EngineTest, InitOlderKernelMinorIsKept) {
    send(Msg(FUSE_INIT, 0).in(init_in(7, 37)));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(out<fuse_init_out>().major, 7u);
    EXPECT_EQ(out<fuse_init_out>().minor, 37u);
    EXPECT_EQ(engine.negotiated().minor, 37u);
}

TEST_F(EngineTest, InitFlagsAreMaskedByWhatKernelOffers) {
    // The filesystem asks for locks and writeback; the kernel offers only
    // some always-on flags and writeback.
    fs.want = FUSE_POSIX_LOCKS | FUSE_FLOCK_LOCKS | FUSE_WRITEBACK_CACHE;
    uint64_t offered = FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_WRITEBACK_CACHE | FUSE_DONT_MASK;
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, offered)));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    EXPECT_EQ(o.flags, uint32_t(FUSE_ASYNC_READ | FUSE_MAX_PAGES | FUSE_WRITEBACK_CACHE));
    EXPECT_EQ(o.flags2, 0u);
    EXPECT_EQ(fs.offered, offered);
    EXPECT_TRUE(engine.negotiated().has(FUSE_WRITEBACK_CACHE));
    EXPECT_FALSE(engine.negotiated().has(FUSE_POSIX_LOCKS));
    EXPECT_FALSE(engine.negotiated().has(FUSE_DONT_MASK)); // offered, not wanted
    EXPECT_EQ(engine.negotiated().kernel_flags, offered);
}

TEST_F(EngineTest, InitPassthroughAnnouncesStackDepth) {
    // Without max_stack_depth the kernel silently ignores FUSE_PASSTHROUGH.
    fs.want = kPassthrough;
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags | kPassthrough)));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    EXPECT_EQ(o.flags2, uint32_t(kPassthrough >> 32));
    EXPECT_EQ(o.unused[0], kPassthroughStackDepth); // max_stack_depth
    EXPECT_TRUE(engine.negotiated().has(kPassthrough));
}

TEST_F(EngineTest, InitNoStackDepthWithoutPassthrough) {
    fs.want = kPassthrough;
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags))); // not offered
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(out<fuse_init_out>().unused[0], 0u);
}

TEST_F(EngineTest, InitNothingOfferedNothingAccepted) {
    fs.want = ~0ULL;
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, 0)));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(out<fuse_init_out>().flags, 0u);
    EXPECT_EQ(out<fuse_init_out>().flags2, 0u);
    EXPECT_EQ(engine.negotiated().flags, 0u);
}

TEST_F(EngineTest, InitFlags2IgnoredWithoutInitExt) {
    // flags2 bits mean nothing unless the kernel set FUSE_INIT_EXT.
    fs.want = FUSE_SECURITY_CTX | kCreateSuppGroup;
    uint64_t offered = (kKernelFlags & ~uint64_t(FUSE_INIT_EXT)) | kCreateSuppGroup;
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, offered)));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    EXPECT_EQ(o.flags2, 0u);
    EXPECT_EQ(o.flags & FUSE_INIT_EXT, 0u);
    EXPECT_EQ(engine.negotiated().kernel_flags >> 32, 0u);
    EXPECT_FALSE(engine.negotiated().kernel_has(kHasResend));
    EXPECT_EQ(fs.offered >> 32, 0u);
}

TEST_F(EngineTest, InitFlags2WithInitExt) {
    fs.want = FUSE_SECURITY_CTX | kCreateSuppGroup | kPassthrough;
    uint64_t offered = kKernelFlags | kCreateSuppGroup; // no kPassthrough
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, offered)));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    EXPECT_TRUE(o.flags & FUSE_INIT_EXT);
    EXPECT_EQ(o.flags2, uint32_t((FUSE_SECURITY_CTX | kCreateSuppGroup) >> 32));
    EXPECT_TRUE(engine.negotiated().kernel_has(kHasResend));
    EXPECT_FALSE(engine.negotiated().has(kPassthrough));
    EXPECT_EQ(fs.offered, offered);
}

TEST_F(EngineTest, InitShortOldStyleStruct) {
    // Before 7.36 fuse_init_in was 16 bytes: major, minor, readahead, flags.
    fuse_init_in in = init_in(7, 31, FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_INIT_EXT);
    in.flags2 = 0xffffffff; // beyond the 16 bytes: must not be read
    fs.want = FUSE_POSIX_LOCKS;
    send(Msg(FUSE_INIT, 0).part(in, 16));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    EXPECT_EQ(o.minor, 31u);
    EXPECT_EQ(o.flags, uint32_t(FUSE_ASYNC_READ | FUSE_POSIX_LOCKS | FUSE_INIT_EXT));
    EXPECT_EQ(o.flags2, 0u);
    EXPECT_TRUE(engine.negotiated().done);
    EXPECT_EQ(engine.negotiated().kernel_flags >> 32, 0u);
}

TEST_F(EngineTest, InitTruncatedStructIsMalformed) {
    fuse_init_in in = init_in();
    uint64_t before = malformed();
    send(Msg(FUSE_INIT, 0).part(in, 15));
    EXPECT_EQ(reply.error(), -EINVAL);
    EXPECT_FALSE(engine.negotiated().done);
    EXPECT_EQ(fs.inits, 0);
    EXPECT_EQ(malformed(), before + 1);
    send(Msg(FUSE_INIT, 0));
    EXPECT_EQ(reply.error(), -EINVAL);
    EXPECT_EQ(malformed(), before + 2);
    // A proper INIT still works afterwards.
    init();
}

TEST_F(EngineTest, InitMajorTooOld) {
    send(Msg(FUSE_INIT, 0).in(init_in(6, 99)));
    EXPECT_EQ(reply.error(), -EPROTO);
    EXPECT_TRUE(reply.arg_bytes().empty());
    EXPECT_FALSE(engine.negotiated().done);
    EXPECT_EQ(fs.inits, 0);
    init();
}

TEST_F(EngineTest, InitMajorNewerAnswersOurMajorAndWaits) {
    send(Msg(FUSE_INIT, 0).in(init_in(8, 0)));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    EXPECT_EQ(o.major, 7u);
    EXPECT_EQ(o.minor, kOurMinor);
    EXPECT_FALSE(engine.negotiated().done);
    EXPECT_EQ(fs.inits, 0);
    // Still not initialized: ordinary requests keep failing ...
    send(Msg(FUSE_STATFS, 1));
    EXPECT_EQ(reply.error(), -EIO);
    // ... until the kernel retries with 7.x.
    init();
    EXPECT_EQ(fs.inits, 1);
}

TEST_F(EngineTest, SecondInitRefused) {
    init();
    Negotiated before = engine.negotiated();
    send(Msg(FUSE_INIT, 0).in(init_in(7, 30, FUSE_ASYNC_READ)));
    EXPECT_EQ(reply.error(), -EIO);
    EXPECT_TRUE(reply.arg_bytes().empty());
    EXPECT_EQ(engine.negotiated().minor, before.minor);
    EXPECT_EQ(engine.negotiated().flags, before.flags);
    EXPECT_EQ(fs.inits, 1);
}

TEST_F(EngineTest, AdoptedNegotiationServesWithoutInit) {
    // A restarted server takes over what the old one negotiated; the record
    // it comes from need not carry `done`.
    Negotiated n;
    n.major = 7;
    n.minor = 38;
    n.flags = FUSE_WRITEBACK_CACHE;
    n.max_write = kLimits.max_write;
    n.max_pages = kLimits.max_pages;
    engine.adopt(n);
    EXPECT_TRUE(engine.negotiated().done);
    EXPECT_EQ(engine.negotiated().minor, 38u);
    EXPECT_EQ(fs.inits, 1);
    EXPECT_TRUE(fs.seen.has(FUSE_WRITEBACK_CACHE));
    expect_still_serving();
    send(Msg(FUSE_INIT, 0).in(init_in()));
    EXPECT_EQ(reply.error(), -EIO);
    EXPECT_EQ(fs.inits, 1);
}

TEST_F(EngineTest, OnInitCallbackRunsOnceWithTheSettledValues) {
    int calls = 0;
    Negotiated got;
    engine.set_on_init([&](const Negotiated &n) {
        calls++;
        got = n;
    });
    // Refused or provisional INITs settle nothing.
    send(Msg(FUSE_INIT, 0).in(init_in(6, 0)));
    send(Msg(FUSE_INIT, 0).in(init_in(8, 0)));
    send(Msg(FUSE_INIT, 0).part(init_in(), 8));
    EXPECT_EQ(calls, 0);
    init(kKernelFlags, FUSE_WRITEBACK_CACHE);
    EXPECT_EQ(calls, 1);
    EXPECT_TRUE(got.done);
    EXPECT_EQ(got.minor, 40u);
    EXPECT_EQ(got.flags, engine.negotiated().flags);
    EXPECT_TRUE(got.has(FUSE_WRITEBACK_CACHE));
    EXPECT_EQ(got.max_write, kLimits.max_write);
    send(Msg(FUSE_INIT, 0).in(init_in()));
    EXPECT_EQ(calls, 1);
}

// ---------------------------------------------------------------------------
// Every opcode's happy path

TEST_F(EngineTest, Lookup) {
    init();
    Msg m = Msg(FUSE_LOOKUP, 5).name("foo");
    send(m);
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("lookup");
    EXPECT_EQ(c.name, "foo");
    EXPECT_EQ(c.ctx.nodeid, 5u);
    EXPECT_EQ(c.ctx.unique, m.unique());
    EXPECT_EQ(c.ctx.opcode, uint32_t(FUSE_LOOKUP));
    EXPECT_EQ(c.ctx.uid, 1000u);
    EXPECT_EQ(c.ctx.gid, 1001u);
    EXPECT_EQ(c.ctx.pid, 4242u);
    EXPECT_EQ(out<fuse_entry_out>().nodeid, kEntryNode);
    EXPECT_EQ(reply.header().len, sizeof(fuse_out_header) + sizeof(fuse_entry_out));
    EXPECT_EQ(reply.header().unique, m.unique());
    EXPECT_EQ(engine.stats().requests[FUSE_LOOKUP].load(), 1u);
}

TEST_F(EngineTest, LookupWithTrailingBytesUsesFirstName) {
    init();
    send(Msg(FUSE_LOOKUP, 5).name("foo").raw("junk"));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("lookup").name, "foo");
}

TEST_F(EngineTest, LookupLongestName) {
    init();
    std::string n(NAME_MAX, 'a');
    send(Msg(FUSE_LOOKUP, 1).name(n));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("lookup").name, n);
}

TEST_F(EngineTest, Forget) {
    init();
    fuse_forget_in in{3};
    send(Msg(FUSE_FORGET, 9).in(in));
    EXPECT_FALSE(reply.should_send());
    const Call &c = one("forget");
    EXPECT_EQ(c.a, 9u);
    EXPECT_EQ(c.b, 3u);
}

TEST_F(EngineTest, BatchForget) {
    init();
    fuse_batch_forget_in in{3, 0};
    fuse_forget_one e[3] = {{10, 1}, {11, 2}, {12, 3}};
    send(Msg(FUSE_BATCH_FORGET, 0).in(in).in(e));
    EXPECT_FALSE(reply.should_send());
    ASSERT_EQ(fs.calls.size(), 3u);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(fs.calls[i].op, "forget");
        EXPECT_EQ(fs.calls[i].a, uint64_t(10 + i));
        EXPECT_EQ(fs.calls[i].b, uint64_t(1 + i));
    }
    EXPECT_EQ(malformed(), 0u);
}

TEST_F(EngineTest, BatchForgetCountLargerThanBuffer) {
    init();
    fuse_batch_forget_in in{1000, 0};
    fuse_forget_one e[2] = {{20, 1}, {21, 1}};
    // Two whole entries and half of a third.
    send(Msg(FUSE_BATCH_FORGET, 0).in(in).in(e).fill(sizeof(fuse_forget_one) / 2, 'x'));
    EXPECT_FALSE(reply.should_send());
    ASSERT_EQ(fs.calls.size(), 2u);
    EXPECT_EQ(fs.calls[0].a, 20u);
    EXPECT_EQ(fs.calls[1].a, 21u);
    EXPECT_EQ(malformed(), 1u);
}

TEST_F(EngineTest, BatchForgetCountSmallerThanBuffer) {
    // The count bounds the entries: extra bytes are not forgotten.
    init();
    fuse_batch_forget_in in{1, 0};
    fuse_forget_one e[2] = {{20, 1}, {21, 1}};
    send(Msg(FUSE_BATCH_FORGET, 0).in(in).in(e));
    ASSERT_EQ(fs.calls.size(), 1u);
    EXPECT_EQ(fs.calls[0].a, 20u);
}

TEST_F(EngineTest, Getattr) {
    init();
    fuse_getattr_in in{FUSE_GETATTR_FH, 0, 42};
    send(Msg(FUSE_GETATTR, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("getattr");
    EXPECT_EQ(c.ctx.nodeid, 6u);
    EXPECT_EQ(c.in_as<fuse_getattr_in>().fh, 42u);
    EXPECT_EQ(c.in_as<fuse_getattr_in>().getattr_flags, uint32_t(FUSE_GETATTR_FH));
    EXPECT_EQ(out<fuse_attr_out>().attr.ino, 77u);
}

TEST_F(EngineTest, Setattr) {
    init();
    fuse_setattr_in in{};
    in.valid = FATTR_SIZE | FATTR_FH;
    in.fh = 3;
    in.size = 12345;
    send(Msg(FUSE_SETATTR, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    auto got = one("setattr").in_as<fuse_setattr_in>();
    EXPECT_EQ(got.valid, uint32_t(FATTR_SIZE | FATTR_FH));
    EXPECT_EQ(got.size, 12345u);
    EXPECT_EQ(out<fuse_attr_out>().attr.size, 12345u);
}

TEST_F(EngineTest, Statx) {
    init();
    fuse_statx_in in{};
    in.sx_mask = 0x7ff;
    in.fh = 8;
    send(Msg(kOpStatx, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("statx").in_as<fuse_statx_in>().sx_mask, 0x7ffu);
    EXPECT_EQ(out<fuse_statx_out>().stat.ino, 88u);
}

TEST_F(EngineTest, Readlink) {
    init();
    send(Msg(FUSE_READLINK, 6));
    ASSERT_EQ(reply.error(), 0);
    one("readlink");
    EXPECT_TRUE(reply.arg_bytes().empty());
    EXPECT_EQ(payload(), "target");
    EXPECT_EQ(reply.header().len, sizeof(fuse_out_header) + 6);
}

TEST_F(EngineTest, Symlink) {
    init();
    send(Msg(FUSE_SYMLINK, 2).name("link").name("/some/where/../else"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("symlink");
    EXPECT_EQ(c.name, "link");
    EXPECT_EQ(c.name2, "/some/where/../else");
    EXPECT_EQ(c.ctx.nodeid, 2u);
    EXPECT_EQ(out<fuse_entry_out>().nodeid, kEntryNode);
}

TEST_F(EngineTest, SymlinkLongestTarget) {
    init();
    std::string t(PATH_MAX - 1, 't');
    send(Msg(FUSE_SYMLINK, 2).name("l").name(t));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("symlink").name2.size(), size_t(PATH_MAX - 1));
}

TEST_F(EngineTest, Mknod) {
    init();
    fuse_mknod_in in{S_IFIFO | 0600, 0x0801, 022, 0};
    send(Msg(FUSE_MKNOD, 2).in(in).name("fifo"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("mknod");
    EXPECT_EQ(c.name, "fifo");
    auto got = c.in_as<fuse_mknod_in>();
    EXPECT_EQ(got.mode, uint32_t(S_IFIFO | 0600));
    EXPECT_EQ(got.rdev, 0x0801u);
    EXPECT_EQ(got.umask, 022u);
    EXPECT_EQ(out<fuse_entry_out>().nodeid, kEntryNode);
}

TEST_F(EngineTest, Mkdir) {
    init();
    fuse_mkdir_in in{0755, 022};
    send(Msg(FUSE_MKDIR, 2).in(in).name("dir"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("mkdir");
    EXPECT_EQ(c.name, "dir");
    EXPECT_EQ(c.in_as<fuse_mkdir_in>().mode, 0755u);
    EXPECT_EQ(c.in_as<fuse_mkdir_in>().umask, 022u);
}

TEST_F(EngineTest, MkdirWithSecurityContextExtension) {
    // Extensions sit after the name and are not part of it.
    init();
    fuse_mkdir_in in{0700, 0};
    send(Msg(FUSE_MKDIR, 2).in(in).name("d").ext(4));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("mkdir").name, "d");
}

TEST_F(EngineTest, UnlinkAndRmdir) {
    init();
    send(Msg(FUSE_UNLINK, 2).name("file"));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("unlink").name, "file");
    EXPECT_TRUE(reply.arg_bytes().empty());
    fs.calls.clear();
    send(Msg(FUSE_RMDIR, 2).name("dir"));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("rmdir").name, "dir");
}

TEST_F(EngineTest, Rename) {
    init();
    fuse_rename_in in{7};
    send(Msg(FUSE_RENAME, 2).in(in).name("from").name("to"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("rename");
    EXPECT_EQ(c.ctx.nodeid, 2u);
    EXPECT_EQ(c.name, "from");
    EXPECT_EQ(c.name2, "to");
    EXPECT_EQ(c.a, 7u);
    EXPECT_EQ(c.b, 0u);
}

TEST_F(EngineTest, Rename2) {
    init();
    fuse_rename2_in in{8, RENAME_EXCHANGE, 0};
    send(Msg(FUSE_RENAME2, 3).in(in).name("x").name("y"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("rename");
    EXPECT_EQ(c.ctx.nodeid, 3u);
    EXPECT_EQ(c.name, "x");
    EXPECT_EQ(c.name2, "y");
    EXPECT_EQ(c.a, 8u);
    EXPECT_EQ(c.b, uint64_t(RENAME_EXCHANGE));
}

TEST_F(EngineTest, Link) {
    init();
    fuse_link_in in{33};
    send(Msg(FUSE_LINK, 4).in(in).name("hard"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("link");
    EXPECT_EQ(c.ctx.nodeid, 4u); // the new parent
    EXPECT_EQ(c.a, 33u);         // the inode gaining a name
    EXPECT_EQ(c.name, "hard");
    EXPECT_EQ(out<fuse_entry_out>().nodeid, kEntryNode);
}

TEST_F(EngineTest, OpenAndOpendir) {
    init();
    fuse_open_in in{O_RDWR | O_APPEND, 0};
    send(Msg(FUSE_OPEN, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("open").in_as<fuse_open_in>().flags, uint32_t(O_RDWR | O_APPEND));
    EXPECT_EQ(out<fuse_open_out>().fh, kOpenFh);
    fs.calls.clear();
    fuse_open_in d{O_RDONLY | O_DIRECTORY, 0};
    send(Msg(FUSE_OPENDIR, 6).in(d));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("opendir").in_as<fuse_open_in>().flags, uint32_t(O_RDONLY | O_DIRECTORY));
    EXPECT_EQ(out<fuse_open_out>().fh, kOpenFh + 1);
}

TEST_F(EngineTest, Create) {
    init();
    fuse_create_in in{O_CREAT | O_EXCL | O_WRONLY, S_IFREG | 0640, 022, 0};
    send(Msg(FUSE_CREATE, 2).in(in).name("new"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("create");
    EXPECT_EQ(c.name, "new");
    auto got = c.in_as<fuse_create_in>();
    EXPECT_EQ(got.flags, uint32_t(O_CREAT | O_EXCL | O_WRONLY));
    EXPECT_EQ(got.mode, uint32_t(S_IFREG | 0640));
    EXPECT_EQ(got.umask, 022u);

    // Reply: entry_out then open_out, back to back.
    auto arg = reply.arg_bytes();
    ASSERT_EQ(arg.size(), sizeof(fuse_entry_out) + sizeof(fuse_open_out));
    fuse_entry_out e;
    fuse_open_out o;
    std::memcpy(&e, arg.data(), sizeof(e));
    std::memcpy(&o, arg.data() + sizeof(e), sizeof(o));
    EXPECT_EQ(e.nodeid, kEntryNode);
    EXPECT_EQ(o.fh, kOpenFh);
}

TEST_F(EngineTest, CreateWithExtensions) {
    init();
    fuse_create_in in{O_CREAT | O_RDWR, S_IFREG | 0600, 0, 0};
    send(Msg(FUSE_CREATE, 2).in(in).name("f").ext(3));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("create").name, "f");
}

TEST_F(EngineTest, TmpfileAcceptsSlashName) {
    // The VFS names an O_TMPFILE dentry "/"; it is not a path component.
    init();
    fuse_create_in in{O_TMPFILE | O_RDWR, S_IFREG | 0600, 0, 0};
    send(Msg(FUSE_TMPFILE, 2).in(in).name("/"));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("tmpfile").in_as<fuse_create_in>().flags, uint32_t(O_TMPFILE | O_RDWR));
    EXPECT_EQ(reply.arg_bytes().size(), sizeof(fuse_entry_out) + sizeof(fuse_open_out));
}

// ---------------------------------------------------------------------------
// FUSE_CREATE_SUPP_GROUP: the fuse_ext_header + fuse_supp_groups extension.

// One extension record: header{size, type} + body, padded to 8 bytes.  `size`
// 0 means the true (padded) size.
std::vector<std::byte> ext_record(uint32_t type, const std::vector<uint32_t> &body,
                                  uint32_t size = 0) {
    size_t len = sizeof(fuse_ext_header) + body.size() * 4;
    len = (len + 7) & ~size_t(7);
    fuse_ext_header h{size ? size : uint32_t(len), type};
    std::vector<std::byte> v(len);
    std::memcpy(v.data(), &h, sizeof(h));
    if (!body.empty())
        std::memcpy(v.data() + sizeof(h), body.data(), body.size() * 4);
    return v;
}
// The record the kernel sends: one group.
std::vector<std::byte> groups_ext(uint32_t gid) { return ext_record(kExtGroups, {1, gid}); }

int find_group(const std::vector<std::byte> &v, uint32_t &gid) {
    return find_supp_group(std::span<const std::byte>(v.data(), v.size()), gid);
}

TEST(SuppGroupExt, Valid) {
    uint32_t gid = 0;
    EXPECT_EQ(find_group(groups_ext(4242), gid), 1);
    EXPECT_EQ(gid, 4242u);
    auto many = ext_record(kExtGroups, {3, 7, 8, 9});
    EXPECT_EQ(find_group(many, gid), 1);
    EXPECT_EQ(gid, 7u);
}

TEST(SuppGroupExt, NoneOrEmpty) {
    uint32_t gid = 99;
    EXPECT_EQ(find_group({}, gid), 0);
    EXPECT_EQ(find_group(ext_record(kExtGroups, {0}), gid), 0);
    EXPECT_EQ(gid, 99u);
}

TEST(SuppGroupExt, WrongTypeIsSkipped) {
    uint32_t gid = 99;
    // A security context record (types 0..31) alone: no group.
    EXPECT_EQ(find_group(ext_record(1, {0x11111111, 0x22222222, 0x33333333}), gid), 0);
    EXPECT_EQ(find_group(ext_record(kExtGroups + 1, {1, 5}), gid), 0);
    EXPECT_EQ(gid, 99u);
    // ... and walked past when the group record follows it.
    auto v = ext_record(1, {0x11111111, 0x22222222, 0x33333333});
    auto g = groups_ext(31337);
    v.insert(v.end(), g.begin(), g.end());
    EXPECT_EQ(find_group(v, gid), 1);
    EXPECT_EQ(gid, 31337u);
}

TEST(SuppGroupExt, Truncated) {
    uint32_t gid = 99;
    auto v = groups_ext(5);
    // The header claims 16 bytes; only 8 or 12 are there.
    for (size_t keep : {1, 4, 7, 8, 12, 15}) {
        std::vector<std::byte> t(v.begin(), v.begin() + keep);
        EXPECT_EQ(find_group(t, gid), -EINVAL) << keep;
    }
    // A record that claims more than the area.
    EXPECT_EQ(find_group(ext_record(kExtGroups, {1, 5}, 24), gid), -EINVAL);
    // A groups record too short for nr_groups itself.
    EXPECT_EQ(find_group(ext_record(kExtGroups, {}), gid), -EINVAL);
    // Sizes that do not advance or are not 8-aligned.
    EXPECT_EQ(find_group(ext_record(kExtGroups, {1, 5}, 0x7fffffff), gid), -EINVAL);
    {
        auto z = groups_ext(5);
        uint32_t zero = 0;
        std::memcpy(z.data(), &zero, 4);
        EXPECT_EQ(find_group(z, gid), -EINVAL);
    }
    EXPECT_EQ(find_group(ext_record(1, {1, 2, 3}, 12), gid), -EINVAL);
    EXPECT_EQ(gid, 99u);
}

TEST(SuppGroupExt, CountOverflow) {
    uint32_t gid = 99;
    // One group's room, two claimed.
    EXPECT_EQ(find_group(ext_record(kExtGroups, {2, 5}), gid), -EINVAL);
    // nr_groups * 4 wraps 32 bits: 0x40000001 * 4 == 4 (mod 2^32).
    EXPECT_EQ(find_group(ext_record(kExtGroups, {0x40000001, 5}), gid), -EINVAL);
    EXPECT_EQ(find_group(ext_record(kExtGroups, {0xffffffff, 5}), gid), -EINVAL);
    EXPECT_EQ(gid, 99u);
}

class SuppGroupEngineTest : public EngineTest {
  protected:
    void SetUp() override { init(kKernelFlags | kCreateSuppGroup, kCreateSuppGroup); }
};

TEST_F(SuppGroupEngineTest, NegotiatedWhenWantedAndOffered) {
    EXPECT_TRUE(engine.negotiated().has(kCreateSuppGroup));
}

TEST_F(SuppGroupEngineTest, EveryCreatingOpGetsTheGroup) {
    auto g = groups_ext(1234);
    fuse_create_in cin{O_CREAT | O_RDWR, S_IFREG | 0640, 0, 0};
    fuse_mkdir_in din{0755, 0};
    fuse_mknod_in nin{S_IFIFO | 0644, 0, 0, 0};
    std::vector<Msg> msgs;
    msgs.push_back(Msg(FUSE_CREATE, 2).in(cin).name("f"));
    msgs.push_back(Msg(FUSE_TMPFILE, 2).in(cin).name("/"));
    msgs.push_back(Msg(FUSE_MKDIR, 2).in(din).name("d"));
    msgs.push_back(Msg(FUSE_MKNOD, 2).in(nin).name("p"));
    msgs.push_back(Msg(FUSE_SYMLINK, 2).name("l").name("target"));
    for (auto &m : msgs) {
        fs.calls.clear();
        m.raw(g.data(), g.size()).mark_ext(g.size() / 8);
        send(m);
        ASSERT_EQ(reply.error(), 0) << m.opcode();
        ASSERT_EQ(fs.calls.size(), 1u) << m.opcode();
        EXPECT_TRUE(fs.calls[0].ctx.has_supp_gid) << m.opcode();
        EXPECT_EQ(fs.calls[0].ctx.supp_gid, 1234u) << m.opcode();
    }
    // The name is still the name: the extension is not part of it.
    EXPECT_EQ(fs.calls[0].name2, "target");
}

TEST_F(SuppGroupEngineTest, WithoutExtensionNoGroup) {
    fuse_create_in in{O_CREAT | O_RDWR, S_IFREG | 0600, 0, 0};
    send(Msg(FUSE_CREATE, 2).in(in).name("f"));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_FALSE(one("create").ctx.has_supp_gid);
}

TEST_F(SuppGroupEngineTest, WrongTypeIsIgnored) {
    auto x = ext_record(1, {0x45454545, 0x45454545, 0x45454545});
    fuse_create_in in{O_CREAT | O_RDWR, S_IFREG | 0600, 0, 0};
    send(Msg(FUSE_CREATE, 2).in(in).name("f").raw(x.data(), x.size()).mark_ext(x.size() / 8));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_FALSE(one("create").ctx.has_supp_gid);
    EXPECT_EQ(malformed(), 0u);
}

TEST_F(SuppGroupEngineTest, MalformedExtensionIsEinvalAndNoCall) {
    std::vector<std::vector<std::byte>> bad = {
        ext_record(kExtGroups, {2, 5}),          // count overflow
        ext_record(kExtGroups, {0xffffffff, 5}), // count overflow, wrapping
        ext_record(kExtGroups, {1, 5}, 24),      // record longer than the area
        ext_record(kExtGroups, {1, 5}, 4),       // record shorter than its header
    };
    fuse_mkdir_in in{0755, 0};
    uint64_t before = malformed();
    for (auto &b : bad) {
        fs.calls.clear();
        send(Msg(FUSE_MKDIR, 2).in(in).name("d").raw(b.data(), b.size()).mark_ext(b.size() / 8));
        EXPECT_TRUE(reply.should_send());
        EXPECT_EQ(reply.error(), -EINVAL);
        EXPECT_TRUE(fs.calls.empty());
    }
    EXPECT_EQ(malformed(), before + bad.size());
    expect_still_serving();
}

TEST_F(SuppGroupEngineTest, NonCreatingOpsDoNotParse) {
    // Filler bytes would be malformed as a record, but UNLINK takes none.
    send(Msg(FUSE_UNLINK, 2).name("f").ext(2));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_FALSE(one("unlink").ctx.has_supp_gid);
}

TEST_F(EngineTest, SuppGroupExtensionIgnoredWhenNotNegotiated) {
    init(); // kernel does not offer FUSE_CREATE_SUPP_GROUP
    auto g = groups_ext(1234);
    fuse_create_in in{O_CREAT | O_RDWR, S_IFREG | 0600, 0, 0};
    send(Msg(FUSE_CREATE, 2).in(in).name("f").raw(g.data(), g.size()).mark_ext(g.size() / 8));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_FALSE(one("create").ctx.has_supp_gid);
}

TEST_F(EngineTest, Read) {
    init();
    fuse_read_in in{};
    in.fh = 5;
    in.offset = 4096;
    in.size = 1000;
    send(Msg(FUSE_READ, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("read");
    EXPECT_EQ(c.in_as<fuse_read_in>().fh, 5u);
    EXPECT_EQ(c.in_as<fuse_read_in>().offset, 4096u);
    // The filesystem may not produce more than the kernel asked for.
    EXPECT_EQ(c.space, 1000u);
    EXPECT_TRUE(reply.arg_bytes().empty());
    EXPECT_EQ(reply.payload().size(), 1000u);
    EXPECT_EQ(reply.header().len, sizeof(fuse_out_header) + 1000);
}

TEST_F(EngineTest, ReadAtPayloadLimit) {
    init();
    fuse_read_in in{};
    in.size = uint32_t(engine.reply_payload_size());
    send(Msg(FUSE_READ, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("read").space, engine.reply_payload_size());
    EXPECT_EQ(reply.payload().size(), engine.reply_payload_size());
}

TEST_F(EngineTest, ReadSpaceCappedBySmallerTransportBuffer) {
    init();
    std::vector<std::byte> small(100);
    Reply r(small);
    fuse_read_in in{};
    in.size = 4096;
    engine.handle(Msg(FUSE_READ, 6).in(in).bytes(), r);
    ASSERT_EQ(r.error(), 0);
    EXPECT_EQ(one("read").space, 100u);
    EXPECT_EQ(r.payload().size(), 100u);
}

TEST_F(EngineTest, ReadZeroBytes) {
    init();
    fuse_read_in in{};
    send(Msg(FUSE_READ, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("read").space, 0u);
    EXPECT_EQ(reply.header().len, sizeof(fuse_out_header));
}

// Backing-file I/O a transport carries out (fuse/backend_io.h).

TEST_F(EngineTest, DeferredReadIsCompletedByTheTransport) {
    init();
    fs.defer = true;
    fuse_read_in in{};
    in.fh = 5;
    in.offset = 8192;
    in.size = 1000;
    BackendIo io;
    engine.handle(Msg(FUSE_READ, 6).in(in).bytes(), reply, false, io);
    ASSERT_TRUE(io.pending());
    EXPECT_EQ(one("prep_read").space, 1000u);
    EXPECT_EQ(io.buf, reply.payload_space().data());
    EXPECT_EQ(io.len, 1000u);
    EXPECT_EQ(io.off, 8192u);
    // A short read, then EOF: the reply carries what was read.
    std::memset(io.buf, 'd', 600);
    EXPECT_FALSE(io.absorb(600));
    EXPECT_EQ(io.next_off(), 8792u);
    EXPECT_EQ(io.next_len(), 400u);
    EXPECT_TRUE(io.absorb(0));
    engine.complete(io, reply);
    EXPECT_FALSE(io.pending());
    EXPECT_EQ(reply.error(), 0);
    EXPECT_EQ(payload(), std::string(600, 'd'));
    EXPECT_EQ(reply.header().len, sizeof(fuse_out_header) + 600);
}

TEST_F(EngineTest, DeferredReadErrorIsTheReply) {
    init();
    fs.defer = true;
    fuse_read_in in{};
    in.size = 4096;
    BackendIo io;
    engine.handle(Msg(FUSE_READ, 6).in(in).bytes(), reply, false, io);
    ASSERT_TRUE(io.pending());
    EXPECT_TRUE(io.absorb(-EIO));
    engine.complete(io, reply);
    EXPECT_EQ(reply.error(), -EIO);
    EXPECT_TRUE(reply.payload().empty());
    EXPECT_EQ(engine.stats().errors[FUSE_READ].load(), 1u);
}

TEST_F(EngineTest, DeferredWriteReportsWhatWasWritten) {
    init();
    fs.defer = true;
    fuse_write_in in{};
    in.fh = 5;
    in.size = 100;
    BackendIo io;
    auto bytes = Msg(FUSE_WRITE, 6).in(in).raw(std::string(100, 'w')).bytes();
    engine.handle(bytes, reply, false, io);
    ASSERT_TRUE(io.pending());
    // The operation writes straight from the request.
    EXPECT_EQ(io.buf, one("prep_write").data_ptr);
    EXPECT_EQ(io.len, 100u);
    EXPECT_TRUE(io.absorb(100));
    engine.complete(io, reply);
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(out<fuse_write_out>().size, 100u);
}

// A WRITE whose data the transport left in its own buffers: the engine
// sees its headers and the request's length, and the filesystem gets the
// stand-in where the data would be.
class DetachedWrite : public EngineTest {
  protected:
    void SetUp() override
    {
        init();
        fs.defer = true;
    }
    // `m`'s first kWriteHeadLen bytes as the head, the rest as the stand-in
    // (the test's copy of the bytes, as a transport's buffer would be).
    Reply &send_detached(const std::vector<std::byte> &bytes, uint64_t total, BackendIo &io,
                         bool resubmitted = false)
    {
        head.assign(bytes.begin(), bytes.begin() + Engine::kWriteHeadLen);
        stand_in.assign(bytes.begin() + Engine::kWriteHeadLen, bytes.end());
        engine.handle_detached(head, total, stand_in, reply, resubmitted, io, false);
        return reply;
    }
    fuse_write_in write_in(uint32_t size)
    {
        fuse_write_in in{};
        in.fh = 5;
        in.offset = 4096;
        in.size = size;
        return in;
    }
    std::vector<std::byte> head, stand_in;
};

TEST_F(DetachedWrite, TheFilesystemWritesFromTheStandIn)
{
    auto bytes = Msg(FUSE_WRITE, 6).in(write_in(100)).raw(std::string(100, 'w')).bytes();
    BackendIo io;
    send_detached(bytes, bytes.size(), io);
    ASSERT_TRUE(io.pending());
    EXPECT_EQ(one("prep_write").data_ptr, stand_in.data());
    EXPECT_EQ(io.buf, stand_in.data());
    EXPECT_EQ(io.len, 100u);
    EXPECT_EQ(io.off, 4096u);
    EXPECT_FALSE(fs.calls[0].ctx.resent);
    EXPECT_TRUE(io.absorb(100));
    engine.complete(io, reply);
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(out<fuse_write_out>().size, 100u);
    EXPECT_EQ(malformed(), 0u);
}

TEST_F(DetachedWrite, ASynchronousWriteGetsTheStandInToo)
{
    // An append, say: the filesystem writes at once, from `data`.
    fs.defer = false;
    auto bytes = Msg(FUSE_WRITE, 6).in(write_in(10)).raw(std::string(10, 'w')).bytes();
    BackendIo io;
    send_detached(bytes, bytes.size(), io);
    EXPECT_FALSE(io.pending());
    EXPECT_EQ(one("write").data_ptr, stand_in.data());
    EXPECT_EQ(fs.calls[0].data.size(), 10u);
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(out<fuse_write_out>().size, 10u);
}

TEST_F(DetachedWrite, AResubmittedChainIsResent)
{
    auto bytes = Msg(FUSE_WRITE, 6).in(write_in(8)).raw(std::string(8, 'w')).bytes();
    BackendIo io;
    send_detached(bytes, bytes.size(), io, true);
    ASSERT_TRUE(io.pending());
    EXPECT_TRUE(one("prep_write").ctx.resent);
    EXPECT_EQ(engine.stats().resent.load(), 1u);
}

TEST_F(DetachedWrite, DataAfterTheWriteIsIgnoredAsInAContiguousOne)
{
    auto bytes = Msg(FUSE_WRITE, 6).in(write_in(8)).raw(std::string(20, 'w')).bytes();
    BackendIo io;
    send_detached(bytes, bytes.size(), io);
    ASSERT_TRUE(io.pending());
    EXPECT_EQ(io.len, 8u);
}

TEST_F(DetachedWrite, LyingLengthsAreRefusedBeforeTheFilesystem)
{
    BackendIo io;
    // The chain is longer or shorter than the header says.
    auto bytes = Msg(FUSE_WRITE, 6).in(write_in(100)).raw(std::string(100, 'w')).bytes();
    for (uint64_t total :
         {bytes.size() - 1, bytes.size() + 1, uint64_t(UINT32_MAX) + 1 + bytes.size()}) {
        send_detached(bytes, total, io);
        EXPECT_FALSE(io.pending());
        EXPECT_EQ(reply.error(), -EIO) << total;
    }
    // More data than the request holds, than its extensions leave, than
    // max_write.
    auto shorter = Msg(FUSE_WRITE, 6).in(write_in(101)).raw(std::string(100, 'w')).bytes();
    auto ext = Msg(FUSE_WRITE, 6).in(write_in(100)).raw(std::string(100, 'w')).mark_ext(1).bytes();
    auto big = Msg(FUSE_WRITE, 6)
                   .in(write_in(kLimits.max_write + 1))
                   .fill(kLimits.max_write + 1, 'w')
                   .bytes();
    for (auto *b : {&shorter, &ext, &big}) {
        send_detached(*b, b->size(), io);
        EXPECT_FALSE(io.pending());
        EXPECT_EQ(reply.error(), -EINVAL);
    }
    // Extensions longer than the whole request; a write_in cut by them.
    auto huge = Msg(FUSE_WRITE, 6).in(write_in(8)).raw(std::string(8, 'w')).mark_ext(100).bytes();
    auto cut = Msg(FUSE_WRITE, 6).in(write_in(0)).raw(std::string(8, 'w')).mark_ext(2).bytes();
    send_detached(huge, huge.size(), io);
    EXPECT_EQ(reply.error(), -EIO);
    send_detached(cut, cut.size(), io);
    EXPECT_EQ(reply.error(), -EINVAL);
    EXPECT_FALSE(io.pending());
    EXPECT_TRUE(fs.calls.empty());
    EXPECT_EQ(malformed(), 8u);
    expect_still_serving();
}

TEST_F(DetachedWrite, OnlyAWriteMayComeWithoutItsData)
{
    fuse_getattr_in in{};
    auto bytes = Msg(FUSE_GETATTR, 6).in(in).fill(40, 'x').bytes();
    BackendIo io;
    send_detached(bytes, bytes.size(), io);
    EXPECT_FALSE(io.pending());
    EXPECT_EQ(reply.error(), -EIO);
    EXPECT_TRUE(fs.calls.empty());
}

TEST_F(DetachedWrite, TheSameAnswersAsAContiguousWrite)
{
    // Every length from none to past the request's end, through both
    // entry points: the same error, the same data length.
    for (uint32_t size = 0; size < 40; size++) {
        for (uint16_t ext : {0, 1, 3}) {
            Msg m(FUSE_WRITE, 6);
            m.in(write_in(size)).fill(24, 'w');
            if (ext)
                m.mark_ext(ext);
            auto bytes = m.bytes();
            BackendIo a, b;
            fs.calls.clear();
            engine.handle(bytes, reply, false, a, false);
            const int err = reply.error();
            const uint32_t len = a.len;
            const size_t calls = fs.calls.size();
            fs.calls.clear();
            send_detached(bytes, bytes.size(), b);
            EXPECT_EQ(reply.error(), err) << size << " " << ext;
            EXPECT_EQ(b.len, len) << size << " " << ext;
            EXPECT_EQ(fs.calls.size(), calls) << size << " " << ext;
        }
    }
}

TEST_F(EngineTest, DeferredFsyncError) {
    init();
    fs.defer = true;
    fuse_fsync_in in{};
    BackendIo io;
    engine.handle(Msg(FUSE_FSYNC, 6).in(in).bytes(), reply, false, io);
    ASSERT_TRUE(io.pending());
    EXPECT_TRUE(io.absorb(-ENOSPC));
    engine.complete(io, reply);
    EXPECT_EQ(reply.error(), -ENOSPC);
}

TEST_F(EngineTest, DescribedIoWithAnErrorIsDropped) {
    init();
    fs.defer = true;
    fs.result = -EBADF;
    fuse_read_in in{};
    in.size = 10;
    BackendIo io;
    engine.handle(Msg(FUSE_READ, 6).in(in).bytes(), reply, false, io);
    EXPECT_FALSE(io.pending());
    EXPECT_EQ(reply.error(), -EBADF);
}

TEST_F(EngineTest, WithoutBackendIoNothingIsDeferred) {
    init();
    fs.defer = true;
    fuse_read_in in{};
    in.size = 10;
    send(Msg(FUSE_READ, 6).in(in));
    EXPECT_EQ(reply.error(), 0);
    EXPECT_EQ(one("read").space, 10u);
}

TEST_F(EngineTest, OtherOpsAreNeverDeferred) {
    init();
    fs.defer = true;
    BackendIo io;
    fuse_getattr_in in{};
    engine.handle(Msg(FUSE_GETATTR, 6).in(in).bytes(), reply, false, io);
    EXPECT_FALSE(io.pending());
    EXPECT_EQ(reply.error(), 0);
    one("getattr");
}

TEST_F(EngineTest, WriteDataIsExactlySize) {
    init();
    fuse_write_in in{};
    in.fh = 9;
    in.offset = 100;
    in.size = 5;
    auto req = Msg(FUSE_WRITE, 6).in(in).raw("hello").bytes();
    send(req);
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("write");
    EXPECT_EQ(c.data_str(), "hello");
    EXPECT_EQ(c.in_as<fuse_write_in>().offset, 100u);
    // Zero copy: the span points into the request buffer, right after the struct.
    EXPECT_EQ(c.data_ptr, req.data() + sizeof(fuse_in_header) + sizeof(fuse_write_in));
    EXPECT_EQ(out<fuse_write_out>().size, 5u);
}

TEST_F(EngineTest, WriteIgnoresBytesBeyondSize) {
    init();
    fuse_write_in in{};
    in.size = 3;
    send(Msg(FUSE_WRITE, 6).in(in).raw("abcdef"));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("write").data_str(), "abc");
}

TEST_F(EngineTest, WriteMaxAndZero) {
    init();
    fuse_write_in in{};
    in.size = kLimits.max_write;
    send(Msg(FUSE_WRITE, 6).in(in).fill(kLimits.max_write, 'w'));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("write").data.size(), size_t(kLimits.max_write));
    fs.calls.clear();
    in.size = 0;
    send(Msg(FUSE_WRITE, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_TRUE(one("write").data.empty());
}

TEST_F(EngineTest, WriteWithExtensionDoesNotTakeExtensionAsData) {
    init();
    fuse_write_in in{};
    in.size = 4;
    send(Msg(FUSE_WRITE, 6).in(in).raw("data").ext(1));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("write").data_str(), "data");

    // The size claims the extension bytes too: they are not request data.
    fs.calls.clear();
    in.size = 12;
    send(Msg(FUSE_WRITE, 6).in(in).raw("data").ext(1));
    EXPECT_EQ(reply.error(), -EINVAL);
    EXPECT_TRUE(fs.calls.empty());
}

TEST_F(EngineTest, Statfs) {
    init();
    send(Msg(FUSE_STATFS, 1));
    ASSERT_EQ(reply.error(), 0);
    one("statfs");
    EXPECT_EQ(out<fuse_statfs_out>().st.bsize, 4096u);
}

TEST_F(EngineTest, ReleaseAndReleasedir) {
    init();
    fuse_release_in in{17, O_RDWR, FUSE_RELEASE_FLUSH, 99};
    send(Msg(FUSE_RELEASE, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("release");
    EXPECT_FALSE(c.flag);
    EXPECT_EQ(c.in_as<fuse_release_in>().fh, 17u);
    EXPECT_EQ(c.in_as<fuse_release_in>().lock_owner, 99u);
    EXPECT_TRUE(reply.arg_bytes().empty());
    fs.calls.clear();
    send(Msg(FUSE_RELEASEDIR, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_TRUE(one("release").flag);
}

TEST_F(EngineTest, FsyncAndFsyncdir) {
    init();
    fuse_fsync_in in{21, FUSE_FSYNC_FDATASYNC, 0};
    send(Msg(FUSE_FSYNC, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("fsync");
    EXPECT_FALSE(c.flag);
    EXPECT_EQ(c.in_as<fuse_fsync_in>().fsync_flags, uint32_t(FUSE_FSYNC_FDATASYNC));
    fs.calls.clear();
    send(Msg(FUSE_FSYNCDIR, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_TRUE(one("fsync").flag);
}

TEST_F(EngineTest, SetxattrCompatStruct) {
    // Not negotiated: the kernel sends the 8-byte {size, flags}.
    init();
    ASSERT_FALSE(engine.negotiated().has(FUSE_SETXATTR_EXT));
    uint32_t compat[2] = {5, XATTR_CREATE};
    send(Msg(FUSE_SETXATTR, 6).in(compat).name("user.x").raw("value"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("setxattr");
    auto in = c.in_as<fuse_setxattr_in>();
    EXPECT_EQ(in.size, 5u);
    EXPECT_EQ(in.flags, uint32_t(XATTR_CREATE));
    EXPECT_EQ(in.setxattr_flags, 0u);
    EXPECT_EQ(c.name, "user.x");
    EXPECT_EQ(c.data_str(), "value");
}

TEST_F(EngineTest, SetxattrExtStruct) {
    init(kKernelFlags, FUSE_SETXATTR_EXT);
    ASSERT_TRUE(engine.negotiated().has(FUSE_SETXATTR_EXT));
    fuse_setxattr_in in{5, XATTR_REPLACE, FUSE_SETXATTR_ACL_KILL_SGID, 0};
    send(Msg(FUSE_SETXATTR, 6).in(in).name("system.posix_acl_access").raw("value"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("setxattr");
    auto got = c.in_as<fuse_setxattr_in>();
    EXPECT_EQ(got.size, 5u);
    EXPECT_EQ(got.flags, uint32_t(XATTR_REPLACE));
    EXPECT_EQ(got.setxattr_flags, uint32_t(FUSE_SETXATTR_ACL_KILL_SGID));
    EXPECT_EQ(c.name, "system.posix_acl_access");
    EXPECT_EQ(c.data_str(), "value");
}

TEST_F(EngineTest, SetxattrExtOfferedButNotWantedUsesCompat) {
    init(kKernelFlags, 0);
    uint32_t compat[2] = {2, 0};
    send(Msg(FUSE_SETXATTR, 6).in(compat).name("user.y").raw("hi"));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("setxattr").data_str(), "hi");
}

TEST_F(EngineTest, SetxattrEmptyValue) {
    init();
    uint32_t compat[2] = {0, 0};
    send(Msg(FUSE_SETXATTR, 6).in(compat).name("user.empty"));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_TRUE(one("setxattr").data.empty());
}

TEST_F(EngineTest, GetxattrSizeQuery) {
    init();
    fuse_getxattr_in in{0, 0};
    send(Msg(FUSE_GETXATTR, 6).in(in).name("user.x"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("getxattr");
    EXPECT_EQ(c.name, "user.x");
    EXPECT_EQ(c.a, 0u);
    EXPECT_EQ(c.space, 0u);
    EXPECT_EQ(out<fuse_getxattr_out>().size, 5u);
}

TEST_F(EngineTest, GetxattrValue) {
    init();
    fuse_getxattr_in in{100, 0};
    send(Msg(FUSE_GETXATTR, 6).in(in).name("user.x"));
    ASSERT_EQ(reply.error(), 0);
    const Call &c = one("getxattr");
    EXPECT_EQ(c.a, 100u);
    EXPECT_EQ(c.space, 100u);
    EXPECT_EQ(payload(), "value");
}

TEST_F(EngineTest, GetxattrBufferTooSmall) {
    init();
    fuse_getxattr_in in{3, 0};
    send(Msg(FUSE_GETXATTR, 6).in(in).name("user.x"));
    EXPECT_EQ(reply.error(), -ERANGE);
    EXPECT_EQ(one("getxattr").space, 3u);
    EXPECT_TRUE(reply.payload().empty());
}

TEST_F(EngineTest, Listxattr) {
    init();
    fuse_getxattr_in in{0, 0};
    send(Msg(FUSE_LISTXATTR, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("listxattr").a, 0u);
    EXPECT_EQ(out<fuse_getxattr_out>().size, 7u);
    fs.calls.clear();
    in.size = 64;
    send(Msg(FUSE_LISTXATTR, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("listxattr").a, 64u);
    EXPECT_EQ(one("listxattr").space, 64u);
    EXPECT_EQ(reply.payload().size(), 7u);
}

TEST_F(EngineTest, Removexattr) {
    init();
    send(Msg(FUSE_REMOVEXATTR, 6).name("user.gone"));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("removexattr").name, "user.gone");
}

TEST_F(EngineTest, Flush) {
    init();
    fuse_flush_in in{12, 0, 0, 0xfeed};
    send(Msg(FUSE_FLUSH, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("flush").in_as<fuse_flush_in>().lock_owner, 0xfeedu);
}

TEST_F(EngineTest, GetlkSetlkSetlkw) {
    init();
    fuse_lk_in in{};
    in.fh = 3;
    in.owner = 0xabc;
    in.lk = {0, 100, F_WRLCK, 55};
    send(Msg(FUSE_GETLK, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("getlk").in_as<fuse_lk_in>().lk.end, 100u);
    EXPECT_EQ(out<fuse_lk_out>().lk.type, uint32_t(F_UNLCK));
    fs.calls.clear();
    send(Msg(FUSE_SETLK, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_FALSE(one("setlk").flag);
    EXPECT_EQ(one("setlk").in_as<fuse_lk_in>().owner, 0xabcu);
    EXPECT_TRUE(reply.arg_bytes().empty());
    fs.calls.clear();
    send(Msg(FUSE_SETLKW, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_TRUE(one("setlk").flag);
}

TEST_F(EngineTest, Access) {
    init();
    fuse_access_in in{R_OK | X_OK, 0};
    send(Msg(FUSE_ACCESS, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("access").in_as<fuse_access_in>().mask, uint32_t(R_OK | X_OK));
}

TEST_F(EngineTest, ReaddirAndReaddirplus) {
    init();
    fuse_read_in in{};
    in.fh = 7;
    in.offset = 0x1234;
    in.size = 4096;
    send(Msg(FUSE_READDIR, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    {
        const Call &c = one("readdir");
        EXPECT_FALSE(c.flag);
        EXPECT_EQ(c.space, 4096u);
        EXPECT_EQ(c.in_as<fuse_read_in>().offset, 0x1234u);
    }
    EXPECT_EQ(reply.payload().size(), 4096u);
    fs.calls.clear();
    send(Msg(FUSE_READDIRPLUS, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_TRUE(one("readdir").flag);
}

TEST_F(EngineTest, Fallocate) {
    init();
    fuse_fallocate_in in{4, 10, 20, FALLOC_FL_KEEP_SIZE, 0};
    send(Msg(FUSE_FALLOCATE, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    auto got = one("fallocate").in_as<fuse_fallocate_in>();
    EXPECT_EQ(got.length, 20u);
    EXPECT_EQ(got.mode, uint32_t(FALLOC_FL_KEEP_SIZE));
}

TEST_F(EngineTest, Lseek) {
    init();
    fuse_lseek_in in{4, 500, SEEK_DATA, 0};
    send(Msg(FUSE_LSEEK, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_EQ(one("lseek").in_as<fuse_lseek_in>().whence, uint32_t(SEEK_DATA));
    EXPECT_EQ(out<fuse_lseek_out>().offset, 501u);
}

TEST_F(EngineTest, CopyFileRange) {
    init();
    fuse_copy_file_range_in in{1, 2, 3, 4, 5, 6000, 0};
    send(Msg(FUSE_COPY_FILE_RANGE, 6).in(in));
    ASSERT_EQ(reply.error(), 0);
    auto got = one("copy_file_range").in_as<fuse_copy_file_range_in>();
    EXPECT_EQ(got.nodeid_out, 3u);
    EXPECT_EQ(got.len, 6000u);
    EXPECT_EQ(out<fuse_write_out>().size, 6000u);
}

TEST_F(EngineTest, Syncfs) {
    init();
    fuse_syncfs_in in{};
    send(Msg(FUSE_SYNCFS, 1).in(in));
    ASSERT_EQ(reply.error(), 0);
    one("syncfs");
}

TEST_F(EngineTest, InterruptHasNoReply) {
    init();
    fuse_interrupt_in in{0x1234};
    send(Msg(FUSE_INTERRUPT, 0).unique(0x1235).in(in));
    EXPECT_FALSE(reply.should_send());
    EXPECT_EQ(one("interrupt").a, 0x1234u);
}

TEST_F(EngineTest, InterruptOfResentRequestNamesItWithoutResendBit) {
    // Ctx.unique has the bit stripped, so the target must match that form.
    init();
    fuse_interrupt_in in{kUniqueResend | 0x1234};
    send(Msg(FUSE_INTERRUPT, 0).unique(kUniqueResend | 0x1235).in(in));
    EXPECT_FALSE(reply.should_send());
    EXPECT_EQ(one("interrupt").a, 0x1234u);
}

TEST_F(EngineTest, OrdinaryRequestIsNotResent) {
    init();
    fuse_getattr_in in{};
    Msg m = Msg(FUSE_GETATTR, 1).in(in);
    send(m);
    EXPECT_EQ(one("getattr").ctx.unique, m.unique());
    EXPECT_FALSE(one("getattr").ctx.resent);
    EXPECT_EQ(engine.stats().resent.load(), 0u);
}

TEST_F(EngineTest, Destroy) {
    init();
    EXPECT_FALSE(engine.destroyed());
    send(Msg(FUSE_DESTROY, 0));
    EXPECT_TRUE(reply.should_send());
    EXPECT_EQ(reply.error(), 0);
    EXPECT_EQ(reply.header().len, sizeof(fuse_out_header));
    one("destroy");
    EXPECT_TRUE(engine.destroyed());
}

// A virtio-fs device (EngineLimits::reinit) serves one guest kernel after
// another: a rebooted guest sends INIT again without DESTROY, a remount
// sends DESTROY then INIT.  Either ends the old session and starts anew.
class ReinitTest : public EngineTest {
  protected:
    static constexpr EngineLimits kReinit{64 * 1024, 16, 0, true};
    Engine vengine{fs, kReinit};
    Reply &vsend(const Msg &m) {
        vengine.handle(m.bytes(), reply);
        return reply;
    }
};

TEST_F(ReinitTest, InitWithoutDestroyEndsTheOldSession) {
    vsend(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags)));
    ASSERT_EQ(reply.error(), 0);
    fs.calls.clear();
    vsend(Msg(FUSE_INIT, 0).in(init_in(7, 31, kKernelFlags)));
    EXPECT_EQ(reply.error(), 0);
    EXPECT_EQ(fs.inits, 2);
    ASSERT_FALSE(fs.calls.empty());
    EXPECT_EQ(fs.calls[0].op, "destroy") << "the old session must end before the new one";
    EXPECT_EQ(vengine.negotiated().minor, 31u);
}

TEST_F(ReinitTest, InitAfterDestroyStartsANewSession) {
    vsend(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags)));
    vsend(Msg(FUSE_DESTROY, 0));
    EXPECT_EQ(reply.error(), 0);
    vsend(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags)));
    EXPECT_EQ(reply.error(), 0);
    EXPECT_EQ(fs.inits, 2);
    EXPECT_TRUE(vengine.negotiated().done);
}

TEST_F(ReinitTest, ResentInitIsStillRefused) {
    vsend(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags)));
    vsend(Msg(FUSE_INIT, 0).unique(kUniqueResend | 7).in(init_in(7, 40, kKernelFlags)));
    EXPECT_EQ(reply.error(), -EIO);
    EXPECT_EQ(fs.inits, 1);
}

TEST_F(EngineTest, InitAfterDestroyRefusedOnDevFuse) {
    init();
    send(Msg(FUSE_DESTROY, 0));
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags)));
    EXPECT_EQ(reply.error(), -EIO);
    EXPECT_EQ(fs.inits, 1);
}

TEST_F(EngineTest, NotifyReplyHasNoReply) {
    init();
    send(Msg(FUSE_NOTIFY_REPLY, 0).raw("whatever"));
    EXPECT_FALSE(reply.should_send());
    EXPECT_TRUE(fs.calls.empty());
}

TEST_F(EngineTest, UnknownOpcodes) {
    init();
    const uint32_t ops[] = {
        FUSE_BMAP, FUSE_IOCTL, FUSE_POLL, FUSE_SETUPMAPPING, FUSE_REMOVEMAPPING, 7, 19, 53,
        63,        64,         999,       CUSE_INIT,         0xffffffff};
    uint64_t n = 0;
    for (uint32_t op : ops) {
        Msg m = Msg(op, 1).fill(64, 0);
        send(m);
        EXPECT_TRUE(reply.should_send()) << op;
        EXPECT_EQ(reply.error(), -ENOSYS) << op;
        EXPECT_EQ(reply.unique(), m.unique()) << op;
        EXPECT_EQ(engine.stats().unknown.load(), ++n) << op;
    }
    EXPECT_TRUE(fs.calls.empty());
    EXPECT_EQ(malformed(), 0u);
    expect_still_serving();
}

// ---------------------------------------------------------------------------
// Errors from the filesystem

TEST_F(EngineTest, FilesystemErrorPassesThroughWithoutArg) {
    init();
    fs.result = -ENOENT;
    send(Msg(FUSE_LOOKUP, 1).name("missing"));
    EXPECT_EQ(reply.error(), -ENOENT);
    EXPECT_TRUE(reply.arg_bytes().empty());
    EXPECT_EQ(reply.header().len, sizeof(fuse_out_header));
    EXPECT_EQ(engine.stats().errors[FUSE_LOOKUP].load(), 1u);

    fuse_read_in in{};
    in.size = 100;
    send(Msg(FUSE_READ, 6).in(in));
    EXPECT_EQ(reply.error(), -ENOENT);
    EXPECT_TRUE(reply.payload().empty()); // filled by the fs, then dropped
}

TEST_F(EngineTest, OutOfRangeErrorsAreClampedToEio) {
    init();
    for (int bad : {1, 4096, INT_MAX, -512, -100000, INT_MIN}) {
        fs.result = bad;
        send(Msg(FUSE_UNLINK, 1).name("x"));
        EXPECT_EQ(reply.error(), -EIO) << bad;
        EXPECT_EQ(reply.header().len, sizeof(fuse_out_header)) << bad;
    }
    // The edge of the kernel's accepted range passes unchanged.
    fs.result = -511;
    send(Msg(FUSE_UNLINK, 1).name("x"));
    EXPECT_EQ(reply.error(), -511);
}

TEST_F(EngineTest, ReplyEchoesUniqueIncludingResendBit) {
    init();
    const uint64_t u = kUniqueResend | 0x42;
    fuse_getattr_in in{};
    send(Msg(FUSE_GETATTR, 1).unique(u).in(in));
    EXPECT_EQ(reply.error(), 0);
    EXPECT_EQ(reply.unique(), u);
    EXPECT_EQ(reply.header().unique, u);
    // The filesystem sees the request's identity without the resend bit,
    // and is told separately that this is a resend.
    EXPECT_EQ(one("getattr").ctx.unique, u & ~kUniqueResend);
    EXPECT_TRUE(one("getattr").ctx.resent);
    EXPECT_EQ(engine.stats().resent.load(), 1u);

    fs.result = -EACCES;
    send(Msg(FUSE_GETATTR, 1).unique(u + 2).in(in));
    EXPECT_EQ(reply.header().unique, u + 2);

    // Also for requests refused before the filesystem sees them.
    send(Msg(FUSE_LOOKUP, 1).unique(u + 4).raw("no-nul"));
    EXPECT_EQ(reply.error(), -EINVAL);
    EXPECT_EQ(reply.header().unique, u + 4);
    auto bad = Msg(FUSE_GETATTR, 1).unique(u + 6).in(in).bytes();
    bad.push_back(std::byte{0}); // header len now one short
    send(bad);
    EXPECT_EQ(reply.error(), -EIO);
    EXPECT_EQ(reply.header().unique, u + 6);
}

// vhost-user's inflight region hands a successor the requests its
// predecessor took: they may have run, so the filesystem is told, as for
// the kernel's FUSE_UNIQUE_RESEND, and the reply echoes the unique as it
// came (the guest never marked it).
TEST_F(EngineTest, ResubmittedByTheTransportCountsAsResent) {
    init();
    fuse_getattr_in in{};
    engine.handle(Msg(FUSE_GETATTR, 1).unique(0x42).in(in).bytes(), reply, true);
    EXPECT_EQ(reply.error(), 0);
    EXPECT_EQ(reply.header().unique, 0x42u);
    EXPECT_EQ(one("getattr").ctx.unique, 0x42u);
    EXPECT_TRUE(one("getattr").ctx.resent);
    EXPECT_EQ(engine.stats().resent.load(), 1u);

    fs.calls.clear();
    send(Msg(FUSE_GETATTR, 1).unique(0x44).in(in));
    EXPECT_FALSE(one("getattr").ctx.resent);
    EXPECT_EQ(engine.stats().resent.load(), 1u);
}

// ---------------------------------------------------------------------------
// Header-level problems

TEST_F(EngineTest, ShortHeaderIsDroppedSilently) {
    init();
    std::vector<std::byte> v(sizeof(fuse_in_header) - 1, std::byte{0x11});
    send(v);
    EXPECT_FALSE(reply.should_send());
    send(std::vector<std::byte>{});
    EXPECT_FALSE(reply.should_send());
    EXPECT_EQ(malformed(), 2u);
    EXPECT_TRUE(fs.calls.empty());
    expect_still_serving();
}

TEST_F(EngineTest, HeaderLengthMismatchGetsEio) {
    init();
    fuse_getattr_in in{};
    auto longer = Msg(FUSE_GETATTR, 1).in(in).bytes();
    longer.resize(longer.size() - 1); // header claims one more byte than arrived
    send(longer);
    EXPECT_TRUE(reply.should_send());
    EXPECT_EQ(reply.error(), -EIO);

    auto shorter = Msg(FUSE_GETATTR, 1).in(in).bytes();
    shorter.push_back(std::byte{0}); // one more byte than the header claims
    send(shorter);
    EXPECT_EQ(reply.error(), -EIO);

    EXPECT_EQ(malformed(), 2u);
    EXPECT_TRUE(fs.calls.empty());
    expect_still_serving();
}

TEST_F(EngineTest, ExtensionLengthBeyondRequestGetsEio) {
    init();
    auto v = Msg(FUSE_MKDIR, 1).raw("12345678").bytes();
    fuse_in_header h;
    std::memcpy(&h, v.data(), sizeof(h));
    h.total_extlen = 2; // 16 bytes, only 8 present
    std::memcpy(v.data(), &h, sizeof(h));
    send(v);
    EXPECT_EQ(reply.error(), -EIO);
    EXPECT_EQ(malformed(), 1u);
    EXPECT_TRUE(fs.calls.empty());
    expect_still_serving();
}

TEST_F(EngineTest, ExtensionsEatingTheArgumentsAreMalformed) {
    // The struct is there, but total_extlen says those bytes are extensions.
    init();
    fuse_getattr_in in{};
    auto v = Msg(FUSE_GETATTR, 1).in(in).bytes();
    fuse_in_header h;
    std::memcpy(&h, v.data(), sizeof(h));
    h.total_extlen = 2;
    std::memcpy(v.data(), &h, sizeof(h));
    send(v);
    EXPECT_EQ(reply.error(), -EINVAL);
    EXPECT_EQ(malformed(), 1u);
    EXPECT_TRUE(fs.calls.empty());
}

// ---------------------------------------------------------------------------
// Malformed corpus: each entry is refused, counted, and kept from the fs.

struct BadCase {
    const char *what;
    std::function<Msg()> make;
    bool no_reply = false; // FORGET, BATCH_FORGET, INTERRUPT
    uint64_t want = 0;     // init_flags() for the connection
};

std::ostream &operator<<(std::ostream &os, const BadCase &c) {
    return os << c.what;
}

// The in-struct of `op`, cut to `n` bytes.
template <class T> std::function<Msg()> cut(uint32_t op, size_t n) {
    return [op, n] { return Msg(op, 6).part(T{}, n); };
}

// Two entries per opcode: no argument at all, and the struct one byte short.
template <class T>
void add_truncations(std::vector<BadCase> &v, uint32_t op, const char *name,
                     bool no_reply = false) {
    static std::deque<std::string> labels; // stable: BadCase keeps a char pointer
    labels.push_back(std::string(name) + " empty");
    v.push_back({labels.back().c_str(), cut<T>(op, 0), no_reply});
    labels.push_back(std::string(name) + " short struct");
    v.push_back({labels.back().c_str(), cut<T>(op, sizeof(T) - 1), no_reply});
}

std::vector<BadCase> bad_cases() {
    std::vector<BadCase> v;
    add_truncations<fuse_forget_in>(v, FUSE_FORGET, "FORGET", true);
    add_truncations<fuse_batch_forget_in>(v, FUSE_BATCH_FORGET, "BATCH_FORGET", true);
    add_truncations<fuse_interrupt_in>(v, FUSE_INTERRUPT, "INTERRUPT", true);
    add_truncations<fuse_getattr_in>(v, FUSE_GETATTR, "GETATTR");
    add_truncations<fuse_setattr_in>(v, FUSE_SETATTR, "SETATTR");
    add_truncations<fuse_statx_in>(v, kOpStatx, "STATX");
    add_truncations<fuse_mknod_in>(v, FUSE_MKNOD, "MKNOD");
    add_truncations<fuse_mkdir_in>(v, FUSE_MKDIR, "MKDIR");
    add_truncations<fuse_rename_in>(v, FUSE_RENAME, "RENAME");
    add_truncations<fuse_rename2_in>(v, FUSE_RENAME2, "RENAME2");
    add_truncations<fuse_link_in>(v, FUSE_LINK, "LINK");
    add_truncations<fuse_open_in>(v, FUSE_OPEN, "OPEN");
    add_truncations<fuse_open_in>(v, FUSE_OPENDIR, "OPENDIR");
    add_truncations<fuse_create_in>(v, FUSE_CREATE, "CREATE");
    add_truncations<fuse_create_in>(v, FUSE_TMPFILE, "TMPFILE");
    add_truncations<fuse_read_in>(v, FUSE_READ, "READ");
    add_truncations<fuse_read_in>(v, FUSE_READDIR, "READDIR");
    add_truncations<fuse_read_in>(v, FUSE_READDIRPLUS, "READDIRPLUS");
    add_truncations<fuse_write_in>(v, FUSE_WRITE, "WRITE");
    add_truncations<fuse_release_in>(v, FUSE_RELEASE, "RELEASE");
    add_truncations<fuse_release_in>(v, FUSE_RELEASEDIR, "RELEASEDIR");
    add_truncations<fuse_fsync_in>(v, FUSE_FSYNC, "FSYNC");
    add_truncations<fuse_fsync_in>(v, FUSE_FSYNCDIR, "FSYNCDIR");
    add_truncations<uint64_t>(v, FUSE_SETXATTR, "SETXATTR (compat)");
    add_truncations<fuse_getxattr_in>(v, FUSE_GETXATTR, "GETXATTR");
    add_truncations<fuse_getxattr_in>(v, FUSE_LISTXATTR, "LISTXATTR");
    add_truncations<fuse_flush_in>(v, FUSE_FLUSH, "FLUSH");
    add_truncations<fuse_lk_in>(v, FUSE_GETLK, "GETLK");
    add_truncations<fuse_lk_in>(v, FUSE_SETLK, "SETLK");
    add_truncations<fuse_lk_in>(v, FUSE_SETLKW, "SETLKW");
    add_truncations<fuse_access_in>(v, FUSE_ACCESS, "ACCESS");
    add_truncations<fuse_fallocate_in>(v, FUSE_FALLOCATE, "FALLOCATE");
    add_truncations<fuse_lseek_in>(v, FUSE_LSEEK, "LSEEK");
    add_truncations<fuse_copy_file_range_in>(v, FUSE_COPY_FILE_RANGE, "COPY_FILE_RANGE");
    add_truncations<fuse_syncfs_in>(v, FUSE_SYNCFS, "SYNCFS");

    const std::string long_name(NAME_MAX + 1, 'n');
    const std::string long_xattr(XATTR_NAME_MAX + 1, 'x');
    // Names: missing NUL, '/', empty, too long, missing altogether.
    v.push_back({"LOOKUP no body", [] { return Msg(FUSE_LOOKUP, 1); }});
    v.push_back({"LOOKUP no NUL", [] { return Msg(FUSE_LOOKUP, 1).raw("foo"); }});
    v.push_back({"LOOKUP slash", [] { return Msg(FUSE_LOOKUP, 1).name("a/b"); }});
    v.push_back({"LOOKUP only slash", [] { return Msg(FUSE_LOOKUP, 1).name("/"); }});
    v.push_back({"LOOKUP empty", [] { return Msg(FUSE_LOOKUP, 1).name(""); }});
    // Beyond FUSE_NAME_MAX (1024) a name is garbage, not just too long.
    const std::string huge_name(1025, 'n');
    v.push_back({"LOOKUP 1025 bytes", [=] { return Msg(FUSE_LOOKUP, 1).name(huge_name); }});
    // The only NUL is in the extension area: the name must not run into it.
    v.push_back(
        {"LOOKUP NUL only in extension",
         [] { return Msg(FUSE_LOOKUP, 1).raw("abcdefgh").raw("ijklmno").raw("", 1).mark_ext(1); }});
    v.push_back({"MKNOD no name", [] { return Msg(FUSE_MKNOD, 1).in(fuse_mknod_in{}); }});
    v.push_back({"MKNOD no NUL", [] { return Msg(FUSE_MKNOD, 1).in(fuse_mknod_in{}).raw("f"); }});
    v.push_back({"MKDIR slash", [] { return Msg(FUSE_MKDIR, 1).in(fuse_mkdir_in{}).name("a/"); }});
    v.push_back({"MKDIR empty", [] { return Msg(FUSE_MKDIR, 1).in(fuse_mkdir_in{}).name(""); }});
    v.push_back({"MKDIR 1025 bytes",
                 [=] { return Msg(FUSE_MKDIR, 1).in(fuse_mkdir_in{}).name(huge_name); }});
    v.push_back({"SYMLINK no target", [] { return Msg(FUSE_SYMLINK, 1).name("l"); }});
    v.push_back(
        {"SYMLINK target no NUL", [] { return Msg(FUSE_SYMLINK, 1).name("l").raw("/target"); }});
    v.push_back({"SYMLINK empty target", [] { return Msg(FUSE_SYMLINK, 1).name("l").name(""); }});
    v.push_back({"SYMLINK empty name", [] { return Msg(FUSE_SYMLINK, 1).name("").name("t"); }});
    v.push_back(
        {"SYMLINK slash in name", [] { return Msg(FUSE_SYMLINK, 1).name("a/b").name("t"); }});
    v.push_back({"SYMLINK target PATH_MAX",
                 [] { return Msg(FUSE_SYMLINK, 1).name("l").name(std::string(PATH_MAX, 't')); }});
    v.push_back({"UNLINK empty", [] { return Msg(FUSE_UNLINK, 1).name(""); }});
    v.push_back({"UNLINK slash", [] { return Msg(FUSE_UNLINK, 1).name("../x/y"); }});
    v.push_back({"RMDIR no NUL", [] { return Msg(FUSE_RMDIR, 1).raw("d"); }});
    v.push_back({"RENAME second name missing",
                 [] { return Msg(FUSE_RENAME, 1).in(fuse_rename_in{2}).name("a"); }});
    v.push_back({"RENAME second name no NUL",
                 [] { return Msg(FUSE_RENAME, 1).in(fuse_rename_in{2}).name("a").raw("b"); }});
    v.push_back({"RENAME second name slash",
                 [] { return Msg(FUSE_RENAME, 1).in(fuse_rename_in{2}).name("a").name("b/c"); }});
    v.push_back({"RENAME first name empty",
                 [] { return Msg(FUSE_RENAME, 1).in(fuse_rename_in{2}).name("").name("b"); }});
    v.push_back({"RENAME2 second name missing", [] {
                     return Msg(FUSE_RENAME2, 1).in(fuse_rename2_in{2, 0, 0}).name("a");
                 }});
    v.push_back({"RENAME2 first name slash", [] {
                     return Msg(FUSE_RENAME2, 1).in(fuse_rename2_in{2, 0, 0}).name("/").name("b");
                 }});
    v.push_back({"LINK slash", [] { return Msg(FUSE_LINK, 1).in(fuse_link_in{3}).name("x/y"); }});
    v.push_back({"LINK no name", [] { return Msg(FUSE_LINK, 1).in(fuse_link_in{3}); }});
    v.push_back(
        {"CREATE slash name", [] { return Msg(FUSE_CREATE, 1).in(fuse_create_in{}).name("/"); }});
    v.push_back(
        {"CREATE no NUL", [] { return Msg(FUSE_CREATE, 1).in(fuse_create_in{}).raw("file"); }});
    v.push_back(
        {"CREATE empty name", [] { return Msg(FUSE_CREATE, 1).in(fuse_create_in{}).name(""); }});
    v.push_back(
        {"TMPFILE no NUL", [] { return Msg(FUSE_TMPFILE, 1).in(fuse_create_in{}).raw("/"); }});

    // Sizes that do not fit.
    v.push_back({"WRITE size > max_write", [] {
                     fuse_write_in in{};
                     in.size = kLimits.max_write + 1;
                     return Msg(FUSE_WRITE, 6).in(in).fill(kLimits.max_write + 1, 'w');
                 }});
    v.push_back({"WRITE size > remaining", [] {
                     fuse_write_in in{};
                     in.size = 100;
                     return Msg(FUSE_WRITE, 6).in(in).fill(99, 'w');
                 }});
    v.push_back({"WRITE size huge", [] {
                     fuse_write_in in{};
                     in.size = 0xffffffff;
                     return Msg(FUSE_WRITE, 6).in(in).fill(10, 'w');
                 }});
    v.push_back({"READ size > reply payload", [] {
                     fuse_read_in in{};
                     in.size = kLimits.max_pages * 4096 + 1;
                     return Msg(FUSE_READ, 6).in(in);
                 }});
    v.push_back({"READ size huge", [] {
                     fuse_read_in in{};
                     in.size = 0xffffffff;
                     return Msg(FUSE_READ, 6).in(in);
                 }});
    v.push_back({"READDIR size > reply payload", [] {
                     fuse_read_in in{};
                     in.size = kLimits.max_pages * 4096 + 1;
                     return Msg(FUSE_READDIR, 6).in(in);
                 }});
    v.push_back({"READDIRPLUS size huge", [] {
                     fuse_read_in in{};
                     in.size = 0xffffffff;
                     return Msg(FUSE_READDIRPLUS, 6).in(in);
                 }});

    // xattrs.
    v.push_back({"SETXATTR value beyond buffer", [] {
                     uint32_t compat[2] = {100, 0};
                     return Msg(FUSE_SETXATTR, 6).in(compat).name("user.x").raw("short");
                 }});
    v.push_back(
        {"SETXATTR value > XATTR_SIZE_MAX", [] {
             uint32_t compat[2] = {XATTR_SIZE_MAX + 1, 0};
             return Msg(FUSE_SETXATTR, 6).in(compat).name("user.x").fill(XATTR_SIZE_MAX + 1, 'v');
         }});
    v.push_back({"SETXATTR empty name", [] {
                     uint32_t compat[2] = {0, 0};
                     return Msg(FUSE_SETXATTR, 6).in(compat).name("");
                 }});
    v.push_back({"SETXATTR name no NUL", [] {
                     uint32_t compat[2] = {0, 0};
                     return Msg(FUSE_SETXATTR, 6).in(compat).raw("user.x");
                 }});
    v.push_back({"SETXATTR name too long", [=] {
                     uint32_t compat[2] = {0, 0};
                     return Msg(FUSE_SETXATTR, 6).in(compat).name(long_xattr);
                 }});
    {
        BadCase c{"SETXATTR ext negotiated, compat struct sent", [] {
                      uint32_t compat[2] = {0, 0};
                      return Msg(FUSE_SETXATTR, 6).in(compat);
                  }};
        c.want = FUSE_SETXATTR_EXT;
        v.push_back(c);
    }
    {
        BadCase c{"SETXATTR ext value beyond buffer", [] {
                      fuse_setxattr_in in{50, 0, 0, 0};
                      return Msg(FUSE_SETXATTR, 6).in(in).name("user.x").raw("abc");
                  }};
        c.want = FUSE_SETXATTR_EXT;
        v.push_back(c);
    }
    v.push_back({"GETXATTR no name", [] {
                     return Msg(FUSE_GETXATTR, 6).in(fuse_getxattr_in{10, 0});
                 }});
    v.push_back({"GETXATTR empty name", [] {
                     return Msg(FUSE_GETXATTR, 6).in(fuse_getxattr_in{10, 0}).name("");
                 }});
    v.push_back({"GETXATTR name no NUL", [] {
                     return Msg(FUSE_GETXATTR, 6).in(fuse_getxattr_in{10, 0}).raw("user");
                 }});
    v.push_back({"GETXATTR name too long", [=] {
                     return Msg(FUSE_GETXATTR, 6).in(fuse_getxattr_in{10, 0}).name(long_xattr);
                 }});
    v.push_back({"REMOVEXATTR empty name", [] { return Msg(FUSE_REMOVEXATTR, 6).name(""); }});
    v.push_back({"REMOVEXATTR no NUL", [] { return Msg(FUSE_REMOVEXATTR, 6).raw("user.x"); }});
    v.push_back({"REMOVEXATTR no body", [] { return Msg(FUSE_REMOVEXATTR, 6); }});
    return v;
}

class MalformedTest : public EngineTest, public ::testing::WithParamInterface<BadCase> {};

// The kernel passes names up to 1024 bytes: one over NAME_MAX is a valid
// request answered ENAMETOOLONG (what a local fs says), not a malformed one.
TEST_F(EngineTest, NameOverNameMaxIsTooLongNotMalformed) {
    init(kKernelFlags, 0);
    const std::string long_name(NAME_MAX + 1, 'n');
    for (Msg m : {Msg(FUSE_LOOKUP, 1).name(long_name),
                  Msg(FUSE_MKDIR, 1).in(fuse_mkdir_in{}).name(long_name),
                  Msg(FUSE_RENAME, 1).in(fuse_rename_in{1}).name("a").name(long_name)}) {
        uint64_t before = malformed();
        send(m);
        EXPECT_EQ(malformed(), before);
        EXPECT_TRUE(fs.calls.empty());
        EXPECT_EQ(reply.error(), -ENAMETOOLONG);
    }
    expect_still_serving();
}

TEST_P(MalformedTest, RefusedCountedAndFilesystemUntouched) {
    const BadCase &c = GetParam();
    init(kKernelFlags, c.want);
    Msg m = c.make();
    uint64_t before = malformed();
    send(m);
    EXPECT_EQ(malformed(), before + 1);
    EXPECT_TRUE(fs.calls.empty()) << "filesystem called with " << fs.calls[0].op;
    if (c.no_reply) {
        EXPECT_FALSE(reply.should_send());
    } else {
        EXPECT_TRUE(reply.should_send());
        EXPECT_EQ(reply.error(), -EINVAL);
        EXPECT_EQ(reply.unique(), m.unique());
        EXPECT_EQ(reply.header().len, sizeof(fuse_out_header));
    }
    expect_still_serving();
}

INSTANTIATE_TEST_SUITE_P(Corpus, MalformedTest, ::testing::ValuesIn(bad_cases()),
                         [](const ::testing::TestParamInfo<BadCase> &info) {
                             std::string s = std::to_string(info.index) + "_";
                             for (const char *p = info.param.what; *p; p++)
                                 s += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
                             return s;
                         });

// ---------------------------------------------------------------------------
// Fuzz: seeded mutations of valid requests.  Run under ASan/UBSan too
// (-DHOLDFAST_SANITIZE=ON); here it checks the reply invariants.

std::vector<Msg> fuzz_seeds() {
    std::vector<Msg> s;
    fuse_read_in rd{};
    rd.size = 512;
    fuse_write_in wr{};
    wr.size = 8;
    fuse_setattr_in sa{};
    sa.valid = FATTR_SIZE;
    uint32_t sx[2] = {3, 0};
    fuse_batch_forget_in bf{2, 0};
    fuse_forget_one fo[2] = {{5, 1}, {6, 2}};
    s.push_back(Msg(FUSE_LOOKUP, 1).name("name"));
    s.push_back(Msg(FUSE_FORGET, 5).in(fuse_forget_in{1}));
    s.push_back(Msg(FUSE_BATCH_FORGET, 0).in(bf).in(fo));
    s.push_back(Msg(FUSE_GETATTR, 1).in(fuse_getattr_in{}));
    s.push_back(Msg(FUSE_SETATTR, 1).in(sa));
    s.push_back(Msg(kOpStatx, 1).in(fuse_statx_in{}));
    s.push_back(Msg(FUSE_READLINK, 3));
    s.push_back(Msg(FUSE_SYMLINK, 1).name("l").name("target"));
    s.push_back(Msg(FUSE_MKNOD, 1).in(fuse_mknod_in{S_IFIFO, 0, 0, 0}).name("p"));
    s.push_back(Msg(FUSE_MKDIR, 1).in(fuse_mkdir_in{0755, 0}).name("d").ext(1));
    s.push_back(Msg(FUSE_UNLINK, 1).name("u"));
    s.push_back(Msg(FUSE_RMDIR, 1).name("r"));
    s.push_back(Msg(FUSE_RENAME, 1).in(fuse_rename_in{1}).name("a").name("b"));
    s.push_back(Msg(FUSE_RENAME2, 1).in(fuse_rename2_in{1, 1, 0}).name("a").name("b"));
    s.push_back(Msg(FUSE_LINK, 1).in(fuse_link_in{3}).name("h"));
    s.push_back(Msg(FUSE_OPEN, 3).in(fuse_open_in{O_RDWR, 0}));
    s.push_back(Msg(FUSE_CREATE, 1).in(fuse_create_in{O_CREAT, 0600, 0, 0}).name("c").ext(2));
    s.push_back(Msg(FUSE_TMPFILE, 1).in(fuse_create_in{O_TMPFILE, 0600, 0, 0}).name("/"));
    s.push_back(Msg(FUSE_READ, 3).in(rd));
    s.push_back(Msg(FUSE_WRITE, 3).in(wr).raw("12345678"));
    s.push_back(Msg(FUSE_STATFS, 1));
    s.push_back(Msg(FUSE_RELEASE, 3).in(fuse_release_in{}));
    s.push_back(Msg(FUSE_FSYNC, 3).in(fuse_fsync_in{}));
    s.push_back(Msg(FUSE_SETXATTR, 3).in(sx).name("user.a").raw("abc"));
    s.push_back(Msg(FUSE_GETXATTR, 3).in(fuse_getxattr_in{64, 0}).name("user.a"));
    s.push_back(Msg(FUSE_LISTXATTR, 3).in(fuse_getxattr_in{64, 0}));
    s.push_back(Msg(FUSE_REMOVEXATTR, 3).name("user.a"));
    s.push_back(Msg(FUSE_FLUSH, 3).in(fuse_flush_in{}));
    s.push_back(Msg(FUSE_OPENDIR, 1).in(fuse_open_in{}));
    s.push_back(Msg(FUSE_READDIR, 1).in(rd));
    s.push_back(Msg(FUSE_READDIRPLUS, 1).in(rd));
    s.push_back(Msg(FUSE_RELEASEDIR, 1).in(fuse_release_in{}));
    s.push_back(Msg(FUSE_FSYNCDIR, 1).in(fuse_fsync_in{}));
    s.push_back(Msg(FUSE_GETLK, 3).in(fuse_lk_in{}));
    s.push_back(Msg(FUSE_SETLK, 3).in(fuse_lk_in{}));
    s.push_back(Msg(FUSE_SETLKW, 3).in(fuse_lk_in{}));
    s.push_back(Msg(FUSE_ACCESS, 3).in(fuse_access_in{}));
    s.push_back(Msg(FUSE_INTERRUPT, 0).in(fuse_interrupt_in{7}));
    s.push_back(Msg(FUSE_FALLOCATE, 3).in(fuse_fallocate_in{}));
    s.push_back(Msg(FUSE_LSEEK, 3).in(fuse_lseek_in{}));
    s.push_back(Msg(FUSE_COPY_FILE_RANGE, 3).in(fuse_copy_file_range_in{}));
    s.push_back(Msg(FUSE_SYNCFS, 1).in(fuse_syncfs_in{}));
    s.push_back(Msg(FUSE_NOTIFY_REPLY, 0).raw("xxxxxxxx"));
    s.push_back(Msg(FUSE_INIT, 0).in(init_in()));
    return s;
}

void set_len(std::vector<std::byte> &v) {
    if (v.size() < sizeof(fuse_in_header))
        return;
    uint32_t len = uint32_t(v.size());
    std::memcpy(v.data() + offsetof(fuse_in_header, len), &len, sizeof(len));
}

// One random mutation.  Most keep the header length consistent so the
// mutation reaches the opcode decoders instead of dying in parse_request.
void mutate(std::vector<std::byte> &v, std::mt19937_64 &rng) {
    auto pick = [&](uint64_t n) { return n ? rng() % n : 0; };
    static const uint32_t interesting[] = {
        0,     1,     7,          8,          255,        256,        4095,     4096,
        65536, 65537, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 1u << 20, (1u << 20) + 1};
    bool fix_len = pick(4) != 0;
    switch (pick(7)) {
    case 0: // flip a few bytes anywhere
        for (int i = 0, n = 1 + int(pick(8)); i < n && !v.empty(); i++)
            v[pick(v.size())] ^= std::byte(1 + pick(255));
        break;
    case 1: // truncate
        v.resize(pick(v.size() + 1));
        break;
    case 2: // append junk (sometimes NULs, sometimes not)
        for (int i = 0, n = 1 + int(pick(64)); i < n; i++)
            v.push_back(pick(3) ? std::byte(pick(256)) : std::byte{0});
        break;
    case 3: // an interesting 32-bit value in the body
        if (v.size() >= sizeof(fuse_in_header) + 4) {
            uint32_t x = interesting[pick(std::size(interesting))];
            size_t off = sizeof(fuse_in_header) + pick(v.size() - sizeof(fuse_in_header) - 3);
            std::memcpy(v.data() + off, &x, 4);
        }
        break;
    case 4: // another opcode, same body
        if (v.size() >= sizeof(fuse_in_header)) {
            uint32_t op = uint32_t(pick(70));
            std::memcpy(v.data() + offsetof(fuse_in_header, opcode), &op, 4);
        }
        break;
    case 5: // total_extlen
        if (v.size() >= sizeof(fuse_in_header)) {
            uint16_t e = uint16_t(pick(4) ? pick(8) : pick(65536));
            std::memcpy(v.data() + offsetof(fuse_in_header, total_extlen), &e, 2);
        }
        break;
    case 6: // strip NULs or insert '/' in the body
        for (size_t i = sizeof(fuse_in_header); i < v.size(); i++) {
            if (v[i] == std::byte{0} && pick(2))
                v[i] = pick(2) ? std::byte{'/'} : std::byte{'z'};
        }
        break;
    }
    if (fix_len)
        set_len(v);
}

// Invariants every reply must keep, whatever came in.
void check_reply(const std::vector<std::byte> &req, const Reply &r, size_t area_size) {
    if (req.size() >= sizeof(fuse_in_header)) {
        uint64_t unique;
        std::memcpy(&unique, req.data() + offsetof(fuse_in_header, unique), 8);
        ASSERT_EQ(r.unique(), unique);
    }
    if (!r.should_send())
        return;
    ASSERT_LE(r.error(), 0);
    ASSERT_GT(r.error(), -512);
    ASSERT_LE(r.arg_bytes().size(), Reply::kArgMax);
    ASSERT_LE(r.payload().size(), area_size);
    ASSERT_EQ(size_t(r.header().len), r.total_len());
    if (r.error()) {
        ASSERT_TRUE(r.arg_bytes().empty());
        ASSERT_TRUE(r.payload().empty());
    }
}

// What the filesystem was handed must be valid, whatever came in.
void check_calls(const std::vector<Call> &calls, const std::vector<std::byte> &req) {
    auto inside = [&](const Call &c) {
        if (c.data.empty())
            return true;
        return c.data_ptr >= req.data() && c.data_ptr + c.data.size() <= req.data() + req.size();
    };
    for (const Call &c : calls) {
        ASSERT_TRUE(inside(c)) << c.op;
        bool path_op = c.op == "lookup" || c.op == "mknod" || c.op == "mkdir" || c.op == "unlink" ||
                       c.op == "rmdir" || c.op == "rename" || c.op == "link" || c.op == "create" ||
                       c.op == "symlink";
        if (path_op) {
            ASSERT_FALSE(c.name.empty()) << c.op;
            ASSERT_LE(c.name.size(), size_t(NAME_MAX)) << c.op;
            ASSERT_EQ(c.name.find('/'), std::string::npos) << c.op;
            ASSERT_EQ(c.name.find('\0'), std::string::npos) << c.op;
        }
        if (c.op == "rename") {
            ASSERT_FALSE(c.name2.empty());
            ASSERT_EQ(c.name2.find('/'), std::string::npos);
        }
        if (c.op == "write") {
            ASSERT_LE(c.data.size(), size_t(kLimits.max_write));
        }
        if (c.op == "setxattr") {
            ASSERT_LE(c.data.size(), size_t(XATTR_SIZE_MAX));
        }
        if (c.op == "read" || c.op == "readdir") {
            ASSERT_LE(c.space, size_t(kLimits.max_pages) * 4096);
        }
    }
}

TEST_F(EngineTest, FuzzMutatedRequestsNeverBreakTheEngine) {
    init(kKernelFlags, FUSE_SETXATTR_EXT | FUSE_POSIX_LOCKS);
    auto seeds = fuzz_seeds();
    std::mt19937_64 rng(0x686f6c6466617374ULL); // "holdfast"
    size_t sent = 0, replied = 0, total_calls = 0;
    for (int i = 0; i < 20000; i++) {
        auto v = seeds[rng() % seeds.size()].bytes();
        for (int m = 0, n = 1 + int(rng() % 3); m < n; m++)
            mutate(v, rng);
        fs.calls.clear();
        fs.result = (rng() % 8 == 0) ? -int(rng() % 600) : 0;
        engine.handle(v, reply);
        sent++;
        total_calls += fs.calls.size();
        replied += reply.should_send();
        ASSERT_NO_FATAL_FAILURE(check_reply(v, reply, area.size())) << "iteration " << i;
        ASSERT_NO_FATAL_FAILURE(check_calls(fs.calls, v)) << "iteration " << i;
    }
    EXPECT_EQ(sent, 20000u);
    // The mix must exercise both sides: requests that reach the filesystem
    // and requests refused (roughly a third and a half of them with this seed).
    EXPECT_GT(replied, 0u);
    EXPECT_GT(total_calls, 2000u);
    EXPECT_GT(malformed(), 2000u);
    fs.result = 0;
    expect_still_serving();
}

TEST(EngineFuzz, MutatedInitOnFreshEngines) {
    QuietLog quiet;
    std::mt19937_64 rng(0x494e4954ULL); // "INIT"
    std::vector<std::byte> area(kLimits.max_pages * 4096);
    Reply reply(area);
    for (int i = 0; i < 2000; i++) {
        FakeFs fs;
        fs.want = rng();
        Engine engine(fs, kLimits);
        auto v = Msg(FUSE_INIT, 0).in(init_in(7, uint32_t(rng() % 50), rng())).bytes();
        mutate(v, rng);
        engine.handle(v, reply);
        ASSERT_NO_FATAL_FAILURE(check_reply(v, reply, area.size())) << "iteration " << i;
        const Negotiated &n = engine.negotiated();
        if (n.done) {
            // Whatever was accepted was offered.
            ASSERT_EQ(n.flags & ~n.kernel_flags, 0u);
            ASSERT_LE(n.minor, kOurMinor);
            ASSERT_EQ(n.major, 7u);
            ASSERT_EQ(fs.inits, 1);
        }
    }
}

// A transport's INIT flags (FUSE_OVER_IO_URING) are asked for only when the
// daemon passes them, and accepted only when the kernel offers them.
TEST(EngineTransportFlags, AcceptedOnlyWhenWantedAndOffered) {
    QuietLog quiet;
    for (bool wanted : {false, true}) {
        for (bool offered : {false, true}) {
            FakeFs fs;
            EngineLimits lim = kLimits;
            lim.extra_flags = wanted ? kOverIoUring : 0;
            Engine e(fs, lim);
            std::vector<std::byte> area(e.reply_payload_size());
            Reply r(area);
            uint64_t k = kKernelFlags | (offered ? kOverIoUring : 0);
            e.handle(Msg(FUSE_INIT, 0).in(init_in(7, 40, k)).bytes(), r);
            ASSERT_EQ(r.error(), 0);
            fuse_init_out o;
            ASSERT_EQ(r.arg_bytes().size(), sizeof(o));
            std::memcpy(&o, r.arg_bytes().data(), sizeof(o));
            bool in_reply = (uint64_t(o.flags2) << 32) & kOverIoUring;
            EXPECT_EQ(in_reply, wanted && offered) << wanted << offered;
            EXPECT_EQ(e.negotiated().has(kOverIoUring), wanted && offered) << wanted << offered;
            // The rest of the negotiation does not change.
            EXPECT_TRUE(e.negotiated().has(FUSE_ASYNC_READ));
        }
    }
}

} // namespace

// ---------------------------------------------------------------------------
// virtio-fs DAX: SETUPMAPPING / REMOVEMAPPING decoding and validation.

constexpr uint64_t kWindow = 64ull << 20;

class DaxEngineTest : public EngineTest {
  protected:
    void SetUp() override {
        fs.window = kWindow;
        init(kKernelFlags | FUSE_MAP_ALIGNMENT);
    }
    static fuse_setupmapping_in setup(uint64_t moffset = 2 << 20, uint64_t len = 2 << 20,
                                      uint64_t foffset = 4 << 20,
                                      uint64_t flags = FUSE_SETUPMAPPING_FLAG_READ) {
        fuse_setupmapping_in in{};
        in.fh = ~0ull;
        in.foffset = foffset;
        in.len = len;
        in.flags = flags;
        in.moffset = moffset;
        return in;
    }
    // A refused request: EINVAL, counted as malformed, the filesystem never called.
    void expect_refused(const Msg &m, const char *what) {
        uint64_t before = malformed();
        fs.calls.clear();
        send(m);
        EXPECT_EQ(reply.error(), -EINVAL) << what;
        EXPECT_TRUE(fs.calls.empty()) << what;
        EXPECT_EQ(malformed(), before + 1) << what;
        expect_still_serving();
    }
    void expect_setup_refused(const fuse_setupmapping_in &in, const char *what) {
        expect_refused(Msg(FUSE_SETUPMAPPING, 7).in(in), what);
    }
    static Msg remove(std::initializer_list<fuse_removemapping_one> ones, int64_t count = -1) {
        fuse_removemapping_in in{};
        in.count = count == -1 ? uint32_t(ones.size()) : uint32_t(count);
        Msg m(FUSE_REMOVEMAPPING, 7);
        m.in(in);
        for (const auto &o : ones)
            m.in(o);
        return m;
    }
};

TEST_F(EngineTest, InitWithoutDaxWindowIgnoresMapAlignment) {
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags | FUSE_MAP_ALIGNMENT)));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    EXPECT_FALSE(o.flags & FUSE_MAP_ALIGNMENT);
    EXPECT_EQ(o.map_alignment, 0);
}

TEST_F(EngineTest, InitWithDaxWindowAnnouncesPageAlignment) {
    fs.window = kWindow;
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags | FUSE_MAP_ALIGNMENT)));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    EXPECT_TRUE(o.flags & FUSE_MAP_ALIGNMENT);
    // log2(4096); the kernel refuses more than 21 (its 2 MiB ranges).
    EXPECT_EQ(o.map_alignment, 12);
    EXPECT_TRUE(engine.negotiated().has(FUSE_MAP_ALIGNMENT));
}

TEST_F(EngineTest, InitWithDaxWindowButNoDaxMountSetsNoAlignment) {
    fs.window = kWindow;
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags)));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    EXPECT_FALSE(o.flags & FUSE_MAP_ALIGNMENT);
    EXPECT_EQ(o.map_alignment, 0);
}

// dax=inode: per-file DAX (FUSE_ATTR_DAX) is offered with a window only;
// without one the guest falls back to no DAX at all.
TEST_F(EngineTest, InodeDaxIsNegotiatedOnlyWithAWindow) {
    const uint64_t offer = kKernelFlags | FUSE_MAP_ALIGNMENT | FUSE_HAS_INODE_DAX;
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, offer)));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    EXPECT_FALSE(o.flags2 & uint32_t(FUSE_HAS_INODE_DAX >> 32));
    EXPECT_FALSE(engine.negotiated().has(FUSE_HAS_INODE_DAX));
}

TEST_F(EngineTest, InodeDaxWithAWindowIsInFlags2) {
    fs.window = kWindow;
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags | FUSE_MAP_ALIGNMENT | FUSE_HAS_INODE_DAX)));
    ASSERT_EQ(reply.error(), 0);
    auto o = out<fuse_init_out>();
    // Bit 33: the second word, which the kernel reads only with INIT_EXT.
    EXPECT_TRUE(o.flags2 & uint32_t(FUSE_HAS_INODE_DAX >> 32));
    EXPECT_TRUE(o.flags & FUSE_INIT_EXT);
    EXPECT_TRUE(engine.negotiated().has(FUSE_HAS_INODE_DAX));
}

TEST_F(EngineTest, InodeDaxIsNotForcedOnADaxAlwaysGuest) {
    fs.window = kWindow;
    send(Msg(FUSE_INIT, 0).in(init_in(7, 40, kKernelFlags | FUSE_MAP_ALIGNMENT)));
    ASSERT_EQ(reply.error(), 0);
    EXPECT_FALSE(out<fuse_init_out>().flags2 & uint32_t(FUSE_HAS_INODE_DAX >> 32));
}

TEST_F(EngineTest, MappingOpsWithoutWindowAreEnosys) {
    init();
    fuse_setupmapping_in in{};
    send(Msg(FUSE_SETUPMAPPING, 7).in(in));
    EXPECT_EQ(reply.error(), -ENOSYS);
    fuse_removemapping_in rin{1};
    fuse_removemapping_one one{0, 4096};
    send(Msg(FUSE_REMOVEMAPPING, 7).in(rin).in(one));
    EXPECT_EQ(reply.error(), -ENOSYS);
    EXPECT_TRUE(fs.calls.empty());
    EXPECT_EQ(engine.stats().unknown.load(), 2u);
}

TEST_F(DaxEngineTest, SetupMappingIsDecoded) {
    auto in = setup(2 << 20, 2 << 20, 4 << 20,
                    FUSE_SETUPMAPPING_FLAG_READ | FUSE_SETUPMAPPING_FLAG_WRITE);
    in.fh = 99;
    send(Msg(FUSE_SETUPMAPPING, 7).in(in));
    EXPECT_EQ(reply.error(), 0);
    EXPECT_EQ(reply.header().len, sizeof(fuse_out_header));
    const Call &c = one("setupmapping");
    EXPECT_EQ(c.ctx.nodeid, 7u);
    auto got = c.in_as<fuse_setupmapping_in>();
    EXPECT_EQ(got.fh, 99u);
    EXPECT_EQ(got.foffset, 4u << 20);
    EXPECT_EQ(got.len, 2u << 20);
    EXPECT_EQ(got.moffset, 2u << 20);
    EXPECT_EQ(got.flags, FUSE_SETUPMAPPING_FLAG_READ | FUSE_SETUPMAPPING_FLAG_WRITE);
}

TEST_F(DaxEngineTest, SetupMappingEdgesThatAreValid) {
    // One page; the last page of the window; the whole window; the largest
    // file offset whose range still fits an off_t.
    for (auto in : {setup(0, 4096, 0), setup(kWindow - 4096, 4096), setup(0, kWindow),
                    setup(0, 4096, uint64_t(INT64_MAX) - 8191), setup(0, 4096, 0,
                                                                       FUSE_SETUPMAPPING_FLAG_WRITE)}) {
        fs.calls.clear();
        send(Msg(FUSE_SETUPMAPPING, 7).in(in));
        EXPECT_EQ(reply.error(), 0) << in.moffset << "+" << in.len << " @" << in.foffset;
        EXPECT_EQ(fs.calls.size(), 1u);
    }
}

TEST_F(DaxEngineTest, SetupMappingRefusesHostileArguments) {
    expect_refused(Msg(FUSE_SETUPMAPPING, 7).part(setup(), sizeof(fuse_setupmapping_in) - 1),
                   "truncated");
    expect_refused(Msg(FUSE_SETUPMAPPING, 7), "no argument");
    expect_setup_refused(setup(0, 4096, 0, 4), "unknown flag");
    expect_setup_refused(setup(0, 4096, 0, 1ull << 63), "unknown high flag");
    expect_setup_refused(setup(0, 4096, 0, 0), "no flags");
    expect_setup_refused(setup(0, 0), "empty");
    expect_setup_refused(setup(512, 4096), "moffset unaligned");
    expect_setup_refused(setup(0, 4095), "len unaligned");
    expect_setup_refused(setup(0, 4096, 100), "foffset unaligned");
    expect_setup_refused(setup(kWindow, 4096), "starts at the window's end");
    expect_setup_refused(setup(kWindow - 4096, 8192), "ends past the window");
    expect_setup_refused(setup(0, kWindow + 4096), "longer than the window");
    expect_setup_refused(setup(~0ull & ~4095ull, 8192), "moffset + len wraps");
    expect_setup_refused(setup(4096, ~0ull & ~4095ull), "huge len wraps");
    expect_setup_refused(setup(0, 4096, uint64_t(INT64_MAX) - 4095), "file range ends past off_t");
    expect_setup_refused(setup(0, 8192, uint64_t(INT64_MAX) - 8191), "file range past off_t");
    expect_setup_refused(setup(0, 4096, 1ull << 63), "foffset past off_t");
    expect_setup_refused(setup(0, 4096, ~0ull & ~4095ull), "foffset + len wraps");
}

TEST_F(DaxEngineTest, RemoveMappingIsDecoded) {
    send(remove({{0, 2 << 20}, {6 << 20, 4096}}));
    EXPECT_EQ(reply.error(), 0);
    const Call &c = one("removemapping");
    ASSERT_EQ(c.a, 2u);
    ASSERT_EQ(c.data.size(), 2 * sizeof(fuse_removemapping_one));
    fuse_removemapping_one v[2];
    std::memcpy(v, c.data.data(), sizeof(v));
    EXPECT_EQ(v[0].moffset, 0u);
    EXPECT_EQ(v[0].len, 2u << 20);
    EXPECT_EQ(v[1].moffset, 6u << 20);
    EXPECT_EQ(v[1].len, 4096u);
}

TEST_F(DaxEngineTest, RemoveMappingTakesAFullPageOfEntries) {
    fuse_removemapping_in in{256};
    Msg m(FUSE_REMOVEMAPPING, 7);
    m.in(in);
    for (uint64_t i = 0; i < 256; i++)
        m.in(fuse_removemapping_one{i * 4096, 4096});
    send(m);
    EXPECT_EQ(reply.error(), 0);
    EXPECT_EQ(one("removemapping").a, 256u);
}

TEST_F(DaxEngineTest, RemoveMappingRefusesHostileArguments) {
    fuse_removemapping_in in{1};
    expect_refused(Msg(FUSE_REMOVEMAPPING, 7), "no header");
    expect_refused(Msg(FUSE_REMOVEMAPPING, 7).part(in, 3), "truncated header");
    expect_refused(remove({}, 0), "count 0");
    expect_refused(remove({{0, 4096}}, 0), "count 0 with an entry");
    expect_refused(remove({{0, 4096}}, 2), "count larger than the entries");
    expect_refused(remove({{0, 4096}, {8192, 4096}}, 1), "count smaller than the entries");
    expect_refused(remove({{0, 4096}}, 0xfffffffe), "count 0xfffffffe");
    expect_refused(Msg(FUSE_REMOVEMAPPING, 7).in(in).part(fuse_removemapping_one{0, 4096}, 15),
                   "truncated entry");
    {
        fuse_removemapping_in big{257};
        Msg m(FUSE_REMOVEMAPPING, 7);
        m.in(big);
        for (uint64_t i = 0; i < 257; i++)
            m.in(fuse_removemapping_one{i * 4096, 4096});
        expect_refused(m, "257 entries");
    }
    expect_refused(remove({{0, 0}}), "empty entry");
    expect_refused(remove({{100, 4096}}), "unaligned moffset");
    expect_refused(remove({{0, 100}}), "unaligned len");
    expect_refused(remove({{kWindow, 4096}}), "past the window");
    expect_refused(remove({{kWindow - 4096, 8192}}), "ends past the window");
    expect_refused(remove({{~0ull & ~4095ull, 8192}}), "wraps");
    // One bad entry refuses the request before anything is removed.
    expect_refused(remove({{0, 4096}, {8192, 4096}, {kWindow, 4096}}), "bad last entry");
}
