// SPDX-License-Identifier: GPL-2.0
// SETUPMAPPING/REMOVEMAPPING in the passthrough filesystem (fs/dax.cc)
// against a fake DAX window: which inode and handle may be mapped and how,
// the mapping table kept in the state region, and what a successor that
// attaches the region does with it.
#include "fs/passthrough.h"
#include "state/dax_table.h"
#include "state/region.h"
#include "quiet_log.h"
#include "util/log.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <linux/fs.h>
#include <map>
#include <optional>
#include <string>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace holdfast;

namespace {

constexpr uint64_t kWin = 64ull << 20;
constexpr uint64_t kMiB2 = 2ull << 20;
const uint64_t kRd = FUSE_SETUPMAPPING_FLAG_READ;
const uint64_t kRw = FUSE_SETUPMAPPING_FLAG_READ | FUSE_SETUPMAPPING_FLAG_WRITE;

using test::QuietLog;

struct FakeWindow final : fuse::DaxWindow {
    struct Op {
        bool map;
        uint64_t win, len, foff;
        bool writable;
        dev_t dev;
        ino_t ino;
        int acc; // O_ACCMODE of the fd handed over
    };
    std::vector<Op> ops;
    int map_result = 0, unmap_result = 0;

    uint64_t size() const override { return kWin; }
    int map(int fd, uint64_t foff, uint64_t win, uint64_t len, bool w) override
    {
        struct stat st {};
        fstat(fd, &st);
        ops.push_back(
            {true, win, len, foff, w, st.st_dev, st.st_ino, fcntl(fd, F_GETFL) & O_ACCMODE});
        return map_result;
    }
    int unmap(uint64_t win, uint64_t len) override
    {
        ops.push_back({false, win, len, 0, false, 0, 0, 0});
        return unmap_result;
    }
};

struct Fixture {
    std::string dir;
    std::optional<state::Region> region;
    std::unique_ptr<state::InodeTable> inodes;
    std::unique_ptr<state::HandleTable> handles;
    std::unique_ptr<state::DaxTable> table;
    std::unique_ptr<fs::Passthrough> pfs;
    FakeWindow win;
    fs::Options o;
    uint64_t file = 0, sub = 0;
    QuietLog quiet;

    explicit Fixture(bool readonly = false, fs::DaxInodePolicy policy = fs::DaxInodePolicy::flag,
                     uint64_t min_size = 0)
    {
        char t[] = "/tmp/holdfast-dax-test.XXXXXX";
        dir = mkdtemp(t);
        int fd = ::open((dir + "/f").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        EXPECT_EQ(ftruncate(fd, 8 << 20), 0);
        close(fd);
        mkdir((dir + "/d").c_str(), 0755);
        Region::Geometry g;
        g.inode_capacity = 64;
        g.handle_capacity = 16;
        g.journal_capacity = 4;
        g.dax_window = kWin;
        region.emplace(state::Region::create(g));
        o.shared_dir = dir;
        o.switch_creds = false;
        o.readonly = readonly;
        o.dax_inode = policy;
        o.dax_inode_min_size = min_size;
        start(false);
        pfs->start_fresh();
        file = lookup("f");
        sub = lookup("d");
    }
    using Region = state::Region;

    // A (new) server over the region: tables, the DAX table, the fs.
    void start(bool recover)
    {
        pfs.reset();
        inodes = std::make_unique<state::InodeTable>(*region);
        handles = std::make_unique<state::HandleTable>(*region);
        table = std::make_unique<state::DaxTable>(*region);
        if (recover)
            table->recover(64);
        pfs = std::make_unique<fs::Passthrough>(o, *inodes, *handles);
        pfs->set_dax(&win, table.get());
        if (recover)
            pfs->recover({});
    }
    ~Fixture()
    {
        pfs.reset();
        std::filesystem::remove_all(dir);
    }
    uint64_t lookup(const char *name)
    {
        fuse_entry_out e{};
        fuse::Ctx c{10, 1, FUSE_LOOKUP, 0, 0, 0, false};
        EXPECT_EQ(pfs->lookup(c, name, e), 0);
        return e.nodeid;
    }
    uint64_t open(uint64_t node, int flags)
    {
        fuse_open_in in{};
        in.flags = uint32_t(flags);
        fuse_open_out out{};
        fuse::Ctx c{11, node, FUSE_OPEN, 0, 0, 0, false};
        EXPECT_EQ(pfs->open(c, in, out), 0);
        return out.fh;
    }
    int setup(uint64_t node, uint64_t moff, uint64_t len, uint64_t foff, uint64_t flags,
              uint64_t fh = ~0ull)
    {
        fuse_setupmapping_in in{fh, foff, len, flags, moff};
        fuse::Ctx c{12, node, FUSE_SETUPMAPPING, 0, 0, 0, false};
        return pfs->setupmapping(c, in);
    }
    int remove(std::vector<fuse_removemapping_one> v)
    {
        fuse::Ctx c{13, file, FUSE_REMOVEMAPPING, 0, 0, 0, false};
        return pfs->removemapping(c, v);
    }
    struct stat host(const char *name) const
    {
        struct stat st {};
        stat((dir + "/" + name).c_str(), &st);
        return st;
    }
};

} // namespace

TEST(DaxFs, WindowSizeComesFromTheTransport)
{
    Fixture f;
    EXPECT_EQ(f.pfs->dax_window_size(), kWin);
    f.pfs->set_dax(nullptr, nullptr);
    EXPECT_EQ(f.pfs->dax_window_size(), 0u);
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd), -ENOSYS);
    EXPECT_EQ(f.remove({{0, kMiB2}}), -ENOSYS);
}

