// SPDX-License-Identifier: GPL-2.0
// The DAX mapping table in the state region (state/dax_table.h): records,
// their index, and how a successor validates what it finds.  The region is
// shared memory a crash or a bug may have left in any state: a corrupt area
// or record must be refused with a message, never used.
#include "state/dax_table.h"
#include "state/region.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <functional>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

using namespace holdfast;
using namespace holdfast::state;

namespace {

constexpr uint64_t kWin = 64ull << 20;
constexpr uint64_t kInodes = 64;

Region make(uint64_t window = kWin)
{
    Region::Geometry g;
    g.inode_capacity = kInodes;
    g.handle_capacity = 16;
    g.journal_capacity = 4;
    g.uring_capacity = 8;
    g.dax_window = window;
    Region r = Region::create(g);
    // What start_fresh() does, enough for attach() to take the region.
    InodeRecord &root = r.inodes()[1];
    root.mode = S_IFDIR;
    root.nlookup = 1;
    root.state.store(kLive, std::memory_order_release);
    return r;
}

// What a restarted server does: attach the same memfd afresh.
Region reattach(Region &r)
{
    return Region::attach(Fd(fcntl(r.memfd(), F_DUPFD_CLOEXEC, 0)));
}

std::string attach_error(Region &r)
{
    try {
        reattach(r);
    } catch (const std::runtime_error &e) {
        return e.what();
    }
    return "";
}

std::string recover_error(Region &r)
{
    Region again = reattach(r);
    DaxTable t(again);
    try {
        t.recover(kInodes);
    } catch (const std::runtime_error &e) {
        return e.what();
    }
    return "";
}

DaxRecord *records(Region &r)
{
    return reinterpret_cast<DaxRecord *>(reinterpret_cast<char *>(r.dax_area()) + sizeof(DaxArea));
}

bool contains(const std::string &s, const std::string &what)
{
    return s.find(what) != std::string::npos;
}

} // namespace

TEST(DaxTable, RegionWithoutWindowHasNoTable)
{
    Region r = make(0);
    EXPECT_EQ(r.header().dax_offset, 0u);
    EXPECT_EQ(r.dax_area(), nullptr);
    EXPECT_FALSE(DaxTable(r).valid());
    Region again = reattach(r);
    EXPECT_EQ(again.dax_area(), nullptr);
}

TEST(DaxTable, GeometryFollowsTheWindow)
{
    Region r = make();
    const RegionHeader &h = r.header();
    EXPECT_EQ(h.dax_offset % 4096, 0u);
    EXPECT_GE(h.dax_offset, h.uring_offset + h.uring_capacity * sizeof(UringEntryRecord));
    EXPECT_EQ(h.dax_bytes, sizeof(DaxArea) + Region::dax_capacity(kWin) * sizeof(DaxRecord));
    EXPECT_LE(h.dax_offset + h.dax_bytes, h.region_size);
    DaxTable t(r);
    ASSERT_TRUE(t.valid());
    EXPECT_EQ(t.window(), kWin);
    EXPECT_EQ(t.capacity(), kWin / (64 * 1024));
    EXPECT_EQ(Region::dax_capacity(2ull << 20), 32u); // the floor
    EXPECT_EQ(r.dax_area()->page_shift, 12u);
    EXPECT_EQ(r.dax_area()->version, kDaxVersion);
    EXPECT_EQ(attach_error(r), "");
}

TEST(DaxTable, MapPublishUnmapRelease)
{
    Region r = make();
    DaxTable t(r);
    int64_t s = t.begin_map(2 << 20, 2 << 20, 5, 4096, true);
    ASSERT_GE(s, 0);
    auto all = t.all();
    ASSERT_EQ(all.size(), 1u);
    EXPECT_EQ(all[0].state, uint32_t(kDaxPending));
    EXPECT_TRUE(all[0].uncertain());
    EXPECT_TRUE(all[0].writable);
    EXPECT_EQ(all[0].nodeid, 5u);
    EXPECT_EQ(all[0].file_offset, 4096u);
    t.publish(uint64_t(s));
    EXPECT_EQ(t.all()[0].state, uint32_t(kDaxLive));
    EXPECT_FALSE(t.all()[0].uncertain());
    t.begin_unmap(uint64_t(s));
    EXPECT_EQ(t.all()[0].state, uint32_t(kDaxUnmapping));
    t.release(uint64_t(s));
    EXPECT_TRUE(t.all().empty());
    EXPECT_EQ(records(r)[s].state.load(), uint32_t(kDaxFree));
    // The slot is reused before the high-water mark moves.
    EXPECT_EQ(t.begin_map(0, 4096, 5, 0, false), s);
    EXPECT_EQ(r.dax_area()->high.load(), 1u);
}

