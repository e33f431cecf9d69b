// SPDX-License-Identifier: GPL-2.0
// The state region and the inode/handle tables in it.  Besides the in-process
// API, these tests read the raw records back: a restarted server sees only
// those, so they must say exactly what the tables mean.
#include "state/handle_table.h"
#include "state/inode_table.h"
#include "state/journal.h"
#include "state/region.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <memory>
#include <optional>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using namespace holdfast;
using namespace holdfast::state;

namespace {

constexpr uint64_t kInodeCap = 16;
constexpr uint64_t kHandleCap = 16;
// Any opcode number: the journal stores it, it does not interpret it.
constexpr uint32_t kAnyOpcode = 35;

Region small_region() {
    Region::Geometry g;
    g.inode_capacity = kInodeCap;
    g.handle_capacity = kHandleCap;
    return Region::create(g);
}

// The tables take ownership of a real fd; which file it names does not matter.
Fd some_fd() {
    Fd fd(::open("/", O_PATH | O_CLOEXEC));
    EXPECT_TRUE(fd) << strerror(errno);
    return fd;
}

struct stat fake_stat(uint64_t dev, uint64_t ino, mode_t type = S_IFREG) {
    struct stat st {};
    st.st_dev = dev;
    st.st_ino = ino;
    st.st_mode = type | 0644;
    return st;
}

bool fd_is_open(int fd) {
    return fcntl(fd, F_GETFD) >= 0;
}

// ---------------------------------------------------------------------------
// Region

TEST(Region, HeaderDescribesGeometry) {
    Region r = small_region();
    const RegionHeader &h = r.header();
    EXPECT_EQ(h.magic, kMagic);
    EXPECT_EQ(h.version, kLayoutVersion);
    EXPECT_EQ(h.header_size, sizeof(RegionHeader));
    EXPECT_EQ(h.region_size, r.size());
    EXPECT_EQ(h.inode_capacity, kInodeCap);
    EXPECT_EQ(h.handle_capacity, kHandleCap);
    EXPECT_EQ(h.inode_record_size, sizeof(InodeRecord));
    EXPECT_EQ(h.handle_record_size, sizeof(HandleRecord));
    EXPECT_EQ(h.attach_generation.load(), 1u);
    EXPECT_EQ(h.journal_record_size, sizeof(JournalRecord));
    // Nothing allocated yet: slot 1 (root) is the first inode, fh 1 the first handle.
    EXPECT_EQ(h.inode_high.load(), 2u);
    EXPECT_EQ(h.handle_high.load(), 1u);
    EXPECT_EQ(h.init.state.load(), uint32_t(kFree));

    // Tables are page aligned, after the header, and do not overlap.
    EXPECT_EQ(h.inode_offset % 4096, 0u);
    EXPECT_EQ(h.handle_offset % 4096, 0u);
    EXPECT_GE(h.inode_offset, sizeof(RegionHeader));
    EXPECT_GE(h.handle_offset, h.inode_offset + kInodeCap * sizeof(InodeRecord));
    EXPECT_EQ(h.journal_offset % 4096, 0u);
    EXPECT_GE(h.journal_offset, h.handle_offset + kHandleCap * sizeof(HandleRecord));
    EXPECT_GE(h.region_size, h.journal_offset + h.journal_capacity * sizeof(JournalRecord));
    EXPECT_EQ(h.region_size % 4096, 0u);

    auto *base = reinterpret_cast<char *>(&r.header());
    EXPECT_EQ(reinterpret_cast<char *>(r.inodes()), base + h.inode_offset);
    EXPECT_EQ(reinterpret_cast<char *>(r.handles()), base + h.handle_offset);
}

TEST(Region, LargeTablesDoNotOverlap) {
    Region::Geometry g;
    g.inode_capacity = 1000; // 192000 bytes: not a page multiple
    g.handle_capacity = 333;
    Region r = Region::create(g);
    const RegionHeader &h = r.header();
    EXPECT_GE(h.handle_offset, h.inode_offset + 1000 * sizeof(InodeRecord));
    EXPECT_GE(h.region_size, h.handle_offset + 333 * sizeof(HandleRecord));
    // The last record of each table is addressable (inside the mapping).
    r.inodes()[999].ino = 5;
    r.handles()[332].nodeid = 6;
}

TEST(Region, MemfdMatchesMappingAndStartsZeroed) {
    Region r = small_region();
    struct stat st;
    ASSERT_EQ(fstat(r.memfd(), &st), 0);
    EXPECT_EQ(uint64_t(st.st_size), r.size());
    for (uint64_t i = 0; i < kInodeCap; i++)
        EXPECT_EQ(r.inodes()[i].state.load(), uint32_t(kFree)) << i;
    for (uint64_t i = 0; i < kHandleCap; i++)
        EXPECT_EQ(r.handles()[i].state.load(), uint32_t(kFree)) << i;
}

TEST(Region, SealedAgainstResize) {
    Region r = small_region();
    int seals = fcntl(r.memfd(), F_GET_SEALS);
    ASSERT_GE(seals, 0) << strerror(errno);
    EXPECT_TRUE(seals & F_SEAL_SHRINK);
    EXPECT_TRUE(seals & F_SEAL_GROW);

    errno = 0;
    EXPECT_EQ(ftruncate(r.memfd(), off_t(r.size() - 4096)), -1);
    EXPECT_EQ(errno, EPERM);
    errno = 0;
    EXPECT_EQ(ftruncate(r.memfd(), 0), -1);
    EXPECT_EQ(errno, EPERM);
    errno = 0;
    EXPECT_EQ(ftruncate(r.memfd(), off_t(r.size() + 4096)), -1);
    EXPECT_EQ(errno, EPERM);
}

TEST(Region, MemfdIsCloseOnExec) {
    // Region fds are handed over on purpose (fd store), never by exec().
    Region r = small_region();
    EXPECT_TRUE(fcntl(r.memfd(), F_GETFD) & FD_CLOEXEC);
}

TEST(Region, SecondMappingSeesTheSameRecords) {
    // What a restarted server does: map the memfd it got back.
    Region r = small_region();
    r.inodes()[3].ino = 0xabcdef;
    void *p = mmap(nullptr, r.size(), PROT_READ, MAP_SHARED, r.memfd(), 0);
    ASSERT_NE(p, MAP_FAILED);
    auto *h = static_cast<const RegionHeader *>(p);
    EXPECT_EQ(h->magic, kMagic);
    auto *recs = reinterpret_cast<const InodeRecord *>(static_cast<char *>(p) + h->inode_offset);
    EXPECT_EQ(recs[3].ino, 0xabcdefu);
    munmap(p, r.size());
}

TEST(Region, MoveKeepsTheMapping) {
    Region a = small_region();
    a.inodes()[2].ino = 99;
    Region b(std::move(a));
    EXPECT_EQ(b.header().magic, kMagic);
    EXPECT_EQ(b.inodes()[2].ino, 99u);
}

// ---------------------------------------------------------------------------
// InodeTable

class InodeTableTest : public ::testing::Test {
  protected:
    InodeTableTest() : region(small_region()), table(region) {
        table.set_root(some_fd(), fake_stat(1, 2, S_IFDIR));
    }
    const InodeRecord &rec(uint64_t id) { return region.inodes()[id]; }