TEST(DaxFs, SetupMapsTheInodesFile)
{
    Fixture f;
    ASSERT_EQ(f.setup(f.file, kMiB2, kMiB2, 4 * kMiB2 / 2, kRd), 0);
    ASSERT_EQ(f.win.ops.size(), 1u);
    auto &op = f.win.ops[0];
    EXPECT_TRUE(op.map);
    EXPECT_EQ(op.win, kMiB2);
    EXPECT_EQ(op.len, kMiB2);
    EXPECT_EQ(op.foff, 2 * kMiB2);
    EXPECT_FALSE(op.writable);
    EXPECT_EQ(op.ino, f.host("f").st_ino);
    EXPECT_EQ(op.dev, f.host("f").st_dev);
    EXPECT_EQ(op.acc, O_RDONLY);
    auto all = f.table->all();
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].state, uint32_t(state::kDaxLive));
    EXPECT_EQ(all[0].nodeid, f.file);
    EXPECT_EQ(f.pfs->dax_mappings(), 1u);

    ASSERT_EQ(f.setup(f.file, 0, kMiB2, 0, kRw), 0);
    EXPECT_TRUE(f.win.ops[1].writable);
    EXPECT_EQ(f.win.ops[1].acc, O_RDWR);
    EXPECT_TRUE(f.table->all()[0].writable);
}

TEST(DaxFs, WhatMayBeMapped)
{
    Fixture f;
    EXPECT_EQ(f.setup(f.sub, 0, kMiB2, 0, kRd), -EINVAL) << "a directory";
    EXPECT_EQ(f.setup(9999, 0, kMiB2, 0, kRd), -ESTALE) << "no such node";
    EXPECT_EQ(f.setup(0, 0, kMiB2, 0, kRd), -ESTALE) << "node 0";
    uint64_t ro = f.open(f.file, O_RDONLY);
    uint64_t rw = f.open(f.file, O_RDWR);
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd, ro), 0);
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRw, ro), -EACCES) << "write through a read-only fh";
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRw, rw), 0);
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd, 12345), -EBADF) << "unknown fh";
    fuse_open_out dout{};
    fuse_open_in din{};
    fuse::Ctx c{20, f.sub, FUSE_OPENDIR, 0, 0, 0, false};
    ASSERT_EQ(f.pfs->opendir(c, din, dout), 0);
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd, dout.fh), -EBADF) << "a directory's fh";
    // A file handle of another inode.
    int fd = ::open((f.dir + "/g").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    close(fd);
    uint64_t g = f.lookup("g");
    uint64_t gfh = f.open(g, O_RDWR);
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd, gfh), -EBADF) << "another inode's fh";
    EXPECT_EQ(f.setup(g, 0, kMiB2, 0, kRd, gfh), 0);
}

TEST(DaxFs, ReadOnlyShareRefusesWritableMappings)
{
    Fixture f(true);
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRw), -EROFS);
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd), 0);
    EXPECT_EQ(f.win.ops.size(), 1u);
}

