// SPDX-License-Identifier: GPL-2.0
// The descriptor-chain walker and the split virtqueue over a synthetic
// memory table: everything a hostile guest can put in its rings.
#include "transport/vhost_user/memory.h"
#include "transport/vhost_user/virtqueue.h"

#include <gtest/gtest.h>

#include <cstring>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vector>

using namespace holdfast;
using namespace holdfast::vhost;

namespace {

constexpr uint64_t kGpa0 = 0x100000, kSize0 = 1 << 20;
constexpr uint64_t kGpa1 = kGpa0 + kSize0, kSize1 = 1 << 16; // adjacent to region 0
constexpr uint64_t kUvaOff = 0x7f0000000000ull;

// Two guest-physically adjacent regions backed by separate host buffers.
struct Guest {
    std::vector<uint8_t> r0 = std::vector<uint8_t>(kSize0);
    std::vector<uint8_t> r1 = std::vector<uint8_t>(kSize1);
    std::shared_ptr<MemoryTable> mem;

    Guest()
    {
        std::string err;
        mem = MemoryTable::over({{kGpa0, kSize0, kGpa0 + kUvaOff, 0}, {kGpa1, kSize1, kGpa1 + kUvaOff, 0}},
                                {r0.data(), r1.data()}, err);
        EXPECT_TRUE(mem) << err;
    }
    uint8_t *at(uint64_t gpa) { return mem->gpa_ptr(gpa, 1); }
    void desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
              uint16_t next)
    {
        Desc d{addr, len, flags, next};
        std::memcpy(at(table + i * sizeof(Desc)), &d, sizeof(d));
    }
};

constexpr uint64_t kTable = kGpa0;            // 256 descriptors
constexpr uint64_t kData = kGpa0 + 0x10000;   // buffers
constexpr uint64_t kInd = kGpa0 + 0x8000;     // an indirect table

ChainError walk(Guest &g, uint16_t head, Chain &c, bool indirect = true, uint16_t num = 256,
                WalkLimits lim = {})
{
    return walk_chain(*g.mem, g.at(kTable), num, head, indirect, lim, c);
}

} // namespace

TEST(VhostChain, SimpleReadThenWrite)
{
    Guest g;
    g.desc(kTable, 0, kData, 40, kDescNext, 5);
    g.desc(kTable, 5, kData + 100, 8, kDescNext, 7);
    g.desc(kTable, 7, kData + 200, 4096, kDescWrite, 0);
    Chain c;
    ASSERT_EQ(walk(g, 0, c), ChainError::ok);
    EXPECT_EQ(c.in.size(), 2u);
    EXPECT_EQ(c.out.size(), 1u);
    EXPECT_EQ(c.in_bytes, 48u);
    EXPECT_EQ(c.out_bytes, 4096u);
    EXPECT_EQ(c.in[0].iov_base, g.at(kData));
    EXPECT_EQ(c.out[0].iov_base, g.at(kData + 200));
}

TEST(VhostChain, HeadOutOfRange)
{
    Guest g;
    Chain c;
    EXPECT_EQ(walk(g, 256, c), ChainError::head_out_of_range);
}

TEST(VhostChain, LoopIsCaught)
{
    Guest g;
    g.desc(kTable, 0, kData, 1, kDescNext, 1);
    g.desc(kTable, 1, kData, 1, kDescNext, 0); // back to 0
    Chain c;
    EXPECT_EQ(walk(g, 0, c), ChainError::too_long);
    // A self-loop too.
    g.desc(kTable, 3, kData, 1, kDescNext, 3);
    EXPECT_EQ(walk(g, 3, c), ChainError::too_long);
}

TEST(VhostChain, NextOutOfRange)
{
    Guest g;
    g.desc(kTable, 0, kData, 1, kDescNext, 300);
    Chain c;
    EXPECT_EQ(walk(g, 0, c), ChainError::next_out_of_range);
}

TEST(VhostChain, AddressOutsideTable)
{
    Guest g;
    Chain c;
    g.desc(kTable, 0, 0x1000, 16, 0, 0); // below every region
    EXPECT_EQ(walk(g, 0, c), ChainError::out_of_table);
    g.desc(kTable, 0, kGpa1 + kSize1 - 8, 16, 0, 0); // runs off the end
    EXPECT_EQ(walk(g, 0, c), ChainError::out_of_table);
    g.desc(kTable, 0, ~0ull - 4, 16, 0, 0); // wraps the address space
    EXPECT_EQ(walk(g, 0, c), ChainError::out_of_table);
}