    Region region;
    InodeTable table;
};

TEST_F(InodeTableTest, RootIsNodeOne) {
    auto root = table.get(kRootNodeId);
    ASSERT_TRUE(root);
    EXPECT_EQ(root->nodeid, 1u);
    EXPECT_TRUE(root->is_dir());
    EXPECT_EQ(root->dev, 1u);
    EXPECT_EQ(root->ino, 2u);
    EXPECT_TRUE(root->fd);
    EXPECT_EQ(table.live(), 1u);
    EXPECT_EQ(table.nlookup(1), 1u);
    EXPECT_EQ(rec(1).state.load(), uint32_t(kLive));
    EXPECT_EQ(rec(1).ino, 2u);
    EXPECT_EQ(rec(1).mode, uint32_t(S_IFDIR));
    EXPECT_EQ(table.capacity(), kInodeCap);
}

TEST_F(InodeTableTest, RefCreatesSlotAndRecord) {
    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    ASSERT_TRUE(a);
    EXPECT_GT(a->nodeid, kRootNodeId);
    EXPECT_LT(a->nodeid, kInodeCap);
    EXPECT_TRUE(a->is_reg());
    EXPECT_TRUE(a->fd);
    EXPECT_EQ(table.get(a->nodeid), a);
    EXPECT_EQ(table.nlookup(a->nodeid), 1u);
    EXPECT_EQ(table.live(), 2u);

    const InodeRecord &r = rec(a->nodeid);
    EXPECT_EQ(r.state.load(), uint32_t(kLive));
    EXPECT_EQ(r.nlookup.load(), 1u);
    EXPECT_EQ(r.dev, 7u);
    EXPECT_EQ(r.ino, 100u);
    EXPECT_EQ(r.mode, uint32_t(S_IFREG));
    EXPECT_EQ(r.generation, a->generation);
    EXPECT_EQ(r.handle_bytes, 0u);
}

TEST_F(InodeTableTest, RefOfSameInodeReturnsSameNodeAndCounts) {
    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    ASSERT_TRUE(a);
    int first_fd = a->fd.get();
    // The second fd is not needed (the slot keeps its first one) and is closed.
    Fd extra = some_fd();
    int extra_fd = extra.get();
    auto b = table.ref(std::move(extra), fake_stat(7, 100), nullptr);
    ASSERT_TRUE(b);
    EXPECT_EQ(a, b);
    EXPECT_EQ(b->nodeid, a->nodeid);
    EXPECT_EQ(b->fd.get(), first_fd);
    EXPECT_FALSE(fd_is_open(extra_fd));
    EXPECT_EQ(table.nlookup(a->nodeid), 2u);
    EXPECT_EQ(rec(a->nodeid).nlookup.load(), 2u);
    EXPECT_EQ(table.live(), 2u);
}

TEST_F(InodeTableTest, DistinctDevOrInoGetDistinctNodes) {
    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    auto b = table.ref(some_fd(), fake_stat(8, 100), nullptr);
    auto c = table.ref(some_fd(), fake_stat(7, 101), nullptr);
    ASSERT_TRUE(a && b && c);
    EXPECT_NE(a->nodeid, b->nodeid);
    EXPECT_NE(a->nodeid, c->nodeid);
    EXPECT_NE(b->nodeid, c->nodeid);
    EXPECT_EQ(table.live(), 4u);
}

TEST_F(InodeTableTest, RefOfRootInodeCountsOnRoot) {
    auto r = table.ref(some_fd(), fake_stat(1, 2, S_IFDIR), nullptr);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->nodeid, kRootNodeId);
    EXPECT_EQ(table.nlookup(kRootNodeId), 2u);
}