TEST(DaxFs, RemappingARangeUnmapsItFirst)
{
    // The guest makes a read-only range writable by mapping it again.
    Fixture f;
    ASSERT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd), 0);
    ASSERT_EQ(f.setup(f.file, 0, kMiB2, 0, kRw), 0);
    ASSERT_EQ(f.win.ops.size(), 3u);
    EXPECT_FALSE(f.win.ops[1].map);
    EXPECT_EQ(f.win.ops[1].win, 0u);
    EXPECT_EQ(f.win.ops[1].len, kMiB2);
    EXPECT_TRUE(f.win.ops[2].map);
    EXPECT_EQ(f.table->used(), 1u);
    // A bigger range swallows two smaller ones.
    ASSERT_EQ(f.setup(f.file, kMiB2, 4096, 0, kRd), 0);
    f.win.ops.clear();
    ASSERT_EQ(f.setup(f.file, 0, 2 * kMiB2, 0, kRd), 0);
    EXPECT_EQ(f.win.ops.size(), 3u);
    EXPECT_EQ(f.table->used(), 1u);
}

TEST(DaxFs, CuttingAMappingInTwoIsRefused)
{
    Fixture f;
    ASSERT_EQ(f.setup(f.file, 0, 2 * kMiB2, 0, kRd), 0);
    f.win.ops.clear();
    EXPECT_EQ(f.setup(f.file, kMiB2, kMiB2, 0, kRd), -EINVAL);
    EXPECT_EQ(f.setup(f.file, kMiB2, 2 * kMiB2, 0, kRd), -EINVAL);
    EXPECT_EQ(f.remove({{0, kMiB2}}), -EINVAL);
    // All or nothing: the first range alone would have been fine.
    ASSERT_EQ(f.setup(f.file, 4 * kMiB2, kMiB2, 0, kRd), 0);
    f.win.ops.clear();
    EXPECT_EQ(f.remove({{4 * kMiB2, kMiB2}, {0, 4096}}), -EINVAL);
    EXPECT_TRUE(f.win.ops.empty());
    EXPECT_EQ(f.table->used(), 2u);
}

TEST(DaxFs, RemoveUnmapsEveryMappingInTheRanges)
{
    Fixture f;
    for (uint64_t i = 0; i < 4; i++)
        ASSERT_EQ(f.setup(f.file, i * kMiB2, kMiB2, i * kMiB2, kRd), 0);
    f.win.ops.clear();
    ASSERT_EQ(f.remove({{0, 2 * kMiB2}, {3 * kMiB2, kMiB2}}), 0);
    ASSERT_EQ(f.win.ops.size(), 3u);
    for (auto &op : f.win.ops) {
        EXPECT_FALSE(op.map);
        EXPECT_EQ(op.len, kMiB2);
    }
    auto left = f.table->all();
    ASSERT_EQ(left.size(), 1u);
    EXPECT_EQ(left[0].win_offset, 2 * kMiB2);
    // Nothing mapped there: done already (a resent REMOVEMAPPING).
    f.win.ops.clear();
    EXPECT_EQ(f.remove({{0, kMiB2}}), 0);
    EXPECT_TRUE(f.win.ops.empty());
}

TEST(DaxFs, FrontEndFailures)
{
    Fixture f;
    // Refused by the front-end: nothing mapped, no record.
    f.win.map_result = -EREMOTEIO;
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd), -EIO);
    EXPECT_EQ(f.table->used(), 0u);
    // No channel: the same.
    f.win.map_result = -ENOTCONN;
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd), -EIO);
    EXPECT_EQ(f.table->used(), 0u);
    // No answer: it may be mapped; the record stays, uncertain.
    f.win.map_result = -ETIMEDOUT;
    EXPECT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd), -EIO);
    ASSERT_EQ(f.table->used(), 1u);
    EXPECT_TRUE(f.table->all()[0].uncertain());
    // Whoever uses the range next unmaps it first, even one that only
    // overlaps part of it.
    f.win.map_result = 0;
    f.win.ops.clear();
    EXPECT_EQ(f.setup(f.file, kMiB2 / 2, kMiB2, 0, kRd), 0);
    ASSERT_EQ(f.win.ops.size(), 2u);
    EXPECT_FALSE(f.win.ops[0].map);
    EXPECT_EQ(f.win.ops[0].win, 0u);
    EXPECT_EQ(f.table->used(), 1u);
    EXPECT_FALSE(f.table->all()[0].uncertain());
    // An unmap the front-end refuses: it has no such mapping (a replaced
    // device's window), so the range is free.
    f.win.unmap_result = -EREMOTEIO;
    EXPECT_EQ(f.remove({{kMiB2 / 2, kMiB2}}), 0);
    EXPECT_EQ(f.table->used(), 0u);
    // An unmap that gets no answer: the record stays, uncertain.
    f.win.unmap_result = 0;
    ASSERT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd), 0);
    f.win.unmap_result = -ETIMEDOUT;
    EXPECT_EQ(f.remove({{0, kMiB2}}), -EIO);
    ASSERT_EQ(f.table->used(), 1u);
    EXPECT_EQ(f.table->all()[0].state, uint32_t(state::kDaxUnmapping));
}