TEST(VhostChain, BufferSpanningAdjacentRegionsIsSplit)
{
    Guest g;
    g.desc(kTable, 0, kGpa1 - 100, 300, 0, 0);
    Chain c;
    ASSERT_EQ(walk(g, 0, c), ChainError::ok);
    ASSERT_EQ(c.in.size(), 2u);
    EXPECT_EQ(c.in[0].iov_base, g.r0.data() + kSize0 - 100);
    EXPECT_EQ(c.in[0].iov_len, 100u);
    EXPECT_EQ(c.in[1].iov_base, g.r1.data());
    EXPECT_EQ(c.in[1].iov_len, 200u);
}

TEST(VhostChain, TotalLengthOverflow)
{
    Guest g;
    // Two descriptors whose lengths sum past 32 bits (addresses overlap: legal).
    g.desc(kTable, 0, kData, 0xffffff00u, kDescNext, 1);
    g.desc(kTable, 1, kData, 0x200, 0, 0);
    Chain c;
    WalkLimits lim;
    // The first one alone is out of the table; make the limit bite first.
    lim.max_bytes = 0x1000;
    g.desc(kTable, 0, kData, 0x800, kDescNext, 1);
    g.desc(kTable, 1, kData, 0x900, 0, 0);
    EXPECT_EQ(walk(g, 0, c, true, 256, lim), ChainError::too_large);
    g.desc(kTable, 0, kData, 0xffffffffu, 0, 0);
    EXPECT_EQ(walk(g, 0, c), ChainError::out_of_table);
}

TEST(VhostChain, ReadableAfterWritableRefused)
{
    Guest g;
    g.desc(kTable, 0, kData, 16, kDescWrite | kDescNext, 1);
    g.desc(kTable, 1, kData, 16, 0, 0);
    Chain c;
    EXPECT_EQ(walk(g, 0, c), ChainError::readable_after_writable);
}

TEST(VhostChain, ZeroLengthDescriptorsAreHarmless)
{
    Guest g;
    g.desc(kTable, 0, 0, 0, kDescNext, 1); // address 0 is not mapped, but no bytes
    g.desc(kTable, 1, kData, 8, 0, 0);
    Chain c;
    ASSERT_EQ(walk(g, 0, c), ChainError::ok);
    EXPECT_EQ(c.in.size(), 1u);
    EXPECT_EQ(c.in_bytes, 8u);
}

TEST(VhostChain, IndirectTable)
{
    Guest g;
    g.desc(kInd, 0, kData, 40, kDescNext, 1);
    g.desc(kInd, 1, kData + 64, 4096, kDescWrite | kDescNext, 2);
    g.desc(kInd, 2, kData + 8192, 4096, kDescWrite, 0);
    g.desc(kTable, 9, kInd, 3 * sizeof(Desc), kDescIndirect, 0);
    Chain c;
    ASSERT_EQ(walk(g, 9, c), ChainError::ok);
    EXPECT_EQ(c.head, 9);
    EXPECT_EQ(c.in_bytes, 40u);
    EXPECT_EQ(c.out_bytes, 8192u);
    EXPECT_EQ(walk(g, 9, c, /*indirect=*/false), ChainError::indirect_not_negotiated);
}

TEST(VhostChain, IndirectMalformed)
{
    Guest g;
    Chain c;
    // Length not a multiple of 16, zero, or too many entries.
    g.desc(kTable, 0, kInd, 40, kDescIndirect, 0);
    EXPECT_EQ(walk(g, 0, c), ChainError::indirect_bad_size);
    g.desc(kTable, 0, kInd, 0, kDescIndirect, 0);
    EXPECT_EQ(walk(g, 0, c), ChainError::indirect_bad_size);
    g.desc(kTable, 0, kInd, 2000 * sizeof(Desc), kDescIndirect, 0);
    EXPECT_EQ(walk(g, 0, c), ChainError::indirect_bad_size);
    // Table outside memory.
    g.desc(kTable, 0, 0x2000, 4 * sizeof(Desc), kDescIndirect, 0);
    EXPECT_EQ(walk(g, 0, c), ChainError::out_of_table);
    // INDIRECT together with NEXT.
    g.desc(kTable, 0, kInd, 2 * sizeof(Desc), kDescIndirect | kDescNext, 1);
    EXPECT_EQ(walk(g, 0, c), ChainError::indirect_with_next);
    // Nested.
    g.desc(kInd, 0, kInd, 2 * sizeof(Desc), kDescIndirect, 0);
    g.desc(kTable, 0, kInd, 2 * sizeof(Desc), kDescIndirect, 0);
    EXPECT_EQ(walk(g, 0, c), ChainError::indirect_nested);
    // A loop inside the indirect table, and a next past its end.
    g.desc(kInd, 0, kData, 1, kDescNext, 1);
    g.desc(kInd, 1, kData, 1, kDescNext, 0);
    EXPECT_EQ(walk(g, 0, c), ChainError::too_long);
    g.desc(kInd, 1, kData, 1, kDescNext, 2);
    EXPECT_EQ(walk(g, 0, c), ChainError::next_out_of_range);
}