TEST_F(InodeTableTest, ForgetDecrementsThenFrees) {
    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    table.ref(some_fd(), fake_stat(7, 100), nullptr);
    table.ref(some_fd(), fake_stat(7, 100), nullptr);
    uint64_t id = a->nodeid;
    ASSERT_EQ(table.nlookup(id), 3u);

    table.forget(id, 2);
    EXPECT_EQ(table.nlookup(id), 1u);
    EXPECT_EQ(rec(id).state.load(), uint32_t(kLive));
    EXPECT_TRUE(table.get(id));

    table.forget(id, 1);
    EXPECT_EQ(table.nlookup(id), 0u);
    EXPECT_EQ(rec(id).state.load(), uint32_t(kFree));
    EXPECT_FALSE(table.get(id));
    EXPECT_EQ(table.live(), 1u);
}

TEST_F(InodeTableTest, ForgetMoreThanCountedFrees) {
    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    uint64_t id = a->nodeid;
    table.forget(id, 1000);
    EXPECT_EQ(rec(id).state.load(), uint32_t(kFree));
    EXPECT_EQ(rec(id).nlookup.load(), 0u);
    EXPECT_FALSE(table.get(id));
}

TEST_F(InodeTableTest, ForgetZeroChangesNothing) {
    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    table.forget(a->nodeid, 0);
    EXPECT_EQ(table.nlookup(a->nodeid), 1u);
    EXPECT_TRUE(table.get(a->nodeid));
}

TEST_F(InodeTableTest, FdClosesWhenLastUserLetsGo) {
    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    int fd = a->fd.get();
    uint64_t id = a->nodeid;
    table.forget(id, 1);
    // An in-flight request still holding the inode keeps its fd usable.
    EXPECT_TRUE(fd_is_open(fd));
    a.reset();
    EXPECT_FALSE(fd_is_open(fd));
}

TEST_F(InodeTableTest, ForgetOfFreedOrBogusIdsIsIgnored) {
    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    uint64_t id = a->nodeid;
    table.forget(id, 1);
    table.forget(id, 1); // already free
    table.forget(0, 1);
    table.forget(kInodeCap, 1);
    table.forget(~0ULL, 1);
    table.forget(kInodeCap - 1, 1); // never used
    EXPECT_EQ(table.live(), 1u);
    EXPECT_TRUE(table.get(kRootNodeId));
}

TEST_F(InodeTableTest, ForgetOfRootIsIgnored) {
    table.forget(kRootNodeId, 1);
    table.forget(kRootNodeId, ~0ULL);
    auto root = table.get(kRootNodeId);
    ASSERT_TRUE(root);
    EXPECT_EQ(rec(kRootNodeId).state.load(), uint32_t(kLive));
    EXPECT_EQ(table.nlookup(kRootNodeId), 1u);
    EXPECT_EQ(table.live(), 1u);
}

TEST_F(InodeTableTest, GetRejectsInvalidIds) {
    EXPECT_FALSE(table.get(0));
    EXPECT_FALSE(table.get(kInodeCap));
    EXPECT_FALSE(table.get(kInodeCap + 1));
    EXPECT_FALSE(table.get(~0ULL));
    EXPECT_FALSE(table.get(2)); // in range, never allocated
    EXPECT_EQ(table.nlookup(0), 0u);
    EXPECT_EQ(table.nlookup(~0ULL), 0u);
}

TEST_F(InodeTableTest, SlotReuseBumpsGeneration) {
    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    uint64_t id = a->nodeid;
    uint32_t gen = a->generation;
    a.reset();
    table.forget(id, 1);

    auto b = table.ref(some_fd(), fake_stat(7, 200), nullptr);
    ASSERT_TRUE(b);
    ASSERT_EQ(b->nodeid, id); // the freed slot is reused first
    EXPECT_EQ(b->generation, gen + 1);
    EXPECT_EQ(rec(id).generation, gen + 1);
    EXPECT_EQ(rec(id).ino, 200u);
    EXPECT_EQ(rec(id).state.load(), uint32_t(kLive));
    EXPECT_EQ(rec(id).nlookup.load(), 1u);

    // The freed (dev, ino) is no longer indexed: it gets a fresh slot.
    auto c = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    ASSERT_TRUE(c);
    EXPECT_NE(c->nodeid, id);
}

TEST_F(InodeTableTest, RefOpenCountsOnlyAnInodeHeldOpen)
{
    // Unknown: nothing counted, the caller takes the ref() path.
    EXPECT_FALSE(table.ref_open(fake_stat(7, 100)));
    EXPECT_EQ(table.live(), 1u);

    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    ASSERT_TRUE(a);
    auto b = table.ref_open(fake_stat(7, 100));
    EXPECT_EQ(b, a);
    EXPECT_EQ(rec(a->nodeid).nlookup.load(), 2u);

    // Same identity, other file type: not the object we hold.
    EXPECT_FALSE(table.ref_open(fake_stat(7, 100, S_IFDIR)));
    EXPECT_EQ(rec(a->nodeid).nlookup.load(), 2u);

    // Once freed, the identity is unknown again.
    uint64_t id = a->nodeid;
    a.reset();
    b.reset();
    table.forget(id, 2);
    EXPECT_FALSE(table.ref_open(fake_stat(7, 100)));
    EXPECT_EQ(rec(id).state.load(), uint32_t(kFree));
}

TEST_F(InodeTableTest, FileHandleIsStoredInRecord) {
    FileHandleBlob fh;
    fh.type = 0x81;
    fh.bytes = 12;
    for (uint32_t i = 0; i < fh.bytes; i++)
        fh.data[i] = uint8_t(0xa0 + i);
    auto a = table.ref(some_fd(), fake_stat(7, 100), &fh);
    ASSERT_TRUE(a);
    const InodeRecord &r = rec(a->nodeid);
    EXPECT_EQ(r.handle_type, 0x81);
    EXPECT_EQ(r.handle_bytes, 12u);
    EXPECT_EQ(std::memcmp(r.handle, fh.data, 12), 0);
}