TEST(DaxTable, OverlappingFindsEveryRecordTouchingTheRange)
{
    Region r = make();
    DaxTable t(r);
    t.begin_map(0, 2 << 20, 2, 0, false);
    t.begin_map(2 << 20, 2 << 20, 3, 0, false);
    t.begin_map(8 << 20, 4096, 4, 0, false);
    EXPECT_EQ(t.overlapping(0, 4096).size(), 1u);
    EXPECT_EQ(t.overlapping((2 << 20) - 4096, 8192).size(), 2u);
    EXPECT_EQ(t.overlapping(1 << 20, 7 << 20).size(), 2u);
    EXPECT_EQ(t.overlapping(1 << 20, (7 << 20) + 4096).size(), 3u);
    EXPECT_EQ(t.overlapping(0, ~0ull).size(), 3u);
    EXPECT_EQ(t.overlapping(4 << 20, 4 << 20).size(), 0u);
    EXPECT_EQ(t.overlapping((8 << 20) + 4096, 4096).size(), 0u);
    EXPECT_EQ(t.overlapping(0, 0).size(), 0u);
    EXPECT_EQ(t.all().size(), 3u);
    EXPECT_EQ(t.all()[1].nodeid, 3u); // by window offset
}

TEST(DaxTable, FullTableSaysSo)
{
    Region r = make(2ull << 20); // 32 records
    DaxTable t(r);
    for (uint64_t i = 0; i < 32; i++)
        ASSERT_GE(t.begin_map(i * 4096, 4096, 2, 0, false), 0) << i;
    EXPECT_EQ(t.begin_map(32 * 4096, 4096, 2, 0, false), -1);
    t.release(7);
    EXPECT_EQ(t.begin_map(32 * 4096, 4096, 2, 0, false), 7);
}

TEST(DaxTable, ClearForgetsEverything)
{
    Region r = make();
    DaxTable t(r);
    t.publish(uint64_t(t.begin_map(0, 4096, 2, 0, false)));
    t.begin_map(4096, 4096, 2, 0, false);
    t.clear();
    EXPECT_EQ(t.used(), 0u);
    EXPECT_EQ(recover_error(r), "");
    Region again = reattach(r);
    DaxTable t2(again);
    t2.recover(kInodes);
    EXPECT_EQ(t2.used(), 0u);
}

TEST(DaxTable, SuccessorSeesWhatWasMappedAndWhatIsUncertain)
{
    Region r = make();
    {
        DaxTable t(r);
        t.publish(uint64_t(t.begin_map(0, 2 << 20, 2, 0, false)));
        t.begin_map(2 << 20, 2 << 20, 3, 2 << 20, true); // crash before the ack
        int64_t s = t.begin_map(4 << 20, 2 << 20, 4, 0, false);
        t.publish(uint64_t(s));
        t.begin_unmap(uint64_t(s)); // crash before the unmap's ack
        t.release(uint64_t(t.begin_map(6 << 20, 4096, 5, 0, false)));
    }
    Region again = reattach(r);
    DaxTable t(again);
    t.recover(kInodes);
    auto all = t.all();
    ASSERT_EQ(all.size(), 3u);
    EXPECT_EQ(all[0].state, uint32_t(kDaxLive));
    EXPECT_EQ(all[1].state, uint32_t(kDaxPending));
    EXPECT_TRUE(all[1].writable);
    EXPECT_EQ(all[1].file_offset, 2u << 20);
    EXPECT_EQ(all[2].state, uint32_t(kDaxUnmapping));
    // The freed slot is taken again before the mark moves.
    EXPECT_EQ(t.begin_map(8 << 20, 4096, 2, 0, false), 3);
}