TEST(VhostChain, SegmentLimit)
{
    Guest g;
    for (unsigned i = 0; i < 10; i++)
        g.desc(kTable, i, kData + i * 64, 8, i < 9 ? kDescNext : 0, uint16_t(i + 1));
    Chain c;
    WalkLimits lim;
    lim.max_iov = 4;
    EXPECT_EQ(walk(g, 0, c, true, 256, lim), ChainError::too_many_segments);
    lim.max_iov = 10;
    EXPECT_EQ(walk(g, 0, c, true, 256, lim), ChainError::ok);
}

// ---- the queue: avail/used rings, notifications, hostile indices ----

namespace {

constexpr uint16_t kNum = 16;
constexpr uint64_t kAvail = kGpa0 + 0x4000;
constexpr uint64_t kUsed = kGpa0 + 0x5000;

struct Ring : Guest {
    Virtqueue vq{1};
    Fd kick{eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    Fd call{eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
    int call_fd;

    explicit Ring(uint64_t features = kFVersion1 | kFIndirectDesc | kFEventIdx | kFProtocolFeatures)
    {
        call_fd = call.get();
        vq.set_features(features);
        EXPECT_EQ(vq.set_num(kNum), "");
        VringAddr a{1, 0, kTable + kUvaOff, kUsed + kUvaOff, kAvail + kUvaOff, 0};
        EXPECT_EQ(vq.set_addr(a), "");
        EXPECT_EQ(vq.set_memory(mem), "");
        EXPECT_EQ(vq.set_base(0), "");
        vq.set_call(std::move(call));
        vq.set_kick(Fd(dup(kick.get())));
        vq.set_enabled(true);
    }
    uint16_t &avail_idx() { return *reinterpret_cast<uint16_t *>(at(kAvail + 2)); }
    uint16_t &avail_ring(unsigned i) { return *reinterpret_cast<uint16_t *>(at(kAvail + 4 + 2 * i)); }
    uint16_t &used_event() { return *reinterpret_cast<uint16_t *>(at(kAvail + 4 + 2 * kNum)); }
    uint16_t used_idx() { return *reinterpret_cast<uint16_t *>(at(kUsed + 2)); }
    uint32_t used_id(unsigned i) { return *reinterpret_cast<uint32_t *>(at(kUsed + 4 + 8 * i)); }
    uint32_t used_len(unsigned i) { return *reinterpret_cast<uint32_t *>(at(kUsed + 8 + 8 * i)); }
    void offer(uint16_t head)
    {
        avail_ring(avail_idx() % kNum) = head;
        avail_idx()++;
    }
    uint64_t calls()
    {
        uint64_t v = 0;
        if (read(call_fd, &v, sizeof(v)) != sizeof(v))
            return 0;
        return v;
    }
};

} // namespace

TEST(VhostQueue, PopCompleteAndNotify)
{
    Ring r;
    r.desc(kTable, 3, kData, 40, kDescNext, 4);
    r.desc(kTable, 4, kData + 64, 100, kDescWrite, 0);
    Chain c;
    EXPECT_EQ(r.vq.try_pop(c), 0); // nothing offered yet
    r.offer(3);
    ASSERT_EQ(r.vq.try_pop(c), 1);
    EXPECT_EQ(c.head, 3);
    r.vq.complete(c, 60);
    EXPECT_EQ(r.used_idx(), 1);
    EXPECT_EQ(r.used_id(0), 3u);
    EXPECT_EQ(r.used_len(0), 60u);
    EXPECT_EQ(r.calls(), 1u); // the first completion always signals
    // A reply longer than the writable room is clamped.
    r.offer(3);
    ASSERT_EQ(r.vq.try_pop(c), 1);
    r.vq.complete(c, 5000);
    EXPECT_EQ(r.used_len(1), 100u);
}

TEST(VhostQueue, EventIdxSuppressesCalls)
{
    Ring r;
    r.desc(kTable, 0, kData, 8, 0, 0);
    Chain c;
    r.used_event() = 0; // "signal me after used entry 0"
    r.offer(0);
    ASSERT_EQ(r.vq.try_pop(c), 1);
    r.vq.complete(c, 0);
    EXPECT_EQ(r.calls(), 1u);
    // used_event stays 0: the driver does not want to hear about entry 1.
    r.offer(0);
    ASSERT_EQ(r.vq.try_pop(c), 1);
    r.vq.complete(c, 0);
    EXPECT_EQ(r.calls(), 0u);
    // Now it asks for entry 2.
    r.used_event() = 2;
    r.offer(0);
    ASSERT_EQ(r.vq.try_pop(c), 1);
    r.vq.complete(c, 0);
    EXPECT_EQ(r.calls(), 1u);
}

TEST(VhostQueue, NoInterruptFlagWithoutEventIdx)
{
    Ring r(kFVersion1 | kFProtocolFeatures);
    r.desc(kTable, 0, kData, 8, 0, 0);
    *reinterpret_cast<uint16_t *>(r.at(kAvail)) = kAvailNoInterrupt;
    Chain c;
    r.offer(0);
    ASSERT_EQ(r.vq.try_pop(c), 1);
    r.vq.complete(c, 0);
    EXPECT_EQ(r.calls(), 0u);
}

TEST(VhostQueue, BadChainIsCompletedEmptyAndSkipped)
{
    Ring r;
    r.desc(kTable, 1, kData, 1, kDescNext, 1); // loop
    r.desc(kTable, 2, kData, 8, 0, 0);
    r.offer(1);
    r.offer(2);
    Chain c;
    ASSERT_EQ(r.vq.try_pop(c), 1);
    EXPECT_EQ(c.head, 2); // the bad one was skipped...
    EXPECT_EQ(r.used_idx(), 1);
    EXPECT_EQ(r.used_id(0), 1u); // ...and returned with length 0
    EXPECT_EQ(r.used_len(0), 0u);
    EXPECT_EQ(r.vq.bad_chains(), 1u);
}

TEST(VhostQueue, AvailIndexJumpBreaksTheRing)
{
    Ring r;
    r.avail_idx() = kNum + 1; // more pending than the ring holds
    Chain c;
    EXPECT_EQ(r.vq.try_pop(c), -1);
    EXPECT_TRUE(r.vq.broken());
}

TEST(VhostQueue, AvailHeadOutOfRangeBreaksTheRing)
{
    Ring r;
    r.offer(kNum); // descriptor 16 of 16
    Chain c;
    EXPECT_EQ(r.vq.try_pop(c), -1);
    EXPECT_TRUE(r.vq.broken());
}

TEST(VhostQueue, RingOutsideMemoryIsRefused)
{
    Guest g;
    Virtqueue vq(0);
    vq.set_features(kFVersion1);
    ASSERT_EQ(vq.set_num(kNum), "");
    EXPECT_NE(vq.set_addr({0, 0, kTable + kUvaOff + 1, kUsed + kUvaOff, kAvail + kUvaOff, 0}), "")
        << "misaligned descriptor table";
    ASSERT_EQ(vq.set_addr({0, 0, 0x1000, kUsed + kUvaOff, kAvail + kUvaOff, 0}), "");
    EXPECT_NE(vq.set_memory(g.mem), "");
    vq.set_enabled(true);
    vq.set_kick(Fd(eventfd(0, EFD_CLOEXEC)));
    EXPECT_TRUE(vq.broken());
    EXPECT_FALSE(vq.running());
    EXPECT_NE(vq.set_num(3), "") << "not a power of two";
    EXPECT_NE(vq.set_num(65536), "");
    EXPECT_NE(vq.set_base(70000), "");
}

TEST(VhostQueue, StopReturnsNextAvailAndDropsLateCompletions)
{
    Ring r;
    r.desc(kTable, 0, kData, 8, 0, 0);
    r.offer(0);
    r.offer(0);
    Chain c1, c2;
    ASSERT_EQ(r.vq.try_pop(c1), 1);
    ASSERT_EQ(r.vq.try_pop(c2), 1);
    r.vq.complete(c1, 0);
    // c2 is still being served: stop waits (bounded) and reports 2.
    EXPECT_EQ(r.vq.stop(10), 2);
    r.vq.complete(c2, 0); // after the stop: must not touch the ring
    EXPECT_EQ(r.used_idx(), 1);
    EXPECT_FALSE(r.vq.running());
}

TEST(VhostQueue, DisabledRingIsNotServed)
{
    Ring r;
    r.desc(kTable, 0, kData, 8, 0, 0);
    r.vq.set_enabled(false);
    r.offer(0);
    Chain c;
    EXPECT_EQ(r.vq.try_pop(c), 0);
    r.vq.set_enabled(true);
    EXPECT_EQ(r.vq.try_pop(c), 1);
}