TEST_F(InodeTableTest, OversizedFileHandleIsNotStored) {
    FileHandleBlob fh;
    fh.type = 1;
    fh.bytes = kMaxFileHandle + 1;
    std::memset(fh.data, 0x55, sizeof(fh.data));
    auto a = table.ref(some_fd(), fake_stat(7, 100), &fh);
    ASSERT_TRUE(a);
    EXPECT_EQ(rec(a->nodeid).handle_bytes, 0u);
}

TEST_F(InodeTableTest, ReusedSlotDropsOldFileHandle) {
    FileHandleBlob fh;
    fh.type = 1;
    fh.bytes = 8;
    std::memset(fh.data, 0x77, sizeof(fh.data));
    auto a = table.ref(some_fd(), fake_stat(7, 100), &fh);
    uint64_t id = a->nodeid;
    a.reset();
    table.forget(id, 1);
    auto b = table.ref(some_fd(), fake_stat(7, 101), nullptr);
    ASSERT_EQ(b->nodeid, id);
    EXPECT_EQ(rec(id).handle_bytes, 0u);
}

TEST_F(InodeTableTest, FullTableReturnsNull) {
    // Slots 0 (invalid) and 1 (root) are taken: capacity - 2 remain.
    std::vector<std::shared_ptr<Inode>> held;
    for (uint64_t i = 0; i < kInodeCap - 2; i++) {
        auto n = table.ref(some_fd(), fake_stat(7, 1000 + i), nullptr);
        ASSERT_TRUE(n) << i;
        held.push_back(n);
    }
    EXPECT_EQ(table.live(), kInodeCap - 1);
    EXPECT_FALSE(table.ref(some_fd(), fake_stat(7, 5000), nullptr));
    // A known inode still gets its reference when the table is full.
    EXPECT_EQ(table.ref(some_fd(), fake_stat(7, 1000), nullptr), held[0]);

    // Freeing one slot makes room again.
    uint64_t id = held[3]->nodeid;
    table.forget(id, 1);
    auto n = table.ref(some_fd(), fake_stat(7, 5000), nullptr);
    ASSERT_TRUE(n);
    EXPECT_EQ(n->nodeid, id);
}

TEST_F(InodeTableTest, RecordsAloneDescribeTheLiveSet) {
    // A restarted server rebuilds its index from kLive records only.
    auto a = table.ref(some_fd(), fake_stat(7, 100), nullptr);
    auto b = table.ref(some_fd(), fake_stat(7, 101), nullptr);
    auto c = table.ref(some_fd(), fake_stat(7, 102), nullptr);
    table.ref(some_fd(), fake_stat(7, 102), nullptr);
    table.forget(b->nodeid, 1);

    size_t live = 0;
    for (uint64_t i = 0; i < kInodeCap; i++) {
        const InodeRecord &r = rec(i);
        if (r.state.load() != kLive)
            continue;
        live++;
        EXPECT_GT(r.nlookup.load(), 0u) << i;
    }
    EXPECT_EQ(live, 3u); // root, a, c
    EXPECT_EQ(rec(a->nodeid).nlookup.load(), 1u);
    EXPECT_EQ(rec(c->nodeid).nlookup.load(), 2u);
    EXPECT_EQ(rec(b->nodeid).state.load(), uint32_t(kFree));
}

// ---------------------------------------------------------------------------
// HandleTable

class HandleTableTest : public ::testing::Test {
  protected:
    HandleTableTest() : region(small_region()), inodes(region), handles(region) {
        inodes.set_root(some_fd(), fake_stat(1, 2, S_IFDIR));
    }
    std::shared_ptr<Handle> make(bool dir = false, int flags = O_RDWR) {
        auto h = std::make_shared<Handle>();
        h->inode = inodes.get(kRootNodeId);
        h->fd = some_fd();
        h->flags = flags;
        h->dir = dir;
        return h;
    }
    const HandleRecord &rec(uint64_t fh) { return region.handles()[fh]; }

    Region region;
    InodeTable inodes;
    HandleTable handles;
};

TEST_F(HandleTableTest, AddGetRemove) {
    auto h = make(false, O_WRONLY | O_APPEND);
    uint64_t fh = handles.add(h);
    ASSERT_NE(fh, 0u);
    EXPECT_EQ(h->fh, fh);
    EXPECT_EQ(handles.get(fh), h);
    EXPECT_EQ(handles.live(), 1u);

    const HandleRecord &r = rec(fh);
    EXPECT_EQ(r.state.load(), uint32_t(kLive));
    EXPECT_EQ(r.kind, uint32_t(kFile));
    EXPECT_EQ(r.nodeid, kRootNodeId);
    EXPECT_EQ(r.open_flags, uint32_t(O_WRONLY | O_APPEND));

    EXPECT_EQ(handles.remove(fh), h);
    EXPECT_FALSE(handles.get(fh));
    EXPECT_EQ(r.state.load(), uint32_t(kFree));
    EXPECT_EQ(handles.live(), 0u);
}

TEST_F(HandleTableTest, DirHandleRecordsKind) {
    uint64_t fh = handles.add(make(true, O_RDONLY | O_DIRECTORY));
    ASSERT_NE(fh, 0u);
    EXPECT_EQ(rec(fh).kind, uint32_t(kDir));
    EXPECT_EQ(rec(fh).open_flags, uint32_t(O_RDONLY | O_DIRECTORY));
}

TEST_F(HandleTableTest, HandleWithoutInodeRecordsNodeZero) {
    auto h = make();
    h->inode.reset();
    uint64_t fh = handles.add(h);
    ASSERT_NE(fh, 0u);
    EXPECT_EQ(rec(fh).nodeid, 0u);
}