TEST(DaxTable, CorruptAreaIsRefused)
{
    struct Case {
        const char *what;
        std::function<void(Region &)> corrupt;
        const char *message;
    };
    const Case cases[] = {
        {"magic", [](Region &r) { r.dax_area()->magic ^= 1; }, "DAX table has a bad magic"},
        {"version", [](Region &r) { r.dax_area()->version = 2; }, "DAX table version 2"},
        {"record size", [](Region &r) { r.dax_area()->record_size = 48; }, "record size 48"},
        {"page shift", [](Region &r) { r.dax_area()->page_shift = 16; }, "page shift 16"},
        {"window 0", [](Region &r) { r.dax_area()->window_size = 0; }, "DAX window size 0"},
        {"window not 2M", [](Region &r) { r.dax_area()->window_size = 3 << 20; }, "is invalid"},
        {"window huge", [](Region &r) { r.dax_area()->window_size = 1ull << 41; }, "is invalid"},
        {"capacity 0", [](Region &r) { r.dax_area()->capacity = 0; }, "capacity"},
        {"capacity past the area", [](Region &r) { r.dax_area()->capacity += 1; }, "capacity"},
        {"capacity huge", [](Region &r) { r.dax_area()->capacity = ~0ull; }, "capacity"},
        {"high", [](Region &r) { r.dax_area()->high = r.dax_area()->capacity + 1; }, "high-water"},
        {"offset unaligned", [](Region &r) { r.header().dax_offset += 8; }, "out of bounds"},
        {"offset inside the ring table", [](Region &r) { r.header().dax_offset -= 4096; },
         "out of bounds"},
        {"offset past the end", [](Region &r) { r.header().dax_offset = r.size(); },
         "out of bounds"},
        {"offset huge", [](Region &r) { r.header().dax_offset = ~0ull & ~4095ull; },
         "out of bounds"},
        {"bytes too few", [](Region &r) { r.header().dax_bytes = 63; }, "out of bounds"},
        {"bytes past the end", [](Region &r) { r.header().dax_bytes = ~0ull; }, "out of bounds"},
    };
    for (const auto &c : cases) {
        Region r = make();
        c.corrupt(r);
        std::string e = attach_error(r);
        EXPECT_TRUE(contains(e, "refusing state region")) << c.what << ": " << e;
        EXPECT_TRUE(contains(e, c.message)) << c.what << ": " << e;
    }
}

TEST(DaxTable, CorruptRecordIsRefused)
{
    struct Case {
        const char *what;
        std::function<void(DaxRecord &)> corrupt;
        const char *message;
    };
    const Case cases[] = {
        {"state", [](DaxRecord &d) { d.state = 4; }, "unknown state 4"},
        {"flags", [](DaxRecord &d) { d.flags = 2; }, "unknown flags"},
        {"len 0", [](DaxRecord &d) { d.len = 0; }, "not page aligned"},
        {"win unaligned", [](DaxRecord &d) { d.win_offset += 512; }, "not page aligned"},
        {"len unaligned", [](DaxRecord &d) { d.len += 1; }, "not page aligned"},
        {"file unaligned", [](DaxRecord &d) { d.file_offset = 100; }, "not page aligned"},
        {"past the window", [](DaxRecord &d) { d.win_offset = kWin; }, "not inside the window"},
        {"wraps", [](DaxRecord &d) { d.win_offset = ~0ull & ~4095ull; }, "not inside the window"},
        {"too long", [](DaxRecord &d) { d.len = kWin + 4096; }, "not inside the window"},
        {"file overflow", [](DaxRecord &d) { d.file_offset = 1ull << 63; }, "overflows"},
        {"node 0", [](DaxRecord &d) { d.nodeid = 0; }, "outside the inode table"},
        {"node past the table", [](DaxRecord &d) { d.nodeid = kInodes; },
         "outside the inode table"},
        {"overlaps the next", [](DaxRecord &d) { d.len = (2 << 20) + 4096; }, "overlaps"},
    };
    for (const auto &c : cases) {
        Region r = make();
        {
            DaxTable t(r);
            t.publish(uint64_t(t.begin_map(0, 2 << 20, 2, 0, false)));
            t.publish(uint64_t(t.begin_map(2 << 20, 2 << 20, 3, 0, true)));
        }
        c.corrupt(records(r)[0]);
        EXPECT_EQ(attach_error(r), "") << c.what; // records are the table's to check
        std::string e = recover_error(r);
        EXPECT_TRUE(contains(e, "refusing state region: DAX record ")) << c.what << ": " << e;
        EXPECT_TRUE(contains(e, c.message)) << c.what << ": " << e;
    }
}

TEST(DaxTable, OverlapIsFoundWhicheverRecordComesFirst)
{
    Region r = make();
    {
        DaxTable t(r);
        t.begin_map(4 << 20, 2 << 20, 2, 0, false);
        t.begin_map(0, 2 << 20, 3, 0, false);
    }
    records(r)[1].len = (4 << 20) + 4096; // the second record reaches into the first
    EXPECT_TRUE(contains(recover_error(r), "DAX record 1 overlaps record 0"));
}

TEST(DaxTable, FreeRecordsAreNotChecked)
{
    Region r = make();
    {
        DaxTable t(r);
        t.release(uint64_t(t.begin_map(0, 4096, 2, 0, false)));
    }
    records(r)[0].len = 12345; // garbage in a free record is fine
    EXPECT_EQ(recover_error(r), "");
}