TEST(DaxFs, FullTable)
{
    Fixture f;
    uint64_t cap = f.table->capacity();
    for (uint64_t i = 0; i < cap; i++)
        ASSERT_EQ(f.setup(f.file, i * 4096, 4096, 0, kRd), 0) << i;
    EXPECT_EQ(f.setup(f.file, cap * 4096, 4096, 0, kRd), -ENOSPC);
}

TEST(DaxFs, ASuccessorRemovesWhatItsPredecessorMapped)
{
    Fixture f;
    ASSERT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd), 0);
    ASSERT_EQ(f.setup(f.file, kMiB2, kMiB2, kMiB2, kRw), 0);
    f.win.map_result = -ETIMEDOUT; // crashed waiting for this one
    EXPECT_EQ(f.setup(f.file, 4 * kMiB2, kMiB2, 0, kRd), -EIO);
    f.win.map_result = 0;
    // A new server over the same region (the region outlives the process;
    // the same fake window stands for the front-end that kept it).
    f.start(true);
    ASSERT_EQ(f.table->used(), 3u);
    EXPECT_EQ(f.pfs->dax_mappings(), 3u);
    f.win.ops.clear();
    ASSERT_EQ(f.remove({{0, 2 * kMiB2}}), 0);
    EXPECT_EQ(f.win.ops.size(), 2u);
    ASSERT_EQ(f.setup(f.file, 4 * kMiB2, kMiB2, 0, kRd), 0);
    EXPECT_EQ(f.table->used(), 1u);
    EXPECT_FALSE(f.table->all()[0].uncertain());
}

TEST(DaxFs, DestroyDropsEveryMapping)
{
    Fixture f;
    ASSERT_EQ(f.setup(f.file, 0, kMiB2, 0, kRd), 0);
    ASSERT_EQ(f.setup(f.file, 2 * kMiB2, kMiB2, 0, kRd), 0);
    f.win.ops.clear();
    f.pfs->destroy();
    EXPECT_EQ(f.win.ops.size(), 2u);
    EXPECT_EQ(f.table->used(), 0u);
}

// ---------------------------------------------------------------------------
// dax=inode: FUSE_ATTR_DAX in attributes (Options::dax_inode).

namespace {

// What INIT settled: FUSE_HAS_INODE_DAX when the guest mounted dax=inode.
void negotiate(fs::Passthrough &pfs, bool inode_dax)
{
    fuse::Negotiated n;
    n.major = 7;
    n.minor = 40;
    n.flags = FUSE_MAP_ALIGNMENT | (inode_dax ? FUSE_HAS_INODE_DAX : 0);
    n.kernel_flags = n.flags;
    n.done = true;
    pfs.init(n);
}

// Sets or clears the host file's FS_XFLAG_DAX; false where the filesystem
// has no such attribute (tmpfs).
bool set_host_dax(const std::string &path, bool on)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct fsxattr fa {};
    bool ok = ioctl(fd, FS_IOC_FSGETXATTR, &fa) == 0;
    if (ok) {
        fa.fsx_xflags = on ? (fa.fsx_xflags | FS_XFLAG_DAX) : (fa.fsx_xflags & ~FS_XFLAG_DAX);
        ok = ioctl(fd, FS_IOC_FSSETXATTR, &fa) == 0;
    }
    close(fd);
    return ok;
}

// The attribute flags each kind of reply gives `name` (and its node id).
struct Flags {
    uint32_t lookup, getattr, setattr;
};
Flags attr_flags(Fixture &f, const char *name)
{
    Flags r{~0u, ~0u, ~0u};
    fuse_entry_out e{};
    fuse::Ctx c{20, 1, FUSE_LOOKUP, 0, 0, 0, false};
    EXPECT_EQ(f.pfs->lookup(c, name, e), 0) << name;
    r.lookup = e.attr.flags;
    fuse_getattr_in gi{};
    fuse_attr_out ao{};
    fuse::Ctx g{21, e.nodeid, FUSE_GETATTR, 0, 0, 0, false};
    EXPECT_EQ(f.pfs->getattr(g, gi, ao), 0) << name;
    r.getattr = ao.attr.flags;
    fuse_setattr_in si{};
    si.valid = FATTR_MTIME;
    si.mtime = 1000000;
    fuse_attr_out so{};
    fuse::Ctx st{22, e.nodeid, FUSE_SETATTR, 0, 0, 0, false};
    EXPECT_EQ(f.pfs->setattr(st, si, so), 0) << name;
    r.setattr = so.attr.flags;
    return r;
}