TEST_F(HandleTableTest, FhZeroIsNeverValid) {
    EXPECT_FALSE(handles.get(0));
    EXPECT_FALSE(handles.remove(0));
    // Even with the table in use, no add ever hands out 0.
    for (int i = 0; i < 5; i++)
        EXPECT_NE(handles.add(make()), 0u);
    EXPECT_FALSE(handles.get(0));
    EXPECT_EQ(rec(0).state.load(), uint32_t(kFree));
}

TEST_F(HandleTableTest, RemoveTwiceReturnsNull) {
    uint64_t fh = handles.add(make());
    ASSERT_TRUE(handles.remove(fh));
    EXPECT_FALSE(handles.remove(fh));
    EXPECT_EQ(handles.live(), 0u);
    // The slot was freed only once: two adds get two distinct slots.
    uint64_t a = handles.add(make());
    uint64_t b = handles.add(make());
    EXPECT_NE(a, b);
}

TEST_F(HandleTableTest, OutOfRangeIsNull) {
    EXPECT_FALSE(handles.get(kHandleCap));
    EXPECT_FALSE(handles.get(~0ULL));
    EXPECT_FALSE(handles.remove(kHandleCap));
    EXPECT_FALSE(handles.remove(~0ULL));
    EXPECT_FALSE(handles.get(5)); // in range, never added
    EXPECT_FALSE(handles.remove(5));
    EXPECT_EQ(handles.live(), 0u);
}

TEST_F(HandleTableTest, FullTableReturnsZero) {
    std::vector<uint64_t> fhs;
    for (uint64_t i = 1; i < kHandleCap; i++) {
        uint64_t fh = handles.add(make());
        ASSERT_NE(fh, 0u) << i;
        ASSERT_LT(fh, kHandleCap);
        fhs.push_back(fh);
    }
    EXPECT_EQ(handles.live(), kHandleCap - 1);
    EXPECT_EQ(handles.add(make()), 0u);
    EXPECT_EQ(handles.live(), kHandleCap - 1);

    handles.remove(fhs[4]);
    EXPECT_EQ(handles.add(make()), fhs[4]);
}

TEST_F(HandleTableTest, RemovedHandleKeepsFdUntilReleased) {
    auto h = make();
    int fd = h->fd.get();
    uint64_t fh = handles.add(h);
    h.reset();
    auto got = handles.remove(fh);
    ASSERT_TRUE(got);
    EXPECT_TRUE(fd_is_open(fd));
    got.reset();
    EXPECT_FALSE(fd_is_open(fd));
}

TEST_F(HandleTableTest, SlotReuseRewritesRecord) {
    uint64_t fh = handles.add(make(false, O_RDONLY));
    handles.remove(fh);
    auto h = make(true, O_RDONLY | O_DIRECTORY);
    ASSERT_EQ(handles.add(h), fh);
    EXPECT_EQ(rec(fh).state.load(), uint32_t(kLive));
    EXPECT_EQ(rec(fh).kind, uint32_t(kDir));
    EXPECT_EQ(rec(fh).open_flags, uint32_t(O_RDONLY | O_DIRECTORY));
}

// ---------------------------------------------------------------------------
// Restart: a second mapping of the same memfd, as a new server process gets
// it from the fd store.

Fd dup_fd(int fd) {
    Fd d(fcntl(fd, F_DUPFD_CLOEXEC, 0));
    EXPECT_TRUE(d) << strerror(errno);
    return d;
}

// A region the way a running server leaves it: root installed.
struct Served {
    Served() : region(small_region()), inodes(region), handles(region) {
        inodes.set_root(some_fd(), fake_stat(1, 2, S_IFDIR));
    }
    Region region;
    InodeTable inodes;
    HandleTable handles;
};

std::string attach_error(Region &r) {
    try {
        Region::attach(dup_fd(r.memfd()));
    } catch (const std::runtime_error &e) {
        return e.what();
    }
    return "";
}

TEST(RegionAttach, SeesWhatTheOldServerWrote) {
    Served old;
    auto a = old.inodes.ref(some_fd(), fake_stat(7, 100), nullptr);
    Region r = Region::attach(dup_fd(old.region.memfd()));
    EXPECT_EQ(r.size(), old.region.size());
    EXPECT_EQ(r.header().magic, kMagic);
    EXPECT_EQ(r.header().inode_capacity, kInodeCap);
    EXPECT_EQ(r.inodes()[a->nodeid].ino, 100u);
    EXPECT_EQ(r.inodes()[a->nodeid].state.load(), uint32_t(kLive));
    // Shared, not copied: a write through one mapping shows in the other.
    old.region.inodes()[a->nodeid].mnt_id = 31;
    EXPECT_EQ(r.inodes()[a->nodeid].mnt_id, 31u);
}

TEST(RegionAttach, RefusesBadMagic) {
    Served old;
    old.region.header().magic ^= 1;
    EXPECT_NE(attach_error(old.region).find("magic"), std::string::npos)
        << attach_error(old.region);
}

TEST(RegionAttach, RefusesOtherLayoutVersion) {
    Served old;
    old.region.header().version = kLayoutVersion + 1;
    EXPECT_NE(attach_error(old.region), "");
}

TEST(RegionAttach, RefusesInconsistentSizes) {
    {
        Served old;
        old.region.header().region_size += 4096;
        EXPECT_NE(attach_error(old.region), "");
    }
    {
        Served old;
        old.region.header().inode_record_size += 8;
        EXPECT_NE(attach_error(old.region), "");
    }
    {
        Served old;
        old.region.header().handle_capacity = ~0ULL / 2;
        EXPECT_NE(attach_error(old.region), "");
    }
    {
        Served old;
        old.region.header().inode_offset = 8; // inside the header
        EXPECT_NE(attach_error(old.region), "");
    }
}

