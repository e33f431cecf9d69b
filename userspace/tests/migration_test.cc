// SPDX-License-Identifier: GPL-2.0
// The migration state stream (state/migration.h): a snapshot of one
// region installs into another unchanged, and every malformed stream is
// refused with a reason before anything is installed.
#include "state/inode_table.h"
#include "state/migration.h"
#include "state/region.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <fcntl.h>
#include <sys/stat.h>

using namespace holdfast::state;

namespace {

constexpr uint64_t kCap = 64;

Region region()
{
    Region::Geometry g;
    g.inode_capacity = kCap;
    g.handle_capacity = kCap;
    return Region::create(g);
}

void put_inode(Region &r, uint64_t id, uint32_t mode, uint64_t ino, uint64_t nlookup,
               uint32_t hbytes = 8)
{
    InodeRecord &rec = r.inodes()[id];
    rec.generation = uint32_t(id * 3);
    rec.nlookup.store(nlookup);
    rec.dev = 42;
    rec.ino = ino;
    rec.mnt_id = 7;
    rec.mode = mode;
    rec.handle_type = 1;
    rec.handle_bytes = hbytes;
    for (uint32_t i = 0; i < hbytes; i++)
        rec.handle[i] = uint8_t(id + i);
    rec.state.store(kLive);
    uint64_t high = r.header().inode_high.load();
    if (id + 1 > high)
        r.header().inode_high.store(id + 1);
}

void put_handle(Region &r, uint64_t fh, uint64_t nodeid, uint32_t kind, uint32_t flags)
{
    HandleRecord &rec = r.handles()[fh];
    rec.kind = kind;
    rec.nodeid = nodeid;
    rec.open_flags = flags;
    rec.opened_by = fh * 100;
    rec.state.store(kLive);
    if (fh + 1 > r.header().handle_high.load())
        r.header().handle_high.store(fh + 1);
}

// A region as a server leaves it: root, a directory, files (one freed in
// between), open handles, INIT done.
Region source()
{
    Region r = region();
    put_inode(r, kRootNodeId, S_IFDIR, 100, 1, 0);
    put_inode(r, 2, S_IFDIR, 101, 3);
    put_inode(r, 3, S_IFREG, 102, 1);
    put_inode(r, 5, S_IFREG, 104, 2, 128);
    put_inode(r, 6, S_IFLNK, 105, 1, 0);
    put_handle(r, 1, 3, kFile, O_RDWR);
    put_handle(r, 3, 2, kDir, O_RDONLY | O_DIRECTORY);
    InitRecord &i = r.header().init;
    i.major = 7;
    i.minor = 38;
    i.max_write = 1 << 20;
    i.kernel_flags = 0x1234;
    i.flags = 0x5678;
    i.max_readahead = 1 << 17;
    i.max_pages = 256;
    i.state.store(kLive);
    return r;
}

// A fresh destination serving the same directory: only its root is live.
Region destination()
{
    Region r = region();
    put_inode(r, kRootNodeId, S_IFDIR, 100, 1, 0);
    return r;
}

MigrationLimits limits()
{
    return {kCap, kCap};
}

TEST(Migration, RoundTripInstallsTheSameRecords)
{
    Region src = source();
    std::vector<uint8_t> bytes = encode(snapshot(src));
    MigrationState s;
    ASSERT_EQ("", decode(bytes, limits(), s));
    EXPECT_EQ(5u, s.inodes.size());
    EXPECT_EQ(2u, s.handles.size());

    Region dst = destination();
    ASSERT_EQ("", install(s, dst));
    for (uint64_t id = kRootNodeId; id < kCap; id++) {
        const InodeRecord &a = src.inodes()[id], &b = dst.inodes()[id];
        ASSERT_EQ(a.state.load(), b.state.load()) << id;
        if (a.state.load() != kLive)
            continue;
        EXPECT_EQ(a.generation, b.generation) << id;
        EXPECT_EQ(a.nlookup.load(), b.nlookup.load()) << id;
        EXPECT_EQ(a.ino, b.ino) << id;
        EXPECT_EQ(a.mode, b.mode) << id;
        EXPECT_EQ(a.handle_bytes, b.handle_bytes) << id;
        EXPECT_EQ(0, std::memcmp(a.handle, b.handle, a.handle_bytes)) << id;
    }
    for (uint64_t fh = 1; fh < kCap; fh++) {
        const HandleRecord &a = src.handles()[fh], &b = dst.handles()[fh];
        ASSERT_EQ(a.state.load(), b.state.load()) << fh;
        if (a.state.load() != kLive)
            continue;
        EXPECT_EQ(a.nodeid, b.nodeid);
        EXPECT_EQ(a.kind, b.kind);
        EXPECT_EQ(a.open_flags, b.open_flags);
        EXPECT_EQ(a.opened_by, b.opened_by);
    }
    EXPECT_EQ(src.header().inode_high.load(), dst.header().inode_high.load());
    EXPECT_EQ(src.header().handle_high.load(), dst.header().handle_high.load());
    const InitRecord &a = src.header().init, &b = dst.header().init;
    EXPECT_EQ(kLive, b.state.load());
    EXPECT_EQ(a.minor, b.minor);
    EXPECT_EQ(a.max_write, b.max_write);
    EXPECT_EQ(a.kernel_flags, b.kernel_flags);
    EXPECT_EQ(a.flags, b.flags);
    EXPECT_EQ(a.max_pages, b.max_pages);
}

TEST(Migration, FdStoredInodesMustResolveByHandleAtTheDestination)
{
    Region src = source();
    src.inodes()[5].flags = kInodeFdStored;
    MigrationState s;
    ASSERT_EQ("", decode(encode(snapshot(src)), limits(), s));
    Region dst = destination();
    ASSERT_EQ("", install(s, dst));
    EXPECT_EQ(0u, dst.inodes()[5].flags);
}

TEST(Migration, EveryTruncationIsRefused)
{
    Region src = source();
    std::vector<uint8_t> bytes = encode(snapshot(src));
    for (size_t n = 0; n < bytes.size(); n++) {
        MigrationState s;
        std::string e = decode(std::span(bytes).first(n), limits(), s);
        EXPECT_NE("", e) << "accepted a stream cut at " << n << " of " << bytes.size();
    }
}

TEST(Migration, EveryFlippedByteIsRefused)
{
    Region src = source();
    std::vector<uint8_t> bytes = encode(snapshot(src));
    for (size_t i = 0; i < bytes.size(); i++) {
        std::vector<uint8_t> bad = bytes;
        bad[i] ^= 0x40;
        MigrationState s;
        EXPECT_NE("", decode(bad, limits(), s)) << "accepted a flip at byte " << i;
    }
}

TEST(Migration, TrailingBytesAreRefused)
{
    Region src = source();
    std::vector<uint8_t> bytes = encode(snapshot(src));
    bytes.push_back(0);
    MigrationState s;
    EXPECT_NE(std::string::npos, decode(bytes, limits(), s).find("after the end"));
}

// Streams that are well-formed and correctly checksummed but say
// something impossible: a hostile or buggy source.
std::string decode_state(const MigrationState &st, MigrationLimits lim = limits())
{
    MigrationState out;
    return decode(encode(st), lim, out);
}

TEST(Migration, ImpossibleContentIsRefused)
{
    Region src = source();
    const MigrationState good = snapshot(src);
    ASSERT_EQ("", decode_state(good));

    MigrationState s = good;
    EXPECT_NE("", decode_state(s, {4, kCap})) << "node id beyond capacity";
    EXPECT_NE("", decode_state(s, {kCap, 2})) << "fh beyond capacity";

    s = good;
    std::swap(s.inodes[1], s.inodes[2]);
    EXPECT_NE("", decode_state(s)) << "unordered node ids";

    s = good;
    s.inodes.push_back(s.inodes.back());
    EXPECT_NE("", decode_state(s)) << "duplicate node id";

    s = good;
    s.inodes[2].mode = 0;
    EXPECT_NE("", decode_state(s)) << "no file type";

    s = good;
    s.inodes[2].mode = S_IFREG | 0644;
    EXPECT_NE("", decode_state(s)) << "permission bits in the type";

    s = good;
    s.inodes[2].flags = 0x80;
    EXPECT_NE("", decode_state(s)) << "unknown inode flag";

    s = good;
    s.inodes[2].nlookup = 0;
    EXPECT_NE("", decode_state(s)) << "forgotten inode";

    s = good;
    s.inodes[2].handle.resize(kMaxFileHandle + 1);
    EXPECT_NE("", decode_state(s)) << "oversized file handle";

    s = good;
    s.inodes.erase(s.inodes.begin());
    EXPECT_NE("", decode_state(s)) << "no root";

    s = good;
    s.root_ino = 999;
    EXPECT_NE("", decode_state(s)) << "root contradicts the source section";

    s = good;
    s.handles[0].nodeid = 4; // a freed slot
    EXPECT_NE("", decode_state(s)) << "handle of an inode that was not migrated";

    s = good;
    s.handles[0].kind = kDir; // on a regular file
    EXPECT_NE("", decode_state(s)) << "directory handle on a file";

    s = good;
    s.handles[1].kind = 9;
    EXPECT_NE("", decode_state(s)) << "unknown handle kind";

    s = good;
    s.handles[0].fh = 0;
    EXPECT_NE("", decode_state(s)) << "fh 0";

    s = good;
    s.init.major = 8;
    EXPECT_NE("", decode_state(s)) << "FUSE major 8";
}

TEST(Migration, HandoverRoundTripsAndIsOptional)
{
    Region src = source();
    MigrationState st = snapshot(src);
    MigrationState out;
    ASSERT_EQ("", decode(encode(st), limits(), out));
    EXPECT_FALSE(out.handover);
    st.handover = MigrationHandover{4242, {{'i', 7, 3, 0}, {'h', 9, 1, 0}, {'l', 11, 3, 0xabc}}};
    ASSERT_EQ("", decode(encode(st), limits(), out));
    ASSERT_TRUE(out.handover);
    EXPECT_EQ(out.handover->pid, 4242u);
    ASSERT_EQ(out.handover->fds.size(), 3u);
    EXPECT_EQ(out.handover->fds[2].kind, 'l');
    EXPECT_EQ(out.handover->fds[2].fd, 11);
    EXPECT_EQ(out.handover->fds[2].id, 3u);
    EXPECT_EQ(out.handover->fds[2].owner, 0xabcu);
}

TEST(Migration, ImpossibleHandoverIsRefused)
{
    Region src = source();
    const MigrationState good = snapshot(src);
    auto with = [&](MigrationHandover h) {
        MigrationState st = good;
        st.handover = std::move(h);
        return decode_state(st);
    };
    EXPECT_EQ("", with({1, {}}));
    EXPECT_NE("", with({0, {}}));                      // no pid
    EXPECT_NE("", with({1u << 23, {}}));               // beyond any pid
    EXPECT_NE("", with({1, {{'x', 3, 2, 0}}}));        // unknown kind
    EXPECT_NE("", with({1, {{'i', -1, 2, 0}}}));       // no fd
    EXPECT_NE("", with({1, {{'i', 3, 0, 0}}}));        // no id
    EXPECT_NE("", with({1, {{'h', 3, 1, 5}}}));        // an owner on a file
    // Two sections, and a count that does not match the length.
    MigrationState st = good;
    st.handover = MigrationHandover{1, {{'i', 3, 2, 0}}};
    std::vector<uint8_t> b = encode(st);
    MigrationState out;
    ASSERT_EQ("", decode(b, limits(), out));
    // The section: type 5, length 32, pid, count 1, one entry; find it by its
    // pid and count and claim two entries.
    const uint8_t pat[] = {5, 0, 0, 0, 32, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
    auto it = std::search(b.begin(), b.end(), std::begin(pat), std::end(pat));
    ASSERT_NE(it, b.end());
    it[12] = 2;
    // Checksummed again (FNV-1a up to the end section), so only the count is wrong.
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i + 16 < b.size(); i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    std::memcpy(b.data() + b.size() - 8, &h, 8);
    std::string e = decode(b, limits(), out);
    EXPECT_NE(e.find("handover section of 32 bytes for 2 fds"), std::string::npos) << e;
}

TEST(Migration, OtherDirectoryOrUsedDestinationIsRefused)
{
    Region src = source();
    MigrationState s;
    ASSERT_EQ("", decode(encode(snapshot(src)), limits(), s));

    Region other = region();
    put_inode(other, kRootNodeId, S_IFDIR, 555, 1, 0);
    EXPECT_NE(std::string::npos, install(s, other).find("another shared directory"));
    EXPECT_NE(kLive, other.inodes()[2].state.load()) << "a refused install changed the region";

    Region used = destination();
    put_inode(used, 2, S_IFREG, 300, 1);
    EXPECT_NE("", install(s, used));
}

TEST(Migration, PathsRoundTripAndLetAnotherRootTakeTheState)
{
    Region src = source();
    MigrationState st = snapshot(src);
    st.paths = {{2, "dir"}, {3, "dir/file"}, {6, "a link"}};
    MigrationState s;
    ASSERT_EQ("", decode(encode(st), limits(), s));
    ASSERT_EQ(s.paths.size(), 3u);
    EXPECT_EQ(s.paths[1].path, "dir/file");

    // A copy of the directory elsewhere: our root stays, the rest goes in.
    Region other = region();
    put_inode(other, kRootNodeId, S_IFDIR, 555, 1, 0);
    ASSERT_EQ("", install(s, other));
    EXPECT_EQ(other.inodes()[kRootNodeId].ino, 555u);
    EXPECT_EQ(kLive, other.inodes()[3].state.load());
    EXPECT_EQ(other.inodes()[3].ino, 102u) << "the source's until found by path";
}

TEST(Migration, BadPathsAreRefused)
{
    for (const char *p : {"", "/abs", "a/", "a//b", ".", "..", "a/../b", "./a", "a/."})
        EXPECT_FALSE(valid_migrated_path(p)) << p;
    for (const char *p : {"a", "a/b", "..a", "a..", "a b/c", ".hidden"})
        EXPECT_TRUE(valid_migrated_path(p)) << p;
    EXPECT_FALSE(valid_migrated_path(std::string("a\0b", 3)));
    EXPECT_FALSE(valid_migrated_path(std::string(kMaxMigratedPath + 1, 'x')));

    Region src = source();
    const MigrationState good = snapshot(src);
    auto with = [&](std::vector<MigratedPath> p) {
        MigrationState st = good;
        st.paths = std::move(p);
        return decode_state(st);
    };
    EXPECT_EQ("", with({{3, "f"}, {5, "g"}}));
    EXPECT_NE("", with({{3, "../escape"}}));
    EXPECT_NE("", with({{5, "g"}, {3, "f"}})) << "out of order";
    EXPECT_NE("", with({{3, "f"}, {3, "g"}})) << "twice";
    EXPECT_NE("", with({{4, "f"}})) << "no inode 4";
    EXPECT_NE("", with({{kRootNodeId, "f"}})) << "the root has no path";
}

TEST(Migration, BootIdIsThisHosts)
{
    std::array<uint8_t, 16> zero{};
    EXPECT_NE(zero, host_boot_id());
    EXPECT_EQ(host_boot_id(), host_boot_id());
}

} // namespace

namespace {

// The committed seeds of fuzz_migration are real streams: each must decode
// (a seed the decoder refuses would only exercise its first check).
TEST(Migration, FuzzSeedsDecode)
{
    namespace fsys = std::filesystem;
    fsys::path dir = fsys::path(__FILE__).parent_path() / ".." / "fuzz" / "corpus" / "fuzz_migration";
    int n = 0;
    for (const auto &e : fsys::directory_iterator(dir)) {
        if (!e.is_regular_file() || e.path().filename().string().rfind("seed-", 0) != 0)
            continue;
        std::ifstream f(e.path(), std::ios::binary);
        std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), {});
        MigrationState s;
        EXPECT_EQ("", decode(bytes, limits(), s)) << e.path();
        n++;
    }
    EXPECT_LE(3, n);
}

} // namespace