void expect_flags(Fixture &f, const char *name, uint32_t want)
{
    Flags r = attr_flags(f, name);
    EXPECT_EQ(r.lookup, want) << name << ": LOOKUP";
    EXPECT_EQ(r.getattr, want) << name << ": GETATTR";
    EXPECT_EQ(r.setattr, want) << name << ": SETATTR";
}

} // namespace

TEST(DaxInode, FlagPolicyFollowsTheHostFilesAttribute)
{
    Fixture f;
    int fd = ::open((f.dir + "/plain").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    close(fd);
    if (!set_host_dax(f.dir + "/f", true))
        GTEST_SKIP() << f.dir << ": no FS_XFLAG_DAX on this filesystem (tmpfs?)";
    negotiate(*f.pfs, true);
    expect_flags(f, "f", FUSE_ATTR_DAX);
    expect_flags(f, "plain", 0);
    // Directories never: the guest maps regular files only.
    ASSERT_TRUE(set_host_dax(f.dir + "/d", true)); // (ext4: inherited by new files)
    expect_flags(f, "d", 0);
    // The attribute changes on the host: the next reply says so (the guest
    // then evicts the inode and sets it up again).
    ASSERT_TRUE(set_host_dax(f.dir + "/f", false));
    expect_flags(f, "f", 0);
    ASSERT_TRUE(set_host_dax(f.dir + "/plain", true));
    expect_flags(f, "plain", FUSE_ATTR_DAX);
}

TEST(DaxInode, NothingWithoutFuseHasInodeDax)
{
    Fixture f(false, fs::DaxInodePolicy::all);
    // A dax=always (or no dax) guest: the flag means nothing to it.
    negotiate(*f.pfs, false);
    expect_flags(f, "f", 0);
    // Nor a flagged file under the flag policy.
    Fixture g;
    if (set_host_dax(g.dir + "/f", true)) {
        negotiate(*g.pfs, false);
        expect_flags(g, "f", 0);
    }
}

TEST(DaxInode, AllNoneAndMinSize)
{
    {
        Fixture f(false, fs::DaxInodePolicy::all);
        negotiate(*f.pfs, true);
        expect_flags(f, "f", FUSE_ATTR_DAX);
        expect_flags(f, "d", 0);
    }
    {
        Fixture f(false, fs::DaxInodePolicy::none);
        set_host_dax(f.dir + "/f", true); // ignored
        negotiate(*f.pfs, true);
        expect_flags(f, "f", 0);
    }
    {
        // f has 8 MiB.
        Fixture f(false, fs::DaxInodePolicy::min_size, 8 << 20);
        int fd = ::open((f.dir + "/small").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(ftruncate(fd, (8 << 20) - 1), 0);
        close(fd);
        negotiate(*f.pfs, true);
        expect_flags(f, "f", FUSE_ATTR_DAX);
        expect_flags(f, "small", 0);
    }
}

TEST(DaxInode, ReaddirplusEntriesCarryTheFlag)
{
    Fixture f(false, fs::DaxInodePolicy::all);
    negotiate(*f.pfs, true);
    fuse_open_in oi{};
    oi.flags = O_RDONLY | O_DIRECTORY;
    fuse_open_out oo{};
    fuse::Ctx c{30, 1, FUSE_OPENDIR, 0, 0, 0, false};
    ASSERT_EQ(f.pfs->opendir(c, oi, oo), 0);
    std::vector<std::byte> area(64 << 10);
    fuse::Reply reply(area);
    reply.reset(31);
    fuse_read_in ri{};
    ri.fh = oo.fh;
    ri.size = 64 << 10;
    fuse::Ctx r{31, 1, FUSE_READDIRPLUS, 0, 0, 0, false};
    ASSERT_EQ(f.pfs->readdir(r, ri, true, reply), 0);
    auto payload = reply.payload();
    std::map<std::string, uint32_t> seen;
    for (size_t off = 0; off + sizeof(fuse_direntplus) <= payload.size();) {
        fuse_direntplus d;
        memcpy(&d, payload.data() + off, sizeof(d));
        std::string name(reinterpret_cast<const char *>(payload.data()) + off + sizeof(d),
                         d.dirent.namelen);
        seen[name] = d.entry_out.attr.flags;
        off += FUSE_DIRENTPLUS_SIZE(&d);
    }
    ASSERT_TRUE(seen.count("f") && seen.count("d"));
    EXPECT_EQ(seen["f"], uint32_t(FUSE_ATTR_DAX));
    EXPECT_EQ(seen["d"], 0u);
}