TEST(RegionAttach, RefusesHighWaterMarksOutOfRange) {
    Served old;
    old.region.header().inode_high.store(kInodeCap + 1);
    EXPECT_NE(attach_error(old.region), "");
}

TEST(RegionAttach, RefusesRegionWithoutLiveRoot) {
    Region r = small_region(); // never served: no root record
    EXPECT_NE(attach_error(r), "");
}

TEST(RegionAttach, RefusesCorruptInitRecord) {
    Served old;
    old.region.header().init.state.store(7);
    EXPECT_NE(attach_error(old.region), "");
}

TEST(RegionAttach, UringTableAfterTheJournal) {
    Served old;
    const RegionHeader &h = old.region.header();
    ASSERT_NE(h.uring_offset, 0u);
    EXPECT_EQ(h.uring_offset % 4096, 0u);
    EXPECT_GE(h.uring_offset, h.journal_offset + h.journal_capacity * sizeof(JournalRecord));
    EXPECT_GE(h.region_size, h.uring_offset + h.uring_capacity * sizeof(UringEntryRecord));
    EXPECT_EQ(h.uring_record_size, sizeof(UringEntryRecord));
    old.region.uring_entries()[h.uring_capacity - 1].commit_id = 42;
    Region r = Region::attach(dup_fd(old.region.memfd()));
    EXPECT_EQ(r.uring_entries()[h.uring_capacity - 1].commit_id, 42u);
}

// A region from a server that predates the table: those header fields were
// reserved and zero.  It attaches, and has no table.
TEST(RegionAttach, AcceptsARegionWithoutUringTable) {
    Region::Geometry g;
    g.inode_capacity = kInodeCap;
    g.handle_capacity = kHandleCap;
    g.uring_capacity = 0;
    Region r0 = Region::create(g);
    InodeTable inodes(r0);
    inodes.set_root(some_fd(), fake_stat(1, 2, S_IFDIR));
    EXPECT_EQ(r0.header().uring_offset, 0u);
    EXPECT_EQ(r0.uring_entries(), nullptr);
    Region r = Region::attach(dup_fd(r0.memfd()));
    EXPECT_EQ(r.uring_entries(), nullptr);
}

TEST(RegionAttach, RefusesUringTableOutOfBounds) {
    {
        Served old;
        old.region.header().uring_record_size = 16;
        EXPECT_NE(attach_error(old.region).find("io_uring"), std::string::npos);
    }
    {
        Served old;
        old.region.header().uring_offset = old.region.header().journal_offset; // overlaps
        EXPECT_NE(attach_error(old.region), "");
    }
    {
        Served old;
        old.region.header().uring_capacity = ~0ULL / 64;
        EXPECT_NE(attach_error(old.region), "");
    }
}

TEST(RegionAttach, RefusesSomethingThatIsNotARegion) {
    Fd fd(memfd_create("not-a-region", MFD_CLOEXEC));
    ASSERT_TRUE(fd);
    ASSERT_EQ(ftruncate(fd.get(), 100), 0);
    EXPECT_THROW(Region::attach(std::move(fd)), std::runtime_error);
    Fd big(memfd_create("zeroes", MFD_CLOEXEC));
    ASSERT_EQ(ftruncate(big.get(), 1 << 20), 0);
    EXPECT_THROW(Region::attach(std::move(big)), std::runtime_error);
}

TEST(InodeRecover, RebuildsIndexAndResolvesLazily) {
    Served old;
    auto a = old.inodes.ref(some_fd(), fake_stat(7, 100), nullptr);
    auto b = old.inodes.ref(some_fd(), fake_stat(7, 101), nullptr);
    old.inodes.ref(some_fd(), fake_stat(7, 101), nullptr);
    auto c = old.inodes.ref(some_fd(), fake_stat(7, 102), nullptr);
    old.inodes.forget(c->nodeid, 1); // freed before the crash

    Region r = Region::attach(dup_fd(old.region.memfd()));
    InodeTable t(r);
    std::vector<uint64_t> resolved;
    t.recover(some_fd(), [&](uint64_t id, const InodeRecord &rec) {
        resolved.push_back(id);
        EXPECT_EQ(rec.state.load(), uint32_t(kLive));
        return some_fd();
    });
    EXPECT_EQ(t.live(), 3u); // root, a, b
    EXPECT_TRUE(resolved.empty()) << "recover must not reopen every inode up front";
    EXPECT_EQ(t.nlookup(a->nodeid), 1u);
    EXPECT_EQ(t.nlookup(b->nodeid), 2u);

    auto got = t.get(b->nodeid);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->ino, 101u);
    EXPECT_EQ(got->generation, b->generation);
    EXPECT_EQ(resolved, std::vector<uint64_t>{b->nodeid});
    EXPECT_EQ(t.get(b->nodeid), got); // resolved once, then cached
    EXPECT_EQ(resolved.size(), 1u);
    EXPECT_FALSE(t.get(c->nodeid)); // free before the crash stays free
    EXPECT_TRUE(t.get(kRootNodeId));
}

TEST(InodeRecover, RefAndForgetContinueTheOldCounts) {
    Served old;
    auto a = old.inodes.ref(some_fd(), fake_stat(7, 100), nullptr);
    auto c = old.inodes.ref(some_fd(), fake_stat(7, 102), nullptr);
    uint32_t c_gen = c->generation;
    old.inodes.forget(c->nodeid, 1);

    Region r = Region::attach(dup_fd(old.region.memfd()));
    InodeTable t(r);
    t.recover(some_fd(), [](uint64_t, const InodeRecord &) { return Fd(); });
    // A lookup of a known inode finds its old slot (even though the slot's
    // fd is not open here yet) and counts on.
    auto again = t.ref(some_fd(), fake_stat(7, 100), nullptr);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->nodeid, a->nodeid);
    EXPECT_EQ(t.nlookup(a->nodeid), 2u);
    EXPECT_TRUE(again->fd);
    // A new inode reuses the freed slot with a bumped generation.
    auto fresh = t.ref(some_fd(), fake_stat(7, 500), nullptr);
    ASSERT_TRUE(fresh);
    EXPECT_EQ(fresh->nodeid, c->nodeid);
    EXPECT_EQ(fresh->generation, c_gen + 1);
    // FORGET of an inode not reopened since the restart still frees it.
    t.forget(a->nodeid, 2);
    EXPECT_EQ(r.inodes()[a->nodeid].state.load(), uint32_t(kFree));
    EXPECT_EQ(t.live(), 2u); // root, fresh
}

// A slot not reopened since the restart is only known by its record: the
// file handle must tell whether a lookup found that object, so ref_open()
// leaves it to ref().
TEST(InodeRecover, RefOpenLeavesUnresolvedSlotsToRef)
{
    Served old;
    auto a = old.inodes.ref(some_fd(), fake_stat(7, 100), nullptr);
    Region r = Region::attach(dup_fd(old.region.memfd()));
    InodeTable t(r);
    t.recover(some_fd(), [](uint64_t, const InodeRecord &) { return some_fd(); });
    EXPECT_FALSE(t.ref_open(fake_stat(7, 100)));
    EXPECT_EQ(t.nlookup(a->nodeid), 1u);
    ASSERT_TRUE(t.get(a->nodeid)); // resolved: held open from now on
    auto again = t.ref_open(fake_stat(7, 100));
    ASSERT_TRUE(again);
    EXPECT_EQ(again->nodeid, a->nodeid);
    EXPECT_EQ(t.nlookup(a->nodeid), 2u);
}

TEST(InodeRecover, UnresolvableInodeIsStale) {
    Served old;
    auto a = old.inodes.ref(some_fd(), fake_stat(7, 100), nullptr);
    Region r = Region::attach(dup_fd(old.region.memfd()));
    InodeTable t(r);
    t.recover(some_fd(), [](uint64_t, const InodeRecord &) { return Fd(); });
    EXPECT_FALSE(t.get(a->nodeid));
    // The kernel still holds its reference; the record stays for FORGET.
    EXPECT_EQ(r.inodes()[a->nodeid].state.load(), uint32_t(kLive));
}

TEST(InodeRecover, RefusesCorruptRecords) {
    {
        Served old;
        auto a = old.inodes.ref(some_fd(), fake_stat(7, 100), nullptr);
        old.region.inodes()[a->nodeid].state.store(9);
        InodeTable t(old.region);
        EXPECT_THROW(t.recover(some_fd(), [](uint64_t, const InodeRecord &) { return Fd(); }),
                     std::runtime_error);
    }
    {
        Served old;
        auto a = old.inodes.ref(some_fd(), fake_stat(7, 100), nullptr);
        old.region.inodes()[a->nodeid].handle_bytes = kMaxFileHandle + 1;
        InodeTable t(old.region);
        EXPECT_THROW(t.recover(some_fd(), [](uint64_t, const InodeRecord &) { return Fd(); }),
                     std::runtime_error);
    }
}

// Two live records for one (dev, ino) are legitimate: the host reused the
// inode number of a deleted file while the kernel still held the old node
// id.  Both stay live; a lookup whose file handle differs from the indexed
// slot's gets a fresh slot instead of the stale object.
TEST(InodeRecover, ReusedInodeNumberIsNotCorruption) {
    Served old;
    FileHandleBlob h1{1, 8, {1}}, h2{1, 8, {2}};
    auto a = old.inodes.ref(some_fd(), fake_stat(7, 100), &h1);
    auto b = old.inodes.ref(some_fd(), fake_stat(7, 101), &h2);
    old.region.inodes()[b->nodeid].ino = 100;
    InodeTable t(old.region);
    ASSERT_NO_THROW(t.recover(some_fd(), [](uint64_t, const InodeRecord &) { return Fd(); }));
    EXPECT_EQ(3u, t.live());
    FileHandleBlob h3{1, 8, {3}};
    auto c = t.ref(some_fd(), fake_stat(7, 100), &h3);
    ASSERT_TRUE(c);
    EXPECT_NE(a->nodeid, c->nodeid);
    EXPECT_NE(b->nodeid, c->nodeid);
    EXPECT_EQ(4u, t.live());
    // The same handle again: the same slot, one more reference.
    auto d = t.ref(some_fd(), fake_stat(7, 100), &h3);
    EXPECT_EQ(c->nodeid, d->nodeid);
    EXPECT_EQ(2u, t.nlookup(c->nodeid));
}

TEST(HandleRecover, HandlesResolveLazilyAndKeepTheirFh) {
    Served old;
    auto h = std::make_shared<Handle>();
    h->inode = old.inodes.get(kRootNodeId);
    h->fd = some_fd();
    h->flags = O_RDWR;
    uint64_t fh = old.handles.add(h);
    uint64_t gone = old.handles.add(h);
    old.handles.remove(gone);

    Region r = Region::attach(dup_fd(old.region.memfd()));
    HandleTable t(r);
    int resolves = 0;
    t.recover(
        [&](uint64_t f, const HandleRecord &rec) {
            resolves++;
            EXPECT_EQ(f, fh);
            EXPECT_EQ(rec.open_flags, uint32_t(O_RDWR));
            auto nh = std::make_shared<Handle>();
            nh->fd = some_fd();
            return nh;
        },
        kInodeCap);
    EXPECT_EQ(t.live(), 1u);
    EXPECT_EQ(resolves, 0);
    auto got = t.get(fh);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->fh, fh);
    EXPECT_EQ(resolves, 1);
    EXPECT_FALSE(t.get(gone));
    // The freed slot is handed out again before new ones.
    EXPECT_EQ(t.add(std::make_shared<Handle>()), gone);
}

TEST(HandleRecover, ReleaseOfHandleNotUsedSinceRestartFreesIt) {
    // After a restart a RELEASE may be the first thing that names an fh
    // (an open file idle across the crash).  Removing it must free the
    // record even if the handle was never reopened in this process; else
    // the slot stays kLive forever and every later restart inherits it.
    Served old;
    auto h = std::make_shared<Handle>();
    h->inode = old.inodes.get(kRootNodeId);
    h->fd = some_fd();
    uint64_t fh = old.handles.add(h);

    Region r = Region::attach(dup_fd(old.region.memfd()));
    HandleTable t(r);
    t.recover([](uint64_t, const HandleRecord &) { return std::shared_ptr<Handle>(); }, kInodeCap);
    ASSERT_EQ(t.live(), 1u);
    t.remove(fh);
    EXPECT_EQ(r.handles()[fh].state.load(), uint32_t(kFree));
    EXPECT_EQ(t.live(), 0u);
}

TEST(HandleRecover, RefusesCorruptRecords) {
    Served old;
    auto h = std::make_shared<Handle>();
    h->inode = old.inodes.get(kRootNodeId);
    uint64_t fh = old.handles.add(h);
    old.region.handles()[fh].nodeid = kInodeCap; // beyond the inode table
    HandleTable t(old.region);
    EXPECT_THROW(t.recover([](uint64_t, const HandleRecord &) { return nullptr; }, kInodeCap),
                 std::runtime_error);
    old.region.handles()[fh].nodeid = kRootNodeId;
    old.region.handles()[fh].kind = 7;
    HandleTable t2(old.region);
    EXPECT_THROW(t2.recover([](uint64_t, const HandleRecord &) { return nullptr; }, kInodeCap),
                 std::runtime_error);
}

// ---------------------------------------------------------------------------
// Journal

// Journals that write live for the whole run: a thread caches its record by
// Journal address (see NewJournalAtARecycledAddressUsesItsOwnRegion), so a
// writer at a recycled address could write into an unmapped region and turn
// that bug into a crash of unrelated tests.
Journal &writer(Region &r) {
    static std::deque<Journal> keep; // never relocates its elements
    return keep.emplace_back(r);
}

TEST(Journal, RecordsSurviveForTheNextServer) {
    Served old;
    Journal &j = writer(old.region);
    j.begin(kAnyOpcode, 0x100);
    j.done(0, 5, 6, 7);
    Region r = Region::attach(dup_fd(old.region.memfd()));
    Journal next(r);
    EXPECT_EQ(next.load_previous(), 1u);
    auto e = next.take(0x100);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->phase, uint32_t(kJournalDone));
    EXPECT_EQ(e->opcode, kAnyOpcode);
    EXPECT_EQ(e->error, 0);
    EXPECT_EQ(e->nodeid, 5u);
    EXPECT_EQ(e->fh, 6u);
    EXPECT_EQ(e->u32, 7u);
    EXPECT_FALSE(next.take(0x100)); // consumed
    EXPECT_EQ(next.pending(), 0u);
}

// A backing id registered mid-op is in the started record a crash leaves,
// and only in the record of the request that registered it.
TEST(Journal, NoteKeepsAValueInTheStartedRecordOfThatRequest) {
    Served old;
    Journal &j = writer(old.region);
    j.begin(kAnyOpcode, 0x300);
    j.note(0x301, 9); // another request: not its record
    j.note(0x300, 8);
    Journal next(old.region);
    ASSERT_EQ(next.load_previous(), 1u);
    auto e = next.take(0x300);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->phase, uint32_t(kJournalStarted));
    EXPECT_EQ(e->u32, 8u);
    // Done: the record is no longer started, a late note leaves it alone.
    j.done(0, 0, 0, 3);
    j.note(0x300, 8);
    Journal again(old.region);
    ASSERT_EQ(again.load_previous(), 1u);
    EXPECT_EQ(again.take(0x300)->u32, 3u);
}

TEST(Journal, StartedButNotDoneIsReportedAsStarted) {
    Served old;
    writer(old.region).begin(kAnyOpcode, 0x200, 42);
    Journal next(old.region);
    ASSERT_EQ(next.load_previous(), 1u);
    auto e = next.take(0x200);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->phase, uint32_t(kJournalStarted));
    EXPECT_EQ(e->u64, 42u);
}

TEST(Journal, NewJournalAtARecycledAddressUsesItsOwnRegion) {
    // Each thread caches "its" record keyed by the Journal's address.  A new
    // Journal that happens to live where a destroyed one did (same stack
    // slot, same allocation) must not inherit the old one's record, which
    // points into another region (possibly unmapped by then).
    Served a, b;
    std::optional<Journal> j;
    j.emplace(a.region);
    j->begin(kAnyOpcode, 0x300);
    j.reset();
    j.emplace(b.region);
    j->begin(kAnyOpcode, 0x400);
    j->done(0);
    Journal reader(b.region);
    EXPECT_EQ(reader.load_previous(), 1u);
    EXPECT_TRUE(reader.take(0x400)) << "the record went to the other region";
    // Leave this thread's cache on a Journal that is never recycled.
    writer(b.region).begin(kAnyOpcode, 0x500);
}

} // namespace
